//! STS-compatible services as real peers: a MinIO server that verifies the ServiceAccount
//! tokens itself (OpenID pointed at the test apiserver's discovery document) and enforces a
//! one-bucket role policy on its S3 API; Ceph RGW's role ARNs and error documents through the
//! emulator's Ceph dialect (RGW itself cannot be built here); and the role ARN forms the CRD
//! admits for each `sts.provider`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use podcreds_testenv::{Process, free_port};
use serde::Deserialize;
use serde_json::json;
use sts_emulator::{Dialect, Emulator, Faults, Role};

use podcreds_testenv::decode_secret as decode;
use podcreds_testenv::loopback::get as http_get;
use podcreds_testenv::tools::clean_aws_env;

use crate::support::peers::{binding_for, role_arn_table};
use crate::support::{Env, aws_caller_identity, kubelet_layout, wait_for};

/// The audience MinIO accepts (its OpenID client ID), as in `examples/minio.yaml`.
const CLIENT_ID: &str = "minio";
/// The one bucket the role policy allows, and one it does not.
const ALLOWED_BUCKET: &str = "podcreds-allowed";
const OTHER_BUCKET: &str = "podcreds-other";
const ROLE_POLICY: &str = "podcreds-one-bucket";
const READY: Duration = Duration::from_secs(60);

/// What MinIO's audit webhook reported: (API name, HTTP status) per request.
type AuditLog = Arc<Mutex<Vec<(String, u16)>>>;

/// A MinIO server on loopback with OpenID identity pointing at the test control plane.
struct Minio {
    process: Process,
    url: String,
    /// The role ARN MinIO printed at start.
    role_arn: String,
    root_user: String,
    root_password: String,
    audit: AuditLog,
    audit_stop: Arc<tokio::sync::Notify>,
}

/// Receives MinIO's audit webhook: a JSON entry (or a batch of them) per API call.
async fn audit_sink(log: AuditLog, stop: Arc<tokio::sync::Notify>) -> anyhow::Result<u16> {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().route(
        "/",
        post(move |body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                let entries = match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(serde_json::Value::Array(entries)) => entries,
                    Ok(entry) => vec![entry],
                    Err(_) => Vec::new(),
                };
                if let Ok(mut log) = log.lock() {
                    for entry in entries {
                        let name = entry["api"]["name"].as_str().unwrap_or_default();
                        let status = entry["api"]["statusCode"].as_u64().unwrap_or(0);
                        log.push((name.to_string(), u16::try_from(status).unwrap_or(0)));
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.notified().await })
            .await;
    });
    Ok(port)
}

/// Creates the buckets and the one-bucket role policy with the root credentials: S3 calls and
/// MinIO's admin API, both signed by botocore.
const SETUP: &str = r#"
import os, sys, urllib.request
import boto3, botocore.auth, botocore.awsrequest, botocore.credentials
from botocore.config import Config
endpoint, policy_name, policy, buckets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
creds = botocore.credentials.Credentials(os.environ["ROOT_USER"], os.environ["ROOT_PASSWORD"])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                  config=Config(s3={"addressing_style": "path"}))
for bucket in buckets:
    s3.create_bucket(Bucket=bucket)
request = botocore.awsrequest.AWSRequest(
    method="PUT", url=f"{endpoint}/minio/admin/v3/add-canned-policy?name={policy_name}",
    data=policy.encode())
botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
prepared = request.prepare()
answer = urllib.request.urlopen(urllib.request.Request(
    prepared.url, data=prepared.body, headers=dict(prepared.headers), method="PUT"))
print(answer.status)
"#;

/// A workload using nothing but the mounted Secret (`AWS_CONFIG_FILE`): writes and reads an
/// object in the allowed bucket, tries the other bucket, reports what happened.
const WORKLOAD: &str = r#"
import json, sys, boto3
from botocore.config import Config
from botocore.exceptions import ClientError
endpoint, allowed, other, key = sys.argv[1:5]
session = boto3.Session()
s3 = session.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
def code(call):
    try:
        call()
        return "Allowed"
    except ClientError as e:
        return e.response["Error"]["Code"]
report = {"accessKey": session.get_credentials().get_frozen_credentials().access_key}
report["put"] = code(lambda: s3.put_object(Bucket=allowed, Key=key, Body=key.encode()))
report["read"] = s3.get_object(Bucket=allowed, Key=key)["Body"].read().decode() if report["put"] == "Allowed" else None
report["otherPut"] = code(lambda: s3.put_object(Bucket=other, Key=key, Body=b"x"))
report["otherList"] = code(lambda: s3.list_objects_v2(Bucket=other))
print(json.dumps(report))
"#;

fn random_secret(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Minio {
    /// Starts MinIO trusting the control plane's CA, with OpenID client ID [`CLIENT_ID`] and
    /// role policy [`ROLE_POLICY`] (allowing [`ALLOWED_BUCKET`] only), and creates both buckets.
    async fn start(env: &Env) -> anyhow::Result<Self> {
        let binary = podcreds_testenv::tools::minio_binary()?;
        let port = free_port()?;
        let console_port = free_port()?;
        let dir = env.plane.dir().join(format!("minio-{port}"));
        let cas = dir.join("certs").join("CAs");
        std::fs::create_dir_all(&cas)?;
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(cas.join("ca.crt"), &env.plane.ca_pem)?;
        let audit: AuditLog = Arc::default();
        let audit_stop = Arc::new(tokio::sync::Notify::new());
        let audit_port = audit_sink(audit.clone(), audit_stop.clone()).await?;
        let root_user = "podcreds-root".to_string();
        let root_password = random_secret(32);
        let settings: Vec<(String, String)> = [
            ("MINIO_ROOT_USER", root_user.clone()),
            ("MINIO_ROOT_PASSWORD", root_password.clone()),
            (
                "MINIO_IDENTITY_OPENID_CONFIG_URL",
                format!("{}/.well-known/openid-configuration", env.plane.api_url),
            ),
            ("MINIO_IDENTITY_OPENID_CLIENT_ID", CLIENT_ID.to_string()),
            ("MINIO_IDENTITY_OPENID_ROLE_POLICY", ROLE_POLICY.to_string()),
            ("MINIO_AUDIT_WEBHOOK_ENABLE_PODCREDS", "on".to_string()),
            (
                "MINIO_AUDIT_WEBHOOK_ENDPOINT_PODCREDS",
                format!("http://127.0.0.1:{audit_port}/"),
            ),
            ("MINIO_BROWSER", "off".to_string()),
            ("MINIO_UPDATE", "off".to_string()),
            // A single drive on the root file system is refused outside CI mode.
            ("MINIO_CI_CD", "on".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let process = Process::spawn(
            "minio",
            &binary,
            &[
                "server".into(),
                "--address".into(),
                format!("127.0.0.1:{port}"),
                "--console-address".into(),
                format!("127.0.0.1:{console_port}"),
                "--certs-dir".into(),
                dir.join("certs").to_string_lossy().into_owned(),
                dir.join("data").to_string_lossy().into_owned(),
            ],
            &settings,
            &dir,
        )?;
        crate::register_log(process.log_path().to_path_buf());
        let mut minio = Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            role_arn: String::new(),
            root_user,
            root_password,
            audit,
            audit_stop,
        };
        let addr = format!("127.0.0.1:{port}");
        let mut ready = false;
        for _ in 0..300 {
            if let Some(status) = minio.process.exited() {
                bail!(
                    "minio exited with {status}:\n{}",
                    minio.process.log_tail(40)
                );
            }
            if http_get(&addr, "/minio/health/ready")
                .await
                .is_ok_and(|(code, _)| code == 200)
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(ready, "minio not ready:\n{}", minio.process.log_tail(40));
        // MinIO prints the role ARN of its OpenID provider once it has read the discovery
        // document (which proves it trusts the test CA).
        let printed = wait_for(Duration::from_secs(30), || {
            let log = minio.process.log();
            async move {
                let line = log.lines().find(|l| l.contains("IAM Roles:"))?;
                let arn = &line[line.find("arn:minio:")?..];
                // The ARN ends at white space or at a terminal colour code.
                Some(
                    arn.chars()
                        .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                        .collect::<String>(),
                )
            }
        })
        .await;
        minio.role_arn = printed.with_context(|| {
            format!(
                "minio printed no IAM role (OpenID not configured?):\n{}",
                minio.process.log_tail(40)
            )
        })?;
        minio.setup().await?;
        Ok(minio)
    }

    async fn setup(&self) -> anyhow::Result<()> {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
                "Resource": [
                    format!("arn:aws:s3:::{ALLOWED_BUCKET}"),
                    format!("arn:aws:s3:::{ALLOWED_BUCKET}/*"),
                ],
            }],
        });
        let python = podcreds_testenv::tools::venv_program("python")?;
        let mut cmd = tokio::process::Command::new(python);
        clean_aws_env(cmd.as_std_mut());
        cmd.args([
            "-c",
            SETUP,
            &self.url,
            ROLE_POLICY,
            &policy.to_string(),
            ALLOWED_BUCKET,
            OTHER_BUCKET,
        ])
        .env("ROOT_USER", &self.root_user)
        .env("ROOT_PASSWORD", &self.root_password);
        let out = cmd.output().await?;
        ensure!(
            out.status.success(),
            "setting up minio failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// STS calls MinIO reported: (succeeded, refused). MinIO's audit log names the handler:
    /// `AssumeRoleSSOCommon` for `AssumeRoleWithWebIdentity`, `AssumeRole...` for the others.
    fn sts_calls(&self) -> (usize, usize) {
        let log = self.audit.lock().map(|l| l.clone()).unwrap_or_default();
        let sts: Vec<u16> = log
            .iter()
            .filter(|(name, _)| name.starts_with("AssumeRole"))
            .map(|(_, status)| *status)
            .collect();
        let ok = sts.iter().filter(|s| **s == 200).count();
        (ok, sts.len() - ok)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.process.terminate()?;
        Ok(())
    }
}

impl Drop for Minio {
    fn drop(&mut self) {
        // The process stops with its handle; the audit sink with this.
        self.audit_stop.notify_one();
    }
}

/// The binding of `examples/minio.yaml`: (its ServiceAccount, its spec).
fn example_binding() -> anyhow::Result<(String, serde_json::Value)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minio.yaml");
    let text = std::fs::read_to_string(&path)?;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_json::to_value(serde_yaml::Value::deserialize(doc)?)?;
        if value["kind"] == "AWSRoleBinding" {
            let sa = value["spec"]["serviceAccountName"]
                .as_str()
                .context("serviceAccountName")?
                .to_string();
            return Ok((sa, value["spec"].clone()));
        }
    }
    bail!("{} has no AWSRoleBinding", path.display())
}

/// Runs [`WORKLOAD`] with nothing but `config`: the report as JSON.
async fn workload(minio: &Minio, config: &Path, key: &str) -> anyhow::Result<serde_json::Value> {
    let python = podcreds_testenv::tools::venv_program("python")?;
    let mut cmd = tokio::process::Command::new(python);
    clean_aws_env(cmd.as_std_mut());
    cmd.args([
        "-c",
        WORKLOAD,
        &minio.url,
        ALLOWED_BUCKET,
        OTHER_BUCKET,
        key,
    ])
    .env("AWS_CONFIG_FILE", config);
    let out = cmd.output().await?;
    ensure!(
        out.status.success(),
        "workload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Sum of `podcreds_credential_refreshes_total` over every reason.
fn refreshes(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("podcreds_credential_refreshes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub async fn binding_against_minio_is_limited_to_one_bucket_and_refreshes(
    env: &Env,
) -> anyhow::Result<()> {
    let minio = Minio::start(env).await?;
    let (service_account, example) = example_binding()?;
    // The example names the very ARN MinIO prints for client ID `minio`.
    ensure!(
        example["roleArn"] == minio.role_arn.as_str() && example["audience"] == CLIENT_ID,
        "MinIO printed {}, examples/minio.yaml names {} for audience {}",
        minio.role_arn,
        example["roleArn"],
        example["audience"]
    );
    let ns = env.namespace("minio").await?;
    env.service_account(&ns, &service_account).await?;
    // The operator flags the README documents for MinIO.
    let allowed = format!("--allowed-sts-endpoints={}", minio.url);
    let op = env
        .start_operator(
            &[&ns],
            &env.emulator.url(),
            &[
                &allowed,
                "--allowed-audiences=minio",
                "--token-expiration-seconds=3600",
            ],
        )
        .await?;
    let mount = tempfile::Builder::new()
        .prefix("podcreds-minio-")
        .tempdir()?;
    // The example as it stands, pointed at this MinIO and this mount.
    let mut spec = example.clone();
    spec["sts"]["endpoint"] = json!(minio.url);
    spec["mountPath"] = json!(mount.path().to_string_lossy());
    let binding = env.create_ready(&ns, "minio-backup", spec, READY).await?;

    // MinIO caps credentials at the token's expiry: the hour-long token bought an hour-long
    // session, not the 10 minutes the default token lifetime would have.
    let status = binding.status.context("status")?;
    let issued = status.last_refresh_time.context("lastRefreshTime")?.0;
    let expiration = status.expiration.context("expiration")?.0;
    let lifetime = expiration.duration_since(issued).as_secs();
    ensure!(
        lifetime > 900 && lifetime <= 3600,
        "MinIO granted {lifetime} s"
    );

    // A pod's view: the Secret as a kubelet lays it out, nothing else.
    let data = decode(&env.secrets(&ns).get("minio-backup").await?);
    kubelet_layout(mount.path(), &data, 1)?;
    let config = mount.path().join("config");
    let report = workload(&minio, &config, "first").await?;
    ensure!(
        report["put"] == "Allowed" && report["read"] == "first",
        "the allowed bucket: {report}"
    );
    ensure!(
        report["otherPut"] == "AccessDenied" && report["otherList"] == "AccessDenied",
        "the other bucket was not refused: {report}"
    );
    ensure!(report["accessKey"] == data["AWS_ACCESS_KEY_ID"].as_str());

    // Refresh every half minute (the spec change itself refreshes once more); each new set of
    // credentials works in a fresh workload reading the updated volume.
    let patch = json!({"spec": {"renewBefore": "59m30s"}});
    env.bindings(&ns)
        .patch(
            "minio-backup",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    let mut seen = vec![data["AWS_ACCESS_KEY_ID"].clone()];
    let secrets = env.secrets(&ns);
    for generation in 2..=4u32 {
        let (secrets, seen_so_far) = (&secrets, &seen);
        let fresh = wait_for(Duration::from_secs(90), || async move {
            let data = decode(&secrets.get("minio-backup").await.ok()?);
            let key = data.get("AWS_ACCESS_KEY_ID")?.clone();
            (!seen_so_far.contains(&key)).then_some(data)
        })
        .await
        .context("the credentials were not refreshed")?;
        kubelet_layout(mount.path(), &fresh, generation)?;
        let key = format!("refresh-{generation}");
        let report = workload(&minio, &config, &key).await?;
        ensure!(
            report["accessKey"] == fresh["AWS_ACCESS_KEY_ID"].as_str()
                && report["put"] == "Allowed"
                && report["read"] == key.as_str()
                && report["otherPut"] == "AccessDenied",
            "after a refresh: {report}"
        );
        seen.push(fresh["AWS_ACCESS_KEY_ID"].clone());
    }

    // MinIO's own audit log: one successful call per refresh, no other call at all.
    let (op_ref, minio_ref, credential_sets) = (&op, &minio, seen.len());
    let counted = wait_for(Duration::from_secs(30), || async move {
        let issued = refreshes(&op_ref.metrics().await.ok()?);
        let (ok, refused) = minio_ref.sts_calls();
        (issued as usize == ok && refused == 0 && ok >= credential_sets).then_some(ok)
    })
    .await;
    let (ok, refused) = minio.sts_calls();
    let issued = refreshes(&op.metrics().await?);
    ensure!(
        counted.is_some(),
        "MinIO saw {ok} successful and {refused} refused calls for {issued} refreshes ({} credential sets seen)",
        seen.len()
    );
    // MinIO's secrets never reach the operator's log or the binding's status.
    let status_text = serde_json::to_string(&env.bindings(&ns).get("minio-backup").await?.status)?;
    let log = op.log();
    for secret in [&data["AWS_SECRET_ACCESS_KEY"], &data["AWS_SESSION_TOKEN"]] {
        ensure!(
            !log.contains(secret.as_str()),
            "a credential is in the operator log"
        );
        ensure!(
            !status_text.contains(secret.as_str()),
            "a credential is in the status"
        );
    }
    minio.stop()
}

/// The binding's Ready condition message, once its reason is `reason`.
async fn refused_with(env: &Env, ns: &str, name: &str, reason: &str) -> anyhow::Result<String> {
    let b = env.wait_reason(ns, name, reason, READY).await?;
    let message = podcreds::status::ready_condition(b.status.as_ref())
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        env.secrets(ns).get_opt(name).await?.is_none(),
        "{name}: a Secret was written"
    );
    // The refused token never shows up in what the binding says.
    ensure!(!message.contains("eyJ"), "{name}: {message}");
    Ok(message)
}

pub async fn minio_refuses_a_wrong_audience_and_another_clusters_token(
    env: &Env,
) -> anyhow::Result<()> {
    let minio = Minio::start(env).await?;
    let spec = |audience: Option<&str>| {
        let mut spec = json!({
            "serviceAccountName": "app",
            "roleArn": minio.role_arn,
            "sts": {"provider": "MinIO", "endpoint": minio.url, "region": "us-east-1"},
        });
        if let Some(audience) = audience {
            spec["audience"] = json!(audience);
        }
        spec
    };
    let allowed = format!("--allowed-sts-endpoints={}", minio.url);
    let flags = [
        allowed.as_str(),
        "--allowed-audiences=minio,another-service",
    ];

    // The cluster's default audience is AWS's (sts.amazonaws.com): such a token never goes to
    // MinIO, which could replay it to AWS.
    let ns = env.namespace("minio-aud").await?;
    env.service_account(&ns, "app").await?;
    let _op = env
        .start_operator(&[&ns], &env.emulator.url(), &flags)
        .await?;
    let before = minio.sts_calls();
    env.create_binding(&ns, "default-audience", spec(None))
        .await?;
    let message = refused_with(env, &ns, "default-audience", "AudienceEndpointMismatch").await?;
    ensure!(
        message.contains("replay the token to AWS"),
        "the binding does not say why: {message}"
    );
    ensure!(minio.sts_calls() == before, "MinIO was called");
    // Another audience the admin allowed, which is not MinIO's client ID: MinIO refuses it.
    env.create_binding(&ns, "wrong-audience", spec(Some("another-service")))
        .await?;
    let message = refused_with(env, &ns, "wrong-audience", "StsInvalidRequest").await?;
    ensure!(
        message.contains("Client ID"),
        "the binding does not say the audience is wrong: {message}"
    );

    // A token of another cluster (another issuer and signing key), with the right audience.
    let other = podcreds_testenv::ControlPlane::start(podcreds_testenv::Options {
        controller_manager: false,
        ..Default::default()
    })
    .await?;
    other.install_crds(&podcreds::crd_yaml()?).await?;
    let other_env = Env {
        client: other.client().await?,
        plane: other,
        emulator: env.emulator.clone(),
        cluster_policies: tokio::sync::RwLock::new(()),
    };
    let other_ns = other_env.namespace("foreign").await?;
    other_env.service_account(&other_ns, "app").await?;
    // Logs go under the main plane's directory, which outlives this test's second cluster.
    let _other_op = env
        .start_operator_with_kubeconfig(
            &other_env.plane.kubeconfig,
            &[&other_ns],
            &env.emulator.url(),
            &flags,
        )
        .await?;
    other_env
        .create_binding(&other_ns, "foreign", spec(Some("minio")))
        .await?;
    let message = refused_with(&other_env, &other_ns, "foreign", "StsInvalidRequest").await?;
    // MinIO knows no key of that issuer.
    ensure!(
        message.contains("InvalidParameterValue") && message.contains("public key"),
        "the binding does not say why: {message}"
    );

    // Both refusals came from MinIO itself (its audit log arrives asynchronously), and it
    // issued nothing.
    let minio_ref = &minio;
    let seen = wait_for(Duration::from_secs(30), || async move {
        let (ok, refused) = minio_ref.sts_calls();
        (refused >= 2).then_some(ok)
    })
    .await;
    let (ok, refused) = minio.sts_calls();
    ensure!(
        seen == Some(0) && ok == 0,
        "MinIO issued {ok}, refused {refused}"
    );
    minio.stop()
}

pub async fn every_supported_role_arn_form_is_admitted_by_kubectl_apply(
    env: &Env,
) -> anyhow::Result<()> {
    let ns = env.namespace("arns").await?;
    let kubectl = podcreds_testenv::tools::binary("kubectl")?;
    let mut failures = Vec::new();
    let accepted: Vec<(String, bool, String)> =
        role_arn_table()?.into_iter().filter(|c| c.1).collect();
    for (i, (provider, _, arn)) in accepted.iter().enumerate() {
        let name = format!("{}-{i}", provider.to_lowercase());
        let manifest = json!({
            "apiVersion": "podcreds.dev/v1alpha1",
            "kind": "AWSRoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "spec": binding_for(provider, arn),
        });
        let mut child = tokio::process::Command::new(&kubectl)
            .args(["apply", "-f", "-", "--kubeconfig"])
            .arg(&env.plane.kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin.write_all(manifest.to_string().as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            failures.push(format!(
                "{provider} {arn}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        let stored = env.bindings(&ns).get(&name).await?;
        if stored.spec.role_arn.as_ref() != Some(arn) {
            failures.push(format!(
                "{provider} {arn}: stored as {}",
                stored.spec.role_arn.as_deref().unwrap_or_default()
            ));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} supported forms refused:\n{}",
        failures.len(),
        accepted.len(),
        failures.join("\n")
    );
    Ok(())
}

/// The Ceph dialect of the emulator: a binding with `sts.provider: CephRGW` and the operator's
/// default endpoint assumes default-tenant and tenant roles, and RGW's `<Error>` documents
/// become precise reasons rather than "unavailable".
pub async fn ceph_rgw_role_arns_and_error_documents(env: &Env) -> anyhow::Result<()> {
    let mut config = sts_emulator::Config::for_issuer(&env.plane.api_url, &env.plane.ca_pem);
    config.dialect = Dialect::CephRgw;
    let rgw = Emulator::start(config).await?;
    let ns = env.namespace("ceph").await?;
    env.service_account(&ns, "app").await?;
    let subject = format!("system:serviceaccount:{ns}:app");
    let roles = [
        format!("arn:aws:iam:::role/{ns}-default-tenant"),
        format!("arn:aws:iam::tenant1:role/apps/{ns}-tenant"),
    ];
    for arn in &roles {
        rgw.add_role(Role {
            arn: arn.clone(),
            subjects: vec![subject.clone()],
            audiences: vec![],
            lifetime_seconds: None,
            ..Role::default()
        });
    }
    let untrusted = format!("arn:aws:iam:::role/{ns}-untrusted");
    rgw.add_role(Role {
        arn: untrusted.clone(),
        subjects: vec!["system:serviceaccount:elsewhere:app".into()],
        audiences: vec![],
        lifetime_seconds: None,
        ..Role::default()
    });
    // RGW is the operator's default endpoint: the bindings name none.
    let _op = env.start_operator(&[&ns], &rgw.url(), &[]).await?;
    let mount = tempfile::Builder::new()
        .prefix("podcreds-ceph-")
        .tempdir()?;
    let mount_path = mount.path().to_string_lossy().into_owned();
    let ceph = |arn: &str| {
        json!({
            "serviceAccountName": "app",
            "roleArn": arn,
            "mountPath": mount_path,
            "sts": {"provider": "CephRGW"},
        })
    };
    let cases = [
        ("default", &roles[0], "", format!("{ns}-default-tenant")),
        ("tenant", &roles[1], "tenant1", format!("{ns}-tenant")),
    ];
    for (generation, (name, arn, tenant, role)) in (1u32..).zip(&cases) {
        env.create_ready(&ns, name, ceph(arn), READY).await?;
        let data = decode(&env.secrets(&ns).get(name).await?);
        kubelet_layout(mount.path(), &data, generation)?;
        let config = mount.path().join("config");
        let ident = aws_caller_identity(&rgw.url(), &[("AWS_CONFIG_FILE", &config)]).await?;
        ensure!(
            ident["Arn"]
                == format!("arn:aws:sts::{tenant}:assumed-role/{role}/{ns}.{name}").as_str(),
            "{name}: {ident}"
        );
    }

    // The trust policy refuses: RGW says AccessDenied, with no message.
    env.create_binding(&ns, "untrusted", ceph(&untrusted))
        .await?;
    let message = refused_with(env, &ns, "untrusted", "StsAccessDenied").await?;
    ensure!(message.contains("AccessDenied"), "{message}");
    // RGW's codes for what AWS calls otherwise.
    for (i, (injected, reason, code)) in [
        ("InvalidIdentityToken", "StsAccessDenied", "AccessDenied"),
        ("ValidationError", "StsInvalidRequest", "InvalidArgument"),
    ]
    .iter()
    .enumerate()
    {
        rgw.set_faults(Faults {
            error_code: Some(injected.to_string()),
            error_next: 2,
            ..Faults::default()
        });
        let name = format!("fault{i}");
        env.create_binding(&ns, &name, ceph(&roles[0])).await?;
        let message = refused_with(env, &ns, &name, reason).await?;
        ensure!(message.contains(code), "{injected}: {message}");
    }
    rgw.shutdown();
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![minio:
    binding_against_minio_is_limited_to_one_bucket_and_refreshes,
    minio_refuses_a_wrong_audience_and_another_clusters_token,
    every_supported_role_arn_form_is_admitted_by_kubectl_apply,
    ceph_rgw_role_arns_and_error_documents,
];

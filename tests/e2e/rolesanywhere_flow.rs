//! The operator's Roles Anywhere flow, against the emulator AWS's own helper vouches for
//! (`rolesanywhere.rs`): podcreds as the workload CA with the bundle `podcreds rolesanywhere
//! trust-anchor` prints in the trust anchor and the trust policies `podcreds iam trust-policy`
//! prints on the roles; `openssl verify` as a second judge of its certificates; CA rotation; an
//! admin's certificate Secret, revoked and expired.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use serde_json::{Value, json};
use sts_emulator::{CallRecord, Config, Emulator, Profile, TrustAnchor};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::support::aws::{apply_printed_trust_policies, manifest};
use crate::support::rolesanywhere::{ANCHOR, Ca, PROFILE};
use crate::support::{
    ACCOUNT, Env, Operator, aws_caller_identity, counter, podcreds_cli, ready_message, wait_for,
};

const READY: Duration = Duration::from_secs(60);

/// One Roles Anywhere setup: an app namespace with ServiceAccount `app`, the operator's own
/// namespace (the CA Secret, when podcreds is the CA), an emulator of the test's own with a
/// profile listing `roles`, and an operator sending `CreateSession` there.
struct Scene {
    ns: String,
    operator_ns: String,
    sts: Emulator,
    operator: Operator,
}

impl Scene {
    fn role(&self, name: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT}:role/{}-{name}", self.ns)
    }

    /// Every `CreateSession` the emulator saw.
    fn sessions(&self) -> Vec<CallRecord> {
        self.sts
            .calls()
            .calls
            .into_iter()
            .filter(|c| c.action == "CreateSession")
            .collect()
    }
}

/// Runs the `podcreds` command line; its standard output, or an error with its standard error.
async fn podcreds(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    let out = podcreds_cli(env, args).await?;
    if !out.status.success() {
        bail!(
            "podcreds {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The CA bundle the trust anchor must hold, as the admin prints it.
async fn printed_bundle(env: &Env, operator_ns: &str) -> anyhow::Result<String> {
    podcreds(
        env,
        &["rolesanywhere", "trust-anchor", "--namespace", operator_ns],
    )
    .await
}

/// A Roles Anywhere spec of ServiceAccount `app` for `role`.
fn ra_spec(role: &str, extra: Value) -> Value {
    let mut spec = json!({
        "serviceAccountName": "app",
        "roleArn": role,
        "rolesAnywhere": {"trustAnchorArn": ANCHOR, "profileArn": PROFILE},
    });
    if let (Some(base), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        base.extend(extra);
    }
    spec
}

/// `roles` (names, prefixed with the namespace) are listed in the profile. With `podcreds_ca`
/// the operator is the CA (`--rolesanywhere-enabled`) and the trust anchor holds the bundle it
/// printed; otherwise the test registers the anchor itself.
async fn scene(
    env: &Env,
    prefix: &str,
    roles: &[&str],
    podcreds_ca: bool,
) -> anyhow::Result<Scene> {
    let ns = env.namespace(prefix).await?;
    env.service_account(&ns, "app").await?;
    let operator_ns = env.namespace(&format!("{prefix}-op")).await?;
    let sts = Emulator::start(Config::for_issuer(&env.plane.api_url, &env.plane.ca_pem)).await?;
    let role_arns: Vec<String> = roles
        .iter()
        .map(|r| format!("arn:aws:iam::{ACCOUNT}:role/{ns}-{r}"))
        .collect();
    let role_refs: Vec<&str> = role_arns.iter().map(String::as_str).collect();
    sts.add_profile(Profile::new(PROFILE, &role_refs))?;
    let mut args = vec![
        format!("--namespace={operator_ns}"),
        format!("--rolesanywhere-endpoint={}", sts.url()),
    ];
    if podcreds_ca {
        // As an admin would: print the bundle (creating the CA key) and create the trust anchor.
        let bundle = printed_bundle(env, &operator_ns).await?;
        sts.add_trust_anchor(TrustAnchor::new(ANCHOR, &bundle))?;
        args.push("--rolesanywhere-enabled".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = env.start_operator(&[&ns], &sts.url(), &args).await?;
    Ok(Scene {
        ns,
        operator_ns,
        sts,
        operator,
    })
}

/// The key ring in the operator's CA Secret.
async fn ca_ring(env: &Env, operator_ns: &str) -> anyhow::Result<podcreds::keyring::KeyRing> {
    let secret = env
        .secrets(operator_ns)
        .get(podcreds::rolesanywhere::DEFAULT_CA_SECRET)
        .await?;
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok(podcreds::keyring::KeyRing::from_data(
        &podcreds::keyring::ROLES_ANYWHERE_CA,
        &data,
    )?)
}

/// The signing certificate of a `CreateSession` call, DER.
fn signing_certificate(call: &CallRecord) -> anyhow::Result<Vec<u8>> {
    let b64 = call
        .certificate_der_base64
        .as_deref()
        .with_context(|| format!("no certificate recorded: {call:?}"))?;
    Ok(BASE64.decode(b64)?)
}

/// Whether `leaf` (DER) was signed by the CA certificate `ca` (DER).
fn signed_by(leaf: &[u8], ca: &[u8]) -> anyhow::Result<bool> {
    let (_, leaf) = X509Certificate::from_der(leaf)?;
    let (_, ca) = X509Certificate::from_der(ca)?;
    Ok(leaf.verify_signature(Some(ca.public_key())).is_ok())
}

fn pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        BASE64.encode(der)
    )
}

/// `openssl verify` of `leaf` (DER) as a TLS client certificate under `bundle` (PEM).
async fn openssl_verifies(leaf: &[u8], bundle: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (leaf_path, bundle_path) = (dir.path().join("leaf.pem"), dir.path().join("ca.pem"));
    std::fs::write(&leaf_path, pem(leaf))?;
    std::fs::write(&bundle_path, bundle)?;
    let out = tokio::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&bundle_path)
        .arg(&leaf_path)
        .output()
        .await
        .context("openssl")?;
    ensure!(
        out.status.success(),
        "openssl refused podcreds' certificate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Asks the operator for an exchange of `ns/name` now and waits for its outcome: whether it
/// succeeded (what `podcreds refresh` said goes to the test's output).
async fn refresh(env: &Env, ns: &str, name: &str) -> anyhow::Result<bool> {
    let out = podcreds_cli(env, &["refresh", "-n", ns, name, "--wait", "60s"]).await?;
    eprintln!(
        "podcreds refresh {ns}/{name}: {}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.status.success())
}

/// The reason of the Ready condition, and of Degraded when Ready holds (a failed refresh of a
/// binding whose credentials are still valid).
async fn failure_reason(env: &Env, ns: &str, name: &str) -> anyhow::Result<(String, String)> {
    let b = env.bindings(ns).get(name).await?;
    let status = b.status.as_ref().context("no status")?;
    let find = |t: &str| status.conditions.iter().find(|c| c.type_ == t);
    let reason = match (find("Ready"), find("Degraded")) {
        (Some(r), Some(d)) if r.status == "True" && d.status == "True" => d.reason.clone(),
        (Some(r), _) => r.reason.clone(),
        _ => String::new(),
    };
    let message = status
        .conditions
        .iter()
        .filter(|c| c.status != "True" || c.type_ == "Degraded")
        .map(|c| c.message.clone())
        .collect::<Vec<_>>()
        .join(" | ");
    Ok((reason, format!("{message} | {}", ready_message(&b))))
}

/// podcreds as the CA: a binding becomes Ready, the AWS CLI works with only its Secret, the
/// session carries the ServiceAccount in its principal tags and source identity, each exchange
/// is signed with a new leaf `openssl verify` accepts under the printed bundle, a role chain
/// after it is clamped to an hour and its hop's trust pinned to the certificate's subject, and a
/// role trusting another subject is refused with a hint naming the expected one.
pub async fn podcreds_as_the_ca_gets_working_credentials(env: &Env) -> anyhow::Result<()> {
    let s = scene(env, "ra", &["ra", "other"], true).await?;
    let ns = s.ns.clone();
    let (role, other_role, hop) = (s.role("ra"), s.role("other"), s.role("hop"));
    let app = ra_spec(&role, json!({}));
    let chained = ra_spec(
        &role,
        json!({"durationSeconds": 7200, "roleChain": [{"roleArn": hop}]}),
    );
    // The IAM side, as the admin does it: the printed trust policy of every role.
    apply_printed_trust_policies(
        env,
        &s.sts,
        &[
            manifest(&ns, "app", app.clone()),
            manifest(&ns, "chained", chained.clone()),
        ],
        &[],
    )
    .await?;
    // A role whose trust policy names another ServiceAccount's certificate.
    let other_policy = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "rolesanywhere.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Condition": {
            "ArnEquals": {"aws:SourceArn": ANCHOR},
            "StringEquals": {"aws:PrincipalTag/x509Subject/CN": format!("{ns}.someone-else")},
        },
    }]});
    s.sts.try_add_role(sts_emulator::role_from_trust_policy(
        &other_role,
        &other_policy,
        "unused",
    )?)?;

    let binding = env.create_ready(&ns, "app", app, READY).await?;
    let assumed = binding
        .status
        .as_ref()
        .and_then(|st| st.assumed_role_arn.clone())
        .context("assumedRoleArn")?;
    let first = s.sessions().pop().context("no CreateSession")?;
    let serial = first.certificate_serial.clone().context("serial")?;
    // Roles Anywhere names the session after the certificate's serial.
    let expected = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ns}-ra/{serial}");
    ensure!(assumed == expected, "{assumed} != {expected}");

    // A real AWS client with only the Secret's files.
    let data = env.secret_data(&ns, "app").await?;
    let dir = tempfile::tempdir()?;
    let (creds, config) = crate::support::secret_files(dir.path(), &data)?;
    let ident = aws_caller_identity(
        &s.sts.url(),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &creds),
            ("AWS_CONFIG_FILE", &config),
        ],
    )
    .await?;
    ensure!(ident["Arn"] == expected.as_str(), "AWS CLI saw {ident}");

    // What Roles Anywhere saw: the ServiceAccount in the subject's principal tags and the source
    // identity, a certificate of the CA the trust anchor holds.
    let tag = |call: &CallRecord, key: &str| {
        call.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.clone())
    };
    ensure!(first.result == "Ok", "{first:?}");
    ensure!(
        tag(&first, "x509Subject/CN") == Some(format!("{ns}.app")),
        "{first:?}"
    );
    ensure!(
        tag(&first, "x509Subject/OU") == Some(ns.clone()),
        "{first:?}"
    );
    ensure!(
        tag(&first, "x509SAN/URI") == Some(format!("spiffe://cluster.local/ns/{ns}/sa/app")),
        "{first:?}"
    );
    ensure!(
        first.source_identity.as_deref() == Some(&*format!("CN={ns}.app")),
        "{first:?}"
    );
    let bundle = printed_bundle(env, &s.operator_ns).await?;
    openssl_verifies(&signing_certificate(&first)?, &bundle).await?;

    // Every exchange signs with a leaf of its own.
    ensure!(refresh(env, &ns, "app").await?, "the refresh failed");
    let sessions = s.sessions();
    let serials: std::collections::BTreeSet<_> = sessions
        .iter()
        .filter_map(|c| c.certificate_serial.clone())
        .collect();
    ensure!(
        sessions.len() >= 2 && serials.len() == sessions.len(),
        "a certificate signed twice: {sessions:?}"
    );
    for call in &sessions {
        openssl_verifies(&signing_certificate(call)?, &bundle).await?;
    }

    // A chain after Roles Anywhere: one hour at most, the hop trusting the certificate's subject.
    let chained = env.create_ready(&ns, "chained", chained, READY).await?;
    let conditions = &chained.status.as_ref().context("status")?.conditions;
    ensure!(
        conditions
            .iter()
            .any(|c| c.type_ == "SessionDurationClamped" && c.status == "True"),
        "{conditions:?}"
    );
    let hop_call = s
        .sts
        .calls()
        .calls
        .into_iter()
        .rfind(|c| c.action == "AssumeRole" && c.role_arn.as_deref() == Some(&*hop))
        .context("no AssumeRole of the hop")?;
    ensure!(hop_call.result == "Ok", "{hop_call:?}");
    ensure!(hop_call.granted_seconds == Some(3600), "{hop_call:?}");
    ensure!(
        hop_call.source_identity.as_deref() == Some(&*format!("CN={ns}.app")),
        "the source identity must reach the hop: {hop_call:?}"
    );

    // A role trusting another subject: refused, and the condition names the subject expected.
    env.create_binding(&ns, "other", ra_spec(&other_role, json!({})))
        .await?;
    let refused = env
        .wait_reason(&ns, "other", "StsAccessDenied", READY)
        .await?;
    let message = ready_message(&refused);
    ensure!(
        message.contains(&format!("aws:PrincipalTag/x509Subject/CN \"{ns}.app\""))
            && message.contains("podcreds iam trust-policy"),
        "{message}"
    );

    // Another ServiceAccount of the namespace naming the same role: its certificate's subject is
    // not the one the printed trust policy pins, so Roles Anywhere refuses it.
    env.service_account(&ns, "intruder").await?;
    let mut intruder = ra_spec(&role, json!({}));
    intruder["serviceAccountName"] = json!("intruder");
    env.create_binding(&ns, "intruder", intruder).await?;
    env.wait_reason(&ns, "intruder", "StsAccessDenied", READY)
        .await?;

    let metrics = s.operator.metrics().await?;
    ensure!(
        counter(
            &metrics,
            "podcreds_sts_request_duration_seconds_count{flow=\"RolesAnywhere\",outcome=\"success\"}"
        ) >= 2.0,
        "{metrics}"
    );
    // The CA key and the certificates' keys never reach the log.
    let log = s.operator.log();
    ensure!(
        !log.contains("PRIVATE KEY"),
        "a private key in the operator log"
    );
    s.sts.shutdown();
    Ok(())
}

/// A rotation of podcreds' CA through `add-next`, `promote` and `retire`, the trust anchor
/// updated after each as `podcreds rolesanywhere-ca` says: no exchange fails, and signing moves to
/// the new CA. Then a rotation whose trust-anchor update is skipped: the condition names the fix,
/// and the update brings the binding back.
pub async fn ca_rotation_keeps_exchanges_working(env: &Env) -> anyhow::Result<()> {
    let s = scene(env, "ra-rotate", &["ra"], true).await?;
    let ns = s.ns.clone();
    let op_ns = s.operator_ns.clone();
    let spec = ra_spec(&s.role("ra"), json!({}));
    apply_printed_trust_policies(env, &s.sts, &[manifest(&ns, "app", spec.clone())], &[]).await?;
    env.create_ready(&ns, "app", spec, READY).await?;
    let step = |name: &'static str| {
        let op_ns = op_ns.clone();
        async move { podcreds(env, &["rolesanywhere-ca", name, "--namespace", &op_ns]).await }
    };
    let upload = |bundle: &str| s.sts.add_trust_anchor(TrustAnchor::new(ANCHOR, bundle));
    let certificates = |bundle: &str| podcreds::keyring::pem_certificates_der(bundle).len();

    // 1. A next CA in the bundle, uploaded: the old one still signs.
    let both = step("add-next").await?;
    ensure!(certificates(&both) == 2, "{both}");
    upload(&both)?;
    ensure!(
        refresh(env, &ns, "app").await?,
        "refresh after add-next failed"
    );
    // 2. Promote: exchanges move to the new CA (the operator rereads its key Secret).
    step("promote").await?;
    let new_ca = ca_ring(env, &op_ns)
        .await?
        .active
        .certificate_der()
        .to_vec();
    let switched = wait_for(Duration::from_secs(90), || async {
        let ok = refresh(env, &ns, "app").await.ok()?;
        let last = s.sessions().pop()?;
        (ok && signed_by(&signing_certificate(&last).ok()?, &new_ca).ok()?).then_some(())
    })
    .await;
    ensure!(
        switched.is_some(),
        "the operator never signed with the new CA"
    );
    // 3. Retire the old CA; the bundle holds the new one only.
    let only_new = step("retire").await?;
    ensure!(certificates(&only_new) == 1, "{only_new}");
    upload(&only_new)?;
    ensure!(
        refresh(env, &ns, "app").await?,
        "refresh after retire failed"
    );
    let sessions = s.sessions();
    for call in &sessions {
        ensure!(
            call.result == "Ok",
            "an exchange failed during the rotation: {call:?}"
        );
    }
    let last = sessions.last().context("no session")?;
    ensure!(signed_by(&signing_certificate(last)?, &new_ca)?, "{last:?}");

    // A rotation whose trust-anchor update is skipped: add-next and promote, nothing uploaded.
    step("add-next").await?;
    step("promote").await?;
    let refused = wait_for(Duration::from_secs(90), || async {
        let _ = refresh(env, &ns, "app").await;
        let (reason, message) = failure_reason(env, &ns, "app").await.ok()?;
        (reason == "RolesAnywhereCertificateRejected").then_some(message)
    })
    .await
    .context("a CA the trust anchor does not hold was never reported")?;
    ensure!(
        refused.contains("does not hold podcreds' signing CA")
            && refused.contains("podcreds rolesanywhere trust-anchor"),
        "{refused}"
    );
    // The fix it names: upload the bundle; the next exchange works.
    upload(&printed_bundle(env, &op_ns).await?)?;
    ensure!(
        refresh(env, &ns, "app").await?,
        "the binding did not recover"
    );
    env.wait_ready(&ns, "app", "True", READY).await?;
    s.sts.shutdown();
    Ok(())
}

/// A `kubernetes.io/tls` Secret named `name` holding `workload`'s certificate and key.
fn tls_secret(
    name: &str,
    workload: &crate::support::rolesanywhere::Workload,
) -> anyhow::Result<Secret> {
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt", std::fs::read(&workload.certificate)?),
                ("tls.key", std::fs::read(&workload.private_key)?),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v)))
            .collect(),
        ),
        ..Secret::default()
    })
}

/// An admin's certificate (as cert-manager would keep it, in a `kubernetes.io/tls` Secret) signs
/// the exchanges of an operator that is no CA itself; once the trust anchor revokes it, the
/// binding says so; an expired one is refused before anything is sent.
pub async fn an_admin_certificate_signs_until_revoked_or_expired(env: &Env) -> anyhow::Result<()> {
    let s = scene(env, "ra-admin", &["ra"], false).await?;
    let ns = s.ns.clone();
    let ca = Ca::root("e2e admin CA")?;
    s.sts.add_trust_anchor(TrustAnchor::new(ANCHOR, &ca.pem))?;
    let dir = tempfile::tempdir()?;
    let subject = |ns: String| {
        move |p: &mut rcgen::CertificateParams| {
            p.distinguished_name
                .push(rcgen::DnType::OrganizationalUnitName, ns);
        }
    };
    let workload = ca.issue(
        dir.path(),
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &format!("{ns}.app"),
        0x5eed,
        subject(ns.clone()),
    )?;
    env.secrets(&ns)
        .create(&PostParams::default(), &tls_secret("app-cert", &workload)?)
        .await?;
    let spec = ra_spec(
        &s.role("ra"),
        json!({"rolesAnywhere": {
            "trustAnchorArn": ANCHOR, "profileArn": PROFILE, "certificateSecretName": "app-cert",
        }}),
    );
    apply_printed_trust_policies(env, &s.sts, &[manifest(&ns, "app", spec.clone())], &[]).await?;
    env.create_ready(&ns, "app", spec, READY).await?;
    let first = s.sessions().pop().context("no CreateSession")?;
    ensure!(
        first.result == "Ok" && first.certificate_serial.as_deref() == Some(&*workload.serial_hex),
        "{first:?}"
    );

    // Revoked by the trust anchor: the condition says so and what to do.
    s.sts.revoke_serial(ANCHOR, &workload.serial_hex)?;
    ensure!(
        !refresh(env, &ns, "app").await?,
        "a revoked certificate still signed"
    );
    let (reason, message) = failure_reason(env, &ns, "app").await?;
    ensure!(
        reason == "RolesAnywhereCertificateRejected",
        "{reason}: {message}"
    );
    ensure!(message.contains("revocation list"), "{message}");

    // An expired certificate in the Secret: refused by the operator, nothing sent.
    let expired = ca.issue(
        dir.path(),
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &format!("{ns}.app"),
        0x5eee,
        |p| {
            subject(ns.clone())(p);
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        },
    )?;
    env.secrets(&ns)
        .replace("app-cert", &PostParams::default(), &{
            let mut secret = tls_secret("app-cert", &expired)?;
            secret.metadata.resource_version = env
                .secrets(&ns)
                .get("app-cert")
                .await?
                .metadata
                .resource_version;
            secret
        })
        .await?;
    let sent = s.sessions().len();
    ensure!(
        !refresh(env, &ns, "app").await?,
        "an expired certificate still signed"
    );
    let (reason, message) = failure_reason(env, &ns, "app").await?;
    ensure!(
        reason == "RolesAnywhereCertificateInvalid",
        "{reason}: {message}"
    );
    ensure!(message.contains("expired"), "{message}");
    ensure!(
        s.sessions().len() == sent,
        "an expired certificate was sent"
    );
    s.sts.shutdown();
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![rolesanywhere_flow:
    podcreds_as_the_ca_gets_working_credentials,
    ca_rotation_keeps_exchanges_working,
    an_admin_certificate_signs_until_revoked_or_expired,
];

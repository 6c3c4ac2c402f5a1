//! The peer: external-secrets (ESO), the operator most clusters already run for AWS-backed
//! Secrets, on the same control plane, STS emulator and N as podcreds.
//!
//! ESO authenticates the same way (a TokenRequest, then `AssumeRoleWithWebIdentity`), but its
//! product is different: a SecretStore holds no credentials (it only proves them), and an
//! ExternalSecret copies a value out of Secrets Manager (moto here) into a Secret. So two things
//! are timed: N SecretStores reaching Ready (one TokenRequest and one STS call each, the part of
//! podcreds' work ESO shares), and N ExternalSecrets reaching their Secret (ESO's whole job, which
//! also calls STS again, since v0.16 keeps no session between reconciliations by default).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use podcreds_testenv::{ControlPlane, Process, free_port};
use serde::Serialize;
use sts_emulator::Emulator;

use super::phase::{Phase, PhaseMeter, settle};
use super::proc::{cpu_seconds, rss_mib, rss_split_mib};
use super::scale::{Percentiles, ready_timing};
use super::{Args, ROLE, create_namespace};
use crate::testenv::ExternalSecrets;

/// The key every ExternalSecret reads from Secrets Manager.
const REMOTE_KEY: &str = "bench/database";
const REMOTE_VALUE: &str = "s3cr3t-value";
/// The session name ESO's JWT auth sends (fixed in v0.16.2).
const ESO_SESSION_NAME: &str = "external-secrets-provider-aws";

/// One timed ESO phase (SecretStores or ExternalSecrets) for N objects.
#[derive(Serialize, Debug)]
pub struct PeerPhase {
    pub objects: usize,
    /// Time the benchmark client needed just to create the objects.
    pub create_seconds: f64,
    pub all_ready_seconds: f64,
    pub time_to_ready: Percentiles,
    /// `AssumeRoleWithWebIdentity` calls the emulator answered during the phase, and the session
    /// names they carried.
    pub sts_calls: u64,
    pub sts_session_names: Vec<String>,
    /// TokenRequests the apiserver served during the phase.
    pub token_requests: f64,
    /// Requests the apiserver served during the phase per object, the client's creates included.
    pub apiserver_requests_per_object: f64,
    /// CPU seconds of moto (Secrets Manager) during the phase.
    pub moto_cpu_seconds: f64,
    /// How long after the last Ready ESO's work went on (counted in the phase).
    pub settle_seconds: f64,
    /// ESO's resident memory once it settled.
    pub rss_after_mib: f64,
    /// From the first create until ESO settled.
    pub phase: Phase,
    /// From the first create until the last Ready: what the timed window cost.
    pub phase_until_ready: Phase,
}

/// ESO on one N.
#[derive(Serialize, Debug)]
pub struct PeerResult {
    pub peer: String,
    pub version: String,
    pub bindings: usize,
    pub flags: Vec<String>,
    pub secret_stores: PeerPhase,
    pub external_secrets: PeerPhase,
    /// Managed Secrets found after the ExternalSecrets phase, each checked to hold the value.
    pub secrets_written: usize,
    /// Error lines in ESO's log (at `--loglevel=warn`), and the first of them.
    pub log_errors: usize,
    pub first_log_error: Option<String>,
    /// Over the whole life of the process (start, warm-up, both phases).
    pub rss_peak_mib: f64,
    pub rss_steady_mib: f64,
    pub rss_steady_anonymous_mib: f64,
    pub rss_steady_file_mib: f64,
}

/// Secrets Manager for the ExternalSecrets: moto from the test venv, with one secret.
pub struct Moto {
    process: Process,
    pub url: String,
}

pub async fn start_moto(plane: &ControlPlane) -> anyhow::Result<Moto> {
    let (process, url) = podcreds_testenv::moto::start(plane.dir()).await?;
    create_remote_secret(&url)?;
    Ok(Moto { process, url })
}

/// Creates the secret the ExternalSecrets read, with boto3 from the test venv.
fn create_remote_secret(moto_url: &str) -> anyhow::Result<()> {
    let python = podcreds_testenv::tools::venv_program("python")?;
    let mut cmd = std::process::Command::new(python);
    podcreds_testenv::tools::clean_aws_env(&mut cmd);
    let status = cmd
        .args([
            "-c",
            "import sys, boto3\n\
             sm = boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                               aws_access_key_id='bench', aws_secret_access_key='bench')\n\
             sm.create_secret(Name=sys.argv[2], SecretString=sys.argv[3])\n",
            moto_url,
            REMOTE_KEY,
            REMOTE_VALUE,
        ])
        .status()
        .context("cannot run the venv's python")?;
    if !status.success() {
        bail!("creating the Secrets Manager secret in moto failed ({status})");
    }
    Ok(())
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", kind),
        plural,
    )
}

fn secret_store(name: &str, sa: &str) -> anyhow::Result<DynamicObject> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "SecretStore",
        "metadata": {"name": name},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager",
            "region": "us-east-1",
            "auth": {"jwt": {"serviceAccountRef": {"name": sa}}},
        }}},
    }))?)
}

fn external_secret(name: &str, store: &str) -> anyhow::Result<DynamicObject> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": name},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"name": store, "kind": "SecretStore"},
            "target": {"name": name},
            "data": [{"secretKey": "value", "remoteRef": {"key": REMOTE_KEY}}],
        },
    }))?)
}

/// Whether an ESO object reports `Ready=True`.
fn is_ready(object: &DynamicObject) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Records when each object of `api` is first seen Ready.
fn watch_ready(
    api: Api<DynamicObject>,
) -> (
    Arc<Mutex<HashMap<String, Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = ready.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(item) = stream.next().await {
            let Ok(object) = item else { continue };
            if is_ready(&object)
                && let (Some(name), Ok(mut map)) = (object.metadata.name.clone(), seen.lock())
            {
                map.entry(name).or_insert_with(Instant::now);
            }
        }
    });
    (ready, task)
}

/// ServiceAccounts `sa-0..sa-<n>` in `ns` carrying the role annotation ESO's JWT auth reads.
async fn create_annotated_service_accounts(
    client: &kube::Client,
    ns: &str,
    names: impl Iterator<Item = String>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(names)
        .map(|name| {
            let api = &api;
            async move {
                let sa = ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(name),
                        annotations: Some(
                            [("eks.amazonaws.com/role-arn".to_string(), ROLE.to_string())].into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    ..ServiceAccount::default()
                };
                api.create(&PostParams::default(), &sa).await.map(|_| ())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Creates the ESO CRDs' handlers before any clock starts (as `warm_up` does for bindings).
pub async fn warm_up(client: &kube::Client) -> anyhow::Result<()> {
    let ns = "warm-up-eso";
    create_namespace(client, ns).await?;
    for (object, kind, plural) in [
        (
            secret_store("warm-up", "warm-up")?,
            "SecretStore",
            "secretstores",
        ),
        (
            external_secret("warm-up", "warm-up")?,
            "ExternalSecret",
            "externalsecrets",
        ),
    ] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &resource(kind, plural));
        api.create(&PostParams::default(), &object).await?;
        api.delete("warm-up", &DeleteParams::default()).await?;
    }
    Ok(())
}

/// Runs ESO with only the reconcilers it needs, podcreds' concurrency and no client-side rate
/// limit to speak of (podcreds has none by default).
fn start_eso(
    plane: &ControlPlane,
    eso: &ExternalSecrets,
    emulator: &Emulator,
    moto_url: &str,
    ns: &str,
    args: &Args,
) -> anyhow::Result<(Process, Vec<String>)> {
    let flags = vec![
        format!("--namespace={ns}"),
        format!("--concurrent={}", args.concurrency),
        "--client-qps=10000".to_string(),
        "--client-burst=10000".to_string(),
        "--loglevel=warn".to_string(),
        format!("--metrics-addr=127.0.0.1:{}", free_port()?),
        "--enable-cluster-store-reconciler=false".to_string(),
        "--enable-cluster-external-secret-reconciler=false".to_string(),
        "--enable-push-secret-reconciler=false".to_string(),
        "--enable-cluster-push-secret-reconciler=false".to_string(),
    ];
    let env: Vec<(String, String)> = [
        (
            "KUBECONFIG",
            plane.kubeconfig.to_string_lossy().into_owned(),
        ),
        ("AWS_STS_ENDPOINT", emulator.url()),
        ("AWS_SECRETSMANAGER_ENDPOINT", moto_url.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        // Nothing from this machine's AWS configuration.
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_string()),
        ("AWS_CONFIG_FILE", "/dev/null".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let process = Process::spawn(
        &format!("external-secrets-{ns}"),
        &eso.binary,
        &flags,
        &env,
        plane.dir(),
    )?;
    Ok((process, flags))
}

/// Waits until `name` of `api` is Ready, failing early if ESO exits.
async fn wait_ready(
    api: &Api<DynamicObject>,
    name: &str,
    eso: &mut Process,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = eso.exited() {
            bail!("external-secrets exited ({status}):\n{}", eso.log_tail(30));
        }
        if let Ok(object) = api.get(name).await
            && is_ready(&object)
        {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "{name} not Ready after {timeout:?}; external-secrets log:\n{}",
                eso.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `objects` (name, object) `concurrency` at a time and waits until all are Ready.
#[allow(clippy::too_many_arguments)]
async fn timed_phase(
    plane: &ControlPlane,
    client: &kube::Client,
    emulator: &Emulator,
    api: &Api<DynamicObject>,
    objects: Vec<(String, DynamicObject)>,
    eso: &mut Process,
    moto: &Moto,
    what: &str,
    args: &Args,
) -> anyhow::Result<PeerPhase> {
    let n = objects.len();
    let (ready, watch_task) = watch_ready(api.clone());
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let calls_before = emulator.calls().calls.len();
    let moto_cpu_before = cpu_seconds(moto.process.pid());
    let meter = PhaseMeter::start(plane, client, Some(eso.pid())).await?;
    let started = Instant::now();
    futures::stream::iter(objects)
        .map(|(name, object)| {
            let created = &created;
            async move {
                api.create(&PostParams::default(), &object).await?;
                if let Ok(mut c) = created.lock() {
                    c.insert(name, Instant::now());
                }
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let create_seconds = started.elapsed().as_secs_f64();
    loop {
        let count = ready
            .lock()
            .map(|r| r.keys().filter(|k| *k != "warm-up").count())
            .unwrap_or(0);
        if count >= n {
            break;
        }
        if let Some(status) = eso.exited() {
            bail!("external-secrets exited ({status}):\n{}", eso.log_tail(30));
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!(
                "only {count} of {n} {what} Ready after 30 minutes; external-secrets log:\n{}",
                eso.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let phase_until_ready = meter.snapshot(client).await?;
    let ready_times = ready.lock().map(|r| r.clone()).unwrap_or_default();
    let created = created.lock().map(|c| c.clone()).unwrap_or_default();
    let (all_ready_seconds, time_to_ready) = ready_timing(started, &created, &ready_times);
    watch_task.abort();
    // ESO reconciles each object again after its own status write (and validates the store
    // again); that work is counted too, and must not spill into the next phase.
    let settle_seconds = settle(client, emulator).await?;
    let phase = meter.finish(client).await?;
    let moto_cpu_seconds = cpu_seconds(moto.process.pid()) - moto_cpu_before;
    let log = emulator.calls();
    let calls: Vec<&sts_emulator::CallRecord> = log.calls[calls_before.min(log.calls.len())..]
        .iter()
        .filter(|c| c.action == "AssumeRoleWithWebIdentity")
        .collect();
    let failed = calls.iter().filter(|c| c.result != "Ok").count();
    if failed > 0 {
        println!("    note: {failed} STS calls failed during the {what} phase");
    }
    let sts_session_names: Vec<String> = calls
        .iter()
        .filter_map(|c| c.session_name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rss_after_mib = rss_mib(eso.pid()).0;
    let result = PeerPhase {
        objects: n,
        create_seconds,
        all_ready_seconds,
        time_to_ready,
        sts_calls: calls.len() as u64,
        sts_session_names,
        token_requests: phase.served("POST serviceaccounts/token"),
        apiserver_requests_per_object: phase.requests() / n.max(1) as f64,
        moto_cpu_seconds,
        settle_seconds,
        rss_after_mib,
        phase,
        phase_until_ready,
    };
    println!(
        "    {n} {what}: all Ready after {:.2}s (p50 {:.0} ms, p99 {:.0} ms); {} STS calls, {} TokenRequests, {:.2} apiserver requests each; ESO CPU {:.1} s, moto CPU {:.1} s, RSS {:.1} MiB",
        result.all_ready_seconds,
        result.time_to_ready.p50_ms,
        result.time_to_ready.p99_ms,
        result.sts_calls,
        result.token_requests,
        result.apiserver_requests_per_object,
        result.phase.operator_cpu_seconds,
        result.moto_cpu_seconds,
        result.rss_after_mib,
    );
    Ok(result)
}

/// ESO on N: N SecretStores, then N ExternalSecrets, each to Ready.
pub async fn measure(
    plane: &ControlPlane,
    emulator: &Emulator,
    eso: &ExternalSecrets,
    moto: &Moto,
    n: usize,
    args: &Args,
) -> anyhow::Result<PeerResult> {
    let client = plane.client().await?;
    let ns = format!("eso-{n}");
    create_namespace(&client, &ns).await?;
    println!(
        "  N={n}: external-secrets {}: {n} annotated ServiceAccounts (not timed)",
        eso.version
    );
    create_annotated_service_accounts(
        &client,
        &ns,
        (0..n)
            .map(|i| format!("sa-{i}"))
            .chain(std::iter::once("warm-up".to_string())),
        args.concurrency,
    )
    .await?;
    let (mut process, flags) = start_eso(plane, eso, emulator, &moto.url, &ns, args)?;
    let stores: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource("SecretStore", "secretstores"),
    );
    let externals: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource("ExternalSecret", "externalsecrets"),
    );
    // Ready means caches synced and both reconcilers working: one store and one ExternalSecret
    // made Ready before the clocks start.
    stores
        .create(&PostParams::default(), &secret_store("warm-up", "warm-up")?)
        .await?;
    wait_ready(&stores, "warm-up", &mut process, Duration::from_secs(120)).await?;
    externals
        .create(
            &PostParams::default(),
            &external_secret("warm-up", "warm-up")?,
        )
        .await?;
    wait_ready(
        &externals,
        "warm-up",
        &mut process,
        Duration::from_secs(120),
    )
    .await?;

    println!("  N={n}: creating {n} SecretStores");
    let store_objects = (0..n)
        .map(|i| {
            Ok((
                format!("store-{i}"),
                secret_store(&format!("store-{i}"), &format!("sa-{i}"))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secret_stores = timed_phase(
        plane,
        &client,
        emulator,
        &stores,
        store_objects,
        &mut process,
        moto,
        "SecretStores",
        args,
    )
    .await?;
    if secret_stores
        .sts_session_names
        .iter()
        .any(|s| s != ESO_SESSION_NAME)
    {
        println!(
            "    note: unexpected session names {:?}",
            secret_stores.sts_session_names
        );
    }

    println!("  N={n}: creating {n} ExternalSecrets");
    let external_objects = (0..n)
        .map(|i| {
            Ok((
                format!("es-{i}"),
                external_secret(&format!("es-{i}"), &format!("store-{i}"))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let external_secrets = timed_phase(
        plane,
        &client,
        emulator,
        &externals,
        external_objects,
        &mut process,
        moto,
        "ExternalSecrets",
        args,
    )
    .await?;

    // Ready must mean the Secret is there with the value from Secrets Manager.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let managed = secrets
        .list(&ListParams::default().labels("reconcile.external-secrets.io/managed=true"))
        .await?;
    let secrets_written = managed
        .items
        .iter()
        .filter(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("es-"))
        })
        .filter(|s| {
            s.data
                .as_ref()
                .and_then(|d| d.get("value"))
                .is_some_and(|v| v.0.as_slice() == REMOTE_VALUE.as_bytes())
        })
        .count();
    if secrets_written != n {
        bail!("{secrets_written} of {n} ExternalSecrets' Secrets hold the remote value");
    }
    let (rss_steady_mib, rss_peak_mib) = rss_mib(process.pid());
    let (rss_steady_anonymous_mib, rss_steady_file_mib) = rss_split_mib(process.pid());
    println!(
        "    external-secrets RSS steady {rss_steady_mib:.1} MiB ({rss_steady_anonymous_mib:.1} anonymous, {rss_steady_file_mib:.1} file), peak {rss_peak_mib:.1} MiB"
    );
    process.terminate()?;
    let log = process.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"error\""))
        .collect();
    if !errors.is_empty() {
        println!(
            "    note: {} error lines in the external-secrets log; first: {}",
            errors.len(),
            errors[0]
        );
    }
    Ok(PeerResult {
        log_errors: errors.len(),
        first_log_error: errors.first().map(|l| l.to_string()),
        peer: "external-secrets".into(),
        version: eso.version.clone(),
        bindings: n,
        flags,
        secret_stores,
        external_secrets,
        secrets_written,
        rss_peak_mib,
        rss_steady_mib,
        rss_steady_anonymous_mib,
        rss_steady_file_mib,
    })
}

//! The node endpoint: `Endpoint` bindings served by the node agent (`podcreds agent`) from the
//! leading operator's broker, over the container-credentials protocol.
//!
//! These run on the shared control plane, without a kubelet: the nodes are Node objects, the
//! pods API objects with `nodeName` set (never started), and their tokens come from TokenRequest
//! bound to those pods, exactly the claims a kubelet's projected token carries. The operator
//! runs with leader election and its broker on loopback; the Lease names an operator "pod" whose
//! status says 127.0.0.1, which is how the agent finds it. The agent listens on loopback (the
//! link-local address needs its own network namespace per agent; the address step is a unit of
//! its own), so a client's plain-HTTP FULL_URI is one the SDKs accept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use podcreds_testenv::{Process, loopback};
use serde_json::json;

use crate::support::endpoint::Scene;
use crate::support::endpoint::ask;
use crate::support::endpoint::{BINDING, OPERATOR_POD, create_pod, replica_args};
use crate::support::{Env, wait_for};

/// Asks and expects a refusal with `status` and `code`; returns the message.
async fn refused(
    scene: &Scene,
    binding: &str,
    token: Option<&str>,
    status: u16,
    code: &str,
) -> anyhow::Result<String> {
    let (got, body) = ask(&scene.agent_addr, binding, token).await?;
    ensure!(
        got == status && body["Code"] == code,
        "expected {status} {code}, got {got} {body}"
    );
    ensure!(
        body.get("AccessKeyId").is_none(),
        "a refusal carried credentials"
    );
    Ok(body["Message"].as_str().unwrap_or_default().to_string())
}

/// An operator "pod" in `ops` whose status gives `ip` (what the agent reads to reach it).
async fn operator_pod(
    env: &Env,
    ops: &str,
    name: &str,
    node: &str,
    ip: &str,
) -> anyhow::Result<()> {
    create_pod(env, ops, name, "default", node).await?;
    Api::<Pod>::namespaced(env.client.clone(), ops)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}]}})),
        )
        .await
        .with_context(|| format!("setting the IP of operator pod {name}"))?;
    Ok(())
}

pub async fn a_token_of_another_service_account_is_refused(env: &Env) -> anyhow::Result<()> {
    let scene = Scene::start(env, "ep-sa", None).await?;
    scene.granted(env).await?;
    env.service_account(&scene.ns, "other").await?;
    let (_, token) = scene
        .pod_token(
            env,
            &scene.ns,
            "other-pod",
            "other",
            &scene.node,
            podcreds::agent::POD_AUDIENCE,
        )
        .await?;
    let message = refused(&scene, BINDING, Some(&token), 403, "OtherServiceAccount").await?;
    ensure!(
        message.contains("binds ServiceAccount app") && message.contains("runs as other"),
        "{message}"
    );
    scene.logs_hide(&token)
}

pub async fn another_namespaces_binding_is_refused(env: &Env) -> anyhow::Result<()> {
    let scene = Scene::start(env, "ep-ns", None).await?;
    scene.granted(env).await?;
    // A pod of a ServiceAccount named like the binding's, in another namespace: the binding
    // name resolves in the pod's own namespace only.
    let (elsewhere, _) = env.app_namespace("ep-ns2", None).await?;
    let (_, token) = scene
        .pod_token(
            env,
            &elsewhere,
            "intruder",
            "app",
            &scene.node,
            podcreds::agent::POD_AUDIENCE,
        )
        .await?;
    let message = refused(&scene, BINDING, Some(&token), 404, "BindingNotFound").await?;
    ensure!(
        message.contains(&format!("namespace {elsewhere}")),
        "{message}"
    );
    scene.logs_hide(&token)
}

pub async fn a_deleted_pods_token_is_refused(env: &Env) -> anyhow::Result<()> {
    let scene = Scene::start(env, "ep-del", None).await?;
    scene.granted(env).await?;
    let (pod, token) = scene
        .pod_token(
            env,
            &scene.ns,
            "gone",
            "app",
            &scene.node,
            podcreds::agent::POD_AUDIENCE,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &scene.ns);
    pods.delete("gone", &DeleteParams::default().grace_period(0))
        .await?;
    let uid = pod.metadata.uid.clone();
    let gone = wait_for(Duration::from_secs(30), || async {
        match pods.get_opt("gone").await {
            Ok(None) => Some(()),
            Ok(Some(p)) if p.metadata.uid != uid => Some(()),
            _ => None,
        }
    })
    .await;
    ensure!(gone.is_some(), "the pod was not deleted");
    let message = refused(&scene, BINDING, Some(&token), 401, "PodTokenRefused").await?;
    ensure!(
        message.contains("projected ServiceAccount token"),
        "{message}"
    );
    scene.logs_hide(&token)
}

pub async fn a_pod_on_another_node_is_refused(env: &Env) -> anyhow::Result<()> {
    let scene = Scene::start(env, "ep-node", None).await?;
    scene.granted(env).await?;
    let (_, token) = scene
        .pod_token(
            env,
            &scene.ns,
            "elsewhere",
            "app",
            &scene.other_node,
            podcreds::agent::POD_AUDIENCE,
        )
        .await?;
    let message = refused(&scene, BINDING, Some(&token), 403, "OtherNode").await?;
    ensure!(
        message.contains(&scene.other_node) && message.contains(&scene.node),
        "{message}"
    );
    scene.logs_hide(&token)
}

pub async fn a_token_with_the_wrong_audience_is_refused(env: &Env) -> anyhow::Result<()> {
    let scene = Scene::start(env, "ep-aud", None).await?;
    scene.granted(env).await?;
    let (_, token) = scene
        .pod_token(
            env,
            &scene.ns,
            "sts-aud",
            "app",
            &scene.node,
            "sts.amazonaws.com",
        )
        .await?;
    let message = refused(&scene, BINDING, Some(&token), 401, "PodTokenRefused").await?;
    ensure!(message.contains(podcreds::agent::POD_AUDIENCE), "{message}");
    // A pod that forgot the token file fails loudly, naming what to set.
    let message = refused(&scene, BINDING, None, 400, "PodTokenMissing").await?;
    ensure!(
        message.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        "{message}"
    );
    scene.logs_hide(&token)
}

pub async fn a_binding_without_endpoint_delivery_is_refused(env: &Env) -> anyhow::Result<()> {
    let scene = Scene::start(env, "ep-sec", None).await?;
    let token = scene.granted(env).await?;
    env.create_ready(
        &scene.ns,
        "secret-only",
        crate::support::spec(&scene.role),
        Duration::from_secs(60),
    )
    .await?;
    let message = refused(&scene, "secret-only", Some(&token), 403, "NotEndpoint").await?;
    ensure!(
        message.contains("add Endpoint to its spec.delivery"),
        "{message}"
    );
    // The Endpoint binding wrote no Secret: its credentials never reached etcd.
    ensure!(
        env.secrets(&scene.ns).get_opt(BINDING).await?.is_none(),
        "an Endpoint-only binding wrote a Secret"
    );
    scene.logs_hide(&token)
}

/// The static pod client (`testenv/pod-client`), built by `cargo xtask test`.
fn pod_client() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PODCREDS_POD_CLIENT")
        .map(PathBuf::from)
        .context("PODCREDS_POD_CLIENT is not set: run the suite through `cargo xtask test`, which builds the static pod client (testenv/pod-client)")?;
    ensure!(path.is_file(), "{} does not exist", path.display());
    Ok(path)
}

/// The pod client on the container-credentials provider of the Rust SDK, calling STS through
/// `full_uri` every `interval_ms`.
fn sdk_client(
    env: &Env,
    dir: &Path,
    name: &str,
    full_uri: &str,
    token_file: &Path,
    interval_ms: u64,
) -> anyhow::Result<Process> {
    let process = Process::spawn(
        name,
        &pod_client()?,
        &[env.emulator.url(), interval_ms.to_string()],
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), full_uri.into()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ],
        dir,
    )?;
    crate::register_log(process.log_path().to_path_buf());
    Ok(process)
}

/// The AWS SDK for Go v2 client (`testenv/go/sdk-go-v2`) on its default credential chain,
/// calling STS through `full_uri`.
fn go_sdk_client(
    env: &Env,
    dir: &Path,
    full_uri: &str,
    token_file: &Path,
    interval_ms: u64,
) -> anyhow::Result<Process> {
    let process = Process::spawn(
        "sdk-go-v2-client",
        &podcreds_testenv::tools::sdk_go_v2_client()?,
        &[env.emulator.url(), interval_ms.to_string()],
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), full_uri.into()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ],
        dir,
    )?;
    crate::register_log(process.log_path().to_path_buf());
    Ok(process)
}

/// Credential sets seen in `rounds`, in order; or the first failed round.
fn credential_sets(rounds: &[serde_json::Value]) -> Result<Vec<String>, serde_json::Value> {
    if let Some(bad) = rounds.iter().find(|r| r.get("error").is_some()) {
        return Err(bad.clone());
    }
    let mut sets: Vec<String> = rounds
        .iter()
        .filter_map(|r| {
            r["credentials"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_string)
        })
        .collect();
    sets.dedup();
    Ok(sets)
}

/// The JSON lines a pod client printed.
fn rounds(process: &Process) -> Vec<serde_json::Value> {
    process
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("unix_ms").is_some())
        .collect()
}

pub async fn a_pod_calls_sts_through_the_node_agent_across_refreshes(
    env: &Env,
) -> anyhow::Result<()> {
    // 30-second sessions: a refresh every 20 s or so.
    let scene = Scene::start(env, "ep-sdk", Some(30)).await?;
    let (_, token) = scene
        .pod_token(
            env,
            &scene.ns,
            "sdk",
            "app",
            &scene.node,
            podcreds::agent::POD_AUDIENCE,
        )
        .await?;
    let token_file = scene.dir.join("pod-token");
    std::fs::write(&token_file, &token)?;
    let full_uri = format!("http://{}/v1/credentials/{BINDING}", scene.agent_addr);
    let client = sdk_client(env, &scene.dir, "pod-client", &full_uri, &token_file, 1000)?;
    let go_client = go_sdk_client(env, &scene.dir, &full_uri, &token_file, 1000)?;
    let role_name = scene
        .role
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    // Four credential sets seen by both clients: three refreshes, every call succeeding.
    let seen = wait_for(Duration::from_secs(240), || async {
        let (rust, go) = (rounds(&client), rounds(&go_client));
        match (credential_sets(&rust), credential_sets(&go)) {
            (Err(bad), _) | (_, Err(bad)) => Some(Err(bad)),
            (Ok(a), Ok(b)) => (a.len() >= 4 && b.len() >= 4).then_some(Ok((rust, go))),
        }
    })
    .await;
    let (rust_rounds, go_rounds) = match seen {
        Some(Ok(rounds)) => rounds,
        Some(Err(bad)) => bail!("a call through the endpoint failed: {bad}"),
        None => bail!(
            "the clients saw fewer than four credential sets each: Rust {:?}, Go {:?}",
            credential_sets(&rounds(&client)),
            credential_sets(&rounds(&go_client))
        ),
    };
    let rounds: Vec<serde_json::Value> = rust_rounds.iter().chain(&go_rounds).cloned().collect();
    for round in &rounds {
        let arn = round["arn"].as_str().unwrap_or_default();
        ensure!(
            arn.contains(&format!("assumed-role/{role_name}/")),
            "called as {arn}, not as the binding's role"
        );
    }
    // One STS call per credential set the operator issued, however often the client asked.
    let calls = env.calls_for(&scene.role);
    let metrics = scene.operator.metrics().await?;
    let issued = crate::support::counter(&metrics, "podcreds_credential_refreshes_total");
    ensure!(
        calls as f64 == issued,
        "{calls} STS calls for {issued} credential sets"
    );
    let fetches = rounds
        .last()
        .and_then(|r| r["fetches"].as_u64())
        .unwrap_or(0);
    ensure!(
        (calls as u64) < rounds.len() as u64,
        "{calls} STS calls for {} client calls ({fetches} fetches)",
        rounds.len()
    );
    ensure!(
        env.secrets(&scene.ns).get_opt(BINDING).await?.is_none(),
        "an Endpoint-only binding wrote a Secret"
    );
    scene.logs_hide(&token)
}

pub async fn the_sdk_refuses_plain_http_on_a_pod_ip(env: &Env) -> anyhow::Result<()> {
    // Why the agent listens on a link-local address: the SDK sends the token in clear only to
    // loopback and the container endpoints' link-local addresses. A pod IP is refused before any
    // connection (this run's network namespace has no route there anyway).
    let dir = env.plane.dir().join("endpoint-pod-ip");
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, "not-a-token")?;
    let client = sdk_client(
        env,
        &dir,
        "pod-client-pod-ip",
        "http://10.249.250.7/v1/credentials/b",
        &token_file,
        500,
    )?;
    let first = wait_for(Duration::from_secs(30), || async {
        rounds(&client).into_iter().next()
    })
    .await
    .context("the client printed nothing")?;
    let error = first["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("did not refer to an allowed IP address"),
        "the SDK did not refuse a plain-HTTP pod IP as such: {first}"
    );
    Ok(())
}

/// The leader Lease's holder.
async fn lease_holder(env: &Env, ops: &str) -> Option<String> {
    let lease =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(env.client.clone(), ops)
            .get("podcreds-leader")
            .await
            .ok()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

pub async fn agent_restart_and_leader_fail_over_fail_no_call(env: &Env) -> anyhow::Result<()> {
    let mut scene = Scene::start(env, "ep-ha", Some(30)).await?;
    // A standby replica on another loopback address, as a second operator pod.
    operator_pod(env, &scene.ops, "operator-1", &scene.node, "127.0.0.2").await?;
    let standby = env
        .start_operator(
            &[&scene.ns],
            &env.emulator.url(),
            &replica_args(
                &scene.ops,
                "operator-1",
                "127.0.0.2",
                scene.broker_port,
                &scene.agents,
                &scene.agent_sa,
            )
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        )
        .await?;
    let (_, token) = scene
        .pod_token(
            env,
            &scene.ns,
            "ha",
            "app",
            &scene.node,
            podcreds::agent::POD_AUDIENCE,
        )
        .await?;
    let token_file = scene.dir.join("ha-token");
    std::fs::write(&token_file, &token)?;
    let full_uri = format!("http://{}/v1/credentials/{BINDING}", scene.agent_addr);
    let rust = sdk_client(
        env,
        &scene.dir,
        "pod-client-ha",
        &full_uri,
        &token_file,
        500,
    )?;
    let go = go_sdk_client(env, &scene.dir, &full_uri, &token_file, 500)?;
    // Waits until both clients saw `sets` credential sets, failing on any failed call.
    let until_sets = |sets: usize, what: &'static str| {
        let (rust, go) = (&rust, &go);
        async move {
            let outcome = wait_for(Duration::from_secs(120), || async {
                match (credential_sets(&rounds(rust)), credential_sets(&rounds(go))) {
                    (Err(bad), _) | (_, Err(bad)) => Some(Err(bad)),
                    (Ok(a), Ok(b)) => (a.len() >= sets && b.len() >= sets).then_some(Ok(())),
                }
            })
            .await;
            match outcome {
                Some(Ok(())) => Ok(()),
                Some(Err(bad)) => bail!("a call failed {what}: {bad}"),
                None => bail!(
                    "{what}: fewer than {sets} credential sets (Rust {:?}, Go {:?})",
                    credential_sets(&rounds(rust)),
                    credential_sets(&rounds(go))
                ),
            }
        }
    };
    until_sets(1, "before anything happened").await?;
    // The agent crashes and comes back (SIGKILL, as an OOM kill would).
    scene.agent.restart()?;
    loopback::wait_until_serving(
        &mut scene.agent,
        &scene.agent_addr,
        "/healthz",
        Duration::from_secs(30),
        |c| c == 200,
    )
    .await?;
    until_sets(2, "across the agent's restart").await?;
    // The leader dies (SIGKILL: its Lease is not released) while the clients keep calling.
    let leader = lease_holder(env, &scene.ops).await;
    ensure!(
        leader.as_deref() == Some(OPERATOR_POD),
        "operator-0 does not lead: {leader:?}"
    );
    scene.operator.process.kill()?;
    let took_over = wait_for(Duration::from_secs(60), || async {
        (lease_holder(env, &scene.ops).await.as_deref() == Some("operator-1")).then_some(())
    })
    .await;
    ensure!(took_over.is_some(), "the standby never took the Lease");
    // The new leader held nothing: it exchanges once for the binding, then serves it.
    until_sets(4, "across the leader's fail-over").await?;
    let log = standby.log();
    ensure!(
        log.contains("EndpointEmpty"),
        "the new leader did not exchange for the Endpoint binding it held nothing for"
    );
    scene.logs_hide(&token)?;
    ensure!(
        !standby.log().contains(&token),
        "a token reached the standby's log"
    );
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![endpoint:
    a_pod_calls_sts_through_the_node_agent_across_refreshes,
    a_token_of_another_service_account_is_refused,
    another_namespaces_binding_is_refused,
    a_deleted_pods_token_is_refused,
    a_pod_on_another_node_is_refused,
    a_token_with_the_wrong_audience_is_refused,
    a_binding_without_endpoint_delivery_is_refused,
    the_sdk_refuses_plain_http_on_a_pod_ip,
    agent_restart_and_leader_fail_over_fail_no_call,
];

//! The node endpoint under load: one agent, one operator with its broker, `--endpoint-bindings`
//! Endpoint bindings and `--endpoint-pods` pods spread over them. The pods are API objects bound to
//! one Node object (no kubelet: a real test node holds about a hundred pods, and what is measured
//! is the agent and the broker, not containers), each with a token from TokenRequest bound to it,
//! exactly what a kubelet would project. Measures each pod's first request (through the broker:
//! two TokenReviews), then requests/s and latency while `--endpoint-clients` callers ask for
//! `--endpoint-seconds`, the agent's RSS and CPU, and STS calls per credential set.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use podcreds_testenv::{ControlPlane, Operator, Process, free_port, loopback};
use serde::Serialize;
use sts_emulator::Emulator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::proc::{cpu_seconds, rss_mib};
use super::scale::{Percentiles, percentiles};
use super::{Args, ROLE, create_namespace, create_service_accounts};

#[derive(Serialize, Debug)]
pub struct EndpointResult {
    pub pods: usize,
    pub bindings: usize,
    pub clients: usize,
    /// Each pod's first request: the agent asks the broker, which reviews both tokens.
    pub first_request: Percentiles,
    pub first_round_seconds: f64,
    /// Requests answered from the agent's cache while `clients` callers ask.
    pub steady: Percentiles,
    pub steady_requests_per_second: f64,
    pub failed_requests: usize,
    pub agent_rss_mib: f64,
    pub agent_peak_rss_mib: f64,
    /// Agent CPU seconds per 1,000 requests, over the whole run.
    pub agent_cpu_seconds_per_1000: f64,
    pub operator_cpu_seconds: f64,
    pub sts_calls: u64,
    pub credential_sets: usize,
}

/// A token of `pod`'s ServiceAccount for `audience`, bound to the pod.
async fn bound_token(client: &kube::Client, pod: &Pod, audience: &str) -> anyhow::Result<String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_default();
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.into()]),
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create_token_request(&account, &PostParams::default(), &request)
        .await?;
    answer
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("TokenRequest answered no token"))
}

async fn create_pod(
    client: &kube::Client,
    ns: &str,
    name: &str,
    account: &str,
    node: &str,
) -> anyhow::Result<Pod> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeName": node,
            "serviceAccountName": account,
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "localhost/none:1"}],
        },
    }))?;
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await?)
}

/// One container-credentials request: (status, milliseconds).
async fn ask(agent: &str, binding: &str, token: &str) -> anyhow::Result<(u16, f64)> {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(agent).await?;
    stream
        .write_all(
            format!(
                "GET /v1/credentials/{binding} HTTP/1.0\r\nHost: {agent}\r\nAuthorization: {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut buf = Vec::with_capacity(2048);
    stream.read_to_end(&mut buf).await?;
    let status = String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, started.elapsed().as_secs_f64() * 1000.0))
}

pub async fn measure(
    plane: &ControlPlane,
    emulator: &Emulator,
    bin: &std::path::Path,
    args: &Args,
) -> anyhow::Result<EndpointResult> {
    let client = plane.client().await?;
    let (ns, ops, agents, node) = (
        "endpoint-bench",
        "endpoint-ops",
        "endpoint-agents",
        "endpoint-bench-node",
    );
    for n in [ns, ops, agents] {
        create_namespace(&client, n).await?;
    }
    let node_object: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": node}}))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node_object)
        .await?;
    let bindings = args.endpoint_bindings.max(1);
    create_service_accounts(&client, ns, bindings, args.concurrency).await?;
    podcreds_testenv::create_service_account(&client, agents, "agent").await?;
    // The operator "pod" the Lease names, at the loopback address its broker listens on.
    create_pod(&client, ops, "operator-0", "default", node).await?;
    Api::<Pod>::namespaced(client.clone(), ops)
        .patch_status(
            "operator-0",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}})),
        )
        .await?;
    let broker_port = free_port()?;
    let launch = super::operator_launch(plane, bin, &emulator.url(), ns, args).args([
        "--leader-election".to_string(),
        format!("--leader-election-namespace={ops}"),
        format!("--namespace={ops}"),
        "--instance=operator-0".into(),
        "--broker-enabled".into(),
        "--pod-ip=127.0.0.1".into(),
        format!("--broker-address=127.0.0.1:{broker_port}"),
        format!("--agent-service-account={agents}/agent"),
    ]);
    let operator = Operator::start(launch).await?;
    let calls_before = emulator.count("AssumeRoleWithWebIdentity");
    let api: Api<podcreds::api::AWSRoleBinding> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..bindings)
        .map(|i| {
            let api = &api;
            async move {
                let binding: podcreds::api::AWSRoleBinding =
                    serde_json::from_value(serde_json::json!({
                        "apiVersion": "podcreds.dev/v1alpha1",
                        "kind": "AWSRoleBinding",
                        "metadata": {"name": format!("e{i}")},
                        "spec": {"serviceAccountName": format!("sa-{i}"), "roleArn": ROLE, "delivery": ["Endpoint"]},
                    }))?;
                api.create(&PostParams::default(), &binding).await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ready = api
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|b| {
                b.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        if ready == bindings {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready} of {bindings} Endpoint bindings became Ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dir = plane.dir().join("endpoint-bench");
    std::fs::create_dir_all(&dir)?;
    let agent_pod = create_pod(&client, agents, "agent-0", "agent", node).await?;
    let agent_token = bound_token(&client, &agent_pod, podcreds::agent::AGENT_AUDIENCE).await?;
    let token_file = dir.join("agent-token");
    std::fs::write(&token_file, agent_token)?;
    let agent_addr = format!("127.0.0.1:{}", free_port()?);
    let mut agent = Process::spawn(
        "podcreds-agent",
        bin,
        &[
            "agent".into(),
            format!("--listen={agent_addr}"),
            format!("--token-file={}", token_file.display()),
            format!("--operator-namespace={ops}"),
            format!("--broker-port={broker_port}"),
            "--log-level=warn".into(),
        ],
        &[(
            "KUBECONFIG".to_string(),
            plane.kubeconfig.display().to_string(),
        )],
        &dir,
    )?;
    loopback::wait_until_serving(
        &mut agent,
        &agent_addr,
        "/healthz",
        Duration::from_secs(30),
        |c| c == 200,
    )
    .await?;

    // The pods and their tokens.
    let pods = args.endpoint_pods;
    let callers: Vec<(String, String)> = futures::stream::iter(0..pods)
        .map(|i| {
            let client = &client;
            async move {
                let b = i % bindings;
                let pod =
                    create_pod(client, ns, &format!("p{i}"), &format!("sa-{b}"), node).await?;
                Ok::<_, anyhow::Error>((
                    format!("e{b}"),
                    bound_token(client, &pod, podcreds::agent::POD_AUDIENCE).await?,
                ))
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect()
        .await?;
    println!("    {pods} pods on {bindings} Endpoint bindings; agent at {agent_addr}");
    let callers = Arc::new(callers);
    let agent_cpu_before = cpu_seconds(agent.pid());
    let operator_cpu_before = cpu_seconds(operator.process.pid());
    let failures = Arc::new(AtomicUsize::new(0));

    // Each pod's first request, `clients` at a time.
    let started = Instant::now();
    let first: Vec<f64> = futures::stream::iter(callers.iter().cloned())
        .map(|(binding, token)| {
            let (agent_addr, failures) = (&agent_addr, &failures);
            async move {
                match ask(agent_addr, &binding, &token).await {
                    Ok((200, ms)) => Some(ms),
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            }
        })
        .buffer_unordered(args.endpoint_clients.max(1))
        .filter_map(|x| async move { x })
        .collect()
        .await;
    let first_round_seconds = started.elapsed().as_secs_f64();

    // Steady: every caller asks again and again for `endpoint_seconds`.
    let deadline = Instant::now() + Duration::from_secs(args.endpoint_seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let steady_started = Instant::now();
    let tasks: Vec<_> = (0..args.endpoint_clients.max(1))
        .map(|_| {
            let (callers, next, failures, agent_addr) = (
                callers.clone(),
                next.clone(),
                failures.clone(),
                agent_addr.clone(),
            );
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed) % callers.len().max(1);
                    let (binding, token) = &callers[i];
                    match ask(&agent_addr, binding, token).await {
                        Ok((200, ms)) => samples.push(ms),
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                samples
            })
        })
        .collect();
    let mut steady = Vec::new();
    for task in tasks {
        steady.extend(task.await?);
    }
    let steady_seconds = steady_started.elapsed().as_secs_f64();
    let requests = first.len() + steady.len();
    let agent_cpu = cpu_seconds(agent.pid()) - agent_cpu_before;
    let (agent_rss, agent_peak) = rss_mib(agent.pid());
    let sts_calls = emulator.count("AssumeRoleWithWebIdentity") - calls_before;
    let result = EndpointResult {
        pods,
        bindings,
        clients: args.endpoint_clients,
        first_request: percentiles(first),
        first_round_seconds,
        steady_requests_per_second: steady.len() as f64 / steady_seconds.max(0.001),
        steady: percentiles(steady),
        failed_requests: failures.load(Ordering::Relaxed),
        agent_rss_mib: agent_rss,
        agent_peak_rss_mib: agent_peak,
        agent_cpu_seconds_per_1000: agent_cpu * 1000.0 / (requests.max(1) as f64),
        operator_cpu_seconds: cpu_seconds(operator.process.pid()) - operator_cpu_before,
        sts_calls,
        credential_sets: bindings,
    };
    println!(
        "    first requests: {pods} in {:.2}s (p50 {:.2} ms, p99 {:.2} ms); steady: {:.0} requests/s (p50 {:.2} ms, p99 {:.2} ms); {} failed; agent RSS {:.1} MiB (peak {:.1}), {:.3} CPU s per 1,000 requests; {} STS calls for {} credential sets",
        result.first_round_seconds,
        result.first_request.p50_ms,
        result.first_request.p99_ms,
        result.steady_requests_per_second,
        result.steady.p50_ms,
        result.steady.p99_ms,
        result.failed_requests,
        result.agent_rss_mib,
        result.agent_peak_rss_mib,
        result.agent_cpu_seconds_per_1000,
        result.sts_calls,
        result.credential_sets
    );
    drop(agent);
    drop(operator);
    Ok(result)
}

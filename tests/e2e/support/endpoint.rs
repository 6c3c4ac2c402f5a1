//! A node endpoint scene on the shared control plane: Node objects, pods, the agent and the broker on loopback.

use crate::support::{Env, Operator, spec_with};
use anyhow::{Context, ensure};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use podcreds_testenv::{Process, free_port, loopback};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One operator with its broker, one agent, two nodes and a Ready Endpoint binding.
pub(crate) struct Scene {
    pub(crate) ns: String,
    pub(crate) role: String,
    pub(crate) node: String,
    pub(crate) other_node: String,
    pub(crate) agent_addr: String,
    pub(crate) dir: PathBuf,
    pub(crate) operator: Operator,
    pub(crate) agent: Process,
    pub(crate) ops: String,
    pub(crate) broker_port: u16,
    pub(crate) agent_sa: String,
    pub(crate) agents: String,
}

impl Scene {
    pub(crate) async fn start(
        env: &Env,
        prefix: &str,
        lifetime: Option<u64>,
    ) -> anyhow::Result<Self> {
        Self::start_with(env, prefix, lifetime, Setup::default()).await
    }

    pub(crate) async fn start_with(
        env: &Env,
        prefix: &str,
        lifetime: Option<u64>,
        setup: Setup,
    ) -> anyhow::Result<Self> {
        let (ns, role) = env.app_namespace(prefix, lifetime).await?;
        let ops = match setup.ops {
            Some(ops) => ops,
            None => env.namespace("ep-ops").await?,
        };
        let (agents, agent_sa) = match setup.agents {
            Some(agents) => agents,
            None => {
                let agents = env.namespace("ep-agent").await?;
                env.service_account(&agents, AGENT_SA).await?;
                (agents, AGENT_SA.to_string())
            }
        };
        let node = format!("{ns}-node");
        let other_node = format!("{ns}-other");
        create_node(env, &node).await?;
        create_node(env, &other_node).await?;
        // The operator "pod" the Lease will name; the broker listens on its IP.
        create_pod(env, &ops, OPERATOR_POD, "default", &node).await?;
        Api::<Pod>::namespaced(env.client.clone(), &ops)
            .patch_status(
                OPERATOR_POD,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}),
                ),
            )
            .await
            .context("setting the operator pod's IP")?;
        let broker_port = free_port()?;
        let operator = env
            .start_operator_with_kubeconfig(
                setup
                    .operator_kubeconfig
                    .as_deref()
                    .unwrap_or(&env.plane.kubeconfig),
                &[&ns],
                &env.emulator.url(),
                &replica_args(
                    &ops,
                    OPERATOR_POD,
                    "127.0.0.1",
                    broker_port,
                    &agents,
                    &agent_sa,
                )
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            )
            .await?;
        // The agent: a pod of the agent ServiceAccount on `node`, and its bound token.
        let agent_pod = create_pod(env, &agents, "agent-0", &agent_sa, &node).await?;
        let dir = env.plane.dir().join(format!("endpoint-{ns}"));
        std::fs::create_dir_all(&dir)?;
        let agent_token = dir.join("agent-token");
        std::fs::write(
            &agent_token,
            bound_token(env, &agent_pod, podcreds::agent::AGENT_AUDIENCE).await?,
        )?;
        let agent_addr = format!("127.0.0.1:{}", free_port()?);
        let mut agent = Process::spawn(
            "podcreds-agent",
            Path::new(env!("CARGO_BIN_EXE_podcreds")),
            &[
                "agent".to_string(),
                format!("--listen={agent_addr}"),
                format!("--token-file={}", agent_token.display()),
                format!("--operator-namespace={ops}"),
                format!("--broker-port={broker_port}"),
                format!("--node-name={node}"),
                "--log-format=json".into(),
                "--log-level=debug,kube=info,hyper=info,rustls=info".into(),
            ],
            &[(
                "KUBECONFIG".to_string(),
                setup
                    .agent_kubeconfig
                    .as_deref()
                    .unwrap_or(&env.plane.kubeconfig)
                    .display()
                    .to_string(),
            )],
            &dir,
        )?;
        crate::register_log(agent.log_path().to_path_buf());
        loopback::wait_until_serving(
            &mut agent,
            &agent_addr,
            "/healthz",
            Duration::from_secs(30),
            |c| c == 200,
        )
        .await?;
        env.create_ready(
            &ns,
            BINDING,
            spec_with(&role, json!({"delivery": ["Endpoint"]})),
            Duration::from_secs(60),
        )
        .await?;
        Ok(Self {
            ns,
            role,
            node,
            other_node,
            agent_addr,
            dir,
            operator,
            agent,
            ops,
            broker_port,
            agent_sa,
            agents,
        })
    }

    /// The binding's namespace.
    pub(crate) fn namespace(&self) -> &str {
        &self.ns
    }

    /// A pod of `account` in `ns` on `node`, and its bound token for `audience`.
    pub(crate) async fn pod_token(
        &self,
        env: &Env,
        ns: &str,
        name: &str,
        account: &str,
        node: &str,
        audience: &str,
    ) -> anyhow::Result<(Pod, String)> {
        let pod = create_pod(env, ns, name, account, node).await?;
        let token = bound_token(env, &pod, audience).await?;
        Ok((pod, token))
    }

    /// The app pod's token, answered with credentials (the control of every refusal test).
    pub(crate) async fn granted(&self, env: &Env) -> anyhow::Result<String> {
        let (_, token) = self
            .pod_token(
                env,
                &self.ns,
                "app-ok",
                "app",
                &self.node,
                podcreds::agent::POD_AUDIENCE,
            )
            .await?;
        let (status, body) = ask(&self.agent_addr, BINDING, Some(&token)).await?;
        ensure!(
            status == 200 && body["AccessKeyId"].as_str().is_some_and(|k| !k.is_empty()),
            "the binding's own pod was refused: {status} {}",
            body.get("Message").cloned().unwrap_or_default()
        );
        for field in ["SecretAccessKey", "Token", "Expiration"] {
            ensure!(body[field].is_string(), "the answer lacks {field}");
        }
        ensure!(
            body["Expiration"]
                .as_str()
                .and_then(|e| e.parse::<jiff::Timestamp>().ok())
                .is_some(),
            "Expiration is not RFC 3339: {}",
            body["Expiration"]
        );
        Ok(token)
    }

    /// Nothing the agent or operator logged carries `secret`.
    pub(crate) fn logs_hide(&self, secret: &str) -> anyhow::Result<()> {
        ensure!(
            !self.operator.log().contains(secret) && !self.agent.log().contains(secret),
            "a token or credential reached a log"
        );
        Ok(())
    }
}

/// Where the operator and the agents live and whose identities they run as; the defaults are
/// fresh namespaces and the admin.
#[derive(Default)]
pub(crate) struct Setup {
    /// The operator's namespace (its Lease, pod, CA key and ConfigMap).
    pub ops: Option<String>,
    /// The agents' namespace and ServiceAccount.
    pub agents: Option<(String, String)>,
    pub operator_kubeconfig: Option<PathBuf>,
    pub agent_kubeconfig: Option<PathBuf>,
}

/// The flags of one operator replica with leader election and its broker on `ip`.
pub(crate) fn replica_args(
    ops: &str,
    pod: &str,
    ip: &str,
    broker_port: u16,
    agents: &str,
    agent_sa: &str,
) -> Vec<String> {
    vec![
        "--leader-election".into(),
        format!("--leader-election-namespace={ops}"),
        "--leader-election-lease-seconds=4".into(),
        format!("--namespace={ops}"),
        format!("--instance={pod}"),
        "--broker-enabled".into(),
        format!("--pod-ip={ip}"),
        format!("--broker-address={ip}:{broker_port}"),
        format!("--agent-service-account={agents}/{agent_sa}"),
    ]
}

/// A token of `pod`'s ServiceAccount bound to the pod, as the kubelet projects it.
pub(crate) async fn bound_token(env: &Env, pod: &Pod, audience: &str) -> anyhow::Result<String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .context("pod without a ServiceAccount")?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
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
    let answer = Api::<ServiceAccount>::namespaced(env.client.clone(), &ns)
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for {ns}/{account}"))?;
    answer
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .context("TokenRequest answered no token")
}

/// A pod object on `node` running as `service_account` (never started: no kubelet).
pub(crate) async fn create_pod(
    env: &Env,
    ns: &str,
    name: &str,
    service_account: &str,
    node: &str,
) -> anyhow::Result<Pod> {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeName": node,
            "serviceAccountName": service_account,
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "localhost/none:1"}],
        },
    }))?;
    Api::<Pod>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {ns}/{name}"))
}

pub(crate) async fn create_node(env: &Env, name: &str) -> anyhow::Result<()> {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}
    }))?;
    Api::<Node>::all(env.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .with_context(|| format!("creating Node {name}"))?;
    Ok(())
}

pub(crate) const OPERATOR_POD: &str = "operator-0";

pub(crate) const AGENT_SA: &str = "agent";

pub(crate) const BINDING: &str = "b";

/// `GET /v1/credentials/<binding>` on the agent, as an SDK sends it: (status, JSON body).
pub(crate) async fn ask(
    agent: &str,
    binding: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut stream = tokio::net::TcpStream::connect(agent).await?;
    let authorization = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!(
                "GET /v1/credentials/{binding} HTTP/1.0\r\nHost: {agent}\r\n{authorization}\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json = serde_json::from_str(body).unwrap_or(json!({"raw": body}));
    Ok((status, json))
}

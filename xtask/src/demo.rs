//! `cargo xtask demo`: podcreds end to end on this machine, as it runs on a cluster.
//!
//! The operator's image and a small AWS client are built; then, in a network namespace of the
//! demo's own (nothing is added to this machine's network), a control plane with a real node
//! (containerd and a kubelet) starts with the STS emulator. The chart installs the operator as
//! pods in a `restricted` namespace (with the node agent in a namespace of its own),
//! `examples/quickstart.yaml` is applied, and an app pod reads the binding's Secret through a
//! secret volume and calls STS with it; then the binding also delivers through the node
//! endpoint, and a second app pod takes its credentials from there, with no Secret mounted.
//! `kubectl logs` shows them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::node::{POD_CLIENT_IMAGE, pod_client_image};
use podcreds_testenv::{ControlPlane, Options, decode_secret, netns, tools};
use serde_json::json;
use sts_emulator::Emulator;

use crate::{image, repo_root, testenv};

const NAMESPACE: &str = "podcreds-demo";
const BINDING: &str = "reports-reader";
const RELEASE_NAMESPACE: &str = "podcreds-system";
/// The chart's default `agent.namespace`.
const AGENT_NAMESPACE: &str = "podcreds-node";
const APP_POD: &str = "reports";
const ENDPOINT_POD: &str = "reports-endpoint";

fn say(step: &str) {
    println!("\n\x1b[1m==> {step}\x1b[0m");
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(tools::binary("kubectl")?)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Shows a kubectl command and what it printed.
fn show_kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<()> {
    println!("    $ kubectl {}", args.join(" "));
    for line in kubectl(kubeconfig, args)?.lines() {
        println!("    {line}");
    }
    Ok(())
}

fn helm(kubeconfig: &Path, home: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(tools::binary("helm")?)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()?;
    if !out.status.success() {
        bail!(
            "helm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(keep: bool) -> anyhow::Result<()> {
    if !netns::inside() {
        say("test environment (first run: builds Kubernetes from source, which takes a while)");
        testenv::ensure_for_demo()?;
        say("building the operator's image and the app's AWS client (static binaries)");
        image::build(None, None)?;
        crate::build_pod_client()?;
        say("entering a network namespace of the demo's own (needs root)");
        // Runs this command again inside it and exits with its status.
        netns::reexec_inside()?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(demo(keep))
}

/// Polls `check` every half second until it answers or `limit` passes.
async fn wait_until<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn demo(keep: bool) -> anyhow::Result<()> {
    println!(
        "    network namespace {} (only loopback and the node's bridge)",
        netns::current()?
    );
    say("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a node");
    let started = Instant::now();
    let plane = ControlPlane::start(Options {
        node: true,
        pod_network: true,
        ..Options::default()
    })
    .await?;
    let node = plane.node().context("the control plane started no node")?;
    let network = plane.pod_network().context("the node has no network")?;
    let gateway = network.gateway();
    println!(
        "    control plane at {} and node {} ({gateway}) Ready in {:.1?}",
        plane.api_url,
        podcreds_testenv::node::NODE_NAME,
        started.elapsed()
    );

    say("starting the STS emulator (validates tokens against the cluster's JWKS)");
    // The quickstart's binding and the chart's default region are eu-west-1: the app signs its
    // calls for that region.
    let emulator = Emulator::start(sts_emulator::Config {
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
        ..sts_emulator::Config::for_issuer(&plane.api_url, &plane.ca_pem)
    })
    .await?;
    // Pods reach the emulator and the apiserver on the bridge's address.
    let emulator_port: u16 = emulator
        .url()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("the emulator's port")?;
    let sts_endpoint = format!("http://{gateway}:{}", network.expose(emulator_port).await?);
    let api_port = network.expose(plane.api_port()).await?;
    println!(
        "    STS emulator at {}, pods use {sts_endpoint}",
        emulator.url()
    );

    say("importing the images into the node (no registry)");
    let archive = repo_root().join(image::DEFAULT_ARCHIVE);
    node.import_image(&archive)?;
    let operator_image = image::default_name()?;
    let client_binary = repo_root().join(crate::POD_CLIENT);
    node.import_built_image("pod-client.tar", &pod_client_image(client_binary)?)?;
    println!("    {operator_image}, {POD_CLIENT_IMAGE}");

    say("helm install: the operator as pods, in a namespace enforcing the restricted profile");
    let client = plane.client().await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {
                "name": RELEASE_NAMESPACE,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            }}))?,
        )
        .await?;
    let (repository, tag) = operator_image
        .rsplit_once(':')
        .context("the image name has no tag")?;
    let chart = repo_root().join("charts/podcreds");
    let helm_home = plane.dir().join("helm-home");
    let sets = [
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".into(),
        format!("operator.stsEndpoint={sts_endpoint}"),
        "operator.defaultRegion=eu-west-1".into(),
        // No kube-proxy on this node: the in-cluster address of the apiserver is the bridge's.
        "extraEnv[0].name=KUBERNETES_SERVICE_HOST".into(),
        format!("extraEnv[0].value={gateway}"),
        "extraEnv[1].name=KUBERNETES_SERVICE_PORT".into(),
        format!("extraEnv[1].value={api_port}"),
        // The node agent runs on the host network, where the apiserver is the bridge's too.
        "agent.extraEnv[0].name=KUBERNETES_SERVICE_HOST".into(),
        format!("agent.extraEnv[0].value={gateway}"),
        "agent.extraEnv[1].name=KUBERNETES_SERVICE_PORT".into(),
        format!("agent.extraEnv[1].value={api_port}"),
    ];
    let mut args = vec![
        "install",
        "podcreds",
        chart.to_str().context("chart path")?,
        "--namespace",
        RELEASE_NAMESPACE,
        // The emulator speaks plain HTTP.
        "--set",
        "operator.allowInsecureStsEndpoints=true",
        // The node endpoint: the agent DaemonSet and the operator's broker.
        "--set",
        "agent.enabled=true",
    ];
    for s in &sets {
        args.extend(["--set-string", s.as_str()]);
    }
    for line in helm(&plane.kubeconfig, &helm_home, &args)?.lines().take(6) {
        println!("    {line}");
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let rolled_out = wait_until(Duration::from_secs(180), || async {
        let status = deployments.get("podcreds").await.ok()?.status?;
        (status.ready_replicas.unwrap_or(0) >= 1).then_some(())
    })
    .await;
    if rolled_out.is_none() {
        bail!(
            "the operator's pods did not become Ready:\n{}\n{}",
            kubectl(
                &plane.kubeconfig,
                &["get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide"]
            )?,
            plane.logs(20)
        );
    }
    show_kubectl(
        &plane.kubeconfig,
        &["get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide"],
    )?;
    let agents: Api<Pod> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let agent_ready = wait_until(Duration::from_secs(120), || async {
        agents
            .list(&Default::default())
            .await
            .ok()?
            .items
            .iter()
            .any(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .then_some(())
    })
    .await;
    if agent_ready.is_none() {
        bail!(
            "the node agent did not become Ready:\n{}\n{}",
            kubectl(
                &plane.kubeconfig,
                &["get", "pods", "-n", AGENT_NAMESPACE, "-o", "wide"]
            )?,
            node.logs(20)
        );
    }
    show_kubectl(
        &plane.kubeconfig,
        &["get", "pods", "-n", AGENT_NAMESPACE, "-o", "wide"],
    )?;

    // The IAM side comes first, as on AWS: the role must trust the binding's ServiceAccount
    // before the binding exists, or its first exchange is refused and retried later.
    say("the IAM side: podcreds iam trust-policy prints the role's trust policy");
    let example = repo_root().join("examples/quickstart.yaml");
    let issuer = &plane.api_url;
    println!(
        "    $ podcreds iam trust-policy -f examples/quickstart.yaml --issuer {issuer} -o json"
    );
    let printed = Command::new(repo_root().join(image::STATIC_BINARY))
        .args(["iam", "trust-policy", "-f"])
        .arg(&example)
        .args(["--issuer", issuer, "--output", "json"])
        .output()?;
    if !printed.status.success() {
        bail!(
            "podcreds iam trust-policy failed: {}",
            String::from_utf8_lossy(&printed.stderr)
        );
    }
    let policies: Vec<serde_json::Value> =
        serde_json::from_slice(&printed.stdout).context("the printed trust policies")?;
    let oidc_provider = issuer.trim_start_matches("https://");
    for entry in &policies {
        let arn = entry["roleArn"].as_str().context("roleArn")?;
        let document = &entry["trustPolicy"];
        for line in format!("{document:#}").lines() {
            println!("    {line}");
        }
        let role = sts_emulator::role_from_trust_policy(arn, document, oidc_provider)
            .with_context(|| format!("the emulator cannot read the trust policy of {arn}"))?;
        emulator.add_role(role);
        println!("    registered with the STS emulator as the trust policy of {arn}");
    }

    say("applying examples/quickstart.yaml");
    show_kubectl(
        &plane.kubeconfig,
        &["apply", "-f", &example.to_string_lossy()],
    )?;

    say("waiting for the binding to become Ready");
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    let ready = wait_until(Duration::from_secs(90), || async {
        let b = bindings.get(BINDING).await.ok()?;
        let c = podcreds::status::ready_condition(b.status.as_ref())?.clone();
        (c.status == "True").then_some(c.message)
    })
    .await;
    let Some(message) = ready else {
        bail!(
            "not Ready after 90s:\n{}",
            kubectl(
                &plane.kubeconfig,
                &[
                    "logs",
                    "-n",
                    RELEASE_NAMESPACE,
                    "deploy/podcreds",
                    "--tail=30"
                ]
            )?
        );
    };
    println!("    Ready after {:.1?}: {message}", started.elapsed());
    show_kubectl(
        &plane.kubeconfig,
        &["get", "awsrb", "-n", NAMESPACE, "-o", "wide"],
    )?;

    say("the Secret (values redacted)");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = secrets.get(BINDING).await?;
    for (key, value) in &decode_secret(&secret) {
        println!("    {key:<26} {} bytes", value.len());
    }
    let binding = bindings.get(BINDING).await?;

    say("an app pod reads the Secret through a secret volume (credential_process) and calls STS");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods.create(
        &PostParams::default(),
        &app_pod(&binding.spec.mount_path, &sts_endpoint)?,
    )
    .await?;
    let answered = wait_until(Duration::from_secs(120), || async {
        let logs = kubectl(
            &plane.kubeconfig,
            &["logs", "-n", NAMESPACE, APP_POD, "--tail=3"],
        )
        .ok()?;
        logs.contains("\"arn\"").then_some(())
    })
    .await;
    if answered.is_none() {
        bail!(
            "the app pod printed no answer from STS:\n{}\n{}",
            kubectl(&plane.kubeconfig, &["get", "pod", "-n", NAMESPACE, APP_POD])?,
            node.logs(20)
        );
    }
    show_kubectl(
        &plane.kubeconfig,
        &["logs", "-n", NAMESPACE, APP_POD, "--tail=3"],
    )?;
    println!("    (credentials is a fingerprint of the access key id; no credential is printed)");

    say(
        "the same binding also through the node endpoint: one exchange feeds the Secret and the agent",
    );
    show_kubectl(
        &plane.kubeconfig,
        &[
            "patch",
            "awsrb",
            "-n",
            NAMESPACE,
            BINDING,
            "--type=merge",
            "-p",
            r#"{"spec":{"delivery":["Secret","Endpoint"]}}"#,
        ],
    )?;
    say(
        "a second app pod takes its credentials from http://169.254.170.23 (a projected token, no Secret, no cat)",
    );
    let mut endpoint_pod = podcreds_testenv::node::endpoint_client_pod(
        ENDPOINT_POD,
        "reports",
        POD_CLIENT_IMAGE,
        BINDING,
        &sts_endpoint,
        5000,
    );
    endpoint_pod["metadata"]["namespace"] = json!(NAMESPACE);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(endpoint_pod)?,
    )
    .await?;
    let answered = wait_until(Duration::from_secs(120), || async {
        let logs = kubectl(
            &plane.kubeconfig,
            &["logs", "-n", NAMESPACE, ENDPOINT_POD, "--tail=3"],
        )
        .ok()?;
        logs.contains("\"arn\"").then_some(())
    })
    .await;
    if answered.is_none() {
        bail!(
            "the endpoint app pod printed no answer from STS:\n{}\n{}",
            kubectl(
                &plane.kubeconfig,
                &["get", "pod", "-n", NAMESPACE, ENDPOINT_POD]
            )?,
            node.logs(20)
        );
    }
    show_kubectl(
        &plane.kubeconfig,
        &["logs", "-n", NAMESPACE, ENDPOINT_POD, "--tail=3"],
    )?;
    show_kubectl(
        &plane.kubeconfig,
        &[
            "logs",
            "-n",
            AGENT_NAMESPACE,
            "-l",
            "app.kubernetes.io/component=agent",
            "--tail=4",
        ],
    )?;

    say("the leading operator pod's log (kubectl logs, through the kubelet)");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let leader = leases
        .get("podcreds-leader")
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .context("no operator pod holds the leader Lease")?;
    show_kubectl(
        &plane.kubeconfig,
        &["logs", "-n", RELEASE_NAMESPACE, &leader, "--tail=8"],
    )?;

    if keep {
        say("running until Ctrl-C");
        let pid = std::process::id();
        println!(
            "    everything listens inside the demo's network namespace; enter it from another shell (as root):"
        );
        println!("    nsenter --net=/proc/{pid}/ns/net bash");
        println!("    export KUBECONFIG={}", plane.kubeconfig.display());
        println!("    export PATH={}:$PATH", tools::bin_dir().display());
        println!("    kubectl get pods -A -o wide");
        println!("    kubectl logs -n {RELEASE_NAMESPACE} deploy/podcreds -f");
        println!("    kubectl logs -n {NAMESPACE} {APP_POD} -f");
        println!("    kubectl logs -n {NAMESPACE} {ENDPOINT_POD} -f");
        println!("    kubectl describe awsrb -n {NAMESPACE} {BINDING}");
        println!(
            "    STS emulator calls: curl -s {}/_emulator/calls",
            emulator.url()
        );
        tokio::signal::ctrl_c().await?;
        println!("\ncleaning up");
    }
    emulator.shutdown();
    drop(plane);
    println!(
        "demo finished: every process and pod stopped, temporary files removed, and the network namespace is gone with them"
    );
    Ok(())
}

/// The app: a restricted pod of ServiceAccount `reports` whose AWS client takes its credentials
/// from the binding's Secret, mounted at the binding's mountPath.
fn app_pod(mount_path: &str, sts_endpoint: &str) -> anyhow::Result<Pod> {
    let mut pod =
        podcreds_testenv::node::pod_client_pod(APP_POD, BINDING, mount_path, sts_endpoint, 5000);
    pod["spec"]["serviceAccountName"] = json!("reports");
    Ok(serde_json::from_value(pod)?)
}

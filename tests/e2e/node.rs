//! Pods on a real node: containerd and a kubelet registered with a control plane of their own
//! (`Options::node`), images written here and imported with `ctr images import`, nothing pulled.
//! The kubelet itself projects the Secret into the pod's volume; nothing in this module copies
//! files on the pod's behalf.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use podcreds_testenv::Options;
use podcreds_testenv::node::pod_client_pod;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::node::{
    adopt_crds, chart_network_values, ensure_crds_kept, leader, restricted_namespace,
    wait_rolled_out,
};
use crate::support::{Env, spec_with};

/// The static client the pod runs (`testenv/pod-client`), built by `cargo xtask test`.
const POD_CLIENT_VARIABLE: &str = "PODCREDS_POD_CLIENT";
pub(crate) const MOUNT_PATH: &str = "/var/run/secrets/podcreds";

/// A control plane with a node, and an STS emulator trusting its issuer.
async fn node_env() -> anyhow::Result<Env> {
    let started = std::time::Instant::now();
    let env = Env::start_with(Options {
        node: true,
        ..Options::default()
    })
    .await
    .context("starting a control plane with a node")?;
    println!(
        "  node: control plane with a node Ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(env)
}

pub(crate) fn pod_client_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(POD_CLIENT_VARIABLE)
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "{POD_CLIENT_VARIABLE} is not set: run the suite through `cargo xtask test`, which builds the static pod client (testenv/pod-client)"
            )
        })?;
    ensure!(path.is_file(), "{} does not exist", path.display());
    Ok(path)
}

/// The fingerprint the pod client prints for an access key id.
fn fingerprint(access_key_id: &str) -> String {
    hex::encode(&Sha256::digest(access_key_id.as_bytes())[..6])
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A restricted pod (non-root, read-only root, no capabilities, RuntimeDefault seccomp) on the
/// test node, with host networking: without a pod network its host is the run's own network
/// namespace, where the emulator listens on loopback.
fn app_pod(name: &str, secret: &str, sts_endpoint: &str) -> anyhow::Result<Pod> {
    let mut pod = pod_client_pod(name, secret, MOUNT_PATH, sts_endpoint, 1000);
    pod["spec"]["nodeName"] = json!(podcreds_testenv::node::NODE_NAME);
    pod["spec"]["hostNetwork"] = json!(true);
    pod["spec"]["restartPolicy"] = json!("Never");
    Ok(serde_json::from_value(pod)?)
}

/// One line of the pod client's output.
#[derive(Debug, serde::Deserialize)]
struct Round {
    unix_ms: u64,
    credentials: Option<String>,
    arn: Option<String>,
    error: Option<String>,
}

/// Credential sets a pod needs to see, the first one included: two refreshes.
const CREDENTIAL_SETS: usize = 3;

pub async fn a_pod_reads_refreshed_credentials_through_a_secret_volume(
    env: &Env,
) -> anyhow::Result<()> {
    let client_binary = pod_client_binary()?;
    let node_env = node_env().await?;
    let node = node_env
        .plane
        .node()
        .context("the control plane started without its node")?;
    node.import_built_image(
        "pod-client.tar",
        &podcreds_testenv::node::pod_client_image(client_binary)?,
    )?;

    let ns = node_env.namespace("node-app").await?;
    node_env.service_account(&ns, "app").await?;
    // Grants of 150 s renewed 120 s before they expire: a refresh every 30 s, and each set stays
    // valid for two minutes after the next one is written, longer than the kubelet takes to
    // project a Secret change (it does so on its pod sync, by default every minute plus jitter).
    let role = node_env.role(&format!("{ns}-app"), &ns, "app", Some(150));
    // Logs go under the main plane's directory, which outlives this test's control plane.
    let _operator = env
        .start_operator_with_kubeconfig(
            &node_env.plane.kubeconfig,
            &[&ns],
            &node_env.emulator.url(),
            &[],
        )
        .await?;
    node_env
        .create_ready(
            &ns,
            "app",
            spec_with(
                &role,
                json!({"mountPath": MOUNT_PATH, "renewBefore": "120s", "sts": {"region": "eu-west-1"}}),
            ),
            Duration::from_secs(60),
        )
        .await?;

    // When each credential set appeared in the Secret, as the API shows it.
    let secrets = node_env.secrets(&ns);
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    let pods: Api<Pod> = Api::namespaced(node_env.client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &app_pod("app", "app", &node_env.emulator.url())?,
    )
    .await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(420);
    let rounds = loop {
        if let Ok(secret) = secrets.get("app").await
            && let Some(doc) =
                podcreds_testenv::decode_secret(&secret).get("credential-process.json")
        {
            let doc: serde_json::Value = serde_json::from_str(doc)?;
            if let Some(key) = doc["AccessKeyId"].as_str() {
                written.entry(fingerprint(key)).or_insert_with(unix_ms);
            }
        }
        let output = node.container_output(&ns, "app", "app");
        let rounds: Vec<Round> = output
            .iter()
            .map(|l| serde_json::from_str(l).with_context(|| format!("pod printed {l:?}")))
            .collect::<anyhow::Result<_>>()?;
        if let Some(failed) = rounds.iter().find(|r| r.error.is_some()) {
            bail!(
                "the pod's client failed with the credentials the kubelet showed it: {:?}",
                failed.error
            );
        }
        let seen: std::collections::BTreeSet<&str> = rounds
            .iter()
            .filter_map(|r| r.credentials.as_deref())
            .collect();
        if seen.len() >= CREDENTIAL_SETS {
            break rounds;
        }
        let pod = pods.get("app").await?;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Failed" || phase == "Succeeded" {
            bail!("the pod ended ({phase}): {:?}", pod.status);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "after 7 minutes the pod had seen {} credential sets (phase {phase}, {} rounds, Secret wrote {}); node logs:\n{}",
                seen.len(),
                rounds.len(),
                written.len(),
                node.logs(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let assumed = format!(
        "arn:aws:sts::{}:assumed-role/{ns}-app/",
        crate::support::ACCOUNT
    );
    for r in &rounds {
        let arn = r.arn.as_deref().unwrap_or_default();
        ensure!(
            arn.starts_with(&assumed),
            "GetCallerIdentity answered {arn:?}, expected {assumed}..."
        );
    }
    // When the pod first used each set, and how long after the Secret held it.
    let mut first_use: Vec<(String, u64)> = Vec::new();
    for r in &rounds {
        if let Some(c) = &r.credentials
            && !first_use.iter().any(|(k, _)| k == c)
        {
            first_use.push((c.clone(), r.unix_ms));
        }
    }
    let mut delays = Vec::new();
    for (key, used) in first_use.iter().skip(1) {
        let at = written
            .get(key)
            .with_context(|| format!("the pod used credentials {key} the Secret never held"))?;
        delays.push(used.saturating_sub(*at) as f64 / 1000.0);
    }
    println!(
        "  node: {} rounds, every GetCallerIdentity succeeded; {} credential sets written, {} used; kubelet propagation of each refresh (Secret write to first use in the pod): {:?} s",
        rounds.len(),
        written.len(),
        first_use.len(),
        delays
    );
    Ok(())
}

/// The operator image `cargo xtask image` writes (an OCI archive), built by `cargo xtask test`.
const OPERATOR_IMAGE_VARIABLE: &str = "PODCREDS_OPERATOR_IMAGE";

/// The image name an archive's index gives (the annotation containerd names it by).
fn archive_image_name(archive: &std::path::Path) -> anyhow::Result<String> {
    let out = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("index.json")
        .output()?;
    ensure!(
        out.status.success(),
        "{} has no index.json",
        archive.display()
    );
    let index: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    index["manifests"][0]["annotations"]["io.containerd.image.name"]
        .as_str()
        .map(str::to_string)
        .context("the image index names no image")
}

pub async fn the_operator_image_runs_as_a_restricted_pod(_env: &Env) -> anyhow::Result<()> {
    let archive = std::env::var_os(OPERATOR_IMAGE_VARIABLE)
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "{OPERATOR_IMAGE_VARIABLE} is not set: run the suite through `cargo xtask test`, which builds the image with `cargo xtask image`"
            )
        })?;
    let image = archive_image_name(&archive)?;
    let node_env = node_env().await?;
    let node = node_env
        .plane
        .node()
        .context("the control plane started without its node")?;
    node.import_image(&archive)?;
    ensure!(
        node.images()?.contains(&image),
        "{image} is not among the node's images after the import: {:?}",
        node.images()?
    );

    let (app_ns, role) = node_env.app_namespace("node-apps", None).await?;
    let op_ns = node_env.namespace("node-operator").await?;
    // The pod talks to the apiserver on loopback (host networking in the run's namespace; the node
    // has no pod network here), so it gets a kubeconfig instead of the in-cluster token.
    let kubeconfig = std::fs::read_to_string(&node_env.plane.kubeconfig)?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(node_env.client.clone(), &op_ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "kubeconfig"},
                "stringData": {"kubeconfig": kubeconfig},
            }))?,
        )
        .await?;
    let admin_port = podcreds_testenv::free_port()?;
    // The chart's container (image, user, read-only root, no capabilities, probes on the admin
    // port), with the probes sent to 127.0.0.1, where the operator listens (a host-network pod's
    // own address is the node's, on its bridge).
    let probe = |path: &str| json!({"httpGet": {"host": "127.0.0.1", "path": path, "port": admin_port}, "periodSeconds": 2});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "podcreds"},
        "spec": {
            "nodeName": podcreds_testenv::node::NODE_NAME,
            "hostNetwork": true,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "operator",
                "image": image,
                "imagePullPolicy": "Never",
                "args": [
                    "run",
                    format!("--namespaces={app_ns}"),
                    format!("--sts-endpoint={}", node_env.emulator.url()),
                    "--allow-insecure-sts-endpoints",
                    format!("--admin-address=127.0.0.1:{admin_port}"),
                    "--log-format=json",
                ],
                "env": [{"name": "KUBECONFIG", "value": "/etc/podcreds/kubeconfig"}],
                "readinessProbe": probe("/readyz"),
                "livenessProbe": probe("/healthz"),
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "kubeconfig", "mountPath": "/etc/podcreds", "readOnly": true}],
            }],
            "volumes": [{"name": "kubeconfig", "secret": {"secretName": "kubeconfig"}}],
        },
    }))?;
    let pods: Api<Pod> = Api::namespaced(node_env.client.clone(), &op_ns);
    pods.create(&PostParams::default(), &pod).await?;

    // Ready through the kubelet's own readiness probe.
    let ready = crate::support::wait_for(Duration::from_secs(90), || async {
        let pod = pods.get("podcreds").await.ok()?;
        let status = pod.status?;
        let container = status.container_statuses?.into_iter().next()?;
        container.ready.then_some(container.image)
    })
    .await;
    let Some(running_image) = ready else {
        let pod = pods.get("podcreds").await?;
        bail!(
            "the operator pod did not become Ready: {:?}\noperator output:\n{}\n{}",
            pod.status,
            node.container_output(&op_ns, "podcreds", "operator")
                .join("\n"),
            node.logs(20)
        );
    };
    ensure!(
        running_image.ends_with(&image) || running_image == image,
        "the pod runs {running_image}, not {image}"
    );

    node_env
        .create_ready(
            &app_ns,
            "app",
            crate::support::spec(&role),
            Duration::from_secs(60),
        )
        .await
        .with_context(|| {
            format!(
                "operator output:\n{}",
                node.container_output(&op_ns, "podcreds", "operator")
                    .join("\n")
            )
        })?;
    let data = node_env.secret_data(&app_ns, "app").await?;
    let dir = tempfile::tempdir()?;
    let (credentials, config) = crate::support::secret_files(dir.path(), &data)?;
    let identity = crate::support::aws_caller_identity(
        &node_env.emulator.url(),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.as_path()),
            ("AWS_CONFIG_FILE", config.as_path()),
        ],
    )
    .await?;
    let arn = identity["Arn"].as_str().unwrap_or_default();
    ensure!(
        arn.contains(&format!(":assumed-role/{app_ns}-r/")),
        "the credentials the pod issued are for {arn}"
    );
    let output = node
        .container_output(&op_ns, "podcreds", "operator")
        .join("\n");
    let issued: serde_json::Value = serde_json::from_str(
        data.get("credential-process.json")
            .context("the Secret has no credential-process.json")?,
    )?;
    for field in ["SecretAccessKey", "SessionToken"] {
        let value = issued[field].as_str().unwrap_or_default();
        ensure!(
            !value.is_empty() && !output.contains(value),
            "the operator pod's log holds the {field}"
        );
    }
    // The image's user, as the kernel sees the container's process.
    let uids = operator_process_uids(&format!("--namespaces={app_ns}"))?;
    ensure!(
        !uids.is_empty()
            && uids
                .iter()
                .all(|&(real, effective)| real == 65532 && effective == 65532),
        "the operator container runs as {uids:?}, not uid 65532"
    );
    println!(
        "  node: the operator image {image} ran as a pod with the chart's container settings (uid 65532 seen in /proc, read-only root, no capabilities), Ready through the kubelet's probes, and issued working credentials"
    );
    Ok(())
}

/// The user IDs (real, effective) of every process of this run running the operator image's
/// entrypoint with `marker` among its arguments: the node's containers are this machine's
/// processes, so what they run as is read where the kernel keeps it.
fn operator_process_uids(marker: &str) -> anyhow::Result<Vec<(u32, u32)>> {
    let mut uids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_operator = args.first() == Some(&&b"/podcreds"[..])
            && args
                .iter()
                .any(|a| a.windows(marker.len()).any(|w| w == marker.as_bytes()));
        if !is_operator {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let ids: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .context("no Uid line")?
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        uids.push((ids[0], ids[1]));
    }
    Ok(uids)
}

pub async fn the_chart_runs_on_the_node_in_a_restricted_namespace(
    _env: &Env,
) -> anyhow::Result<()> {
    let archive = std::env::var_os(OPERATOR_IMAGE_VARIABLE)
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "{OPERATOR_IMAGE_VARIABLE} is not set: run the suite through `cargo xtask test`, which builds the image with `cargo xtask image`"
            )
        })?;
    let image = archive_image_name(&archive)?;
    let (repository, tag) = image
        .rsplit_once(':')
        .context("the image name has no tag")?;
    let started = std::time::Instant::now();
    let node_env = Env::start_with(Options {
        node: true,
        pod_network: true,
        ..Options::default()
    })
    .await
    .context("starting a control plane with a node and a pod network")?;
    println!(
        "  node: control plane with a node, a pod network and a scheduler Ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let node = node_env.plane.node().context("no node")?;
    node.import_image(&archive)?;
    let release_ns = "podcreds-system";
    restricted_namespace(&node_env, release_ns).await?;
    let mut sets = vec![
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".into(),
    ];
    sets.extend(chart_network_values(&node_env).await?);
    let chart = crate::support::helm::chart_dir();
    let chart = chart.to_str().context("chart path")?;
    // The CRDs exist already, unlabelled, as after an install of a chart that carried them in its
    // crds/ directory: the release adopts them as the README's upgrade notes say.
    adopt_crds(&node_env, "podcreds", release_ns).await?;
    let mut install = vec![
        "install",
        "podcreds",
        chart,
        "--namespace",
        release_ns,
        "--set",
        "operator.allowInsecureStsEndpoints=true",
    ];
    for s in &sets {
        install.extend(["--set-string", s.as_str()]);
    }
    let (ok, out, err) = crate::support::helm::helm(&node_env, &install).await?;
    ensure!(ok, "helm install failed:\n{out}\n{err}");
    wait_rolled_out(&node_env, release_ns, "podcreds", 2).await?;

    let (app_ns, role) = node_env.app_namespace("node-chart", None).await?;
    node_env
        .create_ready(
            &app_ns,
            "first",
            crate::support::spec(&role),
            Duration::from_secs(90),
        )
        .await?;

    // Both replicas run as the image's non-root user, in a namespace enforcing the restricted
    // Pod Security Standard (the apiserver admitted them under it).
    let uids = operator_process_uids("--leader-election")?;
    ensure!(
        uids.len() >= 2
            && uids
                .iter()
                .all(|&(real, effective)| real == 65532 && effective == 65532),
        "the chart's operator processes run as {uids:?}, not uid 65532"
    );

    // Fail-over: the leader's pod killed at once; the other replica takes the Lease and serves.
    let old_leader =
        crate::support::wait_for(Duration::from_secs(30), || leader(&node_env, release_ns))
            .await
            .context("no replica holds the leader Lease")?;
    let pods: Api<Pod> = Api::namespaced(node_env.client.clone(), release_ns);
    // The standby: the other replica running now (the leader's replacement is not there yet).
    let standby = pods
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .find(|name| name != &old_leader && name.starts_with("podcreds-"))
        .context("no second replica")?;
    pods.delete(
        &old_leader,
        &kube::api::DeleteParams::default().grace_period(0),
    )
    .await?;
    let new_leader = crate::support::wait_for(Duration::from_secs(60), || async {
        leader(&node_env, release_ns)
            .await
            .filter(|h| h != &old_leader)
    })
    .await
    .with_context(|| format!("no replica took over from {old_leader}"))?;
    // Which one: once the Lease expires, the standby (caches warm) and the leader's replacement
    // (just started) both try, and the first one wins; either must be a live replica of the
    // Deployment, never the killed pod.
    let replicas: Vec<String> = pods
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    ensure!(
        replicas.contains(&new_leader),
        "the Lease holder {new_leader} is not a live replica: {replicas:?}"
    );
    println!(
        "  node: the Lease went from {old_leader} to {new_leader} ({})",
        if new_leader == standby {
            "the standby"
        } else {
            "the leader's replacement"
        }
    );
    node_env
        .create_ready(
            &app_ns,
            "second",
            crate::support::spec(&role),
            Duration::from_secs(90),
        )
        .await
        .with_context(|| format!("after fail-over from {old_leader} to {new_leader}"))?;
    wait_rolled_out(&node_env, release_ns, "podcreds", 2).await?;

    // The operator's log through the apiserver (`kubectl logs`): the apiserver dials the kubelet
    // at the node's address on its bridge, inside the run's network namespace.
    let issued = node_env.secret_data(&app_ns, "second").await?;
    let logs = pods
        .logs(
            &new_leader,
            &kube::api::LogParams {
                container: Some("operator".into()),
                ..kube::api::LogParams::default()
            },
        )
        .await
        .with_context(|| format!("the logs API for pod {release_ns}/{new_leader}"))?;
    ensure!(
        logs.contains("became leader"),
        "the new leader's log (through the logs API) does not say it became leader:\n{logs}"
    );
    let process: serde_json::Value = serde_json::from_str(
        issued
            .get("credential-process.json")
            .context("Secret second has no credential-process.json")?,
    )?;
    for field in ["SecretAccessKey", "SessionToken"] {
        let value = process[field].as_str().unwrap_or_default();
        ensure!(
            !value.is_empty() && !logs.contains(value),
            "the operator pod's log holds the {field}"
        );
    }

    // An upgrade rolls both replicas to the new pod template.
    let upgrade = [
        "upgrade",
        "podcreds",
        chart,
        "--namespace",
        release_ns,
        "--reuse-values",
        "--set",
        "operator.logLevel=debug",
    ];
    let (ok, out, err) = crate::support::helm::helm(&node_env, &upgrade).await?;
    ensure!(ok, "helm upgrade failed:\n{out}\n{err}");
    wait_rolled_out(&node_env, release_ns, "podcreds", 2).await?;
    node_env
        .create_ready(
            &app_ns,
            "third",
            crate::support::spec(&role),
            Duration::from_secs(90),
        )
        .await?;

    // Uninstall removes the operator's pods and keeps the CRD and the credentials.
    let (ok, out, err) = crate::support::helm::helm(
        &node_env,
        &["uninstall", "podcreds", "--namespace", release_ns],
    )
    .await?;
    ensure!(ok, "helm uninstall failed:\n{out}\n{err}");
    let gone = crate::support::wait_for(Duration::from_secs(60), || async {
        pods.list(&Default::default())
            .await
            .ok()
            .filter(|l| l.items.is_empty())
            .map(|_| ())
    })
    .await;
    ensure!(
        gone.is_some(),
        "the operator's pods outlived helm uninstall"
    );
    for name in ["first", "second", "third"] {
        node_env
            .secret_data(&app_ns, name)
            .await
            .with_context(|| format!("Secret {name} is gone after helm uninstall"))?;
    }
    ensure_crds_kept(&node_env).await?;
    println!(
        "  node: chart {image} installed in a restricted namespace, 2 replicas Ready through the kubelet's probes over the pod network, fail-over {old_leader} -> {new_leader} (its log read through the logs API), upgrade rolled out, uninstall kept CRD and Secrets"
    );
    Ok(())
}

/// A restricted pod on the pod network whose SDK takes its credentials from the node endpoint.
fn endpoint_pod(name: &str, image: &str, binding: &str, sts_endpoint: &str) -> anyhow::Result<Pod> {
    let mut pod = podcreds_testenv::node::endpoint_client_pod(
        name,
        "app",
        image,
        binding,
        sts_endpoint,
        1000,
    );
    pod["spec"]["restartPolicy"] = json!("Never");
    Ok(serde_json::from_value(pod)?)
}

/// Credential sets a client printed, in order; an error if any call failed.
fn endpoint_rounds(
    node: &podcreds_testenv::node::Node,
    ns: &str,
    pod: &str,
) -> anyhow::Result<Vec<String>> {
    let mut sets = Vec::new();
    for line in node.container_output(ns, pod, "app") {
        let round: Round =
            serde_json::from_str(&line).with_context(|| format!("{pod} printed {line:?}"))?;
        if let Some(error) = round.error {
            bail!("a call of {pod} failed: {error}");
        }
        if let Some(set) = round.credentials.filter(|c| !c.is_empty())
            && sets.last() != Some(&set)
        {
            sets.push(set);
        }
    }
    Ok(sets)
}

const ENDPOINT_PODS: usize = 10;

pub async fn pods_on_the_node_call_sts_through_the_agent(_env: &Env) -> anyhow::Result<()> {
    let archive = std::env::var_os(OPERATOR_IMAGE_VARIABLE)
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "{OPERATOR_IMAGE_VARIABLE} is not set: run the suite through `cargo xtask test`, which builds the image with `cargo xtask image`"
            )
        })?;
    let image = archive_image_name(&archive)?;
    let (repository, tag) = image
        .rsplit_once(':')
        .context("the image name has no tag")?;
    let rust_client = pod_client_binary()?;
    let go_client = podcreds_testenv::tools::sdk_go_v2_client()?;
    let node_env = Env::start_with(Options {
        node: true,
        pod_network: true,
        ..Options::default()
    })
    .await
    .context("starting a control plane with a node and a pod network")?;
    let node = node_env.plane.node().context("no node")?;
    node.import_image(&archive)?;
    for (name, image) in [
        (
            "pod-client.tar",
            podcreds_testenv::node::pod_client_image(rust_client)?,
        ),
        (
            "sdk-go-v2-client.tar",
            podcreds_testenv::node::static_program_image(
                GO_CLIENT_IMAGE,
                "sdk-go-v2-client",
                go_client,
            ),
        ),
    ] {
        node.import_built_image(name, &image)?;
    }
    let release_ns = "podcreds-system";
    restricted_namespace(&node_env, release_ns).await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(node_env.client.clone());
    let mut sets = vec![
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".into(),
    ];
    let network_values = chart_network_values(&node_env).await?;
    let sts = network_values
        .iter()
        .find_map(|s| s.strip_prefix("operator.stsEndpoint="))
        .context("the chart values name no STS endpoint")?
        .to_string();
    sets.extend(network_values);
    adopt_crds(&node_env, "podcreds", release_ns).await?;
    let chart = crate::support::helm::chart_dir();
    let chart = chart.to_str().context("chart path")?;
    let mut install = vec![
        "install",
        "podcreds",
        chart,
        "--namespace",
        release_ns,
        "--set",
        "operator.allowInsecureStsEndpoints=true",
        "--set",
        "agent.enabled=true",
    ];
    for s in &sets {
        install.extend(["--set-string", s.as_str()]);
    }
    let (ok, out, err) = crate::support::helm::helm(&node_env, &install).await?;
    ensure!(ok, "helm install failed:\n{out}\n{err}");
    wait_rolled_out(&node_env, release_ns, "podcreds", 2).await?;
    let agents: Api<Pod> = Api::namespaced(node_env.client.clone(), "podcreds-node");
    let agent_ready = || async {
        agents
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .and_then(|p| p.metadata.name)
    };
    let Some(first_agent) = crate::support::wait_for(Duration::from_secs(120), agent_ready).await
    else {
        // What the agent pods are doing, and what they said.
        let mut report = String::new();
        let daemonsets: Api<k8s_openapi::api::apps::v1::DaemonSet> =
            Api::namespaced(node_env.client.clone(), "podcreds-node");
        for ds in daemonsets.list(&Default::default()).await?.items {
            report.push_str(&format!(
                "DaemonSet {}: {:?}\n",
                ds.metadata.name.unwrap_or_default(),
                ds.status
            ));
        }
        for pod in agents.list(&Default::default()).await?.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            report.push_str(&format!(
                "pod {name}: {:?}\n{}\n",
                pod.status
                    .map(|s| (s.phase, s.conditions, s.container_statuses)),
                node.container_output("podcreds-node", &name, "agent")
                    .join("\n")
            ));
        }
        bail!(
            "the agent never became Ready:\n{report}\nnode logs:\n{}",
            node.logs(20)
        );
    };

    // The tenant: a restricted namespace, one Endpoint binding, ten pods.
    let app_ns = node_env.namespace("node-endpoint").await?;
    namespaces
        .patch(
            &app_ns,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})),
        )
        .await?;
    node_env.service_account(&app_ns, "app").await?;
    // 60-second sessions: a refresh about every 40 s.
    let role = node_env.role(&format!("{app_ns}-app"), &app_ns, "app", Some(60));
    node_env
        .create_ready(
            &app_ns,
            "app",
            spec_with(
                &role,
                json!({"delivery": ["Endpoint"], "sts": {"region": "eu-west-1"}}),
            ),
            Duration::from_secs(90),
        )
        .await?;
    ensure!(
        node_env.secrets(&app_ns).get_opt("app").await?.is_none(),
        "an Endpoint-only binding wrote a Secret"
    );
    let pods: Api<Pod> = Api::namespaced(node_env.client.clone(), &app_ns);
    let names: Vec<String> = (0..ENDPOINT_PODS)
        .map(|i| match i {
            0 => "go-client".to_string(),
            i => format!("rust-client-{i}"),
        })
        .collect();
    for name in &names {
        let image = if name == "go-client" {
            GO_CLIENT_IMAGE
        } else {
            podcreds_testenv::node::POD_CLIENT_IMAGE
        };
        pods.create(
            &PostParams::default(),
            &endpoint_pod(name, image, "app", &sts)?,
        )
        .await
        .with_context(|| format!("creating pod {name} in a restricted namespace"))?;
    }
    // Every pod's calls, until each client saw `want` credential sets.
    let until = |want: usize, what: &'static str| {
        let (names, pods, node, app_ns) = (&names, &pods, node, &app_ns);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
            loop {
                let mut fewest = usize::MAX;
                for name in names {
                    let seen =
                        endpoint_rounds(node, app_ns, name).with_context(|| what.to_string())?;
                    fewest = fewest.min(seen.len());
                    let pod = pods.get(name).await?;
                    let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
                    ensure!(
                        phase != "Failed" && phase != "Succeeded",
                        "{name} ended ({phase}) {what}"
                    );
                }
                if fewest >= want {
                    return Ok::<(), anyhow::Error>(());
                }
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "{what}: some client saw fewer than {want} credential sets; node logs:\n{}",
                    node.logs(20)
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    until(2, "through the agent").await?;
    // The agent pod deleted: the DaemonSet brings another; the pods keep calling.
    agents
        .delete(&first_agent, &kube::api::DeleteParams::default())
        .await?;
    crate::support::wait_for(Duration::from_secs(120), || async {
        agent_ready().await.filter(|n| n != &first_agent)
    })
    .await
    .context("no agent came back after its pod was deleted")?;
    until(3, "across the agent's restart").await?;
    // The leader's pod killed at once: the standby takes the Lease, exchanges once, serves.
    let old_leader =
        crate::support::wait_for(Duration::from_secs(30), || leader(&node_env, release_ns))
            .await
            .context("no replica holds the leader Lease")?;
    let operators: Api<Pod> = Api::namespaced(node_env.client.clone(), release_ns);
    operators
        .delete(
            &old_leader,
            &kube::api::DeleteParams::default().grace_period(0),
        )
        .await?;
    until(5, "across the leader's fail-over").await?;

    // One STS call per credential set, whatever ten pods asked.
    let mut all_sets: Vec<String> = Vec::new();
    for name in &names {
        for set in endpoint_rounds(node, &app_ns, name)? {
            if !all_sets.contains(&set) {
                all_sets.push(set);
            }
        }
    }
    let calls = node_env.calls_for(&role);
    let client_calls: usize = names
        .iter()
        .map(|n| node.container_output(&app_ns, n, "app").len())
        .sum();
    ensure!(
        calls >= all_sets.len() && calls <= all_sets.len() + 1,
        "{calls} STS calls for {} credential sets the pods saw ({client_calls} calls by the pods)",
        all_sets.len()
    );
    println!(
        "  node endpoint: {ENDPOINT_PODS} pods made {client_calls} STS calls with {} credential sets; the operator made {calls} STS calls",
        all_sets.len()
    );
    // No token reached a log: the agents' and the operators' (a JWT starts with "eyJ").
    for (ns, pods_api) in [("podcreds-node", &agents), (release_ns, &operators)] {
        for pod in pods_api.list(&Default::default()).await?.items {
            let name = pod.metadata.name.unwrap_or_default();
            for container in ["agent", "operator"] {
                let text = node.container_output(ns, &name, container).join("\n");
                ensure!(
                    !text.contains("eyJ"),
                    "a token reached the log of {ns}/{name}"
                );
            }
        }
    }
    Ok(())
}

const GO_CLIENT_IMAGE: &str = "localhost/podcreds-testenv/sdk-go-v2-client:1";

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![node:
    a_pod_reads_refreshed_credentials_through_a_secret_volume,
    the_operator_image_runs_as_a_restricted_pod,
    the_chart_runs_on_the_node_in_a_restricted_namespace,
    pods_on_the_node_call_sts_through_the_agent,
];

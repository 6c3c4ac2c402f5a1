//! ECR image-pull Secrets on a real node: the STS emulator answers ECR's `GetAuthorizationToken`
//! for the sessions it issued, a real registry (CNCF Distribution behind `htpasswd`, which it
//! reads again whenever the file changes) accepts only the newest token as `AWS:<token>`, and the
//! kubelet pulls through it with the binding's Secret: named by the pod, and through the
//! ServiceAccount (`addToServiceAccount`), before and after a refresh. A replaced token is
//! refused by the registry; a deleted Secret is written again at once; turning the options off
//! takes out only podcreds' ServiceAccount entry, then the Secret; the operator's log never shows
//! a token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use podcreds_testenv::Options;
use podcreds_testenv::registry::{Registry, RegistryAuth, RegistryOptions};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Env, spec_with};

/// The repository the test image is pushed to.
const REPOSITORY: &str = "ecr-test/crane";

/// Writes `path` as an htpasswd file whose one entry is the user `AWS` with `password`
/// (bcrypt, as Distribution requires, from crypt(3): libxcrypt through perl), atomically so
/// that the registry never reads half a file.
fn write_htpasswd(path: &Path, password: Option<&str>) -> anyhow::Result<()> {
    let line = match password {
        None => String::new(),
        Some(password) => {
            const ALPHABET: &[u8] =
                b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let digest = Sha256::digest(password.as_bytes());
            let mut salt: String = digest
                .iter()
                .take(22)
                .map(|b| ALPHABET[(*b as usize) % 64] as char)
                .collect();
            // bcrypt's last salt character carries only 2 bits.
            salt.pop();
            salt.push('u');
            let out = std::process::Command::new("perl")
                .args(["-e", "print crypt($ARGV[0], $ARGV[1])"])
                .arg(password)
                .arg(format!("$2b$05${salt}"))
                .output()
                .context("running perl for crypt(3)")?;
            let hash = String::from_utf8(out.stdout)?;
            ensure!(
                out.status.success() && hash.starts_with("$2b$05$") && hash.len() == 60,
                "crypt(3) made no bcrypt hash: {hash:?}"
            );
            format!("AWS:{hash}\n")
        }
    };
    let partial = path.with_extension("partial");
    std::fs::write(&partial, line)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// Keeps the registry's htpasswd on the newest token the emulator issued, and only that one, as
/// long as it runs.
fn follow_tokens(emulator: sts_emulator::Emulator, path: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current: Option<String> = None;
        loop {
            let newest = emulator
                .ecr_tokens()
                .into_iter()
                .filter_map(|t| {
                    t.expires_at
                        .parse::<jiff::Timestamp>()
                        .ok()
                        .map(|at| (at, t.password))
                })
                .max()
                .map(|(_, password)| password);
            if newest.is_some() && newest != current {
                if let Err(e) = write_htpasswd(&path, newest.as_deref()) {
                    eprintln!("  ecr: htpasswd not written: {e:#}");
                } else {
                    current = newest;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// `GET /v2/` at `host` with `AWS:<password>`: the registry's HTTP status.
async fn login_status(host: &str, password: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}").as_bytes());
    stream
        .write_all(
            format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no HTTP status in {answer:?}"))
}

/// The password in the image-pull Secret's entry for `host`.
async fn secret_password(env: &Env, ns: &str, name: &str, host: &str) -> anyhow::Result<String> {
    let secret = env.secrets(ns).get(name).await?;
    ensure!(
        secret.type_.as_deref() == Some("kubernetes.io/dockerconfigjson"),
        "Secret {name} is of type {:?}",
        secret.type_
    );
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    ensure!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("podcreds"),
        "Secret {name} is not labelled managed-by=podcreds"
    );
    let data = podcreds_testenv::decode_secret(&secret);
    let config: serde_json::Value = serde_json::from_str(
        data.get(".dockerconfigjson")
            .context("no .dockerconfigjson")?,
    )?;
    let auth = config["auths"][host]["auth"]
        .as_str()
        .with_context(|| format!("no auths entry for {host}: {config}"))?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(auth)?)?;
    decoded
        .strip_prefix("AWS:")
        .map(str::to_string)
        .context("the entry's user is not AWS")
}

/// A restricted pod running the test image (pulled always) with `pull_secret` named, or none
/// (then its ServiceAccount's apply).
fn pull_pod(name: &str, image: &str, pull_secret: Option<&str>) -> serde_json::Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            // On the run's own network, where the registry listens on loopback.
            "nodeName": podcreds_testenv::node::NODE_NAME,
            "hostNetwork": true,
            "serviceAccountName": "app",
            "automountServiceAccountToken": false,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "app",
                "image": image,
                "imagePullPolicy": "Always",
                "args": ["version"],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    });
    if let Some(secret) = pull_secret {
        pod["spec"]["imagePullSecrets"] = json!([{"name": secret}]);
    }
    pod
}

/// Waits until the kubelet pulled pod `name`'s image and ran it. A refused pull is retried by
/// the kubelet (a pull may race a token's replacement), so only the deadline fails.
async fn wait_pulled(env: &Env, ns: &str, name: &str) -> anyhow::Result<()> {
    let node = env.plane.node().context("no node")?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let pod = pods.get(name).await?;
        let status = pod.status.clone().unwrap_or_default();
        let container = status
            .container_statuses
            .as_ref()
            .and_then(|c| c.first())
            .cloned();
        if let Some(c) = &container
            && (c
                .state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some() || s.running.is_some()))
        {
            let terminated = c.state.as_ref().and_then(|s| s.terminated.clone());
            if let Some(t) = terminated {
                ensure!(
                    t.exit_code == 0,
                    "pod {name}: the pulled image ran and exited {}",
                    t.exit_code
                );
            }
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "pod {name}: the image was not pulled within 3 minutes: {:?} (phase {:?}, conditions {:?}); node logs:\n{}",
                container.and_then(|c| c.state),
                status.phase,
                status.conditions,
                node.logs(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The names in ServiceAccount `app`'s `imagePullSecrets`.
async fn listed(env: &Env, ns: &str) -> anyhow::Result<Vec<String>> {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), ns);
    Ok(accounts
        .get("app")
        .await?
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect())
}

pub async fn the_kubelet_pulls_from_an_ecr_like_registry_with_refreshed_tokens(
    env: &Env,
) -> anyhow::Result<()> {
    // A pod network for the ServiceAccount admission plugin, which copies the ServiceAccount's
    // imagePullSecrets into pods that name none (the pods themselves use the host's network).
    let node_env = Env::start_with(Options {
        node: true,
        pod_network: true,
        ..Options::default()
    })
    .await
    .context("starting a control plane with a node and a pod network")?;
    let node = node_env.plane.node().context("no node")?;

    // The image, pushed while the registry takes anyone; then the same storage behind htpasswd.
    let crane = podcreds_testenv::tools::CRANE.binary()?;
    let image = podcreds_testenv::node::static_program_image(
        &format!("{REPOSITORY}:1"),
        "crane",
        crane.clone(),
    );
    let archive = node.dir().join("images/ecr-test.tar");
    std::fs::create_dir_all(node.dir().join("images"))?;
    image.write_archive(&archive)?;
    let registry_dir = node_env.plane.dir().join("ecr");
    std::fs::create_dir_all(&registry_dir)?;
    {
        let open = Registry::start(&registry_dir, RegistryOptions::default()).await?;
        let tools = podcreds_testenv::release::Tools {
            helm: podcreds_testenv::tools::binary("helm")?,
            crane: crane.clone(),
            helm_env: Vec::new(),
        };
        podcreds_testenv::release::push_image(
            &tools,
            &archive,
            &format!("{}/{REPOSITORY}:1", open.host()),
            true,
        )?;
    }
    let htpasswd = registry_dir.join("htpasswd");
    write_htpasswd(&htpasswd, None)?;
    let registry = Registry::start(
        &registry_dir,
        RegistryOptions {
            auth: RegistryAuth::Config(json!({"htpasswd": {"realm": "ecr", "path": htpasswd}})),
        },
    )
    .await?;
    crate::register_log(registry.dir().join("registry.log"));
    node.trust_plain_http_registry(registry.host())?;
    let host = registry.host().to_string();
    let image = format!("{host}/{REPOSITORY}:1");
    let follower = follow_tokens(node_env.emulator.clone(), htpasswd.clone());

    let ns = node_env.namespace("ecr").await?;
    node_env.service_account(&ns, "app").await?;
    // A pull Secret of the user's own, which podcreds must leave in the ServiceAccount.
    let accounts: Api<ServiceAccount> = Api::namespaced(node_env.client.clone(), &ns);
    accounts
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"imagePullSecrets": [{"name": "users-own"}]})),
        )
        .await?;
    // Sessions of 150 s renewed 120 s before they expire: a refresh, and a new ECR token, every
    // 30 s.
    let role = node_env.role(&format!("{ns}-app"), &ns, "app", Some(150));
    let ecr_endpoint = format!("--ecr-endpoint={}", node_env.emulator.url());
    let operator = env
        .start_operator_with_kubeconfig(
            &node_env.plane.kubeconfig,
            &[&ns],
            &node_env.emulator.url(),
            &[&ecr_endpoint],
        )
        .await?;
    let binding = node_env
        .create_ready(
            &ns,
            "app",
            spec_with(
                &role,
                json!({"renewBefore": "120s", "imagePullSecret": {
                    "registries": [host], "addToServiceAccount": true}}),
            ),
            Duration::from_secs(60),
        )
        .await?;
    let pull_status = binding
        .status
        .as_ref()
        .and_then(|s| s.image_pull_secret.clone())
        .context("the status names no image-pull Secret")?;
    ensure!(
        pull_status.secret_name == "app-ecr" && pull_status.expiration.is_some(),
        "status: {pull_status:?}"
    );
    ensure!(
        listed(&node_env, &ns).await? == ["users-own", "app-ecr"],
        "the ServiceAccount lists {:?}",
        listed(&node_env, &ns).await?
    );

    // The pod names the Secret; the kubelet pulls with the token in it.
    let first = secret_password(&node_env, &ns, "app-ecr", &host).await?;
    let pods: Api<Pod> = Api::namespaced(node_env.client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pull_pod("named", &image, Some("app-ecr")))?,
    )
    .await?;
    wait_pulled(&node_env, &ns, "named").await?;

    // A refresh writes a new token; the registry now refuses the old one and takes the new.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let second = loop {
        let now = secret_password(&node_env, &ns, "app-ecr", &host).await?;
        if now != first {
            break now;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the image-pull Secret kept its token for 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let stale = wait_for_status(&host, &first, 401).await;
    ensure!(
        stale == Some(401),
        "the registry answered a replaced token with {stale:?}"
    );
    // Through the ServiceAccount only: the admission plugin copies its imagePullSecrets.
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pull_pod("through-account", &image, None))?,
    )
    .await?;
    wait_pulled(&node_env, &ns, "through-account").await?;
    let current = secret_password(&node_env, &ns, "app-ecr", &host).await?;
    ensure!(
        current == second || current != first,
        "the Secret went back to a replaced token"
    );
    let fresh = login_status(&host, &current).await?;
    ensure!(
        fresh == 200 || secret_password(&node_env, &ns, "app-ecr", &host).await? != current,
        "the registry refused the Secret's current token ({fresh})"
    );

    // Deleted: written again at once with a new token, not at the next renewal.
    let before = node_env.emulator.count("GetAuthorizationToken");
    node_env
        .secrets(&ns)
        .delete("app-ecr", &Default::default())
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if node_env.secrets(&ns).get_opt("app-ecr").await?.is_some()
            && node_env.emulator.count("GetAuthorizationToken") > before
        {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the deleted image-pull Secret was not written again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Turned off: podcreds takes out its entry, and only its entry.
    let bindings: Api<podcreds::api::AWSRoleBinding> =
        Api::namespaced(node_env.client.clone(), &ns);
    bindings
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imagePullSecret": {"addToServiceAccount": false}}})),
        )
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while listed(&node_env, &ns).await? != ["users-own"] {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the ServiceAccount still lists {:?}",
            listed(&node_env, &ns).await?
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Removed: the Secret podcreds created goes.
    bindings
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imagePullSecret": null}})),
        )
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while node_env.secrets(&ns).get_opt("app-ecr").await?.is_some() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the image-pull Secret outlived imagePullSecret"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    follower.abort();

    // No token, old or new, ever reached the operator's log.
    let log = std::fs::read_to_string(operator.log_path())?;
    for token in [&first, &second, &current] {
        ensure!(
            !log.contains(token.as_str()),
            "the operator's log shows an ECR token"
        );
    }
    let issued = node_env.emulator.count("GetAuthorizationToken");
    println!(
        "  ecr: {issued} tokens issued; pulled with the Secret and through the ServiceAccount, a replaced token refused"
    );
    Ok(())
}

/// Polls `GET /v2/` with `password` until the registry answers `wanted` (the htpasswd follower
/// may not have caught up yet); the last answer otherwise.
async fn wait_for_status(host: &str, password: &str, wanted: u16) -> Option<u16> {
    let mut last = None;
    for _ in 0..100 {
        last = login_status(host, password).await.ok();
        if last == Some(wanted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![ecr:
    the_kubelet_pulls_from_an_ecr_like_registry_with_refreshed_tokens,
];

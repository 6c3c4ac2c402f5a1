//! `cargo xtask demo`: podcreds end to end on this machine.
//!
//! A local control plane and the STS emulator start, the operator runs as in production (the real
//! binary, a real client), `examples/quickstart.yaml` is applied, and the AWS CLI uses the Secret's
//! files exactly as a pod would (mounted at the binding's mountPath in a private mount namespace).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::{ControlPlane, Launch, Operator, Options, decode_secret, tools};
use sts_emulator::{Emulator, Role};

use crate::{Profile, repo_root, testenv};

const NAMESPACE: &str = "podcreds-demo";
const BINDING: &str = "reports-reader";

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

pub fn run(keep: bool) -> anyhow::Result<()> {
    say("test environment (first run: builds Kubernetes from source, which takes a while)");
    testenv::ensure_for_demo()?;
    say("building the operator");
    let operator_bin = crate::build_operator(Profile::Debug)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(demo(operator_bin, keep))
}

async fn demo(operator_bin: PathBuf, keep: bool) -> anyhow::Result<()> {
    say("starting etcd, kube-apiserver and kube-controller-manager");
    let started = Instant::now();
    let plane = ControlPlane::start(Options::default()).await?;
    println!(
        "    control plane ready at {} in {:.1?}",
        plane.api_url,
        started.elapsed()
    );
    for file in [
        "crds/awsrolebindings.podcreds.dev.yaml",
        "crds/awscredentialsources.podcreds.dev.yaml",
    ] {
        plane
            .install_crds(&std::fs::read_to_string(repo_root().join(file))?)
            .await?;
    }
    println!(
        "    CRDs awsrolebindings.podcreds.dev and awscredentialsources.podcreds.dev installed"
    );

    say("starting the STS emulator (validates tokens against the cluster's JWKS)");
    let emulator = Emulator::start(sts_emulator::Config::for_issuer(
        &plane.api_url,
        &plane.ca_pem,
    ))
    .await?;
    println!("    STS emulator at {}", emulator.url());

    say("starting the operator");
    let operator = Operator::start(
        Launch::new(&operator_bin, &plane.kubeconfig, plane.dir()).args([
            format!("--sts-endpoint={}", emulator.url()),
            // The emulator speaks plain HTTP on loopback.
            "--allow-insecure-sts-endpoints".into(),
            "--log-format=text".into(),
        ]),
    )
    .await?;
    println!(
        "    operator pid {} (log: {})",
        operator.pid(),
        operator.log_path().display()
    );

    say("applying examples/quickstart.yaml");
    let example = repo_root().join("examples/quickstart.yaml");
    print!(
        "{}",
        kubectl(
            &plane.kubeconfig,
            &["apply", "-f", &example.to_string_lossy()]
        )?
    );
    let client = plane.client().await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    for cm in config_maps
        .list(&ListParams::default().labels("podcreds.dev/demo=trust-rule"))
        .await?
    {
        for json in cm.data.unwrap_or_default().values() {
            let role: Role = serde_json::from_str(json).context("trust rule in the example")?;
            println!("    trust rule for {}: {:?}", role.arn, role.subjects);
            emulator.add_role(role);
        }
    }

    say("waiting for the binding to become Ready");
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    loop {
        let b = bindings.get(BINDING).await?;
        let ready = podcreds::status::ready_condition(b.status.as_ref()).cloned();
        if let Some(c) = &ready
            && c.status == "True"
        {
            println!("    Ready after {:.1?}: {}", started.elapsed(), c.message);
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "not Ready after 60s (last condition: {ready:?})\n--- operator log ---\n{}",
                operator.process.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    print!(
        "{}",
        kubectl(
            &plane.kubeconfig,
            &["get", "awsrb", "-n", NAMESPACE, "-o", "wide"]
        )?
    );

    say("the binding's status");
    let b = bindings.get(BINDING).await?;
    println!("{}", serde_yaml::to_string(&b.status)?);

    say("the Secret (values redacted)");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = secrets.get(BINDING).await?;
    let data = decode_secret(&secret);
    for (key, value) in &data {
        println!("    {key:<26} {} bytes", value.len());
    }
    for (k, v) in secret.metadata.annotations.unwrap_or_default() {
        println!("    annotation {k}: {v}");
    }

    say("a pod's view: the AWS CLI with AWS_CONFIG_FILE and credential_process");
    let mount = tempfile::tempdir()?;
    for (key, value) in &data {
        std::fs::write(mount.path().join(key), value)?;
    }
    let identity = aws_as_a_pod(mount.path(), &b.spec.mount_path, &emulator.url())?;
    println!("{identity}");

    if keep {
        say("running until Ctrl-C");
        println!("    export KUBECONFIG={}", plane.kubeconfig.display());
        println!("    kubectl get awsrb -A");
        println!("    kubectl describe awsrb -n {NAMESPACE} {BINDING}");
        println!("    kubectl get secret -n {NAMESPACE} {BINDING} -o yaml");
        println!(
            "    curl -s http://{}/metrics | grep podcreds_",
            operator.admin
        );
        println!(
            "    STS emulator calls: curl -s {}/_emulator/calls",
            emulator.url()
        );
        tokio::signal::ctrl_c().await?;
        println!("\ncleaning up");
    }
    emulator.shutdown();
    drop(operator);
    drop(plane);
    println!("demo finished: every process stopped, temporary files removed");
    Ok(())
}

/// Runs `aws sts get-caller-identity` with the Secret's files mounted at `mount_path` in a
/// private mount namespace, as the kubelet would mount them into a pod.
fn aws_as_a_pod(files: &Path, mount_path: &str, endpoint: &str) -> anyhow::Result<String> {
    let aws = tools::venv_program("aws")?;
    let script = format!(
        "mount -t tmpfs tmpfs /var/run && mkdir -p '{mount_path}' && mount --bind '{files}' '{mount_path}' && \
         AWS_CONFIG_FILE='{mount_path}/config' '{aws}' sts get-caller-identity --endpoint-url '{endpoint}' --output json",
        files = files.display(),
        aws = aws.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    tools::clean_aws_env(&mut cmd);
    let out = cmd
        .output()
        .context("unshare (util-linux) is needed to mount the Secret like a pod")?;
    if !out.status.success() {
        bail!(
            "the AWS CLI failed (mounting needs root for a private mount namespace): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

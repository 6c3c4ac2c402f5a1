//! Shared machinery of the end-to-end suite: the environment (one control plane and one STS
//! emulator per run), an operator process per test, and helpers to wait and inspect.

pub mod aws;
pub mod endpoint;
pub mod helm;
pub mod network;
pub mod node;
pub mod peers;
pub mod rolesanywhere;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use podcreds::api::AWSRoleBinding;
pub use podcreds_testenv::Operator;
use podcreds_testenv::tools::clean_aws_env;
use podcreds_testenv::{ControlPlane, Launch, decode_secret};
use sts_emulator::{Emulator, Role};

pub const ACCOUNT: &str = "123456789012";

/// The regions the suite's shared emulator serves: the default one, and the one bindings and the
/// chart name where a test shows a region reaching clients (their SigV4 scopes name it).
pub const SUITE_REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// The spec most tests bind: ServiceAccount `app` to `role`.
pub fn spec(role: &str) -> serde_json::Value {
    serde_json::json!({"serviceAccountName": "app", "roleArn": role})
}

/// [`spec`] plus `fields`, a JSON object whose fields are added (or replace the base ones).
pub fn spec_with(role: &str, fields: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(fields) = fields else {
        panic!("spec_with takes a JSON object, not {fields}");
    };
    let mut spec = spec(role);
    if let Some(base) = spec.as_object_mut() {
        base.extend(fields);
    }
    spec
}

/// Everything a test can use.
pub struct Env {
    pub plane: ControlPlane,
    pub emulator: Emulator,
    pub client: Client,
    /// The chart's admission policy applies to the whole cluster: tests hold this shared while a
    /// release of it is installed, and exclusively when they need the cluster without one.
    pub cluster_policies: tokio::sync::RwLock<()>,
}

/// How a test wants its operator started, beyond namespaces, STS endpoint and extra flags.
#[derive(Default)]
pub struct OperatorOptions<'a> {
    /// Kubeconfig instead of the admin's.
    pub kubeconfig: Option<&'a Path>,
    /// No `--sts-endpoint`: the AWS regional endpoint.
    pub regional_endpoint: bool,
    /// Without `--allow-insecure-sts-endpoints`, which every other operator of the suite gets
    /// because the emulator speaks plain HTTP on loopback.
    pub https_only: bool,
    /// Environment variables on top of this process's.
    pub env: Vec<(String, String)>,
}

impl Env {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(podcreds_testenv::Options::default()).await
    }

    /// A control plane started with `options` (a node, a pod network), its CRDs, and an STS
    /// emulator trusting its issuer.
    pub async fn start_with(options: podcreds_testenv::Options) -> anyhow::Result<Self> {
        let env = Self::start_without_crds(options).await?;
        env.plane.install_crds(&podcreds::crd_yaml()?).await?;
        Ok(env)
    }

    /// [`Env::start_with`] without podcreds' CRDs: for a test whose chart installs them.
    pub async fn start_without_crds(options: podcreds_testenv::Options) -> anyhow::Result<Self> {
        let plane = ControlPlane::start(options).await?;
        let emulator = Emulator::start(sts_emulator::Config {
            regions: SUITE_REGIONS.iter().map(|r| r.to_string()).collect(),
            ..sts_emulator::Config::for_issuer(&plane.api_url, &plane.ca_pem)
        })
        .await?;
        let client = plane.client().await?;
        Ok(Self {
            plane,
            emulator,
            client,
            cluster_policies: tokio::sync::RwLock::new(()),
        })
    }

    /// A fresh namespace for one test.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        Ok(self.plane.namespace(prefix).await?)
    }

    /// Registers a role trusting exactly `namespace/service_account`, whose sessions last at most
    /// `lifetime_seconds` (the emulator's fast clock) if given.
    pub fn role(
        &self,
        name: &str,
        namespace: &str,
        service_account: &str,
        lifetime_seconds: Option<u64>,
    ) -> String {
        self.register_role(Role {
            arn: format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
            subjects: vec![format!(
                "system:serviceaccount:{namespace}:{service_account}"
            )],
            lifetime_seconds,
            ..Role::default()
        })
    }

    /// [`Env::role`] whose IAM `MaxSessionDuration` is `max_session_duration` seconds instead of
    /// IAM's default hour, for bindings that ask longer sessions (STS refuses them otherwise).
    pub fn long_role(
        &self,
        name: &str,
        namespace: &str,
        service_account: &str,
        max_session_duration: u64,
    ) -> String {
        self.register_role(Role {
            arn: format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
            subjects: vec![format!(
                "system:serviceaccount:{namespace}:{service_account}"
            )],
            max_session_duration: Some(max_session_duration),
            ..Role::default()
        })
    }

    fn register_role(&self, role: Role) -> String {
        let arn = role.arn.clone();
        self.emulator.add_role(role);
        arn
    }

    /// Sets the role allowlist annotation (`podcreds.dev/allowed-role-arns`) of namespace `ns`.
    pub async fn allow_roles(&self, ns: &str, allowlist: &str) -> anyhow::Result<()> {
        let patch = serde_json::json!({"metadata": {"annotations": {podcreds::allowlist::ANNOTATION: allowlist}}});
        Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .patch(
                ns,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// A namespace with ServiceAccount `app` and a role trusting it: (namespace, role ARN).
    pub async fn app_namespace(
        &self,
        prefix: &str,
        lifetime_seconds: Option<u64>,
    ) -> anyhow::Result<(String, String)> {
        let ns = self.namespace(prefix).await?;
        self.service_account(&ns, "app").await?;
        let role = self.role(&format!("{ns}-r"), &ns, "app", lifetime_seconds);
        Ok((ns, role))
    }

    /// The common start of a test: [`Env::app_namespace`] and an operator watching the
    /// namespace. Returns (namespace, role ARN, operator).
    pub async fn scenario(
        &self,
        prefix: &str,
        lifetime_seconds: Option<u64>,
    ) -> anyhow::Result<(String, String, Operator)> {
        let (ns, role) = self.app_namespace(prefix, lifetime_seconds).await?;
        let operator = self
            .start_operator(&[&ns], &self.emulator.url(), &[])
            .await?;
        Ok((ns, role, operator))
    }

    /// Starts an operator (the binary under test) watching `namespaces`, with STS at
    /// `sts_endpoint`, as the admin user; its log is shown if the test fails.
    pub async fn start_operator(
        &self,
        namespaces: &[&str],
        sts_endpoint: &str,
        extra: &[&str],
    ) -> anyhow::Result<Operator> {
        self.start_operator_with_kubeconfig(&self.plane.kubeconfig, namespaces, sts_endpoint, extra)
            .await
    }

    pub async fn start_operator_with_kubeconfig(
        &self,
        kubeconfig: &Path,
        namespaces: &[&str],
        sts_endpoint: &str,
        extra: &[&str],
    ) -> anyhow::Result<Operator> {
        let options = OperatorOptions {
            kubeconfig: Some(kubeconfig),
            ..OperatorOptions::default()
        };
        self.launch_operator(namespaces, sts_endpoint, extra, options)
            .await
    }

    /// Starts an operator as `options` say. A `--log-level` in `extra` replaces the suite's.
    pub async fn launch_operator(
        &self,
        namespaces: &[&str],
        sts_endpoint: &str,
        extra: &[&str],
        options: OperatorOptions<'_>,
    ) -> anyhow::Result<Operator> {
        let mut args = vec!["--log-format=json".to_string()];
        if !options.regional_endpoint {
            args.push(format!("--sts-endpoint={sts_endpoint}"));
        }
        if !options.https_only {
            args.push("--allow-insecure-sts-endpoints".into());
        }
        if !extra.iter().any(|a| a.starts_with("--log-level")) {
            args.push(
                "--log-level=debug,kube=info,rustls=info,hyper=info,tower=info,aws=warn,aws_smithy_runtime=warn"
                    .into(),
            );
        }
        if !namespaces.is_empty() {
            args.push(format!("--namespaces={}", namespaces.join(",")));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let kubeconfig = options.kubeconfig.unwrap_or(&self.plane.kubeconfig);
        let launch = self
            .operator_launch(kubeconfig)
            .args(args)
            .envs(options.env);
        let mut operator = Operator::spawn(launch)?;
        crate::register_log(operator.log_path().to_path_buf());
        operator.wait_ready().await?;
        Ok(operator)
    }

    pub fn operator_launch(&self, kubeconfig: &Path) -> Launch {
        Launch::new(
            Path::new(env!("CARGO_BIN_EXE_podcreds")),
            kubeconfig,
            self.plane.dir(),
        )
    }

    pub async fn service_account(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        Ok(podcreds_testenv::create_service_account(&self.client, ns, name).await?)
    }

    pub async fn create_binding(
        &self,
        ns: &str,
        name: &str,
        spec: serde_json::Value,
    ) -> Result<AWSRoleBinding, kube::Error> {
        // Sent untyped, so that bindings the Rust type could not even represent reach the apiserver.
        let resource = kube::api::ApiResource::erase::<AWSRoleBinding>(&());
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &resource);
        let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "podcreds.dev/v1alpha1",
            "kind": "AWSRoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .map_err(kube::Error::SerdeError)?;
        let created = api.create(&PostParams::default(), &object).await?;
        serde_json::to_value(created)
            .and_then(serde_json::from_value)
            .map_err(kube::Error::SerdeError)
    }

    /// Creates a binding and waits until it is Ready.
    pub async fn create_ready(
        &self,
        ns: &str,
        name: &str,
        spec: serde_json::Value,
        timeout: Duration,
    ) -> anyhow::Result<AWSRoleBinding> {
        self.create_binding(ns, name, spec).await?;
        self.wait_ready(ns, name, "True", timeout).await
    }

    /// Creates bindings `<prefix>0..<prefix>n` with the same spec, then waits until all are Ready.
    pub async fn create_ready_many(
        &self,
        ns: &str,
        prefix: &str,
        n: usize,
        spec: serde_json::Value,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        for i in 0..n {
            self.create_binding(ns, &format!("{prefix}{i}"), spec.clone())
                .await?;
        }
        for i in 0..n {
            self.wait_ready(ns, &format!("{prefix}{i}"), "True", timeout)
                .await?;
        }
        Ok(())
    }

    pub fn bindings(&self, ns: &str) -> Api<AWSRoleBinding> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Waits until the binding's Ready condition has `status`, returning the binding.
    pub async fn wait_ready(
        &self,
        ns: &str,
        name: &str,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<AWSRoleBinding> {
        self.wait_ready_condition(ns, name, timeout, &format!("Ready={status}"), |c| {
            c.status == status
        })
        .await
    }

    /// Waits until the binding's Ready condition has `reason`.
    pub async fn wait_reason(
        &self,
        ns: &str,
        name: &str,
        reason: &str,
        timeout: Duration,
    ) -> anyhow::Result<AWSRoleBinding> {
        self.wait_ready_condition(ns, name, timeout, &format!("reason {reason}"), |c| {
            c.reason == reason
        })
        .await
    }

    async fn wait_ready_condition(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        accept: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> bool,
    ) -> anyhow::Result<AWSRoleBinding> {
        let api = self.bindings(ns);
        let accept = &accept;
        let found = wait_for(timeout, || {
            let api = api.clone();
            async move {
                let b = api.get(name).await.ok()?;
                let ready = podcreds::status::ready_condition(b.status.as_ref())?;
                accept(ready).then_some(b.clone())
            }
        })
        .await;
        match found {
            Some(b) => Ok(b),
            None => {
                let b = api.get(name).await?;
                bail!(
                    "binding {ns}/{name} never reached {what}; status: {:?}",
                    b.status
                )
            }
        }
    }

    /// The decoded data of a Secret.
    pub async fn secret_data(
        &self,
        ns: &str,
        name: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let s = self.secrets(ns).get(name).await?;
        Ok(decode_secret(&s))
    }

    /// Events about objects in `ns`.
    pub async fn events(&self, ns: &str) -> anyhow::Result<Vec<Event>> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        Ok(api.list(&ListParams::default()).await?.items)
    }

    /// AssumeRoleWithWebIdentity calls the emulator saw for `role_arn` that issued credentials.
    pub fn issued_for(&self, role_arn: &str) -> Vec<sts_emulator::CallRecord> {
        self.emulator
            .calls()
            .calls
            .into_iter()
            .filter(|c| {
                c.action == "AssumeRoleWithWebIdentity" && c.role_arn.as_deref() == Some(role_arn)
            })
            .collect()
    }

    /// All STS calls for `role_arn`, whatever their result.
    pub fn calls_for(&self, role_arn: &str) -> usize {
        self.emulator
            .calls()
            .calls
            .iter()
            .filter(|c| c.role_arn.as_deref() == Some(role_arn))
            .count()
    }
}

/// The sum of the samples in `metrics` (Prometheus text) whose series starts with `series`, for
/// example `podcreds_reconciliations_total{result="fresh"}`.
pub fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `op`'s current process has reconciled bindings and found their credentials fresh
/// at least `n` times (its metrics start from zero): positive evidence that a restarted
/// operator looked at its bindings, before a test asserts that it called or wrote nothing.
pub async fn wait_until_reconciled_fresh(op: &Operator, n: usize) -> anyhow::Result<()> {
    const SERIES: &str = "podcreds_reconcile_duration_seconds_count{result=\"fresh\"}";
    let looked = wait_for(Duration::from_secs(30), || async {
        let metrics = op.metrics().await.ok()?;
        (counter(&metrics, SERIES) >= n as f64).then_some(())
    })
    .await;
    anyhow::ensure!(
        looked.is_some(),
        "the operator (pid {}) never reconciled {n} fresh bindings: {}",
        op.pid(),
        op.metrics().await.unwrap_or_default()
    );
    Ok(())
}

/// Pokes binding `ns/name` (an annotation change) and waits until `op` has reconciled once more
/// with `result` (`conflict`, `fresh`, ...): positive evidence that the operator looked again,
/// before a test asserts that looking changed nothing.
pub async fn looked_again(
    env: &Env,
    op: &Operator,
    ns: &str,
    name: &str,
    result: &str,
) -> anyhow::Result<()> {
    let series = format!("podcreds_reconcile_duration_seconds_count{{result=\"{result}\"}}");
    let before = counter(&op.metrics().await?, &series);
    let poke = serde_json::json!({"metadata": {"annotations": {
        "test.podcreds.dev/poke": jiff::Timestamp::now().to_string(),
    }}});
    env.bindings(ns)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&poke),
        )
        .await?;
    let looked = wait_for(Duration::from_secs(30), || async {
        let metrics = op.metrics().await.ok()?;
        (counter(&metrics, &series) > before).then_some(())
    })
    .await;
    anyhow::ensure!(
        looked.is_some(),
        "the operator never reconciled {ns}/{name} again with result {result}"
    );
    Ok(())
}

/// Runs the podcreds command line with `args` as the cluster admin.
pub async fn podcreds_cli(env: &Env, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_podcreds"))
        .args(args)
        .env("KUBECONFIG", &env.plane.kubeconfig)
        .env_remove("RUST_BACKTRACE")
        .output()
        .await?)
}

/// The message of a binding's Ready condition (empty without one).
pub fn ready_message(binding: &AWSRoleBinding) -> String {
    podcreds::status::ready_condition(binding.status.as_ref())
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Polls `check` every 200 ms until it yields a value or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes a Secret's data the way the kubelet lays out a Secret volume: a timestamped directory,
/// a `..data` symlink to it, and one symlink per key; updates swap `..data` atomically.
pub fn kubelet_layout(
    dir: &Path,
    data: &BTreeMap<String, String>,
    generation: u32,
) -> anyhow::Result<()> {
    use std::os::unix::fs::symlink;
    let versioned = format!("..{generation:04}_data");
    let target = dir.join(&versioned);
    std::fs::create_dir_all(&target)?;
    for (k, v) in data {
        std::fs::write(target.join(k), v)?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&versioned, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    for k in data.keys() {
        let link = dir.join(k);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{k}"), &link)?;
        }
    }
    Ok(())
}

/// `aws sts get-caller-identity` against `endpoint` with nothing but the given files: the
/// caller's identity as JSON.
pub async fn aws_caller_identity(
    endpoint: &str,
    files: &[(&str, &Path)],
) -> anyhow::Result<serde_json::Value> {
    let aws = podcreds_testenv::tools::venv_program("aws")?;
    let mut cmd = tokio::process::Command::new(aws);
    clean_aws_env(cmd.as_std_mut());
    // No --region: the region comes from the Secret's `config`, as in a pod, so a wrong region
    // there fails (the emulator checks the SigV4 scope's region).
    anyhow::ensure!(
        files
            .iter()
            .any(|(variable, _)| *variable == "AWS_CONFIG_FILE"),
        "aws_caller_identity needs the Secret's config file (AWS_CONFIG_FILE): it holds the region"
    );
    cmd.args([
        "sts",
        "get-caller-identity",
        "--output",
        "json",
        "--endpoint-url",
        endpoint,
    ]);
    for (variable, path) in files {
        cmd.env(variable, path);
    }
    let out = cmd.output().await?;
    if !out.status.success() {
        bail!(
            "aws sts get-caller-identity failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Writes a Secret's `credentials` and `config` files into `dir` as a pod sees them:
/// (credentials, config).
pub fn secret_files(
    dir: &Path,
    data: &BTreeMap<String, String>,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let credentials = dir.join("credentials");
    let config = dir.join("config");
    std::fs::write(
        &credentials,
        anyhow::Context::context(data.get("credentials"), "no credentials file")?,
    )?;
    std::fs::write(
        &config,
        anyhow::Context::context(data.get("config"), "no config file")?,
    )?;
    Ok((credentials, config))
}

/// Waits until no admission policy of the chart refuses bindings any more (a release uninstalled
/// a moment ago is still enforced briefly): a binding only the binding guard would refuse (a
/// session name of another namespace) is admitted, then deleted.
pub async fn wait_until_no_binding_guard(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("policy-probe").await?;
    let spec = serde_json::json!({
        "serviceAccountName": "app",
        "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/probe"),
        "sessionName": "elsewhere.probe",
    });
    let admitted = wait_for(Duration::from_secs(60), || {
        let spec = spec.clone();
        let ns = ns.clone();
        async move { env.create_binding(&ns, "probe", spec).await.ok() }
    })
    .await;
    anyhow::ensure!(
        admitted.is_some(),
        "an admission policy of the chart was still enforced a minute after the test"
    );
    env.bindings(&ns)
        .delete("probe", &Default::default())
        .await?;
    Ok(())
}

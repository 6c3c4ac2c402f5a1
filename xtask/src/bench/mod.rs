//! `cargo xtask bench`: scale benchmark against the real control plane and the STS emulator.
//!
//! For each N: the floor (the bare work of N bindings done directly by a minimal client), time to
//! Ready through podcreds, memory (also with many unrelated Secrets in the cluster, and under
//! tenants' attempts to bloat the caches), restart cost,
//! steady-state refresh spread and CPU per 1,000 refreshes. Writes JSON plus a table. Not part of
//! `cargo xtask test`: benchmarks measure, tests check behaviour.
//!
//! With `--peer eso`, the same run also measures external-secrets on the same N (built on first
//! use into its own cache directory; never part of `cargo xtask test`).
//!
//! One file per phase: `floor` (the bare and the operator floors), `scale` (time to Ready and
//! memory), `peer_eso`, `restart`, `steady`, `endpoint` (the node endpoint under load); `phase` and `proc` measure, `apiserver` reads the
//! apiserver's own counters, `report` writes the result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::{ControlPlane, Launch, Operator, Options};
use sts_emulator::{Emulator, Role};

use crate::{Profile, repo_root};
use report::Report;

mod apiserver;
mod churn;
mod endpoint;
mod fairness;
mod floor;
mod hostile;
mod peer_eso;
mod phase;
mod proc;
mod report;
mod restart;
mod scale;
mod steady;

/// Another operator measured in the same run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// external-secrets (SecretStores and ExternalSecrets with JWT auth against the emulator,
    /// Secrets Manager from moto).
    Eso,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Numbers of bindings to measure (comma separated; 0 skips the scale phase).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub bindings: Vec<usize>,
    /// Runs of the floor per N; the median is the floor (it varies by +-15% on a shared machine).
    #[arg(long, default_value_t = 3)]
    pub floor_runs: usize,
    /// Concurrency of the operator (--concurrency) and of the floor client.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Operator STS rate limit for the run (calls/s); the product default is 50.
    #[arg(long, default_value_t = 1000)]
    pub sts_qps: u32,
    /// Unrelated Secrets (100 KB each) added to measure that memory does not follow them.
    #[arg(long, default_value_t = 10_000)]
    pub unrelated_secrets: usize,
    /// Bindings in the steady-state phase (short lifetimes).
    #[arg(long, default_value_t = 200)]
    pub steady_bindings: usize,
    /// Granted lifetime in the steady-state phase (seconds).
    #[arg(long, default_value_t = 30)]
    pub steady_lifetime: u64,
    /// Length of the steady-state observation (seconds).
    #[arg(long, default_value_t = 120)]
    pub steady_seconds: u64,
    /// Run the benchmark process as the debug build it was started as, instead of running itself
    /// again as a release build (figures from a debug client undersell the floors).
    #[arg(long)]
    pub debug_client: bool,
    /// Also take a CPU profile of kube-apiserver during the floor and the burst of the largest N
    /// (pprof files next to the JSON result).
    #[arg(long)]
    pub apiserver_profile: bool,
    /// Length of each apiserver CPU profile (seconds).
    #[arg(long, default_value_t = 15)]
    pub apiserver_profile_seconds: u64,
    /// Run the operator under this command (a profiler: `heaptrack`, `perf record -g --`). The
    /// operator's RSS and CPU figures then describe the wrapper, not the operator.
    #[arg(long)]
    pub operator_prefix: Option<String>,
    /// Failing bindings in the fairness phase (0 skips it): one namespace with this many
    /// refused bindings and another with 50 healthy ones, under one operator watching every
    /// namespace. Runs first, before any other phase's bindings exist.
    #[arg(long, default_value_t = 0)]
    pub fairness_failing: usize,
    /// Also measure a peer operator on the same N (built and cached on first use; a cold build
    /// of external-secrets takes over 12 minutes on 2 cores).
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
    /// Bindings per churn measurement: log lines per binding while they are created and while
    /// their namespace is deleted (comma separated; 0 skips the phase).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub churn_bindings: Vec<usize>,
    /// Labelled Secrets with a 200 KB annotation each in the hostile-load phase (0 skips the
    /// phase): RSS before and after.
    #[arg(long, default_value_t = 1_500)]
    pub hostile_secrets: usize,
    /// Bindings just under the operator's cached-size bound in the hostile-load phase: peak RSS.
    #[arg(long, default_value_t = 1_500)]
    pub maximal_bindings: usize,
    /// Bindings at the CRD's maximum size (refused, cached as a stub) in the hostile-load phase.
    #[arg(long, default_value_t = 20)]
    pub oversized_bindings: usize,
    /// Pods asking the node endpoint in the endpoint phase (0 skips it).
    #[arg(long, default_value_t = 1000)]
    pub endpoint_pods: usize,
    /// Endpoint bindings the pods are spread over.
    #[arg(long, default_value_t = 100)]
    pub endpoint_bindings: usize,
    /// Callers asking the agent at once in the endpoint phase.
    #[arg(long, default_value_t = 64)]
    pub endpoint_clients: usize,
    /// Length of the endpoint phase's steady load (seconds).
    #[arg(long, default_value_t = 30)]
    pub endpoint_seconds: u64,
    /// Where to write the JSON result.
    #[arg(long, default_value = "target/bench/result.json")]
    pub output: PathBuf,
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

/// Creates ServiceAccounts `sa-0..sa-<n>` in `ns`, `concurrency` at a time.
async fn create_service_accounts(
    client: &kube::Client,
    ns: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            podcreds_testenv::create_service_account(client, ns, &format!("sa-{i}")).await
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Creates bindings `b0..b<n>` of ServiceAccounts `sa-0..sa-<n>` in `ns`, `concurrency` at a time.
async fn create_bindings(
    client: &kube::Client,
    ns: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let bindings = &bindings;
            async move {
                bindings
                    .create(
                        &PostParams::default(),
                        &binding(&format!("b{i}"), &format!("sa-{i}"))?,
                    )
                    .await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

const ROLE: &str = "arn:aws:iam::123456789012:role/bench";

fn binding(name: &str, sa: &str) -> anyhow::Result<AWSRoleBinding> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSRoleBinding",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "roleArn": ROLE},
    }))?)
}

/// The apiserver builds a new CRD's handler (storage, schema, CEL programs) on first use, which
/// once took two seconds of the first run's creates: pay that before any clock starts.
async fn warm_up(client: &kube::Client) -> anyhow::Result<()> {
    create_namespace(client, "warm-up").await?;
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), "warm-up");
    bindings
        .create(&PostParams::default(), &binding("warm-up", "warm-up")?)
        .await?;
    bindings
        .delete("warm-up", &kube::api::DeleteParams::default())
        .await?;
    Ok(())
}

/// How the operator under test is launched watching `ns` (every namespace if empty), configured
/// as the benchmark measures it.
fn operator_launch(
    plane: &ControlPlane,
    bin: &Path,
    sts_url: &str,
    ns: &str,
    args: &Args,
) -> Launch {
    let wrapper: Vec<String> = args
        .operator_prefix
        .as_deref()
        .map(|p| p.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut flags = vec![
        format!("--sts-endpoint={sts_url}"),
        // The emulator speaks plain HTTP on loopback.
        "--allow-insecure-sts-endpoints".into(),
        format!("--concurrency={}", args.concurrency),
        format!("--sts-qps={}", args.sts_qps),
        format!("--sts-burst={}", args.sts_qps),
        "--log-level=warn".into(),
    ];
    if !ns.is_empty() {
        flags.push(format!("--namespaces={ns}"));
    }
    Launch::new(bin, &plane.kubeconfig, plane.dir())
        .wrapper(&wrapper)
        .ready_timeout(Duration::from_secs(120))
        .args(flags)
}

/// The operator under test watching `ns` (every namespace if empty), started and ready.
async fn start_operator(
    plane: &ControlPlane,
    bin: &Path,
    sts_url: &str,
    ns: &str,
    args: &Args,
) -> anyhow::Result<Operator> {
    Ok(Operator::start(operator_launch(plane, bin, sts_url, ns, args)).await?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::testenv::ensure()?;
    let eso = match args.peer {
        Some(Peer::Eso) => Some(crate::testenv::ensure_external_secrets()?),
        None => None,
    };
    let bin = crate::build_operator(Profile::Release)?;
    let load_average_before = report::load_average();
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // No kube-controller-manager: nothing here needs garbage collection, and it would only
        // compete for the two cores.
        let plane = ControlPlane::start(Options {
            controller_manager: false,
            apiserver_profiling: args.apiserver_profile,
            node: false,
            pod_network: false,
        })
        .await?;
        for file in [
            "crds/awsrolebindings.podcreds.dev.yaml",
            "crds/awscredentialsources.podcreds.dev.yaml",
        ] {
            plane
                .install_crds(&std::fs::read_to_string(repo_root().join(file))?)
                .await?;
        }
        warm_up(&plane.client().await?).await?;
        if let Some(eso) = &eso {
            plane
                .install_crds(&std::fs::read_to_string(&eso.crds)?)
                .await?;
            peer_eso::warm_up(&plane.client().await?).await?;
        }
        let emulator = Emulator::start(sts_emulator::Config {
            roles: vec![Role {
                arn: ROLE.into(),
                subjects: vec!["system:serviceaccount:*".into()],
                audiences: vec![],
                lifetime_seconds: None,
                ..Role::default()
            }],
            ..sts_emulator::Config::for_issuer(&plane.api_url, &plane.ca_pem)
        })
        .await?;
        let fairness = if args.fairness_failing > 0 {
            println!(
                "  fairness: {} failing bindings next to 50 healthy ones",
                args.fairness_failing
            );
            Some(fairness::measure(&plane, &emulator, &bin, &args).await?)
        } else {
            None
        };
        let moto = match &eso {
            Some(_) => Some(peer_eso::start_moto(&plane).await?),
            None => None,
        };
        let mut scale_results = Vec::new();
        let mut peer_results = Vec::new();
        for &n in args.bindings.iter().filter(|&&n| n > 0) {
            let burst = scale::burst(&plane, &emulator, &bin, n, &args).await?;
            // The peer runs on the same N right after podcreds' burst, before the unrelated
            // Secrets are added, with podcreds' operator idle.
            if let (Some(eso), Some(moto)) = (&eso, &moto) {
                peer_results.push(peer_eso::measure(&plane, &emulator, eso, moto, n, &args).await?);
            }
            scale_results.push(scale::finish(&plane, &emulator, burst, &args).await?);
        }
        let mut churn_results = Vec::new();
        for &n in args.churn_bindings.iter().filter(|&&n| n > 0) {
            churn_results.push(churn::measure(&plane, &emulator, &bin, n, &args).await?);
        }
        let hostile = if args.hostile_secrets > 0 {
            Some(hostile::measure(&plane, &emulator, &bin, &args).await?)
        } else {
            None
        };
        let steady = if args.steady_bindings > 0 {
            println!(
                "  steady state: {} bindings, {} s lifetimes, {} s",
                args.steady_bindings, args.steady_lifetime, args.steady_seconds
            );
            Some(steady::measure(&plane, &emulator, &bin, &args).await?)
        } else {
            None
        };
        let endpoint = if args.endpoint_pods > 0 {
            println!(
                "  node endpoint: {} pods on {} bindings, {} callers, {} s",
                args.endpoint_pods,
                args.endpoint_bindings,
                args.endpoint_clients,
                args.endpoint_seconds
            );
            Some(endpoint::measure(&plane, &emulator, &bin, &args).await?)
        } else {
            None
        };
        emulator.shutdown();
        Ok::<Report, anyhow::Error>(Report {
            machine: report::machine(),
            client_build: report::client_build(),
            load_average_before,
            load_average_after: report::load_average(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            sts_qps: args.sts_qps,
            concurrency: args.concurrency,
            scale: scale_results,
            peer: peer_results,
            steady,
            fairness,
            churn: churn_results,
            hostile,
            endpoint,
        })
    })?;
    let output = repo_root().join(&args.output);
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&output, serde_json::to_string_pretty(&report)?)?;
    report::print_table(&report);
    println!("\nwrote {}", output.display());
    Ok(())
}

//! `cargo xtask bench`: scale benchmark against the real control plane and the STS emulator.
//!
//! For each N: the floor (the bare work of N bindings done directly by a minimal client), time to
//! Ready through podcreds, memory (also with many unrelated Secrets in the cluster), restart cost,
//! steady-state refresh spread and CPU per 1,000 refreshes. Writes JSON plus a table. Not part of
//! `cargo xtask test`: benchmarks measure, tests check behaviour.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use podcreds::api::AWSRoleBinding;
use podcreds::sts::{AssumeRoleRequest, AwsStsClient, StsClient, StsTimeouts};
use podcreds_testenv::{ControlPlane, Options, Process, free_port};
use secrecy::SecretString;
use serde::Serialize;
use sts_emulator::{Emulator, Role};

use crate::repo_root;

mod apiserver;
use apiserver::Served;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Numbers of bindings to measure (comma separated).
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
    /// Where to write the JSON result.
    #[arg(long, default_value = "target/bench/result.json")]
    pub output: PathBuf,
}

#[derive(Serialize, Default, Debug)]
struct Percentiles {
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentiles(mut samples: Vec<f64>) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Percentiles {
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

#[derive(Serialize, Debug)]
struct ScaleResult {
    bindings: usize,
    /// Median of `floor_runs_seconds`.
    floor_seconds: f64,
    floor_runs_seconds: Vec<f64>,
    /// Time the benchmark client needed just to create the bindings.
    create_seconds: f64,
    all_ready_seconds: f64,
    ratio_to_floor: f64,
    time_to_ready: Percentiles,
    rss_peak_mib: f64,
    rss_steady_mib: f64,
    /// The steady RSS split: anonymous pages (heap, stacks) and file pages (the binary).
    rss_steady_anonymous_mib: f64,
    rss_steady_file_mib: f64,
    rss_with_unrelated_secrets_mib: Option<f64>,
    unrelated_secrets: usize,
    restart_sts_calls: u64,
    restart_secret_writes: usize,
    restart_ready_seconds: f64,
    floor_phase: Phase,
    podcreds_phase: Phase,
}

/// What one timed phase cost the control plane and the operator.
#[derive(Serialize, Debug, Default)]
struct Phase {
    apiserver_cpu_seconds: f64,
    etcd_cpu_seconds: f64,
    operator_cpu_seconds: f64,
    /// This process: the benchmark client and the STS emulator.
    bench_cpu_seconds: f64,
    /// Requests the apiserver served and watch events it sent, busiest first.
    apiserver: Vec<Served>,
}

/// Measures a phase: CPU of the control plane (and operator, if any) and apiserver counters.
struct PhaseMeter {
    pids: (u32, u32),
    operator: Option<u32>,
    cpu: (f64, f64, f64, f64),
    counters: apiserver::Counters,
}

impl PhaseMeter {
    async fn start(
        plane: &ControlPlane,
        client: &kube::Client,
        operator: Option<u32>,
    ) -> anyhow::Result<Self> {
        let pids = plane.pids();
        Ok(Self {
            pids,
            operator,
            cpu: (
                cpu_seconds(pids.0),
                cpu_seconds(pids.1),
                operator.map(cpu_seconds).unwrap_or(0.0),
                cpu_seconds(std::process::id()),
            ),
            counters: apiserver::counters(client).await?,
        })
    }

    async fn finish(self, client: &kube::Client) -> anyhow::Result<Phase> {
        let cpu = (
            cpu_seconds(self.pids.0),
            cpu_seconds(self.pids.1),
            self.operator.map(cpu_seconds).unwrap_or(0.0),
            cpu_seconds(std::process::id()),
        );
        let counters = apiserver::counters(client).await?;
        Ok(Phase {
            apiserver_cpu_seconds: cpu.0 - self.cpu.0,
            etcd_cpu_seconds: cpu.1 - self.cpu.1,
            operator_cpu_seconds: cpu.2 - self.cpu.2,
            bench_cpu_seconds: cpu.3 - self.cpu.3,
            apiserver: counters.since(&self.counters),
        })
    }
}

/// Starts a CPU profile of the apiserver when asked for one; await the handle to finish it.
fn maybe_profile(
    args: &Args,
    client: &kube::Client,
    name: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    if !args.apiserver_profile {
        return None;
    }
    let path = repo_root()
        .join(args.output.parent().unwrap_or(Path::new(".")))
        .join(format!("apiserver-{name}.pprof"));
    let (client, seconds) = (client.clone(), args.apiserver_profile_seconds);
    Some(tokio::spawn(async move {
        match apiserver::cpu_profile(&client, seconds, &path).await {
            Ok(()) => println!(
                "    apiserver CPU profile: go tool pprof -top {}",
                path.display()
            ),
            Err(e) => println!("    apiserver CPU profile failed: {e:#}"),
        }
    }))
}

#[derive(Serialize, Debug)]
struct SteadyResult {
    bindings: usize,
    lifetime_seconds: u64,
    observed_seconds: u64,
    sts_calls: u64,
    calls_per_binding_per_lifetime: f64,
    /// Mean time between two refreshes of the same binding.
    mean_refresh_interval_seconds: f64,
    /// STS calls per issued credential set that was actually used until its renewal time
    /// (1.0 means no duplicate or premature call).
    calls_per_credential_set: f64,
    /// Refreshes that came less than a third of a lifetime after the previous one.
    premature_refreshes: u64,
    max_calls_in_a_second: u64,
    mean_calls_per_second: f64,
    cpu_seconds_per_1000_refreshes: f64,
}

#[derive(Serialize, Debug)]
struct Machine {
    cores: usize,
    memory_gib: f64,
    cpu: String,
}

#[derive(Serialize, Debug)]
struct Report {
    machine: Machine,
    command: String,
    sts_qps: u32,
    concurrency: usize,
    scale: Vec<ScaleResult>,
    steady: Option<SteadyResult>,
}

fn machine() -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_gib: proc_field_mib(&meminfo, "MemTotal:") / 1024.0,
        cpu,
    }
}

/// The value of a `Name:   123 kB` line of a /proc file, in MiB (0 when absent).
fn proc_field_mib(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// (current RSS, peak RSS) of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (
        proc_field_mib(&status, "VmRSS:"),
        proc_field_mib(&status, "VmHWM:"),
    )
}

/// Resident memory of a process split into anonymous pages (heap, stacks) and file pages (the
/// mapped binary and libraries), in MiB.
fn rss_split_mib(pid: u32) -> (f64, f64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let anonymous = proc_field_mib(&rollup, "Anonymous:");
    (anonymous, proc_field_mib(&rollup, "Rss:") - anonymous)
}

/// User plus system CPU seconds a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/pid/stat, i.e. 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
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

const ROLE: &str = "arn:aws:iam::123456789012:role/bench";

fn binding(name: &str, sa: &str) -> anyhow::Result<AWSRoleBinding> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSRoleBinding",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "roleArn": ROLE},
    }))?)
}

/// The bare work of N bindings done directly: TokenRequest, STS, Secret create.
async fn floor(
    plane: &ControlPlane,
    client: &kube::Client,
    emulator: &Emulator,
    n: usize,
    run: usize,
    args: &Args,
) -> anyhow::Result<(f64, Phase)> {
    let concurrency = args.concurrency;
    let ns = format!("floor-{n}-{run}");
    create_namespace(client, &ns).await?;
    create_service_accounts(client, &ns, n, concurrency).await?;
    let sts = AwsStsClient::new(StsTimeouts::default());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let profile = maybe_profile(args, client, &format!("floor-{n}-{run}"));
    let meter = PhaseMeter::start(plane, client, None).await?;
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (accounts, secrets, sts, ns) = (&accounts, &secrets, &sts, &ns);
            async move {
                let request = TokenRequest {
                    spec: Some(TokenRequestSpec {
                        audiences: Some(vec!["sts.amazonaws.com".into()]),
                        expiration_seconds: Some(600),
                        ..TokenRequestSpec::default()
                    }),
                    ..TokenRequest::default()
                };
                let token = accounts
                    .create_token_request(&format!("sa-{i}"), &PostParams::default(), &request)
                    .await?
                    .status
                    .and_then(|s| s.token)
                    .context("no token")?;
                let creds = sts
                    .assume_role_with_web_identity(AssumeRoleRequest {
                        role_arn: ROLE.into(),
                        session_name: format!("{ns}.b{i}"),
                        web_identity_token: SecretString::from(token),
                        duration_seconds: 3600,
                        session_policy: None,
                        policy_arns: vec![],
                        region: "us-east-1".into(),
                        endpoint: Some(emulator.url()),
                    })
                    .await?;
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("b{i}")),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([(
                        "AWS_ACCESS_KEY_ID".to_string(),
                        ByteString(creds.access_key_id.into_bytes()),
                    )])),
                    ..Secret::default()
                };
                secrets.create(&PostParams::default(), &secret).await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let phase = meter.finish(client).await?;
    if let Some(profile) = profile {
        profile.await?;
    }
    Ok((seconds, phase))
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

/// Records when each binding of `ns` is first seen Ready.
fn watch_ready(
    client: kube::Client,
    ns: &str,
) -> (
    Arc<Mutex<HashMap<String, Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = ready.clone();
    let api: Api<AWSRoleBinding> = Api::namespaced(client, ns);
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(item) = stream.next().await {
            let Ok(b) = item else { continue };
            if podcreds::status::ready_condition(b.status.as_ref())
                .is_some_and(|c| c.status == "True")
                && let (Some(name), Ok(mut map)) = (b.metadata.name.clone(), seen.lock())
            {
                map.entry(name).or_insert_with(Instant::now);
            }
        }
    });
    (ready, task)
}

struct OperatorProcess {
    process: Process,
    admin: String,
}

async fn start_operator(
    plane: &ControlPlane,
    bin: &Path,
    sts_url: &str,
    ns: &str,
    args: &Args,
) -> anyhow::Result<OperatorProcess> {
    let admin = format!("127.0.0.1:{}", free_port()?);
    let mut command: Vec<String> = args
        .operator_prefix
        .as_deref()
        .map(|p| p.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    command.push(bin.to_string_lossy().into_owned());
    let program = PathBuf::from(command.remove(0));
    command.extend([
        "run".into(),
        format!("--admin-address={admin}"),
        format!("--sts-endpoint={sts_url}"),
        // The emulator speaks plain HTTP on loopback.
        "--allow-insecure-sts-endpoints".into(),
        format!("--namespaces={ns}"),
        format!("--concurrency={}", args.concurrency),
        format!("--sts-qps={}", args.sts_qps),
        format!("--sts-burst={}", args.sts_qps),
        "--log-level=warn".into(),
    ]);
    let process = Process::spawn(
        "podcreds",
        &program,
        &command,
        &[(
            "KUBECONFIG".into(),
            plane.kubeconfig.to_string_lossy().into_owned(),
        )],
        plane.dir(),
    )?;
    let started = Instant::now();
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(&admin).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).await?;
            if buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200") {
                return Ok(OperatorProcess { process, admin });
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("operator not ready:\n{}", process.log_tail(20));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn secret_versions(
    client: &kube::Client,
    ns: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|s| {
            (
                s.metadata.name.unwrap_or_default(),
                s.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect())
}

async fn scale(
    plane: &ControlPlane,
    emulator: &Emulator,
    bin: &Path,
    n: usize,
    args: &Args,
) -> anyhow::Result<ScaleResult> {
    let client = plane.client().await?;
    println!(
        "  N={n}: floor (TokenRequest + STS + Secret create, {} at a time)",
        args.concurrency
    );
    let mut floors = Vec::new();
    for run in 1..=args.floor_runs.max(1) {
        let (seconds, phase) = floor(plane, &client, emulator, n, run, args).await?;
        println!("    floor run {run}: {seconds:.2}s");
        floors.push((seconds, phase));
    }
    floors.sort_by(|a, b| a.0.total_cmp(&b.0));
    let floor_runs_seconds: Vec<f64> = floors.iter().map(|f| f.0).collect();
    let (floor_seconds, floor_phase) = floors.swap_remove(floors.len() / 2);
    println!("    floor (median): {floor_seconds:.2}s");

    let ns = format!("bench-{n}");
    create_namespace(&client, &ns).await?;
    let mut op = start_operator(plane, bin, &emulator.url(), &ns, args).await?;
    // The ServiceAccounts exist before the clock starts, as they do for the floor: both sides
    // then time the same work for the same N accounts.
    println!("  N={n}: creating {n} ServiceAccounts (not timed, as for the floor)");
    create_service_accounts(&client, &ns, n, args.concurrency).await?;
    let (ready, watch_task) = watch_ready(client.clone(), &ns);
    println!("  N={n}: creating {n} bindings");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let profile = maybe_profile(args, &client, &format!("podcreds-{n}"));
    let meter = PhaseMeter::start(plane, &client, Some(op.process.pid())).await?;
    let started = Instant::now();
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), &ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let (bindings, created) = (&bindings, &created);
            async move {
                let name = format!("b{i}");
                bindings
                    .create(&PostParams::default(), &binding(&name, &format!("sa-{i}"))?)
                    .await?;
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
    let mut peak = 0.0f64;
    loop {
        let count = ready.lock().map(|r| r.len()).unwrap_or(0);
        peak = peak.max(rss_mib(op.process.pid()).1);
        if count >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("only {count} of {n} bindings Ready after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let podcreds_phase = meter.finish(&client).await?;
    if let Some(profile) = profile {
        profile.await?;
    }
    let ready_times = ready.lock().map(|r| r.clone()).unwrap_or_default();
    let all_ready_seconds = ready_times
        .values()
        .max()
        .map(|t| t.duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    let created = created.lock().map(|c| c.clone()).unwrap_or_default();
    let samples: Vec<f64> = ready_times
        .iter()
        .filter_map(|(name, ready_at)| {
            let c = created.get(name)?;
            Some(ready_at.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    watch_task.abort();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_steady_mib, hwm) = rss_mib(op.process.pid());
    let (rss_steady_anonymous_mib, rss_steady_file_mib) = rss_split_mib(op.process.pid());
    let rss_peak_mib = peak.max(hwm);
    println!(
        "    all Ready after {all_ready_seconds:.2}s; RSS steady {rss_steady_mib:.1} MiB ({rss_steady_anonymous_mib:.1} anonymous, {rss_steady_file_mib:.1} file), peak {rss_peak_mib:.1} MiB"
    );

    let rss_with_unrelated_secrets_mib =
        if args.unrelated_secrets > 0 && n == *args.bindings.iter().max().unwrap_or(&n) {
            println!(
                "  N={n}: adding {} unrelated Secrets of 100 KB",
                args.unrelated_secrets
            );
            let other = format!("unrelated-{n}");
            create_namespace(&client, &other).await?;
            let api: Api<Secret> = Api::namespaced(client.clone(), &other);
            let payload = ByteString(vec![b'x'; 100 * 1024]);
            futures::stream::iter(0..args.unrelated_secrets)
                .map(|i| {
                    let api = &api;
                    let payload = payload.clone();
                    async move {
                        let s = Secret {
                            metadata: ObjectMeta {
                                name: Some(format!("unrelated-{i}")),
                                ..ObjectMeta::default()
                            },
                            data: Some(BTreeMap::from([("blob".to_string(), payload)])),
                            ..Secret::default()
                        };
                        api.create(&PostParams::default(), &s).await.map(|_| ())
                    }
                })
                .buffer_unordered(16)
                .try_collect::<Vec<_>>()
                .await?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            let (rss, _) = rss_mib(op.process.pid());
            println!("    RSS with unrelated Secrets: {rss:.1} MiB");
            Some(rss)
        } else {
            None
        };

    println!("  N={n}: restart with fresh Secrets");
    let versions_before = secret_versions(&client, &ns).await?;
    let calls_before = emulator.count("AssumeRoleWithWebIdentity");
    op.process.terminate()?;
    let restarted = Instant::now();
    op = start_operator(plane, bin, &emulator.url(), &ns, args).await?;
    let restart_ready_seconds = restarted.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let versions_after = secret_versions(&client, &ns).await?;
    let restart_secret_writes = versions_before
        .iter()
        .filter(|(k, v)| versions_after.get(*k) != Some(*v))
        .count();
    let restart_sts_calls = emulator.count("AssumeRoleWithWebIdentity") - calls_before;
    println!(
        "    restart: ready in {restart_ready_seconds:.2}s, {restart_sts_calls} STS calls, {restart_secret_writes} Secret writes"
    );
    let _ = op.admin;
    drop(op);
    Ok(ScaleResult {
        bindings: n,
        floor_seconds,
        floor_runs_seconds,
        create_seconds,
        all_ready_seconds,
        ratio_to_floor: all_ready_seconds / floor_seconds.max(1e-9),
        time_to_ready: percentiles(samples),
        rss_peak_mib,
        rss_steady_mib,
        rss_steady_anonymous_mib,
        rss_steady_file_mib,
        rss_with_unrelated_secrets_mib,
        unrelated_secrets: if rss_with_unrelated_secrets_mib.is_some() {
            args.unrelated_secrets
        } else {
            0
        },
        restart_sts_calls,
        restart_secret_writes,
        restart_ready_seconds,
        floor_phase,
        podcreds_phase,
    })
}

async fn steady(
    plane: &ControlPlane,
    emulator: &Emulator,
    bin: &Path,
    args: &Args,
) -> anyhow::Result<SteadyResult> {
    let client = plane.client().await?;
    let ns = "steady";
    create_namespace(&client, ns).await?;
    let role = "arn:aws:iam::123456789012:role/steady";
    emulator.add_role(Role {
        arn: role.into(),
        subjects: vec![format!("system:serviceaccount:{ns}:*")],
        audiences: vec![],
        max_session_seconds: Some(args.steady_lifetime),
    });
    let op = start_operator(plane, bin, &emulator.url(), ns, args).await?;
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), ns);
    for i in 0..args.steady_bindings {
        podcreds_testenv::create_service_account(&client, ns, &format!("sa-{i}")).await?;
        let mut b = binding(&format!("b{i}"), &format!("sa-{i}"))?;
        b.spec.role_arn = role.into();
        bindings.create(&PostParams::default(), &b).await?;
    }
    // Let the first issue settle, then observe.
    tokio::time::sleep(Duration::from_secs(args.steady_lifetime)).await;
    let cpu_start = cpu_seconds(op.process.pid());
    let start = jiff::Timestamp::now();
    let calls_start = emulator.calls().calls.len();
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let cpu_used = cpu_seconds(op.process.pid()) - cpu_start;
    let log = emulator.calls();
    let window: Vec<&sts_emulator::CallRecord> = log.calls[calls_start.min(log.calls.len())..]
        .iter()
        .filter(|c| c.action == "AssumeRoleWithWebIdentity" && c.role_arn.as_deref() == Some(role))
        .collect();
    let mut per_second: BTreeMap<i64, u64> = BTreeMap::new();
    for c in &window {
        if let Ok(t) = c.at.parse::<jiff::Timestamp>() {
            *per_second.entry(t.as_second()).or_default() += 1;
        }
    }
    let calls = window.len() as u64;
    let lifetimes = args.steady_seconds as f64 / args.steady_lifetime as f64;
    let mut by_binding: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for c in &window {
        if let (Some(session), Ok(t)) = (c.session_name.clone(), c.at.parse::<jiff::Timestamp>()) {
            by_binding
                .entry(session)
                .or_default()
                .push(t.as_millisecond());
        }
    }
    let intervals: Vec<f64> = by_binding
        .values()
        .flat_map(|times| {
            times
                .windows(2)
                .map(|w| (w[1] - w[0]) as f64 / 1000.0)
                .collect::<Vec<_>>()
        })
        .collect();
    let mean_interval = if intervals.is_empty() {
        0.0
    } else {
        intervals.iter().sum::<f64>() / intervals.len() as f64
    };
    let premature = intervals
        .iter()
        .filter(|i| **i < args.steady_lifetime as f64 / 3.0)
        .count() as u64;
    let expected_interval = args.steady_lifetime as f64 * (2.0 / 3.0 - 0.05);
    let _ = start;
    drop(op);
    Ok(SteadyResult {
        bindings: args.steady_bindings,
        lifetime_seconds: args.steady_lifetime,
        observed_seconds: args.steady_seconds,
        sts_calls: calls,
        calls_per_binding_per_lifetime: calls as f64 / args.steady_bindings as f64 / lifetimes,
        mean_refresh_interval_seconds: mean_interval,
        calls_per_credential_set: if mean_interval > 0.0 {
            expected_interval / mean_interval
        } else {
            0.0
        },
        premature_refreshes: premature,
        max_calls_in_a_second: per_second.values().copied().max().unwrap_or(0),
        mean_calls_per_second: calls as f64 / args.steady_seconds as f64,
        cpu_seconds_per_1000_refreshes: if calls > 0 {
            cpu_used / calls as f64 * 1000.0
        } else {
            0.0
        },
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::testenv::ensure()?;
    crate::run(
        "cargo",
        &["build", "--release", "--quiet", "--bin", "podcreds"],
        &[],
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("release").join("podcreds");
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // No kube-controller-manager: nothing here needs garbage collection, and it would only
        // compete for the two cores.
        let plane = ControlPlane::start(Options {
            controller_manager: false,
            apiserver_profiling: args.apiserver_profile,
        })
        .await?;
        plane
            .install_crds(&std::fs::read_to_string(
                repo_root().join("crds/awsrolebindings.podcreds.dev.yaml"),
            )?)
            .await?;
        warm_up(&plane.client().await?).await?;
        let emulator = Emulator::start(sts_emulator::Config {
            roles: vec![Role {
                arn: ROLE.into(),
                subjects: vec!["system:serviceaccount:*".into()],
                audiences: vec![],
                max_session_seconds: None,
            }],
            ..sts_emulator::Config::for_issuer(&plane.api_url, &plane.ca_pem)
        })
        .await?;
        let mut scale_results = Vec::new();
        for &n in &args.bindings {
            scale_results.push(scale(&plane, &emulator, &bin, n, &args).await?);
        }
        let steady = if args.steady_bindings > 0 {
            println!(
                "  steady state: {} bindings, {} s lifetimes, {} s",
                args.steady_bindings, args.steady_lifetime, args.steady_seconds
            );
            Some(steady(&plane, &emulator, &bin, &args).await?)
        } else {
            None
        };
        emulator.shutdown();
        Ok::<Report, anyhow::Error>(Report {
            machine: machine(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            sts_qps: args.sts_qps,
            concurrency: args.concurrency,
            scale: scale_results,
            steady,
        })
    })?;
    let output = repo_root().join(&args.output);
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&output, serde_json::to_string_pretty(&report)?)?;
    print_table(&report);
    println!("\nwrote {}", output.display());
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "\nmachine: {} cores, {:.1} GiB, {}; operator --concurrency={} --sts-qps={}",
        r.machine.cores, r.machine.memory_gib, r.machine.cpu, r.concurrency, r.sts_qps
    );
    println!(
        "{:>6} {:>9} {:>9} {:>10} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>8} {:>8} {:>9}",
        "N",
        "floor s",
        "create s",
        "allReady s",
        "ratio",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "RSS MiB",
        "peak MiB",
        "+secrets",
        "rst STS",
        "rst wr",
        "rst rdy s"
    );
    for s in &r.scale {
        println!(
            "{:>6} {:>9.2} {:>9.2} {:>10.2} {:>6.2} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>9.1} {:>9.1} {:>10} {:>8} {:>8} {:>9.2}",
            s.bindings,
            s.floor_seconds,
            s.create_seconds,
            s.all_ready_seconds,
            s.ratio_to_floor,
            s.time_to_ready.p50_ms,
            s.time_to_ready.p95_ms,
            s.time_to_ready.p99_ms,
            s.time_to_ready.max_ms,
            s.rss_steady_mib,
            s.rss_peak_mib,
            s.rss_with_unrelated_secrets_mib
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "-".into()),
            s.restart_sts_calls,
            s.restart_secret_writes,
            s.restart_ready_seconds
        );
    }
    for s in &r.scale {
        for (name, phase) in [("floor", &s.floor_phase), ("podcreds", &s.podcreds_phase)] {
            println!(
                "N={} {name}: CPU s apiserver {:.1}, etcd {:.1}, operator {:.1}, client and STS emulator {:.1}; apiserver served:",
                s.bindings,
                phase.apiserver_cpu_seconds,
                phase.etcd_cpu_seconds,
                phase.operator_cpu_seconds,
                phase.bench_cpu_seconds
            );
            for served in phase.apiserver.iter().take(12) {
                println!(
                    "    {:>8.0} {:<40} {:>8.2} s",
                    served.count, served.what, served.seconds
                );
            }
        }
    }
    if let Some(st) = &r.steady {
        println!(
            "steady: {} bindings, {} s lifetimes over {} s: {} STS calls = {:.2} per binding per lifetime (refresh every {:.1} s, {:.2} calls per credential set, {} premature); max {} calls in a second vs mean {:.2}/s; {:.2} CPU s per 1000 refreshes",
            st.bindings,
            st.lifetime_seconds,
            st.observed_seconds,
            st.sts_calls,
            st.calls_per_binding_per_lifetime,
            st.mean_refresh_interval_seconds,
            st.calls_per_credential_set,
            st.premature_refreshes,
            st.max_calls_in_a_second,
            st.mean_calls_per_second,
            st.cpu_seconds_per_1000_refreshes
        );
    }
}

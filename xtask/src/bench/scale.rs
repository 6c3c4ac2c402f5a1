//! Scale: for one N, the floors, then time to Ready of N bindings through podcreds (percentiles),
//! its memory (also with many unrelated Secrets in the cluster) and its restart cost. The burst
//! and the rest are two steps so that a peer can be measured on the same N in between, before
//! the unrelated Secrets are added.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::ControlPlane;
use serde::Serialize;
use sts_emulator::Emulator;

use super::floor::{FloorKind, FloorResult};
use super::phase::{Phase, PhaseMeter, maybe_profile, settle};
use super::proc::cpu_seconds;
use super::proc::{rss_mib, rss_split_mib};
use super::{
    Args, binding, create_bindings, create_namespace, create_service_accounts, floor,
    operator_launch, restart, start_operator,
};
use podcreds_testenv::Operator;

#[derive(Serialize, Default, Debug)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(mut samples: Vec<f64>) -> Percentiles {
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
pub struct ScaleResult {
    pub bindings: usize,
    /// TokenRequest, STS, Secret create: two apiserver requests per binding.
    pub floor: FloorResult,
    /// The bare floor plus a status patch: three requests, what any operator reporting status does.
    pub operator_floor: FloorResult,
    /// The operator floor with the client's binding create inside the clock.
    pub operator_floor_with_create: FloorResult,
    /// The operator floor writing podcreds' Secret (every rendering) instead of three keys.
    pub operator_floor_podcreds_secret: FloorResult,
    /// Time the benchmark client needed just to create the bindings.
    pub create_seconds: f64,
    pub all_ready_seconds: f64,
    pub ratio_to_floor: f64,
    pub ratio_to_operator_floor: f64,
    pub ratio_to_operator_floor_with_create: f64,
    pub time_to_ready: Percentiles,
    pub rss_peak_mib: f64,
    pub rss_steady_mib: f64,
    /// The steady RSS split: anonymous pages (heap, stacks) and file pages (the binary).
    pub rss_steady_anonymous_mib: f64,
    pub rss_steady_file_mib: f64,
    pub rss_with_unrelated_secrets_mib: Option<f64>,
    pub unrelated_secrets: usize,
    pub restart_sts_calls: u64,
    pub restart_secret_writes: usize,
    pub restart_ready_seconds: f64,
    /// STS calls and TokenRequests during the burst (the emulator's and the apiserver's counts).
    pub sts_calls: u64,
    pub token_requests: f64,
    /// Requests the apiserver served during the burst per binding, the client's creates included.
    pub apiserver_requests_per_binding: f64,
    /// How long after the last Ready the operator's work went on (counted in the phase).
    pub settle_seconds: f64,
    /// podcreds on N bindings created before it starts: the operator floor's own terms.
    pub preexisting: PreexistingResult,
    /// From the first create until the operator settled.
    pub podcreds_phase: Phase,
    /// From the first create until the last Ready: what the timed window cost.
    pub podcreds_phase_until_ready: Phase,
}

/// podcreds started on N bindings that already exist, as the operator floor's objects do: the
/// clock starts when the operator process is spawned (its start and cache sync count).
#[derive(Serialize, Debug)]
pub struct PreexistingResult {
    pub all_ready_seconds: f64,
    pub ratio_to_operator_floor: f64,
    /// From the spawn to each binding's Ready.
    pub time_to_ready: Percentiles,
    pub sts_calls: u64,
    /// Until the last Ready; the operator's CPU is its whole life.
    pub phase_until_ready: Phase,
}

/// Creates N bindings with no operator watching, then starts one and times it to all Ready.
async fn preexisting(
    plane: &ControlPlane,
    emulator: &Emulator,
    bin: &Path,
    n: usize,
    operator_floor_seconds: f64,
    args: &Args,
) -> anyhow::Result<PreexistingResult> {
    let client = plane.client().await?;
    let ns = format!("pre-{n}");
    create_namespace(&client, &ns).await?;
    println!("  N={n}: {n} bindings created before podcreds starts (not timed)");
    create_service_accounts(&client, &ns, n, args.concurrency).await?;
    create_bindings(&client, &ns, n, args.concurrency).await?;
    let (ready, watch_task) = watch_ready(client.clone(), &ns);
    // The watch has listed the bindings before the operator is spawned.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sts_before = emulator.count("AssumeRoleWithWebIdentity");
    let profile = maybe_profile(args, &client, &format!("podcreds-pre-{n}"));
    let meter = PhaseMeter::start(plane, &client, None).await?;
    let started = Instant::now();
    let mut op = Operator::spawn(operator_launch(plane, bin, &emulator.url(), &ns, args))?;
    loop {
        let count = ready.lock().map(|r| r.len()).unwrap_or(0);
        if count >= n {
            break;
        }
        if let Some(status) = op.process.exited() {
            bail!("podcreds exited ({status}):\n{}", op.process.log_tail(30));
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("only {count} of {n} pre-existing bindings Ready after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut phase_until_ready = meter.snapshot(&client).await?;
    phase_until_ready.operator_cpu_seconds = cpu_seconds(op.pid());
    let sts_calls = emulator.count("AssumeRoleWithWebIdentity") - sts_before;
    if let Some(profile) = profile {
        profile.await?;
    }
    watch_task.abort();
    let ready_times = ready.lock().map(|r| r.clone()).unwrap_or_default();
    let spawned: HashMap<String, Instant> =
        ready_times.keys().map(|k| (k.clone(), started)).collect();
    let (all_ready_seconds, time_to_ready) = ready_timing(started, &spawned, &ready_times);
    println!("    all Ready {all_ready_seconds:.2}s after the operator was spawned");
    // Let it settle before the next phase, so its tail is not counted there.
    settle(&client, emulator).await?;
    drop(op);
    Ok(PreexistingResult {
        all_ready_seconds,
        ratio_to_operator_floor: all_ready_seconds / operator_floor_seconds.max(1e-9),
        time_to_ready,
        sts_calls,
        phase_until_ready,
    })
}

/// The burst of one N: its figures so far and the operator, still running.
pub struct Burst {
    pub result: ScaleResult,
    pub operator: Operator,
    pub namespace: String,
}

/// When the clock started, when each object was created and when it was first seen Ready:
/// (all Ready in seconds from the start, per-object percentiles from create to Ready).
pub fn ready_timing(
    started: Instant,
    created: &HashMap<String, Instant>,
    ready: &HashMap<String, Instant>,
) -> (f64, Percentiles) {
    let all_ready_seconds = ready
        .values()
        .max()
        .map(|t| t.duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    let samples: Vec<f64> = ready
        .iter()
        .filter_map(|(name, ready_at)| {
            let c = created.get(name)?;
            Some(ready_at.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    (all_ready_seconds, percentiles(samples))
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

/// The floors, then N bindings through podcreds: time to Ready, memory, apiserver work.
pub async fn burst(
    plane: &ControlPlane,
    emulator: &Emulator,
    bin: &Path,
    n: usize,
    args: &Args,
) -> anyhow::Result<Burst> {
    let client = plane.client().await?;
    let floor = floor::measure_runs(plane, &client, emulator, n, FloorKind::Bare, args).await?;
    let operator_floor =
        floor::measure_runs(plane, &client, emulator, n, FloorKind::Operator, args).await?;
    let operator_floor_with_create = floor::measure_runs(
        plane,
        &client,
        emulator,
        n,
        FloorKind::OperatorWithCreate,
        args,
    )
    .await?;
    let operator_floor_podcreds_secret = floor::measure_runs(
        plane,
        &client,
        emulator,
        n,
        FloorKind::OperatorPodcredsSecret,
        args,
    )
    .await?;

    let ns = format!("bench-{n}");
    create_namespace(&client, &ns).await?;
    let op = start_operator(plane, bin, &emulator.url(), &ns, args).await?;
    // The ServiceAccounts exist before the clock starts, as they do for the floor: both sides
    // then time the same work for the same N accounts.
    println!("  N={n}: creating {n} ServiceAccounts (not timed, as for the floor)");
    create_service_accounts(&client, &ns, n, args.concurrency).await?;
    let (ready, watch_task) = watch_ready(client.clone(), &ns);
    println!("  N={n}: creating {n} bindings");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let profile = maybe_profile(args, &client, &format!("podcreds-{n}"));
    let sts_before = emulator.count("AssumeRoleWithWebIdentity");
    let meter = PhaseMeter::start(plane, &client, Some(op.pid())).await?;
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
        peak = peak.max(rss_mib(op.pid()).1);
        if count >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("only {count} of {n} bindings Ready after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let podcreds_phase_until_ready = meter.snapshot(&client).await?;
    let ready_times = ready.lock().map(|r| r.clone()).unwrap_or_default();
    let created = created.lock().map(|c| c.clone()).unwrap_or_default();
    let (all_ready_seconds, time_to_ready) = ready_timing(started, &created, &ready_times);
    watch_task.abort();
    let settle_seconds = settle(&client, emulator).await?;
    let podcreds_phase = meter.finish(&client).await?;
    let sts_calls = emulator.count("AssumeRoleWithWebIdentity") - sts_before;
    if let Some(profile) = profile {
        profile.await?;
    }
    let (rss_steady_mib, hwm) = rss_mib(op.pid());
    let (rss_steady_anonymous_mib, rss_steady_file_mib) = rss_split_mib(op.pid());
    let rss_peak_mib = peak.max(hwm);
    println!(
        "    all Ready after {all_ready_seconds:.2}s; RSS steady {rss_steady_mib:.1} MiB ({rss_steady_anonymous_mib:.1} anonymous, {rss_steady_file_mib:.1} file), peak {rss_peak_mib:.1} MiB"
    );
    let ratio = |floor: &FloorResult| all_ready_seconds / floor.seconds.max(1e-9);
    let preexisting = preexisting(plane, emulator, bin, n, operator_floor.seconds, args).await?;
    Ok(Burst {
        result: ScaleResult {
            bindings: n,
            ratio_to_floor: ratio(&floor),
            ratio_to_operator_floor: ratio(&operator_floor),
            ratio_to_operator_floor_with_create: ratio(&operator_floor_with_create),
            floor,
            operator_floor,
            operator_floor_with_create,
            operator_floor_podcreds_secret,
            create_seconds,
            all_ready_seconds,
            time_to_ready,
            rss_peak_mib,
            rss_steady_mib,
            rss_steady_anonymous_mib,
            rss_steady_file_mib,
            rss_with_unrelated_secrets_mib: None,
            unrelated_secrets: 0,
            restart_sts_calls: 0,
            restart_secret_writes: 0,
            restart_ready_seconds: 0.0,
            sts_calls,
            token_requests: podcreds_phase.served("POST serviceaccounts/token"),
            apiserver_requests_per_binding: podcreds_phase.requests() / n.max(1) as f64,
            settle_seconds,
            preexisting,
            podcreds_phase,
            podcreds_phase_until_ready,
        },
        operator: op,
        namespace: ns,
    })
}

/// After the burst: memory with unrelated Secrets (at the largest N) and the restart cost.
pub async fn finish(
    plane: &ControlPlane,
    emulator: &Emulator,
    burst: Burst,
    args: &Args,
) -> anyhow::Result<ScaleResult> {
    let Burst {
        mut result,
        operator: mut op,
        namespace: ns,
    } = burst;
    let n = result.bindings;
    let client = plane.client().await?;
    if args.unrelated_secrets > 0 && n == *args.bindings.iter().max().unwrap_or(&n) {
        result.rss_with_unrelated_secrets_mib =
            Some(rss_with_unrelated_secrets(&client, n, args, op.pid()).await?);
        result.unrelated_secrets = args.unrelated_secrets;
    }
    println!("  N={n}: restart with fresh Secrets");
    let restart = restart::measure(&mut op, &client, &ns, emulator).await?;
    drop(op);
    result.restart_sts_calls = restart.sts_calls;
    result.restart_secret_writes = restart.secret_writes;
    result.restart_ready_seconds = restart.ready_seconds;
    Ok(result)
}

/// Adds `args.unrelated_secrets` Secrets of 100 KB in another namespace and returns the
/// operator's RSS afterwards, in MiB: memory must not follow Secrets podcreds does not own.
async fn rss_with_unrelated_secrets(
    client: &kube::Client,
    n: usize,
    args: &Args,
    operator_pid: u32,
) -> anyhow::Result<f64> {
    println!(
        "  N={n}: adding {} unrelated Secrets of 100 KB",
        args.unrelated_secrets
    );
    let other = format!("unrelated-{n}");
    create_namespace(client, &other).await?;
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
    let (rss, _) = rss_mib(operator_pid);
    println!("    RSS with unrelated Secrets: {rss:.1} MiB");
    Ok(rss)
}

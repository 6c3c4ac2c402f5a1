//! The benchmark's result: the machine it ran on, the JSON written, the table printed.

use serde::Serialize;

use super::floor::FloorResult;
use super::peer_eso::PeerResult;
use super::phase::Phase;
use super::proc::proc_field_mib;
use super::scale::{Percentiles, ScaleResult};
use super::steady::SteadyResult;

#[derive(Serialize, Debug)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu: String,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub machine: Machine,
    /// How this process (the floors' client, the benchmark client and the STS emulator) was
    /// built: a debug build makes the floors slower than an operator would be.
    pub client_build: &'static str,
    /// The machine's 1, 5 and 15 minute load averages before and after the run: the cores are
    /// shared, and a busy machine stretches every figure.
    pub load_average_before: Vec<f64>,
    pub load_average_after: Vec<f64>,
    pub command: String,
    pub sts_qps: u32,
    pub concurrency: usize,
    pub scale: Vec<ScaleResult>,
    /// The peer operator on the same N (`--peer`), in the order of `scale`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer: Vec<PeerResult>,
    pub steady: Option<SteadyResult>,
    pub fairness: Option<super::fairness::FairnessResult>,
    pub churn: Vec<super::churn::ChurnResult>,
    pub hostile: Option<super::hostile::HostileResult>,
    pub endpoint: Option<super::endpoint::EndpointResult>,
}

/// `release` or `debug`: how the benchmark process itself was compiled.
pub fn client_build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

pub fn machine() -> Machine {
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

pub fn print_table(r: &Report) {
    if r.client_build == "debug" {
        println!(
            "\nnote: this benchmark process is a debug build; the floors' client and the STS emulator run in it, so the floors are slower than they should be (--debug-client). For figures: cargo xtask bench without it"
        );
    }
    println!(
        "\nmachine: {} cores, {:.1} GiB, {}; operator --concurrency={} --sts-qps={}; load average before {:?}, after {:?}",
        r.machine.cores,
        r.machine.memory_gib,
        r.machine.cpu,
        r.concurrency,
        r.sts_qps,
        r.load_average_before,
        r.load_average_after
    );
    if !r.scale.is_empty() {
        print_scale_header();
    }
    print_results(r);
    if let Some(e) = &r.endpoint {
        print_endpoint(e);
    }
}

fn print_scale_header() {
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
}

fn print_results(r: &Report) {
    for s in &r.scale {
        println!(
            "{:>6} {:>9.2} {:>9.2} {:>10.2} {:>6.2} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>9.1} {:>9.1} {:>10} {:>8} {:>8} {:>9.2}",
            s.bindings,
            s.floor.seconds,
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
        for (name, phase) in [
            ("bare floor", &s.floor.phase),
            ("operator floor", &s.operator_floor.phase),
            (
                "operator floor + create",
                &s.operator_floor_with_create.phase,
            ),
            (
                "operator floor, podcreds' Secret",
                &s.operator_floor_podcreds_secret.phase,
            ),
            ("podcreds", &s.podcreds_phase),
        ] {
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
    print_side_by_side(r);
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
    if let Some(f) = &r.fairness {
        println!(
            "fairness: {} healthy bindings created after {} failing ones in another namespace: Ready p50 {:.0} ms, p99 {:.0} ms, all {:.0} ms; over {} s ({} s lifetimes): {} healthy refreshes, {} late, longest gap {:.2} of a lifetime; {} failing calls meanwhile",
            f.healthy_bindings,
            f.failing_bindings,
            f.healthy_time_to_ready.p50_ms,
            f.healthy_time_to_ready.p99_ms,
            f.healthy_time_to_ready.max_ms,
            f.observed_seconds,
            f.healthy_lifetime_seconds,
            f.healthy_refreshes_observed,
            f.healthy_late_refreshes,
            f.healthy_max_gap_share_of_lifetime,
            f.failing_calls_observed
        );
    }
    if let Some(h) = &r.hostile {
        println!(
            "\nhostile load | RSS before | after {} labelled Secrets of {} KB | peak with {} bindings of {} B and {} of {} B",
            h.bloat_secrets,
            h.bloat_bytes_each / 1024,
            h.maximal_bindings,
            h.maximal_binding_bytes,
            h.oversized_bindings,
            h.oversized_binding_bytes
        );
        println!(
            "             | {:>6.1} MiB | {:>6.1} MiB | {:>6.1} MiB",
            h.rss_before_mib, h.rss_after_bloat_mib, h.peak_rss_mib
        );
    }
    if !r.churn.is_empty() {
        println!(
            "\nchurn (default log level)  | create: lines/binding | WARN | ERROR | namespace deletion: lines/binding | WARN | ERROR | STS calls | seconds"
        );
        for c in &r.churn {
            println!(
                "N={:<24}| {:>21.2} | {:>4} | {:>5} | {:>33.2} | {:>4} | {:>5} | {:>9} | {:>7.1}",
                c.bindings,
                c.create_lines_per_binding,
                c.create_lines.warn,
                c.create_lines.error,
                c.delete_lines_per_binding,
                c.delete_lines.warn,
                c.delete_lines.error,
                c.delete_sts_calls,
                c.delete_seconds
            );
        }
    }
}

fn print_endpoint(e: &super::endpoint::EndpointResult) {
    println!(
        "\nnode endpoint ({} pods, {} bindings, {} callers, one agent)",
        e.pods, e.bindings, e.clients
    );
    println!(
        "| requests/s (cached) | p50 | p99 | first request p50 / p99 (broker) | agent RSS (peak) | agent CPU s / 1,000 requests | failed | STS calls / credential set |"
    );
    println!(
        "| {:.0} | {:.2} ms | {:.2} ms | {:.2} / {:.2} ms | {:.1} ({:.1}) MiB | {:.3} | {} | {:.2} |",
        e.steady_requests_per_second,
        e.steady.p50_ms,
        e.steady.p99_ms,
        e.first_request.p50_ms,
        e.first_request.p99_ms,
        e.agent_rss_mib,
        e.agent_peak_rss_mib,
        e.agent_cpu_seconds_per_1000,
        e.failed_requests,
        e.sts_calls as f64 / e.credential_sets.max(1) as f64
    );
}

/// One row of the side-by-side table.
struct Row<'a> {
    name: String,
    all_ready_seconds: f64,
    ratio_to_operator_floor: f64,
    time_to_ready: Option<&'a Percentiles>,
    rss: Option<(f64, f64)>,
    /// The timed window (CPU columns).
    phase: &'a Phase,
    /// Until the work settled (requests per object, the operator's whole CPU).
    settled: &'a Phase,
    objects: usize,
    sts_calls: f64,
    token_requests: f64,
}

fn floor_row<'a>(f: &'a FloorResult, n: usize, operator_floor: f64) -> Row<'a> {
    Row {
        name: format!(
            "{} ({:.2}-{:.2})",
            f.kind.label(),
            min(&f.runs_seconds),
            max(&f.runs_seconds)
        ),
        all_ready_seconds: f.seconds,
        ratio_to_operator_floor: f.seconds / operator_floor.max(1e-9),
        time_to_ready: None,
        rss: None,
        phase: &f.phase,
        settled: &f.phase,
        objects: n,
        sts_calls: n as f64,
        token_requests: f.phase.served("POST serviceaccounts/token"),
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// podcreds, the floors and the peer on each N, from this run.
fn print_side_by_side(r: &Report) {
    for s in &r.scale {
        let n = s.bindings;
        let op_floor = s.operator_floor.seconds;
        let mut rows = vec![
            floor_row(&s.floor, n, op_floor),
            floor_row(&s.operator_floor, n, op_floor),
            floor_row(&s.operator_floor_with_create, n, op_floor),
            floor_row(&s.operator_floor_podcreds_secret, n, op_floor),
            Row {
                name: "podcreds".into(),
                all_ready_seconds: s.all_ready_seconds,
                ratio_to_operator_floor: s.ratio_to_operator_floor,
                time_to_ready: Some(&s.time_to_ready),
                rss: Some((s.rss_steady_mib, s.rss_peak_mib)),
                phase: &s.podcreds_phase_until_ready,
                settled: &s.podcreds_phase,
                objects: n,
                sts_calls: s.sts_calls as f64,
                token_requests: s.token_requests,
            },
        ];
        rows.push(Row {
            name: "podcreds, bindings created first".into(),
            all_ready_seconds: s.preexisting.all_ready_seconds,
            ratio_to_operator_floor: s.preexisting.ratio_to_operator_floor,
            time_to_ready: Some(&s.preexisting.time_to_ready),
            rss: None,
            phase: &s.preexisting.phase_until_ready,
            settled: &s.preexisting.phase_until_ready,
            objects: n,
            sts_calls: s.preexisting.sts_calls as f64,
            token_requests: s
                .preexisting
                .phase_until_ready
                .served("POST serviceaccounts/token"),
        });
        for p in r.peer.iter().filter(|p| p.bindings == n) {
            for (what, phase, rss) in [
                (
                    "SecretStores",
                    &p.secret_stores,
                    p.secret_stores.rss_after_mib,
                ),
                ("ExternalSecrets", &p.external_secrets, p.rss_steady_mib),
            ] {
                rows.push(Row {
                    name: format!("{} {what}", p.peer),
                    all_ready_seconds: phase.all_ready_seconds,
                    ratio_to_operator_floor: phase.all_ready_seconds / op_floor.max(1e-9),
                    time_to_ready: Some(&phase.time_to_ready),
                    rss: Some((rss, p.rss_peak_mib)),
                    phase: &phase.phase_until_ready,
                    settled: &phase.phase,
                    objects: phase.objects,
                    sts_calls: phase.sts_calls as f64,
                    token_requests: phase.token_requests,
                });
            }
        }
        println!(
            "\nN={n} side by side (ratio to the operator floor; CPU s until the last Ready of the operator, the apiserver, etcd, and the client with the STS emulator, and the operator's until it settled; per object: apiserver requests, STS calls, TokenRequests, counted until it settled)"
        );
        println!(
            "{:<42} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5} {:>5}",
            "",
            "ready s",
            "ratio",
            "p50 s",
            "p95 s",
            "p99 s",
            "max s",
            "RSS",
            "peak",
            "op",
            "api",
            "etcd",
            "cli",
            "op all",
            "req/o",
            "sts/o",
            "tr/o"
        );
        for row in rows {
            let pct = |f: fn(&Percentiles) -> f64| {
                row.time_to_ready
                    .map(|p| format!("{:.2}", f(p) / 1000.0))
                    .unwrap_or_else(|| "-".into())
            };
            let per = |v: f64| v / row.objects.max(1) as f64;
            println!(
                "{:<42} {:>7.2} {:>6.2} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>5.1} {:>5.1} {:>5.1} {:>5.1} {:>6.1} {:>6.2} {:>5.2} {:>5.2}",
                row.name,
                row.all_ready_seconds,
                row.ratio_to_operator_floor,
                pct(|p| p.p50_ms),
                pct(|p| p.p95_ms),
                pct(|p| p.p99_ms),
                pct(|p| p.max_ms),
                row.rss
                    .map(|r| format!("{:.1}", r.0))
                    .unwrap_or_else(|| "-".into()),
                row.rss
                    .map(|r| format!("{:.1}", r.1))
                    .unwrap_or_else(|| "-".into()),
                row.phase.operator_cpu_seconds,
                row.phase.apiserver_cpu_seconds,
                row.phase.etcd_cpu_seconds,
                row.phase.bench_cpu_seconds,
                row.settled.operator_cpu_seconds,
                per(row.settled.requests()),
                per(row.sts_calls),
                per(row.token_requests),
            );
        }
    }
    for p in &r.peer {
        for (what, phase) in [
            ("SecretStores", &p.secret_stores),
            ("ExternalSecrets", &p.external_secrets),
        ] {
            println!(
                "N={} {} {what}: session names {:?}; moto CPU {:.1} s; apiserver served:",
                p.bindings, p.peer, phase.sts_session_names, phase.moto_cpu_seconds
            );
            for served in phase.phase.apiserver.iter().take(12) {
                println!(
                    "    {:>8.0} {:<40} {:>8.2} s",
                    served.count, served.what, served.seconds
                );
            }
        }
    }
}

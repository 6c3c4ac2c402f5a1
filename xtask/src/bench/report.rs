//! The benchmark's result: the machine it ran on, the JSON written, the table printed.

use serde::Serialize;

use super::proc::proc_field_mib;
use super::scale::ScaleResult;
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
    pub command: String,
    pub sts_qps: u32,
    pub concurrency: usize,
    pub scale: Vec<ScaleResult>,
    pub steady: Option<SteadyResult>,
    pub fairness: Option<super::fairness::FairnessResult>,
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
}

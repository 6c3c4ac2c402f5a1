//! What one timed phase cost: CPU of the control plane, the operator and the benchmark itself,
//! the requests the apiserver served, and on request a CPU profile of the apiserver.

use std::path::Path;
use std::time::{Duration, Instant};

use podcreds_testenv::ControlPlane;
use serde::Serialize;
use sts_emulator::Emulator;

use super::Args;
use super::apiserver::{self, Served};
use super::proc::cpu_seconds;
use crate::repo_root;

/// What one timed phase cost the control plane and the operator.
#[derive(Serialize, Debug, Default)]
pub struct Phase {
    pub apiserver_cpu_seconds: f64,
    pub etcd_cpu_seconds: f64,
    pub operator_cpu_seconds: f64,
    /// This process: the benchmark client and the STS emulator.
    pub bench_cpu_seconds: f64,
    /// Requests the apiserver served and watch events it sent, busiest first.
    pub apiserver: Vec<Served>,
}

/// Whether a kind of request is work on the objects being measured: not a watch (counted when
/// it ends, whenever that is), not a lease renewal (periodic), not a non-resource read such as
/// `/openapi/v3`, and not a watch event.
fn is_work(what: &str) -> bool {
    let mut parts = what.split(' ');
    let (verb, resource) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    !(what.starts_with("watch events")
        || verb == "WATCH"
        || resource.is_empty()
        || resource.starts_with('/')
        || resource.starts_with("leases"))
}

impl Phase {
    /// Requests the apiserver served that were work on the objects (see `is_work`).
    pub fn requests(&self) -> f64 {
        self.apiserver
            .iter()
            .filter(|s| is_work(&s.what))
            .map(|s| s.count)
            .sum()
    }

    /// Requests of one kind (`VERB resource[/subresource]`).
    pub fn served(&self, what: &str) -> f64 {
        self.apiserver
            .iter()
            .filter(|s| s.what == what)
            .map(|s| s.count)
            .sum()
    }
}

/// Measures a phase: CPU of the control plane (and operator, if any) and apiserver counters.
pub struct PhaseMeter {
    pids: (u32, u32),
    operator: Option<u32>,
    cpu: (f64, f64, f64, f64),
    counters: apiserver::Counters,
}

impl PhaseMeter {
    pub async fn start(
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

    pub async fn finish(self, client: &kube::Client) -> anyhow::Result<Phase> {
        self.snapshot(client).await
    }

    /// What the phase has cost so far.
    pub async fn snapshot(&self, client: &kube::Client) -> anyhow::Result<Phase> {
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

/// Waits until the apiserver has served no request that is work (and the emulator no STS call)
/// for `QUIET`, at most `SETTLE_MAX`; returns how long that took. What an operator's own status
/// writes trigger after the last Ready is part of its job, so a phase is counted until then.
pub async fn settle(client: &kube::Client, emulator: &Emulator) -> anyhow::Result<f64> {
    const QUIET: Duration = Duration::from_secs(3);
    const SETTLE_MAX: Duration = Duration::from_secs(120);
    let started = Instant::now();
    let work = |c: &apiserver::Counters| -> f64 {
        c.since(&apiserver::Counters::default())
            .iter()
            .filter(|s| is_work(&s.what))
            .map(|s| s.count)
            .sum()
    };
    let mut last = (
        work(&apiserver::counters(client).await?),
        emulator.calls().calls.len(),
    );
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET && started.elapsed() < SETTLE_MAX {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = (
            work(&apiserver::counters(client).await?),
            emulator.calls().calls.len(),
        );
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Starts a CPU profile of the apiserver when asked for one; await the handle to finish it.
pub fn maybe_profile(
    args: &Args,
    client: &kube::Client,
    name: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    if !args.apiserver_profile {
        return None;
    }
    let dir = repo_root().join(args.output.parent().unwrap_or(Path::new(".")));
    // The result's directory is otherwise only made at the end of the run.
    if let Err(e) = std::fs::create_dir_all(&dir) {
        println!(
            "    apiserver CPU profile skipped: cannot create {}: {e}",
            dir.display()
        );
        return None;
    }
    let path = dir.join(format!("apiserver-{name}.pprof"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_excludes_watches_leases_and_non_resource_reads() {
        for what in [
            "POST secrets",
            "POST serviceaccounts/token",
            "APPLY awsrolebindings/status",
            "PATCH secretstores/status",
            "GET secrets",
        ] {
            assert!(is_work(what), "{what}");
        }
        for what in [
            "WATCH secretstores",
            "PUT leases",
            "GET /openapi/v3",
            "GET ",
            "watch events secrets",
        ] {
            assert!(!is_work(what), "{what}");
        }
    }
}

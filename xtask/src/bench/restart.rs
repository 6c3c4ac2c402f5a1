//! Restart cost: what a restarted operator does when every Secret is still fresh (it should
//! call STS for none and write none), and how long it takes to be ready.

use std::time::{Duration, Instant};

use podcreds_testenv::{Operator, secret_versions};
use sts_emulator::Emulator;

pub struct RestartCost {
    pub sts_calls: u64,
    pub secret_writes: usize,
    pub ready_seconds: f64,
}

/// Stops `operator` (SIGTERM), starts it again and measures what it does in `ns`.
pub async fn measure(
    operator: &mut Operator,
    client: &kube::Client,
    ns: &str,
    emulator: &Emulator,
) -> anyhow::Result<RestartCost> {
    let versions_before = secret_versions(client, ns).await?;
    let calls_before = emulator.count("AssumeRoleWithWebIdentity");
    // Stopped before the clock starts: it measures only start to ready.
    operator.process.terminate()?;
    let restarted = Instant::now();
    operator.restart().await?;
    let ready_seconds = restarted.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let versions_after = secret_versions(client, ns).await?;
    let secret_writes = versions_before
        .iter()
        .filter(|(k, v)| versions_after.get(*k) != Some(*v))
        .count();
    let sts_calls = emulator.count("AssumeRoleWithWebIdentity") - calls_before;
    println!(
        "    restart: ready in {ready_seconds:.2}s, {sts_calls} STS calls, {secret_writes} Secret writes"
    );
    Ok(RestartCost {
        sts_calls,
        secret_writes,
        ready_seconds,
    })
}

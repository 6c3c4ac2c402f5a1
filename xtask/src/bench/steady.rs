//! Steady state: bindings with short lifetimes observed over several refreshes: STS calls per
//! binding and lifetime, how they spread over time, CPU per 1,000 refreshes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kube::api::{Api, PostParams};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::ControlPlane;
use serde::Serialize;
use sts_emulator::{Emulator, Role};

use super::proc::cpu_seconds;
use super::{Args, binding, create_namespace, start_operator};

#[derive(Serialize, Debug)]
pub struct SteadyResult {
    pub bindings: usize,
    pub lifetime_seconds: u64,
    pub observed_seconds: u64,
    pub sts_calls: u64,
    pub calls_per_binding_per_lifetime: f64,
    /// Mean time between two refreshes of the same binding.
    pub mean_refresh_interval_seconds: f64,
    /// STS calls per issued credential set that was actually used until its renewal time
    /// (1.0 means no duplicate or premature call).
    pub calls_per_credential_set: f64,
    /// Refreshes that came less than a third of a lifetime after the previous one.
    pub premature_refreshes: u64,
    pub max_calls_in_a_second: u64,
    pub mean_calls_per_second: f64,
    pub cpu_seconds_per_1000_refreshes: f64,
}

/// Observes `args.steady_bindings` bindings with short lifetimes for `args.steady_seconds`.
pub async fn measure(
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
        lifetime_seconds: Some(args.steady_lifetime),
        ..Role::default()
    });
    let op = start_operator(plane, bin, &emulator.url(), ns, args).await?;
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), ns);
    for i in 0..args.steady_bindings {
        podcreds_testenv::create_service_account(&client, ns, &format!("sa-{i}")).await?;
        let mut b = binding(&format!("b{i}"), &format!("sa-{i}"))?;
        b.spec.role_arn = Some(role.into());
        bindings.create(&PostParams::default(), &b).await?;
    }
    // Let the first issue settle, then observe.
    tokio::time::sleep(Duration::from_secs(args.steady_lifetime)).await;
    let cpu_start = cpu_seconds(op.pid());
    let calls_start = emulator.calls().calls.len();
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let cpu_used = cpu_seconds(op.pid()) - cpu_start;
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

//! Fairness: one namespace with thousands of failing bindings next to another with a few healthy
//! ones, under one operator watching every namespace (one reconciliation pool). Measures how long
//! the healthy namespace's bindings take to become Ready behind the failing burst, and whether
//! their renewals stay on time while the failing ones keep being retried.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, PostParams};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::ControlPlane;
use serde::Serialize;
use sts_emulator::{Emulator, Role};

use super::scale::{Percentiles, percentiles};
use super::{Args, binding, create_namespace, start_operator};

#[derive(Serialize, Debug)]
pub struct FairnessResult {
    pub failing_bindings: usize,
    pub healthy_bindings: usize,
    pub healthy_lifetime_seconds: u64,
    pub observed_seconds: u64,
    /// From creation (right after the failing burst was created) to Ready.
    pub healthy_time_to_ready: Percentiles,
    /// STS calls the failing namespace made while the healthy one was observed.
    pub failing_calls_observed: u64,
    pub healthy_refreshes_observed: u64,
    /// Refreshes of the healthy bindings that came later than two thirds of the lifetime plus
    /// two seconds after the previous one (the default renewal point, plus slack for the
    /// requeue and the clock's whole seconds).
    pub healthy_late_refreshes: u64,
    /// The longest gap between two refreshes of one healthy binding, as a share of the lifetime
    /// (credentials lapse at 1.0).
    pub healthy_max_gap_share_of_lifetime: f64,
}

/// Runs the fairness phase with `args.fairness_failing` failing bindings.
pub async fn measure(
    plane: &ControlPlane,
    emulator: &Emulator,
    bin: &Path,
    args: &Args,
) -> anyhow::Result<FairnessResult> {
    const HEALTHY: usize = 50;
    const LIFETIME: u64 = 30;
    const OBSERVE: u64 = 90;
    let failing_n = args.fairness_failing;
    let client = plane.client().await?;
    let (failing_ns, healthy_ns) = ("fair-failing", "fair-healthy");
    create_namespace(&client, failing_ns).await?;
    create_namespace(&client, healthy_ns).await?;
    // The failing role trusts nobody: every exchange is refused (AccessDenied).
    let failing_role = "arn:aws:iam::123456789012:role/fair-refused";
    emulator.add_role(Role {
        arn: failing_role.into(),
        subjects: vec!["system:serviceaccount:nobody:nobody".into()],
        audiences: vec![],
        lifetime_seconds: None,
        ..Role::default()
    });
    let healthy_role = "arn:aws:iam::123456789012:role/fair-healthy";
    emulator.add_role(Role {
        arn: healthy_role.into(),
        subjects: vec![format!("system:serviceaccount:{healthy_ns}:*")],
        audiences: vec![],
        lifetime_seconds: Some(LIFETIME),
        ..Role::default()
    });
    for ns in [failing_ns, healthy_ns] {
        podcreds_testenv::create_service_account(&client, ns, "sa").await?;
    }
    // Every namespace in one scope: the pool the two namespaces share.
    let op = start_operator(plane, bin, &emulator.url(), "", args).await?;
    let failing: Api<AWSRoleBinding> = Api::namespaced(client.clone(), failing_ns);
    futures::stream::iter(0..failing_n)
        .map(|i| {
            let failing = failing.clone();
            async move {
                let mut b = binding(&format!("f{i}"), "sa")?;
                b.spec.role_arn = Some(failing_role.into());
                failing.create(&PostParams::default(), &b).await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let healthy: Api<AWSRoleBinding> = Api::namespaced(client.clone(), healthy_ns);
    let created = Instant::now();
    for i in 0..HEALTHY {
        let mut b = binding(&format!("h{i}"), "sa")?;
        b.spec.role_arn = Some(healthy_role.into());
        healthy.create(&PostParams::default(), &b).await?;
    }
    let mut ready_at: BTreeMap<String, f64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while ready_at.len() < HEALTHY && Instant::now() < deadline {
        for b in healthy.list(&ListParams::default()).await?.items {
            let ready = podcreds::status::ready_condition(b.status.as_ref())
                .is_some_and(|c| c.status == "True");
            if ready {
                let name = b.metadata.name.unwrap_or_default();
                ready_at
                    .entry(name)
                    .or_insert_with(|| created.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let time_to_ready = percentiles(ready_at.values().copied().collect());

    let calls_start = emulator.calls().calls.len();
    tokio::time::sleep(Duration::from_secs(OBSERVE)).await;
    let log = emulator.calls();
    let window = &log.calls[calls_start.min(log.calls.len())..];
    let failing_calls = window
        .iter()
        .filter(|c| c.role_arn.as_deref() == Some(failing_role))
        .count() as u64;
    let mut by_session: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for c in window
        .iter()
        .filter(|c| c.role_arn.as_deref() == Some(healthy_role) && c.result == "Ok")
    {
        if let (Some(session), Ok(t)) = (c.session_name.clone(), c.at.parse::<jiff::Timestamp>()) {
            by_session
                .entry(session)
                .or_default()
                .push(t.as_millisecond());
        }
    }
    let gaps: Vec<f64> = by_session
        .values()
        .flat_map(|t| {
            t.windows(2)
                .map(|w| (w[1] - w[0]) as f64 / 1000.0)
                .collect::<Vec<_>>()
        })
        .collect();
    let late_after = LIFETIME as f64 * 2.0 / 3.0 + 2.0;
    drop(op);
    Ok(FairnessResult {
        failing_bindings: failing_n,
        healthy_bindings: HEALTHY,
        healthy_lifetime_seconds: LIFETIME,
        observed_seconds: OBSERVE,
        healthy_time_to_ready: time_to_ready,
        failing_calls_observed: failing_calls,
        healthy_refreshes_observed: by_session.values().map(|t| t.len() as u64).sum(),
        healthy_late_refreshes: gaps.iter().filter(|g| **g > late_after).count() as u64,
        healthy_max_gap_share_of_lifetime: gaps.iter().copied().fold(0.0, f64::max)
            / LIFETIME as f64,
    })
}

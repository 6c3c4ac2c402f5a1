//! Faults: STS outages, throttling, slowness and garbage; operator crashes and fail-over.
//! Each test that injects STS faults gets its own emulator so no other test is disturbed.

use std::time::Duration;

use anyhow::{Context, ensure};
use podcreds_testenv::decode_secret;
use serde_json::json;
use sts_emulator::{Emulator, Faults, Role};

use crate::support::{ACCOUNT, Env, Operator, ready_message, spec, spec_with, wait_for};

async fn private_emulator(env: &Env) -> anyhow::Result<Emulator> {
    Emulator::start(sts_emulator::Config::for_issuer(
        &env.plane.api_url,
        &env.plane.ca_pem,
    ))
    .await
}

/// A namespace with ServiceAccount `app`, an emulator of its own and a role trusting every
/// ServiceAccount of the namespace: (namespace, emulator, role ARN).
async fn private_scenario(
    env: &Env,
    prefix: &str,
    lifetime_seconds: Option<u64>,
) -> anyhow::Result<(String, Emulator, String)> {
    let ns = env.namespace(prefix).await?;
    env.service_account(&ns, "app").await?;
    let sts = private_emulator(env).await?;
    let role = trust(&sts, &ns, &format!("{ns}-r"), lifetime_seconds);
    Ok((ns, sts, role))
}

fn trust(emulator: &Emulator, ns: &str, name: &str, lifetime_seconds: Option<u64>) -> String {
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/{name}");
    emulator.add_role(Role {
        arn: arn.clone(),
        subjects: vec![format!("system:serviceaccount:{ns}:*")],
        audiences: vec![],
        lifetime_seconds,
        ..Role::default()
    });
    arn
}

fn condition(b: &podcreds::api::AWSRoleBinding, type_: &str) -> Option<(String, String)> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

pub async fn sts_outage_keeps_valid_credentials_and_recovers(env: &Env) -> anyhow::Result<()> {
    let (ns, sts, role) = private_scenario(env, "outage", Some(30)).await?;
    let op = env.start_operator(&[&ns], &sts.url(), &[]).await?;
    env.create_ready(&ns, "b", spec(&role), Duration::from_secs(60))
        .await?;
    let before = env.secrets(&ns).get("b").await?;
    let expiration: jiff::Timestamp = decode_secret(&before)["expiration"].parse()?;

    // STS goes down across the renewal time (about 20 s in) and comes back before expiry.
    sts.set_faults(Faults {
        down_for_ms: 24_000,
        ..Faults::default()
    });
    let mut saw_degraded = false;
    while jiff::Timestamp::now() < expiration - jiff::SignedDuration::from_secs(7) {
        let b = env.bindings(&ns).get("b").await?;
        ensure!(
            condition(&b, "Ready").is_some_and(|(s, _)| s == "True"),
            "Ready left True while the credentials were valid: {:?}",
            b.status
        );
        if condition(&b, "Degraded") == Some(("True".into(), "StsUnavailable".into())) {
            saw_degraded = true;
            let now = env.secrets(&ns).get("b").await?;
            ensure!(
                now.metadata.resource_version == before.metadata.resource_version,
                "the Secret was written while STS was down"
            );
        }
        if saw_degraded && condition(&b, "Degraded").is_some_and(|(s, _)| s == "False") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(saw_degraded, "Degraded never reported the outage");
    let recovered = wait_for(Duration::from_secs(20), || async {
        let s = env.secrets(&ns).get("b").await.ok()?;
        (s.metadata.resource_version != before.metadata.resource_version).then_some(s)
    })
    .await
    .context("no fresh credentials after STS came back")?;
    let new_exp: jiff::Timestamp = decode_secret(&recovered)["expiration"].parse()?;
    ensure!(new_exp > expiration);
    ensure!(
        new_exp > jiff::Timestamp::now(),
        "the Secret holds expired credentials"
    );
    let b = env
        .wait_ready(&ns, "b", "True", Duration::from_secs(10))
        .await?;
    let degraded = wait_for(Duration::from_secs(10), || async {
        let b = env.bindings(&ns).get("b").await.ok()?;
        condition(&b, "Degraded").filter(|(s, _)| s == "False")
    })
    .await;
    ensure!(
        degraded.is_some(),
        "Degraded stayed True after recovery: {:?}",
        b.status
    );
    let metrics = op.metrics().await?;
    ensure!(
        metrics.contains("podcreds_refresh_failures_total{category=\"StsUnavailable\"}"),
        "no failure metric:\n{metrics}"
    );
    sts.shutdown();
    Ok(())
}

pub async fn throttled_burst_ends_all_ready(env: &Env) -> anyhow::Result<()> {
    let (ns, sts, role) = private_scenario(env, "throttle", None).await?;
    // One call in three is throttled, all the time.
    sts.set_faults(Faults {
        throttle_every: 3,
        ..Faults::default()
    });
    let _op = env
        .start_operator(&[&ns], &sts.url(), &["--sts-qps=20", "--sts-burst=10"])
        .await?;
    let n = 40;
    env.create_ready_many(&ns, "b", n, spec(&role), Duration::from_secs(120))
        .await?;
    let counters = sts.calls().counters;
    let throttled = counters.by_result.get("Throttling").copied().unwrap_or(0);
    ensure!(
        throttled > 0,
        "the emulator throttled nothing: {counters:?}"
    );
    let ok = counters.by_result.get("Ok").copied().unwrap_or(0);
    ensure!(
        ok == n as u64,
        "expected exactly {n} successful calls, saw {ok}"
    );
    sts.shutdown();
    Ok(())
}

pub async fn slow_sts_does_not_block_other_bindings(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("slow").await?;
    env.service_account(&ns, "app").await?;
    // A tarpit: accepts connections and never answers.
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tarpit_url = format!("http://{}", tarpit.local_addr()?);
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = tarpit.accept().await {
            held.push(socket);
        }
    });
    let role = env.role(&format!("{ns}-r"), &ns, "app", None);
    let _op = env
        .start_operator(
            &[&ns],
            &env.emulator.url(),
            &[
                &format!("--allowed-sts-endpoints={tarpit_url}"),
                // An endpoint that is not AWS gets tokens of its own audience only.
                "--allowed-audiences=tarpit",
                // Four exchange slots, all of which this one namespace may use: three held by the
                // tarpit, one left for the others.
                "--concurrency=4",
                "--namespace-concurrency=4",
            ],
        )
        .await?;
    for i in 0..3 {
        env.create_binding(
            &ns,
            &format!("stuck{i}"),
            spec_with(
                &role,
                json!({"audience": "tarpit", "sts": {"endpoint": tarpit_url}}),
            ),
        )
        .await?;
    }
    for i in 0..6 {
        env.create_binding(&ns, &format!("fine{i}"), spec(&role))
            .await?;
    }
    let mut fine_ready = Vec::new();
    for i in 0..6 {
        let b = env
            .wait_ready(&ns, &format!("fine{i}"), "True", Duration::from_secs(90))
            .await?;
        let ready =
            podcreds::status::ready_condition(b.status.as_ref()).context("no Ready condition")?;
        fine_ready.push(ready.last_transition_time.0);
    }
    // The stuck ones time out with a clear reason instead of hanging forever.
    let stuck = env
        .wait_reason(&ns, "stuck0", "StsUnavailable", Duration::from_secs(90))
        .await?;
    let gave_up = podcreds::status::ready_condition(stuck.status.as_ref())
        .context("no Ready condition")?
        .last_transition_time
        .0;
    // Ordering, not duration: every other binding was Ready while the stuck call was still open
    // (its failure was recorded after all of them).
    let last_fine = fine_ready.iter().max().context("no fine binding")?;
    ensure!(
        *last_fine <= gave_up,
        "a fine binding became Ready at {last_fine}, after the stuck call gave up at {gave_up}: it waited for the slow STS"
    );
    held.abort();
    Ok(())
}

pub async fn garbage_from_sts_is_survived(env: &Env) -> anyhow::Result<()> {
    let (ns, sts, role) = private_scenario(env, "garbage", None).await?;
    sts.set_faults(Faults {
        malformed_next: 2,
        fail_next: 1,
        idp_error_next: 1,
        ..Faults::default()
    });
    let op = env.start_operator(&[&ns], &sts.url(), &[]).await?;
    env.create_ready(&ns, "b", spec(&role), Duration::from_secs(90))
        .await?;
    let results = sts.calls().counters.by_result;
    ensure!(
        results.get("Malformed").copied().unwrap_or(0) >= 1,
        "{results:?}"
    );
    ensure!(results.get("Ok") == Some(&1), "{results:?}");
    // Nothing the STS endpoint sent ends up verbatim in the Events.
    let events = serde_json::to_string(&env.events(&ns).await?)?;
    ensure!(
        !events.contains("<Credentials>"),
        "raw STS answer copied into an Event"
    );
    ensure!(
        op.log().contains("refresh failed"),
        "the failures were not logged"
    );
    sts.shutdown();
    Ok(())
}

pub async fn leader_election_fails_over_without_duplicate_calls(env: &Env) -> anyhow::Result<()> {
    let (ns, role) = env.app_namespace("leader", None).await?;
    let election = [
        "--leader-election".to_string(),
        format!("--leader-election-namespace={ns}"),
        "--leader-election-lease-seconds=6".to_string(),
    ];
    let args_a: Vec<String> = election
        .iter()
        .cloned()
        .chain(["--instance=replica-a".into()])
        .collect();
    let args_b: Vec<String> = election
        .iter()
        .cloned()
        .chain(["--instance=replica-b".into()])
        .collect();
    let a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let op_a = env.start_operator(&[&ns], &env.emulator.url(), &a).await?;
    let op_b = env.start_operator(&[&ns], &env.emulator.url(), &b).await?;
    env.create_ready_many(&ns, "b", 4, spec(&role), Duration::from_secs(60))
        .await?;
    ensure!(
        env.calls_for(&role) == 4,
        "expected one STS call per binding, saw {}",
        env.calls_for(&role)
    );
    let issued_by = |log: &str| log.matches("issued credentials").count();
    let (by_a, by_b) = (issued_by(&op_a.log()), issued_by(&op_b.log()));
    ensure!(
        by_a + by_b == 4 && (by_a == 0 || by_b == 0),
        "both replicas wrote: a={by_a} b={by_b}"
    );
    let (mut leader, standby) = if by_a > 0 { (op_a, op_b) } else { (op_b, op_a) };

    // The leader dies without releasing its Lease.
    leader.process.kill()?;
    let killed = std::time::Instant::now();
    env.create_ready(&ns, "after", spec(&role), Duration::from_secs(45))
        .await?;
    let takeover = killed.elapsed();
    ensure!(
        standby.log().contains("\"is_leader\":true"),
        "the standby never became leader"
    );
    // The new leader decided from the Secrets: no STS call for the four fresh bindings.
    ensure!(
        env.calls_for(&role) == 5,
        "fail-over re-issued credentials: {} calls",
        env.calls_for(&role)
    );
    println!(
        "    (leader fail-over: the new binding was Ready {takeover:.1?} after the leader was killed)"
    );
    drop(leader);
    Ok(())
}

pub async fn sigkill_during_a_burst_loses_nothing(env: &Env) -> anyhow::Result<()> {
    let (ns, role) = env.app_namespace("sigkill", None).await?;
    let mut op = env
        .start_operator(
            &[&ns],
            &env.emulator.url(),
            &["--sts-qps=10", "--sts-burst=1"],
        )
        .await?;
    let n = 30;
    for i in 0..n {
        env.create_binding(&ns, &format!("b{i}"), spec(&role))
            .await?;
    }
    // Kill it in the middle of the burst (the rate limit makes the burst last about 3 s).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    op.process.kill()?;
    let before_restart = env.calls_for(&role);
    ensure!(
        before_restart < n,
        "the burst finished before the kill ({before_restart} calls); the test proves nothing"
    );
    op.restart().await?;
    for i in 0..n {
        env.wait_ready(&ns, &format!("b{i}"), "True", Duration::from_secs(60))
            .await?;
    }
    let secrets = env.secrets(&ns).list(&Default::default()).await?.items;
    let owned: Vec<_> = secrets
        .iter()
        .filter(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with('b'))
        })
        .collect();
    ensure!(
        owned.len() == n,
        "expected {n} Secrets, found {}",
        owned.len()
    );
    for s in owned {
        let data = decode_secret(s);
        let exp: jiff::Timestamp = data["expiration"].parse()?;
        ensure!(exp > jiff::Timestamp::now());
    }
    // At most the calls in flight at the kill are repeated; nothing is issued twice afterwards.
    let calls = env.calls_for(&role);
    ensure!(calls <= n + 2, "{calls} STS calls for {n} bindings");
    Ok(())
}

pub async fn apiserver_restart_is_survived(_shared: &Env) -> anyhow::Result<()> {
    // Its own control plane: restarting the shared one would disturb every other test.
    let mut private = crate::support::Env::start().await?;
    let (ns, role) = private.app_namespace("apirestart", Some(20)).await?;
    let op = private
        .start_operator(&[&ns], &private.emulator.url(), &[])
        .await?;
    private
        .create_ready(&ns, "b", spec(&role), Duration::from_secs(60))
        .await?;
    let steps = async {
        let lines_before = op.process.log().lines().count();
        private.plane.restart_apiserver().await?;
        private.client = private.plane.client().await?;
        // Watches broke; the operator must notice a new binding and keep refreshing the old one.
        private
            .create_ready(&ns, "c", spec(&role), Duration::from_secs(60))
            .await?;
        let first: jiff::Timestamp = private.secret_data(&ns, "b").await?["expiration"].parse()?;
        let refreshed = wait_for(Duration::from_secs(40), || async {
            let exp: jiff::Timestamp = private.secret_data(&ns, "b").await.ok()?["expiration"]
                .parse()
                .ok()?;
            (exp > first).then_some(())
        })
        .await;
        ensure!(
            refreshed.is_some(),
            "no refresh after the apiserver restart"
        );
        // The operator saw its bindings' watch break and re-established it (the log line of
        // that one watch, after the restart), rather than never having noticed.
        let log = op.process.log();
        let interrupted = log.lines().skip(lines_before).any(|l| {
            l.contains("\"message\":\"watch interrupted; re-establishing\"")
                && l.contains("\"kind\":\"AWSRoleBinding\"")
        });
        ensure!(
            interrupted,
            "no record of the bindings' watch breaking and being re-established"
        );
        Ok::<(), anyhow::Error>(())
    };
    // The private control plane's files go away with it: keep the operator log in the error.
    let result = steps
        .await
        .map_err(|e| e.context(format!("operator log:\n{}", op.process.log_tail(400))));
    drop(op);
    private.emulator.shutdown();
    result
}

pub async fn sts_error_codes_become_precise_reasons(env: &Env) -> anyhow::Result<()> {
    let (ns, sts, role) = private_scenario(env, "codes", None).await?;
    let _op = env.start_operator(&[&ns], &sts.url(), &[]).await?;
    let cases = [
        ("ExpiredTokenException", "StsInvalidIdentityToken"),
        ("InvalidIdentityToken", "StsInvalidIdentityToken"),
        ("IDPRejectedClaim", "StsAccessDenied"),
        ("AccessDenied", "StsAccessDenied"),
        ("PackedPolicyTooLarge", "StsInvalidRequest"),
        ("RegionDisabledException", "StsInvalidRequest"),
        ("MalformedPolicyDocument", "StsInvalidRequest"),
        ("ValidationError", "StsInvalidRequest"),
    ];
    for (i, (code, reason)) in cases.iter().enumerate() {
        // Enough for the SDK's own retry of codes it considers retryable (ExpiredToken...).
        sts.set_faults(Faults {
            error_code: Some(code.to_string()),
            error_next: 2,
            ..Faults::default()
        });
        let name = format!("c{i}");
        env.create_binding(&ns, &name, spec(&role)).await?;
        let b = env
            .wait_reason(&ns, &name, reason, Duration::from_secs(30))
            .await
            .with_context(|| format!("{code} should read as {reason}"))?;
        let message = ready_message(&b);
        ensure!(
            message.contains(code),
            "the condition does not name {code}: {message}"
        );
        ensure!(
            env.secrets(&ns).get_opt(&name).await?.is_none(),
            "{code}: a Secret was written"
        );
    }
    // What only the operator can check: a session policy the schema accepts but that is not JSON.
    env.create_binding(
        &ns,
        "badjson",
        spec_with(&role, json!({"sessionPolicy": "{not json"})),
    )
    .await?;
    let b = env
        .wait_reason(&ns, "badjson", "InvalidSpec", Duration::from_secs(30))
        .await?;
    let message = ready_message(&b);
    ensure!(message.contains("sessionPolicy"), "{message}");
    // None of this stalled a healthy binding. (A code the SDK does not retry leaves one injected
    // error unused: each refused binding makes exactly one call until its retry time.)
    sts.set_faults(Faults::default());
    env.create_ready(&ns, "healthy", spec(&role), Duration::from_secs(30))
        .await?;
    sts.shutdown();
    Ok(())
}

pub async fn sigterm_stops_even_without_an_apiserver(env: &Env) -> anyhow::Result<()> {
    // Caches that never sync (nothing listens on port 1) must not keep the process alive.
    let kubeconfig = env.plane.dir().join("unreachable.kubeconfig");
    let text = std::fs::read_to_string(&env.plane.kubeconfig)?
        .replace(&env.plane.api_url, "https://127.0.0.1:1");
    std::fs::write(&kubeconfig, text)?;
    // Never ready, so started without waiting for it.
    let mut operator =
        Operator::spawn(env.operator_launch(&kubeconfig).args(["--log-format=json"]))?;
    crate::register_log(operator.log_path().to_path_buf());
    let process = &mut operator.process;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        process.exited().is_none(),
        "the operator died instead of retrying:\n{}",
        process.log_tail(20)
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &process.pid().to_string()])
        .status();
    let stopped = wait_for(Duration::from_secs(30), || {
        let status = process.exited();
        async move { status }
    })
    .await;
    ensure!(
        stopped.is_some(),
        "SIGTERM did not stop an operator whose caches never synced"
    );
    Ok(())
}

pub async fn clock_skew_between_cluster_and_sts_is_reported(env: &Env) -> anyhow::Result<()> {
    let (ns, sts, role) = private_scenario(env, "skew", None).await?;
    let _op = env.start_operator(&[&ns], &sts.url(), &[]).await?;
    // STS's clock ahead by 20 minutes: the 10-minute token has already expired there. Behind by
    // 5 minutes: it is not valid yet.
    for (name, skew, expected) in [
        ("ahead", 1200, "ExpiredTokenException"),
        ("behind", -300, "not yet valid"),
    ] {
        sts.set_faults(Faults {
            clock_skew_seconds: skew,
            ..Faults::default()
        });
        env.create_binding(&ns, name, spec(&role)).await?;
        let b = env
            .wait_reason(
                &ns,
                name,
                "StsInvalidIdentityToken",
                Duration::from_secs(30),
            )
            .await?;
        let message = ready_message(&b);
        ensure!(message.contains(expected), "{name}: {message}");
        ensure!(
            env.secrets(&ns).get_opt(name).await?.is_none(),
            "{name}: a Secret was written"
        );
    }
    sts.shutdown();
    Ok(())
}

pub async fn many_bindings_recover_after_an_outage(env: &Env) -> anyhow::Result<()> {
    let (ns, sts, role) = private_scenario(env, "herd", Some(40)).await?;
    let _op = env.start_operator(&[&ns], &sts.url(), &[]).await?;
    let n = 20;
    env.create_ready_many(&ns, "b", n, spec(&role), Duration::from_secs(60))
        .await?;
    // Down across every renewal (about 24-27 s after issue), back well before expiry (40 s).
    sts.set_faults(Faults {
        down_for_ms: 30_000,
        ..Faults::default()
    });
    let outage_ends = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
    // Every binding gets fresh credentials after STS returns, none expires on the way.
    let mut last_keys = std::collections::BTreeMap::new();
    for i in 0..n {
        last_keys.insert(
            format!("b{i}"),
            decode_secret(&env.secrets(&ns).get(&format!("b{i}")).await?)["AWS_ACCESS_KEY_ID"]
                .clone(),
        );
    }
    let recovered = wait_for(Duration::from_secs(60), || async {
        for (name, key) in &last_keys {
            let data = decode_secret(&env.secrets(&ns).get(name).await.ok()?);
            let exp: jiff::Timestamp = data["expiration"].parse().ok()?;
            if exp <= jiff::Timestamp::now() {
                return Some(Err(format!("{name} holds expired credentials")));
            }
            if &data["AWS_ACCESS_KEY_ID"] == key {
                return None;
            }
        }
        Some(Ok(()))
    })
    .await
    .context("not every binding recovered after the outage")?;
    recovered.map_err(anyhow::Error::msg)?;
    // How the retries after the outage were spread (reported, not asserted: no timing thresholds).
    let mut per_second = std::collections::BTreeMap::<i64, u64>::new();
    for c in sts.calls().calls.iter().filter(|c| c.result == "Ok") {
        if let Ok(t) = c.at.parse::<jiff::Timestamp>()
            && t >= outage_ends
        {
            *per_second.entry(t.as_second()).or_default() += 1;
        }
    }
    println!(
        "    (after the outage: {} refreshes over {} distinct seconds, at most {} in one second)",
        per_second.values().sum::<u64>(),
        per_second.len(),
        per_second.values().max().copied().unwrap_or(0)
    );
    sts.shutdown();
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![faults:
    sts_outage_keeps_valid_credentials_and_recovers,
    throttled_burst_ends_all_ready,
    slow_sts_does_not_block_other_bindings,
    garbage_from_sts_is_survived,
    leader_election_fails_over_without_duplicate_calls,
    sigkill_during_a_burst_loses_nothing,
    apiserver_restart_is_survived,
    sts_error_codes_become_precise_reasons,
    sigterm_stops_even_without_an_apiserver,
    clock_skew_between_cluster_and_sts_is_reported,
    many_bindings_recover_after_an_outage,
];

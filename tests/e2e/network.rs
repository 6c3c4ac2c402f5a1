//! The network between the operator and STS: the admin's proxy (`--sts-proxy`), and fail-over
//! across an ordered list of endpoints (`sts.endpoints`, `--sts-endpoints`).
//!
//! The STS emulator speaks plain HTTP, and plain-HTTP endpoints are never proxied (the proxy would
//! see every token), so the proxy test puts a TLS front before it, with a certificate of a CA the
//! operator trusts through `SSL_CERT_FILE` (how a pod's trust store is set too). The proxy is a
//! small CONNECT proxy of the test's own that counts its tunnels and checks its credentials.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::json;
use sts_emulator::{Emulator, Role};
use tokio::net::TcpStream;

use crate::support::network::{ConnectProxy, TlsFront, trust_bundle};
use crate::support::{ACCOUNT, Env, OperatorOptions, counter, podcreds_cli, spec, spec_with};

const READY: Duration = Duration::from_secs(60);

/// The suite emulator's address.
fn emulator_address(emulator: &Emulator) -> anyhow::Result<SocketAddr> {
    emulator
        .url()
        .trim_start_matches("http://")
        .parse()
        .context("emulator address")
}

fn sts_endpoint(binding: &podcreds::api::AWSRoleBinding) -> Option<String> {
    binding.status.as_ref()?.sts_endpoint.clone()
}

/// With `--sts-proxy`, every call to an https endpoint goes through a CONNECT tunnel to the
/// endpoint (the proxy sees its host and port only) with the proxy's credentials; a host in
/// `--sts-no-proxy` and a plain-HTTP endpoint are reached directly, so the proxy never sees a
/// request, let alone a token; the credentials are never logged.
pub async fn sts_calls_go_through_the_admins_proxy(env: &Env) -> anyhow::Result<()> {
    let (ns, role) = env.app_namespace("proxy", None).await?;
    let ca = podcreds_testenv::pki::Ca::new("podcreds e2e STS")?;
    let backend = emulator_address(&env.emulator)?;
    let proxied = TlsFront::start(&ca, backend).await?;
    let exempt = TlsFront::start(&ca, backend).await?;
    let exempt_url = format!("https://localhost:{}", exempt.port);
    let credentials = ("podcreds", "s3cret!proxy");
    let proxy = ConnectProxy::start(Some(credentials)).await?;
    let bundle = trust_bundle(env, &ca, &format!("proxy-{}", proxied.port))?;
    let plain = env.emulator.url();
    let options = OperatorOptions {
        regional_endpoint: true,
        env: vec![(
            "SSL_CERT_FILE".into(),
            bundle.to_string_lossy().into_owned(),
        )],
        ..OperatorOptions::default()
    };
    let operator = env
        .launch_operator(
            &[&ns],
            "",
            &[
                &format!("--sts-endpoints={},{exempt_url},{plain}", proxied.url()),
                &format!("--sts-proxy={}", proxy.url(Some(credentials))),
                "--sts-no-proxy=localhost",
            ],
            options,
        )
        .await?;

    // An https endpoint: through one tunnel per connection, to the endpoint's host and port. (The
    // binding names it alone: with the whole default list, a refused tunnel would fail over.)
    env.create_ready(
        &ns,
        "proxied",
        spec_with(&role, json!({"sts": {"endpoint": proxied.url()}})),
        READY,
    )
    .await?;
    let through = proxy.log();
    ensure!(
        !through.tunnels.is_empty(),
        "no tunnel through the proxy: {through:?}"
    );
    let target = format!("127.0.0.1:{}", proxied.port);
    ensure!(
        through.tunnels.iter().all(|t| *t == target),
        "tunnels to somewhere else than {target}: {through:?}"
    );
    ensure!(through.refused.is_empty(), "refused: {through:?}");
    let binding = env.bindings(&ns).get("proxied").await?;
    ensure!(
        sts_endpoint(&binding) == Some(proxied.url()),
        "status.stsEndpoint: {:?}",
        binding.status
    );
    ensure!(
        !env.issued_for(&role).is_empty(),
        "the emulator issued nothing"
    );

    // A host in --sts-no-proxy, and a plain-HTTP endpoint, are reached directly.
    let before = exempt.connections();
    env.create_ready(
        &ns,
        "exempt",
        spec_with(&role, json!({"sts": {"endpoint": exempt_url}})),
        READY,
    )
    .await?;
    ensure!(
        exempt.connections() > before,
        "the exempt front saw nothing"
    );
    env.create_ready(
        &ns,
        "clear",
        spec_with(&role, json!({"sts": {"endpoint": plain}})),
        READY,
    )
    .await?;
    let after = proxy.log();
    ensure!(
        after.tunnels.len() == through.tunnels.len() && after.refused.is_empty(),
        "the proxy saw calls it should not have: {after:?}"
    );
    for (name, endpoint) in [("exempt", exempt_url.as_str()), ("clear", plain.as_str())] {
        let binding = env.bindings(&ns).get(name).await?;
        ensure!(
            sts_endpoint(&binding).as_deref() == Some(endpoint),
            "{name}: {:?}",
            binding.status
        );
    }

    // The log names the proxy without its credentials, and warns that plain HTTP goes direct.
    let log = operator.log();
    ensure!(
        log.contains(&format!("http://{}", proxy.address)),
        "the start line does not name the proxy"
    );
    ensure!(
        log.contains("never through --sts-proxy"),
        "no warning about the plain-HTTP endpoint"
    );
    ensure!(
        !log.contains(credentials.1) && !log.contains("s3cret%21proxy"),
        "the proxy's password is in the operator's log"
    );
    Ok(())
}

/// A proxy URL podcreds cannot use is refused at start, without repeating its credentials.
pub async fn an_unusable_proxy_is_refused_at_start(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("proxy-refused").await?;
    let options = || OperatorOptions {
        env: vec![("RUST_BACKTRACE".into(), "0".into())],
        ..OperatorOptions::default()
    };
    for (proxy, says) in [
        (
            "https://user:hunter2@proxy.corp:3128",
            "must be an http:// URL",
        ),
        ("user:hunter2@proxy.corp:3128", "must be an http:// URL"),
        ("http://user:hunter2@proxy.corp:3128/path", "without a path"),
        ("http://user:hunter 2@proxy.corp:3128", "not a URL"),
    ] {
        let started = env
            .launch_operator(
                &[&ns],
                &env.emulator.url(),
                &[&format!("--sts-proxy={proxy}")],
                options(),
            )
            .await;
        match started {
            Ok(_) => bail!("the operator started with --sts-proxy={proxy}"),
            Err(e) => {
                let text = format!("{e:#}");
                ensure!(text.contains(says), "{proxy}: unclear refusal: {text}");
                ensure!(
                    !text.contains("hunter2"),
                    "{proxy}: the refusal shows the password"
                );
            }
        }
    }
    Ok(())
}

/// A role trusting ServiceAccount `app` of `ns` at `emulator`.
fn trust(emulator: &Emulator, ns: &str, arn: &str) {
    emulator.add_role(Role {
        arn: arn.to_string(),
        subjects: vec![format!("system:serviceaccount:{ns}:app")],
        ..Role::default()
    });
}

async fn emulator_at(env: &Env, listen: SocketAddr) -> anyhow::Result<Emulator> {
    Emulator::start(sts_emulator::Config {
        listen,
        ..sts_emulator::Config::for_issuer(&env.plane.api_url, &env.plane.ca_pem)
    })
    .await
}

/// Watches bindings' conditions in the background and records anything but Ready=True with
/// Degraded not True.
struct ConditionWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConditionWatch {
    fn start(env: &Env, ns: &str, names: &[&str]) -> Self {
        let api = env.bindings(ns);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stopping, record) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while !stopping.load(Ordering::SeqCst) {
                for name in &names {
                    let Ok(b) = api.get(name).await else { continue };
                    let Some(status) = b.status.as_ref() else {
                        continue;
                    };
                    for c in &status.conditions {
                        let bad = (c.type_ == "Ready" && c.status != "True")
                            || (c.type_ == "Degraded" && c.status == "True");
                        if bad && let Ok(mut record) = record.lock() {
                            record.push(format!(
                                "{name}: {}={} ({}: {})",
                                c.type_, c.status, c.reason, c.message
                            ));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { stop, seen, task }
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Asks the operator for an exchange of `name` now and waits for its outcome.
async fn refresh(env: &Env, ns: &str, name: &str) -> anyhow::Result<podcreds::api::AWSRoleBinding> {
    let out = podcreds_cli(env, &["refresh", "-n", ns, name, "--wait", "60s"]).await?;
    ensure!(
        out.status.success(),
        "podcreds refresh {ns}/{name} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(env.bindings(ns).get(name).await?)
}

fn web_identity_calls(emulator: &Emulator, role: &str) -> usize {
    emulator
        .calls()
        .calls
        .iter()
        .filter(|c| {
            c.action == "AssumeRoleWithWebIdentity"
                && c.role_arn.as_deref() == Some(role)
                && c.result == "Ok"
        })
        .count()
}

/// Two emulators trusting the same issuer and role, listed in order by a binding
/// (`sts.endpoints`) and by the installation (`--sts-endpoints`). The first is stopped: both
/// bindings refresh through the second within the same exchange, never Degraded, and their status
/// names the second; the fail-over is counted and logged. The first comes back: once the
/// cool-down has passed, exchanges go to it again.
pub async fn a_stopped_sts_endpoint_fails_over_to_the_next(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("failover").await?;
    env.service_account(&ns, "app").await?;
    let role = format!("arn:aws:iam::{ACCOUNT}:role/{ns}-r");
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let first = emulator_at(env, loopback).await?;
    let second = emulator_at(env, loopback).await?;
    trust(&first, &ns, &role);
    trust(&second, &ns, &role);
    let (a, b) = (first.url(), second.url());
    let options = OperatorOptions {
        regional_endpoint: true,
        ..OperatorOptions::default()
    };
    let operator = env
        .launch_operator(
            &[&ns],
            "",
            &[
                &format!("--sts-endpoints={a},{b}"),
                "--sts-endpoint-cooldown=3s",
            ],
            options,
        )
        .await?;
    env.create_ready(
        &ns,
        "listed",
        spec_with(&role, json!({"sts": {"endpoints": [a, b]}})),
        READY,
    )
    .await?;
    env.create_ready(&ns, "default", spec(&role), READY).await?;
    for name in ["listed", "default"] {
        let binding = env.bindings(&ns).get(name).await?;
        ensure!(
            sts_endpoint(&binding).as_deref() == Some(a.as_str()),
            "{name} was not served by the first endpoint: {:?}",
            binding.status
        );
    }
    ensure!(
        web_identity_calls(&second, &role) == 0,
        "the second endpoint was called"
    );
    let watch = ConditionWatch::start(env, &ns, &["listed", "default"]);

    // The first endpoint goes away: nothing listens there any more.
    first.shutdown();
    let address = emulator_address(&first)?;
    let gone = crate::support::wait_for(Duration::from_secs(30), || async {
        TcpStream::connect(address).await.is_err().then_some(())
    })
    .await;
    ensure!(
        gone.is_some(),
        "the first emulator still accepts connections"
    );
    for name in ["listed", "default"] {
        let binding = refresh(env, &ns, name).await?;
        ensure!(
            sts_endpoint(&binding).as_deref() == Some(b.as_str()),
            "{name} was not refreshed through the second endpoint: {:?}",
            binding.status
        );
    }
    ensure!(
        web_identity_calls(&second, &role) >= 2,
        "the second endpoint issued {} credentials",
        web_identity_calls(&second, &role)
    );
    let metrics = operator.metrics().await?;
    ensure!(
        counter(
            &metrics,
            "podcreds_sts_endpoint_failovers_total{flow=\"WebIdentity\"}"
        ) >= 1.0,
        "no fail-over counted:\n{metrics}"
    );
    let log = operator.log();
    ensure!(
        log.contains("failing over to the next") && log.contains(&a),
        "no log line about the fail-over from {a}"
    );

    // The first endpoint comes back at the same address: after the cool-down it is first again.
    let back = emulator_at(env, address).await?;
    trust(&back, &ns, &role);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let binding = refresh(env, &ns, "listed").await?;
    ensure!(
        sts_endpoint(&binding).as_deref() == Some(a.as_str()),
        "the first endpoint was not used again once back: {:?}",
        binding.status
    );
    ensure!(
        web_identity_calls(&back, &role) == 1,
        "the first endpoint issued nothing"
    );
    ensure!(
        operator.log().contains("STS endpoint answers again"),
        "no log line about the first endpoint coming back"
    );

    let violations = watch.finish().await;
    ensure!(
        violations.is_empty(),
        "a binding was not Ready, or Degraded, during the fail-over: {violations:?}"
    );
    let warnings: Vec<String> = env
        .events(&ns)
        .await?
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| format!("{:?}: {:?}", e.reason, e.message))
        .collect();
    ensure!(warnings.is_empty(), "Warning Events: {warnings:?}");
    back.shutdown();
    second.shutdown();
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![network:
    sts_calls_go_through_the_admins_proxy,
    an_unusable_proxy_is_refused_at_start,
    a_stopped_sts_endpoint_fails_over_to_the_next,
];

//! The end-to-end suite: the real `podcreds` binary against a real kube-apiserver, etcd and
//! kube-controller-manager, the STS emulator, moto, MinIO, AWS's Roles Anywhere credential
//! helper, the AWS CLI and boto3, pods on a real node (containerd and a kubelet), and a real OCI
//! registry the release is pushed to and the node pulls from.
//!
//! A small harness (not libtest) owns one control plane and one emulator for the whole run, so
//! every process it starts is stopped when it ends. Each test gets its own namespace and its own
//! operator process watching only that namespace. A missing binary fails the run; nothing is
//! skipped. Run through `cargo xtask test`, or `cargo test --test e2e -- <filter>`.
//!
//! The whole run lives in a network namespace it creates: the harness runs itself again under
//! `unshare --net` with only loopback up (as root; see `podcreds_testenv::netns`), so every
//! process, the node's bridges and the pods' interfaces are inside it and vanish with it.

#![deny(dead_code)]

/// `tests![module: a, b]`: the named test functions of `module`, as `module::a`, `module::b`.
macro_rules! tests {
    ($module:ident: $($name:ident),* $(,)?) => {
        &[$((concat!(stringify!($module), "::", stringify!($name)), (|env| Box::pin($name(env))) as crate::TestFn)),*]
    };
}

mod chains;
mod chart;
mod consumers;
mod consumers_stale;
mod ecr;
mod endpoint;
mod faults;
mod grants;
mod iam;
mod lifecycle;
mod minio;
mod moto;
mod network;
mod node;
mod release;
mod rolesanywhere;
mod rolesanywhere_flow;
mod saml;
mod security;
mod sources;
mod support;
mod tenant;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::future::Either;
use support::Env;

type TestFn = for<'a> fn(&'a Env) -> BoxFuture<'a, anyhow::Result<()>>;

/// Tests that run alone (see `run`): they install the chart's admission policies on the shared
/// control plane, which apply to every namespace, or need none installed (a release's status
/// guard refuses every other operator's status writes).
const RUNS_ALONE: &[&str] = &[
    "lifecycle::binding_issues_working_credentials",
    "tenant::a_forged_status_deletes_no_secret",
    "chart::chart_installs_with_sufficient_and_minimal_rbac",
    "chart::the_node_agent_needs_only_what_the_chart_grants",
    "chart::admission_policy_stops_the_confused_deputy",
    "chart::admission_policy_checks_every_spec_update",
    "chart::a_missing_admission_policy_is_reported",
    "saml::chart_rbac_lets_the_operator_keep_only_its_saml_key",
    "security::role_allowlist_is_path_aware_in_cel_and_rust",
    "security::spoofed_session_names_are_refused_at_admission",
    "security::a_compromised_operator_cannot_mint_other_tokens",
    "sources::admission_refuses_namespaces_a_source_does_not_allow",
    "grants::a_credential_source_grants_only_what_it_names",
];

/// Every module's tests (each module lists its own, beside them; a test function left out of
/// its list is dead code, which this crate denies).
const TESTS_BY_MODULE: &[&[(&str, TestFn)]] = &[
    lifecycle::TESTS,
    consumers::TESTS,
    moto::TESTS,
    saml::TESTS,
    rolesanywhere::TESTS,
    rolesanywhere_flow::TESTS,
    minio::TESTS,
    chains::TESTS,
    chart::TESTS,
    grants::TESTS,
    network::TESTS,
    security::TESTS,
    faults::TESTS,
    iam::TESTS,
    tenant::TESTS,
    node::TESTS,
    release::TESTS,
    sources::TESTS,
    endpoint::TESTS,
    ecr::TESTS,
    consumers_stale::TESTS,
];

fn all_tests() -> impl Iterator<Item = &'static (&'static str, TestFn)> {
    TESTS_BY_MODULE.iter().flat_map(|tests| tests.iter())
}

tokio::task_local! {
    static CURRENT_TEST: String;
}

/// Log files of processes each test started, printed when it fails.
static TEST_LOGS: Mutex<Option<HashMap<String, Vec<PathBuf>>>> = Mutex::new(None);

/// Records a log file to show if the current test fails.
pub fn register_log(path: PathBuf) {
    let _ = CURRENT_TEST.try_with(|name| {
        if let Ok(mut logs) = TEST_LOGS.lock() {
            logs.get_or_insert_with(HashMap::new)
                .entry(name.clone())
                .or_default()
                .push(path);
        }
    });
}

fn logs_of(name: &str) -> Vec<PathBuf> {
    TEST_LOGS
        .lock()
        .ok()
        .and_then(|l| l.as_ref().and_then(|m| m.get(name).cloned()))
        .unwrap_or_default()
}

struct Args {
    filters: Vec<String>,
    threads: usize,
    list: bool,
}

/// The harness's command line: test name filters (a test runs if its name contains any), and
/// the few flags of libtest it honours. Anything else is an error, never silently a filter or
/// ignored: `-- --skip node` must not quietly run only the node tests.
fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        filters: Vec::new(),
        threads: 3,
        list: false,
    };
    let threads = |text: &str| {
        text.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("--test-threads takes a positive number, not {text:?}"))
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--test-threads" => {
                args.threads = threads(&it.next().unwrap_or_default())?;
            }
            s if s.starts_with("--test-threads=") => {
                args.threads = threads(s.trim_start_matches("--test-threads="))?;
            }
            "--list" => args.list = true,
            // Output is never captured; cargo's habit of asking is harmless.
            "--nocapture" => {}
            // Tools listing tests ask for libtest's terse format, which --list prints anyway.
            "--format" if it.next().as_deref() == Some("terse") => {}
            "--format=terse" => {}
            s if s.starts_with('-') => {
                return Err(format!(
                    "unknown option {s:?}: this harness takes test name filters, --test-threads N, --list and --nocapture"
                ));
            }
            s => args.filters.push(s.to_string()),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("{problem}");
            println!("test result: FAILED. 0 passed; 0 failed; 0 ignored (bad arguments)");
            std::process::exit(2);
        }
    };
    if !args.list
        && let Err(e) = podcreds_testenv::netns::reexec_inside()
    {
        eprintln!("could not enter a network namespace for the run: {e}");
        println!("test result: FAILED. 0 passed; 0 failed; 0 ignored (no network namespace)");
        std::process::exit(1);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let registered: Vec<&str> = all_tests().map(|(name, _)| *name).collect();
    let unknown: Vec<String> = RUNS_ALONE
        .iter()
        .filter(|name| !registered.contains(name))
        .map(|name| format!("RUNS_ALONE names {name}, which is not a test"))
        .collect();
    if !unknown.is_empty() {
        eprintln!("{}", unknown.join("\n"));
        println!("test result: FAILED. 0 passed; 0 failed; 0 ignored (RUNS_ALONE is wrong)");
        std::process::exit(1);
    }
    let selected: Vec<&(&str, TestFn)> = all_tests()
        .filter(|(name, _)| {
            args.filters.is_empty() || args.filters.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    if args.list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return;
    }
    // A filter that matches nothing must not pass on nothing run.
    if selected.is_empty() {
        eprintln!(
            "no end-to-end test matches {:?} (cargo test --test e2e -- --list shows them)",
            args.filters
        );
        println!("test result: FAILED. 0 passed; 0 failed; 0 ignored (no test selected)");
        std::process::exit(1);
    }
    let started = Instant::now();
    println!(
        "\nrunning {} end-to-end tests ({} at a time)",
        selected.len(),
        args.threads.max(1)
    );
    let env_started = Instant::now();
    let owned_env = match Env::start().await {
        Ok(env) => env,
        Err(e) => {
            eprintln!("could not start the test environment: {e:#}");
            println!(
                "test result: FAILED. 0 passed; {} failed; 0 ignored",
                selected.len()
            );
            std::process::exit(1);
        }
    };
    println!(
        "environment (control plane, CRDs, STS emulator; no node) Ready in {:.1}s, apiserver {} (files in {}), network namespace {}",
        env_started.elapsed().as_secs_f64(),
        owned_env.plane.api_url,
        owned_env.plane.dir().display(),
        podcreds_testenv::netns::current().unwrap_or_default()
    );
    let env = &owned_env;
    let results: Vec<(String, Result<(), anyhow::Error>, f64)> = futures::stream::iter(selected)
        .map(|(name, test)| async move {
            // A test installing the chart's admission policies on the shared control plane runs
            // alone: they apply to every namespace. The next one starts once they are gone.
            // Inside, a test never takes `cluster_policies` itself.
            let exclusive = RUNS_ALONE.contains(name);
            let guard = if exclusive {
                Either::Left(env.cluster_policies.write().await)
            } else {
                Either::Right(env.cluster_policies.read().await)
            };
            let t0 = Instant::now();
            let mut result = CURRENT_TEST.scope(name.to_string(), test(env)).await;
            if exclusive && let Err(e) = support::wait_until_no_binding_guard(env).await {
                result = result.and(Err(e));
            }
            drop(guard);
            let secs = t0.elapsed().as_secs_f64();
            match &result {
                Ok(()) => println!("test {name} ... ok ({secs:.1}s)"),
                Err(e) => println!("test {name} ... FAILED ({secs:.1}s): {e:#}"),
            }
            (name.to_string(), result, secs)
        })
        .buffer_unordered(args.threads.max(1))
        .collect()
        .await;

    let failed: Vec<&(String, Result<(), anyhow::Error>, f64)> =
        results.iter().filter(|r| r.1.is_err()).collect();
    for (name, result, _) in &failed {
        println!("\n---- {name} ----");
        if let Err(e) = result {
            println!("{e:#}");
        }
        for log in logs_of(name) {
            println!(
                "--- {} (last 60 lines) ---\n{}",
                log.display(),
                podcreds_testenv::process::tail(&log, 60)
            );
        }
    }
    if !failed.is_empty() {
        println!("\n---- control plane logs ----\n{}", env.plane.logs(25));
    }
    let passed = results.len() - failed.len();
    let status = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {status}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s",
        failed.len(),
        all_tests().count() - results.len(),
        started.elapsed().as_secs_f64()
    );
    let code = i32::from(!failed.is_empty());
    env.emulator.shutdown();
    // Stop every process this run started before exiting.
    drop(results);
    drop(owned_env);
    std::process::exit(code);
}

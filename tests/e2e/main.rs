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

mod chains;
mod chart;
mod consumers;
mod consumers_stale;
mod endpoint;
mod faults;
mod grants;
mod iam;
mod lifecycle;
mod minio;
mod moto;
mod network;
mod node;
mod registry;
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

macro_rules! tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        &[$((concat!(stringify!($module), "::", stringify!($name)), (|env| Box::pin($module::$name(env))) as TestFn)),*]
    };
}

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

/// Every test of the suite; `registry` checks at start that this matches the test functions.
const TESTS: &[(&str, TestFn)] = tests![
    lifecycle::binding_issues_working_credentials,
    lifecycle::refresh_happens_before_expiry_and_honours_shorter_grants,
    lifecycle::missing_service_account_then_created,
    lifecycle::trust_policy_rejection_writes_nothing,
    lifecycle::refresh_requests_act_at_once_and_once_per_value,
    lifecycle::invalid_specs_are_rejected_by_the_apiserver,
    lifecycle::deleted_secret_is_recreated_and_edited_secret_restored,
    lifecycle::foreign_secret_is_never_touched,
    lifecycle::deleting_the_binding_garbage_collects_the_secret,
    lifecycle::spec_changes_issue_new_credentials,
    lifecycle::restart_with_fresh_secrets_makes_no_sts_calls,
    lifecycle::disallowed_endpoint_and_audience_send_nothing,
    lifecycle::bindings_colliding_on_a_secret_name_never_share_it,
    lifecycle::renaming_the_secret_moves_the_credentials,
    consumers::aws_cli_and_boto3_use_the_mounted_secret,
    moto::core_flow_against_moto,
    moto::role_chain_against_moto,
    moto::credential_sources_against_moto,
    saml::saml_binding_gets_working_credentials,
    saml::outdated_metadata_names_the_fix_and_recovers,
    saml::key_rotation_keeps_exchanges_working,
    saml::saml_outage_degrades_then_recovers,
    saml::role_chain_after_saml,
    saml::saml_against_moto,
    saml::chart_rbac_lets_the_operator_keep_only_its_saml_key,
    saml::tampered_expired_and_foreign_assertions_are_refused,
    rolesanywhere::the_emulator_accepts_aws_signing_helper_and_refuses_a_tamper,
    rolesanywhere::aws_signing_helper_is_refused_foreign_expired_and_revoked_certificates,
    rolesanywhere_flow::podcreds_as_the_ca_gets_working_credentials,
    rolesanywhere_flow::ca_rotation_keeps_exchanges_working,
    rolesanywhere_flow::an_admin_certificate_signs_until_revoked_or_expired,
    minio::binding_against_minio_is_limited_to_one_bucket_and_refreshes,
    minio::minio_refuses_a_wrong_audience_and_another_clusters_token,
    minio::every_supported_role_arn_form_is_admitted_by_kubectl_apply,
    minio::ceph_rgw_role_arns_and_error_documents,
    chains::a_two_hop_chain_serves_aws_clients_as_the_last_role,
    chains::kubernetes_session_tags_reach_sts_and_cannot_be_overridden,
    chains::chained_sessions_are_clamped_to_an_hour_and_report_their_packed_size,
    chains::hostile_role_chains_are_refused_at_admission,
    chains::a_restarted_operator_makes_no_sts_call_for_a_fresh_chain,
    chains::refused_hops_say_what_the_trust_policy_lacks,
    chains::a_hop_outage_keeps_valid_credentials_and_a_conflict_costs_one_chain,
    chart::chart_lints_and_renders_what_matters,
    chart::chart_installs_with_sufficient_and_minimal_rbac,
    chart::admission_policy_stops_the_confused_deputy,
    chart::admission_policy_checks_every_spec_update,
    chart::a_missing_admission_policy_is_reported,
    chart::the_node_agent_needs_only_what_the_chart_grants,
    grants::forged_kubernetes_tags_are_refused,
    grants::a_credential_source_grants_only_what_it_names,
    network::sts_calls_go_through_the_admins_proxy,
    network::an_unusable_proxy_is_refused_at_start,
    network::a_stopped_sts_endpoint_fails_over_to_the_next,
    security::role_allowlist_is_path_aware_in_cel_and_rust,
    security::spoofed_session_names_are_refused_at_admission,
    security::spoofed_session_names_are_refused_by_the_operator,
    security::plain_http_sts_endpoints_are_refused,
    security::environment_cannot_reroute_sts_traffic,
    security::a_compromised_operator_cannot_mint_other_tokens,
    faults::sts_outage_keeps_valid_credentials_and_recovers,
    iam::trust_policies_printed_for_a_chain_admit_exactly_its_binding,
    iam::exported_oidc_documents_verify_the_clusters_tokens,
    iam::setup_mistakes_are_reported_with_their_fix,
    faults::throttled_burst_ends_all_ready,
    faults::slow_sts_does_not_block_other_bindings,
    faults::garbage_from_sts_is_survived,
    faults::leader_election_fails_over_without_duplicate_calls,
    faults::sigkill_during_a_burst_loses_nothing,
    faults::apiserver_restart_is_survived,
    faults::sts_error_codes_become_precise_reasons,
    faults::sigterm_stops_even_without_an_apiserver,
    faults::clock_skew_between_cluster_and_sts_is_reported,
    faults::many_bindings_recover_after_an_outage,
    tenant::forged_expiration_annotations_are_repaired,
    tenant::a_rename_deletes_only_the_secret_podcreds_created,
    tenant::a_forged_status_deletes_no_secret,
    tenant::two_installations_serve_disjoint_bindings,
    tenant::labelled_secrets_built_to_bloat_the_cache_cost_nothing,
    tenant::oversized_bindings_are_refused_and_maximal_ones_served,
    tenant::a_conflict_clears_when_the_foreign_secret_goes,
    tenant::a_busy_namespace_does_not_hold_up_another,
    tenant::the_operator_enforces_the_role_allowlist_itself,
    tenant::a_required_allowlist_denies_by_default,
    tenant::a_deleted_namespace_leaves_the_operator_quiet,
    node::a_pod_reads_refreshed_credentials_through_a_secret_volume,
    node::the_operator_image_runs_as_a_restricted_pod,
    node::the_chart_runs_on_the_node_in_a_restricted_namespace,
    node::pods_on_the_node_call_sts_through_the_agent,
    consumers_stale::stale_consumers_are_reported_and_restarted_before_expiry,
    release::a_release_installs_and_upgrades_from_a_registry,
    sources::each_mode_is_ready_with_working_credentials,
    sources::assume_role_from_user_then_role_chain,
    sources::invalid_specs_are_refused_with_the_reason,
    sources::the_operator_refuses_what_the_source_does_not_allow,
    sources::rotated_keys_are_used_at_once,
    sources::an_outage_keeps_valid_credentials,
    sources::admission_refuses_namespaces_a_source_does_not_allow,
    sources::a_foreign_secret_costs_a_source_binding_one_exchange,
    endpoint::a_pod_calls_sts_through_the_node_agent_across_refreshes,
    endpoint::a_token_of_another_service_account_is_refused,
    endpoint::another_namespaces_binding_is_refused,
    endpoint::a_deleted_pods_token_is_refused,
    endpoint::a_pod_on_another_node_is_refused,
    endpoint::a_token_with_the_wrong_audience_is_refused,
    endpoint::a_binding_without_endpoint_delivery_is_refused,
    endpoint::the_sdk_refuses_plain_http_on_a_pod_ip,
    endpoint::agent_restart_and_leader_fail_over_fail_no_call,
];

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
    let registered: Vec<&str> = TESTS.iter().map(|(name, _)| *name).collect();
    let mut problems = registry::problems(&registered);
    problems.extend(
        RUNS_ALONE
            .iter()
            .filter(|name| !registered.contains(name))
            .map(|name| format!("RUNS_ALONE names {name}, which is not a test")),
    );
    if !problems.is_empty() {
        eprintln!(
            "the test registry (TESTS in tests/e2e/main.rs) does not match the test functions:\n  {}",
            problems.join("\n  ")
        );
        println!("test result: FAILED. 0 passed; 0 failed; 0 ignored (the registry is wrong)");
        std::process::exit(1);
    }
    let selected: Vec<&(&str, TestFn)> = TESTS
        .iter()
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
        TESTS.len() - results.len(),
        started.elapsed().as_secs_f64()
    );
    let code = i32::from(!failed.is_empty());
    env.emulator.shutdown();
    // Stop every process this run started before exiting.
    drop(results);
    drop(owned_env);
    std::process::exit(code);
}

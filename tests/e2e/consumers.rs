//! Real AWS clients consume the Secret as a pod would: files laid out like a kubelet Secret
//! volume, `AWS_CONFIG_FILE` pointing at the generated config, `credential_process` doing the rest.

use std::time::Duration;

use anyhow::{Context, ensure};
use podcreds_testenv::decode_secret;
use podcreds_testenv::tools::clean_aws_env;
use serde_json::json;

use crate::support::{Env, aws_caller_identity, kubelet_layout, spec_with};

/// Mirrors the Secret into `dir` (kubelet-style) every 500 ms until `stop` fires.
async fn kubelet_sync(
    env: &Env,
    ns: &str,
    name: &str,
    dir: &std::path::Path,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut generation = 0u32;
    let mut last_version = None;
    while !*stop.borrow() {
        if let Ok(secret) = env.secrets(ns).get(name).await
            && secret.metadata.resource_version != last_version
        {
            generation += 1;
            if kubelet_layout(dir, &decode_secret(&secret), generation).is_ok() {
                last_version = secret.metadata.resource_version.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const BOTO3_LOOP: &str = r#"
import json, sys, time, boto3
endpoint, wanted, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
session = boto3.Session()
sts = session.client("sts", endpoint_url=endpoint)
keys, errors, calls = [], [], 0
# Until the client has used `wanted` credential sets; the deadline only stops a stuck run.
deadline = time.time() + seconds
while len(keys) < wanted and time.time() < deadline:
    try:
        ident = sts.get_caller_identity()
        calls += 1
        key = session.get_credentials().get_frozen_credentials().access_key
        if not keys or keys[-1] != key:
            keys.append(key)
    except Exception as e:  # every failure is reported, none hidden
        errors.append(repr(e))
    time.sleep(0.5)
print(json.dumps({"arn": ident["Arn"] if calls else None, "keys": keys, "errors": errors, "calls": calls}))
"#;

pub async fn aws_cli_and_boto3_use_the_mounted_secret(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("consumer").await?;
    env.service_account(&ns, "app").await?;
    // Short grants so that a long-running client lives through several refreshes.
    let role = env.role(&format!("{ns}-app"), &ns, "app", Some(20));
    let _op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    let mount = tempfile::Builder::new()
        .prefix("podcreds-mount-")
        .tempdir()?;
    let mount_path = mount.path().to_string_lossy().into_owned();
    env.create_ready(
        &ns,
        "app",
        spec_with(
            &role,
            json!({"mountPath": mount_path, "sts": {"region": "eu-west-1"}}),
        ),
        Duration::from_secs(60),
    )
    .await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sync = kubelet_sync(env, &ns, "app", mount.path(), stop_rx);
    let clients = async {
        // Wait for the first sync.
        for _ in 0..50 {
            if mount.path().join("config").exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let config = mount.path().join("config");
        let expected_arn = format!(
            "arn:aws:sts::{}:assumed-role/{ns}-app/{ns}.app",
            crate::support::ACCOUNT
        );

        // The AWS CLI.
        let ident =
            aws_caller_identity(&env.emulator.url(), &[("AWS_CONFIG_FILE", &config)]).await?;
        ensure!(ident["Arn"] == expected_arn.as_str(), "AWS CLI saw {ident}");

        // A long-running boto3 client across several refreshes (grants of 20 s): it calls until it
        // has used three credential sets.
        let python = podcreds_testenv::tools::venv_program("python")?;
        let mut cmd = tokio::process::Command::new(python);
        clean_aws_env(cmd.as_std_mut());
        cmd.args(["-c", BOTO3_LOOP, &env.emulator.url(), "3", "180"])
            .env("AWS_CONFIG_FILE", &config);
        let out = cmd.output().await?;
        ensure!(
            out.status.success(),
            "boto3 loop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("boto3 report")?;
        ensure!(
            report["errors"].as_array().is_some_and(|e| e.is_empty()),
            "boto3 errors: {report}"
        );
        ensure!(report["arn"] == expected_arn.as_str(), "boto3 saw {report}");
        let keys = report["keys"].as_array().map(Vec::len).unwrap_or(0);
        ensure!(
            keys >= 3,
            "boto3 should have used 3 credential sets, used {keys}: {report}"
        );
        Ok::<u64, anyhow::Error>(report["calls"].as_u64().unwrap_or(0))
    };
    let (result, ()) = tokio::join!(
        async {
            let r = clients.await;
            let _ = stop_tx.send(true);
            r
        },
        sync
    );
    let boto3_calls = result?;
    // The emulator verified every signature: each GetCallerIdentity that succeeded proves it.
    let ok_calls = env
        .emulator
        .calls()
        .calls
        .iter()
        .filter(|c| {
            c.action == "GetCallerIdentity"
                && c.result == "Ok"
                && c.subject.as_deref().is_some_and(|s| s.contains(&*ns))
        })
        .count();
    // Every call the clients counted as a success was one the emulator verified (boto3's, plus
    // the AWS CLI's).
    ensure!(
        boto3_calls > 0 && ok_calls as u64 > boto3_calls,
        "the emulator verified {ok_calls} GetCallerIdentity calls; boto3 alone made {boto3_calls}"
    );
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![consumers:
    aws_cli_and_boto3_use_the_mounted_secret,
];

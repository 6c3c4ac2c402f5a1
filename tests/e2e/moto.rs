//! The core flow against moto, an STS implementation we did not write: proves wire compatibility
//! (moto checks nothing about the token itself).

use std::time::Duration;

use anyhow::{Context, ensure};
use podcreds_testenv::{Process, decode_secret, free_port};
use serde_json::json;

use crate::support::{Env, aws_caller_identity, spec_with};

pub async fn core_flow_against_moto(env: &Env) -> anyhow::Result<()> {
    let moto_bin = podcreds_testenv::tools::venv_program("moto_server")?;
    let port = free_port()?;
    let log_dir = env.plane.dir().join(format!("moto-{port}"));
    std::fs::create_dir_all(&log_dir)?;
    let mut moto = Process::spawn(
        "moto",
        &moto_bin,
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        &[],
        &log_dir,
    )?;
    crate::register_log(moto.log_path().to_path_buf());
    let addr = format!("127.0.0.1:{port}");
    // Any answer at all means moto is serving.
    podcreds_testenv::loopback::wait_until_serving(
        &mut moto,
        &addr,
        "/moto-api/",
        Duration::from_secs(30),
        |_| true,
    )
    .await?;
    let moto_url = format!("http://{addr}");

    let ns = env.namespace("moto").await?;
    env.service_account(&ns, "app").await?;
    let _op = env.start_operator(&[&ns], &moto_url, &[]).await?;
    let role = format!("arn:aws:iam::{}:role/moto-role", crate::support::ACCOUNT);
    let binding = env
        .create_ready(
            &ns,
            "moto",
            spec_with(&role, json!({"durationSeconds": 900})),
            Duration::from_secs(60),
        )
        .await?;
    let status = binding.status.context("status")?;
    let assumed = status.assumed_role_arn.context("assumedRoleArn")?;
    ensure!(assumed.contains(":assumed-role/moto-role/"), "{assumed}");

    let data = decode_secret(&env.secrets(&ns).get("moto").await?);
    ensure!(
        data["AWS_ACCESS_KEY_ID"].starts_with("ASIA"),
        "moto issued {}",
        data["AWS_ACCESS_KEY_ID"]
    );
    let process: serde_json::Value = serde_json::from_str(&data["credential-process.json"])?;
    let exp: jiff::Timestamp = process["Expiration"]
        .as_str()
        .context("Expiration")?
        .parse()?;
    ensure!(exp > jiff::Timestamp::now());

    // The shared-credentials file works with the AWS CLI against moto.
    let dir = tempfile::tempdir()?;
    let creds = dir.path().join("credentials");
    std::fs::write(&creds, &data["credentials"])?;
    let ident = aws_caller_identity(
        &moto_url,
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &creds),
            ("AWS_CONFIG_FILE", std::path::Path::new("/dev/null")),
        ],
    )
    .await?;
    ensure!(
        ident["Account"] == crate::support::ACCOUNT,
        "moto answered {ident}"
    );
    moto.terminate()?;
    Ok(())
}

//! Third-party peers started once and shared by the tests that need them: moto, and MinIO's role ARN table and bindings.

use crate::support::Env;
use anyhow::bail;
use podcreds_testenv::{Process, free_port};
use serde_json::json;
use std::time::Duration;

/// A moto server on a free loopback port: (its process, its URL).
pub(crate) async fn start_moto(env: &Env) -> anyhow::Result<(Process, String)> {
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
    Ok((moto, format!("http://{addr}")))
}

/// A binding naming `arn` under `provider` (with an endpoint for the compatible ones).
pub fn binding_for(provider: &str, arn: &str) -> serde_json::Value {
    let mut spec = json!({"serviceAccountName": "app", "roleArn": arn});
    if provider != "AWS" {
        spec["sts"] = json!({"provider": provider, "endpoint": "https://objects.storage.svc:9000"});
    }
    spec
}

/// One case of `tests/role_arns.txt`: (provider, accepted, ARN).
pub fn role_arn_table() -> anyhow::Result<Vec<(String, bool, String)>> {
    include_str!("../../role_arns.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let provider = parts.next().unwrap_or_default().to_string();
            let accepted = match parts.next() {
                Some("accept") => true,
                Some("refuse") => false,
                other => bail!("{line}: {other:?}"),
            };
            Ok((
                provider,
                accepted,
                parts.next().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

//! Third-party peers started once and shared by the tests that need them: moto, and MinIO's role ARN table and bindings.

use crate::support::Env;
use anyhow::bail;
use podcreds_testenv::Process;
use serde_json::json;

/// moto on a free loopback port, its log in the run's logs: (its process, its URL).
pub(crate) async fn start_moto(env: &Env) -> anyhow::Result<(Process, String)> {
    // Tests running at once each get their own moto, and their logs their own directory.
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log_dir = env.plane.dir().join(format!("moto-{n}"));
    std::fs::create_dir_all(&log_dir)?;
    let (moto, url) = podcreds_testenv::moto::start(&log_dir).await?;
    crate::register_log(moto.log_path().to_path_buf());
    Ok((moto, url))
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

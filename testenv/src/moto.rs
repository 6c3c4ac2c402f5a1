//! moto, the third-party AWS emulator from the test venv: one way to start it, for the
//! end-to-end suite (STS and IAM users) and the benchmark (Secrets Manager for external-secrets).

use std::path::Path;
use std::time::Duration;

use crate::{Error, Process, free_port};

/// A moto server on a free loopback port, its log under `log_dir`: (its process, its URL).
/// Returns once moto answers.
pub async fn start(log_dir: &Path) -> Result<(Process, String), Error> {
    let moto_bin = crate::tools::venv_program("moto_server")?;
    let port = free_port()?;
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
        log_dir,
    )?;
    let addr = format!("127.0.0.1:{port}");
    // Any answer at all means moto is serving.
    crate::loopback::wait_until_serving(
        &mut moto,
        &addr,
        "/moto-api/",
        Duration::from_secs(30),
        |_| true,
    )
    .await?;
    Ok((moto, format!("http://{addr}")))
}

//! Plain HTTP on loopback: enough to probe a child process's health endpoint and read its
//! metrics, without an HTTP client dependency.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Process};

/// A minimal HTTP/1.0 GET of `path` on `addr` (`127.0.0.1:<port>`): (status code, body).
pub async fn get(addr: &str, path: &str) -> Result<(u16, String), Error> {
    let failed = |reason: String| Error::Http {
        url: format!("http://{addr}{path}"),
        reason,
    };
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| failed(e.to_string()))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| failed("no status line".into()))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Waits until `GET path` on `addr` answers with a status `accept` takes, while `process` (which
/// serves it) is still running; fails with the end of its log if it exits or `timeout` passes.
pub async fn wait_until_serving(
    process: &mut Process,
    addr: &str,
    path: &str,
    timeout: Duration,
    accept: impl Fn(u16) -> bool,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = process.exited() {
            return Err(Error::NotReady {
                component: process.name().into(),
                reason: format!("exited with {status}"),
                log: process.log_tail(40),
            });
        }
        if get(addr, path).await.is_ok_and(|(code, _)| accept(code)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotReady {
                component: process.name().into(),
                reason: format!("http://{addr}{path} did not answer within {timeout:?}"),
                log: process.log_tail(40),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! A real OCI registry for tests: the CNCF Distribution registry (`registry serve`), built from
//! the Go module proxy by `cargo xtask testenv` ([`tools::REGISTRY`]), on a free loopback port
//! with its storage under a directory of the caller's. Started inside the run's network
//! namespace, it is reachable by everything else the run starts there: helm, crane and the test
//! node's containerd (which pulls from it over plain HTTP once told to, see
//! [`crate::node::Node::trust_plain_http_registry`]).
//!
//! Authentication is a hook: [`RegistryAuth::Config`] passes Distribution's own `auth` section
//! through unchanged, so a test of pull Secrets (ECR's `AWS:<token>` logins, for example) can
//! start the same registry behind `htpasswd` (a file of bcrypt entries; Distribution reads it
//! again when it changes) or behind `token` auth (a token service of the test's own, whose
//! certificate bundle Distribution trusts). The release test uses [`RegistryAuth::None`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{Process, free_port};
use crate::{Error, tools};

/// How clients authenticate to the registry.
#[derive(Clone, Debug, Default)]
pub enum RegistryAuth {
    /// Anyone may pull and push (the release test).
    #[default]
    None,
    /// Distribution's `auth` configuration section, as given: for example
    /// `{"htpasswd": {"realm": "test", "path": "<file>"}}` or
    /// `{"token": {"realm": "<url>", "service": "<name>", "issuer": "<name>",
    /// "rootcertbundle": "<file>"}}`. The caller owns the files it names.
    Config(serde_json::Value),
}

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub auth: RegistryAuth,
}

/// A running registry. Dropping it stops the process; its storage stays in the caller's
/// directory.
pub struct Registry {
    process: Process,
    host: String,
    dir: PathBuf,
}

impl Registry {
    /// Starts a registry storing under `<dir>/registry` and listening on `127.0.0.1:<free port>`,
    /// and waits until it answers `GET /v2/` (200, or 401 behind auth).
    pub async fn start(dir: &Path, options: RegistryOptions) -> Result<Self, Error> {
        let binary = tools::REGISTRY.binary()?;
        let dir = dir.join("registry");
        std::fs::create_dir_all(dir.join("storage"))?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let mut config = serde_json::json!({
            "version": "0.1",
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": dir.join("storage")},
                "delete": {"enabled": true},
            },
            "http": {"addr": host},
        });
        if let RegistryAuth::Config(auth) = &options.auth {
            config["auth"] = auth.clone();
        }
        // Distribution reads YAML, of which JSON is a subset.
        let config_file = dir.join("config.yml");
        std::fs::write(&config_file, config.to_string())?;
        let process = Process::spawn(
            "registry",
            &binary,
            &["serve".into(), config_file.to_string_lossy().into_owned()],
            // No trace exporter: nothing listens for one here.
            &[("OTEL_TRACES_EXPORTER".into(), "none".into())],
            &dir,
        )?;
        let mut registry = Self { process, host, dir };
        registry.wait_ready().await?;
        Ok(registry)
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last;
        loop {
            if let Some(status) = self.process.exited() {
                return Err(Error::NotReady {
                    component: "registry".into(),
                    reason: format!("exited with {status}"),
                    log: self.process.log_tail(30),
                });
            }
            match self.get("/v2/", &[]).await {
                Ok((200 | 401, _)) => return Ok(()),
                Ok((code, body)) => last = format!("{code}: {body}"),
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: "registry".into(),
                    reason: format!("GET /v2/ did not answer within 30s ({last})"),
                    log: self.process.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `127.0.0.1:<port>`: the host part of image references and `oci://` chart URLs.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The directory holding its configuration, storage and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of its log (every request it served is logged).
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The tags of `repository` (`GET /v2/<repository>/tags/list`).
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        let path = format!("/v2/{repository}/tags/list");
        let (code, body) = self.get(&path, &[]).await?;
        if code != 200 {
            return Err(self.http_error(&path, format!("{code}: {body}")));
        }
        let list: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| self.http_error(&path, format!("{e}: {body}")))?;
        Ok(list["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect())
    }

    /// The manifest (or index) `repository:reference` as the registry serves it, asking for the
    /// OCI and Docker manifest and index types.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<serde_json::Value, Error> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let accept = [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ]
        .join(", ");
        let (code, body) = self.get(&path, &[("Accept", &accept)]).await?;
        if code != 200 {
            return Err(self.http_error(&path, format!("{code}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| self.http_error(&path, format!("{e}: {body}")))
    }

    fn http_error(&self, path: &str, reason: String) -> Error {
        Error::Http {
            url: format!("http://{}{path}", self.host),
            reason,
        }
    }

    /// An HTTP/1.0 GET with `headers`: (status, body).
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String), Error> {
        let failed = |reason: String| self.http_error(path, reason);
        let mut stream = tokio::net::TcpStream::connect(&self.host)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
            .await
            .map_err(|_| failed("no answer within 10s".into()))?
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
}

//! The agent's HTTPS client of the broker: it trusts only the broker CA the operator publishes,
//! authenticates with the agent's own projected token (re-read for every call: the kubelet
//! rotates it) and passes the pod's token on.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::broker::wire::{CREDENTIALS_PATH, ErrorBody, Granted, POD_TOKEN_HEADER};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Largest answer read from the broker.
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the broker CA is unusable: {0}")]
    Ca(String),
    #[error("cannot read the agent's token {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("the broker at {0} cannot be reached: {1}")]
    Unreachable(IpAddr, String),
    #[error("the broker answered {status}: {}", .body.message)]
    Refused { status: u16, body: ErrorBody },
    #[error("the broker's answer is unreadable: {0}")]
    Garbled(String),
}

impl CallError {
    pub fn category(&self) -> &'static str {
        match self {
            CallError::Ca(_) => "NoBrokerCa",
            CallError::Token { .. } => "AgentToken",
            CallError::Unreachable(..) => "BrokerUnreachable",
            CallError::Refused { .. } => "Refused",
            CallError::Garbled(_) => "BrokerAnswerUnreadable",
        }
    }

    /// Whether another replica may answer better (the one asked no longer leads, or is gone).
    pub fn try_the_leader_again(&self) -> bool {
        match self {
            CallError::Unreachable(..) => true,
            CallError::Refused { body, .. } => body.code == "NotLeader",
            _ => false,
        }
    }
}

pub struct BrokerClient {
    http: HttpsClient,
    port: u16,
    token_file: PathBuf,
}

/// A rustls client configuration trusting exactly the certificates of `ca_pem`.
pub fn tls_config(ca_pem: &str) -> Result<rustls::ClientConfig, CallError> {
    let mut roots = rustls::RootCertStore::empty();
    for der in crate::keyring::pem_certificates_der(ca_pem) {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .map_err(|e| CallError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(CallError::Ca("no certificate".into()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| CallError::Ca(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

impl BrokerClient {
    pub fn new(ca_pem: &str, port: u16, token_file: PathBuf) -> Result<Self, CallError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(std::time::Duration::from_secs(3)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca_pem)?)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let http = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Self {
            http,
            port,
            token_file,
        })
    }

    fn agent_token(&self) -> Result<String, CallError> {
        std::fs::read_to_string(&self.token_file)
            .map(|t| t.trim().to_string())
            .map_err(|e| CallError::Token {
                path: self.token_file.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Asks the broker at `ip` for `binding`'s credentials on behalf of the pod whose token is
    /// `pod_token`.
    pub async fn credentials(
        &self,
        ip: IpAddr,
        binding: &str,
        pod_token: &str,
    ) -> Result<Granted, CallError> {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let uri = format!("https://{host}:{}{CREDENTIALS_PATH}{binding}", self.port);
        let request = http::Request::get(uri)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.agent_token()?),
            )
            .header(POD_TOKEN_HEADER, pod_token)
            .body(Empty::<Bytes>::new())
            .map_err(|e| CallError::Garbled(e.to_string()))?;
        let unreachable = |e: String| CallError::Unreachable(ip, crate::text::remote(&e));
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.http.request(request),
        )
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(format!("{e:?}")))?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if status == 200 {
            serde_json::from_slice(&body).map_err(|e| CallError::Garbled(e.to_string()))
        } else {
            let body = serde_json::from_slice(&body).unwrap_or_else(|_| ErrorBody {
                code: "BrokerError".into(),
                message: crate::text::remote(&String::from_utf8_lossy(&body)),
            });
            Err(CallError::Refused { status, body })
        }
    }
}

//! The agent's answer to a pod: `GET /v1/credentials/<binding>` with the pod's token as the
//! `Authorization` header (the contents of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, which
//! SDKs re-read on every fetch). From the cache while the broker's grant for that token is
//! recent and the credentials before their renewal time; otherwise from the leader's broker.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use tokio::sync::RwLock;

use super::broker_client::{BrokerClient, CallError};
use super::cache::{Cache, token_hash};
use super::leader::Finder;
use crate::broker::authorize::binding_name;
use crate::broker::wire::{ContainerCredentials, ErrorBody};

pub struct Agent {
    pub finder: Finder,
    pub broker_port: u16,
    pub token_file: PathBuf,
    pub pod_audience: String,
    leader: RwLock<Option<IpAddr>>,
    client: RwLock<Option<Arc<BrokerClient>>>,
    cache: Mutex<Cache>,
}

fn answer_error(status: u16, code: &str, message: String) -> (u16, ErrorBody) {
    (
        status,
        ErrorBody {
            code: code.to_string(),
            message,
        },
    )
}

impl Agent {
    pub fn new(
        finder: Finder,
        broker_port: u16,
        token_file: PathBuf,
        pod_audience: String,
    ) -> Self {
        Self {
            finder,
            broker_port,
            token_file,
            pod_audience,
            leader: RwLock::new(None),
            client: RwLock::new(None),
            cache: Mutex::new(Cache::default()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn leader(&self, fresh: bool) -> Result<IpAddr, (u16, ErrorBody)> {
        if !fresh && let Some(ip) = *self.leader.read().await {
            return Ok(ip);
        }
        let (name, ip) = self.finder.leader().await.map_err(|e| {
            answer_error(
                503,
                e.category(),
                format!("the node agent cannot find the operator: {e}"),
            )
        })?;
        tracing::info!(leader = %name, %ip, "broker located");
        *self.leader.write().await = Some(ip);
        Ok(ip)
    }

    async fn client(&self, fresh: bool) -> Result<Arc<BrokerClient>, (u16, ErrorBody)> {
        if !fresh && let Some(client) = self.client.read().await.clone() {
            return Ok(client);
        }
        let unusable = |category: &str, e: String| {
            answer_error(
                503,
                category,
                format!("the node agent cannot trust the broker: {e}"),
            )
        };
        let ca = self
            .finder
            .ca()
            .await
            .map_err(|e| unusable(e.category(), e.to_string()))?;
        let client = Arc::new(
            BrokerClient::new(&ca, self.broker_port, self.token_file.clone())
                .map_err(|e| unusable(e.category(), e.to_string()))?,
        );
        *self.client.write().await = Some(client.clone());
        Ok(client)
    }

    /// The credentials for the pod presenting `token`, or the status and error to answer.
    pub async fn credentials(
        &self,
        binding: &str,
        token: Option<&str>,
    ) -> Result<ContainerCredentials, (u16, ErrorBody)> {
        let binding = binding_name(binding)
            .map_err(|e| answer_error(e.status(), e.category(), e.to_string()))?;
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
            answer_error(
                400,
                "PodTokenMissing",
                format!(
                    "no Authorization header: set AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE to a projected ServiceAccount token with audience {}",
                    self.pod_audience
                ),
            )
        })?;
        let hash = token_hash(token);
        if let Some(hit) = self
            .cache()
            .lookup(&hash, binding, Instant::now(), Timestamp::now())
        {
            return Ok(hit);
        }
        match self.ask_broker(binding, token, &hash).await {
            Ok(credentials) => Ok(credentials),
            // The broker is away (fail-over, restart): the pod keeps what it was given.
            Err((status, body)) if status >= 500 => {
                match self
                    .cache()
                    .lookup_during_outage(&hash, binding, Timestamp::now())
                {
                    Some(held) => {
                        tracing::info!(
                            binding,
                            code = %body.code,
                            "the broker cannot answer; serving the credentials this pod already holds"
                        );
                        Ok(held)
                    }
                    None => Err((status, body)),
                }
            }
            Err(refused) => Err(refused),
        }
    }

    async fn ask_broker(
        &self,
        binding: &str,
        token: &str,
        hash: &super::cache::TokenHash,
    ) -> Result<ContainerCredentials, (u16, ErrorBody)> {
        // A second attempt finds the leader (and its CA) anew: after a fail-over the first
        // one reached a replica that no longer leads, or none at all.
        for fresh in [false, true] {
            let ip = self.leader(fresh).await?;
            let client = self.client(fresh).await?;
            match client.credentials(ip, binding, token).await {
                Ok(granted) => {
                    self.cache()
                        .remember(hash, &granted, Instant::now(), Timestamp::now());
                    return Ok(granted.credentials);
                }
                Err(e) if !fresh && e.try_the_leader_again() => {
                    tracing::info!(error = %e, "asking the broker again, on the current leader");
                }
                Err(CallError::Refused { status, body }) => {
                    // A refusal (not an outage) ends what this token was given.
                    if status < 500 {
                        self.cache().forget(hash, binding);
                    }
                    return Err((status, body));
                }
                Err(e) => return Err(answer_error(503, e.category(), e.to_string())),
            }
        }
        Err(answer_error(
            503,
            "BrokerUnreachable",
            "the broker cannot be reached".into(),
        ))
    }
}

async fn credentials(
    State(agent): State<Arc<Agent>>,
    Path(binding): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match agent.credentials(&binding, token).await {
        Ok(credentials) => axum::Json(credentials).into_response(),
        Err((status, body)) => {
            tracing::info!(
                binding = %crate::text::cut(&binding, 64),
                status,
                code = %body.code,
                error = %body.message,
                "credentials refused to a pod"
            );
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                axum::Json(body),
            )
                .into_response()
        }
    }
}

/// The agent's routes: the credentials, and `/healthz` for the DaemonSet's probe.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/credentials/{binding}", axum::routing::get(credentials))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(agent)
}

//! The broker's HTTPS server: `GET /v1/credentials/<binding>` from node agents, served by the
//! leader only. Each request is reviewed ([`super::review`]), authorized
//! ([`super::authorize`]) and answered from the credential store ([`super::store`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use super::authorize::{self, BindingFacts, Refusal};
use super::review::{Reviewer, Verdict};
use super::store::CredentialStore;
use super::wire::{ContainerCredentials, ErrorBody, Granted, POD_TOKEN_HEADER};
use crate::api::AWSRoleBinding;
use crate::controller::BindingStores;
use crate::metrics::Metrics;

/// Who may ask, and for what audiences the tokens must be.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// `system:serviceaccount:<ns>:<name>` of the node agents.
    pub agent_user: String,
    /// Audience of the agents' own tokens.
    pub agent_audience: String,
    /// Audience of the pods' tokens.
    pub pod_audience: String,
}

pub struct Broker {
    pub settings: BrokerSettings,
    pub reviewer: Reviewer,
    pub store: CredentialStore,
    pub bindings: BindingStores,
    pub leader: tokio::sync::watch::Receiver<bool>,
    pub metrics: Metrics,
}

fn refused(refusal: &Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
    (
        status,
        axum::Json(ErrorBody {
            code: refusal.category().to_string(),
            message: refusal.to_string(),
        }),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl Broker {
    fn binding(&self, namespace: &str, name: &str) -> Option<Arc<AWSRoleBinding>> {
        let stores = self.bindings.lock().ok()?;
        let key = ObjectRef::new(name).within(namespace);
        stores.iter().find_map(|s| s.get(&key))
    }

    async fn reviewed(
        &self,
        token: &str,
        audience: &str,
        refuse: impl Fn(String) -> Refusal,
    ) -> Result<authorize::Reviewed, Refusal> {
        match self.reviewer.review(token, audience).await {
            Ok(Verdict::Authenticated(r)) => Ok(r),
            Ok(Verdict::Refused(reason)) => Err(refuse(reason)),
            Err(e) => Err(Refusal::ReviewUnavailable(e.0)),
        }
    }

    /// Everything a request must pass, in order: cheap checks first, then the two reviews.
    async fn answer(&self, name: &str, headers: &HeaderMap) -> Result<Granted, Refusal> {
        if !*self.leader.borrow() {
            return Err(Refusal::NotLeader);
        }
        let name = authorize::binding_name(name)?;
        let agent_token = bearer(headers).ok_or(Refusal::AgentTokenRefused {
            reason: "no bearer token".into(),
        })?;
        let pod_token = headers
            .get(POD_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::PodTokenMissing {
                audience: self.settings.pod_audience.clone(),
            })?;
        let agent = authorize::agent(
            &self
                .reviewed(agent_token, &self.settings.agent_audience, |reason| {
                    Refusal::AgentTokenRefused { reason }
                })
                .await?,
            &self.settings.agent_user,
        )?;
        let pod_audience = self.settings.pod_audience.clone();
        let pod = authorize::pod(
            &self
                .reviewed(pod_token, &pod_audience, |reason| {
                    Refusal::PodTokenRefused {
                        reason,
                        audience: pod_audience.clone(),
                    }
                })
                .await?,
        )?;
        let binding = self.binding(&pod.namespace, name);
        let facts = binding.as_deref().map(facts_of);
        authorize::authorize(&agent, &pod, name, facts.as_ref())?;
        let not_yet = || Refusal::NotIssuedYet {
            namespace: pod.namespace.clone(),
            name: name.to_string(),
        };
        let uid = facts.map(|f| f.uid).ok_or_else(not_yet)?;
        let held = self
            .store
            .get(&uid)
            .filter(|h| h.issued.expiration > Timestamp::now())
            .ok_or_else(not_yet)?;
        Ok(Granted {
            namespace: pod.namespace,
            binding: name.to_string(),
            pod_uid: pod.uid,
            renewal_time: held.issued.renewal_time,
            expiration: held.issued.expiration,
            credentials: ContainerCredentials::of(&held.credentials),
        })
    }
}

/// What the broker reads of a cached binding.
fn facts_of(binding: &AWSRoleBinding) -> BindingFacts {
    let ready = binding
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    BindingFacts {
        uid: binding.metadata.uid.clone().unwrap_or_default(),
        service_account: binding.spec.service_account_name.clone(),
        endpoint: crate::spec::Deliveries::of(&binding.spec.delivery).endpoint,
        ready: match ready {
            Some(c) if c.status == "True" => Ok(()),
            Some(c) => Err(c.reason.clone()),
            None => Err("not reconciled yet".into()),
        },
    }
}

async fn credentials(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match broker.answer(&name, &headers).await {
        Ok(granted) => {
            broker.metrics.endpoint_request("Granted");
            tracing::debug!(
                namespace = %granted.namespace,
                binding = %granted.binding,
                pod_uid = %granted.pod_uid,
                "credentials granted to an agent"
            );
            axum::Json(granted).into_response()
        }
        Err(refusal) => {
            broker.metrics.endpoint_request(refusal.category());
            tracing::info!(
                binding = %crate::text::cut(&name, 64),
                category = refusal.category(),
                error = %refusal,
                "node endpoint request refused"
            );
            refused(&refusal)
        }
    }
}

/// The broker's routes.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/v1/credentials/{binding}", axum::routing::get(credentials))
        .with_state(broker)
}

/// Serves `router` over TLS on `address` until `shutdown`. Binding the port fails at once;
/// connections are served in the background.
pub async fn serve(
    address: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    Ok(async move {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "broker accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                // A handshake that stalls must not hold a task forever.
                let tls = match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "broker TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(error = %e, "broker connection ended with an error");
                }
            });
        }
    })
}

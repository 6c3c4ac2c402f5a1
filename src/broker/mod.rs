//! The broker: the leader's side of the node endpoint. It keeps the credentials of `Endpoint`
//! bindings in memory ([`store`]) and serves them over HTTPS to podcreds' node agents
//! ([`server`]), after checking with the apiserver's TokenReview that the agent is one and that
//! the pod asking runs on the agent's node as the binding's ServiceAccount ([`authorize`]).

pub mod authorize;
pub mod review;
pub mod server;
pub mod store;
pub mod tls;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::controller::BindingStores;
use crate::metrics::Metrics;

/// What `podcreds run` needs to serve the broker.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub address: SocketAddr,
    /// The pod's IP: the serving certificate's IP SAN, where agents reach this replica.
    pub pod_ip: IpAddr,
    /// The operator's namespace: the CA key Secret and the CA ConfigMap.
    pub namespace: String,
    pub ca_secret: String,
    pub ca_configmap: String,
    pub settings: server::BrokerSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker CA: {0}")]
    Keys(#[from] crate::keyring::StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot serve the broker address {0}: {1}")]
    Listen(SocketAddr, #[source] std::io::Error),
}

impl BrokerError {
    pub fn category(&self) -> &'static str {
        match self {
            BrokerError::Keys(_) => "BrokerCa",
            BrokerError::Tls(e) => e.category(),
            BrokerError::Listen(..) => "BrokerListen",
        }
    }
}

/// Starts the broker: the CA (created once), this replica's serving certificate, the CA
/// published for agents, and the HTTPS server. Only a leader answers; a replica that stops
/// leading forgets every credential it held.
pub async fn start(
    client: kube::Client,
    config: BrokerConfig,
    store: store::CredentialStore,
    bindings: BindingStores,
    leader: tokio::sync::watch::Receiver<bool>,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, BrokerError> {
    let keys = crate::keyring::KeySecret::new(
        client.clone(),
        &config.namespace,
        &config.ca_secret,
        &crate::keyring::BROKER_CA,
    );
    let ring = keys.ensure().await?;
    let serving = tls::issue_serving(&ring.active, config.pod_ip, &[], jiff::Timestamp::now())?;
    tls::publish(
        client.clone(),
        &config.namespace,
        &config.ca_configmap,
        &tls::trust_bundle(&ring),
    )
    .await?;
    let tls_config = tls::server_config(serving)?;
    let mut deposed = leader.clone();
    let forget = store.clone();
    tokio::spawn(async move {
        while deposed.changed().await.is_ok() {
            if !*deposed.borrow() {
                forget.clear();
            }
        }
    });
    let broker = Arc::new(server::Broker {
        settings: config.settings,
        reviewer: review::Reviewer::new(client),
        store,
        bindings,
        leader,
        metrics,
    });
    let serving = server::serve(config.address, tls_config, server::router(broker), shutdown)
        .await
        .map_err(|e| BrokerError::Listen(config.address, e))?;
    tracing::info!(
        address = %config.address,
        pod_ip = %config.pod_ip,
        ca_sha256 = %ring.active.fingerprint(),
        "node endpoint broker serving"
    );
    Ok(tokio::spawn(serving))
}

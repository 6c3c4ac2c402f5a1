//! `podcreds agent`: wiring only. Adds the link-local addresses, serves pods on them until a
//! termination signal, then removes them.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;

use super::address;
use super::leader::Finder;
use super::serve::{Agent, router};
use crate::cli::AgentArgs;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Start(#[from] crate::operator::StartError),
    #[error(transparent)]
    Address(#[from] address::AddressError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, #[source] std::io::Error),
    #[error("no usable Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    KubeConfig(#[source] kube::Error),
}

pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    crate::operator::init_telemetry(args.log_format, &args.log_level)?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .map_err(AgentError::KubeConfig)?;
    let to_add: Vec<_> = args
        .listen
        .iter()
        .map(|a| a.ip())
        .filter(|ip| address::must_add(*ip))
        .collect();
    let added = match to_add.is_empty() {
        true => None,
        false => Some(address::add(&args.interface, &to_add).await?),
    };
    let agent = Arc::new(Agent::new(
        Finder::new(
            client,
            &args.operator_namespace,
            &args.leader_election_lease,
            &args.broker_ca_configmap,
        ),
        args.broker_port,
        args.token_file.clone(),
        args.endpoint_audience.clone(),
    ));
    let shutdown = crate::operator::termination().boxed().shared();
    let mut servers = Vec::new();
    for listen in &args.listen {
        // An IPv6 address the node could not take is not served.
        if address::must_add(listen.ip())
            && !added
                .as_ref()
                .is_some_and(|a| a.addresses.contains(&listen.ip()))
        {
            continue;
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| AgentError::Listen(*listen, e))?;
        tracing::info!(address = %listen, node = args.node_name.as_deref().unwrap_or("-"), "node agent serving");
        let app = router(agent.clone());
        let stop = shutdown.clone();
        servers.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "agent server stopped with an error");
            }
        }));
    }
    shutdown.await;
    for server in servers {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    }
    if let Some(added) = added {
        added.remove().await;
    }
    tracing::info!("stopped");
    Ok(())
}

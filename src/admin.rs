//! The admin HTTP server: `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::admission_check::PolicyStates;

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
    /// What the last check of the admission policies found, when they are checked.
    policies: Option<watch::Receiver<PolicyStates>>,
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready once the caches synced. The admission policies' state is detail, not readiness: the
/// operator works without them, and restarting pods would not bring them back.
async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let (code, mut body) = if *state.ready.borrow() {
        (StatusCode::OK, "ready".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced yet".to_string(),
        )
    };
    if let Some(policies) = &state.policies {
        for (name, policy) in policies.borrow().iter() {
            body.push('\n');
            body.push_str(&policy.describe(name));
        }
    }
    (code, body)
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    match crate::metrics::encode(&state.registry) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Binds the admin address (so a port clash fails start-up loudly) and returns the server future.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
    policies: Option<watch::Receiver<PolicyStates>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            registry,
            ready,
            policies,
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "admin server listening");
    Ok(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    })
}

//! What every flow depends on, and the steps every flow takes the same way: prove the
//! ServiceAccount with a TokenRequest, ask for its token, make one STS call within the rate limit,
//! timed and counted.

use std::sync::Arc;

use super::seam::ExchangeRequest;
use super::token::{ServiceAccountToken, TokenError, request_token};
use crate::metrics::Metrics;
use crate::spec::ResolvedSpec;
use crate::sts::{SessionScope, SharedSts, StsError, StsTarget};
use crate::throttle::Throttle;

/// One set shared by all flows.
pub struct FlowDeps {
    pub client: kube::Client,
    pub sts: SharedSts,
    pub throttle: Arc<Throttle>,
    pub metrics: Metrics,
    /// Lifetime requested for ServiceAccount tokens (the apiserver's minimum is 600 s).
    pub token_expiration_seconds: i64,
}

impl FlowDeps {
    /// The token of the binding's ServiceAccount: within the apiserver rate limit, timed.
    pub async fn token(
        &self,
        request: ExchangeRequest<'_>,
    ) -> Result<ServiceAccountToken, TokenError> {
        self.throttle.kube().await;
        let started = std::time::Instant::now();
        let token = request_token(
            self.client.clone(),
            request.namespace,
            &request.spec.service_account_name,
            &request.spec.audience,
            self.token_expiration_seconds,
        )
        .await;
        self.metrics
            .token_duration
            .observe(started.elapsed().as_secs_f64());
        token
    }

    /// Proves the binding's ServiceAccount exists and that the operator may act for it (the same
    /// TokenRequest, guard and RBAC as web identity), for flows that send something else to STS:
    /// the token is dropped unused.
    pub async fn prove_account(&self, request: ExchangeRequest<'_>) -> Result<(), TokenError> {
        self.token(request).await.map(drop)
    }

    /// One STS call of `flow`: within the STS rate limit, timed and counted by outcome.
    pub async fn sts_call<T>(
        &self,
        flow: &'static str,
        call: impl std::future::Future<Output = Result<T, StsError>>,
    ) -> Result<T, StsError> {
        self.throttle.sts().await;
        let started = std::time::Instant::now();
        let result = call.await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.kind.category(),
        };
        self.metrics.observe_sts(flow, outcome, started.elapsed());
        result
    }
}

/// Where a binding's STS calls go.
pub fn target(spec: &ResolvedSpec) -> StsTarget {
    StsTarget {
        region: spec.region.clone(),
        endpoint: spec.endpoint.clone(),
    }
}

/// The session a binding's first exchange asks for: `duration_seconds` and its session policies.
pub fn scope(spec: &ResolvedSpec, duration_seconds: i32) -> SessionScope {
    SessionScope {
        duration_seconds,
        policy: spec.session_policy.clone(),
        policy_arns: spec.policy_arns.clone(),
    }
}

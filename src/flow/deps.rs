//! What every flow depends on, and the steps every flow takes the same way: prove the
//! ServiceAccount with a TokenRequest, ask for its token, make one STS call within the rate limit,
//! timed and counted, at the first of the binding's endpoints that answers.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;

use super::seam::ExchangeRequest;
use super::token::{ServiceAccountToken, TokenError, request_token};
use crate::credentials::IssuedCredentials;
use crate::failover::EndpointHealth;
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
    /// Which STS endpoints failed lately (shared by every binding).
    pub endpoint_health: Mutex<EndpointHealth>,
}

/// What an STS call answered, and the endpoint that answered it (`None`: the AWS regional
/// endpoint).
pub struct Served<T> {
    pub answer: T,
    pub endpoint: Option<String>,
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

impl Served<IssuedCredentials> {
    /// The credentials, recording the endpoint that issued them.
    pub fn credentials(self) -> IssuedCredentials {
        IssuedCredentials {
            sts_endpoint: self.endpoint,
            ..self.answer
        }
    }
}

impl FlowDeps {
    fn health(&self) -> MutexGuard<'_, EndpointHealth> {
        match self.endpoint_health.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// One STS call of `flow` for `spec`'s binding, made by `call` for a target: at the
    /// binding's endpoints in the order [`EndpointHealth::order`] gives, moving on to the next
    /// only when one could not answer (no connection, a timeout, a server error: a refusal would
    /// be the same at any endpoint). Each attempt is one rate-limited, timed call; what failed
    /// is remembered for every binding, and an endpoint answering again is logged as back.
    pub async fn sts_exchange<T, F, Fut>(
        &self,
        flow: &'static str,
        spec: &ResolvedSpec,
        mut call: F,
    ) -> Result<Served<T>, StsError>
    where
        F: FnMut(StsTarget) -> Fut,
        Fut: Future<Output = Result<T, StsError>>,
    {
        let endpoints: Vec<&str> = spec.sts_endpoints().collect();
        if endpoints.is_empty() {
            // The AWS regional endpoint: the SDK's business, nothing to fail over to.
            let answer = self.sts_call(flow, call(target(spec, None))).await?;
            return Ok(Served {
                answer,
                endpoint: None,
            });
        }
        let order = self.health().order(&endpoints, Timestamp::now());
        let mut failed: Option<StsError> = None;
        for (attempt, endpoint) in order.iter().enumerate() {
            match self
                .sts_call(flow, call(target(spec, Some(endpoint))))
                .await
            {
                Ok(answer) => {
                    if self.health().answered(endpoint) {
                        tracing::info!(endpoint, "STS endpoint answers again");
                    }
                    return Ok(Served {
                        answer,
                        endpoint: Some(endpoint.to_string()),
                    });
                }
                Err(error) if error.endpoint_failed => {
                    self.health().failed(endpoint, Timestamp::now());
                    if let Some(next) = order.get(attempt + 1) {
                        self.metrics.failed_over(flow);
                        tracing::warn!(
                            endpoint,
                            next,
                            flow,
                            category = error.kind.category(),
                            error = %error,
                            "STS endpoint could not answer; failing over to the next"
                        );
                    }
                    failed = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(match failed {
            Some(mut error) if order.len() > 1 => {
                error.message = format!(
                    "{} (none of the {} STS endpoints could answer)",
                    error.message,
                    order.len()
                );
                error
            }
            Some(error) => error,
            // The list is not empty, so the loop ran and either returned or failed.
            None => StsError::new(
                crate::sts::StsErrorKind::Unavailable,
                None,
                "no STS endpoint to call",
            ),
        })
    }
}

/// Where one of a binding's STS calls goes: `endpoint` (one of the binding's), or the AWS
/// regional endpoint of its region.
pub fn target(spec: &ResolvedSpec, endpoint: Option<&str>) -> StsTarget {
    StsTarget {
        region: spec.region.clone(),
        endpoint: endpoint.map(str::to_string),
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

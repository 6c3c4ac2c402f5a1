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
#[derive(Debug)]
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

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::settings::Settings;
    use crate::sts::StsErrorKind;

    pub(in crate::flow) const A: &str = "https://sts-a.storage.svc";
    pub(in crate::flow) const B: &str = "https://sts-b.storage.svc";

    /// Dependencies over `sts`, with a Kubernetes client that is never called.
    pub(in crate::flow) fn deps(sts: SharedSts, cooldown: Duration) -> FlowDeps {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let settings = Settings::default();
        FlowDeps {
            client: kube::Client::new(service, "default"),
            sts,
            throttle: Arc::new(Throttle::new(&settings)),
            metrics: Metrics::default(),
            token_expiration_seconds: 600,
            endpoint_health: Mutex::new(EndpointHealth::new(cooldown)),
        }
    }

    /// A binding whose STS calls go to `endpoints`, and, with `hops`, a role chain of that many.
    pub(in crate::flow) fn binding(endpoints: &[&str], hops: usize) -> ResolvedSpec {
        let chain: Vec<serde_json::Value> = (0..hops)
            .map(|i| serde_json::json!({"roleArn": format!("arn:aws:iam::123456789012:role/hop{i}")}))
            .collect();
        let sts = if endpoints.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({"endpoints": endpoints})
        };
        let spec = serde_json::from_value(serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app",
            "sts": sts,
            "roleChain": chain,
        }))
        .expect("spec");
        let policy = crate::spec::StsPolicy {
            default_endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            ..crate::spec::StsPolicy::default()
        };
        crate::spec::resolve(&spec, "ns", "b", &policy).expect("valid")
    }

    fn down() -> StsError {
        StsError::new(
            StsErrorKind::Unavailable,
            Some("DispatchFailure"),
            "could not connect to STS",
        )
        .at_endpoint()
    }

    fn failovers(deps: &FlowDeps) -> u64 {
        deps.metrics
            .sts_failovers
            .get_or_create(&crate::metrics::FlowLabels {
                flow: "WebIdentity".into(),
            })
            .get()
    }

    #[tokio::test]
    async fn a_call_moves_on_only_when_an_endpoint_cannot_answer() {
        let deps = deps(Arc::new(NoSts), Duration::from_secs(30));
        let spec = binding(&[A, B], 0);
        let tried = std::sync::Mutex::new(Vec::new());
        let a_is_down = |target: StsTarget| {
            let endpoint = target.endpoint.unwrap_or_default();
            tried.lock().expect("lock").push(endpoint.clone());
            async move {
                if endpoint == A {
                    Err(down())
                } else {
                    Ok(endpoint)
                }
            }
        };
        // A cannot answer: the same call goes on to B, and says where it was answered.
        let served = deps
            .sts_exchange("WebIdentity", &spec, a_is_down)
            .await
            .expect("B answered");
        assert_eq!(served.endpoint.as_deref(), Some(B));
        assert_eq!(served.answer, B);
        assert_eq!(*tried.lock().expect("lock"), [A, B]);
        assert_eq!(failovers(&deps), 1);
        // During the cool-down the next call goes straight to B: nothing was failed over.
        tried.lock().expect("lock").clear();
        let served = deps
            .sts_exchange("WebIdentity", &spec, a_is_down)
            .await
            .expect("B answered");
        assert_eq!(served.endpoint.as_deref(), Some(B));
        assert_eq!(*tried.lock().expect("lock"), [B]);
        assert_eq!(failovers(&deps), 1);

        // A refusal is the same at every endpoint: no second call, no memory of it.
        let calls = AtomicUsize::new(0);
        let refused = deps
            .sts_exchange("WebIdentity", &binding(&[B, A], 0), |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err::<(), _>(StsError::new(
                        StsErrorKind::AccessDenied,
                        Some("AccessDenied"),
                        "not trusted",
                    ))
                }
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.kind, StsErrorKind::AccessDenied);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!refused.message.contains("endpoints"), "{refused}");

        // Every endpoint down: the last failure, saying how many were tried.
        let failed = deps
            .sts_exchange("WebIdentity", &spec, |_| async { Err::<(), _>(down()) })
            .await
            .expect_err("all down");
        assert!(failed.endpoint_failed);
        assert!(
            failed
                .message
                .contains("none of the 2 STS endpoints could answer"),
            "{failed}"
        );
    }

    #[tokio::test]
    async fn the_first_endpoint_is_used_again_once_it_is_back() {
        // No cool-down: every call starts at A again.
        let deps = deps(Arc::new(NoSts), Duration::ZERO);
        let spec = binding(&[A, B], 0);
        let a_up = std::sync::atomic::AtomicBool::new(false);
        let call = |target: StsTarget| {
            let endpoint = target.endpoint.unwrap_or_default();
            let up = a_up.load(Ordering::SeqCst);
            async move {
                if endpoint == A && !up {
                    Err(down())
                } else {
                    Ok(())
                }
            }
        };
        let served = deps.sts_exchange("WebIdentity", &spec, call).await;
        assert_eq!(served.expect("B").endpoint.as_deref(), Some(B));
        a_up.store(true, Ordering::SeqCst);
        let served = deps.sts_exchange("WebIdentity", &spec, call).await;
        assert_eq!(served.expect("A").endpoint.as_deref(), Some(A));
        // A answered: it is no longer remembered as failed.
        assert!(!deps.health().cooling_down(A, Timestamp::now()));
        assert_eq!(deps.health().remembered(), 0);
    }

    #[tokio::test]
    async fn without_endpoints_the_aws_regional_endpoint_is_called_once() {
        let deps = deps(Arc::new(NoSts), Duration::from_secs(30));
        let spec = binding(&[], 0);
        let calls = AtomicUsize::new(0);
        let failed = deps
            .sts_exchange("WebIdentity", &spec, |target| {
                calls.fetch_add(1, Ordering::SeqCst);
                assert_eq!(target.endpoint, None);
                async { Err::<(), _>(down()) }
            })
            .await
            .expect_err("down");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(failed.message, "could not connect to STS");
    }

    /// An STS client for tests that pass their own calls.
    struct NoSts;

    impl crate::sts::StsClient for NoSts {
        fn assume_role_with_web_identity(
            &self,
            _request: crate::sts::WebIdentityRequest,
        ) -> futures::future::BoxFuture<'_, Result<IssuedCredentials, StsError>> {
            Box::pin(async { Err(crate::sts::unsupported("AssumeRoleWithWebIdentity")) })
        }
    }
}

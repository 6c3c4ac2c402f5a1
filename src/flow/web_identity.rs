//! The web identity flow: a TokenRequest for the binding's ServiceAccount, exchanged with STS
//! `AssumeRoleWithWebIdentity`.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::setup_hints;
use super::timed_sts_call;
use super::token::timed_request_token;
use super::{ExchangeRequest, FirstExchange, FlowError};
use crate::metrics::Metrics;
use crate::sts::{AssumeRoleRequest, IssuedCredentials, SharedSts};
use crate::throttle::Throttle;

pub struct WebIdentity {
    pub client: kube::Client,
    pub sts: SharedSts,
    pub throttle: Arc<Throttle>,
    pub metrics: Metrics,
    /// Lifetime requested for ServiceAccount tokens (the apiserver's minimum is 600 s).
    pub token_expiration_seconds: i64,
}

impl WebIdentity {
    pub const NAME: &'static str = "WebIdentity";

    async fn exchange(
        &self,
        request: ExchangeRequest<'_>,
        duration_seconds: i32,
        flow: &'static str,
    ) -> Result<IssuedCredentials, FlowError> {
        let spec = request.spec;
        let token = timed_request_token(
            &self.client,
            &self.throttle,
            &self.metrics,
            request,
            self.token_expiration_seconds,
        )
        .await?;

        let result = timed_sts_call(&self.throttle, &self.metrics, flow, async {
            self.sts
                .assume_role_with_web_identity(AssumeRoleRequest {
                    role_arn: spec.role_arn.clone().unwrap_or_default(),
                    session_name: spec.session_name.clone(),
                    web_identity_token: token.token,
                    duration_seconds,
                    session_policy: spec.session_policy.clone(),
                    policy_arns: spec.policy_arns.clone(),
                    region: spec.region.clone(),
                    endpoint: spec.endpoint.clone(),
                })
                .await
        })
        .await;
        result.map_err(|error| {
            let hint = setup_hints::web_identity(&error, &request);
            FlowError::Sts(error.with_hint(hint))
        })
    }
}

impl FirstExchange for WebIdentity {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn exchange_for<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        Box::pin(self.exchange(request, duration_seconds, flow))
    }
}

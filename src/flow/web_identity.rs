//! The web identity flow: a TokenRequest for the binding's ServiceAccount, exchanged with STS
//! `AssumeRoleWithWebIdentity`.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::deps::{FlowDeps, scope};
use super::error::FlowError;
use super::seam::{ExchangeRequest, FirstExchangeFlow};
use super::setup_hints;
use crate::credentials::IssuedCredentials;
use crate::sts::WebIdentityRequest;

pub struct WebIdentity {
    pub deps: Arc<FlowDeps>,
}

impl WebIdentity {
    async fn run(
        &self,
        request: ExchangeRequest<'_>,
        role_arn: &str,
        duration_seconds: i32,
        flow: &'static str,
    ) -> Result<IssuedCredentials, FlowError> {
        let spec = request.spec;
        let token = self.deps.token(request).await?;
        let result = self
            .deps
            .sts_exchange(flow, spec, |target| {
                self.deps
                    .sts
                    .assume_role_with_web_identity(WebIdentityRequest {
                        role_arn: role_arn.to_string(),
                        session_name: spec.session_name.clone(),
                        web_identity_token: token.token.clone(),
                        scope: scope(spec, duration_seconds),
                        target,
                    })
            })
            .await;
        result.map(|served| served.credentials()).map_err(|error| {
            let hint = setup_hints::web_identity(&error, &request, role_arn);
            FlowError::Sts(error.with_hint(hint))
        })
    }
}

impl FirstExchangeFlow for WebIdentity {
    /// The role to assume.
    type Spec = str;

    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        role_arn: &'a str,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        Box::pin(self.run(request, role_arn, duration_seconds, flow))
    }
}

//! The long-term keys flow: an IAM user's access keys, kept by the cluster admin in an
//! `AWSCredentialSource`, sign `AssumeRole`, `GetFederationToken` or `GetSessionToken` (the
//! binding's `credentialSource.mode`).
//!
//! The ServiceAccount is still proven to exist first, with a TokenRequest like the web identity
//! flow (the token is dropped unused): a binding can only be admitted by someone who may create
//! tokens for it, and the operator does not issue credentials for an account that is gone.

use std::sync::Arc;

use futures::future::BoxFuture;
use secrecy::SecretString;

use super::timed_sts_call;
use super::token::timed_request_token;
use super::{ExchangeRequest, FirstExchange, FlowError};
use crate::api::CredentialSourceMode;
use crate::metrics::Metrics;
use crate::source::{SourceError, Sources};
use crate::spec::ResolvedSpec;
use crate::sts::{
    ChainedAssumeRoleRequest, FederationTokenRequest, IssuedCredentials, SessionTokenRequest,
    SharedSts,
};
use crate::throttle::Throttle;

/// What every mode shares.
pub struct KeysContext {
    pub client: kube::Client,
    pub sts: SharedSts,
    pub throttle: Arc<Throttle>,
    pub metrics: Metrics,
    pub sources: Sources,
    /// Lifetime requested for the ServiceAccount token that proves the account exists.
    pub token_expiration_seconds: i64,
}

/// The first exchange of bindings using one `credentialSource.mode`.
pub struct LongTermKeys {
    pub mode: CredentialSourceMode,
    pub context: Arc<KeysContext>,
}

/// The source's keys for this binding, or why not (the controller checked the same caches a
/// moment ago, but the source may have changed since).
fn keys_of(
    sources: &Sources,
    namespace: &str,
    spec: &ResolvedSpec,
) -> Result<crate::source::LongTermKeys, SourceError> {
    let source = spec
        .credential_source
        .as_ref()
        .ok_or_else(|| SourceError::NotFound(String::new()))?;
    sources.keys_for(&source.name, namespace)
}

impl LongTermKeys {
    async fn exchange(
        &self,
        request: ExchangeRequest<'_>,
        duration_seconds: i32,
        flow: &'static str,
    ) -> Result<IssuedCredentials, FlowError> {
        let ctx = &self.context;
        let spec = request.spec;
        let proof = timed_request_token(
            &ctx.client,
            &ctx.throttle,
            &ctx.metrics,
            request,
            ctx.token_expiration_seconds,
        )
        .await;
        drop(proof?);

        let keys = keys_of(&ctx.sources, request.namespace, spec)?;
        let result = timed_sts_call(&ctx.throttle, &ctx.metrics, flow, async {
            match self.mode {
                CredentialSourceMode::AssumeRole => ctx
                    .sts
                    .assume_role(ChainedAssumeRoleRequest {
                        credentials: IssuedCredentials {
                            access_key_id: keys.access_key_id,
                            secret_access_key: keys.secret_access_key,
                            // Long-term keys: no session token (not role chaining, up to 12 hours).
                            session_token: SecretString::from(String::new()),
                            expiration: jiff::Timestamp::MAX,
                            assumed_role_arn: None,
                            chain: None,
                        },
                        role_arn: spec.role_arn.clone().unwrap_or_default(),
                        session_name: spec.session_name.clone(),
                        external_id: None,
                        duration_seconds,
                        tags: Vec::new(),
                        transitive_tag_keys: Vec::new(),
                        source_identity: None,
                        session_policy: spec.session_policy.clone(),
                        policy_arns: spec.policy_arns.clone(),
                        region: spec.region.clone(),
                        endpoint: spec.endpoint.clone(),
                    })
                    .await
                    .map(|assumed| assumed.credentials),
                CredentialSourceMode::GetFederationToken => {
                    ctx.sts
                        .get_federation_token(FederationTokenRequest {
                            keys,
                            name: spec.session_name.clone(),
                            duration_seconds,
                            session_policy: spec.session_policy.clone(),
                            policy_arns: spec.policy_arns.clone(),
                            region: spec.region.clone(),
                            endpoint: spec.endpoint.clone(),
                        })
                        .await
                }
                CredentialSourceMode::GetSessionToken => {
                    ctx.sts
                        .get_session_token(SessionTokenRequest {
                            keys,
                            duration_seconds,
                            region: spec.region.clone(),
                            endpoint: spec.endpoint.clone(),
                        })
                        .await
                }
            }
        })
        .await;
        Ok(result?)
    }
}

impl FirstExchange for LongTermKeys {
    fn name(&self) -> &'static str {
        self.mode.as_str()
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

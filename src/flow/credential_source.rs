//! The credential source flow: an IAM user's long-term keys, kept by the cluster admin in an
//! `AWSCredentialSource`, sign `AssumeRole`, `GetFederationToken` or `GetSessionToken` (the
//! binding's `credentialSource.mode`).
//!
//! The ServiceAccount is still proven to exist first, with a TokenRequest like the web identity
//! flow (the token is dropped unused): a binding can only be admitted by someone who may create
//! tokens for it, and the operator does not issue credentials for an account that is gone.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::deps::{FlowDeps, Served, scope};
use super::error::FlowError;
use super::seam::{ExchangeRequest, FirstExchangeFlow};
use super::setup_hints;
use crate::credentials::{IssuedCredentials, Signer};
use crate::source::{Grant, Sources};
use crate::spec::{ResolvedSource, SourceCall};
use crate::sts::{AssumeRoleRequest, FederationTokenRequest, SessionTokenRequest};

pub struct CredentialSource {
    pub deps: Arc<FlowDeps>,
    /// The caches of sources and of their Secrets.
    pub sources: Sources,
}

impl CredentialSource {
    async fn run(
        &self,
        request: ExchangeRequest<'_>,
        source: &ResolvedSource,
        duration_seconds: i32,
        flow: &'static str,
    ) -> Result<IssuedCredentials, FlowError> {
        let spec = request.spec;
        self.deps.prove_account(request).await?;
        // The validate step checked the same caches a moment ago (the namespace too), but the
        // source, its grants or its keys may have changed since.
        let grant = Grant::of(source, duration_seconds);
        let keys = self.sources.keys_for(&source.name, None, grant)?;
        let sts = &self.deps.sts;
        let result = match &source.call {
            SourceCall::AssumeRole { role_arn } => self
                .deps
                .sts_exchange(flow, spec, |target| {
                    sts.assume_role(AssumeRoleRequest {
                        // Long-term keys: not role chaining, up to 12 hours.
                        signer: Signer::LongTerm(keys.clone()),
                        role_arn: role_arn.clone(),
                        session_name: spec.session_name.clone(),
                        external_id: None,
                        tags: source.tags.clone(),
                        transitive_tag_keys: source.transitive_tag_keys.clone(),
                        source_identity: None,
                        scope: scope(spec, duration_seconds),
                        target,
                    })
                })
                .await
                .map(|served| {
                    Served {
                        answer: served.answer.credentials,
                        endpoint: served.endpoint,
                    }
                    .credentials()
                })
                .map_err(|e| {
                    let hint = setup_hints::for_role(&e, role_arn, duration_seconds);
                    e.with_hint(hint)
                }),
            SourceCall::GetFederationToken { name } => self
                .deps
                .sts_exchange(flow, spec, |target| {
                    sts.get_federation_token(FederationTokenRequest {
                        keys: keys.clone(),
                        name: name.clone(),
                        tags: source.tags.clone(),
                        scope: scope(spec, duration_seconds),
                        target,
                    })
                })
                .await
                .map(Served::credentials),
            SourceCall::GetSessionToken => self
                .deps
                .sts_exchange(flow, spec, |target| {
                    sts.get_session_token(SessionTokenRequest {
                        keys: keys.clone(),
                        duration_seconds,
                        target,
                    })
                })
                .await
                .map(Served::credentials),
        };
        Ok(result?)
    }
}

impl FirstExchangeFlow for CredentialSource {
    type Spec = ResolvedSource;

    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        source: &'a ResolvedSource,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        Box::pin(self.run(request, source, duration_seconds, flow))
    }
}

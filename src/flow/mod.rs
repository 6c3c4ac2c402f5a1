//! Credential flows: how a binding's identity becomes temporary AWS credentials.
//!
//! Each way of turning the binding's own identity into credentials is one file behind
//! [`FirstExchange`]; a `roleChain` then adds `AssumeRole` hops after whichever first exchange the
//! binding uses ([`role_chain`]). The controller asks [`Flows`] to [`CredentialFlow::exchange`]
//! and renders whatever comes back into the Secret; it knows nothing of tokens, assertions or
//! keys.

pub mod long_term_keys;
pub mod role_chain;
pub mod saml;
pub mod setup_hints;
pub mod token;
pub mod web_identity;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::api::CredentialSourceMode;
use crate::metrics::Metrics;
use crate::retry::RetryClass;
use crate::source::{SourceError, Sources};
use crate::spec::ResolvedSpec;
use crate::sts::{IssuedCredentials, SharedSts, StsError};
use crate::throttle::Throttle;
use long_term_keys::{KeysContext, LongTermKeys};
use role_chain::{HopError, RoleChain};
use saml::{Saml, SamlError};
use token::TokenError;
use web_identity::WebIdentity;

/// What a flow needs to know about one binding.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeRequest<'a> {
    pub namespace: &'a str,
    /// The binding's name (for hints naming the command that fixes a setup mistake).
    pub binding: &'a str,
    pub spec: &'a ResolvedSpec,
}

/// A failed exchange; becomes a condition, an Event and a metric.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Sts(#[from] StsError),
    #[error(transparent)]
    Hop(#[from] HopError),
    #[error(transparent)]
    Saml(#[from] SamlError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl FlowError {
    /// Stable, low-cardinality category (condition reason, Event note, metric label).
    pub fn category(&self) -> &'static str {
        match self {
            FlowError::Token(e) => e.category(),
            FlowError::Sts(e) => e.kind.category(),
            FlowError::Hop(e) => e.category(),
            FlowError::Saml(e) => e.category(),
            FlowError::Source(e) => e.category(),
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            FlowError::Token(e) => e.retry_class(),
            FlowError::Sts(e) => e.kind.retry_class(),
            FlowError::Hop(e) => e.retry_class(),
            FlowError::Saml(e) => e.retry_class(),
            // The source and Secret watches bring the binding back when either changes.
            FlowError::Source(_) => RetryClass::External,
        }
    }

    /// The ServiceAccount whose creation would let the exchange go on, if that is what failed.
    pub fn missing_service_account(&self) -> Option<&str> {
        match self {
            FlowError::Token(TokenError::ServiceAccountNotFound(name)) => Some(name),
            _ => None,
        }
    }
}

/// One STS call of `flow`: within the STS rate limit, timed and counted by outcome.
pub(crate) async fn timed_sts_call<T>(
    throttle: &Throttle,
    metrics: &Metrics,
    flow: &'static str,
    call: impl std::future::Future<Output = Result<T, StsError>>,
) -> Result<T, StsError> {
    throttle.sts().await;
    let started = std::time::Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.kind.category(),
    };
    metrics.observe_sts(flow, outcome, started.elapsed());
    result
}

/// One way of exchanging a binding's own identity (its ServiceAccount, a SAML assertion podcreds
/// signs, an administrator's long-term keys) for credentials: the first STS call of every flow.
pub trait FirstExchange: Send + Sync {
    /// Low-cardinality name of the exchange (logs, metric labels).
    fn name(&self) -> &'static str;

    /// Exchanges the identity `request` names for credentials lasting `duration_seconds`; the
    /// STS call is observed under the metric label `flow` (the flow this exchange is part of).
    fn exchange_for<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>>;
}

/// Exchanges a binding's identity for the credentials its Secret receives.
pub trait CredentialFlow: Send + Sync {
    /// Low-cardinality name of the flow (logs, metric labels).
    fn name(&self) -> &'static str;

    /// Exchanges the identity `request` names for temporary credentials.
    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>>;
}

/// Every flow the operator runs, and the choice between them: each binding's spec decides.
pub struct Flows {
    web_identity: Arc<WebIdentity>,
    saml: Saml,
    role_chain: RoleChain,
    /// One per `credentialSource.mode`, sharing the caches of sources and their Secrets.
    long_term_keys: [LongTermKeys; 3],
}

impl Flows {
    pub fn new(
        client: kube::Client,
        sts: SharedSts,
        throttle: Arc<Throttle>,
        metrics: Metrics,
        token_expiration_seconds: i64,
        sources: Sources,
        saml: crate::saml::SamlSettings,
    ) -> Self {
        let saml = Saml::new(
            client.clone(),
            sts.clone(),
            throttle.clone(),
            metrics.clone(),
            token_expiration_seconds,
            saml,
        );
        let keys = Arc::new(KeysContext {
            client: client.clone(),
            sts: sts.clone(),
            throttle: throttle.clone(),
            metrics: metrics.clone(),
            sources,
            token_expiration_seconds,
        });
        let long_term_keys = [
            CredentialSourceMode::AssumeRole,
            CredentialSourceMode::GetFederationToken,
            CredentialSourceMode::GetSessionToken,
        ]
        .map(|mode| LongTermKeys {
            mode,
            context: keys.clone(),
        });
        let web_identity = Arc::new(WebIdentity {
            client,
            sts: sts.clone(),
            throttle: throttle.clone(),
            metrics: metrics.clone(),
            token_expiration_seconds,
        });
        Self {
            role_chain: RoleChain {
                sts,
                throttle,
                metrics,
            },
            web_identity,
            saml,
            long_term_keys,
        }
    }

    /// The first exchange of a binding whose resolved spec is `spec`.
    pub fn first_exchange(&self, spec: &ResolvedSpec) -> &dyn FirstExchange {
        if spec.saml.is_some() {
            return &self.saml;
        }
        match &spec.credential_source {
            Some(source) => {
                let [assume_role, federation_token, session_token] = &self.long_term_keys;
                match source.mode {
                    CredentialSourceMode::AssumeRole => assume_role,
                    CredentialSourceMode::GetFederationToken => federation_token,
                    CredentialSourceMode::GetSessionToken => session_token,
                }
            }
            None => self.web_identity.as_ref(),
        }
    }
}

impl CredentialFlow for Flows {
    fn name(&self) -> &'static str {
        "ByBinding"
    }

    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        let first = self.first_exchange(request.spec);
        if request.spec.role_chain.is_empty() {
            first.exchange_for(request, request.spec.duration_seconds, first.name())
        } else {
            self.role_chain.exchange_after(first, request)
        }
    }
}

//! Credential flows: how a binding's identity becomes temporary AWS credentials.
//!
//! Each flow is one file behind [`CredentialFlow`]. The controller resolves a binding, asks its
//! flow to [`CredentialFlow::exchange`], and renders whatever comes back into the Secret; it
//! knows nothing of tokens, assertions or keys.

pub mod token;
pub mod web_identity;

use futures::future::BoxFuture;

use crate::retry::RetryClass;
use crate::spec::ResolvedSpec;
use crate::sts::{IssuedCredentials, StsError};
use token::TokenError;

/// What a flow needs to know about one binding.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeRequest<'a> {
    pub namespace: &'a str,
    pub spec: &'a ResolvedSpec,
}

/// A failed exchange; becomes a condition, an Event and a metric.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Sts(#[from] StsError),
}

impl FlowError {
    /// Stable, low-cardinality category (condition reason, Event note, metric label).
    pub fn category(&self) -> &'static str {
        match self {
            FlowError::Token(e) => e.category(),
            FlowError::Sts(e) => e.kind.category(),
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            FlowError::Token(e) => e.retry_class(),
            FlowError::Sts(e) => e.kind.retry_class(),
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

/// One way of exchanging a binding's identity for credentials.
pub trait CredentialFlow: Send + Sync {
    /// Low-cardinality name of the flow (logs, metric labels).
    fn name(&self) -> &'static str;

    /// Exchanges the identity `request` names for temporary credentials.
    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>>;
}

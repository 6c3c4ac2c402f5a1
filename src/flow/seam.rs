//! The seams of the flows: what the controller calls ([`CredentialFlow`]), and the one
//! interface every first exchange implements ([`FirstExchangeFlow`]).

use futures::future::BoxFuture;

use super::error::FlowError;
use crate::credentials::IssuedCredentials;
use crate::spec::ResolvedSpec;

/// What a flow needs to know about one binding.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeRequest<'a> {
    pub namespace: &'a str,
    /// The binding's name (for hints naming the command that fixes a setup mistake).
    pub binding: &'a str,
    pub spec: &'a ResolvedSpec,
}

/// One way of exchanging a binding's own identity (its ServiceAccount's token, a SAML assertion
/// podcreds signs, an administrator's long-term keys) for credentials: the first STS call of
/// every flow. `Spec` is what the resolved spec says of this exchange (its variant of
/// [`crate::spec::FirstExchange`]).
pub trait FirstExchangeFlow: Send + Sync {
    type Spec: ?Sized;

    /// Exchanges the identity `request` names for credentials lasting `duration_seconds`; the
    /// STS call is observed under the metric label `flow` (the flow this exchange is part of).
    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        spec: &'a Self::Spec,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>>;
}

/// Exchanges a binding's identity for the credentials its Secret receives.
pub trait CredentialFlow: Send + Sync {
    /// Exchanges the identity `request` names for temporary credentials.
    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>>;
}

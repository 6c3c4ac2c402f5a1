//! Credential flows: how a binding's identity becomes temporary AWS credentials.
//!
//! Each way of turning the binding's own identity into credentials is one file behind
//! [`FirstExchangeFlow`], chosen by the binding's resolved [`crate::spec::FirstExchange`] in one
//! exhaustive match ([`flows`]); a `roleChain` then adds `AssumeRole` hops ([`role_chain`]).
//! Every flow takes its dependencies and its common steps (prove the ServiceAccount, ask for its
//! token, one timed and rate-limited STS call) from [`FlowDeps`]. The controller asks a
//! [`CredentialFlow`] to exchange and renders whatever comes back into the Secret; it knows
//! nothing of tokens, assertions or keys.

pub mod credential_source;
mod deps;
mod error;
mod flows;
pub mod role_chain;
pub mod roles_anywhere;
pub mod saml;
mod seam;
pub mod setup_hints;
pub mod token;
pub mod web_identity;

pub use deps::FlowDeps;
pub use error::{FlowError, HopError, RolesAnywhereError, SamlError};
pub use flows::Flows;
pub use seam::{CredentialFlow, ExchangeRequest, FirstExchangeFlow};

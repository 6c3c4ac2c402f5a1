//! The STS edge: every STS action podcreds calls (and Roles Anywhere's `CreateSession`), behind one trait ([`StsClient`]) so the
//! emulator, moto or real AWS can stand behind it, and the AWS SDK implementation
//! ([`sdk::AwsStsClient`]). Credential flows ([`crate::flow`]) decide what to call; this module
//! only speaks to STS.

mod ecr;
mod error;
mod proxy;
mod requests;
mod rolesanywhere;
mod sdk;
mod sdk_error;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::credentials::IssuedCredentials;
pub use ecr::{
    EcrClient, EcrError, HttpEcrClient, PullToken, PullTokenRequest,
    default_endpoint as default_ecr_endpoint,
};
pub use error::{StsError, StsErrorKind};
pub use proxy::{ProxyError, StsProxy};
pub use requests::{
    AssumeRoleRequest, AssumedRole, FederationTokenRequest, RolesAnywhereRequest, SamlRequest,
    SessionScope, SessionTokenRequest, StsTarget, WebIdentityRequest,
};
pub use rolesanywhere::RolesAnywhereClient;
pub use sdk::{AwsStsClient, StsTimeouts};

/// The STS actions podcreds calls. Implementations other than the AWS SDK's (test doubles) may
/// implement only some: the others refuse as unsupported.
pub trait StsClient: Send + Sync {
    fn assume_role_with_web_identity(
        &self,
        request: WebIdentityRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>>;

    /// `AssumeRoleWithSAML`. Clients that only exchange tokens refuse.
    fn assume_role_with_saml(
        &self,
        _request: SamlRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async { Err(unsupported("AssumeRoleWithSAML")) })
    }

    /// `GetFederationToken` signed with `request.keys`. Clients that only exchange tokens refuse.
    fn get_federation_token(
        &self,
        _request: FederationTokenRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async { Err(unsupported("GetFederationToken")) })
    }

    /// `GetSessionToken` signed with `request.keys`. Clients that only exchange tokens refuse.
    fn get_session_token(
        &self,
        _request: SessionTokenRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async { Err(unsupported("GetSessionToken")) })
    }

    /// `AssumeRole` signed with `request.signer`. Clients that only exchange tokens refuse.
    fn assume_role(
        &self,
        _request: AssumeRoleRequest,
    ) -> BoxFuture<'_, Result<AssumedRole, StsError>> {
        Box::pin(async { Err(unsupported("AssumeRole")) })
    }

    /// IAM Roles Anywhere `CreateSession` (not STS, but the same kind of exchange: credentials
    /// for a role). Clients that only exchange tokens refuse.
    fn create_session(
        &self,
        _request: RolesAnywhereRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async { Err(unsupported("CreateSession")) })
    }
}

pub fn unsupported(action: &str) -> StsError {
    StsError::new(
        StsErrorKind::InvalidRequest,
        Some("UnsupportedOperation"),
        &format!("this STS client does not call {action}"),
    )
}

/// Shared handle to whichever STS implementation is in use.
pub type SharedSts = Arc<dyn StsClient>;

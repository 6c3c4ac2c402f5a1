//! How an exchange fails: each error carries its stable category (condition reason, Event reason,
//! metric label) and its retry class.

use super::token::TokenError;
use crate::keyring::{KeyError, StoreError};
use crate::retry::RetryClass;
use crate::rolesanywhere::CertificateError;
use crate::source::SourceError;
use crate::sts::StsError;

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
    #[error(transparent)]
    RolesAnywhere(#[from] RolesAnywhereError),
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
            FlowError::RolesAnywhere(e) => e.category(),
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
            FlowError::RolesAnywhere(e) => e.retry_class(),
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

/// A refused `AssumeRole` hop: which one, what STS said, and what to look at.
#[derive(Debug, thiserror::Error)]
#[error("roleChain[{index}] ({role_arn}): {error}{hint}")]
pub struct HopError {
    pub index: usize,
    pub role_arn: String,
    pub error: StsError,
    /// Empty, or what the trust policy of the hop's role must allow, starting with "; ".
    pub hint: String,
}

impl HopError {
    /// Expired signing credentials on a hop mean the previous session ran out between two
    /// calls: the next attempt starts a new chain, so it is worth retrying soon.
    fn signing_credentials_expired(&self) -> bool {
        matches!(
            self.error.code.as_deref(),
            Some("ExpiredToken" | "ExpiredTokenException")
        )
    }

    pub fn category(&self) -> &'static str {
        if self.signing_credentials_expired() {
            "StsExpiredToken"
        } else {
            self.error.kind.category()
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        if self.signing_credentials_expired() {
            RetryClass::Transient
        } else {
            self.error.kind.retry_class()
        }
    }
}

/// Why a SAML exchange failed before or instead of an ordinary STS error.
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error(
        "SAML is not enabled: ask the cluster admin to run the operator with --saml-enabled (chart value saml.enabled)"
    )]
    NotConfigured,
    #[error(transparent)]
    Key(#[from] StoreError),
    #[error("the SAML assertion could not be signed: {0}")]
    Sign(#[from] KeyError),
    /// STS refused a freshly signed assertion: IAM does not know the signing certificate or the
    /// issuer, which is what an out-of-date metadata document looks like.
    #[error(
        "SAML provider metadata out of date: re-upload `podcreds saml-metadata` to {provider_arn} (STS {code}: {message})"
    )]
    Rejected {
        provider_arn: String,
        code: String,
        message: String,
    },
}

impl SamlError {
    pub fn category(&self) -> &'static str {
        match self {
            SamlError::NotConfigured => "SamlNotConfigured",
            SamlError::Key(_) | SamlError::Sign(_) => "SamlKeyUnavailable",
            SamlError::Rejected { .. } => "SamlAssertionRejected",
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            SamlError::NotConfigured | SamlError::Rejected { .. } => RetryClass::External,
            SamlError::Key(_) | SamlError::Sign(_) => RetryClass::Transient,
        }
    }
}

/// Why a Roles Anywhere exchange failed before or instead of an ordinary refusal.
#[derive(Debug, thiserror::Error)]
pub enum RolesAnywhereError {
    #[error(
        "podcreds is not a Roles Anywhere CA here: ask the cluster admin to run the operator with --rolesanywhere-enabled (chart value rolesAnywhere.enabled), or name a kubernetes.io/tls Secret in spec.rolesAnywhere.certificateSecretName"
    )]
    NotConfigured,
    #[error("the Roles Anywhere CA key is unavailable: {0}")]
    Key(#[from] StoreError),
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error(
        "the certificate Secret {0:?} does not exist in the binding's namespace (spec.rolesAnywhere.certificateSecretName)"
    )]
    SecretNotFound(String),
    #[error("the certificate Secret {name:?} cannot be read: {reason}")]
    SecretUnreadable { name: String, reason: String },
    /// Roles Anywhere refused the certificate, the trust anchor or the profile.
    #[error("Roles Anywhere {code}: {message}; {hint}")]
    Rejected {
        code: String,
        message: String,
        hint: String,
    },
}

impl RolesAnywhereError {
    pub fn category(&self) -> &'static str {
        match self {
            RolesAnywhereError::NotConfigured => "RolesAnywhereNotConfigured",
            RolesAnywhereError::Key(_) => "RolesAnywhereCaUnavailable",
            RolesAnywhereError::Certificate(CertificateError::Issue(_)) => {
                "RolesAnywhereCaUnavailable"
            }
            RolesAnywhereError::Certificate(_)
            | RolesAnywhereError::SecretNotFound(_)
            | RolesAnywhereError::SecretUnreadable { .. } => "RolesAnywhereCertificateInvalid",
            RolesAnywhereError::Rejected { .. } => "RolesAnywhereCertificateRejected",
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            RolesAnywhereError::Key(_)
            | RolesAnywhereError::Certificate(CertificateError::Issue(_))
            | RolesAnywhereError::SecretUnreadable { .. } => RetryClass::Transient,
            _ => RetryClass::External,
        }
    }
}

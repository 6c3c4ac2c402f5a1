//! Why a binding cannot use its credential source.

use super::keys::KeysError;

/// Why a binding cannot use its credential source. Each names the fix; none carries key material.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error(
        "AWSCredentialSource {0:?} does not exist; ask the cluster admin to create it, or fix spec.credentialSource.name"
    )]
    NotFound(String),
    #[error(
        "AWSCredentialSource {name:?} does not allow namespace {namespace:?} (spec.allowedNamespaces); ask the cluster admin to add it"
    )]
    NotAllowed { name: String, namespace: String },
    #[error(
        "the Secret {secret:?} of AWSCredentialSource {name:?} does not exist in the operator's namespace; the cluster admin must create it there"
    )]
    SecretMissing { name: String, secret: String },
    #[error(
        "the Secret {secret:?} of AWSCredentialSource {name:?} {problem}; the cluster admin must fix it"
    )]
    SecretInvalid {
        name: String,
        secret: String,
        problem: KeysError,
    },
    #[error(
        "AWSCredentialSource {name:?} belongs to the podcreds installation in namespace {owner:?} (spec.secretRef.namespace), not to this one in {operator:?}"
    )]
    OtherInstallation {
        name: String,
        owner: String,
        operator: String,
    },
    #[error(
        "this operator serves no credential sources: the cluster admin must run it with --namespace (its own, where source Secrets live; the chart sets it) and --credential-sources=true (chart: rbac.scope=cluster)"
    )]
    NoOperatorNamespace,
    #[error(
        "AWSCredentialSource {name:?} does not allow mode {mode} (spec.allowedModes: {allowed}); ask the cluster admin to allow it, or use another mode"
    )]
    ModeNotAllowed {
        name: String,
        mode: &'static str,
        allowed: String,
    },
    #[error(
        "AWSCredentialSource {name:?} does not allow AssumeRole of {role} (spec.allowedRoleArns); ask the cluster admin to add it"
    )]
    RoleNotAllowed { name: String, role: String },
    #[error(
        "AWSCredentialSource {name:?} grants sessions of at most {max} seconds (spec.maxDurationSeconds), and durationSeconds asks for {asked}"
    )]
    DurationNotAllowed { name: String, asked: i32, max: i32 },
}

impl SourceError {
    /// Stable, low-cardinality category (condition reason, Event reason, metric label).
    pub fn category(&self) -> &'static str {
        match self {
            SourceError::NotFound(_) => "CredentialSourceNotFound",
            SourceError::NotAllowed { .. } => "CredentialSourceNotAllowed",
            SourceError::SecretMissing { .. } => "CredentialSourceSecretMissing",
            SourceError::SecretInvalid { .. } => "CredentialSourceSecretInvalid",
            SourceError::NoOperatorNamespace | SourceError::OtherInstallation { .. } => {
                "CredentialSourceUnavailable"
            }
            SourceError::ModeNotAllowed { .. } => "CredentialSourceModeNotAllowed",
            SourceError::RoleNotAllowed { .. } => "CredentialSourceRoleNotAllowed",
            SourceError::DurationNotAllowed { .. } => "CredentialSourceDurationNotAllowed",
        }
    }
}

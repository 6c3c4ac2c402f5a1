//! The custom resources podcreds serves (`podcreds.dev/v1alpha1`), one file per resource and
//! per section of the binding's spec.
//!
//! The CRDs under `crds/` are generated from these types (`podcreds crd`). Validation lives in the
//! schema (OpenAPI patterns plus CEL rules) so the apiserver rejects a bad binding at admission;
//! the operator re-checks the same rules (see [`crate::spec`]) in case an older CRD is installed.

mod binding;
mod credential_source;
mod image_pull;
mod role_chain;
mod roles_anywhere;
mod saml;
mod sts;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use binding::{
    AWSRoleBinding, AWSRoleBindingSpec, AWSRoleBindingStatus, BlockedEviction, ChainHopStatus,
    ConsumersStatus, ImagePullSecretStatus, RestartStaleConsumers,
};
pub use credential_source::{
    AWSCredentialSource, AWSCredentialSourceSpec, AWSCredentialSourceStatus, CredentialSourceMode,
    CredentialSourceRef, SecretReference,
};
pub use image_pull::ImagePullSecret;
pub use role_chain::{RoleChainHop, SessionTag};
pub use roles_anywhere::RolesAnywhereExchange;
pub use saml::SamlExchange;
pub use sts::{StsProvider, StsSettings};

/// Default `mountPath`: where the documented pod examples mount the Secret.
pub const DEFAULT_MOUNT_PATH: &str = "/var/run/secrets/podcreds";
/// Default requested session length, as AWS's own default for `AssumeRoleWithWebIdentity`.
pub const DEFAULT_DURATION_SECONDS: i32 = 3600;
/// Annotation on a binding asking for an immediate exchange: any new value (`podcreds refresh`
/// writes the current time) is acted on once, and recorded in `status.lastHandledRefreshRequest`.
pub const REFRESH_REQUEST_ANNOTATION: &str = "podcreds.dev/refresh-requested-at";
/// Longest refresh request value the operator keeps; a longer one is cut to this many bytes.
pub const MAX_REFRESH_REQUEST_LEN: usize = 128;

fn default_duration_seconds() -> i32 {
    DEFAULT_DURATION_SECONDS
}

/// How a binding's credentials reach its pods (`spec.delivery`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Written into the binding's Secret, for pods that mount it.
    Secret,
    /// Served by the node agent at `http://169.254.170.23/v1/credentials/<binding>` to the
    /// binding's pods (AWS container-credentials protocol); never written to the cluster.
    Endpoint,
}

fn default_delivery() -> Vec<Delivery> {
    vec![Delivery::Secret]
}

fn default_mount_path() -> String {
    DEFAULT_MOUNT_PATH.to_string()
}

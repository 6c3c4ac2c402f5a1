//! The `AWSCredentialSource` custom resource (cluster-scoped): an IAM user's long-term keys that
//! bindings of the allowed namespaces may derive credentials from; and how a binding names one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::patterns;

/// Which `AWSCredentialSource` a binding uses, and how.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new("!has(self.mfaSerialNumber)").message(
    "MFA is not supported: GetSessionToken with MFA needs a one-time code typed by a person, which an unattended operator cannot provide; use GetSessionToken without MFA, or AssumeRole into a role whose trust policy does not require MFA"
).field_path(".mfaSerialNumber"))]
#[serde(rename_all = "camelCase")]
pub struct CredentialSourceRef {
    /// Name of the (cluster-scoped) `AWSCredentialSource`; it must list this namespace in
    /// `allowedNamespaces`.
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DNS_SUBDOMAIN))]
    pub name: String,

    /// The STS call made with the source's keys: `AssumeRole` (the default; the binding's
    /// `roleArn`, up to 12 hours, then any `roleChain`), `GetFederationToken` (needs
    /// `sessionPolicy` or `policyArns`; up to 36 hours) or `GetSessionToken` (the IAM user's own
    /// permissions; up to 36 hours).
    #[serde(default)]
    pub mode: CredentialSourceMode,

    /// Always refused: MFA needs a one-time code from a person (see the validation message).
    /// The field exists so that asking for MFA fails loudly instead of being ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub mfa_serial_number: Option<String>,
}

/// The STS call a credential source's keys sign.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum CredentialSourceMode {
    /// `AssumeRole` of the binding's `roleArn`, signed with the IAM user's keys.
    #[default]
    AssumeRole,
    /// `GetFederationToken`: a federated user session scoped by the binding's session policy.
    GetFederationToken,
    /// `GetSessionToken`: a session with the IAM user's own permissions.
    GetSessionToken,
}

impl CredentialSourceMode {
    /// The mode's name (the `flow` metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialSourceMode::AssumeRole => "AssumeRole",
            CredentialSourceMode::GetFederationToken => "GetFederationToken",
            CredentialSourceMode::GetSessionToken => "GetSessionToken",
        }
    }
}

/// An IAM user's long-term access keys, kept by the cluster admin in a Secret of the operator's
/// namespace, that bindings of the allowed namespaces may derive temporary credentials from.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "podcreds.dev",
    version = "v1alpha1",
    kind = "AWSCredentialSource",
    plural = "awscredentialsources",
    singular = "awscredentialsource",
    shortname = "awscs",
    category = "podcreds",
    status = "AWSCredentialSourceStatus",
    derive = "PartialEq",
    doc = "An IAM user's long-term access keys (in a Secret of the operator's namespace) from which bindings of the allowed namespaces get temporary credentials.",
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretRef.name"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AWSCredentialSourceSpec {
    /// The Secret holding the keys, in the operator's own namespace (never a tenant's): data keys
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub secret_ref: SecretReference,

    /// Namespaces whose bindings may use this source: exact names, `*` for every namespace, or
    /// a prefix followed by `*` (`team-*`). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(regex(pattern = patterns::NAMESPACE_PATTERN)))]
    pub allowed_namespaces: Vec<String>,

    /// Namespaces whose labels match this selector may use the source too (`matchLabels`,
    /// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`). Unlike a `team-*`
    /// pattern, it does not admit a namespace a tenant creates later under a matching name:
    /// only one the cluster admin labelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespace_selector: Option<LabelSelector>,

    /// The STS calls bindings may make with the keys. By default `AssumeRole` only: the role's
    /// trust policy and `allowedRoleArns` then bound what a binding gets. `GetSessionToken` hands
    /// out the IAM user's own permissions (with which the holder can assume every role that trusts
    /// the user) and `GetFederationToken` a session scoped only by the binding's session policy:
    /// allow them only where every allowed namespace may have that much, and each namespace must
    /// also list the grant in its role allowlist (`podcreds:credential-source/<name>/<mode>`).
    #[serde(default = "default_allowed_modes")]
    #[schemars(length(min = 1, max = 3))]
    pub allowed_modes: Vec<CredentialSourceMode>,

    /// Role ARN patterns `AssumeRole` may name (the syntax of the namespace role allowlist: `*`
    /// within one path segment, `**` across). Empty: any role whose trust policy trusts the IAM
    /// user (and that the binding's namespace allows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 2048)))]
    pub allowed_role_arns: Vec<String>,

    /// Longest session a binding may ask for, in seconds (900 to 129600). Defaults to 43200, the
    /// most `AssumeRole` grants: raise it for the 36-hour modes.
    #[serde(default = "default_max_duration_seconds")]
    #[schemars(range(min = 900, max = 129600))]
    pub max_duration_seconds: i32,
}

impl Default for AWSCredentialSourceSpec {
    fn default() -> Self {
        Self {
            secret_ref: SecretReference::default(),
            allowed_namespaces: Vec::new(),
            allowed_namespace_selector: None,
            allowed_modes: default_allowed_modes(),
            allowed_role_arns: Vec::new(),
            max_duration_seconds: DEFAULT_SOURCE_MAX_DURATION_SECONDS,
        }
    }
}

/// What a source grants without saying more: `AssumeRole` only.
pub fn default_allowed_modes() -> Vec<CredentialSourceMode> {
    vec![CredentialSourceMode::AssumeRole]
}

/// The longest session a source grants without saying more.
pub const DEFAULT_SOURCE_MAX_DURATION_SECONDS: i32 = 43200;

fn default_max_duration_seconds() -> i32 {
    DEFAULT_SOURCE_MAX_DURATION_SECONDS
}

/// A Secret of the operator's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DNS_SUBDOMAIN))]
    pub name: String,
    /// The namespace the podcreds operator runs in (the chart's release namespace). Only the
    /// installation running there reads the Secret, serves the source and reports its status;
    /// another installation in the same cluster leaves the source alone.
    #[schemars(length(min = 1, max = 63), regex(pattern = patterns::DNS_LABEL))]
    pub namespace: String,
}

/// Observed state of an `AWSCredentialSource`: never the keys.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AWSCredentialSourceStatus {
    /// `Ready` is True while the Secret exists and holds well-formed keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

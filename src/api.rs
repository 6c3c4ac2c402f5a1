//! The `AWSRoleBinding` custom resource (`podcreds.dev/v1alpha1`).
//!
//! The CRD under `crds/` is generated from these types (`podcreds crd`). Validation lives in the
//! schema (OpenAPI patterns plus CEL rules) so the apiserver rejects a bad binding at admission;
//! the operator re-checks the same rules (see [`crate::spec`]) in case an older CRD is installed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::patterns;

/// Default `mountPath`: where the documented pod examples mount the Secret.
pub const DEFAULT_MOUNT_PATH: &str = "/var/run/secrets/podcreds";
/// Default requested session length, as AWS's own default for `AssumeRoleWithWebIdentity`.
pub const DEFAULT_DURATION_SECONDS: i32 = 3600;

fn default_duration_seconds() -> i32 {
    DEFAULT_DURATION_SECONDS
}

fn default_mount_path() -> String {
    DEFAULT_MOUNT_PATH.to_string()
}

/// Binds a ServiceAccount in this namespace to an AWS IAM role.
///
/// podcreds requests a short-lived token for the ServiceAccount, exchanges it with AWS STS
/// `AssumeRoleWithWebIdentity` and keeps the temporary credentials fresh in a Secret that
/// workloads mount.
// Each `printcolumn(...)` repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "podcreds.dev",
    version = "v1alpha1",
    kind = "AWSRoleBinding",
    plural = "awsrolebindings",
    singular = "awsrolebinding",
    shortname = "awsrb",
    category = "podcreds",
    namespaced,
    status = "AWSRoleBindingStatus",
    derive = "PartialEq",
    doc = "Binds a ServiceAccount of this namespace to an AWS IAM role; podcreds keeps short-lived credentials for the role in a Secret.",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.roleArn"),
    printcolumn(
        name = "ServiceAccount",
        type_ = "string",
        json_path = ".spec.serviceAccountName"
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    // A string, not a date: kubectl renders future dates as "<invalid>".
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiration"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.renewBefore) || duration(self.renewBefore).getSeconds() < self.durationSeconds"
).message("renewBefore must be shorter than durationSeconds").field_path(".renewBefore"))]
#[x_kube(validation = kube::core::Rule::new(patterns::role_arn_cel_rule()).message(
    "roleArn must be a role ARN of the binding's sts.provider: arn:aws:iam::123456789012:role/name (AWS, any partition; the default), arn:minio:iam:::role/<id> (MinIO) or arn:aws:iam::<tenant, or empty>:role/name (CephRGW)"
).field_path(".roleArn"))]
#[serde(rename_all = "camelCase")]
pub struct AWSRoleBindingSpec {
    /// Name of the ServiceAccount, in this binding's namespace, whose identity is exchanged for AWS
    /// credentials. AWS checks the token subject `system:serviceaccount:<namespace>:<name>` against
    /// the role's trust policy. A ServiceAccount of another namespace can never be named.
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DNS_SUBDOMAIN))]
    pub service_account_name: String,

    /// ARN of the role to assume. For AWS (the default `sts.provider`) an IAM role ARN in any
    /// partition, for example `arn:aws:iam::123456789012:role/app-reader` or
    /// `arn:aws-cn:iam::123456789012:role/path/app`. With `sts.provider: MinIO` the role ARN MinIO
    /// prints at start (`arn:minio:iam:::role/<id>`); with `sts.provider: CephRGW` a Ceph role ARN
    /// (`arn:aws:iam:::role/<name>` in the default tenant, `arn:aws:iam::<tenant>:role/<name>`).
    #[schemars(length(min = 1, max = 2048))]
    pub role_arn: String,

    /// Name of the Secret that receives the credentials, in this namespace. Defaults to the
    /// binding's name. podcreds never writes to a Secret that another owner already holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DNS_SUBDOMAIN))]
    pub secret_name: Option<String>,

    /// Audience of the ServiceAccount token. Defaults to the operator's configured audience
    /// (`sts.amazonaws.com`). Values other than the default are honoured only when the cluster
    /// admin allowed them in the operator's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = patterns::AUDIENCE))]
    pub audience: Option<String>,

    /// Requested session length in seconds, 900 to 43200. STS may grant less (the role's maximum
    /// session duration); podcreds always trusts the `Expiration` STS returns.
    #[serde(default = "default_duration_seconds")]
    #[schemars(range(min = 900, max = 43200))]
    pub duration_seconds: i32,

    /// How long before expiry the credentials are refreshed, as a duration such as `20m` or
    /// `1h30m`. By default podcreds refreshes at two thirds of the granted lifetime, moved earlier
    /// by a jitter of up to 10% of the lifetime so that many bindings do not refresh at once. The
    /// margin matters: SDKs re-run `credential_process` about 15 minutes before expiry and the
    /// kubelet needs 1-2 minutes to propagate a Secret update into a mounted volume, so a value
    /// under about 20 minutes risks pods briefly holding credentials their SDK considers stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = patterns::DURATION))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('60s')").message("renewBefore must be at least 60s"))]
    pub renew_before: Option<String>,

    /// Role session name, shown in CloudTrail: 2 to 64 characters of letters, digits and
    /// `_+=,.@-`, starting with `<namespace>.` unless the cluster admin allows any name.
    /// Defaults to `<namespace>.<binding name>`; a longer one is cut to 64 characters ending in
    /// `_` and a hash, so no two bindings share a session name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::SESSION_NAME))]
    pub session_name: Option<String>,

    /// Inline IAM session policy (JSON, at most 2048 characters) that scopes the session down
    /// to a subset of the role's permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^\\\\s*\\\\{')").message("sessionPolicy must be a JSON object"))]
    pub session_policy: Option<String>,

    /// ARNs of managed policies (at most 10) that scope the session down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10), inner(length(max = 2048)))]
    #[x_kube(validation = kube::core::Rule::new(patterns::policy_arns_cel_rule()).message("every policyArns entry must be an IAM policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess"))]
    pub policy_arns: Option<Vec<String>>,

    /// Per-binding STS settings overriding the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts: Option<StsSettings>,

    /// Where pods mount the Secret. Used in the generated AWS `config` file, whose
    /// `credential_process` reads `<mountPath>/credential-process.json`.
    #[serde(default = "default_mount_path")]
    #[schemars(length(min = 1, max = 512), regex(pattern = patterns::MOUNT_PATH))]
    #[x_kube(validation = kube::core::Rule::new("!self.contains('..')").message("mountPath must not contain '..'"))]
    pub mount_path: String,
}

/// The kind of STS service behind the endpoint: `AWS` (the default), `MinIO` or `CephRGW`. It
/// selects which `roleArn` form is accepted; `MinIO` and `CephRGW` need an endpoint that is not
/// AWS (`sts.endpoint`, or the operator's `--sts-endpoint`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StsProvider {
    /// AWS STS, or a service that takes AWS role ARNs (a 12-digit account).
    #[default]
    #[serde(rename = "AWS")]
    Aws,
    /// MinIO: role ARNs `arn:minio:iam:[region]::role/<id>`.
    #[serde(rename = "MinIO")]
    MinIo,
    /// Ceph RGW: role ARNs `arn:aws:iam::[tenant]:role/[path/]name`.
    #[serde(rename = "CephRGW")]
    CephRgw,
}

/// STS settings of one binding.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.provider) || self.provider == 'AWS' || !has(self.endpoint) || !isURL(self.endpoint) || !(url(self.endpoint).getHostname().endsWith('.amazonaws.com') || url(self.endpoint).getHostname().endsWith('.amazonaws.com.cn'))"
).message("an STS-compatible provider (MinIO, CephRGW) cannot name an AWS endpoint").field_path(".provider"))]
#[serde(rename_all = "camelCase")]
pub struct StsSettings {
    /// The kind of STS service behind the endpoint (see [`StsProvider`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<StsProvider>,

    /// AWS region for the STS call and the generated `config` (for example `eu-west-1`).
    /// Regional STS endpoints are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = patterns::REGION))]
    pub region: Option<String>,

    /// STS endpoint URL, for STS-compatible services such as MinIO or Ceph RGW. Honoured only
    /// when the cluster admin allowed it in the operator's configuration: the ServiceAccount
    /// token is sent there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = kube::core::Rule::new("isURL(self) && url(self).getScheme() in ['https', 'http']").message("endpoint must be an http(s) URL"))]
    pub endpoint: Option<String>,
}

/// Observed state of an `AWSRoleBinding`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AWSRoleBindingStatus {
    /// `Ready` is True while the Secret holds valid credentials for the current spec. `Degraded`
    /// is True while refreshing fails (the credentials in the Secret may still be valid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the credentials in the Secret expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Time>,
    /// When podcreds will next refresh the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,
    /// When credentials were last issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<Time>,
    /// The assumed-role ARN STS reported (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_role_arn: Option<String>,
    /// Name of the Secret holding the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// UID of the Secret podcreds created under `secretName`. Only that exact Secret is ever
    /// deleted when `secretName` changes: a Secret someone else labelled and pointed at this
    /// binding is never taken for podcreds' own.
    #[serde(default, rename = "secretUID", skip_serializing_if = "Option::is_none")]
    pub secret_uid: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

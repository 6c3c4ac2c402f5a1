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
/// Annotation on a binding asking for an immediate exchange: any new value (`podcreds refresh`
/// writes the current time) is acted on once, and recorded in `status.lastHandledRefreshRequest`.
pub const REFRESH_REQUEST_ANNOTATION: &str = "podcreds.dev/refresh-requested-at";
/// Longest refresh request value the operator keeps; a longer one is cut to this many bytes.
pub const MAX_REFRESH_REQUEST_LEN: usize = 128;

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
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.kubernetesSessionTags) || !self.kubernetesSessionTags || (has(self.roleChain) && size(self.roleChain) > 0)"
).message("kubernetesSessionTags needs a roleChain: the tags go on its first AssumeRole hop").field_path(".kubernetesSessionTags"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.kubernetesSessionTags) || !self.kubernetesSessionTags || !has(self.roleChain) || size(self.roleChain) == 0 || ((!has(self.roleChain[0].tags) || size(self.roleChain[0].tags) <= 46) && (!has(self.roleChain[0].transitiveTagKeys) || size(self.roleChain[0].transitiveTagKeys) <= 46))"
).message("with kubernetesSessionTags the first roleChain hop takes at most 46 tags and 46 transitiveTagKeys of its own: podcreds adds 4 of each, and STS takes at most 50").field_path(".roleChain"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.saml) || !has(self.credentialSource)"
).message("saml and credentialSource are two different first exchanges: set one of them").field_path(".saml"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.saml) || !has(self.sts) || !has(self.sts.provider) || self.sts.provider == 'AWS'"
).message("saml needs sts.provider AWS").field_path(".saml"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.saml) || !has(self.saml.sourceIdentity) || !has(self.roleChain) || size(self.roleChain) == 0 || !has(self.roleChain[0].sourceIdentity)"
).message("saml.sourceIdentity already sets the source identity; STS keeps it for the whole chain").field_path(".roleChain"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.roleChain) || size(self.roleChain) == 0 || !has(self.sts) || !has(self.sts.provider) || self.sts.provider == 'AWS'"
).message("roleChain needs sts.provider AWS").field_path(".roleChain"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.renewBefore) || !has(self.roleChain) || size(self.roleChain) == 0 || duration(self.renewBefore).getSeconds() < 3600"
).message("with a roleChain renewBefore must be shorter than one hour: STS caps chained sessions at 3600 seconds").field_path(".renewBefore"))]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.roleArn) || (has(self.credentialSource) && has(self.credentialSource.mode) && self.credentialSource.mode != 'AssumeRole')"
).message("roleArn is required (only credentialSource modes GetFederationToken and GetSessionToken assume no role)").field_path(".roleArn"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.roleArn) || !has(self.credentialSource) || !has(self.credentialSource.mode) || self.credentialSource.mode == 'AssumeRole'"
).message("credentialSource modes GetFederationToken and GetSessionToken assume no role: remove roleArn, or use mode AssumeRole").field_path(".roleArn"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.credentialSource) || !has(self.credentialSource.mode) || self.credentialSource.mode != 'GetFederationToken' || has(self.sessionPolicy) || (has(self.policyArns) && size(self.policyArns) > 0)"
).message("GetFederationToken needs sessionPolicy or policyArns: without a session policy the federated credentials have no permissions at all").field_path(".credentialSource.mode"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.credentialSource) || !has(self.credentialSource.mode) || self.credentialSource.mode != 'GetSessionToken' || (!has(self.sessionPolicy) && (!has(self.policyArns) || size(self.policyArns) == 0))"
).message("GetSessionToken takes no session policy: remove sessionPolicy and policyArns (the credentials have the IAM user's permissions)").field_path(".credentialSource.mode"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.sessionName) || !has(self.credentialSource) || !has(self.credentialSource.mode) || self.credentialSource.mode == 'AssumeRole'"
).message("sessionName is only used by AssumeRole: GetFederationToken derives its Name from the namespace and binding, GetSessionToken has none").field_path(".sessionName"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.durationSeconds <= 43200 || (has(self.credentialSource) && has(self.credentialSource.mode) && self.credentialSource.mode in ['GetFederationToken', 'GetSessionToken'])"
).message("durationSeconds above 43200 needs credentialSource mode GetFederationToken or GetSessionToken (up to 129600)").field_path(".durationSeconds"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.roleChain) || size(self.roleChain) == 0 || !has(self.credentialSource) || !has(self.credentialSource.mode) || self.credentialSource.mode != 'GetFederationToken'"
).message("GetFederationToken credentials cannot call AssumeRole: a roleChain needs credentialSource mode AssumeRole or GetSessionToken").field_path(".roleChain"))]
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
    /// Required, except with `credentialSource.mode` `GetFederationToken` or `GetSessionToken`,
    /// which assume no role (and refuse one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub role_arn: Option<String>,

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

    /// Requested session length in seconds, 900 to 43200 (to 129600 with `credentialSource.mode`
    /// `GetFederationToken` or `GetSessionToken`). STS may grant less (the role's maximum session
    /// duration); podcreds always trusts the `Expiration` STS returns.
    #[serde(default = "default_duration_seconds")]
    #[schemars(range(min = 900, max = 129600))]
    pub duration_seconds: i32,

    /// How long before expiry the credentials are refreshed, as a duration such as `20m` or
    /// `1h30m`. By default podcreds refreshes at the earlier of two thirds of the granted lifetime
    /// and 15 minutes before expiry, moved earlier by a jitter of up to 10% of the lifetime so that
    /// many bindings do not refresh at once. The
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

    /// `AssumeRole` hops after the first exchange (at most 5): each is signed with the credentials
    /// of the one before, and the Secret receives the last hop's credentials. STS caps chained
    /// sessions at one hour: a longer `durationSeconds` is shortened to 3600 seconds and the
    /// status says so (`SessionDurationClamped`). Only with `sts.provider: AWS`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    #[x_kube(validation = kube::core::Rule::new(patterns::chain_source_identity_cel_rule()).message("only the first roleChain hop may set sourceIdentity; STS keeps it for the rest of the chain"))]
    #[x_kube(validation = kube::core::Rule::new(patterns::chain_transitive_tags_cel_rule()).message("a roleChain hop cannot set a tag key an earlier hop made transitive: STS refuses to override inherited transitive tags"))]
    pub role_chain: Vec<RoleChainHop>,

    /// Put the Kubernetes identity on the first `roleChain` hop as transitive session tags, for
    /// IAM policies to test (`aws:PrincipalTag/kubernetes-namespace`): `kubernetes-namespace`,
    /// `kubernetes-service-account`, `kubernetes-binding-name` and `kubernetes-cluster-name`
    /// (the operator's `--cluster-name`). No binding can set or override a `kubernetes-` tag
    /// itself. The roles of the chain need `sts:TagSession` in their trust policies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kubernetes_session_tags: bool,

    /// Per-binding STS settings overriding the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts: Option<StsSettings>,

    /// Exchange a SAML assertion podcreds signs (STS `AssumeRoleWithSAML`) instead of a
    /// ServiceAccount token: nothing about the cluster has to be public, IAM knows podcreds from
    /// the metadata `podcreds saml-metadata` prints. The assertion's subject (`saml:sub`) is
    /// `system:serviceaccount:<namespace>:<serviceAccountName>`. Only with `sts.provider: AWS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlExchange>,

    /// Derive the credentials from an IAM user's long-term access keys that the cluster admin
    /// keeps in an `AWSCredentialSource`, instead of the ServiceAccount's web identity. The keys
    /// never reach this namespace: only the temporary credentials STS issues from them do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_source: Option<CredentialSourceRef>,

    /// Where pods mount the Secret. Used in the generated AWS `config` file, whose
    /// `credential_process` reads `<mountPath>/credential-process.json`.
    #[serde(default = "default_mount_path")]
    #[schemars(length(min = 1, max = 512), regex(pattern = patterns::MOUNT_PATH))]
    #[x_kube(validation = kube::core::Rule::new("!self.contains('..')").message("mountPath must not contain '..'"))]
    pub mount_path: String,
}

/// One `AssumeRole` call of a role chain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.transitiveTagKeys) || self.transitiveTagKeys.all(k, has(self.tags) && self.tags.exists(t, t.key.lowerAscii() == k.lowerAscii()))"
).message("every transitiveTagKeys entry must be the key of one of the hop's tags").field_path(".transitiveTagKeys"))]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.sessionPolicy) ? size(self.sessionPolicy) : 0) + (has(self.policyArns) ? self.policyArns.map(a, size(a)).sum() : 0) <= 2048"
).message("sessionPolicy and policyArns together must stay within 2048 characters (STS's limit)").field_path(".sessionPolicy"))]
#[serde(rename_all = "camelCase")]
pub struct RoleChainHop {
    /// ARN of the role this hop assumes (an IAM role ARN in any partition). Its trust policy must
    /// allow `sts:AssumeRole` to the role of the hop before (or the binding's `roleArn`).
    #[schemars(length(min = 1, max = 2048), regex(pattern = patterns::ROLE_ARN))]
    pub role_arn: String,

    /// The external ID the role's trust policy requires (`sts:ExternalId`): 2 to 1224 characters
    /// of letters, digits and `_+=,.@:/-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = patterns::EXTERNAL_ID))]
    pub external_id: Option<String>,

    /// Role session name of this hop (CloudTrail); the same rules and default as the binding's
    /// `sessionName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::SESSION_NAME))]
    pub session_name: Option<String>,

    /// Source identity, first hop only: 2 to 64 characters of letters, digits and `_+=,.@-`. STS
    /// keeps it for every later session of the chain and it cannot change; the role needs
    /// `sts:SetSourceIdentity` in its trust policy (as do the later roles of the chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::SOURCE_IDENTITY))]
    pub source_identity: Option<String>,

    /// Session tags (at most 50): keys 1 to 128 characters, values at most 256, of letters,
    /// digits, spaces and `_.:/=+@-`; keys unique without regard to case, none starting with
    /// `aws:` or `kubernetes-`. The role needs `sts:TagSession` in its trust policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(validation = kube::core::Rule::new(patterns::session_tags_cel_rule()).message("session tags: keys of 1-128 and values of at most 256 letters, digits, spaces or _.:/=+@-, keys unique regardless of case and not starting with aws: or kubernetes-"))]
    pub tags: Vec<SessionTag>,

    /// Keys of this hop's `tags` that later hops inherit (and cannot override).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(min = 1, max = 128)))]
    pub transitive_tag_keys: Vec<String>,

    /// Inline session policy of this hop (JSON object); with `policyArns` at most 2048
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^\\\\s*\\\\{')").message("sessionPolicy must be a JSON object"))]
    pub session_policy: Option<String>,

    /// Managed policy ARNs (at most 10) that scope this hop's session down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(length(max = 2048)))]
    #[x_kube(validation = kube::core::Rule::new(patterns::policy_arns_cel_rule()).message("every policyArns entry must be an IAM policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess"))]
    pub policy_arns: Vec<String>,
}

/// The SAML exchange of a binding (`AssumeRoleWithSAML`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.transitiveTagKeys) || self.transitiveTagKeys.all(k, has(self.tags) && self.tags.exists(t, t.key.lowerAscii() == k.lowerAscii()))"
).message("every transitiveTagKeys entry must be the key of one of the tags").field_path(".transitiveTagKeys"))]
#[serde(rename_all = "camelCase")]
pub struct SamlExchange {
    /// ARN of the IAM SAML provider that holds podcreds' metadata
    /// (`arn:aws:iam::123456789012:saml-provider/podcreds`, any partition). Defaults to the
    /// operator's `--saml-provider-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = patterns::SAML_PROVIDER_ARN))]
    pub provider_arn: Option<String>,

    /// Source identity (the `SourceIdentity` attribute): 2 to 64 characters of letters, digits
    /// and `_+=,.@-`. The role needs `sts:SetSourceIdentity` in its trust policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::SOURCE_IDENTITY))]
    pub source_identity: Option<String>,

    /// Session tags (`PrincipalTag:<key>` attributes, at most 50), with the rules of a
    /// `roleChain` hop's `tags`. The role needs `sts:TagSession` in its trust policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(validation = kube::core::Rule::new(patterns::session_tags_cel_rule()).message("session tags: keys of 1-128 and values of at most 256 letters, digits, spaces or _.:/=+@-, keys unique regardless of case and not starting with aws: or kubernetes-"))]
    pub tags: Vec<SessionTag>,

    /// Keys of `tags` that a `roleChain` after this exchange inherits (and cannot override).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(min = 1, max = 128)))]
    pub transitive_tag_keys: Vec<String>,
}

/// One session tag.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionTag {
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub value: String,
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
    /// The `roleChain` hops of the credentials in the Secret, in order, as STS answered them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainHopStatus>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The value of the `podcreds.dev/refresh-requested-at` annotation the operator last acted
    /// on (at most 128 bytes of it): a request is pending while the annotation differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_refresh_request: Option<String>,
}

/// What STS answered for one `roleChain` hop.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChainHopStatus {
    /// The assumed-role ARN of the hop's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_role_arn: Option<String>,
    /// When the hop's session expires (the last hop's is the Secret's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Time>,
    /// How much of STS's packed size limit the hop's session policies and tags use, in percent
    /// (`PackedPolicySize`); above 90 the `PackedPolicyNearLimit` condition turns True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed_policy_size_percent: Option<i32>,
}

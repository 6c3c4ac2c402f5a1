//! The `AWSRoleBinding` custom resource (`podcreds.dev/v1alpha1`): its spec, with the
//! cross-field CEL rules the apiserver enforces, and its status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CredentialSourceRef, Delivery, ImagePullSecret, RoleChainHop, RolesAnywhereExchange,
    SamlExchange, StsSettings, default_delivery, default_duration_seconds, default_mount_path,
};
use crate::patterns;

/// Binds a ServiceAccount in this namespace to an AWS IAM role.
///
/// podcreds requests a short-lived token for the ServiceAccount, exchanges it with AWS STS
/// `AssumeRoleWithWebIdentity` and keeps the temporary credentials fresh in a Secret that
/// workloads mount.
// The optional sections of the spec and status are boxed: most bindings set none of them, and
// every cached binding would otherwise carry their full size inline.
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
    "!has(self.kubernetesSessionTags) || !self.kubernetesSessionTags || (has(self.roleChain) && size(self.roleChain) > 0) || (has(self.saml) || has(self.rolesAnywhere) || (has(self.credentialSource) && (!has(self.credentialSource.mode) || self.credentialSource.mode != 'GetSessionToken')))"
).message("kubernetesSessionTags needs an exchange that carries session tags: saml, credentialSource mode AssumeRole or GetFederationToken, or a roleChain (the tags go on its first AssumeRole hop)").field_path(".kubernetesSessionTags"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.kubernetesSessionTags) || !self.kubernetesSessionTags || (has(self.saml) || has(self.rolesAnywhere) || (has(self.credentialSource) && (!has(self.credentialSource.mode) || self.credentialSource.mode != 'GetSessionToken'))) || !has(self.roleChain) || size(self.roleChain) == 0 || ((!has(self.roleChain[0].tags) || size(self.roleChain[0].tags) <= 46) && (!has(self.roleChain[0].transitiveTagKeys) || size(self.roleChain[0].transitiveTagKeys) <= 46))"
).message("with kubernetesSessionTags the first roleChain hop takes at most 46 tags and 46 transitiveTagKeys of its own: podcreds adds 4 of each, and STS takes at most 50").field_path(".roleChain"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.kubernetesSessionTags) || !self.kubernetesSessionTags || !has(self.saml) || ((!has(self.saml.tags) || size(self.saml.tags) <= 46) && (!has(self.saml.transitiveTagKeys) || size(self.saml.transitiveTagKeys) <= 46))"
).message("with kubernetesSessionTags a SAML assertion takes at most 46 tags and 46 transitiveTagKeys of the binding's own: podcreds signs 4 of each into it, and STS takes at most 50").field_path(".saml"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.saml) || !has(self.credentialSource)"
).message("saml and credentialSource are two different first exchanges: set one of them").field_path(".saml"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.rolesAnywhere) || (!has(self.saml) && !has(self.credentialSource))"
).message("rolesAnywhere, saml and credentialSource are different first exchanges: set one of them").field_path(".rolesAnywhere"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.rolesAnywhere) || !has(self.sts) || !has(self.sts.provider) || self.sts.provider == 'AWS'"
).message("rolesAnywhere needs sts.provider AWS").field_path(".rolesAnywhere"))]
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
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.imagePullSecret) || !has(self.sts) || !has(self.sts.provider) || self.sts.provider == 'AWS'"
).message("imagePullSecret needs sts.provider AWS: Amazon ECR takes AWS credentials").field_path(".imagePullSecret"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.imagePullSecret) || !has(self.imagePullSecret.secretName) || !has(self.secretName) || self.imagePullSecret.secretName != self.secretName"
).message("imagePullSecret.secretName must differ from secretName").field_path(".imagePullSecret.secretName"))]
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
    /// `GetFederationToken` or `GetSessionToken`), at most the role's `MaxSessionDuration` (IAM's
    /// default is 3600): AWS refuses a longer session. podcreds always trusts the `Expiration` STS
    /// returns.
    #[serde(default = "default_duration_seconds")]
    #[schemars(range(min = 900, max = 129600))]
    pub duration_seconds: i32,

    /// How long before expiry the credentials are refreshed, as a duration such as `20m` or
    /// `1h30m`. By default podcreds refreshes at the earlier of two thirds of the granted lifetime
    /// and 15 minutes before expiry, moved earlier by a jitter of up to 10% of the lifetime so that
    /// many bindings do not refresh at once. The
    /// margin matters: SDKs re-run `credential_process` about 15 minutes before expiry and the
    /// kubelet shows a Secret update in a mounted volume within a minute (measured: 0.9 to
    /// 28.5 s, docs/performance.md), so a value under about 20 minutes risks pods briefly holding
    /// credentials their SDK considers stale.
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

    /// Put the Kubernetes identity on the session as transitive session tags, for IAM policies to
    /// test (`aws:PrincipalTag/kubernetes-namespace`): `kubernetes-namespace`,
    /// `kubernetes-service-account`, `kubernetes-binding-name` and `kubernetes-cluster-name`
    /// (the operator's `--cluster-name`). They ride on the first exchange that takes tags: signed
    /// into the SAML assertion, sent with a credential source's `AssumeRole` or
    /// `GetFederationToken`, and otherwise (web identity, `GetSessionToken`) on the first
    /// `roleChain` hop, which is then required. No binding can set or override a `kubernetes-`
    /// tag itself. The roles that receive them need `sts:TagSession` in their trust policies,
    /// which `podcreds iam trust-policy` pins to these values.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kubernetes_session_tags: bool,

    /// Per-binding STS settings overriding the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts: Option<Box<StsSettings>>,

    /// Exchange a SAML assertion podcreds signs (STS `AssumeRoleWithSAML`) instead of a
    /// ServiceAccount token: nothing about the cluster has to be public, IAM knows podcreds from
    /// the metadata `podcreds saml-metadata` prints. The assertion's subject (`SAML:sub`) is
    /// `system:serviceaccount:<namespace>:<serviceAccountName>`. Only with `sts.provider: AWS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<Box<SamlExchange>>,

    /// Derive the credentials from an IAM user's long-term access keys that the cluster admin
    /// keeps in an `AWSCredentialSource`, instead of the ServiceAccount's web identity. The keys
    /// never reach this namespace: only the temporary credentials STS issues from them do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_source: Option<Box<CredentialSourceRef>>,

    /// Exchange a short-lived X.509 certificate of the ServiceAccount, issued by podcreds'
    /// workload CA (`podcreds rolesanywhere trust-anchor` prints it for the trust anchor), with
    /// IAM Roles Anywhere `CreateSession`: up to 12 hours, nothing about the cluster public. The
    /// certificate's subject names the namespace and ServiceAccount (principal tags
    /// `x509Subject/OU` and `x509Subject/CN`). Only with `sts.provider: AWS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_anywhere: Option<Box<RolesAnywhereExchange>>,

    /// How pods receive the credentials: `Secret` (the default) writes them into the Secret
    /// `secretName`; `Endpoint` serves them to the binding's pods through podcreds' node agent
    /// (the AWS container-credentials protocol, as EKS Pod Identity does) and keeps them only in
    /// the operator's memory, so an `Endpoint`-only binding writes no Secret and its credentials
    /// never reach etcd. Both may be listed; one exchange then feeds both.
    #[serde(default = "default_delivery")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = kube::core::Rule::new("self.size() < 2 || self[0] != self[1]").message("delivery lists each method at most once"))]
    pub delivery: Vec<Delivery>,

    /// Where pods mount the Secret. Used in the generated AWS `config` file, whose
    /// `credential_process` reads `<mountPath>/credential-process.json`.
    #[serde(default = "default_mount_path")]
    #[schemars(length(min = 1, max = 512), regex(pattern = patterns::MOUNT_PATH))]
    #[x_kube(validation = kube::core::Rule::new("!self.contains('..')").message("mountPath must not contain '..'"))]
    pub mount_path: String,

    /// Also keep an Amazon ECR image-pull Secret (`kubernetes.io/dockerconfigjson`) fresh from
    /// the binding's credentials, for kubelets that pull from ECR outside EKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<Box<ImagePullSecret>>,
    /// Evict the pods that read this binding's Secret once (environment variables, `envFrom`, a
    /// `subPath` mount) shortly before the credentials they captured expire, so that their
    /// controller starts them again with the current ones. Pods that mount the Secret as a
    /// volume see every refresh and are never touched. Evictions go through the Eviction API:
    /// PodDisruptionBudgets hold (a refused eviction is reported in
    /// `status.consumers.blockedEvictions` and retried), each pod is evicted at most once per
    /// credential set, and evictions are rate-limited per namespace. Needs the operator to watch
    /// pods and to be allowed to evict them (chart values `consumers.watchPods` and
    /// `consumers.allowEviction`). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_stale_consumers: Option<Box<RestartStaleConsumers>>,
}

/// When podcreds restarts the pods that will go stale (`spec.restartStaleConsumers`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestartStaleConsumers {
    /// How long before the credentials a pod captured expire it is evicted, as a duration such
    /// as `5m` (the default). A pod is evicted only once the Secret holds newer credentials,
    /// so that its replacement starts with them: with a lead time longer than the renewal
    /// margin (`renewBefore`), right after the refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = patterns::DURATION))]
    pub lead_time: Option<String>,
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
    /// The endpoint that issued the credentials in the Secret (with a `roleChain`, the last
    /// hop's): with `sts.endpoints`, which endpoint of the list served. Absent: the AWS regional
    /// endpoint of `sts.region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_endpoint: Option<String>,
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
    /// The image-pull Secret of `spec.imagePullSecret`, as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<Box<ImagePullSecretStatus>>,
    /// The pods of this namespace that read the Secret, and whether they see its refreshes.
    /// Reported only while the operator watches pods (`--watch-pods`, chart value
    /// `consumers.watchPods`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Box<ConsumersStatus>>,
}

/// The image-pull Secret podcreds keeps for the binding.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullSecretStatus {
    /// Name of the `kubernetes.io/dockerconfigjson` Secret.
    pub secret_name: String,
    /// When the ECR token in it expires (the earliest, with registries in several regions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Time>,
    /// UID of the Secret podcreds created under `secretName`: only that exact Secret is deleted
    /// when `imagePullSecret` is removed or renamed.
    #[serde(default, rename = "secretUID", skip_serializing_if = "Option::is_none")]
    pub secret_uid: Option<String>,
    /// Whether the Secret is listed in the ServiceAccount's `imagePullSecrets`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub added_to_service_account: bool,
}

/// The pods that read a binding's Secret, by whether they see its refreshes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumersStatus {
    /// Pods whose every container that reads the Secret mounts it as a volume without
    /// `subPath`: the kubelet updates the files and `credential_process` re-reads them.
    #[serde(default)]
    pub refreshing: i32,
    /// Pods with a container that captured part of the Secret when it started (`env`,
    /// `envFrom`, a `subPath` mount): it keeps those credentials until it restarts and fails once
    /// they expire.
    #[serde(default)]
    pub will_go_stale: i32,
    /// The first few of those pods, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub stale_pods: Vec<String>,
    /// With `spec.restartStaleConsumers`: the first few stale pods whose eviction the apiserver
    /// refused (a PodDisruptionBudget allowing no disruption now, missing permission); retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub blocked_evictions: Vec<BlockedEviction>,
}

/// An eviction of a stale pod that the apiserver refused.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlockedEviction {
    /// The pod's name.
    pub pod: String,
    /// `DisruptionBudget` (a PodDisruptionBudget allows no disruption now), `Forbidden` (the
    /// operator may not evict pods: chart value `consumers.allowEviction`), `TooManyRequests`,
    /// `Timeout` or `KubeApiError`.
    pub reason: String,
    /// What the apiserver said (at most 256 bytes).
    pub message: String,
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

//! A binding's `roleChain`: one `AssumeRole` per hop, and the session tags hops (and a SAML
//! exchange) set.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::patterns;

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

//! A binding's `saml`: podcreds signs an assertion for its ServiceAccount (`AssumeRoleWithSAML`).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::SessionTag;
use crate::patterns;

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

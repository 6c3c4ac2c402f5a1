//! A binding's spec with every default applied and every rule checked, and its fingerprint.
//!
//! The fingerprint is a hash of the resolved spec's JSON, stored on the Secret: a change means
//! new credentials. Its input must stay byte-identical across versions for bindings that did not
//! change, or an upgrade would refresh every binding at once; `fingerprint_input_is_stable`
//! (below) pins the exact JSON of each kind of binding.

use std::time::Duration;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::api::CredentialSourceMode;
use crate::patterns::MAX_CHAINED_SESSION_SECONDS;

/// A binding's spec with defaults applied and every rule checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSpec {
    pub service_account_name: String,
    /// `None` only for the credential source modes that assume no role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub secret_name: String,
    pub audience: String,
    pub duration_seconds: i32,
    #[serde(serialize_with = "serialize_opt_secs")]
    pub renew_before: Option<Duration>,
    pub session_name: String,
    pub session_policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub region: String,
    /// The first STS endpoint the binding's calls go to (`None`: the AWS regional endpoint of
    /// `region`). Part of the fingerprint's input, as `sts.endpoint` always was.
    pub endpoint: Option<String>,
    /// The endpoints tried after `endpoint`, in order, when it cannot answer. Left out of the
    /// fingerprint's input: adding, removing or reordering fall-backs is not a reason for new
    /// credentials (every endpoint of the list serves the same identity).
    #[serde(skip)]
    pub fallback_endpoints: Vec<String>,
    pub mount_path: String,
    /// The `AssumeRole` hops after the first exchange, with every default applied. Left out of
    /// the fingerprint's input when empty, so bindings without a chain keep their fingerprint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub role_chain: Vec<ResolvedHop>,
    /// How the binding's own identity becomes its first credentials. Web identity adds nothing
    /// to the fingerprint's input; the others add their section (`saml`, `credentialSource`) as
    /// the fields they were before this was one enum.
    #[serde(flatten)]
    pub first: FirstExchange,
    /// Where the credentials go. Not in the fingerprint: the same credentials serve both ways,
    /// and a change of delivery alone costs no exchange unless a Secret or the endpoint lacks
    /// them (the planner sees that).
    #[serde(skip)]
    pub delivery: Deliveries,
    /// The ECR image-pull Secret to keep (`spec.imagePullSecret`). In the fingerprint's input
    /// when set (a new registry list needs a new Secret), absent otherwise, so bindings without
    /// one keep their fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<ResolvedPullSecret>,
}

/// `spec.imagePullSecret` with defaults applied: the Secret, and the registries grouped by the
/// ECR region whose token they take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPullSecret {
    pub secret_name: String,
    /// Every registry, in the order given, with the region of the token it takes.
    pub registries: Vec<PullRegistry>,
    pub add_to_service_account: bool,
    /// Where `GetAuthorizationToken` goes (`--ecr-endpoint`); `None`: the AWS regional ECR
    /// endpoint of each region. The admin's, so not in the fingerprint's input.
    #[serde(skip)]
    pub endpoint: Option<String>,
}

/// One registry of an image-pull Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRegistry {
    pub host: String,
    pub region: String,
}

impl ResolvedPullSecret {
    /// The regions whose tokens the Secret needs, each once, in the order first named.
    pub fn regions(&self) -> Vec<&str> {
        let mut regions: Vec<&str> = Vec::new();
        for r in &self.registries {
            if !regions.contains(&r.region.as_str()) {
                regions.push(&r.region);
            }
        }
        regions
    }
}

/// The binding's delivery methods (`spec.delivery`), as flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deliveries {
    /// Written into the Secret `secret_name`.
    pub secret: bool,
    /// Kept in the leader's memory and served to the binding's pods through the node agent.
    pub endpoint: bool,
}

impl Default for Deliveries {
    fn default() -> Self {
        Self {
            secret: true,
            endpoint: false,
        }
    }
}

impl Deliveries {
    /// The flags of `spec.delivery`; an empty list (which the CRD refuses) means the default,
    /// a Secret.
    pub fn of(methods: &[crate::api::Delivery]) -> Self {
        use crate::api::Delivery;
        if methods.is_empty() {
            return Self::default();
        }
        Self {
            secret: methods.contains(&Delivery::Secret),
            endpoint: methods.contains(&Delivery::Endpoint),
        }
    }
}

/// The first STS exchange of a binding: decided once, while resolving, and matched exhaustively
/// wherever the choice matters (the flow, the trust policy printer, the status, setup hints), so
/// a new kind of exchange makes the compiler name every place to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstExchange {
    /// A TokenRequest token of the ServiceAccount, sent to `AssumeRoleWithWebIdentity` for
    /// `role_arn`.
    WebIdentity { role_arn: String },
    /// A SAML assertion podcreds signs for the ServiceAccount, sent to `AssumeRoleWithSAML`.
    Saml(ResolvedSaml),
    /// An IAM user's long-term keys (an `AWSCredentialSource`) sign the call.
    CredentialSource(ResolvedSource),
    /// A certificate of the ServiceAccount signs IAM Roles Anywhere `CreateSession`.
    RolesAnywhere(ResolvedRolesAnywhere),
}

impl Serialize for FirstExchange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Default, Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Fields<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            saml: Option<&'a ResolvedSaml>,
            #[serde(skip_serializing_if = "Option::is_none")]
            credential_source: Option<&'a ResolvedSource>,
            #[serde(skip_serializing_if = "Option::is_none")]
            roles_anywhere: Option<&'a ResolvedRolesAnywhere>,
        }
        match self {
            FirstExchange::WebIdentity { .. } => Fields::default(),
            FirstExchange::Saml(saml) => Fields {
                saml: Some(saml),
                ..Fields::default()
            },
            FirstExchange::CredentialSource(source) => Fields {
                credential_source: Some(source),
                ..Fields::default()
            },
            FirstExchange::RolesAnywhere(ra) => Fields {
                roles_anywhere: Some(ra),
                ..Fields::default()
            },
        }
        .serialize(serializer)
    }
}

impl FirstExchange {
    /// The exchange's name: the `flow` metric label of bindings without a chain.
    pub fn name(&self) -> &'static str {
        match self {
            FirstExchange::WebIdentity { .. } => "WebIdentity",
            FirstExchange::Saml(_) => "SAML",
            FirstExchange::CredentialSource(source) => source.call.mode().as_str(),
            FirstExchange::RolesAnywhere(_) => "RolesAnywhere",
        }
    }

    /// The tag keys the first exchange makes transitive: a later hop inherits them and may not
    /// set them again.
    pub fn transitive_tag_keys(&self) -> &[String] {
        match self {
            FirstExchange::WebIdentity { .. } => &[],
            FirstExchange::Saml(saml) => &saml.transitive_tag_keys,
            FirstExchange::CredentialSource(source) => &source.transitive_tag_keys,
            // Roles Anywhere's principal tags (`x509Subject/...`) are podcreds' to choose.
            FirstExchange::RolesAnywhere(_) => &[],
        }
    }

    /// Whether the first exchange carries podcreds' Kubernetes session tags itself (signed into
    /// a SAML assertion, or sent with a credential source's call), so a chain does not.
    pub fn carries_kubernetes_tags(&self) -> bool {
        let tags: &[(String, String)] = match self {
            FirstExchange::WebIdentity { .. } => &[],
            FirstExchange::Saml(saml) => &saml.tags,
            FirstExchange::CredentialSource(source) => &source.tags,
            FirstExchange::RolesAnywhere(_) => &[],
        };
        tags.iter().any(|(k, _)| k == KUBERNETES_TAG_KEYS[0])
    }

    /// Whether the first exchange sets a source identity (which every later session keeps).
    pub fn sets_source_identity(&self) -> bool {
        match self {
            FirstExchange::Saml(saml) => saml.source_identity.is_some(),
            // Roles Anywhere sets the certificate subject's common name.
            FirstExchange::RolesAnywhere(_) => true,
            FirstExchange::WebIdentity { .. } | FirstExchange::CredentialSource(_) => false,
        }
    }
}

/// A binding's resolved `spec.saml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSaml {
    /// The role the assertion names (the binding's `roleArn`; part of the fingerprint's input
    /// there already).
    #[serde(skip)]
    pub role_arn: String,
    pub provider_arn: String,
    pub source_identity: Option<String>,
    /// `PrincipalTag` attributes in the order signed: podcreds' Kubernetes tags first.
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
}

/// A binding's credential source, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedSource {
    pub name: String,
    pub call: SourceCall,
    /// [`crate::credentials::LongTermKeys::digest`] of the keys in use, filled in by the
    /// controller once it has read them: rotated keys change the fingerprint and re-issue the
    /// credentials.
    pub key_digest: Option<String>,
    /// Session tags sent with the call (`AssumeRole`, `GetFederationToken`): podcreds' Kubernetes
    /// tags. Left out of the fingerprint's input when empty.
    pub tags: Vec<(String, String)>,
    /// Keys of `tags` a `roleChain` after an `AssumeRole` inherits.
    pub transitive_tag_keys: Vec<String>,
}

/// The STS call a credential source's keys sign for a binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceCall {
    /// `AssumeRole` of the binding's role.
    AssumeRole {
        role_arn: String,
    },
    /// `GetFederationToken` for the federated user `name`.
    GetFederationToken {
        name: String,
    },
    GetSessionToken,
}

impl SourceCall {
    pub fn mode(&self) -> CredentialSourceMode {
        match self {
            SourceCall::AssumeRole { .. } => CredentialSourceMode::AssumeRole,
            SourceCall::GetFederationToken { .. } => CredentialSourceMode::GetFederationToken,
            SourceCall::GetSessionToken => CredentialSourceMode::GetSessionToken,
        }
    }
}

impl Serialize for ResolvedSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The fields (and their order) of the fingerprint's input before the call was typed.
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Fields<'a> {
            name: &'a str,
            mode: CredentialSourceMode,
            key_digest: &'a Option<String>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            tags: &'a [(String, String)],
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            transitive_tag_keys: &'a [String],
        }
        Fields {
            name: &self.name,
            mode: self.call.mode(),
            key_digest: &self.key_digest,
            tags: &self.tags,
            transitive_tag_keys: &self.transitive_tag_keys,
        }
        .serialize(serializer)
    }
}

/// A binding's resolved `spec.rolesAnywhere`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRolesAnywhere {
    /// The role (the binding's `roleArn`, in the fingerprint's input there already).
    #[serde(skip)]
    pub role_arn: String,
    /// Where `CreateSession` goes: the trust anchor's region.
    #[serde(skip)]
    pub region: String,
    /// Where `CreateSession` goes (the operator's; `None`: the AWS endpoint of `region`).
    #[serde(skip)]
    pub endpoint: Option<String>,
    pub trust_anchor_arn: String,
    pub profile_arn: String,
    /// A Secret of the binding's namespace holding the admin's certificate, instead of one
    /// podcreds issues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_secret_name: Option<String>,
}

/// One `AssumeRole` hop of a resolved role chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedHop {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
    pub source_identity: Option<String>,
    /// Session tags in the order sent: podcreds' Kubernetes tags first, then the binding's.
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub session_policy: Option<String>,
    pub policy_arns: Vec<String>,
    /// What this hop asks STS for: 900 s (the least STS grants) for every hop whose credentials
    /// only sign the next call, `durationSeconds` capped at one hour for the last.
    pub duration_seconds: i32,
}

/// What the first exchange of a chain asks for: its credentials only sign the first hop.
pub const FIRST_EXCHANGE_SECONDS: i32 = 900;

/// The session tags podcreds sets for a binding with `kubernetesSessionTags`, on its first
/// exchange that can carry tags.
pub const KUBERNETES_TAG_KEYS: [&str; 4] = [
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-binding-name",
    "kubernetes-cluster-name",
];

fn serialize_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(|d| d.as_secs()).serialize(s)
}

impl ResolvedSpec {
    /// Every STS endpoint of the binding in order of preference: `endpoint`, then the
    /// fall-backs. Empty: the AWS regional endpoint of `region`.
    pub fn sts_endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoint
            .as_deref()
            .into_iter()
            .chain(self.fallback_endpoints.iter().map(String::as_str))
    }

    /// The roles the binding's credentials pass through: `roleArn`, then every hop's.
    pub fn role_arns(&self) -> impl Iterator<Item = &str> {
        self.role_arn
            .as_deref()
            .into_iter()
            .chain(self.role_chain.iter().map(|h| h.role_arn.as_str()))
    }

    /// What the credentials are for, in words: the role, or the credential source's call.
    pub fn identity(&self) -> String {
        match &self.first {
            FirstExchange::WebIdentity { role_arn }
            | FirstExchange::Saml(ResolvedSaml { role_arn, .. })
            | FirstExchange::RolesAnywhere(ResolvedRolesAnywhere { role_arn, .. })
            | FirstExchange::CredentialSource(ResolvedSource {
                call: SourceCall::AssumeRole { role_arn },
                ..
            }) => role_arn.clone(),
            FirstExchange::CredentialSource(source) => format!(
                "{} with AWSCredentialSource {}",
                source.call.mode().as_str(),
                source.name
            ),
        }
    }

    /// What the first exchange asks STS for: the binding's `durationSeconds`, or the least STS
    /// grants when its credentials only sign the first hop of a chain.
    pub fn first_exchange_seconds(&self) -> i32 {
        if self.role_chain.is_empty() {
            self.duration_seconds
        } else {
            FIRST_EXCHANGE_SECONDS
        }
    }

    /// Whether the binding asked for longer sessions than a role chain can have.
    pub fn chained_duration_clamped(&self) -> bool {
        !self.role_chain.is_empty() && self.duration_seconds > MAX_CHAINED_SESSION_SECONDS
    }

    /// A short, stable hash of everything that shapes the issued credentials and the rendered
    /// Secret. Stored on the Secret so a changed spec (or a restart) is decided from the Secret.
    pub fn fingerprint(&self) -> String {
        // Serialising a struct of plain fields cannot fail; an empty hash input would still be stable.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        hex::encode(&digest[..12])
    }
}

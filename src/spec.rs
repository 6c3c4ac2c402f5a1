//! Validate step (pure): turns a binding's spec plus the operator's policy into a
//! [`ResolvedSpec`] with every default filled in, or a [`SpecError`] that says what is wrong.

use std::sync::LazyLock;
use std::time::Duration;

use regex::bytes::{Regex, RegexBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{AWSRoleBindingSpec, CredentialSourceMode, RoleChainHop, StsProvider};
use crate::patterns::{
    self, AWS_TAG_PREFIX, MAX_CHAINED_SESSION_SECONDS, MAX_SESSION_POLICY_CHARS, MAX_SESSION_TAGS,
    RESERVED_TAG_PREFIX,
};

/// What the cluster admin decides about where tokens go (operator flags / chart values).
#[derive(Clone, Debug)]
pub struct StsPolicy {
    /// Region used when a binding names none.
    pub default_region: String,
    /// STS endpoint used when a binding names none; `None` means the AWS regional endpoint.
    pub default_endpoint: Option<String>,
    /// Token audience used when a binding names none.
    pub default_audience: String,
    /// Audiences a binding may ask for besides the default.
    pub allowed_audiences: Vec<String>,
    /// STS endpoints a binding may name besides the default.
    pub allowed_endpoints: Vec<String>,
    /// Let `spec.sessionName` be any name; by default it must start with `<namespace>.`, so a
    /// binding cannot pass for another namespace's in CloudTrail.
    pub allow_unprefixed_session_names: bool,
    /// Let STS endpoints be plain `http://` URLs, which carry the ServiceAccount token in clear
    /// (for a trusted network path only, such as loopback in a test).
    pub allow_insecure_endpoints: bool,
    /// The cluster's name, for the `kubernetes-cluster-name` session tag of bindings that ask
    /// for Kubernetes session tags (`--cluster-name`); those bindings are refused without it.
    pub cluster_name: Option<String>,
    /// The IAM SAML provider ARN for bindings whose `spec.saml` names none
    /// (`--saml-provider-arn`).
    pub default_saml_provider_arn: Option<String>,
}

impl Default for StsPolicy {
    fn default() -> Self {
        Self {
            default_region: "us-east-1".into(),
            default_endpoint: None,
            default_audience: "sts.amazonaws.com".into(),
            allowed_audiences: Vec::new(),
            allowed_endpoints: Vec::new(),
            allow_unprefixed_session_names: false,
            allow_insecure_endpoints: false,
            cluster_name: None,
            default_saml_provider_arn: None,
        }
    }
}

impl StsPolicy {
    /// Checks what the operator would use without any binding asking: refuses a plain-HTTP
    /// default endpoint unless plain HTTP is allowed. Run once at start.
    pub fn check(&self) -> Result<(), PolicyError> {
        match &self.default_endpoint {
            Some(endpoint) if is_plain_http(endpoint) && !self.allow_insecure_endpoints => {
                return Err(PolicyError::InsecureDefaultEndpoint(endpoint.clone()));
            }
            _ => {}
        }
        match &self.cluster_name {
            Some(name) if name.is_empty() || !TAG_VALUE.is_match(name.as_bytes()) => {
                Err(PolicyError::InvalidClusterName(name.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Allowed endpoints that bindings cannot use because they are plain HTTP (worth a warning
    /// at start).
    pub fn unusable_allowed_endpoints(&self) -> Vec<&str> {
        if self.allow_insecure_endpoints {
            return Vec::new();
        }
        self.allowed_endpoints
            .iter()
            .map(String::as_str)
            .filter(|e| is_plain_http(e))
            .collect()
    }
}

/// Whether `endpoint` is a plain `http://` URL (any letter case: the SDK accepts both).
pub fn is_plain_http(endpoint: &str) -> bool {
    endpoint
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// Why the operator's own configuration is refused at start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "--sts-endpoint {0:?} is plain HTTP: every ServiceAccount token sent there would travel in clear. Use an https:// endpoint, or pass --allow-insecure-sts-endpoints (chart: operator.allowInsecureStsEndpoints) if the network path is trusted, for example loopback in a test"
    )]
    InsecureDefaultEndpoint(String),
    #[error(
        "--cluster-name {0:?} cannot be a session tag value: use 1 to 256 letters, digits, spaces or _.:/=+@-"
    )]
    InvalidClusterName(String),
}

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
    pub endpoint: Option<String>,
    pub mount_path: String,
    /// The `AssumeRole` hops after the first exchange, with every default applied. Left out of
    /// the fingerprint's input when empty, so bindings without a chain keep their fingerprint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub role_chain: Vec<ResolvedHop>,
    /// The SAML exchange, when the binding asks for one instead of web identity. Left out of the
    /// fingerprint's input when absent, so other bindings keep their fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saml: Option<ResolvedSaml>,
    /// The credential source whose keys sign the first exchange; left out of the fingerprint's
    /// input when absent, so web identity bindings keep their fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_source: Option<ResolvedSource>,
}

/// A binding's resolved `spec.saml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSaml {
    pub provider_arn: String,
    pub source_identity: Option<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
}

/// A binding's credential source, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSource {
    pub name: String,
    pub mode: CredentialSourceMode,
    /// [`crate::source::LongTermKeys::digest`] of the keys in use, filled in by the controller
    /// once it has read them: rotated keys change the fingerprint and re-issue the credentials.
    pub key_digest: Option<String>,
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

impl ResolvedSpec {
    /// The roles the binding's credentials pass through: `roleArn`, then every hop's.
    pub fn role_arns(&self) -> impl Iterator<Item = &str> {
        self.role_arn
            .as_deref()
            .into_iter()
            .chain(self.role_chain.iter().map(|h| h.role_arn.as_str()))
    }

    /// What the credentials are for, in words: the role, or the credential source's call.
    pub fn identity(&self) -> String {
        match (&self.role_arn, &self.credential_source) {
            (Some(role), _) => role.clone(),
            (None, Some(source)) => format!(
                "{} with AWSCredentialSource {}",
                source.mode.as_str(),
                source.name
            ),
            (None, None) => "no role".into(),
        }
    }

    /// Whether the binding asked for longer sessions than a role chain can have.
    pub fn chained_duration_clamped(&self) -> bool {
        !self.role_chain.is_empty() && self.duration_seconds > MAX_CHAINED_SESSION_SECONDS
    }
}

/// The session tags podcreds puts on the first hop of a binding with `kubernetesSessionTags`.
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
    /// A short, stable hash of everything that shapes the issued credentials and the rendered
    /// Secret. Stored on the Secret so a changed spec (or a restart) is decided from the Secret.
    pub fn fingerprint(&self) -> String {
        // Serialising a struct of plain fields cannot fail; an empty hash input would still be stable.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        hex::encode(&digest[..12])
    }
}

/// Why a spec cannot be acted on. Every variant is permanent: it waits for the binding to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("spec.{field} is invalid: {problem}")]
    Invalid { field: String, problem: String },
    #[error(
        "spec.audience {0:?} is not in the operator's allowed audiences; ask the cluster admin to allow it"
    )]
    AudienceNotAllowed(String),
    #[error(
        "spec.sts.endpoint {0:?} is not in the operator's allowed STS endpoints; ask the cluster admin to allow it"
    )]
    EndpointNotAllowed(String),
    #[error(transparent)]
    RoleNotAllowed(#[from] crate::allowlist::RoleNotAllowed),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(
        "spec.{field} {session_name:?} must start with {prefix:?} (the binding's namespace and a dot), so that CloudTrail shows which namespace acted; ask the cluster admin to allow other session names"
    )]
    SessionNameNotPrefixed {
        field: String,
        session_name: String,
        prefix: String,
    },
    #[error(
        "spec.kubernetesSessionTags needs the cluster's name for the kubernetes-cluster-name tag, and the operator has none; ask the cluster admin to set --cluster-name (chart: operator.clusterName)"
    )]
    ClusterNameNotConfigured,
    #[error(
        "STS endpoint {0:?} is plain HTTP, which would send the ServiceAccount token in clear; use an https:// endpoint, or ask the cluster admin to allow plain HTTP endpoints"
    )]
    InsecureEndpoint(String),
}

impl SpecError {
    /// Stable, low-cardinality category used as condition reason, Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            SpecError::Invalid { .. } => "InvalidSpec",
            SpecError::AudienceNotAllowed(_) => "AudienceNotAllowed",
            SpecError::EndpointNotAllowed(_) => "EndpointNotAllowed",
            SpecError::RoleNotAllowed(_) => "RoleNotAllowed",
            SpecError::Source(e) => e.category(),
            SpecError::SessionNameNotPrefixed { .. } => "SessionNameNotAllowed",
            SpecError::InsecureEndpoint(_) => "InsecureEndpoint",
            SpecError::ClusterNameNotConfigured => "ClusterNameNotConfigured",
        }
    }
}

fn compile(pattern: &str) -> Regex {
    // The patterns are constants covered by unit tests; AWS and Go's RE2 read `\w` as ASCII,
    // hence Unicode off (and byte regexes, which allow that).
    match RegexBuilder::new(pattern).unicode(false).build() {
        Ok(re) => re,
        Err(e) => panic!("built-in pattern {pattern:?} does not compile: {e}"),
    }
}

static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::DNS_SUBDOMAIN));
static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::ROLE_ARN));
static MINIO_ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::MINIO_ROLE_ARN));
static CEPH_ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::CEPH_ROLE_ARN));
static POLICY_ARN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::POLICY_ARN));
static SAML_PROVIDER_ARN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::SAML_PROVIDER_ARN));
static SESSION_NAME: LazyLock<Regex> = LazyLock::new(|| compile(patterns::SESSION_NAME));
static DURATION: LazyLock<Regex> = LazyLock::new(|| compile(patterns::DURATION));
static REGION: LazyLock<Regex> = LazyLock::new(|| compile(patterns::REGION));
static MOUNT_PATH: LazyLock<Regex> = LazyLock::new(|| compile(patterns::MOUNT_PATH));
static AUDIENCE: LazyLock<Regex> = LazyLock::new(|| compile(patterns::AUDIENCE));
static EXTERNAL_ID: LazyLock<Regex> = LazyLock::new(|| compile(patterns::EXTERNAL_ID));
static SOURCE_IDENTITY: LazyLock<Regex> = LazyLock::new(|| compile(patterns::SOURCE_IDENTITY));
static TAG_KEY: LazyLock<Regex> = LazyLock::new(|| compile(patterns::TAG_KEY));
static TAG_VALUE: LazyLock<Regex> = LazyLock::new(|| compile(patterns::TAG_VALUE));

/// The `roleArn` rule of each provider (the CEL rule in [`patterns::role_arn_cel_rule`] makes the
/// same choice): the pattern and how to describe it.
fn role_arn_rule(provider: StsProvider) -> (&'static Regex, &'static str) {
    match provider {
        StsProvider::Aws => (
            &ROLE_ARN,
            "an IAM role ARN such as arn:aws:iam::123456789012:role/name",
        ),
        StsProvider::MinIo => (
            &MINIO_ROLE_ARN,
            "a MinIO role ARN such as arn:minio:iam:::role/<id> (sts.provider is MinIO)",
        ),
        StsProvider::CephRgw => (
            &CEPH_ROLE_ARN,
            "a Ceph RGW role ARN such as arn:aws:iam:::role/name or arn:aws:iam::tenant:role/name (sts.provider is CephRGW)",
        ),
    }
}

/// Whether `endpoint` is an AWS STS endpoint, judged by its host name like the CRD's CEL rule.
pub fn is_aws_endpoint(endpoint: &str) -> bool {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host_port.starts_with('[') {
        // An IPv6 literal is never an AWS host name.
        return false;
    }
    let host = host_port
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn check(
    field: &str,
    value: &str,
    re: &Regex,
    max_len: usize,
    what: &str,
) -> Result<(), SpecError> {
    if value.len() > max_len {
        return Err(invalid(field, format!("longer than {max_len} characters")));
    }
    if !re.is_match(value.as_bytes()) {
        return Err(invalid(field, format!("must be {what}")));
    }
    Ok(())
}

/// Validates `spec` of the binding `namespace/name` and applies defaults and the admin's policy.
pub fn resolve(
    spec: &AWSRoleBindingSpec,
    namespace: &str,
    name: &str,
    policy: &StsPolicy,
) -> Result<ResolvedSpec, SpecError> {
    check(
        "serviceAccountName",
        &spec.service_account_name,
        &DNS_SUBDOMAIN,
        253,
        "a ServiceAccount name in this namespace (DNS subdomain)",
    )?;
    let sts = spec.sts.clone().unwrap_or_default();
    let provider = sts.provider.unwrap_or_default();
    let credential_source = resolve_source(spec)?;
    let assumes_role = credential_source
        .as_ref()
        .is_none_or(|s| s.mode == CredentialSourceMode::AssumeRole);
    let role_arn = match (&spec.role_arn, assumes_role) {
        (Some(arn), true) => {
            let (role_arn_pattern, role_arn_form) = role_arn_rule(provider);
            check("roleArn", arn, role_arn_pattern, 2048, role_arn_form)?;
            Some(arn.clone())
        }
        (None, true) => return Err(invalid("roleArn", "is required")),
        (Some(_), false) => {
            return Err(invalid(
                "roleArn",
                "is not used by credentialSource modes GetFederationToken and GetSessionToken, which assume no role: remove it, or use mode AssumeRole",
            ));
        }
        (None, false) => None,
    };
    let mode = credential_source.as_ref().map(|s| s.mode);
    let secret_name = spec.secret_name.clone().unwrap_or_else(|| name.to_string());
    check(
        "secretName",
        &secret_name,
        &DNS_SUBDOMAIN,
        253,
        "a Secret name (DNS subdomain)",
    )?;

    let audience = match &spec.audience {
        None => policy.default_audience.clone(),
        Some(aud) => {
            check(
                "audience",
                aud,
                &AUDIENCE,
                256,
                "a non-empty string without white space",
            )?;
            if *aud != policy.default_audience && !policy.allowed_audiences.contains(aud) {
                return Err(SpecError::AudienceNotAllowed(aud.clone()));
            }
            aud.clone()
        }
    };

    let max_duration = if assumes_role { 43200 } else { 129_600 };
    if !(900..=max_duration).contains(&spec.duration_seconds) {
        return Err(invalid(
            "durationSeconds",
            format!("must be between 900 and {max_duration}"),
        ));
    }
    let renew_before = match &spec.renew_before {
        None => None,
        Some(text) => {
            check(
                "renewBefore",
                text,
                &DURATION,
                32,
                "a duration such as 20m or 1h30m",
            )?;
            let parsed = humantime::parse_duration(text)
                .map_err(|e| invalid("renewBefore", e.to_string()))?;
            if parsed < Duration::from_secs(60) {
                return Err(invalid("renewBefore", "must be at least 60s"));
            }
            if parsed.as_secs() >= u64::from(spec.duration_seconds.unsigned_abs()) {
                return Err(invalid(
                    "renewBefore",
                    "must be shorter than durationSeconds",
                ));
            }
            Some(parsed)
        }
    };

    let session_name = match &spec.session_name {
        Some(_) if !assumes_role => {
            return Err(invalid(
                "sessionName",
                "is only used by AssumeRole: GetFederationToken derives its Name from the namespace and binding, GetSessionToken has none",
            ));
        }
        None if mode == Some(CredentialSourceMode::GetFederationToken) => {
            crate::source::federation_name(namespace, name)
        }
        Some(s) => {
            check(
                "sessionName",
                s,
                &SESSION_NAME,
                64,
                "2 to 64 characters of letters, digits and _+=,.@-",
            )?;
            check_session_prefix("sessionName", s, namespace, policy)?;
            s.clone()
        }
        None => default_session_name(namespace, name),
    };

    if let Some(p) = &spec.session_policy {
        check_session_policy("sessionPolicy", p)?;
    }
    let policy_arns = spec.policy_arns.clone().unwrap_or_default();
    check_policy_arns("policyArns", &policy_arns)?;
    let has_policy = spec.session_policy.is_some() || !policy_arns.is_empty();
    match mode {
        Some(CredentialSourceMode::GetFederationToken) if !has_policy => {
            return Err(invalid(
                "credentialSource.mode",
                "GetFederationToken needs sessionPolicy or policyArns: without a session policy the federated credentials have no permissions at all",
            ));
        }
        Some(CredentialSourceMode::GetSessionToken) if has_policy => {
            return Err(invalid(
                "credentialSource.mode",
                "GetSessionToken takes no session policy: remove sessionPolicy and policyArns",
            ));
        }
        Some(CredentialSourceMode::GetFederationToken) if !spec.role_chain.is_empty() => {
            return Err(invalid(
                "roleChain",
                "GetFederationToken credentials cannot call AssumeRole: a roleChain needs credentialSource mode AssumeRole or GetSessionToken",
            ));
        }
        _ => {}
    }

    let region = match sts.region {
        Some(r) => {
            check(
                "sts.region",
                &r,
                &REGION,
                64,
                "an AWS region such as eu-west-1",
            )?;
            r
        }
        None => policy.default_region.clone(),
    };
    let endpoint = match sts.endpoint {
        None => policy.default_endpoint.clone(),
        Some(e) => {
            if !(e.starts_with("https://") || e.starts_with("http://")) || e.len() > 2048 {
                return Err(invalid("sts.endpoint", "must be an http(s) URL"));
            }
            if Some(&e) != policy.default_endpoint.as_ref()
                && !policy.allowed_endpoints.contains(&e)
            {
                return Err(SpecError::EndpointNotAllowed(e));
            }
            Some(e)
        }
    };
    if provider != StsProvider::Aws {
        // MinIO and Ceph role ARNs mean nothing to AWS: refuse them before a token is sent there.
        match &endpoint {
            None => {
                return Err(invalid(
                    "sts.provider",
                    "an STS-compatible provider needs an STS endpoint: set spec.sts.endpoint, or ask the cluster admin for a default --sts-endpoint",
                ));
            }
            Some(e) if is_aws_endpoint(e) => {
                return Err(invalid(
                    "sts.provider",
                    "an STS-compatible provider (MinIO, CephRGW) cannot name an AWS endpoint",
                ));
            }
            Some(_) => {}
        }
    }
    // Checked on the endpoint actually used, so a default endpoint that somehow escaped the start
    // check is refused too.
    if let Some(e) = &endpoint
        && is_plain_http(e)
        && !policy.allow_insecure_endpoints
    {
        return Err(SpecError::InsecureEndpoint(e.clone()));
    }

    check(
        "mountPath",
        &spec.mount_path,
        &MOUNT_PATH,
        512,
        "an absolute path of letters, digits and ._/-",
    )?;
    if spec.mount_path.contains("..") {
        return Err(invalid("mountPath", "must not contain '..'"));
    }

    let saml = resolve_saml(spec, provider, policy)?;
    if saml.as_ref().is_some_and(|s| s.source_identity.is_some())
        && spec
            .role_chain
            .first()
            .is_some_and(|hop| hop.source_identity.is_some())
    {
        return Err(invalid(
            "roleChain[0].sourceIdentity",
            "saml.sourceIdentity already sets the source identity; STS keeps it for the whole chain",
        ));
    }
    let role_chain = resolve_chain(
        spec,
        provider,
        namespace,
        name,
        &session_name,
        policy,
        saml.as_ref()
            .map(|s| s.transitive_tag_keys.clone())
            .unwrap_or_default(),
    )?;

    Ok(ResolvedSpec {
        service_account_name: spec.service_account_name.clone(),
        role_arn,
        secret_name,
        audience,
        duration_seconds: spec.duration_seconds,
        renew_before,
        session_name,
        session_policy: spec.session_policy.clone(),
        policy_arns,
        region,
        endpoint,
        mount_path: spec.mount_path.trim_end_matches('/').to_string(),
        role_chain,
        saml,
        credential_source,
    })
}

/// `spec.saml`, with the operator's default provider ARN and the tag rules of a chain hop.
fn resolve_saml(
    spec: &AWSRoleBindingSpec,
    provider: StsProvider,
    policy: &StsPolicy,
) -> Result<Option<ResolvedSaml>, SpecError> {
    let Some(saml) = &spec.saml else {
        return Ok(None);
    };
    if spec.credential_source.is_some() {
        return Err(invalid(
            "saml",
            "saml and credentialSource are two different first exchanges: set one of them",
        ));
    }
    if provider != StsProvider::Aws {
        return Err(invalid("saml", "needs sts.provider AWS"));
    }
    let provider_arn = saml
        .provider_arn
        .clone()
        .or_else(|| policy.default_saml_provider_arn.clone())
        .ok_or_else(|| {
            invalid(
                "saml.providerArn",
                "is required: the operator has no default --saml-provider-arn",
            )
        })?;
    check(
        "saml.providerArn",
        &provider_arn,
        &SAML_PROVIDER_ARN,
        2048,
        "an IAM SAML provider ARN such as arn:aws:iam::123456789012:saml-provider/podcreds",
    )?;
    if let Some(identity) = &saml.source_identity {
        if starts_with_ignoring_case(identity, AWS_TAG_PREFIX) {
            return Err(invalid("saml.sourceIdentity", "must not start with aws:"));
        }
        check(
            "saml.sourceIdentity",
            identity,
            &SOURCE_IDENTITY,
            64,
            "2 to 64 characters of letters, digits and _+=,.@-",
        )?;
    }
    if saml.tags.len() > MAX_SESSION_TAGS {
        return Err(invalid(
            "saml.tags",
            format!("at most {MAX_SESSION_TAGS} tags"),
        ));
    }
    let mut tags: Vec<(String, String)> = Vec::with_capacity(saml.tags.len());
    for tag in &saml.tags {
        check(
            "saml.tags",
            &tag.key,
            &TAG_KEY,
            128,
            "keys of 1 to 128 letters, digits, spaces or _.:/=+@-",
        )?;
        check(
            "saml.tags",
            &tag.value,
            &TAG_VALUE,
            256,
            "values of at most 256 letters, digits, spaces or _.:/=+@-",
        )?;
        if starts_with_ignoring_case(&tag.key, AWS_TAG_PREFIX)
            || starts_with_ignoring_case(&tag.key, RESERVED_TAG_PREFIX)
        {
            return Err(invalid(
                "saml.tags",
                format!(
                    "key {:?}: keys starting with aws: or kubernetes- are reserved",
                    tag.key
                ),
            ));
        }
        if tags.iter().any(|(k, _)| same_tag_key(k, &tag.key)) {
            return Err(invalid(
                "saml.tags",
                format!("key {:?} appears twice (STS ignores case)", tag.key),
            ));
        }
        tags.push((tag.key.clone(), tag.value.clone()));
    }
    if saml.transitive_tag_keys.len() > MAX_SESSION_TAGS {
        return Err(invalid(
            "saml.transitiveTagKeys",
            format!("at most {MAX_SESSION_TAGS} keys"),
        ));
    }
    for key in &saml.transitive_tag_keys {
        if !tags.iter().any(|(k, _)| same_tag_key(k, key)) {
            return Err(invalid(
                "saml.transitiveTagKeys",
                format!("{key:?} is not the key of one of the tags"),
            ));
        }
    }
    Ok(Some(ResolvedSaml {
        provider_arn,
        source_identity: saml.source_identity.clone(),
        tags,
        transitive_tag_keys: saml.transitive_tag_keys.clone(),
    }))
}

/// The binding's `credentialSource`, checked: MFA is refused (an unattended operator has no
/// one-time code to send).
fn resolve_source(spec: &AWSRoleBindingSpec) -> Result<Option<ResolvedSource>, SpecError> {
    let Some(source) = &spec.credential_source else {
        return Ok(None);
    };
    check(
        "credentialSource.name",
        &source.name,
        &DNS_SUBDOMAIN,
        253,
        "an AWSCredentialSource name (DNS subdomain)",
    )?;
    if source.mfa_serial_number.is_some() {
        return Err(invalid(
            "credentialSource.mfaSerialNumber",
            "MFA is not supported: GetSessionToken with MFA needs a one-time code typed by a person, which an unattended operator cannot provide",
        ));
    }
    Ok(Some(ResolvedSource {
        name: source.name.clone(),
        mode: source.mode,
        key_digest: None,
    }))
}

fn check_session_prefix(
    field: &str,
    session_name: &str,
    namespace: &str,
    policy: &StsPolicy,
) -> Result<(), SpecError> {
    let prefix = format!("{namespace}.");
    if !policy.allow_unprefixed_session_names && !session_name.starts_with(&prefix) {
        return Err(SpecError::SessionNameNotPrefixed {
            field: field.to_string(),
            session_name: session_name.to_string(),
            prefix,
        });
    }
    Ok(())
}

fn check_session_policy(field: &str, policy: &str) -> Result<(), SpecError> {
    if policy.chars().count() > MAX_SESSION_POLICY_CHARS {
        return Err(invalid(field, "longer than 2048 characters"));
    }
    match serde_json::from_str::<serde_json::Value>(policy) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(invalid(field, "must be a JSON object")),
        Err(e) => Err(invalid(field, format!("is not valid JSON: {e}"))),
    }
}

fn check_policy_arns(field: &str, arns: &[String]) -> Result<(), SpecError> {
    if arns.len() > 10 {
        return Err(invalid(field, "at most 10 entries"));
    }
    for arn in arns {
        check(field, arn, &POLICY_ARN, 2048, "IAM policy ARNs")?;
    }
    Ok(())
}

/// Whether two tag keys are the same to STS (which ignores case).
fn same_tag_key(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// Validates the `roleChain` hops against every STS limit and resolves their defaults.
fn resolve_chain(
    spec: &AWSRoleBindingSpec,
    provider: StsProvider,
    namespace: &str,
    name: &str,
    default_session_name: &str,
    policy: &StsPolicy,
    // Tag keys the first exchange made transitive (a SAML assertion's `TransitiveTagKeys`).
    first_exchange_transitive: Vec<String>,
) -> Result<Vec<ResolvedHop>, SpecError> {
    if spec.role_chain.is_empty() {
        if spec.kubernetes_session_tags {
            return Err(invalid(
                "kubernetesSessionTags",
                "needs a roleChain: the tags go on its first AssumeRole hop",
            ));
        }
        return Ok(Vec::new());
    }
    if spec.role_chain.len() > patterns::MAX_CHAIN_HOPS {
        return Err(invalid("roleChain", "at most 5 hops"));
    }
    if provider != StsProvider::Aws {
        return Err(invalid("roleChain", "needs sts.provider AWS"));
    }
    if let Some(text) = &spec.renew_before
        && humantime::parse_duration(text)
            .is_ok_and(|d| d.as_secs() >= MAX_CHAINED_SESSION_SECONDS as u64)
    {
        return Err(invalid(
            "renewBefore",
            "must be shorter than one hour with a roleChain: STS caps chained sessions at 3600 seconds",
        ));
    }
    let kubernetes_tags = if spec.kubernetes_session_tags {
        let cluster = policy
            .cluster_name
            .clone()
            .ok_or(SpecError::ClusterNameNotConfigured)?;
        let values = [
            namespace.to_string(),
            spec.service_account_name.clone(),
            name.to_string(),
            cluster,
        ];
        KUBERNETES_TAG_KEYS
            .iter()
            .map(|k| k.to_string())
            .zip(values)
            .collect()
    } else {
        Vec::new()
    };
    let last = spec.role_chain.len() - 1;
    // Tag keys earlier hops made transitive: later sessions inherit them, and STS refuses to
    // let a later hop set them again.
    let mut inherited: Vec<String> = first_exchange_transitive;
    let mut hops = Vec::with_capacity(spec.role_chain.len());
    for (i, hop) in spec.role_chain.iter().enumerate() {
        let own_tags = if i == 0 {
            kubernetes_tags.clone()
        } else {
            Vec::new()
        };
        let resolved = resolve_hop(
            i,
            hop,
            own_tags,
            &inherited,
            namespace,
            default_session_name,
            policy,
            if i == last {
                spec.duration_seconds.min(MAX_CHAINED_SESSION_SECONDS)
            } else {
                900
            },
        )?;
        inherited.extend(resolved.transitive_tag_keys.iter().cloned());
        hops.push(resolved);
    }
    Ok(hops)
}

#[allow(clippy::too_many_arguments)]
fn resolve_hop(
    index: usize,
    hop: &RoleChainHop,
    kubernetes_tags: Vec<(String, String)>,
    inherited: &[String],
    namespace: &str,
    default_session_name: &str,
    policy: &StsPolicy,
    duration_seconds: i32,
) -> Result<ResolvedHop, SpecError> {
    let field = |f: &str| format!("roleChain[{index}].{f}");
    check(
        &field("roleArn"),
        &hop.role_arn,
        &ROLE_ARN,
        2048,
        "an IAM role ARN such as arn:aws:iam::123456789012:role/name",
    )?;
    if let Some(id) = &hop.external_id {
        check(
            &field("externalId"),
            id,
            &EXTERNAL_ID,
            1224,
            "2 to 1224 characters of letters, digits and _+=,.@:/-",
        )?;
    }
    let session_name = match &hop.session_name {
        Some(s) => {
            check(
                &field("sessionName"),
                s,
                &SESSION_NAME,
                64,
                "2 to 64 characters of letters, digits and _+=,.@-",
            )?;
            check_session_prefix(&field("sessionName"), s, namespace, policy)?;
            s.clone()
        }
        None => default_session_name.to_string(),
    };
    if let Some(identity) = &hop.source_identity {
        if index > 0 {
            return Err(invalid(
                field("sourceIdentity"),
                "only the first hop may set it; STS keeps it for the rest of the chain",
            ));
        }
        if starts_with_ignoring_case(identity, AWS_TAG_PREFIX) {
            return Err(invalid(field("sourceIdentity"), "must not start with aws:"));
        }
        check(
            &field("sourceIdentity"),
            identity,
            &SOURCE_IDENTITY,
            64,
            "2 to 64 characters of letters, digits and _+=,.@-",
        )?;
    }

    let reserved = kubernetes_tags.len();
    if hop.tags.len() + reserved > MAX_SESSION_TAGS {
        return Err(invalid(
            field("tags"),
            format!(
                "at most {} tags (STS takes {MAX_SESSION_TAGS} per call{})",
                MAX_SESSION_TAGS - reserved,
                if reserved > 0 {
                    ", and podcreds adds the Kubernetes tags"
                } else {
                    ""
                }
            ),
        ));
    }
    let mut tags = kubernetes_tags;
    for tag in &hop.tags {
        check(
            &field("tags"),
            &tag.key,
            &TAG_KEY,
            128,
            "keys of 1 to 128 letters, digits, spaces or _.:/=+@-",
        )?;
        check(
            &field("tags"),
            &tag.value,
            &TAG_VALUE,
            256,
            "values of at most 256 letters, digits, spaces or _.:/=+@-",
        )?;
        if starts_with_ignoring_case(&tag.key, AWS_TAG_PREFIX)
            || starts_with_ignoring_case(&tag.key, RESERVED_TAG_PREFIX)
        {
            return Err(invalid(
                field("tags"),
                format!(
                    "key {:?}: keys starting with aws: or kubernetes- are reserved",
                    tag.key
                ),
            ));
        }
        if tags.iter().any(|(k, _)| same_tag_key(k, &tag.key)) {
            return Err(invalid(
                field("tags"),
                format!("key {:?} appears twice (STS ignores case)", tag.key),
            ));
        }
        if inherited.iter().any(|k| same_tag_key(k, &tag.key)) {
            return Err(invalid(
                field("tags"),
                format!(
                    "key {:?} was made transitive by an earlier hop; STS refuses to override an inherited transitive tag",
                    tag.key
                ),
            ));
        }
        tags.push((tag.key.clone(), tag.value.clone()));
    }
    let mut transitive_tag_keys: Vec<String> =
        tags[..reserved].iter().map(|(k, _)| k.clone()).collect();
    if hop.transitive_tag_keys.len() + reserved > MAX_SESSION_TAGS {
        return Err(invalid(
            field("transitiveTagKeys"),
            format!("at most {} keys", MAX_SESSION_TAGS - reserved),
        ));
    }
    for key in &hop.transitive_tag_keys {
        if !hop.tags.iter().any(|t| same_tag_key(&t.key, key)) {
            return Err(invalid(
                field("transitiveTagKeys"),
                format!("{key:?} is not the key of one of the hop's tags"),
            ));
        }
        transitive_tag_keys.push(key.clone());
    }

    if let Some(p) = &hop.session_policy {
        check_session_policy(&field("sessionPolicy"), p)?;
    }
    check_policy_arns(&field("policyArns"), &hop.policy_arns)?;
    let policy_chars = hop
        .session_policy
        .as_deref()
        .map_or(0, |p| p.chars().count())
        + hop
            .policy_arns
            .iter()
            .map(|a| a.chars().count())
            .sum::<usize>();
    if policy_chars > MAX_SESSION_POLICY_CHARS {
        return Err(invalid(
            field("sessionPolicy"),
            "sessionPolicy and policyArns together must stay within 2048 characters (STS's limit)",
        ));
    }

    Ok(ResolvedHop {
        role_arn: hop.role_arn.clone(),
        external_id: hop.external_id.clone(),
        session_name,
        source_identity: hop.source_identity.clone(),
        tags,
        transitive_tag_keys,
        session_policy: hop.session_policy.clone(),
        policy_arns: hop.policy_arns.clone(),
        duration_seconds,
    })
}

/// Hex characters of the hash a cut default session name ends with (48 bits: no tenant can search
/// for a colliding binding name).
const SESSION_HASH_HEX: usize = 12;

/// `<namespace>.<name>` within the STS session name rules. Kubernetes names only use characters
/// STS accepts, so only the length needs care: a name longer than 64 characters keeps its first
/// 51, then `_` and 12 hex characters of a SHA-256 of `<namespace>/<name>`. Kubernetes names
/// never contain `_`, so a cut name never equals an uncut one, and two cut names of one namespace
/// would need a 48-bit hash collision: two bindings never share a session name in CloudTrail. The
/// namespace prefix stays whole for namespaces of up to 50 characters.
pub fn default_session_name(namespace: &str, name: &str) -> String {
    let full: String = format!("{namespace}.{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut session = if full.len() <= 64 {
        full
    } else {
        let digest = hex::encode(Sha256::digest(format!("{namespace}/{name}").as_bytes()));
        let kept = 64 - 1 - SESSION_HASH_HEX;
        // `full` is ASCII (cleaned above), so any byte index is a character boundary.
        format!("{}_{}", &full[..kept], &digest[..SESSION_HASH_HEX])
    };
    while session.len() < 2 {
        session.push('-');
    }
    session
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AWSRoleBindingSpec {
        serde_json::from_value(serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app-reader",
        }))
        .expect("minimal spec")
    }

    fn resolve_ok(s: &AWSRoleBindingSpec) -> ResolvedSpec {
        resolve(s, "team-a", "reader", &StsPolicy::default()).expect("valid spec")
    }

    #[test]
    fn defaults_are_applied() {
        let r = resolve_ok(&spec());
        assert_eq!(r.secret_name, "reader");
        assert_eq!(r.audience, "sts.amazonaws.com");
        assert_eq!(r.duration_seconds, 3600);
        assert_eq!(r.session_name, "team-a.reader");
        assert_eq!(r.region, "us-east-1");
        assert_eq!(r.endpoint, None);
        assert_eq!(r.mount_path, "/var/run/secrets/podcreds");
        assert_eq!(r.renew_before, None);
    }

    /// The shared role ARN table (also run against the apiserver's CEL rule by the e2e suite):
    /// (provider, accepted, ARN).
    fn role_arn_table() -> Vec<(StsProvider, bool, String)> {
        include_str!("../tests/role_arns.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|line| {
                let mut parts = line.splitn(3, ' ');
                let provider: StsProvider =
                    serde_json::from_value(serde_json::json!(parts.next().unwrap_or_default()))
                        .unwrap_or_else(|e| panic!("{line}: {e}"));
                let accepted = match parts.next() {
                    Some("accept") => true,
                    Some("refuse") => false,
                    other => panic!("{line}: {other:?}"),
                };
                (
                    provider,
                    accepted,
                    parts.next().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn role_arns_follow_the_providers_form() {
        let table = role_arn_table();
        for provider in [StsProvider::Aws, StsProvider::MinIo, StsProvider::CephRgw] {
            for accepted in [true, false] {
                assert!(
                    table.iter().any(|c| c.0 == provider && c.1 == accepted),
                    "the table lacks {provider:?} accepted={accepted}"
                );
            }
        }
        let policy = StsPolicy {
            allowed_endpoints: vec!["https://127.0.0.1:9000".into()],
            ..StsPolicy::default()
        };
        for (provider, accepted, arn) in &table {
            let mut s = spec();
            s.role_arn = Some(arn.clone());
            s.sts = Some(crate::api::StsSettings {
                provider: Some(*provider),
                endpoint: Some("https://127.0.0.1:9000".into()),
                ..Default::default()
            });
            let result = resolve(&s, "ns", "n", &policy);
            if *accepted {
                let resolved = result.unwrap_or_else(|e| panic!("{provider:?} {arn}: {e}"));
                assert_eq!(resolved.role_arn.as_ref(), Some(arn));
            } else {
                let err = result.expect_err(arn);
                assert_eq!(err.category(), "InvalidSpec", "{arn}");
                assert!(err.to_string().contains("spec.roleArn"), "{err}");
            }
        }
    }

    #[test]
    fn a_binding_without_provider_is_held_to_aws_arns() {
        let mut s = spec();
        s.role_arn = Some("arn:minio:iam:::role/MHR2BeH2-q1dHO2yx5U9Mf-tP9Q".into());
        let err = resolve(&s, "ns", "n", &StsPolicy::default()).expect_err("MinIO ARN");
        assert!(err.to_string().contains("an IAM role ARN"), "{err}");
    }

    #[test]
    fn compatible_providers_need_an_endpoint_that_is_not_aws() {
        let mut s = spec();
        s.role_arn = Some("arn:aws:iam:::role/ceph".into());
        let ceph = |endpoint: Option<&str>| crate::api::StsSettings {
            provider: Some(StsProvider::CephRgw),
            endpoint: endpoint.map(str::to_string),
            ..Default::default()
        };
        // No endpoint at all: the AWS regional endpoint would receive the token.
        s.sts = Some(ceph(None));
        let err = resolve(&s, "ns", "n", &StsPolicy::default()).expect_err("no endpoint");
        assert!(err.to_string().contains("spec.sts.provider"), "{err}");
        // The operator's default endpoint counts.
        let rgw = StsPolicy {
            default_endpoint: Some("https://rgw.storage.svc:8443".into()),
            ..StsPolicy::default()
        };
        assert!(resolve(&s, "ns", "n", &rgw).is_ok());
        // An allowed AWS endpoint is still AWS.
        let aws = "https://sts.eu-west-1.amazonaws.com";
        let allowing_aws = StsPolicy {
            allowed_endpoints: vec![aws.into()],
            ..StsPolicy::default()
        };
        s.sts = Some(ceph(Some(aws)));
        let err = resolve(&s, "ns", "n", &allowing_aws).expect_err("AWS endpoint");
        assert!(
            err.to_string().contains("cannot name an AWS endpoint"),
            "{err}"
        );
    }

    #[test]
    fn aws_endpoints_are_recognised_by_host() {
        for (endpoint, aws) in [
            ("https://sts.amazonaws.com", true),
            ("https://sts.eu-west-1.amazonaws.com/", true),
            ("https://STS.cn-north-1.AmazonAWS.com.cn:443/x", true),
            ("https://user@sts.us-gov-west-1.amazonaws.com", true),
            ("http://127.0.0.1:9000", false),
            ("https://minio.storage.svc:9000", false),
            ("https://amazonaws.com.evil.example", false),
            ("https://sts.amazonaws.com.evil.example/", false),
            ("http://[::1]:9000", false),
        ] {
            assert_eq!(is_aws_endpoint(endpoint), aws, "{endpoint}");
        }
    }

    #[test]
    fn session_names_follow_sts_rules() {
        let long_ns = "n".repeat(63);
        let long_name = "b".repeat(200);
        let s = default_session_name(&long_ns, &long_name);
        assert_eq!(s.len(), 64);
        assert!(SESSION_NAME.is_match(s.as_bytes()), "{s}");
        // Two long names with the same prefix get different session names.
        assert_ne!(s, default_session_name(&long_ns, &format!("{long_name}x")));
        assert_eq!(default_session_name("a", "b"), "a.b");
        let odd = default_session_name("ns", "ná me");
        assert!(SESSION_NAME.is_match(odd.as_bytes()), "{odd}");
    }

    #[test]
    fn cut_default_session_names_keep_the_namespace_and_cannot_be_forged() {
        let ns = "shop";
        let long = format!("reader-{}", "x".repeat(80));
        let cut = default_session_name(ns, &long);
        assert_eq!(cut.len(), 64);
        assert!(cut.starts_with("shop.reader-xxx"), "{cut}");
        assert_eq!(cut.as_bytes()[51], b'_', "{cut}");
        // A binding named after the cut session name would need a `_`, which Kubernetes names
        // cannot hold: no uncut default can equal a cut one.
        let forged = &cut["shop.".len()..];
        assert!(!DNS_SUBDOMAIN.is_match(forged.as_bytes()), "{forged}");
        // 64 characters exactly are kept whole.
        let exact = "y".repeat(64 - "shop.".len());
        assert_eq!(default_session_name(ns, &exact), format!("shop.{exact}"));
        // The namespace prefix stays whole up to 50 characters.
        let ns50 = "n".repeat(50);
        assert!(default_session_name(&ns50, &long).starts_with(&format!("{ns50}.")));
    }

    #[test]
    fn explicit_session_names_must_name_the_namespace() {
        let mut s = spec();
        for (name, ok) in [
            ("team-a.reports", true),
            ("team-a.", true),
            ("prod.payments", false),
            ("team-a", false),
            ("team-ab.x", false),
            ("team-a-x.y", false),
            ("x.team-a.y", false),
        ] {
            s.session_name = Some(name.into());
            match resolve(&s, "team-a", "reader", &StsPolicy::default()) {
                Ok(r) => assert!(ok && r.session_name == name, "{name} accepted"),
                Err(e) => {
                    assert!(!ok, "{name} refused: {e}");
                    assert_eq!(e.category(), "SessionNameNotAllowed");
                    assert_eq!(
                        e.to_string(),
                        format!(
                            "spec.sessionName {name:?} must start with \"team-a.\" (the binding's namespace and a dot), so that CloudTrail shows which namespace acted; ask the cluster admin to allow other session names"
                        )
                    );
                }
            }
        }
        let relaxed = StsPolicy {
            allow_unprefixed_session_names: true,
            ..StsPolicy::default()
        };
        s.session_name = Some("prod.payments".into());
        let r = resolve(&s, "team-a", "reader", &relaxed).expect("relaxed");
        assert_eq!(r.session_name, "prod.payments");
        // The STS rules hold either way.
        s.session_name = Some("team-a.has space".into());
        assert_eq!(
            resolve(&s, "team-a", "reader", &relaxed)
                .expect_err("space")
                .category(),
            "InvalidSpec"
        );
    }

    #[test]
    fn explicit_session_names_are_checked() {
        let mut s = spec();
        s.session_name = Some("x".into());
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
        s.session_name = Some("a".repeat(65));
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
        s.session_name = Some("team-a.ok_name@x".into());
        assert_eq!(resolve_ok(&s).session_name, "team-a.ok_name@x");
    }

    #[test]
    fn durations_and_renew_before_are_checked() {
        let mut s = spec();
        s.duration_seconds = 899;
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
        s.duration_seconds = 43201;
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
        s.duration_seconds = 3600;
        s.renew_before = Some("1h".into());
        let err =
            resolve(&s, "ns", "n", &StsPolicy::default()).expect_err("renewBefore >= duration");
        assert!(err.to_string().contains("shorter than durationSeconds"));
        s.renew_before = Some("30s".into());
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
        s.renew_before = Some("1.5h".into());
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
        s.renew_before = Some("20m30s".into());
        assert_eq!(resolve_ok(&s).renew_before, Some(Duration::from_secs(1230)));
    }

    #[test]
    fn session_policies_must_be_json_objects() {
        let mut s = spec();
        for bad in [
            "[]",
            "{",
            "not json",
            &format!("{{\"a\":\"{}\"}}", "x".repeat(2048)),
        ] {
            s.session_policy = Some(bad.into());
            assert!(
                resolve(&s, "ns", "n", &StsPolicy::default()).is_err(),
                "{bad}"
            );
        }
        s.session_policy = Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into());
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_ok());
    }

    #[test]
    fn policy_arns_are_checked() {
        let mut s = spec();
        s.policy_arns = Some(vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()]);
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_ok());
        s.policy_arns = Some(vec!["arn:aws:iam::123456789012:role/not-a-policy".into()]);
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
        s.policy_arns = Some(vec!["arn:aws:iam::aws:policy/P".into(); 11]);
        assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
    }

    #[test]
    fn audiences_and_endpoints_need_the_admins_allowlist() {
        let mut s = spec();
        s.audience = Some("https://kubernetes.default.svc".into());
        assert_eq!(
            resolve(&s, "ns", "n", &StsPolicy::default())
                .expect_err("audience")
                .category(),
            "AudienceNotAllowed"
        );
        s.audience = None;
        s.sts = Some(crate::api::StsSettings {
            region: Some("eu-west-1".into()),
            endpoint: Some("https://evil.example".into()),
            ..Default::default()
        });
        assert_eq!(
            resolve(&s, "ns", "n", &StsPolicy::default())
                .expect_err("endpoint")
                .category(),
            "EndpointNotAllowed"
        );
        let policy = StsPolicy {
            allowed_endpoints: vec!["https://evil.example".into()],
            allowed_audiences: vec!["minio".into()],
            ..StsPolicy::default()
        };
        s.audience = Some("minio".into());
        let r = resolve(&s, "ns", "n", &policy).expect("allowed");
        assert_eq!(r.endpoint.as_deref(), Some("https://evil.example"));
        assert_eq!(r.region, "eu-west-1");
        assert_eq!(r.audience, "minio");
    }

    #[test]
    fn plain_http_endpoints_need_the_admins_consent() {
        let mut s = spec();
        s.sts = Some(crate::api::StsSettings {
            provider: None,
            region: None,
            endpoint: Some("http://minio.storage:9000".into()),
        });
        let mut policy = StsPolicy {
            allowed_endpoints: vec![
                "http://minio.storage:9000".into(),
                "https://sts.example".into(),
            ],
            ..StsPolicy::default()
        };
        let err = resolve(&s, "ns", "n", &policy).expect_err("plain http");
        assert_eq!(err.category(), "InsecureEndpoint");
        assert!(
            err.to_string()
                .contains("\"http://minio.storage:9000\" is plain HTTP"),
            "{err}"
        );
        assert_eq!(
            policy.unusable_allowed_endpoints(),
            ["http://minio.storage:9000"]
        );
        // An endpoint outside the allowlist is refused for that first, whatever its scheme.
        s.sts = Some(crate::api::StsSettings {
            provider: None,
            region: None,
            endpoint: Some("http://elsewhere".into()),
        });
        assert_eq!(
            resolve(&s, "ns", "n", &policy)
                .expect_err("not allowed")
                .category(),
            "EndpointNotAllowed"
        );
        // https is fine; plain HTTP with the admin's consent too.
        s.sts = Some(crate::api::StsSettings {
            provider: None,
            region: None,
            endpoint: Some("https://sts.example".into()),
        });
        assert!(resolve(&s, "ns", "n", &policy).is_ok());
        policy.allow_insecure_endpoints = true;
        s.sts = Some(crate::api::StsSettings {
            provider: None,
            region: None,
            endpoint: Some("http://minio.storage:9000".into()),
        });
        assert!(resolve(&s, "ns", "n", &policy).is_ok());
        assert!(policy.unusable_allowed_endpoints().is_empty());
    }

    #[test]
    fn a_plain_http_default_endpoint_is_refused_at_start() {
        let mut policy = StsPolicy {
            default_endpoint: Some("HTTP://127.0.0.1:9000".into()),
            ..StsPolicy::default()
        };
        let err = policy.check().expect_err("plain http default");
        assert!(
            err.to_string().contains("--allow-insecure-sts-endpoints"),
            "{err}"
        );
        // Bindings relying on it are refused as well, should the start check be bypassed.
        assert_eq!(
            resolve(&spec(), "ns", "n", &policy)
                .expect_err("default endpoint")
                .category(),
            "InsecureEndpoint"
        );
        policy.allow_insecure_endpoints = true;
        assert!(policy.check().is_ok());
        policy.allow_insecure_endpoints = false;
        policy.default_endpoint = Some("https://sts.example".into());
        assert!(policy.check().is_ok());
        policy.default_endpoint = None;
        assert!(policy.check().is_ok());
        assert!(
            !is_plain_http("https://x") && !is_plain_http("http:/") && is_plain_http("http://x")
        );
    }

    #[test]
    fn mount_paths_cannot_inject_commands() {
        let mut s = spec();
        for bad in ["relative", "/a b", "/a;rm -rf /", "/a/../b", "/$(id)"] {
            s.mount_path = bad.into();
            assert!(
                resolve(&s, "ns", "n", &StsPolicy::default()).is_err(),
                "{bad}"
            );
        }
        s.mount_path = "/etc/aws/".into();
        assert_eq!(resolve_ok(&s).mount_path, "/etc/aws");
    }

    proptest::proptest! {
        /// Whatever the apiserver lets through (or an old CRD without validation), resolving
        /// never panics, and whatever it accepts obeys the STS rules.
        #[test]
        fn resolve_is_total_and_sound(
            sa in ".{0,80}",
            arn in "(arn:aws(-[a-z]{1,5})?:iam::[0-9]{10,13}:(role|user)/)?.{0,80}",
            session in proptest::option::of(".{0,80}"),
            policy in proptest::option::of(".{0,300}"),
            renew in proptest::option::of("[0-9a-z. ]{0,12}"),
            duration in -10i32..100_000,
            mount in ".{0,40}",
        ) {
            let mut s = spec();
            s.service_account_name = sa;
            s.role_arn = Some(arn);
            s.session_name = session;
            s.session_policy = policy;
            s.renew_before = renew;
            s.duration_seconds = duration;
            s.mount_path = mount;
            if let Ok(r) = resolve(&s, "ns", "n", &StsPolicy::default()) {
                proptest::prop_assert!(SESSION_NAME.is_match(r.session_name.as_bytes()));
                proptest::prop_assert!((900..=43200).contains(&r.duration_seconds));
                proptest::prop_assert!(r.mount_path.starts_with('/') && !r.mount_path.contains(".."));
                proptest::prop_assert!(ROLE_ARN.is_match(r.role_arn.as_deref().unwrap_or_default().as_bytes()));
            }
        }

        #[test]
        fn default_session_names_are_always_valid(ns in "[a-z0-9-]{1,63}", name in "[a-z0-9.-]{1,253}") {
            let s = default_session_name(&ns, &name);
            proptest::prop_assert!(SESSION_NAME.is_match(s.as_bytes()), "{}", s);
        }

        /// Two bindings of one namespace, even with long names that differ only at the end,
        /// never share a default session name.
        #[test]
        fn default_session_names_of_one_namespace_differ(
            ns in "[a-z0-9-]{1,63}",
            stem in "[a-z0-9.-]{0,240}",
            a in "[a-z0-9.-]{1,12}",
            b in "[a-z0-9.-]{1,12}",
        ) {
            proptest::prop_assume!(a != b);
            proptest::prop_assert_ne!(
                default_session_name(&ns, &format!("{stem}{a}")),
                default_session_name(&ns, &format!("{stem}{b}"))
            );
        }
    }

    #[test]
    fn fingerprint_tracks_credential_shaping_fields() {
        let base = resolve_ok(&spec());
        let mut s = spec();
        s.role_arn = Some("arn:aws:iam::123456789012:role/other".into());
        assert_ne!(base.fingerprint(), resolve_ok(&s).fingerprint());
        let mut s = spec();
        s.duration_seconds = 7200;
        assert_ne!(base.fingerprint(), resolve_ok(&s).fingerprint());
        assert_eq!(base.fingerprint(), resolve_ok(&spec()).fingerprint());
    }

    mod saml {
        use super::*;

        const PROVIDER: &str = "arn:aws:iam::123456789012:saml-provider/podcreds";

        fn spec_with(saml: serde_json::Value) -> AWSRoleBindingSpec {
            serde_json::from_value(serde_json::json!({
                "serviceAccountName": "app",
                "roleArn": "arn:aws:iam::123456789012:role/r",
                "saml": saml,
            }))
            .expect("spec")
        }

        fn with_default() -> StsPolicy {
            StsPolicy {
                default_saml_provider_arn: Some(PROVIDER.into()),
                ..StsPolicy::default()
            }
        }

        #[test]
        fn the_provider_defaults_to_the_operators() {
            let r = resolve(
                &spec_with(serde_json::json!({})),
                "ns",
                "b",
                &with_default(),
            )
            .expect("valid");
            let saml = r.saml.expect("saml");
            assert_eq!(saml.provider_arn, PROVIDER);
            let err = resolve(
                &spec_with(serde_json::json!({})),
                "ns",
                "b",
                &StsPolicy::default(),
            )
            .expect_err("no provider");
            assert!(err.to_string().contains("saml.providerArn"), "{err}");
        }

        #[test]
        fn bindings_without_saml_keep_their_fingerprint() {
            let mut plain = spec_with(serde_json::json!({}));
            plain.saml = None;
            let r = resolve(&plain, "ns", "b", &with_default()).expect("valid");
            assert!(!serde_json::to_string(&r).expect("json").contains("saml"));
            let with = resolve(
                &spec_with(serde_json::json!({})),
                "ns",
                "b",
                &with_default(),
            )
            .expect("valid");
            assert_ne!(r.fingerprint(), with.fingerprint());
        }

        #[test]
        fn hostile_saml_specs_are_refused() {
            for (saml, field) in [
                (
                    serde_json::json!({"providerArn": "arn:aws:iam::123456789012:role/r"}),
                    "saml.providerArn",
                ),
                (
                    serde_json::json!({"sourceIdentity": "aws:me"}),
                    "saml.sourceIdentity",
                ),
                (
                    serde_json::json!({"sourceIdentity": "a<b>"}),
                    "saml.sourceIdentity",
                ),
                (
                    serde_json::json!({"tags": [{"key": "Kubernetes-ns", "value": "x"}]}),
                    "saml.tags",
                ),
                (
                    serde_json::json!({"tags": [{"key": "a", "value": "<&>"}]}),
                    "saml.tags",
                ),
                (
                    serde_json::json!({"tags": [{"key": "a", "value": "1"}, {"key": "A", "value": "2"}]}),
                    "saml.tags",
                ),
                (
                    serde_json::json!({"tags": [{"key": "a", "value": "1"}], "transitiveTagKeys": ["b"]}),
                    "saml.transitiveTagKeys",
                ),
            ] {
                let err = resolve(&spec_with(saml.clone()), "ns", "b", &with_default())
                    .expect_err(&saml.to_string());
                assert!(err.to_string().contains(field), "{saml}: {err}");
            }
            let mut minio = spec_with(serde_json::json!({}));
            minio.role_arn = Some("arn:minio:iam:::role/x".into());
            minio.sts = Some(crate::api::StsSettings {
                provider: Some(StsProvider::MinIo),
                endpoint: Some("https://minio.example".into()),
                ..Default::default()
            });
            let policy = StsPolicy {
                allowed_endpoints: vec!["https://minio.example".into()],
                ..with_default()
            };
            let err = resolve(&minio, "ns", "b", &policy).expect_err("MinIO");
            assert!(err.to_string().contains("sts.provider AWS"), "{err}");
        }

        #[test]
        fn a_chain_cannot_override_what_the_assertion_made_transitive() {
            let mut spec = spec_with(serde_json::json!({
                "tags": [{"key": "team", "value": "a"}],
                "transitiveTagKeys": ["team"],
            }));
            spec.role_chain = vec![RoleChainHop {
                role_arn: "arn:aws:iam::123456789012:role/next".into(),
                tags: vec![crate::api::SessionTag {
                    key: "TEAM".into(),
                    value: "b".into(),
                }],
                ..RoleChainHop::default()
            }];
            let err = resolve(&spec, "ns", "b", &with_default()).expect_err("override");
            assert!(err.to_string().contains("transitive"), "{err}");
        }

        #[test]
        fn saml_and_a_credential_source_exclude_each_other() {
            let mut spec = spec_with(serde_json::json!({}));
            spec.credential_source = serde_json::from_value(
                serde_json::json!({"name": "ci-user", "mode": "AssumeRole"}),
            )
            .expect("source");
            let err = resolve(&spec, "ns", "b", &with_default()).expect_err("both");
            assert!(err.to_string().contains("set one of them"), "{err}");
        }

        #[test]
        fn the_source_identity_is_set_once() {
            let mut spec = spec_with(serde_json::json!({"sourceIdentity": "alice"}));
            spec.role_chain = vec![RoleChainHop {
                role_arn: "arn:aws:iam::123456789012:role/next".into(),
                source_identity: Some("bob".into()),
                ..RoleChainHop::default()
            }];
            let err = resolve(&spec, "ns", "b", &with_default()).expect_err("twice");
            assert!(
                err.to_string().contains("roleChain[0].sourceIdentity"),
                "{err}"
            );
        }

        #[test]
        fn the_documented_example_resolves() {
            let doc: serde_yaml::Value =
                serde_yaml::from_str(include_str!("../examples/saml.yaml")).expect("YAML");
            let spec: AWSRoleBindingSpec =
                serde_yaml::from_value(doc["spec"].clone()).expect("spec");
            let r = resolve(&spec, "batch", "batch-reader", &StsPolicy::default()).expect("valid");
            let saml = r.saml.expect("saml");
            assert_eq!(saml.tags, [("team".to_string(), "reporting".to_string())]);
            assert_eq!(saml.source_identity.as_deref(), Some("batch-reports"));
        }
    }

    mod role_chains {
        use super::*;

        include!("../tests/data/role_chain_cases.rs");

        fn policy() -> StsPolicy {
            StsPolicy {
                cluster_name: Some("prod-eu".into()),
                allowed_endpoints: vec![CHAIN_CASE_ENDPOINT.into()],
                ..StsPolicy::default()
            }
        }

        fn binding(fields: serde_json::Value) -> AWSRoleBindingSpec {
            let mut spec = chain_case_base();
            if let (Some(base), serde_json::Value::Object(fields)) = (spec.as_object_mut(), fields)
            {
                base.extend(fields);
            }
            serde_json::from_value(spec).expect("spec")
        }

        fn resolve_chain_spec(fields: serde_json::Value) -> Result<ResolvedSpec, SpecError> {
            resolve(&binding(fields), "team-a", "reader", &policy())
        }

        #[test]
        fn the_shared_hostile_table_is_refused() {
            let cases = chain_cases();
            assert!(cases.len() >= 25, "the table lost its cases");
            for case in cases {
                // The end-to-end test checks the apiserver's side of every case.
                assert!(!case.apiserver.is_empty(), "{}", case.name);
                let err = resolve_chain_spec(case.fields)
                    .map(|_| ())
                    .expect_err(case.name);
                assert_eq!(err.category(), "InvalidSpec", "{}: {err}", case.name);
                assert!(
                    err.to_string().contains(case.operator),
                    "{}: {err} lacks {:?}",
                    case.name,
                    case.operator
                );
            }
        }

        #[test]
        fn the_documented_example_resolves() {
            let doc: serde_yaml::Value =
                serde_yaml::from_str(include_str!("../examples/role-chain.yaml")).expect("YAML");
            let spec: AWSRoleBindingSpec =
                serde_yaml::from_value(doc["spec"].clone()).expect("spec");
            let r = resolve(&spec, "ci", "artifacts-writer", &policy()).expect("valid");
            assert_eq!(r.role_chain.len(), 2);
            assert!(r.chained_duration_clamped());
            assert_eq!(r.role_chain[0].tags.len(), 4 + 2);
            assert_eq!(r.role_chain[0].transitive_tag_keys.len(), 4 + 1);
            assert_eq!(r.role_chain[1].session_name, "ci.artifacts-writer");
        }

        #[test]
        fn hops_get_defaults_and_durations() {
            let r = resolve_chain_spec(serde_json::json!({
                "durationSeconds": 7200,
                "roleChain": [
                    {"roleArn": CHAIN_CASE_HOP_ROLE, "externalId": "ext-1", "sourceIdentity": "alice"},
                    {"roleArn": CHAIN_CASE_HOP_ROLE, "sessionName": "team-a.last"},
                ],
            }))
            .expect("valid chain");
            assert_eq!(r.role_chain.len(), 2);
            let (first, last) = (&r.role_chain[0], &r.role_chain[1]);
            assert_eq!(first.session_name, "team-a.reader");
            assert_eq!(first.external_id.as_deref(), Some("ext-1"));
            assert_eq!(first.source_identity.as_deref(), Some("alice"));
            // Intermediate credentials only sign the next call; the last one is capped at 1 h.
            assert_eq!(first.duration_seconds, 900);
            assert_eq!(last.duration_seconds, 3600);
            assert_eq!(last.session_name, "team-a.last");
            assert!(r.chained_duration_clamped());
            assert_eq!(
                r.role_arns().collect::<Vec<_>>(),
                [
                    CHAIN_CASE_ENTRY_ROLE,
                    CHAIN_CASE_HOP_ROLE,
                    CHAIN_CASE_HOP_ROLE
                ]
            );
            let short = resolve_chain_spec(serde_json::json!({
                "durationSeconds": 1800, "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}],
            }))
            .expect("valid");
            assert_eq!(short.role_chain[0].duration_seconds, 1800);
            assert!(!short.chained_duration_clamped());
        }

        #[test]
        fn hop_session_names_must_name_the_namespace() {
            let err = resolve_chain_spec(serde_json::json!({
                "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE, "sessionName": "prod.payments"}],
            }))
            .expect_err("another namespace's session name");
            assert_eq!(err.category(), "SessionNameNotAllowed");
            assert!(
                err.to_string()
                    .starts_with("spec.roleChain[0].sessionName \"prod.payments\" must start with"),
                "{err}"
            );
        }

        #[test]
        fn kubernetes_tags_are_transitive_on_the_first_hop_only() {
            let r = resolve_chain_spec(serde_json::json!({
                "kubernetesSessionTags": true,
                "roleChain": [
                    {"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "team", "value": "a"}]},
                    {"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "stage", "value": "b"}]},
                ],
            }))
            .expect("valid");
            let first = &r.role_chain[0];
            let expected = [
                ("kubernetes-namespace", "team-a"),
                ("kubernetes-service-account", "app"),
                ("kubernetes-binding-name", "reader"),
                ("kubernetes-cluster-name", "prod-eu"),
                ("team", "a"),
            ];
            assert_eq!(
                first
                    .tags
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>(),
                expected
            );
            assert_eq!(first.transitive_tag_keys, KUBERNETES_TAG_KEYS);
            assert_eq!(
                r.role_chain[1].tags,
                [("stage".to_string(), "b".to_string())]
            );
            // No cluster name configured: refused with a reason of its own.
            let err = resolve(
                &binding(serde_json::json!({
                    "kubernetesSessionTags": true,
                    "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}],
                })),
                "team-a",
                "reader",
                &StsPolicy::default(),
            )
            .expect_err("no cluster name");
            assert_eq!(err.category(), "ClusterNameNotConfigured");
            // A later hop cannot override the inherited Kubernetes tags either (reserved prefix).
            let err = resolve_chain_spec(serde_json::json!({
                "kubernetesSessionTags": true,
                "roleChain": [
                    {"roleArn": CHAIN_CASE_HOP_ROLE},
                    {"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "KUBERNETES-NAMESPACE", "value": "x"}]},
                ],
            }))
            .expect_err("forged");
            assert!(err.to_string().contains("reserved"), "{err}");
        }

        #[test]
        fn limits_are_inclusive() {
            let tags: Vec<_> = (0..50)
                .map(|i| serde_json::json!({"key": format!("k{i}"), "value": "v".repeat(256)}))
                .collect();
            let keys: Vec<_> = (0..50).map(|i| format!("k{i}")).collect();
            let r = resolve_chain_spec(serde_json::json!({
                "roleChain": [{
                    "roleArn": CHAIN_CASE_HOP_ROLE,
                    "externalId": "e".repeat(1224),
                    "sourceIdentity": "i".repeat(64),
                    "tags": tags,
                    "transitiveTagKeys": keys,
                    "sessionPolicy": format!("{{\"Sid\":\"{}\"}}", "p".repeat(2048 - 10)),
                }],
            }))
            .expect("every limit reached, none passed");
            assert_eq!(r.role_chain[0].tags.len(), 50);
            // A key of 128 characters, an empty value.
            assert!(
                resolve_chain_spec(serde_json::json!({
                    "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "k".repeat(128), "value": ""}]}],
                }))
                .is_ok()
            );
        }

        #[test]
        fn the_fingerprint_covers_the_chain_and_only_a_chain() {
            let plain = resolve_ok(&spec());
            let canonical = serde_json::to_string(&plain).expect("json");
            assert!(!canonical.contains("roleChain"), "{canonical}");
            let one = resolve_chain_spec(
                serde_json::json!({"roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}]}),
            )
            .expect("valid");
            let tagged = resolve_chain_spec(serde_json::json!({
                "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "t", "value": "v"}]}],
            }))
            .expect("valid");
            assert_ne!(one.fingerprint(), tagged.fingerprint());
            let with_k8s = resolve_chain_spec(serde_json::json!({
                "kubernetesSessionTags": true, "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}],
            }))
            .expect("valid");
            assert_ne!(one.fingerprint(), with_k8s.fingerprint());
            // Another cluster name is another set of tags.
            let elsewhere = resolve(
                &binding(serde_json::json!({
                    "kubernetesSessionTags": true, "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}],
                })),
                "team-a",
                "reader",
                &StsPolicy {
                    cluster_name: Some("prod-us".into()),
                    ..policy()
                },
            )
            .expect("valid");
            assert_ne!(with_k8s.fingerprint(), elsewhere.fingerprint());
        }

        #[test]
        fn a_cluster_name_must_be_a_tag_value() {
            for (name, ok) in [("prod-eu", true), ("", false), ("a;b", false)] {
                let policy = StsPolicy {
                    cluster_name: Some(name.into()),
                    ..StsPolicy::default()
                };
                assert_eq!(policy.check().is_ok(), ok, "{name:?}");
            }
            let long = StsPolicy {
                cluster_name: Some("c".repeat(257)),
                ..StsPolicy::default()
            };
            assert!(long.check().is_err());
        }

        proptest::proptest! {
            /// Whatever tags a tenant writes, what the operator accepts obeys STS: at most 50 per
            /// call, keys unique regardless of case, no reserved key from the tenant, every
            /// transitive key one of the hop's tags.
            #[test]
            fn accepted_tags_obey_sts(
                keys in proptest::collection::vec("[A-Za-z0-9:_ -]{0,10}", 0..60),
                transitive in proptest::collection::vec(0usize..60, 0..5),
                kubernetes in proptest::bool::ANY,
            ) {
                let tags: Vec<_> = keys
                    .iter()
                    .map(|k| serde_json::json!({"key": k, "value": "v"}))
                    .collect();
                let transitive: Vec<_> = transitive
                    .iter()
                    .filter_map(|i| keys.get(*i).cloned())
                    .collect();
                let result = resolve_chain_spec(serde_json::json!({
                    "kubernetesSessionTags": kubernetes,
                    "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE, "tags": tags, "transitiveTagKeys": transitive}],
                }));
                if let Ok(r) = result {
                    let hop = &r.role_chain[0];
                    proptest::prop_assert!(hop.tags.len() <= MAX_SESSION_TAGS);
                    for (i, (k, _)) in hop.tags.iter().enumerate() {
                        proptest::prop_assert!(!k.is_empty() && k.len() <= 128);
                        proptest::prop_assert!(!starts_with_ignoring_case(k, AWS_TAG_PREFIX));
                        proptest::prop_assert!(
                            hop.tags.iter().skip(i + 1).all(|(other, _)| !same_tag_key(k, other))
                        );
                    }
                    let reserved = hop
                        .tags
                        .iter()
                        .filter(|(k, _)| starts_with_ignoring_case(k, RESERVED_TAG_PREFIX))
                        .count();
                    proptest::prop_assert_eq!(reserved, if kubernetes { 4 } else { 0 });
                    for key in &hop.transitive_tag_keys {
                        proptest::prop_assert!(hop.tags.iter().any(|(k, _)| same_tag_key(k, key)));
                    }
                }
            }
        }
    }
}

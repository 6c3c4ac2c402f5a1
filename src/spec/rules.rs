//! The field rules (pure): the patterns the CRD shares ([`crate::patterns`]), compiled once, and
//! the checks every section of a spec uses: one check of session tags and one of a source
//! identity serve a SAML exchange and every `roleChain` hop alike.

use std::sync::LazyLock;

use regex::bytes::{Regex, RegexBuilder};

use crate::api::StsProvider;
use crate::patterns::{
    self, AWS_TAG_PREFIX, MAX_SESSION_POLICY_CHARS, MAX_SESSION_TAGS, RESERVED_TAG_PREFIX,
};

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
        "spec.{field} {endpoint:?} is not in the operator's allowed STS endpoints; ask the cluster admin to allow it"
    )]
    EndpointNotAllowed {
        field: &'static str,
        endpoint: String,
    },
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
    #[error(
        "spec.{field} {endpoint:?} is neither AWS nor one of the operator's default endpoints, and the token's audience {audience:?} is AWS's: whoever runs that endpoint could replay the token to AWS STS. Give the binding the endpoint's own audience (spec.audience, allowed by the cluster admin)"
    )]
    AwsAudienceElsewhere {
        field: &'static str,
        audience: String,
        endpoint: String,
    },
    #[error(
        "spec.{field} {endpoint:?} is neither AWS nor one of the operator's default endpoints: {what} go only to AWS STS (or the endpoints the cluster admin set as the default)"
    )]
    ExchangeNeedsAws {
        field: &'static str,
        endpoint: String,
        what: &'static str,
    },
    #[error(
        "spec.saml.providerArn {0:?} is not a SAML provider this operator may assert to: ask the cluster admin to add it to --saml-allowed-provider-arns (chart: saml.allowedProviderArns)"
    )]
    SamlProviderNotAllowed(String),
}

impl SpecError {
    /// Stable, low-cardinality category used as condition reason, Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            SpecError::Invalid { .. } => "InvalidSpec",
            SpecError::AudienceNotAllowed(_) => "AudienceNotAllowed",
            SpecError::EndpointNotAllowed { .. } => "EndpointNotAllowed",
            SpecError::SessionNameNotPrefixed { .. } => "SessionNameNotAllowed",
            SpecError::InsecureEndpoint(_) => "InsecureEndpoint",
            SpecError::AwsAudienceElsewhere { .. } => "AudienceEndpointMismatch",
            SpecError::ExchangeNeedsAws { .. } => "EndpointNotAllowed",
            SpecError::SamlProviderNotAllowed(_) => "SamlProviderNotAllowed",
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

pub(super) static DNS_SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| compile(patterns::DNS_SUBDOMAIN));
static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| compile(patterns::DNS_LABEL));

/// `<namespace>/<name>` of a ServiceAccount: a DNS label and a DNS subdomain, as the apiserver
/// requires them.
pub fn parse_service_account_ref(text: &str) -> Option<(&str, &str)> {
    let (namespace, name) = text.split_once('/')?;
    (namespace.len() <= 63
        && DNS_LABEL.is_match(namespace.as_bytes())
        && name.len() <= 253
        && DNS_SUBDOMAIN.is_match(name.as_bytes()))
    .then_some((namespace, name))
}
pub(super) static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::ROLE_ARN));
pub(super) static MINIO_ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| compile(patterns::MINIO_ROLE_ARN));
pub(super) static CEPH_ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| compile(patterns::CEPH_ROLE_ARN));
pub(super) static POLICY_ARN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::POLICY_ARN));
pub(super) static TRUST_ANCHOR_ARN: LazyLock<Regex> =
    LazyLock::new(|| compile(patterns::TRUST_ANCHOR_ARN));
pub(super) static PROFILE_ARN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::PROFILE_ARN));
pub(super) static SAML_PROVIDER_ARN: LazyLock<Regex> =
    LazyLock::new(|| compile(patterns::SAML_PROVIDER_ARN));
pub(super) static SESSION_NAME: LazyLock<Regex> = LazyLock::new(|| compile(patterns::SESSION_NAME));
pub(super) static DURATION: LazyLock<Regex> = LazyLock::new(|| compile(patterns::DURATION));
pub(super) static REGION: LazyLock<Regex> = LazyLock::new(|| compile(patterns::REGION));
pub(super) static REGISTRY_HOST: LazyLock<Regex> =
    LazyLock::new(|| compile(patterns::REGISTRY_HOST));
pub(super) static ECR_REGISTRY: LazyLock<Regex> = LazyLock::new(|| compile(patterns::ECR_REGISTRY));
pub(super) static MOUNT_PATH: LazyLock<Regex> = LazyLock::new(|| compile(patterns::MOUNT_PATH));
pub(super) static AUDIENCE: LazyLock<Regex> = LazyLock::new(|| compile(patterns::AUDIENCE));
pub(super) static EXTERNAL_ID: LazyLock<Regex> = LazyLock::new(|| compile(patterns::EXTERNAL_ID));
pub(super) static SOURCE_IDENTITY: LazyLock<Regex> =
    LazyLock::new(|| compile(patterns::SOURCE_IDENTITY));
pub(super) static TAG_KEY: LazyLock<Regex> = LazyLock::new(|| compile(patterns::TAG_KEY));
pub(super) static TAG_VALUE: LazyLock<Regex> = LazyLock::new(|| compile(patterns::TAG_VALUE));

/// The `roleArn` rule of each provider (the CEL rule in [`patterns::role_arn_cel_rule`] makes the
/// same choice): the pattern and how to describe it.
pub(super) fn role_arn_rule(provider: StsProvider) -> (&'static Regex, &'static str) {
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

pub(super) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

pub(super) fn check(
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

pub(super) fn check_session_policy(field: &str, policy: &str) -> Result<(), SpecError> {
    if policy.chars().count() > MAX_SESSION_POLICY_CHARS {
        return Err(invalid(field, "longer than 2048 characters"));
    }
    match serde_json::from_str::<serde_json::Value>(policy) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(invalid(field, "must be a JSON object")),
        Err(e) => Err(invalid(field, format!("is not valid JSON: {e}"))),
    }
}

pub(super) fn check_policy_arns(field: &str, arns: &[String]) -> Result<(), SpecError> {
    if arns.len() > 10 {
        return Err(invalid(field, "at most 10 entries"));
    }
    for arn in arns {
        check(field, arn, &POLICY_ARN, 2048, "IAM policy ARNs")?;
    }
    Ok(())
}

/// Whether two tag keys are the same to STS (which ignores case).
pub(super) fn same_tag_key(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub(super) fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// The tags a binding sets in `field` (a SAML exchange's or a `roleChain` hop's), checked
/// against STS's rules and podcreds' reserved prefix, appended to `tags` (which may already hold
/// podcreds' own Kubernetes tags, counted against the limit). `inherited` are the keys earlier
/// sessions made transitive: STS refuses to let a later session set them again.
pub(super) fn check_tags(
    field: &str,
    set: &[crate::api::SessionTag],
    tags: &mut Vec<(String, String)>,
    inherited: &[String],
) -> Result<(), SpecError> {
    let reserved = tags.len();
    if set.len() + reserved > MAX_SESSION_TAGS {
        return Err(invalid(
            field,
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
    for tag in set {
        check(
            field,
            &tag.key,
            &TAG_KEY,
            128,
            "keys of 1 to 128 letters, digits, spaces or _.:/=+@-",
        )?;
        check(
            field,
            &tag.value,
            &TAG_VALUE,
            256,
            "values of at most 256 letters, digits, spaces or _.:/=+@-",
        )?;
        if starts_with_ignoring_case(&tag.key, AWS_TAG_PREFIX)
            || starts_with_ignoring_case(&tag.key, RESERVED_TAG_PREFIX)
        {
            return Err(invalid(
                field,
                format!(
                    "key {:?}: keys starting with aws: or kubernetes- are reserved",
                    tag.key
                ),
            ));
        }
        if tags.iter().any(|(k, _)| same_tag_key(k, &tag.key)) {
            return Err(invalid(
                field,
                format!("key {:?} appears twice (STS ignores case)", tag.key),
            ));
        }
        if inherited.iter().any(|k| same_tag_key(k, &tag.key)) {
            return Err(invalid(
                field,
                format!(
                    "key {:?} was made transitive by an earlier hop; STS refuses to override an inherited transitive tag",
                    tag.key
                ),
            ));
        }
        tags.push((tag.key.clone(), tag.value.clone()));
    }
    Ok(())
}

/// The keys of `set` to make transitive (`field`), each the key of one of `own_tags` (the tags
/// the binding set, not podcreds' own); appended to `keys`, which may hold podcreds' own
/// transitive keys, counted against the limit.
pub(super) fn check_transitive_keys(
    field: &str,
    set: &[String],
    own_tags: &[crate::api::SessionTag],
    keys: &mut Vec<String>,
    whose: &str,
) -> Result<(), SpecError> {
    let reserved = keys.len();
    if set.len() + reserved > MAX_SESSION_TAGS {
        return Err(invalid(
            field,
            format!("at most {} keys", MAX_SESSION_TAGS - reserved),
        ));
    }
    for key in set {
        if !own_tags.iter().any(|t| same_tag_key(&t.key, key)) {
            return Err(invalid(
                field,
                format!("{key:?} is not the key of one of {whose}"),
            ));
        }
        keys.push(key.clone());
    }
    Ok(())
}

/// A source identity (`field`): STS's characters and length, never the reserved `aws:` prefix.
pub(super) fn check_source_identity(field: &str, identity: &str) -> Result<(), SpecError> {
    if starts_with_ignoring_case(identity, AWS_TAG_PREFIX) {
        return Err(invalid(field, "must not start with aws:"));
    }
    check(
        field,
        identity,
        &SOURCE_IDENTITY,
        64,
        "2 to 64 characters of letters, digits and _+=,.@-",
    )
}

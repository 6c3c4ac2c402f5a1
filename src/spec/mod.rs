//! Validate step (pure): turns a binding's spec plus the operator's policy into a
//! [`ResolvedSpec`] with every default filled in, or a [`SpecError`] that says what is wrong.
//!
//! [`resolve`] reads as the sections of a spec, one function each, in the order their errors are
//! reported; the larger sections have a file of their own ([`saml`], [`source`], [`chain`]).
//! The first exchange ([`FirstExchange`]) is decided here, once.

mod chain;
mod policy;
mod resolved;
mod roles_anywhere;
mod rules;
mod saml;
mod session_name;
mod source;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use policy::{AWS_STS_AUDIENCE, PolicyError, StsPolicy, is_http_url, is_plain_http};
pub use resolved::{
    Deliveries, FirstExchange, KUBERNETES_TAG_KEYS, PullRegistry, ResolvedHop, ResolvedPullSecret,
    ResolvedRolesAnywhere, ResolvedSaml, ResolvedSource, ResolvedSpec, SourceCall,
};
pub use rules::{SpecError, is_aws_endpoint, parse_service_account_ref};
pub use session_name::{default_session_name, federation_name, workload_common_name};

use crate::api::{AWSRoleBindingSpec, CredentialSourceMode, CredentialSourceRef, StsProvider};
use crate::patterns;
use rules::{
    AUDIENCE, DNS_SUBDOMAIN, DURATION, ECR_REGISTRY, MOUNT_PATH, REGION, REGISTRY_HOST,
    SESSION_NAME, check, check_policy_arns, check_session_policy, invalid, role_arn_rule,
};
use session_name::check_session_prefix;

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
    let sts = spec.sts.as_deref().cloned().unwrap_or_default();
    let provider = sts.provider.unwrap_or_default();
    roles_anywhere::check_one_first_exchange(spec)?;
    let source = source::check_source(spec)?;
    let role_arn = role_arn(spec, provider, source)?;
    let secret_name = secret_name(spec, name)?;
    let audience = audience(spec, policy)?;
    let (duration_seconds, renew_before) = timing(spec, source)?;
    let session_name = session_name(spec, namespace, name, source, policy)?;
    let (session_policy, policy_arns) = session_policies(spec, source)?;
    let (region, endpoints) = sts_target(sts, provider, policy)?;
    let mount_path = mount_path(spec)?;
    let image_pull_secret = image_pull_secret(spec, name, provider, &secret_name, &region, policy)?;
    let kubernetes_tags = || chain::kubernetes_tags(spec, namespace, name, policy);
    let saml = saml::resolve_saml(
        spec,
        namespace,
        provider,
        policy,
        role_arn.as_deref(),
        kubernetes_tags,
    )?;
    let roles_anywhere =
        roles_anywhere::resolve_roles_anywhere(spec, provider, policy, role_arn.as_deref())?;
    let mut first = first_exchange(
        source,
        saml,
        roles_anywhere,
        role_arn.as_deref(),
        &session_name,
    )?;
    if spec.kubernetes_session_tags
        && let FirstExchange::CredentialSource(source) = &mut first
    {
        // Session tags go on the source's own call where STS takes them: transitive on an
        // `AssumeRole` (a chain after it inherits them), plain on `GetFederationToken` (which
        // cannot chain). `GetSessionToken` takes none: they go on the first hop.
        match source.call {
            SourceCall::AssumeRole { .. } => {
                source.tags = kubernetes_tags()?;
                source.transitive_tag_keys = source.tags.iter().map(|(k, _)| k.clone()).collect();
            }
            SourceCall::GetFederationToken { .. } => source.tags = kubernetes_tags()?,
            SourceCall::GetSessionToken => {}
        }
    }
    if first.sets_source_identity()
        && spec
            .role_chain
            .first()
            .is_some_and(|hop| hop.source_identity.is_some())
    {
        let origin = match first {
            FirstExchange::RolesAnywhere(_) => {
                "Roles Anywhere sets the source identity from the certificate (CN=<namespace>.<serviceAccountName>)"
            }
            _ => "saml.sourceIdentity already sets the source identity",
        };
        return Err(invalid(
            "roleChain[0].sourceIdentity",
            format!("{origin}; STS keeps it for the whole chain"),
        ));
    }
    let role_chain = chain::resolve_chain(
        spec,
        provider,
        namespace,
        name,
        &session_name,
        policy,
        first.transitive_tag_keys().to_vec(),
        first.carries_kubernetes_tags()
            // Roles Anywhere names the namespace and ServiceAccount in the certificate subject
            // (`x509Subject/*` principal tags); a chain after it carries the Kubernetes tags.
            || (matches!(first, FirstExchange::RolesAnywhere(_)) && spec.role_chain.is_empty()),
    )?;
    for endpoint in &endpoints {
        endpoint_fits(&first, &audience, endpoint, policy)?;
    }
    let mut endpoints = endpoints.into_iter().map(|e| e.url);
    let endpoint = endpoints.next();

    Ok(ResolvedSpec {
        service_account_name: spec.service_account_name.clone(),
        role_arn,
        secret_name,
        audience,
        duration_seconds,
        renew_before,
        session_name,
        session_policy,
        policy_arns,
        region,
        endpoint,
        fallback_endpoints: endpoints.collect(),
        mount_path,
        role_chain,
        first,
        delivery: Deliveries::of(&spec.delivery),
        image_pull_secret,
    })
}

/// `imagePullSecret`: a Secret name of its own, registry hosts, and the region of each one's
/// token (an ECR registry's own region; the binding's region for any other host).
fn image_pull_secret(
    spec: &AWSRoleBindingSpec,
    name: &str,
    provider: StsProvider,
    secret_name: &str,
    region: &str,
    policy: &StsPolicy,
) -> Result<Option<ResolvedPullSecret>, SpecError> {
    let Some(pull) = &spec.image_pull_secret else {
        return Ok(None);
    };
    if provider != StsProvider::Aws {
        return Err(invalid(
            "imagePullSecret",
            "needs sts.provider AWS: Amazon ECR takes AWS credentials",
        ));
    }
    let pull_name = pull
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{name}-ecr"));
    check(
        "imagePullSecret.secretName",
        &pull_name,
        &DNS_SUBDOMAIN,
        253,
        "a Secret name (DNS subdomain)",
    )?;
    if pull_name == secret_name {
        return Err(invalid(
            "imagePullSecret.secretName",
            format!("{pull_name:?} is the credentials' Secret: name another"),
        ));
    }
    if pull.registries.is_empty() || pull.registries.len() > patterns::MAX_PULL_REGISTRIES {
        return Err(invalid(
            "imagePullSecret.registries",
            format!(
                "must list 1 to {} registries",
                patterns::MAX_PULL_REGISTRIES
            ),
        ));
    }
    let mut registries: Vec<PullRegistry> = Vec::new();
    for (i, host) in pull.registries.iter().enumerate() {
        let field = format!("imagePullSecret.registries[{i}]");
        check(
            &field,
            host,
            &REGISTRY_HOST,
            253,
            "a registry host such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        )?;
        if registries.iter().any(|r| &r.host == host) {
            return Err(invalid(field, format!("lists {host:?} twice")));
        }
        registries.push(PullRegistry {
            host: host.clone(),
            region: ecr_region(host).unwrap_or(region).to_string(),
        });
    }
    Ok(Some(ResolvedPullSecret {
        secret_name: pull_name,
        registries,
        add_to_service_account: pull.add_to_service_account,
        endpoint: policy.ecr_endpoint.clone(),
    }))
}

/// The region of an Amazon ECR registry host (`<account>.dkr.ecr.<region>.amazonaws.com`).
pub fn ecr_region(host: &str) -> Option<&str> {
    ECR_REGISTRY
        .captures(host.as_bytes())
        .and_then(|c| c.get(2))
        .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
}

/// The first exchange: SAML, a credential source's call, or web identity.
fn first_exchange(
    source: Option<&CredentialSourceRef>,
    saml: Option<ResolvedSaml>,
    roles_anywhere: Option<ResolvedRolesAnywhere>,
    role_arn: Option<&str>,
    session_name: &str,
) -> Result<FirstExchange, SpecError> {
    let role = || {
        role_arn
            .map(str::to_string)
            .ok_or_else(|| invalid("roleArn", "is required"))
    };
    if let Some(ra) = roles_anywhere {
        return Ok(FirstExchange::RolesAnywhere(ra));
    }
    Ok(match (saml, source) {
        (Some(saml), _) => FirstExchange::Saml(saml),
        (None, Some(source)) => FirstExchange::CredentialSource(ResolvedSource {
            name: source.name.clone(),
            call: match source.mode {
                CredentialSourceMode::AssumeRole => SourceCall::AssumeRole { role_arn: role()? },
                CredentialSourceMode::GetFederationToken => SourceCall::GetFederationToken {
                    name: session_name.to_string(),
                },
                CredentialSourceMode::GetSessionToken => SourceCall::GetSessionToken,
            },
            key_digest: None,
            tags: Vec::new(),
            transitive_tag_keys: Vec::new(),
        }),
        (None, None) => FirstExchange::WebIdentity { role_arn: role()? },
    })
}

/// What may go to one of the binding's endpoints: AWS's audience, a SAML assertion podcreds signs
/// and a request signed with an IAM user's keys only to AWS (or the admin's default endpoints);
/// another endpoint the admin allowed gets tokens of its own audience only. Checked for every
/// endpoint of a fail-over list: any of them may receive the call.
fn endpoint_fits(
    first: &FirstExchange,
    audience: &str,
    endpoint: &StsEndpointRef,
    policy: &StsPolicy,
) -> Result<(), SpecError> {
    if policy.trusted_like_aws(Some(&endpoint.url)) {
        return Ok(());
    }
    let (field, endpoint) = (endpoint.field, endpoint.url.as_str());
    let what = match first {
        FirstExchange::WebIdentity { .. } => None,
        FirstExchange::Saml(_) => Some("SAML assertions podcreds signs"),
        FirstExchange::CredentialSource(_) => {
            Some("requests signed with a credential source's keys")
        }
        FirstExchange::RolesAnywhere(_) => Some("requests signed with a workload certificate"),
    };
    if let Some(what) = what {
        return Err(SpecError::ExchangeNeedsAws {
            field,
            endpoint: endpoint.to_string(),
            what,
        });
    }
    if audience == policy::AWS_STS_AUDIENCE {
        return Err(SpecError::AwsAudienceElsewhere {
            field,
            audience: audience.to_string(),
            endpoint: endpoint.to_string(),
        });
    }
    Ok(())
}

/// `roleArn`: required when the first exchange assumes a role, refused when it does not.
fn role_arn(
    spec: &AWSRoleBindingSpec,
    provider: StsProvider,
    source: Option<&CredentialSourceRef>,
) -> Result<Option<String>, SpecError> {
    match (&spec.role_arn, source::assumes_role(source)) {
        (Some(arn), true) => {
            let (role_arn_pattern, role_arn_form) = role_arn_rule(provider);
            check("roleArn", arn, role_arn_pattern, 2048, role_arn_form)?;
            Ok(Some(arn.clone()))
        }
        (None, true) => Err(invalid("roleArn", "is required")),
        (Some(_), false) => Err(invalid(
            "roleArn",
            "is not used by credentialSource modes GetFederationToken and GetSessionToken, which assume no role: remove it, or use mode AssumeRole",
        )),
        (None, false) => Ok(None),
    }
}

/// `secretName`, by default the binding's name.
fn secret_name(spec: &AWSRoleBindingSpec, name: &str) -> Result<String, SpecError> {
    let secret_name = spec.secret_name.clone().unwrap_or_else(|| name.to_string());
    check(
        "secretName",
        &secret_name,
        &DNS_SUBDOMAIN,
        253,
        "a Secret name (DNS subdomain)",
    )?;
    Ok(secret_name)
}

/// `audience`: the operator's default, or one the admin allowed.
fn audience(spec: &AWSRoleBindingSpec, policy: &StsPolicy) -> Result<String, SpecError> {
    match &spec.audience {
        None => Ok(policy.default_audience.clone()),
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
            Ok(aud.clone())
        }
    }
}

/// `durationSeconds` (up to 12 hours, 36 for the source modes that assume no role) and
/// `renewBefore`.
fn timing(
    spec: &AWSRoleBindingSpec,
    source: Option<&CredentialSourceRef>,
) -> Result<(i32, Option<Duration>), SpecError> {
    let max_duration = if source::assumes_role(source) {
        43200
    } else {
        129_600
    };
    if !(900..=max_duration).contains(&spec.duration_seconds) {
        return Err(invalid(
            "durationSeconds",
            format!("must be between 900 and {max_duration}"),
        ));
    }
    let Some(text) = &spec.renew_before else {
        return Ok((spec.duration_seconds, None));
    };
    check(
        "renewBefore",
        text,
        &DURATION,
        32,
        "a duration such as 20m or 1h30m",
    )?;
    let parsed =
        humantime::parse_duration(text).map_err(|e| invalid("renewBefore", e.to_string()))?;
    if parsed < Duration::from_secs(60) {
        return Err(invalid("renewBefore", "must be at least 60s"));
    }
    if parsed.as_secs() >= u64::from(spec.duration_seconds.unsigned_abs()) {
        return Err(invalid(
            "renewBefore",
            "must be shorter than durationSeconds",
        ));
    }
    Ok((spec.duration_seconds, Some(parsed)))
}

/// The role session name (or, for `GetFederationToken`, the federated user's name).
fn session_name(
    spec: &AWSRoleBindingSpec,
    namespace: &str,
    name: &str,
    source: Option<&CredentialSourceRef>,
    policy: &StsPolicy,
) -> Result<String, SpecError> {
    let mode = source.map(|s| s.mode);
    match &spec.session_name {
        Some(_) if !source::assumes_role(source) => Err(invalid(
            "sessionName",
            "is only used by AssumeRole: GetFederationToken derives its Name from the namespace and binding, GetSessionToken has none",
        )),
        None if mode == Some(CredentialSourceMode::GetFederationToken) => {
            Ok(federation_name(namespace, name))
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
            Ok(s.clone())
        }
        None => Ok(default_session_name(namespace, name)),
    }
}

/// `sessionPolicy` and `policyArns`, and what each credential source mode says of them.
fn session_policies(
    spec: &AWSRoleBindingSpec,
    source: Option<&CredentialSourceRef>,
) -> Result<(Option<String>, Vec<String>), SpecError> {
    if let Some(p) = &spec.session_policy {
        check_session_policy("sessionPolicy", p)?;
    }
    let policy_arns = spec.policy_arns.clone().unwrap_or_default();
    check_policy_arns("policyArns", &policy_arns)?;
    let has_policy = spec.session_policy.is_some() || !policy_arns.is_empty();
    source::check_mode_rules(spec, source.map(|s| s.mode), has_policy)?;
    Ok((spec.session_policy.clone(), policy_arns))
}

/// One STS endpoint of a binding, and the field that named it (`sts.endpoint`, `sts.endpoints`,
/// or the operator's default).
struct StsEndpointRef {
    field: &'static str,
    url: String,
}

/// Most endpoints a binding may list in `sts.endpoints` (the CRD's bound).
pub const MAX_STS_ENDPOINTS: usize = 4;

/// `sts.region` and `sts.endpoint` / `sts.endpoints`, within what the admin allows: the region
/// and the endpoints in order of preference (none: the AWS regional endpoint). An STS-compatible
/// provider never sends its token to AWS, and no token travels over plain HTTP unless the admin
/// allows it; every endpoint of a list is held to the rules of one.
fn sts_target(
    sts: crate::api::StsSettings,
    provider: StsProvider,
    policy: &StsPolicy,
) -> Result<(String, Vec<StsEndpointRef>), SpecError> {
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
    let named = |field: &'static str, urls: Vec<String>| {
        urls.into_iter()
            .map(|url| StsEndpointRef { field, url })
            .collect::<Vec<_>>()
    };
    let endpoints = match (sts.endpoint, sts.endpoints) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "sts.endpoints",
                "set sts.endpoint (one endpoint) or sts.endpoints (an ordered fail-over list), not both",
            ));
        }
        (Some(e), None) => named("sts.endpoint", vec![e]),
        (None, Some(list)) => {
            if list.is_empty() || list.len() > MAX_STS_ENDPOINTS {
                return Err(invalid(
                    "sts.endpoints",
                    format!("must list 1 to {MAX_STS_ENDPOINTS} endpoints"),
                ));
            }
            if let Some((i, e)) = list
                .iter()
                .enumerate()
                .find(|(i, e)| list[..*i].contains(e))
            {
                return Err(invalid(
                    format!("sts.endpoints[{i}]"),
                    format!("lists {e:?} twice: each endpoint is tried once, in order"),
                ));
            }
            named("sts.endpoints", list)
        }
        (None, None) => named("sts", policy.default_endpoints.clone()),
    };
    for endpoint in endpoints.iter().filter(|e| e.field != "sts") {
        let e = &endpoint.url;
        if !is_http_url(e) {
            return Err(invalid(endpoint.field, "must be an http(s) URL"));
        }
        if !policy.is_default_endpoint(e) && !policy.allowed_endpoints.contains(e) {
            return Err(SpecError::EndpointNotAllowed {
                field: endpoint.field,
                endpoint: e.clone(),
            });
        }
    }
    if provider != StsProvider::Aws {
        // MinIO and Ceph role ARNs mean nothing to AWS: refuse them before a token is sent there.
        if endpoints.is_empty() {
            return Err(invalid(
                "sts.provider",
                "an STS-compatible provider needs an STS endpoint: set spec.sts.endpoint, or ask the cluster admin for a default --sts-endpoint",
            ));
        }
        if endpoints.iter().any(|e| is_aws_endpoint(&e.url)) {
            return Err(invalid(
                "sts.provider",
                "an STS-compatible provider (MinIO, CephRGW) cannot name an AWS endpoint",
            ));
        }
    }
    // Checked on the endpoints actually used, so a default endpoint that somehow escaped the
    // start check is refused too.
    if let Some(e) = endpoints
        .iter()
        .find(|e| is_plain_http(&e.url) && !policy.allow_insecure_endpoints)
    {
        return Err(SpecError::InsecureEndpoint(e.url.clone()));
    }
    Ok((region, endpoints))
}

/// `mountPath`: it is placed in the `credential_process` command line the SDKs run.
fn mount_path(spec: &AWSRoleBindingSpec) -> Result<String, SpecError> {
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
    Ok(spec.mount_path.trim_end_matches('/').to_string())
}

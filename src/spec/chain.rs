//! `spec.roleChain`: the `AssumeRole` hops after the first exchange, checked against every STS
//! limit (hops, durations, tags, transitive keys, source identity, session policies).

use super::policy::StsPolicy;
use super::resolved::{KUBERNETES_TAG_KEYS, ResolvedHop};
use super::rules::{
    EXTERNAL_ID, ROLE_ARN, SESSION_NAME, SpecError, check, check_policy_arns, check_session_policy,
    check_source_identity, check_tags, check_transitive_keys, invalid,
};
use super::session_name::check_session_prefix;
use crate::api::{AWSRoleBindingSpec, RoleChainHop, StsProvider};
use crate::patterns::{self, MAX_CHAINED_SESSION_SECONDS, MAX_SESSION_POLICY_CHARS};

/// The session tags podcreds sets for a binding with `kubernetesSessionTags`, in the order sent:
/// its namespace, ServiceAccount, name and the operator's cluster name.
pub(super) fn kubernetes_tags(
    spec: &AWSRoleBindingSpec,
    namespace: &str,
    name: &str,
    policy: &StsPolicy,
) -> Result<Vec<(String, String)>, SpecError> {
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
    Ok(KUBERNETES_TAG_KEYS
        .iter()
        .map(|k| k.to_string())
        .zip(values)
        .collect())
}

/// Validates the `roleChain` hops against every STS limit and resolves their defaults.
#[allow(clippy::too_many_arguments)]
pub(super) fn resolve_chain(
    spec: &AWSRoleBindingSpec,
    provider: StsProvider,
    namespace: &str,
    name: &str,
    default_session_name: &str,
    policy: &StsPolicy,
    // Tag keys the first exchange made transitive (a SAML assertion's `TransitiveTagKeys`, the
    // Kubernetes tags of a credential source's `AssumeRole`).
    first_exchange_transitive: Vec<String>,
    // Whether the first exchange already carries the Kubernetes session tags (SAML, a credential
    // source's `AssumeRole` or `GetFederationToken`); otherwise they go on the first hop.
    first_exchange_tagged: bool,
) -> Result<Vec<ResolvedHop>, SpecError> {
    let tags_on_first_hop = spec.kubernetes_session_tags && !first_exchange_tagged;
    if spec.role_chain.is_empty() {
        if tags_on_first_hop {
            return Err(invalid(
                "kubernetesSessionTags",
                "needs an exchange that carries session tags: saml, credentialSource mode AssumeRole or GetFederationToken, or a roleChain (the tags go on its first AssumeRole hop)",
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
    let kubernetes_tags = if tags_on_first_hop {
        kubernetes_tags(spec, namespace, name, policy)?
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
        check_source_identity(&field("sourceIdentity"), identity)?;
        // CloudTrail shows the source identity for every later session: it names the namespace.
        check_session_prefix(&field("sourceIdentity"), identity, namespace, policy)?;
    }

    // podcreds' own Kubernetes tags come first and are transitive.
    let mut transitive_tag_keys: Vec<String> =
        kubernetes_tags.iter().map(|(k, _)| k.clone()).collect();
    let mut tags = kubernetes_tags;
    check_tags(&field("tags"), &hop.tags, &mut tags, inherited)?;
    check_transitive_keys(
        &field("transitiveTagKeys"),
        &hop.transitive_tag_keys,
        &hop.tags,
        &mut transitive_tag_keys,
        "the hop's tags",
    )?;

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

//! `spec.saml`: the SAML exchange, with the operator's default provider ARN and the tag rules of a
//! chain hop.

use super::policy::StsPolicy;
use super::resolved::ResolvedSaml;
use super::rules::{
    SAML_PROVIDER_ARN, SpecError, check, check_source_identity, check_tags, check_transitive_keys,
    invalid,
};
use super::session_name::check_session_prefix;
use crate::api::{AWSRoleBindingSpec, StsProvider};

/// The resolved `spec.saml`, if the binding has one; `role_arn` is the binding's (checked).
pub(super) fn resolve_saml(
    spec: &AWSRoleBindingSpec,
    namespace: &str,
    provider: StsProvider,
    policy: &StsPolicy,
    role_arn: Option<&str>,
    // podcreds' Kubernetes session tags: signed into the assertion, transitive.
    kubernetes_tags: impl FnOnce() -> Result<Vec<(String, String)>, SpecError>,
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
    let allowed = policy.default_saml_provider_arn.as_deref() == Some(provider_arn.as_str())
        || policy.allowed_saml_provider_arns.contains(&provider_arn);
    if !allowed {
        return Err(SpecError::SamlProviderNotAllowed(provider_arn));
    }
    if let Some(identity) = &saml.source_identity {
        check_source_identity("saml.sourceIdentity", identity)?;
        // CloudTrail shows the source identity for every later session: it names the namespace.
        check_session_prefix("saml.sourceIdentity", identity, namespace, policy)?;
    }
    let mut tags = if spec.kubernetes_session_tags {
        kubernetes_tags()?
    } else {
        Vec::new()
    };
    let mut transitive_tag_keys: Vec<String> = tags.iter().map(|(k, _)| k.clone()).collect();
    check_tags("saml.tags", &saml.tags, &mut tags, &[])?;
    check_transitive_keys(
        "saml.transitiveTagKeys",
        &saml.transitive_tag_keys,
        &saml.tags,
        &mut transitive_tag_keys,
        "the tags",
    )?;
    // Without a source the binding assumes a role: resolving checked it is there.
    let role_arn = role_arn
        .ok_or_else(|| invalid("roleArn", "is required"))?
        .to_string();
    Ok(Some(ResolvedSaml {
        role_arn,
        provider_arn,
        source_identity: saml.source_identity.clone(),
        tags,
        transitive_tag_keys,
    }))
}

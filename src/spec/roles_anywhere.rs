//! `spec.rolesAnywhere`: IAM Roles Anywhere `CreateSession` with a certificate of the
//! ServiceAccount, and where it goes (the trust anchor's region).

use super::policy::StsPolicy;
use super::resolved::ResolvedRolesAnywhere;
use super::rules::{DNS_SUBDOMAIN, PROFILE_ARN, SpecError, TRUST_ANCHOR_ARN, check, invalid};
use crate::api::{AWSRoleBindingSpec, StsProvider};

/// The region of a Roles Anywhere ARN (`arn:<partition>:rolesanywhere:<region>:...`).
fn region_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// Refuses `rolesAnywhere` beside another first exchange, before either is read.
pub(super) fn check_one_first_exchange(spec: &AWSRoleBindingSpec) -> Result<(), SpecError> {
    if spec.roles_anywhere.is_some() && (spec.saml.is_some() || spec.credential_source.is_some()) {
        return Err(invalid(
            "rolesAnywhere",
            "rolesAnywhere, saml and credentialSource are different first exchanges: set one of them",
        ));
    }
    Ok(())
}

/// The resolved `spec.rolesAnywhere`, if the binding has one; `role_arn` is the binding's
/// (checked).
pub(super) fn resolve_roles_anywhere(
    spec: &AWSRoleBindingSpec,
    provider: StsProvider,
    policy: &StsPolicy,
    role_arn: Option<&str>,
) -> Result<Option<ResolvedRolesAnywhere>, SpecError> {
    let Some(ra) = &spec.roles_anywhere else {
        return Ok(None);
    };
    if provider != StsProvider::Aws {
        return Err(invalid("rolesAnywhere", "needs sts.provider AWS"));
    }
    if spec.session_policy.is_some() || spec.policy_arns.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(invalid(
            "sessionPolicy",
            "Roles Anywhere's CreateSession takes no session policy: narrow the role's own policy, or put the policy on a roleChain hop",
        ));
    }
    let trust_anchor_arn = ra
        .trust_anchor_arn
        .clone()
        .or_else(|| policy.default_trust_anchor_arn.clone())
        .ok_or_else(|| {
            invalid(
                "rolesAnywhere.trustAnchorArn",
                "is required: the operator has no default --rolesanywhere-trust-anchor-arn",
            )
        })?;
    check(
        "rolesAnywhere.trustAnchorArn",
        &trust_anchor_arn,
        &TRUST_ANCHOR_ARN,
        1011,
        "a Roles Anywhere trust anchor ARN such as arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/<id>",
    )?;
    let profile_arn = ra
        .profile_arn
        .clone()
        .or_else(|| policy.default_profile_arn.clone())
        .ok_or_else(|| {
            invalid(
                "rolesAnywhere.profileArn",
                "is required: the operator has no default --rolesanywhere-profile-arn",
            )
        })?;
    check(
        "rolesAnywhere.profileArn",
        &profile_arn,
        &PROFILE_ARN,
        1011,
        "a Roles Anywhere profile ARN such as arn:aws:rolesanywhere:eu-west-1:123456789012:profile/<id>",
    )?;
    let region = region_of(&trust_anchor_arn)
        .ok_or_else(|| invalid("rolesAnywhere.trustAnchorArn", "names no region"))?;
    if region_of(&profile_arn) != Some(region) {
        return Err(invalid(
            "rolesAnywhere.profileArn",
            format!(
                "must be in the trust anchor's region {region}: Roles Anywhere resources are regional"
            ),
        ));
    }
    if let Some(secret) = &ra.certificate_secret_name {
        check(
            "rolesAnywhere.certificateSecretName",
            secret,
            &DNS_SUBDOMAIN,
            253,
            "a Secret name (DNS subdomain)",
        )?;
    }
    // Without a source the binding assumes a role: resolving checked it is there.
    let role_arn = role_arn
        .ok_or_else(|| invalid("roleArn", "is required"))?
        .to_string();
    Ok(Some(ResolvedRolesAnywhere {
        role_arn,
        region: region.to_string(),
        endpoint: policy.rolesanywhere_endpoint.clone(),
        trust_anchor_arn,
        profile_arn,
        certificate_secret_name: ra.certificate_secret_name.clone(),
    }))
}

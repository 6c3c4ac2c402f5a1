//! `spec.credentialSource`: which `AWSCredentialSource` signs the first exchange, and how. MFA is
//! refused (an unattended operator has no one-time code to send).

use super::rules::{DNS_SUBDOMAIN, SpecError, check, invalid};
use crate::api::{AWSRoleBindingSpec, CredentialSourceMode, CredentialSourceRef};

/// The binding's `credentialSource`, checked, if it has one.
pub(super) fn check_source(
    spec: &AWSRoleBindingSpec,
) -> Result<Option<&CredentialSourceRef>, SpecError> {
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
    Ok(Some(source))
}

/// Whether the binding's first exchange assumes a role (everything but `GetFederationToken` and
/// `GetSessionToken` from a credential source).
pub(super) fn assumes_role(source: Option<&CredentialSourceRef>) -> bool {
    source.is_none_or(|s| s.mode == CredentialSourceMode::AssumeRole)
}

/// `GetFederationToken` needs a session policy (its credentials have no permissions without
/// one), `GetSessionToken` takes none, and a `GetFederationToken` session cannot call
/// `AssumeRole`.
pub(super) fn check_mode_rules(
    spec: &AWSRoleBindingSpec,
    mode: Option<CredentialSourceMode>,
    has_policy: bool,
) -> Result<(), SpecError> {
    match mode {
        Some(CredentialSourceMode::GetFederationToken) if !has_policy => Err(invalid(
            "credentialSource.mode",
            "GetFederationToken needs sessionPolicy or policyArns: without a session policy the federated credentials have no permissions at all",
        )),
        Some(CredentialSourceMode::GetSessionToken) if has_policy => Err(invalid(
            "credentialSource.mode",
            "GetSessionToken takes no session policy: remove sessionPolicy and policyArns",
        )),
        Some(CredentialSourceMode::GetFederationToken) if !spec.role_chain.is_empty() => {
            Err(invalid(
                "roleChain",
                "GetFederationToken credentials cannot call AssumeRole: a roleChain needs credentialSource mode AssumeRole or GetSessionToken",
            ))
        }
        _ => Ok(()),
    }
}

//! The STS actions, one module each: the unsigned exchanges (web identity, SAML), the calls
//! signed with SigV4 (`GetCallerIdentity`, `AssumeRole`, and the IAM user's session tokens), and
//! IAM Roles Anywhere's `CreateSession` (signed with an X.509 certificate's key), and ECR's
//! `GetAuthorizationToken` (JSON 1.1, signed with SigV4 for service `ecr`).
//! What the three `AssumeRole*` actions share of IAM's authorization is here.

pub(crate) mod assume_role;
pub mod ecr;
pub(crate) mod roles_anywhere;
pub(crate) mod saml;
pub(crate) mod signed;
pub(crate) mod user_sessions;
pub(crate) mod web_identity;

use crate::answer::StsFailure;
use crate::roles::RegisteredRole;
use crate::trust_policy::{Caller, Decision, RequestContext};

/// The actions a request must be allowed: `main`, then `sts:TagSession` when the new session
/// would carry session tags (sent, or inherited as transitive tags), and `sts:SetSourceIdentity`
/// when it would carry a source identity (set now, or inherited).
pub(crate) fn needed_actions(main: &'static str, tags: bool, identity: bool) -> Vec<&'static str> {
    let mut actions = vec![main];
    if tags {
        actions.push("sts:TagSession");
    }
    if identity {
        actions.push("sts:SetSourceIdentity");
    }
    actions
}

/// Refuses the request unless `role`'s trust policy allows every one of `actions` to `caller`;
/// `denied` words the refusal of the first action that is not.
pub(crate) fn authorize(
    role: &RegisteredRole,
    actions: &[&'static str],
    caller: &Caller<'_>,
    request: &RequestContext,
    denied: impl Fn(&str, Decision) -> StsFailure,
) -> Result<(), StsFailure> {
    match role.policy.first_refused(actions, caller, request) {
        Some((action, decision)) => Err(denied(action, decision)),
        None => Ok(()),
    }
}

/// STS refuses a `DurationSeconds` above the role's `MaxSessionDuration`.
pub(crate) fn check_max_session_duration(
    role: &RegisteredRole,
    requested: u64,
) -> Result<(), StsFailure> {
    if requested > role.max_session_duration() {
        return Err(StsFailure::validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    Ok(())
}

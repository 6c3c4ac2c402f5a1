//! `AssumeRole` with the credentials of a verified caller: role chaining from a role session,
//! or a first assumption with an IAM user's keys (or its `GetSessionToken` session), with what
//! STS enforces for each: the parameters, the role's trust policy for the caller (with
//! `sts:ExternalId`, `sts:RoleSessionName`, `sts:SourceIdentity`, the request's tags and the
//! caller's session tags), and its `MaxSessionDuration`.

use axum::response::Response;

use super::{authorize, check_max_session_duration, needed_actions};
use crate::Inner;
use crate::answer::{StsFailure, credentials_xml, ok_xml, source_identity_xml};
use crate::mint::{Carried, mint, role_session};
use crate::params::{
    IdentityProblem, Params, TagProblem, check_session_policies, check_source_identity, check_tags,
    check_transitive_keys, external_id_ok, packed_percent, sent_tags, transitive_of,
    validate_common,
};
use crate::state::{CallRecord, Session, SessionKind};
use crate::trust_policy::{Caller, Decision, RequestContext};

/// The `ValidationError` STS answers for a broken tag rule of `AssumeRole`.
fn tag_failure(problem: TagProblem) -> StsFailure {
    StsFailure::validation(match problem {
        TagProblem::TooMany => "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50".to_string(),
        TagProblem::Text => "1 validation error detected: Value at 'tags' failed to satisfy constraint: keys of 1 to 128 and values of at most 256 characters of [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]".to_string(),
        TagProblem::Reserved => "Tag keys cannot start with the reserved prefix aws:".to_string(),
        TagProblem::Duplicate => "Duplicate tag keys found. Please note that Tag keys are case insensitive.".to_string(),
        TagProblem::Inherited(key) => format!(
            "Cannot override the transitive session tag {key} inherited from the calling session"
        ),
        TagProblem::TransitiveUntagged(key) => {
            format!("Transitive tag key {key} is not among the session tags")
        }
    })
}

pub(crate) fn assume_role(
    inner: &Inner,
    params: &Params,
    caller: &Session,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let common = validate_common(params, inner.dialect)?;
    let role_arn = &common.role_arn;
    let not_authorized = |action: &str, decision: Decision| {
        let explicitly = match decision {
            Decision::ExplicitDeny => " with an explicit deny in a resource-based policy",
            _ => "",
        };
        StsFailure::denied(format!(
            "User: {} is not authorized to perform: {action} on resource: {role_arn}{explicitly}",
            caller.assumed_role_arn
        ))
    };
    if caller.kind == SessionKind::Federated {
        return Err(StsFailure::denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn} (federated user sessions cannot call AssumeRole)",
            caller.assumed_role_arn
        )));
    }
    // A role session's AssumeRole chains roles; an IAM user's (keys or GetSessionToken) does not.
    let chaining = caller.kind == SessionKind::Role;
    if chaining && common.duration > 3600 {
        return Err(StsFailure::validation(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }
    let policies = check_session_policies(params)?;
    let external_id = params.get("ExternalId").cloned();
    record.external_id = external_id.clone();
    if let Some(id) = &external_id
        && !external_id_ok(id)
    {
        return Err(StsFailure::validation(
            "1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:/-]* and length 2..1224",
        ));
    }
    let sent_identity = params.get("SourceIdentity").cloned();
    if let Some(identity) = &sent_identity {
        match check_source_identity(identity) {
            Ok(()) => {}
            Err(IdentityProblem::Reserved) => {
                return Err(StsFailure::validation(
                    "SourceIdentity cannot start with the reserved prefix aws:",
                ));
            }
            Err(IdentityProblem::Pattern) => {
                return Err(StsFailure::validation(
                    "1 validation error detected: Value at 'sourceIdentity' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2..64",
                ));
            }
        }
        if caller
            .source_identity
            .as_ref()
            .is_some_and(|set| set != identity)
        {
            return Err(StsFailure::denied(
                "The source identity of a role session cannot be changed once set",
            ));
        }
    }
    let source_identity = caller.source_identity.clone().or(sent_identity);
    record.source_identity = source_identity.clone();

    let (tags, transitive_keys) = sent_tags(params);
    record.tags = tags.clone();
    record.transitive_tag_keys = transitive_keys.clone();
    record.inherited_tags = caller.transitive_tags.clone();
    check_tags(&tags, &transitive_keys, &caller.transitive_tags).map_err(tag_failure)?;
    check_transitive_keys(&tags, &transitive_keys).map_err(tag_failure)?;

    let role = inner
        .state()
        .roles
        .get(role_arn)
        .cloned()
        .ok_or_else(|| not_authorized("sts:AssumeRole", Decision::ImplicitDeny))?;
    let mut request = RequestContext::default();
    request
        .set_opt("sts:ExternalId", external_id.as_deref())
        .set("sts:RoleSessionName", common.session_name.clone())
        .set_opt("sts:SourceIdentity", source_identity.as_deref())
        // Who signed: `<role id>:<session name>` for a role session, the user's ID for an IAM
        // user, as IAM fills `aws:userid` in; the role (or user) ARN as `aws:PrincipalArn`.
        .set("aws:userid", caller.assumed_role_id.clone())
        .set("aws:PrincipalArn", caller.role_arn.clone())
        .request_tags(&tags)
        .principal_tags(&caller.tags);
    let carries_tags = !tags.is_empty() || !caller.transitive_tags.is_empty();
    authorize(
        &role,
        &needed_actions("sts:AssumeRole", carries_tags, source_identity.is_some()),
        &Caller::Aws(caller),
        &request,
        not_authorized,
    )?;
    check_max_session_duration(&role, common.duration)?;

    let packed_chars = tags
        .iter()
        .chain(&caller.transitive_tags)
        .map(|t| t.key.chars().count() + t.value.chars().count())
        .sum::<usize>()
        + policies.chars;
    let packed = packed_percent(packed_chars);
    if packed > 100 {
        return Err(StsFailure::sender(
            "PackedPolicyTooLarge",
            format!("Packed size of session tags and policies is {packed}% of the limit"),
        ));
    }
    let mut transitive_tags = caller.transitive_tags.clone();
    transitive_tags.extend(transitive_of(&tags, &transitive_keys));
    let mut session_tags = tags.clone();
    session_tags.extend(caller.transitive_tags.iter().cloned());
    let carried = Carried {
        tags: session_tags,
        transitive_tags,
        source_identity: source_identity.clone(),
    };
    let minted = {
        let mut state = inner.state();
        let new = role_session(
            &state,
            inner.dialect,
            role_arn,
            &common.session_name,
            common.duration,
            carried,
        )?;
        mint(&mut state, new)
    };
    record.granted_seconds = Some(minted.granted);
    record.issued_access_key_id = Some(minted.access_key_id.clone());
    record.packed_policy_size = Some(packed);
    let result = format!(
        "{}    <PackedPolicySize>{packed}</PackedPolicySize>\n{}",
        credentials_xml(&minted.access_key_id, &minted.session),
        source_identity_xml(source_identity.as_deref()),
    );
    Ok(ok_xml("AssumeRole", result))
}

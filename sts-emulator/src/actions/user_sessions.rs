//! `GetFederationToken` and `GetSessionToken`: sessions of an IAM user, only with its long-term
//! keys, as AWS.

use axum::response::Response;

use crate::Inner;
use crate::answer::{StsFailure, credentials_only_xml, ok_xml, xml_escape};
use crate::mint::{Carried, Minted, NewSession, mint};
use crate::params::{
    Params, check_session_policies, packed_percent, session_name_ok, user_session_duration,
};
use crate::state::{CallRecord, Session, SessionKind};

/// Issues a session of `kind` for the IAM user whose long-term keys signed the call.
fn user_session(
    inner: &Inner,
    caller: &Session,
    kind: SessionKind,
    arn: String,
    id: String,
    requested: u64,
) -> Minted {
    let mut state = inner.state();
    let lifetime = state
        .users
        .values()
        .find(|u| u.arn == caller.role_arn)
        .and_then(|u| u.lifetime_seconds);
    let new = NewSession {
        kind,
        arn,
        id,
        account: caller.account.clone(),
        owner: caller.role_arn.clone(),
        requested,
        lifetime,
        carried: Carried::default(),
    };
    mint(&mut state, new)
}

/// `GetFederationToken`: only with an IAM user's long-term keys, as AWS.
pub(crate) fn get_federation_token(
    inner: &Inner,
    params: &Params,
    caller: &Session,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    if caller.kind != SessionKind::LongTerm {
        return Err(StsFailure::denied(
            "Cannot call GetFederationToken with session credentials",
        ));
    }
    let name = params.get("Name").cloned().unwrap_or_default();
    record.session_name = Some(name.clone());
    if !((2..=32).contains(&name.len()) && session_name_ok(&name)) {
        return Err(StsFailure::validation(
            "1 validation error detected: Value at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2..32",
        ));
    }
    let requested = user_session_duration(params)?;
    record.duration_seconds = Some(requested);
    let policies = check_session_policies(params)?;
    let minted = user_session(
        inner,
        caller,
        SessionKind::Federated,
        format!("arn:aws:sts::{}:federated-user/{name}", caller.account),
        format!("{}:{name}", caller.account),
        requested,
    );
    record.granted_seconds = Some(minted.granted);
    record.issued_access_key_id = Some(minted.access_key_id.clone());
    let packed = packed_percent(policies.chars);
    record.packed_policy_size = Some(packed);
    let result = format!(
        "{}    <FederatedUser>\n      <Arn>{}</Arn>\n      <FederatedUserId>{}</FederatedUserId>\n    </FederatedUser>\n    <PackedPolicySize>{packed}</PackedPolicySize>\n",
        credentials_only_xml(&minted.access_key_id, &minted.session),
        xml_escape(&minted.session.assumed_role_arn),
        xml_escape(&minted.session.assumed_role_id),
    );
    Ok(ok_xml("GetFederationToken", result))
}

/// `GetSessionToken`: only with an IAM user's long-term keys; no user of the emulator has an MFA
/// device, so a `SerialNumber` or `TokenCode` is refused.
pub(crate) fn get_session_token(
    inner: &Inner,
    params: &Params,
    caller: &Session,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    if caller.kind != SessionKind::LongTerm {
        return Err(StsFailure::denied(
            "Cannot call GetSessionToken with session credentials",
        ));
    }
    if params.contains_key("SerialNumber") || params.contains_key("TokenCode") {
        return Err(StsFailure::denied(
            "MultiFactorAuthentication failed: the user has no MFA device",
        ));
    }
    let requested = user_session_duration(params)?;
    record.duration_seconds = Some(requested);
    let minted = user_session(
        inner,
        caller,
        SessionKind::UserSession,
        caller.assumed_role_arn.clone(),
        caller.assumed_role_id.clone(),
        requested,
    );
    record.granted_seconds = Some(minted.granted);
    record.issued_access_key_id = Some(minted.access_key_id.clone());
    Ok(ok_xml(
        "GetSessionToken",
        credentials_only_xml(&minted.access_key_id, &minted.session),
    ))
}

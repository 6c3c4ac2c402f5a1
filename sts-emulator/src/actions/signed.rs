//! The calls signed with SigV4: the signing credentials are found (an IAM user's long-term keys,
//! or a session the emulator issued), the signature verified with their secret, then the action
//! runs as that caller. `GetCallerIdentity` is answered here.

use axum::response::Response;
use jiff::Timestamp;

use super::{assume_role, user_sessions};
use crate::Inner;
use crate::answer::{StsFailure, ok_xml, xml_escape};
use crate::ids::user_id;
use crate::params::Params;
use crate::sigv4;
use crate::state::{CallRecord, Session, SessionKind};

pub(crate) fn signed_action(
    inner: &Inner,
    action: &str,
    request: &sigv4::SignedRequest<'_>,
    params: &Params,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let auth = sigv4::parse_authorization(request.headers).map_err(|e| match e {
        sigv4::SignatureError::Missing => {
            StsFailure::forbidden("MissingAuthenticationToken", e.to_string())
        }
        _ => StsFailure::forbidden("IncompleteSignature", e.to_string()),
    })?;
    record.access_key_id = Some(auth.access_key_id.clone());
    check_scope(inner, &auth)?;
    let now = Timestamp::now();
    let caller = signing_caller(inner, request, &auth.access_key_id, now)?;
    sigv4::verify(request, &auth, &caller.secret_access_key, now).map_err(|e| match e {
        sigv4::SignatureError::Missing | sigv4::SignatureError::Malformed(_) => {
            StsFailure::forbidden("IncompleteSignature", e.to_string())
        }
        _ => StsFailure::forbidden("SignatureDoesNotMatch", e.to_string()),
    })?;
    record.subject = Some(caller.assumed_role_arn.clone());
    match action {
        "GetCallerIdentity" => Ok(ok_xml(
            "GetCallerIdentity",
            format!(
                "    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n",
                xml_escape(&caller.assumed_role_arn),
                xml_escape(&caller.assumed_role_id),
                caller.account
            ),
        )),
        "GetFederationToken" => user_sessions::get_federation_token(inner, params, &caller, record),
        "GetSessionToken" => user_sessions::get_session_token(inner, params, &caller, record),
        _ => assume_role::assume_role(inner, params, &caller, record),
    }
}

/// The credential scope must name STS and a region the emulator serves, as AWS requires of a
/// regional STS endpoint (the scope's date is checked against `X-Amz-Date` with the signature).
fn check_scope(inner: &Inner, auth: &sigv4::Authorization) -> Result<(), StsFailure> {
    if auth.service != "sts" {
        return Err(StsFailure::forbidden(
            "SignatureDoesNotMatch",
            "Credential should be scoped to correct service: 'sts'. ",
        ));
    }
    if !inner.regions.contains(&auth.region) {
        return Err(StsFailure::forbidden(
            "SignatureDoesNotMatch",
            format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                auth.region
            ),
        ));
    }
    Ok(())
}

/// Who signed with `access_key_id`: an IAM user's long-term keys (no session token), or a live
/// session the emulator issued (with its session token).
pub(crate) fn signing_caller(
    inner: &Inner,
    request: &sigv4::SignedRequest<'_>,
    access_key_id: &str,
    now: Timestamp,
) -> Result<Session, StsFailure> {
    let token = request
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    let invalid_token = || {
        StsFailure::forbidden(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    };
    let user = inner.state().users.get(access_key_id).cloned();
    if let Some(user) = user {
        // Long-term keys sign without a session token.
        if token.is_some() {
            return Err(invalid_token());
        }
        return Ok(Session {
            secret_access_key: user.secret_access_key.clone(),
            session_token: String::new(),
            expiration: Timestamp::MAX,
            assumed_role_arn: user.arn.clone(),
            assumed_role_id: user_id(&user.arn),
            account: user.account().to_string(),
            role_arn: user.arn.clone(),
            kind: SessionKind::LongTerm,
            tags: Vec::new(),
            transitive_tags: Vec::new(),
            source_identity: None,
        });
    }
    let session = inner
        .state()
        .sessions
        .get(access_key_id)
        .cloned()
        .ok_or_else(invalid_token)?;
    if session.expiration <= now {
        return Err(StsFailure::forbidden(
            "ExpiredToken",
            "The security token included in the request is expired",
        ));
    }
    if token != Some(session.session_token.as_str()) {
        return Err(invalid_token());
    }
    Ok(session)
}

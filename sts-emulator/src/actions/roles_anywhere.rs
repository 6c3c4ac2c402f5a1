//! IAM Roles Anywhere's `CreateSession` (`POST /sessions`), as its user guide describes it:
//!
//! 1. the X.509 SigV4 signature with the signing certificate's key (`roles_anywhere::signing`),
//!    before anything else;
//! 2. the request: `profileArn`, `roleArn`, `trustAnchorArn` as query parameters or in the JSON
//!    body (AWS's helper sends them in the query), `durationSeconds` (900 to 43,200) and
//!    `roleSessionName` in the body;
//! 3. the trust anchor (enabled, of this region) and the path from the signing certificate to
//!    one of its CAs (`roles_anywhere::chain`), revocations included;
//! 4. the profile: enabled, naming the role, accepting a `roleSessionName` if one is sent; the
//!    session lasts `min(profile durationSeconds, request durationSeconds)`;
//! 5. the certificate's principal tags and source identity (`roles_anywhere::attributes`);
//! 6. the role's trust policy for the service principal `rolesanywhere.amazonaws.com`, which must
//!    allow `sts:AssumeRole`, `sts:TagSession` and `sts:SetSourceIdentity` with `aws:SourceArn`
//!    (the trust anchor), `aws:SourceAccount`, the principal tags and `sts:SourceIdentity`, then
//!    its `MaxSessionDuration`;
//! 7. a role session carrying those tags and that source identity (an `AssumeRole` with it is
//!    role chaining), answered as AWS's JSON with HTTP 201.
//!
//! Refusals are AWS's REST-JSON errors: `x-amzn-ErrorType` and `{"message"}`, with
//! `AccessDeniedException` (403), `ValidationException` (400), `ResourceNotFoundException` (404).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{authorize, check_max_session_duration};
use crate::Inner;
use crate::answer::{StsFailure, rfc3339};
use crate::ids::request_id;
use crate::mint::{Carried, mint, role_session};
use crate::params::{packed_percent, session_name_ok};
use crate::roles_anywhere::{attributes, chain, parse_der, signing, split_arn};
use crate::server::injected_failure;
use crate::sigv4::SignedRequest;
use crate::state::{CallRecord, Injected};
use crate::trust_policy::{Caller, RequestContext};

const ACTION: &str = "CreateSession";
/// The service principal Roles Anywhere assumes roles as.
pub(crate) const SERVICE: &str = "rolesanywhere.amazonaws.com";

fn denied(message: impl Into<String>) -> StsFailure {
    StsFailure::forbidden("AccessDeniedException", message)
}

fn invalid(message: impl Into<String>) -> StsFailure {
    StsFailure::sender("ValidationException", message)
}

fn not_found(message: impl Into<String>) -> StsFailure {
    StsFailure {
        status: StatusCode::NOT_FOUND,
        code: "ResourceNotFoundException",
        message: message.into(),
    }
}

/// What a `CreateSession` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionRequest {
    pub profile_arn: String,
    pub role_arn: String,
    pub trust_anchor_arn: String,
    pub duration_seconds: Option<u64>,
    pub role_session_name: Option<String>,
}

/// Reads the request from its query string and JSON body; a value sent in both must agree.
pub(crate) fn session_request(query: &str, body: &[u8]) -> Result<SessionRequest, StsFailure> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| invalid(format!("the body is not JSON: {e}")))?
    };
    let body = body
        .as_object()
        .ok_or_else(|| invalid("the body is not a JSON object"))?;
    let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let text = |name: &str| -> Result<Option<String>, StsFailure> {
        let in_query = query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        let in_body = match body.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(invalid(format!("{name} must be a string"))),
        };
        match (in_query, in_body) {
            (Some(q), Some(b)) if q != b => Err(invalid(format!(
                "{name} is sent twice with different values (query and body)"
            ))),
            (q, b) => Ok(q.or(b)),
        }
    };
    let required = |name: &str| -> Result<String, StsFailure> {
        text(name)?.filter(|v| !v.is_empty()).ok_or_else(|| {
            invalid(format!(
                "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
            ))
        })
    };
    let duration_seconds = match body.get("durationSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| (900..=43_200).contains(d))
                .ok_or_else(|| {
                    invalid(format!(
                        "1 validation error detected: Value '{v}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200"
                    ))
                })?,
        ),
    };
    Ok(SessionRequest {
        profile_arn: required("profileArn")?,
        role_arn: required("roleArn")?,
        trust_anchor_arn: required("trustAnchorArn")?,
        duration_seconds,
        role_session_name: text("roleSessionName")?,
    })
}

/// The status and error type Roles Anywhere answers `f` with (STS's codes, which the checks it
/// shares with STS and the fault injector use, become Roles Anywhere's).
fn status_and_type(f: &StsFailure) -> (StatusCode, &'static str) {
    match f.code {
        "AccessDenied" => (StatusCode::FORBIDDEN, "AccessDeniedException"),
        "ValidationError" => (StatusCode::BAD_REQUEST, "ValidationException"),
        "Throttling" => (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
        "InternalFailure" => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException"),
        "ServiceUnavailable" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
        ),
        other => (f.status, other),
    }
}

/// AWS's REST-JSON error for `f`.
fn error_json(f: &StsFailure) -> Response {
    let (status, code) = status_and_type(f);
    (
        status,
        [
            ("content-type", "application/json".to_string()),
            ("x-amzn-errortype", code.to_string()),
            ("x-amzn-requestid", request_id()),
        ],
        json!({"message": f.message}).to_string(),
    )
        .into_response()
}

/// `POST /sessions`: faults first, then [`create`], every call logged.
pub(crate) async fn create_session(
    AxumState(inner): AxumState<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, latency) = inner.state().next_fault(ACTION);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let query = uri.query().unwrap_or("");
    let parsed = session_request(query, &body);
    let mut record = CallRecord {
        at: rfc3339(Timestamp::now()),
        action: ACTION.into(),
        ..CallRecord::default()
    };
    if let Ok(r) = &parsed {
        record.role_arn = Some(r.role_arn.clone());
        record.trust_anchor_arn = Some(r.trust_anchor_arn.clone());
        record.profile_arn = Some(r.profile_arn.clone());
        record.duration_seconds = r.duration_seconds;
        record.session_name = r.role_session_name.clone();
    }
    if fault == Injected::Malformed {
        record.result = "Malformed".into();
        inner.state().record(record);
        let truncated = r#"{"credentialSet":[{"assumedRoleUser":{"arn":"arn:aws:sts::"#;
        return (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            truncated,
        )
            .into_response();
    }
    let outcome = match injected_failure(fault) {
        Some(f) => Err(f),
        None => {
            let signed = SignedRequest {
                method: method.as_str(),
                path: uri.path(),
                query,
                headers: &headers,
                body: &body,
            };
            create(&inner, &signed, parsed, &mut record)
        }
    };
    record.result = match &outcome {
        Ok(_) => "Ok".into(),
        Err(f) => status_and_type(f).1.into(),
    };
    inner.state().record(record);
    match outcome {
        Ok(r) => r,
        Err(f) => error_json(&f),
    }
}

/// The checks and the session of one `CreateSession` (see the module documentation). The
/// signature is checked before the parameters, as AWS authenticates a request before it reads it.
fn create(
    inner: &Inner,
    signed: &SignedRequest<'_>,
    request: Result<SessionRequest, StsFailure>,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    // The emulator's clock, as the fault injector may skew it.
    let now = Timestamp::now() + SignedDuration::from_secs(inner.state().faults.clock_skew_seconds);

    // 1. The signature, with the key of the certificate the request presents; 2. the request.
    let auth = signing::parse_authorization(signed.headers).map_err(|e| denied(e.to_string()))?;
    let (leaf_der, chain_der) =
        signing::presented_certificates(signed.headers).map_err(|e| denied(e.to_string()))?;
    let leaf = parse_der(&leaf_der)
        .map_err(|e| denied(format!("Invalid certificate in X-Amz-X509: {e}")))?;
    record.subject = Some(leaf.subject().to_string());
    signing::verify(signed, &auth, &leaf, &inner.regions, now)
        .map_err(|e| denied(e.to_string()))?;
    record.certificate_serial = Some(attributes::serial_hex(&leaf));
    // Public: kept so a test can check the certificate with another verifier (openssl).
    record.certificate_der_base64 = Some(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        &leaf_der,
    ));
    let request = &request?;

    // 3. The trust anchor and the certificate path to it.
    let anchor = inner
        .state()
        .trust_anchors
        .get(&request.trust_anchor_arn)
        .cloned()
        .ok_or_else(|| {
            not_found(format!(
                "Trust anchor {} not found",
                request.trust_anchor_arn
            ))
        })?;
    let (partition, region, account, _) = split_arn(&anchor.anchor.arn, "trust-anchor")
        .ok_or_else(|| not_found("Trust anchor not found"))?;
    if region != auth.region {
        return Err(not_found(format!(
            "Trust anchor {} not found in {}",
            request.trust_anchor_arn, auth.region
        )));
    }
    if !anchor.anchor.enabled {
        return Err(denied("Trust anchor is disabled"));
    }
    let mut intermediates = Vec::new();
    for der in &chain_der {
        intermediates.push(
            parse_der(der)
                .map_err(|e| denied(format!("Invalid certificate in X-Amz-X509-Chain: {e}")))?,
        );
    }
    let cas: Vec<_> = anchor
        .cas
        .iter()
        .filter_map(|der| parse_der(der).ok())
        .collect();
    chain::verify_path(
        &leaf,
        &intermediates,
        &cas,
        &|cert| anchor.is_revoked(cert),
        now.as_second(),
    )
    .map_err(|e| match e {
        chain::ChainError::Revoked { .. } => denied(format!("Certificate revoked: {e}")),
        e => denied(format!("Untrusted signing certificate: {e}")),
    })?;

    // 4. The profile, the role it must name, and the session's name and length.
    let profile = inner
        .state()
        .profiles
        .get(&request.profile_arn)
        .cloned()
        .ok_or_else(|| not_found(format!("Profile {} not found", request.profile_arn)))?;
    if split_arn(&profile.arn, "profile").is_none_or(|(_, r, a, _)| r != region || a != account) {
        return Err(not_found(format!(
            "Profile {} not found in the trust anchor's account and region",
            request.profile_arn
        )));
    }
    if !profile.enabled {
        return Err(denied("Profile is disabled"));
    }
    let role_arn = &request.role_arn;
    if !profile.role_arns.contains(role_arn) {
        return Err(denied(format!(
            "Unable to assume role for {role_arn}: the profile does not list it in its roleArns"
        )));
    }
    let session_name = match &request.role_session_name {
        Some(_) if !profile.accept_role_session_name => {
            return Err(denied("Not authorized to set roleSessionName."));
        }
        Some(name) if !session_name_ok(name) => {
            return Err(invalid(
                "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2..64",
            ));
        }
        Some(name) => name.clone(),
        None => attributes::serial_hex(&leaf),
    };
    record.session_name = Some(session_name.clone());
    let duration = request
        .duration_seconds
        .map_or(profile.duration(), |d| d.min(profile.duration()));

    // 5. What the certificate says of its holder.
    let tags = attributes::principal_tags(&leaf).map_err(|u| denied(u.message(role_arn)))?;
    record.tags = tags.clone();
    let source_identity = attributes::source_identity(&leaf)
        .map_err(|why| denied(format!("Unable to assume role for {role_arn}: {why}")))?;
    record.source_identity = Some(source_identity.clone());

    // 6. The role's trust policy, for the service, then its maximum session duration.
    let role = inner
        .state()
        .roles
        .get(role_arn)
        .cloned()
        .ok_or_else(|| denied(format!("Unable to assume role for {role_arn}")))?;
    let mut context = RequestContext::default();
    context
        .set("aws:SourceArn", anchor.anchor.arn.clone())
        .set("aws:SourceAccount", account)
        .set("sts:RoleSessionName", session_name.clone())
        .set("sts:SourceIdentity", source_identity.clone())
        .request_tags(&tags)
        .principal_tags(&tags);
    authorize(
        &role,
        &["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        &Caller::Service { service: SERVICE },
        &context,
        |action, _| {
            denied(format!(
                "Unable to assume role for {role_arn}: its trust policy does not allow {SERVICE} {action} for this certificate"
            ))
        },
    )?;
    check_max_session_duration(&role, duration)?;
    record.policy = profile.session_policy.clone();
    record.policy_arns = profile.managed_policy_arns.clone();
    let packed_chars = tags
        .iter()
        .map(|t| t.key.chars().count() + t.value.chars().count())
        .sum::<usize>()
        + profile
            .session_policy
            .as_deref()
            .map_or(0, |p| p.chars().count())
        + profile
            .managed_policy_arns
            .iter()
            .map(|a| a.chars().count())
            .sum::<usize>();
    let packed = packed_percent(packed_chars);
    if packed > 100 {
        return Err(denied(format!(
            "Unable to assume role for {role_arn}: packed size of session tags and policies is {packed}% of the limit"
        )));
    }

    // 7. The session.
    let carried = Carried {
        tags,
        transitive_tags: Vec::new(),
        source_identity: Some(source_identity.clone()),
    };
    let minted = {
        let mut state = inner.state();
        let new = role_session(
            &state,
            inner.dialect,
            role_arn,
            &session_name,
            duration,
            carried,
        )?;
        mint(&mut state, new)
    };
    record.granted_seconds = Some(minted.granted);
    record.access_key_id = Some(minted.access_key_id.clone());
    record.packed_policy_size = Some(packed);
    let subject_id = hex::encode(&Sha256::digest(leaf.subject().as_raw())[..16]);
    let subject_arn = format!(
        "arn:{partition}:rolesanywhere:{region}:{account}:subject/{}-{}-{}-{}-{}",
        &subject_id[..8],
        &subject_id[8..12],
        &subject_id[12..16],
        &subject_id[16..20],
        &subject_id[20..]
    );
    let s = &minted.session;
    let body = json!({
        "credentialSet": [{
            "assumedRoleUser": {"arn": s.assumed_role_arn, "assumedRoleId": s.assumed_role_id},
            "credentials": {
                "accessKeyId": minted.access_key_id,
                "secretAccessKey": s.secret_access_key,
                "sessionToken": s.session_token,
                "expiration": rfc3339(s.expiration),
            },
            "packedPolicySize": packed,
            "roleArn": role_arn,
            "sourceIdentity": source_identity,
        }],
        "subjectArn": subject_arn,
    });
    Ok((
        StatusCode::CREATED,
        [
            ("content-type", "application/json".to_string()),
            ("x-amzn-requestid", request_id()),
        ],
        body.to_string(),
    )
        .into_response())
}

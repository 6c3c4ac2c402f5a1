//! Amazon ECR's `GetAuthorizationToken` (JSON 1.1 protocol, `X-Amz-Target:
//! AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken`), signed with SigV4 by credentials
//! the emulator issued (or an IAM user's keys), scoped to service `ecr`. The answer carries
//! `base64("AWS:<token>")`, `expiresAt` (epoch seconds) and `proxyEndpoint`, as ECR's does; the
//! tokens still valid are listed on the control API (`GET /_emulator/ecr/tokens`) for a test
//! registry to accept, and can be withdrawn (`DELETE /_emulator/ecr/tokens`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::signed::signing_caller;
use crate::Inner;
use crate::answer::StsFailure;
use crate::ids::random_string;
use crate::sigv4;
use crate::state::CallRecord;

/// The `X-Amz-Target` prefix of ECR's API.
pub(crate) const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
/// ECR's tokens last 12 hours.
pub const DEFAULT_TOKEN_LIFETIME_SECONDS: u64 = 12 * 3600;

/// A token the emulator issued.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EcrToken {
    /// The password the registry accepts with the user `AWS`.
    pub password: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Who asked for it (the role of the signing session, or the IAM user).
    pub principal: String,
}

/// ECR settings of the emulator (`POST /_emulator/ecr`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EcrSettings {
    /// Lifetime of the tokens issued from now on.
    pub token_lifetime_seconds: u64,
    /// The `proxyEndpoint` answered (default: `https://<account>.dkr.ecr.<region>.amazonaws.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_endpoint: Option<String>,
}

impl Default for EcrSettings {
    fn default() -> Self {
        Self {
            token_lifetime_seconds: DEFAULT_TOKEN_LIFETIME_SECONDS,
            proxy_endpoint: None,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetAuthorizationTokenInput {
    #[serde(default)]
    registry_ids: Option<Vec<String>>,
}

/// ECR's error document: `{"__type": code, "message": ...}` with `x-amzn-ErrorType`.
pub(crate) fn json_error(failure: &StsFailure) -> Response {
    // The JSON protocols answer every client error with HTTP 400.
    let status = if failure.status.is_server_error() {
        failure.status
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = serde_json::json!({"__type": failure.code, "message": failure.message});
    (
        status,
        [
            (header::CONTENT_TYPE, "application/x-amz-json-1.1"),
            (
                header::HeaderName::from_static("x-amzn-errortype"),
                failure.code,
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

/// `GetAuthorizationToken`, answered as ECR answers it.
pub(crate) fn get_authorization_token(
    inner: &Inner,
    request: &sigv4::SignedRequest<'_>,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let auth = sigv4::parse_authorization(request.headers).map_err(|e| match e {
        sigv4::SignatureError::Missing => {
            StsFailure::forbidden("MissingAuthenticationToken", e.to_string())
        }
        _ => StsFailure::forbidden("IncompleteSignature", e.to_string()),
    })?;
    record.access_key_id = Some(auth.access_key_id.clone());
    if auth.service != "ecr" {
        return Err(StsFailure::forbidden(
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'ecr'. ",
        ));
    }
    if !inner.regions.contains(&auth.region) {
        return Err(StsFailure::forbidden(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                auth.region
            ),
        ));
    }
    let now = Timestamp::now();
    let caller = signing_caller(inner, request, &auth.access_key_id, now).map_err(|f| {
        // ECR's words for a session it does not know or that expired.
        match f.code {
            "ExpiredToken" => StsFailure::forbidden("ExpiredTokenException", f.message),
            _ => StsFailure::forbidden("UnrecognizedClientException", f.message),
        }
    })?;
    sigv4::verify(request, &auth, &caller.secret_access_key, now)
        .map_err(|e| StsFailure::forbidden("InvalidSignatureException", e.to_string()))?;
    record.subject = Some(caller.assumed_role_arn.clone());
    record.role_arn = Some(caller.role_arn.clone());
    let input: GetAuthorizationTokenInput = if request.body.is_empty() {
        GetAuthorizationTokenInput::default()
    } else {
        serde_json::from_slice(request.body).map_err(|_| {
            StsFailure::sender("SerializationException", "the request body is not JSON")
        })?
    };
    if input.registry_ids.as_ref().is_some_and(|ids| {
        ids.is_empty()
            || ids
                .iter()
                .any(|id| id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
    }) {
        return Err(StsFailure::sender(
            "InvalidParameterException",
            "registryIds must be 12-digit account IDs",
        ));
    }
    let mut state = inner.state();
    let settings = state.ecr.clone();
    let lifetime =
        SignedDuration::from_secs(settings.token_lifetime_seconds.min(i64::MAX as u64) as i64);
    let expires_at = now
        .checked_add(lifetime)
        .map_err(|_| StsFailure::internal("token lifetime out of range"))?;
    // 64 characters: a registry behind htpasswd (bcrypt) compares at most 72 bytes.
    let password = random_string(
        64,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    );
    state.ecr_tokens.retain(|t| t.expires_at > now);
    state.ecr_tokens.push(IssuedToken {
        password: password.clone(),
        expires_at,
        principal: caller.role_arn.clone(),
    });
    drop(state);
    let account = caller.account.clone();
    let registries: Vec<String> = input.registry_ids.unwrap_or_else(|| vec![account.clone()]);
    let authorization_data: Vec<serde_json::Value> = registries
        .iter()
        .map(|id| {
            let proxy = settings
                .proxy_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://{id}.dkr.ecr.{}.amazonaws.com", auth.region));
            serde_json::json!({
                "authorizationToken": base64::engine::general_purpose::STANDARD
                    .encode(format!("AWS:{password}")),
                "expiresAt": expires_at.as_second() as f64,
                "proxyEndpoint": proxy,
            })
        })
        .collect();
    let body = serde_json::json!({ "authorizationData": authorization_data });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response())
}

/// A token in the emulator's state.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub password: String,
    pub expires_at: Timestamp,
    pub principal: String,
}

impl IssuedToken {
    pub fn shown(&self) -> EcrToken {
        EcrToken {
            password: self.password.clone(),
            expires_at: self.expires_at.to_string(),
            principal: self.principal.clone(),
        }
    }
}

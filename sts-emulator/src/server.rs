//! The HTTP side: the router, and the STS Query API endpoint that injects faults, dispatches to
//! the action and logs the call (Roles Anywhere's `POST /sessions` does the same in its action).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use jiff::Timestamp;

use crate::answer::{
    IDP_UNREACHABLE, StsFailure, error_response, known_code, rfc3339, truncated_xml,
};
use crate::params::{Params, policy_arns};
use crate::state::{CallRecord, Injected};
use crate::{Inner, actions, control, sigv4};

/// The STS endpoint at `/` and the control API under `/_emulator/`.
pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/", post(sts_action).get(sts_action))
        // IAM Roles Anywhere's CreateSession, on the same listener.
        .route("/sessions", post(actions::roles_anywhere::create_session))
        .route(
            "/_emulator/trust-anchors",
            post(control::put_trust_anchor).get(control::list_trust_anchors),
        )
        .route(
            "/_emulator/profiles",
            post(control::put_profile).get(control::list_profiles),
        )
        .route("/_emulator/revocations", post(control::put_revocation))
        .route(
            "/_emulator/roles",
            post(control::put_role).get(control::list_roles),
        )
        .route(
            "/_emulator/saml-providers",
            post(control::put_saml_provider).get(control::list_saml_providers),
        )
        .route("/_emulator/users", post(control::put_user))
        .route(
            "/_emulator/faults",
            post(control::put_faults).get(control::get_faults),
        )
        .route(
            "/_emulator/ecr",
            post(control::put_ecr).get(control::get_ecr),
        )
        .route(
            "/_emulator/ecr/tokens",
            get(control::list_ecr_tokens).delete(control::expire_ecr_tokens),
        )
        .route("/_emulator/calls", get(control::get_calls))
        .route("/_emulator/reset", post(control::reset_calls))
        .route("/_emulator/healthz", get(|| async { "ok" }))
        .with_state(inner)
}

/// The failure an injected fault answers, if it answers one.
pub(crate) fn injected_failure(fault: Injected) -> Option<StsFailure> {
    match fault {
        Injected::None | Injected::Malformed => None,
        Injected::Down => Some(StsFailure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "ServiceUnavailable",
            message: "Service is unavailable".into(),
        }),
        Injected::Throttle => Some(StsFailure::sender("Throttling", "Rate exceeded")),
        Injected::InternalFailure => Some(StsFailure::internal("An internal error occurred")),
        Injected::IdpError => Some(StsFailure::sender("IDPCommunicationError", IDP_UNREACHABLE)),
        Injected::Code(code) => Some(StsFailure {
            status: if code == "AccessDenied" {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            },
            code: known_code(&code),
            message: format!("injected {code}"),
        }),
    }
}

async fn sts_action(
    AxumState(inner): AxumState<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().unwrap_or("");
    let mut params: Params = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if method == Method::POST {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    // ECR's JSON 1.1 API on the same listener: the action is in `X-Amz-Target`.
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(actions::ecr::TARGET_PREFIX))
        .map(str::to_string);
    let action = match &target {
        Some(target) => target.clone(),
        None => params.get("Action").cloned().unwrap_or_default(),
    };

    let (fault, latency) = inner.state().next_fault(&action);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut record = CallRecord {
        at: rfc3339(Timestamp::now()),
        action: action.clone(),
        role_arn: params.get("RoleArn").cloned(),
        session_name: params.get("RoleSessionName").cloned(),
        duration_seconds: params.get("DurationSeconds").and_then(|d| d.parse().ok()),
        ..CallRecord::default()
    };
    // The session policies of every action that takes them, as sent.
    if matches!(
        action.as_str(),
        "AssumeRoleWithWebIdentity" | "AssumeRoleWithSAML" | "AssumeRole" | "GetFederationToken"
    ) {
        record.policy = params.get("Policy").cloned();
        record.policy_arns = policy_arns(&params);
    }
    if let Some(target) = &target {
        let outcome = match injected_failure(fault) {
            Some(f) => Err(f),
            None if target == "GetAuthorizationToken" && method == Method::POST => {
                let request = sigv4::SignedRequest {
                    method: method.as_str(),
                    path: uri.path(),
                    query: uri.query().unwrap_or(""),
                    headers: &headers,
                    body: &body,
                };
                actions::ecr::get_authorization_token(&inner, &request, &mut record)
            }
            None => Err(StsFailure::sender(
                "UnknownOperationException",
                format!("Could not find operation {target}"),
            )),
        };
        record.result = match &outcome {
            Ok(_) => "Ok".into(),
            Err(f) => f.code.into(),
        };
        inner.state().record(record);
        return match outcome {
            Ok(r) => r,
            Err(f) => actions::ecr::json_error(&f),
        };
    }
    if fault == Injected::Malformed {
        record.result = "Malformed".into();
        inner.state().record(record);
        return truncated_xml(&action);
    }
    let outcome = match injected_failure(fault) {
        Some(f) => Err(f),
        None => match action.as_str() {
            "AssumeRoleWithWebIdentity" => {
                actions::web_identity::assume_role_with_web_identity(&inner, &params, &mut record)
                    .await
            }
            "AssumeRoleWithSAML" => {
                actions::saml::assume_role_with_saml(&inner, &params, &mut record).await
            }
            "GetCallerIdentity" | "AssumeRole" | "GetFederationToken" | "GetSessionToken" => {
                let request = sigv4::SignedRequest {
                    method: method.as_str(),
                    path: uri.path(),
                    query: uri.query().unwrap_or(""),
                    headers: &headers,
                    body: &body,
                };
                actions::signed::signed_action(&inner, &action, &request, &params, &mut record)
            }
            "" => Err(StsFailure::sender("MissingAction", "Missing Action")),
            _ => Err(StsFailure::sender(
                "InvalidAction",
                format!("Could not find operation {action}"),
            )),
        },
    };
    record.result = match &outcome {
        Ok(_) => "Ok".into(),
        Err(f) => f.code.into(),
    };
    inner.state().record(record);
    match outcome {
        Ok(r) => r,
        Err(f) => error_response(&f, inner.dialect),
    }
}

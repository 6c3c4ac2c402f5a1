//! The control API under `/_emulator/`: roles, SAML providers, IAM users, Roles Anywhere trust
//! anchors, profiles and revocations, faults, and the call log.

use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::Inner;
use crate::actions::ecr::{EcrSettings, EcrToken};
use crate::roles_anywhere::{Profile, Revocation, TrustAnchor};
use crate::saml;
use crate::state::{CallRecord, Counters, Faults, Role, SamlProvider, State, User};

/// Snapshot returned by `GET /_emulator/calls`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallLog {
    pub counters: Counters,
    pub calls: Vec<CallRecord>,
}

impl CallLog {
    pub(crate) fn of(state: &State) -> Self {
        Self {
            counters: state.counters.clone(),
            calls: state.calls.clone(),
        }
    }
}

type Shared = AxumState<Arc<Inner>>;

/// Registers a role; 400 with the reason when IAM (or the emulator) would refuse it.
pub(crate) async fn put_role(
    AxumState(inner): Shared,
    axum::Json(role): axum::Json<Role>,
) -> Response {
    match inner.add_role(role) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

pub(crate) async fn list_roles(AxumState(inner): Shared) -> axum::Json<Vec<Role>> {
    axum::Json(
        inner
            .state()
            .roles
            .values()
            .map(|r| r.role.clone())
            .collect(),
    )
}

pub(crate) async fn put_user(
    AxumState(inner): Shared,
    axum::Json(user): axum::Json<User>,
) -> StatusCode {
    inner.state().users.insert(user.access_key_id.clone(), user);
    StatusCode::NO_CONTENT
}

pub(crate) async fn put_saml_provider(
    AxumState(inner): Shared,
    axum::Json(upload): axum::Json<saml::ProviderUpload>,
) -> Response {
    match saml::provider_from_metadata(&upload.arn, &upload.metadata) {
        Ok(provider) => {
            inner
                .state()
                .saml_providers
                .insert(upload.arn.clone(), provider);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

pub(crate) async fn list_saml_providers(AxumState(inner): Shared) -> axum::Json<Vec<SamlProvider>> {
    axum::Json(inner.state().saml_providers.values().cloned().collect())
}

/// Registers (or replaces) a trust anchor; 400 with the reason when Roles Anywhere would refuse
/// its CA bundle.
pub(crate) async fn put_trust_anchor(
    AxumState(inner): Shared,
    axum::Json(anchor): axum::Json<TrustAnchor>,
) -> Response {
    match inner.add_trust_anchor(anchor) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

pub(crate) async fn list_trust_anchors(AxumState(inner): Shared) -> axum::Json<Vec<TrustAnchor>> {
    axum::Json(
        inner
            .state()
            .trust_anchors
            .values()
            .map(|t| t.anchor.clone())
            .collect(),
    )
}

/// Registers (or replaces) a profile; 400 with the reason when Roles Anywhere would refuse it.
pub(crate) async fn put_profile(
    AxumState(inner): Shared,
    axum::Json(profile): axum::Json<Profile>,
) -> Response {
    match inner.add_profile(profile) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

pub(crate) async fn list_profiles(AxumState(inner): Shared) -> axum::Json<Vec<Profile>> {
    axum::Json(inner.state().profiles.values().cloned().collect())
}

/// Revokes serial numbers (or imports a CRL) under a trust anchor; 400 with the reason if the
/// anchor is unknown or the CRL is not its CA's.
pub(crate) async fn put_revocation(
    AxumState(inner): Shared,
    axum::Json(revocation): axum::Json<Revocation>,
) -> Response {
    match inner.revoke(&revocation) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

pub(crate) async fn put_faults(
    AxumState(inner): Shared,
    axum::Json(faults): axum::Json<Faults>,
) -> StatusCode {
    inner.state().set_faults(faults);
    StatusCode::NO_CONTENT
}

pub(crate) async fn get_faults(AxumState(inner): Shared) -> axum::Json<Faults> {
    axum::Json(inner.state().faults.clone())
}

pub(crate) async fn get_calls(AxumState(inner): Shared) -> axum::Json<CallLog> {
    axum::Json(CallLog::of(&inner.state()))
}

pub(crate) async fn reset_calls(AxumState(inner): Shared) -> StatusCode {
    let mut s = inner.state();
    s.calls.clear();
    s.counters = Counters::default();
    StatusCode::NO_CONTENT
}

/// The ECR tokens that have not expired.
pub(crate) fn valid_ecr_tokens(state: &State) -> Vec<EcrToken> {
    let now = jiff::Timestamp::now();
    state
        .ecr_tokens
        .iter()
        .filter(|t| t.expires_at > now)
        .map(|t| t.shown())
        .collect()
}

/// `GET /_emulator/ecr/tokens`: what a test registry accepts as the password of the user `AWS`.
pub(crate) async fn list_ecr_tokens(AxumState(inner): Shared) -> axum::Json<Vec<EcrToken>> {
    axum::Json(valid_ecr_tokens(&inner.state()))
}

/// `DELETE /_emulator/ecr/tokens`: every token issued so far expires now.
pub(crate) async fn expire_ecr_tokens(AxumState(inner): Shared) -> StatusCode {
    inner.state().ecr_tokens.clear();
    StatusCode::NO_CONTENT
}

/// `POST /_emulator/ecr`: token lifetime and `proxyEndpoint` from now on.
pub(crate) async fn put_ecr(
    AxumState(inner): Shared,
    axum::Json(settings): axum::Json<EcrSettings>,
) -> StatusCode {
    inner.state().ecr = settings;
    StatusCode::NO_CONTENT
}

pub(crate) async fn get_ecr(AxumState(inner): Shared) -> axum::Json<EcrSettings> {
    axum::Json(inner.state().ecr.clone())
}

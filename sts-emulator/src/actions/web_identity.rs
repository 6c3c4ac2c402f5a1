//! `AssumeRoleWithWebIdentity`: the token verified against the issuer's keys, then the role's
//! trust policy (the IAM OIDC provider the token's issuer names, `<provider>:sub` / `:aud`,
//! `sts:RoleSessionName`), then the role's `MaxSessionDuration`.

use axum::response::Response;
use jiff::Timestamp;

use super::{authorize, check_max_session_duration, needed_actions};
use crate::Inner;
use crate::answer::{IDP_UNREACHABLE, StsFailure, credentials_xml, ok_xml, xml_escape};
use crate::mint::{Carried, mint, role_session};
use crate::oidc;
use crate::params::{Params, split_role_arn, validate_common};
use crate::roles::oidc_provider_arn;
use crate::state::CallRecord;
use crate::trust_policy::{Caller, RequestContext};

pub(crate) async fn assume_role_with_web_identity(
    inner: &Inner,
    params: &Params,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let common = validate_common(params, inner.dialect)?;
    let token = params.get("WebIdentityToken").cloned().unwrap_or_default();
    if !(4..=20000).contains(&token.len()) {
        return Err(StsFailure::validation(
            "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000",
        ));
    }
    let role = inner.state().roles.get(&common.role_arn).cloned();
    let audiences = role
        .as_ref()
        .map(|r| r.audiences.clone())
        .unwrap_or_else(|| vec!["sts.amazonaws.com".into()]);
    let now = Timestamp::now().as_second() + inner.state().faults.clock_skew_seconds;
    let claims = inner
        .keys
        .verify(&token, &audiences, now)
        .await
        .map_err(|e| match e {
            oidc::TokenRejection::Expired => {
                StsFailure::sender("ExpiredTokenException", "Token is expired")
            }
            oidc::TokenRejection::Invalid(m) => StsFailure::sender("InvalidIdentityToken", m),
            oidc::TokenRejection::Unreachable(detail) => {
                tracing::warn!(%detail, "the issuer's keys could not be fetched");
                StsFailure::sender("IDPCommunicationError", IDP_UNREACHABLE)
            }
        })?;
    record.subject = Some(claims.sub.clone());
    record.audience = claims.aud.first().cloned();
    let denied = || StsFailure::denied("Not authorized to perform sts:AssumeRoleWithWebIdentity");
    let role = role.ok_or_else(denied)?;
    let audience = claims
        .aud
        .iter()
        .find(|a| audiences.contains(a))
        .cloned()
        .unwrap_or_default();
    // The token's issuer names the IAM OIDC provider of the role's account it must trust.
    let (partition, account, _) =
        split_role_arn(&common.role_arn, inner.dialect).ok_or_else(denied)?;
    let provider = oidc_provider_arn(partition, account, &claims.iss);
    let provider_path = provider
        .split_once(":oidc-provider/")
        .map_or("", |(_, path)| path);
    let mut request = RequestContext::default();
    request
        .set(&format!("{provider_path}:sub"), claims.sub.clone())
        .set(&format!("{provider_path}:aud"), audience.clone())
        .set("sts:RoleSessionName", common.session_name.clone());
    authorize(
        &role,
        &needed_actions("sts:AssumeRoleWithWebIdentity", false, false),
        &Caller::WebIdentity {
            provider: &provider,
        },
        &request,
        |action, _| StsFailure::denied(format!("Not authorized to perform {action}")),
    )?;
    check_max_session_duration(&role, common.duration)?;
    let minted = {
        let mut state = inner.state();
        let new = role_session(
            &state,
            inner.dialect,
            &common.role_arn,
            &common.session_name,
            common.duration,
            Carried::default(),
        )?;
        mint(&mut state, new)
    };
    record.granted_seconds = Some(minted.granted);
    record.access_key_id = Some(minted.access_key_id.clone());
    let result = format!(
        "    <SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken>\n    <Audience>{}</Audience>\n{}    <Provider>{}</Provider>\n",
        xml_escape(&claims.sub),
        xml_escape(&audience),
        credentials_xml(&minted.access_key_id, &minted.session),
        xml_escape(claims.iss.trim_start_matches("https://")),
    );
    Ok(ok_xml("AssumeRoleWithWebIdentity", result))
}

//! `AssumeRoleWithSAML`: the Response checked against the registered provider (structure, then
//! the signature by `xmlsec1`), the assertion's session tags and source identity, then the role's
//! trust policy (the SAML provider, `SAML:sub` / `SAML:aud` / `SAML:iss`, the tags and source
//! identity) and its `MaxSessionDuration` (the `SessionDuration` attribute only shortens).

use axum::response::Response;
use jiff::{SignedDuration, Timestamp};

use super::{authorize, check_max_session_duration, needed_actions};
use crate::Inner;
use crate::answer::{StsFailure, credentials_xml, ok_xml, source_identity_xml, xml_escape};
use crate::mint::{Carried, mint, role_session};
use crate::params::{
    Params, TagProblem, check_source_identity, check_tags, transitive_of, validate_common,
};
use crate::saml::{self, AWS_SAML_ENDPOINT};
use crate::state::CallRecord;
use crate::trust_policy::{Caller, RequestContext};

pub(crate) async fn assume_role_with_saml(
    inner: &Inner,
    params: &Params,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let refused = |r: saml::Refused| StsFailure::sender(r.code, r.message);
    let encoded = params.get("SAMLAssertion").cloned().unwrap_or_default();
    if !(4..=100_000).contains(&encoded.len()) {
        return Err(StsFailure::validation(
            "1 validation error detected: Value at 'SAMLAssertion' failed to satisfy constraint: Member must have length between 4 and 100000",
        ));
    }
    let principal = params.get("PrincipalArn").cloned().unwrap_or_default();
    let provider = inner
        .state()
        .saml_providers
        .get(&principal)
        .cloned()
        .ok_or_else(|| {
            StsFailure::sender("InvalidIdentityToken", "Specified provider doesn't exist")
        })?;
    let (xml, stripped) = saml::decode(&encoded).map_err(refused)?;
    let now = Timestamp::now() + SignedDuration::from_secs(inner.state().faults.clock_skew_seconds);
    // Structure and references first, so that xmlsec1 only ever judges a well-formed Response
    // whose one Assertion is the signed element.
    let claims = saml::check(&xml, &provider, now).map_err(refused)?;
    match saml::verify_signature(&stripped, &provider.certificates).await {
        saml::Verdict::Valid(i) => {
            record.saml_signature = Some("Valid".into());
            record.saml_certificate_sha256 = provider
                .certificates
                .get(i)
                .map(|pem| saml::certificate_sha256(pem));
        }
        saml::Verdict::Invalid => {
            record.saml_signature = Some("Invalid".into());
            return Err(StsFailure::sender(
                "InvalidIdentityToken",
                "Response signature invalid: no certificate of the SAML provider's metadata verifies it",
            ));
        }
        saml::Verdict::Unavailable(why) => return Err(StsFailure::internal(why)),
    }
    record.subject = Some(claims.subject.clone());
    record.audience = Some(claims.audience.clone());
    record.session_name = claims.session_name.clone();
    record.tags = claims.tags.clone();
    record.transitive_tag_keys = claims.transitive_tag_keys.clone();
    record.source_identity = claims.source_identity.clone();
    let role_arn = params.get("RoleArn").cloned().unwrap_or_default();
    if !claims
        .roles
        .iter()
        .any(|(role, p)| *role == role_arn && *p == principal)
    {
        return Err(StsFailure::denied(
            "Not authorized to perform sts:AssumeRoleWithSAML: the assertion's Role attribute does not name this role and provider",
        ));
    }
    let mut effective = params.clone();
    effective.insert(
        "RoleSessionName".into(),
        claims.session_name.clone().unwrap_or_default(),
    );
    let common = validate_common(&effective, inner.dialect)?;
    // The assertion's tags follow STS's tag rules; a broken one is an invalid assertion.
    match check_tags(&claims.tags, &claims.transitive_tag_keys, &[]) {
        Ok(()) => {}
        Err(TagProblem::TooMany) => {
            return Err(StsFailure::validation(
                "at most 50 session tags and 50 transitive tag keys",
            ));
        }
        Err(_) => {
            return Err(StsFailure::sender(
                "InvalidIdentityToken",
                "A PrincipalTag attribute is invalid",
            ));
        }
    }
    if let Some(identity) = &claims.source_identity
        && check_source_identity(identity).is_err()
    {
        return Err(StsFailure::sender(
            "InvalidIdentityToken",
            "The SourceIdentity attribute is invalid",
        ));
    }
    let role = inner
        .state()
        .roles
        .get(&common.role_arn)
        .cloned()
        .ok_or_else(|| StsFailure::denied("Not authorized to perform sts:AssumeRoleWithSAML"))?;
    let mut request = RequestContext::default();
    request
        .set("SAML:sub", claims.subject.clone())
        // IAM's SAML:aud is the Recipient the assertion was presented to, not its Audience.
        .set("SAML:aud", AWS_SAML_ENDPOINT)
        .set("SAML:iss", claims.issuer.clone())
        .set("sts:RoleSessionName", common.session_name.clone())
        .set_opt("sts:SourceIdentity", claims.source_identity.as_deref())
        .request_tags(&claims.tags);
    authorize(
        &role,
        &needed_actions(
            "sts:AssumeRoleWithSAML",
            !claims.tags.is_empty(),
            claims.source_identity.is_some(),
        ),
        &Caller::Saml {
            provider: &principal,
        },
        &request,
        |action, _| StsFailure::denied(format!("Not authorized to perform {action}")),
    )?;
    check_max_session_duration(&role, common.duration)?;
    // The SessionDuration attribute shortens the session; it never lengthens it.
    let requested = claims
        .session_duration
        .map_or(common.duration, |d| common.duration.min(d));
    let carried = Carried {
        tags: claims.tags.clone(),
        transitive_tags: transitive_of(&claims.tags, &claims.transitive_tag_keys),
        source_identity: claims.source_identity.clone(),
    };
    let minted = {
        let mut state = inner.state();
        let new = role_session(
            &state,
            inner.dialect,
            &common.role_arn,
            &common.session_name,
            requested,
            carried,
        )?;
        mint(&mut state, new)
    };
    record.granted_seconds = Some(minted.granted);
    record.access_key_id = Some(minted.access_key_id.clone());
    let result = format!(
        "    <Subject>{}</Subject>\n    <SubjectType>{}</SubjectType>\n    <Issuer>{}</Issuer>\n    <Audience>{}</Audience>\n    <NameQualifier>{}</NameQualifier>\n{}{}",
        xml_escape(&claims.subject),
        xml_escape(&claims.subject_type),
        xml_escape(&claims.issuer),
        xml_escape(&claims.audience),
        xml_escape(&principal),
        credentials_xml(&minted.access_key_id, &minted.session),
        source_identity_xml(claims.source_identity.as_deref()),
    );
    Ok(ok_xml("AssumeRoleWithSAML", result))
}

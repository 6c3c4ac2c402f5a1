//! What to fix when STS refuses a first exchange for a reason that is almost always a setup
//! mistake on the IAM side. The hint goes after STS's own message in the condition, the Event and
//! the log, so the person reading it knows the next command to run.
//!
//! Matched on the error code and on the phrases AWS uses in its messages; an answer that matches
//! nothing gets no hint rather than a guess.

use super::seam::ExchangeRequest;
use crate::spec::ResolvedRolesAnywhere;
use crate::sts::StsError;

fn code_is(error: &StsError, code: &str) -> bool {
    error.code.as_deref() == Some(code)
}

fn says(error: &StsError, phrase: &str) -> bool {
    error
        .message
        .to_ascii_lowercase()
        .contains(&phrase.to_ascii_lowercase())
}

/// The `podcreds iam trust-policy` command for the binding of `request`.
fn trust_policy_command(request: &ExchangeRequest<'_>) -> String {
    format!(
        "`podcreds iam trust-policy -n {} {}` prints one that does",
        request.namespace, request.binding
    )
}

/// The fix for a refused `AssumeRoleWithWebIdentity`, if the answer shows a setup mistake.
pub fn web_identity(
    error: &StsError,
    request: &ExchangeRequest<'_>,
    role_arn: &str,
) -> Option<String> {
    let spec = request.spec;
    if code_is(error, "IDPCommunicationError") {
        return Some(
            "AWS could not fetch the cluster's JWKS from the issuer URL: serve the files `podcreds oidc export` writes at the issuer over public HTTPS".into(),
        );
    }
    if code_is(error, "InvalidIdentityToken") {
        if says(error, "no openidconnect provider") {
            return Some(
                "no IAM OIDC provider is registered for the cluster's issuer in the role's account: `podcreds oidc export` prints the `aws iam create-open-id-connect-provider` command".into(),
            );
        }
        if says(error, "audience") {
            return Some(format!(
                "the IAM OIDC provider does not accept the audience {:?}: add it with `aws iam add-client-id-to-open-id-connect-provider`",
                spec.audience
            ));
        }
        if says(error, "thumbprint") {
            return Some(
                "the IAM OIDC provider's thumbprint does not match the issuer's certificate: update it with `aws iam update-open-id-connect-provider-thumbprint`".into(),
            );
        }
    }
    if let Some(hint) = max_session_duration(error, role_arn, request.spec.duration_seconds) {
        return Some(hint);
    }
    if code_is(error, "AccessDenied") {
        return Some(format!(
            "the trust policy of {} must allow sts:AssumeRoleWithWebIdentity for sub system:serviceaccount:{}:{} and aud {}: {}",
            role_arn,
            request.namespace,
            spec.service_account_name,
            spec.audience,
            trust_policy_command(request)
        ));
    }
    None
}

/// The fix for a session longer than the role allows: AWS refuses it (`ValidationError`) rather
/// than granting less.
pub fn max_session_duration(error: &StsError, role_arn: &str, asked: i32) -> Option<String> {
    if !(code_is(error, "ValidationError") && says(error, "MaxSessionDuration")) {
        return None;
    }
    let role_name = role_arn.rsplit('/').next().unwrap_or(role_arn);
    Some(format!(
        "{role_arn} allows shorter sessions than the {asked} seconds asked (its MaxSessionDuration; IAM's default is 3600): lower spec.durationSeconds, or raise it with `aws iam update-role --role-name {role_name} --max-session-duration {asked}`"
    ))
}

/// The fix for a refused Roles Anywhere `CreateSession` when the certificate, the trust anchor or
/// the profile is the reason; `ca_fingerprint` is podcreds' signing CA (`None`: the admin's
/// certificate Secret signed).
pub fn roles_anywhere_certificate(
    error: &StsError,
    ra: &ResolvedRolesAnywhere,
    ca_fingerprint: Option<&str>,
) -> Option<String> {
    let anchor = &ra.trust_anchor_arn;
    let secret = ra.certificate_secret_name.as_deref().unwrap_or_default();
    if says(error, "untrusted signing certificate") || says(error, "no chain from") {
        return Some(match ca_fingerprint {
            Some(fingerprint) => format!(
                "the trust anchor {anchor} does not hold podcreds' signing CA (certificate sha256 {fingerprint}), as after a `podcreds rolesanywhere-ca add-next` or `promote` without updating it: `podcreds rolesanywhere trust-anchor` prints the bundle and the `aws rolesanywhere update-trust-anchor` command"
            ),
            None => format!(
                "the trust anchor {anchor} does not trust the CA that issued the certificate in Secret {secret:?}: add that CA (or the intermediates, in tls.crt after the certificate) to the trust anchor"
            ),
        });
    }
    if says(error, "revoked") {
        return Some(format!(
            "the trust anchor {anchor}'s revocation list names the certificate: issue a new one for Secret {secret:?}"
        ));
    }
    if says(error, "expired at") || says(error, "not valid before") {
        return Some(
            "a certificate of the chain is outside its validity: renew it, or check the clocks of the operator's node".into(),
        );
    }
    if says(error, "trust anchor is disabled") {
        return Some(format!(
            "enable the trust anchor: `aws rolesanywhere enable-trust-anchor --trust-anchor-id {}`",
            anchor.rsplit('/').next().unwrap_or(anchor)
        ));
    }
    if says(error, "profile is disabled") {
        return Some(format!(
            "enable the profile: `aws rolesanywhere enable-profile --profile-id {}`",
            ra.profile_arn.rsplit('/').next().unwrap_or(&ra.profile_arn)
        ));
    }
    if says(error, "does not list it in its roleArns") || says(error, "profile does not") {
        return Some(format!(
            "the profile {} must list {} in its roleArns: `aws rolesanywhere update-profile --role-arns`",
            ra.profile_arn, ra.role_arn
        ));
    }
    None
}

/// The fix for a Roles Anywhere `CreateSession` the role's trust policy refused.
pub fn roles_anywhere_trust(
    error: &StsError,
    request: &ExchangeRequest<'_>,
    ra: &ResolvedRolesAnywhere,
) -> Option<String> {
    if !(code_is(error, "AccessDeniedException") && says(error, "unable to assume role")) {
        return None;
    }
    Some(format!(
        "the trust policy of {} must allow {} sts:AssumeRole, sts:TagSession and sts:SetSourceIdentity with aws:PrincipalTag/x509Subject/CN {:?}, aws:PrincipalTag/x509Subject/OU {:?} and aws:SourceArn {}: {}",
        ra.role_arn,
        crate::iam::ROLES_ANYWHERE_SERVICE,
        crate::spec::workload_common_name(request.namespace, &request.spec.service_account_name),
        request.namespace,
        ra.trust_anchor_arn,
        trust_policy_command(request)
    ))
}

/// The hint for `error` of an exchange that asked `role_arn` for `asked` seconds, if any applies.
pub fn for_role(error: &StsError, role_arn: &str, asked: i32) -> Option<String> {
    max_session_duration(error, role_arn, asked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AWSRoleBindingSpec;
    use crate::spec::{ResolvedSpec, StsPolicy, resolve};
    use crate::sts::StsErrorKind;

    fn resolved() -> ResolvedSpec {
        let spec: AWSRoleBindingSpec = serde_json::from_value(serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::111122223333:role/app",
        }))
        .unwrap();
        resolve(&spec, "team-a", "reader", &StsPolicy::default()).unwrap()
    }

    fn hint(code: &str, message: &str) -> Option<String> {
        let spec = resolved();
        let request = ExchangeRequest {
            namespace: "team-a",
            binding: "reader",
            spec: &spec,
        };
        let error = StsError::new(StsErrorKind::from_code(code), Some(code), message);
        web_identity(&error, &request, "arn:aws:iam::111122223333:role/app")
    }

    #[test]
    fn common_setup_mistakes_name_the_fix() {
        let no_provider = hint(
            "InvalidIdentityToken",
            "No OpenIDConnect provider found in your account for https://oidc.example.com",
        )
        .unwrap();
        assert!(
            no_provider.contains("podcreds oidc export"),
            "{no_provider}"
        );
        let jwks = hint(
            "IDPCommunicationError",
            "Couldn't retrieve verification key from your identity provider",
        )
        .unwrap();
        assert!(jwks.contains("JWKS"), "{jwks}");
        let audience = hint("InvalidIdentityToken", "Incorrect token audience").unwrap();
        assert!(
            audience.contains("\"sts.amazonaws.com\"")
                && audience.contains("add-client-id-to-open-id-connect-provider"),
            "{audience}"
        );
        let denied = hint(
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        )
        .unwrap();
        assert!(
            denied.contains("sub system:serviceaccount:team-a:app")
                && denied.contains("aud sts.amazonaws.com")
                && denied.contains("podcreds iam trust-policy -n team-a reader"),
            "{denied}"
        );
    }

    #[test]
    fn other_answers_get_no_guess() {
        assert_eq!(hint("Throttling", "Rate exceeded"), None);
        assert_eq!(
            hint("InvalidIdentityToken", "Token signature is invalid"),
            None
        );
        assert_eq!(hint("ExpiredTokenException", "Token is expired"), None);
    }

    #[test]
    fn the_hint_follows_sts_own_message() {
        let error = StsError::new(StsErrorKind::AccessDenied, Some("AccessDenied"), "no")
            .with_hint(Some("fix it".into()));
        assert_eq!(error.to_string(), "STS AccessDenied: no; fix it");
    }

    #[test]
    fn a_session_longer_than_the_role_allows_names_the_role_setting() {
        let error = StsError::new(
            StsErrorKind::InvalidRequest,
            Some("ValidationError"),
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        );
        let hint = max_session_duration(&error, "arn:aws:iam::111122223333:role/app", 7200)
            .expect("a hint");
        assert!(
            hint.contains("MaxSessionDuration")
                && hint.contains("aws iam update-role --role-name app --max-session-duration 7200"),
            "{hint}"
        );
        let other = StsError::new(StsErrorKind::InvalidRequest, Some("ValidationError"), "x");
        assert_eq!(max_session_duration(&other, "arn", 7200), None);
    }
}

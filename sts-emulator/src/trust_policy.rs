//! IAM trust policy documents, read into the emulator's [`Role`] rules, so a test can register a
//! role with the very JSON an administrator would give IAM.
//!
//! Only what podcreds' flows need is understood: Allow statements trusting an OIDC provider
//! (`<provider>:sub` / `<provider>:aud` with `StringEquals` or `StringLike`), an IAM SAML provider
//! (`saml:sub`, and `saml:aud` naming AWS's SAML endpoint), or other roles
//! (`sts:ExternalId`), and the `sts:TagSession` / `sts:SetSourceIdentity` actions. Anything else
//! is refused rather than ignored, so a translation can never admit more than the document.

use serde_json::Value;

use crate::state::Role;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustPolicyError {
    #[error("the trust policy has no Statement list")]
    NoStatements,
    #[error("only Allow statements are understood, found {0:?}")]
    Effect(String),
    #[error("unsupported principal {0}")]
    Principal(String),
    #[error("unsupported action {0:?}")]
    Action(String),
    #[error("unsupported condition {operator} {key}")]
    Condition { operator: String, key: String },
    #[error("the statement trusts {0} but allows no action that uses it")]
    NoUse(String),
}

/// A string or a list of strings, as IAM accepts in `Action` and principals.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The role `arn` with the trust rules of `policy`; `oidc_provider` is the cluster issuer as IAM
/// names it (without `https://`).
pub fn role_from_trust_policy(
    arn: &str,
    policy: &Value,
    oidc_provider: &str,
) -> Result<Role, TrustPolicyError> {
    let statements = policy
        .get("Statement")
        .and_then(Value::as_array)
        .ok_or(TrustPolicyError::NoStatements)?;
    let mut role = Role {
        arn: arn.to_string(),
        ..Role::default()
    };
    for statement in statements {
        let effect = statement
            .get("Effect")
            .and_then(Value::as_str)
            .unwrap_or("");
        if effect != "Allow" {
            return Err(TrustPolicyError::Effect(effect.to_string()));
        }
        let actions = statement.get("Action").map(strings).unwrap_or_default();
        let mut web_identity = false;
        let mut saml = false;
        let mut assume_role = false;
        for action in &actions {
            match action.as_str() {
                "sts:AssumeRoleWithWebIdentity" => web_identity = true,
                "sts:AssumeRoleWithSAML" => saml = true,
                "sts:AssumeRole" => assume_role = true,
                "sts:TagSession" => role.allow_tag_session = true,
                "sts:SetSourceIdentity" => role.allow_set_source_identity = true,
                other => return Err(TrustPolicyError::Action(other.to_string())),
            }
        }
        let principal = statement.get("Principal").cloned().unwrap_or(Value::Null);
        let federated = principal.get("Federated").map(strings).unwrap_or_default();
        let aws = principal.get("AWS").map(strings).unwrap_or_default();
        let expected_provider = format!(":oidc-provider/{oidc_provider}");
        for provider in &federated {
            if provider.contains(":saml-provider/") {
                if !saml {
                    return Err(TrustPolicyError::NoUse(provider.clone()));
                }
                role.saml_providers.push(provider.clone());
                continue;
            }
            if !provider.ends_with(&expected_provider) {
                return Err(TrustPolicyError::Principal(provider.clone()));
            }
            if !web_identity {
                return Err(TrustPolicyError::NoUse(provider.clone()));
            }
        }
        if !aws.is_empty() {
            if !assume_role {
                return Err(TrustPolicyError::NoUse(aws.join(",")));
            }
            role.trusted_roles.extend(aws);
        }
        if federated.is_empty() && role.trusted_roles.is_empty() {
            return Err(TrustPolicyError::Principal(principal.to_string()));
        }
        let conditions = statement
            .get("Condition")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (operator, tests) in conditions {
            let Some(tests) = tests.as_object() else {
                return Err(TrustPolicyError::Condition {
                    operator,
                    key: String::new(),
                });
            };
            for (key, values) in tests {
                let values = strings(values);
                let unsupported = || TrustPolicyError::Condition {
                    operator: operator.clone(),
                    key: key.clone(),
                };
                let like = match operator.as_str() {
                    "StringEquals" => false,
                    "StringLike" => true,
                    _ => return Err(unsupported()),
                };
                let claim = key
                    .strip_prefix(oidc_provider)
                    .and_then(|k| k.strip_prefix(':'));
                // IAM compares condition keys without regard to case (`SAML:sub`, `saml:sub`).
                let saml_key = key
                    .get(..5)
                    .filter(|p| p.eq_ignore_ascii_case("saml:"))
                    .map(|_| &key[5..]);
                match saml_key {
                    Some("sub") if saml => {
                        for value in values {
                            if !like && value.contains('*')
                                || like && value.trim_end_matches('*').contains('*')
                            {
                                return Err(unsupported());
                            }
                            role.subjects.push(value);
                        }
                        continue;
                    }
                    // The emulator checks the audience of every assertion against AWS's own.
                    Some("aud")
                        if saml
                            && !like
                            && values.iter().all(|v| {
                                v == crate::saml::AWS_SAML_ENDPOINT || v == "urn:amazon:webservices"
                            }) =>
                    {
                        continue;
                    }
                    Some(_) => return Err(unsupported()),
                    None => {}
                }
                match (claim, key.as_str()) {
                    (Some("sub"), _) if web_identity => {
                        for value in values {
                            // Only a trailing `*` is a pattern the emulator knows; a literal
                            // `*` under StringEquals must match itself, which it cannot express.
                            if !like && value.contains('*')
                                || like && value.trim_end_matches('*').contains('*')
                            {
                                return Err(unsupported());
                            }
                            role.subjects.push(value);
                        }
                    }
                    (Some("aud"), _) if web_identity && !like => role.audiences.extend(values),
                    (None, "sts:ExternalId") if assume_role && !like => {
                        role.external_id = values.into_iter().next();
                    }
                    _ => return Err(unsupported()),
                }
            }
        }
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn saml_statement_becomes_provider_and_subject_rules() {
        let provider = "arn:aws:iam::111122223333:saml-provider/podcreds";
        let policy = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider},
            "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "SAML:sub": "system:serviceaccount:ns:app",
                "saml:aud": "https://signin.aws.amazon.com/saml",
            }},
        }]});
        let role = role_from_trust_policy("arn:aws:iam::111122223333:role/r", &policy, PROVIDER)
            .expect("understood");
        assert_eq!(role.saml_providers, [provider]);
        assert_eq!(role.subjects, ["system:serviceaccount:ns:app"]);
        assert!(role.allow_tag_session && !role.allow_set_source_identity);
        // Another audience, or a SAML provider without the action, is refused, not ignored.
        let mut other = policy.clone();
        other["Statement"][0]["Condition"]["StringEquals"]["saml:aud"] = json!("urn:other");
        assert!(role_from_trust_policy("arn:aws:iam::1:role/r", &other, PROVIDER).is_err());
        let mut unused = policy.clone();
        unused["Statement"][0]["Action"] = json!("sts:AssumeRoleWithWebIdentity");
        assert!(role_from_trust_policy("arn:aws:iam::1:role/r", &unused, PROVIDER).is_err());
    }

    const PROVIDER: &str = "127.0.0.1:6443";

    #[test]
    fn web_identity_statement_becomes_subject_and_audience_rules() {
        let policy = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::111122223333:oidc-provider/{PROVIDER}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{PROVIDER}:sub"): "system:serviceaccount:ns:app",
                format!("{PROVIDER}:aud"): "sts.amazonaws.com",
            }}
        }]});
        let role =
            role_from_trust_policy("arn:aws:iam::111122223333:role/r", &policy, PROVIDER).unwrap();
        assert_eq!(role.subjects, ["system:serviceaccount:ns:app"]);
        assert_eq!(role.audiences, ["sts.amazonaws.com"]);
        assert!(role.trusted_roles.is_empty());
        assert!(!role.allow_tag_session);
    }

    #[test]
    fn role_statement_becomes_trusted_roles_and_permissions() {
        let policy = json!({"Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:role/entry"},
            "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            "Condition": {"StringEquals": {"sts:ExternalId": "ext-1"}}
        }]});
        let role = role_from_trust_policy("arn:aws:iam::111122223333:role/hop", &policy, PROVIDER)
            .unwrap();
        assert_eq!(role.trusted_roles, ["arn:aws:iam::111122223333:role/entry"]);
        assert_eq!(role.external_id.as_deref(), Some("ext-1"));
        assert!(role.allow_tag_session && role.allow_set_source_identity);
        assert!(role.subjects.is_empty());
    }

    #[test]
    fn anything_not_understood_is_refused() {
        let base = |statement: Value| json!({"Statement": [statement]});
        for (policy, expected) in [
            (
                base(
                    json!({"Effect": "Deny", "Principal": {"AWS": "x"}, "Action": "sts:AssumeRole"}),
                ),
                TrustPolicyError::Effect("Deny".into()),
            ),
            (
                base(json!({"Effect": "Allow", "Principal": {"AWS": "x"}, "Action": "sts:*"})),
                TrustPolicyError::Action("sts:*".into()),
            ),
            (
                base(
                    json!({"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/elsewhere"}, "Action": "sts:AssumeRoleWithWebIdentity"}),
                ),
                TrustPolicyError::Principal("arn:aws:iam::1:oidc-provider/elsewhere".into()),
            ),
            (
                base(
                    json!({"Effect": "Allow", "Principal": {"AWS": "x"}, "Action": "sts:AssumeRole",
                    "Condition": {"StringNotEquals": {"sts:ExternalId": "e"}}}),
                ),
                TrustPolicyError::Condition {
                    operator: "StringNotEquals".into(),
                    key: "sts:ExternalId".into(),
                },
            ),
            (
                base(
                    json!({"Effect": "Allow", "Principal": {"Federated": format!("arn:aws:iam::1:oidc-provider/{PROVIDER}")},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {"other:sub": "x"}}}),
                ),
                TrustPolicyError::Condition {
                    operator: "StringEquals".into(),
                    key: "other:sub".into(),
                },
            ),
        ] {
            assert_eq!(
                role_from_trust_policy("arn:r", &policy, PROVIDER),
                Err(expected)
            );
        }
        assert_eq!(
            role_from_trust_policy("arn:r", &json!({}), PROVIDER),
            Err(TrustPolicyError::NoStatements)
        );
    }
}

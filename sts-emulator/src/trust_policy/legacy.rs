//! A [`Role`]'s legacy trust fields as the statements of a trust policy (the mapping is
//! documented on [`Role`]).

use super::{Condition, Principal, Statement, Test};
use crate::state::Role;

/// `sts:TagSession` / `sts:SetSourceIdentity` after `main`, as the role's flags allow.
fn actions<'a>(role: &Role, main: &'a str) -> Vec<&'a str> {
    let mut actions = vec![main];
    if role.allow_tag_session {
        actions.push("sts:TagSession");
    }
    if role.allow_set_source_identity {
        actions.push("sts:SetSourceIdentity");
    }
    actions
}

/// The statements `role`'s legacy fields stand for; `oidc_provider` is the ARN of the IAM OIDC
/// provider of the emulator's issuer in the role's account (`arn:<partition>:iam::<account>:
/// oidc-provider/<issuer without https://>`).
pub(crate) fn legacy_statements(role: &Role, oidc_provider: &str) -> Vec<Statement> {
    let mut statements = Vec::new();
    let provider_path = oidc_provider
        .split_once(":oidc-provider/")
        .map_or("", |(_, path)| path);
    if !role.subjects.is_empty() {
        statements.push(Statement::allow(
            Principal {
                federated: vec![oidc_provider.to_string()],
                ..Principal::default()
            },
            &actions(role, "sts:AssumeRoleWithWebIdentity"),
            vec![
                Condition::new(
                    Test::StringLike,
                    format!("{provider_path}:sub"),
                    role.subjects.clone(),
                ),
                Condition::new(
                    Test::StringEquals,
                    format!("{provider_path}:aud"),
                    role.accepted_audiences(),
                ),
            ],
        ));
        if !role.saml_providers.is_empty() {
            statements.push(Statement::allow(
                Principal {
                    federated: role.saml_providers.clone(),
                    ..Principal::default()
                },
                &actions(role, "sts:AssumeRoleWithSAML"),
                vec![Condition::new(
                    Test::StringLike,
                    "SAML:sub",
                    role.subjects.clone(),
                )],
            ));
        }
    }
    let trusted: Vec<String> = role
        .trusted_roles
        .iter()
        .chain(&role.trusted_users)
        .cloned()
        .collect();
    if !trusted.is_empty() {
        let conditions = role
            .external_id
            .iter()
            .map(|id| Condition::new(Test::StringEquals, "sts:ExternalId", vec![id.clone()]))
            .collect();
        statements.push(Statement::allow(
            Principal {
                aws: trusted,
                ..Principal::default()
            },
            &actions(role, "sts:AssumeRole"),
            conditions,
        ));
    }
    statements
}

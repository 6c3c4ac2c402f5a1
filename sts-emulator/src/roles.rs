//! Registering roles: what IAM would refuse of a role is refused, and its trust policy (its own
//! statements and those its legacy fields stand for) is settled once, at registration.

use crate::Dialect;
use crate::params::split_role_arn;
use crate::state::Role;
use crate::trust_policy::{Effect, Test, TrustPolicy, TrustPolicyError, legacy_statements};

/// IAM's default `MaxSessionDuration`.
pub const DEFAULT_MAX_SESSION_DURATION: u64 = 3600;

/// Why a role cannot be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoleError {
    #[error("{0:?} is not a valid role ARN")]
    Arn(String),
    #[error("role {arn}: MaxSessionDuration must be between 3600 and 43200 seconds, not {seconds}")]
    MaxSessionDuration { arn: String, seconds: u64 },
    #[error("role {arn}: {error}")]
    TrustPolicy {
        arn: String,
        error: TrustPolicyError,
    },
}

/// A role as registered: what was given, and the trust policy the emulator evaluates.
#[derive(Clone, Debug)]
pub struct RegisteredRole {
    pub role: Role,
    /// [`Role::trust_policy`]'s statements, then those of the legacy fields.
    pub policy: TrustPolicy,
    /// The audiences web identity tokens for this role may carry (as the client IDs of IAM's
    /// OIDC provider): those the policy's `<provider>:aud` conditions name, else
    /// `sts.amazonaws.com`.
    pub audiences: Vec<String>,
}

impl RegisteredRole {
    /// `MaxSessionDuration` in seconds.
    pub fn max_session_duration(&self) -> u64 {
        self.role
            .max_session_duration
            .unwrap_or(DEFAULT_MAX_SESSION_DURATION)
    }
}

/// The ARN of the IAM OIDC provider of `issuer` in the partition and account of `role_arn`.
pub(crate) fn oidc_provider_arn(partition: &str, account: &str, issuer: &str) -> String {
    let path = issuer
        .trim_end_matches('/')
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    format!("arn:{partition}:iam::{account}:oidc-provider/{path}")
}

/// Checks `role` as IAM would and settles its trust policy; `issuer` is the emulator's.
pub fn register(role: Role, issuer: &str, dialect: Dialect) -> Result<RegisteredRole, RoleError> {
    let (partition, account, _) =
        split_role_arn(&role.arn, dialect).ok_or_else(|| RoleError::Arn(role.arn.clone()))?;
    if let Some(seconds) = role.max_session_duration
        && !(3600..=43200).contains(&seconds)
    {
        return Err(RoleError::MaxSessionDuration {
            arn: role.arn.clone(),
            seconds,
        });
    }
    let provider = oidc_provider_arn(partition, account, issuer);
    let mut statements = role
        .trust_policy
        .as_ref()
        .map(|p| p.statements.clone())
        .unwrap_or_default();
    statements.extend(legacy_statements(&role, &provider));
    let policy = TrustPolicy { statements };
    if !policy.statements.is_empty() {
        policy.validate().map_err(|error| RoleError::TrustPolicy {
            arn: role.arn.clone(),
            error,
        })?;
    }
    let mut audiences: Vec<String> = Vec::new();
    for statement in policy
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
    {
        for c in &statement.conditions {
            let names_audience = c.key.to_ascii_lowercase().ends_with(":aud")
                && !c.key.to_ascii_lowercase().starts_with("saml:");
            let exact = matches!(c.operator.test, Test::StringEquals | Test::StringLike)
                && c.operator.set.is_none();
            if names_audience && exact {
                audiences.extend(
                    c.values
                        .iter()
                        .filter(|v| !v.contains(['*', '?']) && !audiences.contains(v))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    if audiences.is_empty() {
        audiences.push("sts.amazonaws.com".into());
    }
    Ok(RegisteredRole {
        role,
        policy,
        audiences,
    })
}

//! IAM role trust policies, statement by statement, evaluated as IAM evaluates them.
//!
//! A [`TrustPolicy`] is read from the very JSON an administrator gives IAM
//! ([`TrustPolicy::from_json`], [`role_from_trust_policy`]), or built from a [`Role`]'s legacy
//! fields when the role is registered (see [`Role`] for that mapping). Whatever the emulator does
//! not understand is refused rather than ignored, so a policy can never admit more here than the
//! document does in IAM.
//!
//! Evaluation: every action a request needs (`sts:AssumeRole*`, plus `sts:TagSession` /
//! `sts:SetSourceIdentity` when it passes or carries tags / a source identity) must be allowed by
//! at least one `Allow` statement whose action, principal and every condition match, and by no
//! such `Deny` statement (an explicit deny wins).
//!
//! Understood: `Effect` `Allow`/`Deny`; `Principal` `"*"`, `AWS` (an account, its `root`, a role,
//! an assumed-role session, a user, or `"*"`; no wildcard inside an ARN, as IAM), `Federated`
//! (OIDC and SAML provider ARNs), `Service` (the services that assume roles on a caller's
//! behalf: `rolesanywhere.amazonaws.com` for IAM Roles Anywhere); `Action` with IAM's `*`/`?`
//! wildcards among the STS actions; conditions `StringEquals`, `StringNotEquals`, `StringLike`,
//! `StringNotLike`, `ArnEquals`, `ArnLike`, `ArnNotEquals`, `ArnNotLike` (each optionally
//! `ForAllValues:` / `ForAnyValue:` and `...IfExists`) and `Null`, on the keys
//! `aws:RequestTag/<key>`, `aws:TagKeys`, `aws:PrincipalTag/<key>`, `aws:SourceArn`,
//! `aws:SourceAccount`, `sts:RoleSessionName`, `sts:SourceIdentity`, `sts:ExternalId`,
//! `<oidc-provider>:sub` / `:aud` (of a provider the policy trusts) and `SAML:sub` / `SAML:aud` /
//! `SAML:iss`. Keys compare without regard to case, values with.

mod evaluate;
mod legacy;
mod parse;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::state::Role;

#[cfg(test)]
pub(crate) use evaluate::arn_matches;
pub(crate) use evaluate::{Caller, Decision, RequestContext};
pub(crate) use legacy::legacy_statements;

/// Why a trust policy (or a role's legacy trust fields) cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustPolicyError {
    #[error("the trust policy has no Statement list")]
    NoStatements,
    #[error("unsupported policy element {0:?}")]
    Element(String),
    #[error("Effect must be Allow or Deny, found {0:?}")]
    Effect(String),
    #[error("unsupported principal {0}")]
    Principal(String),
    #[error(
        "invalid principal {0:?}: IAM allows no wildcard in a principal, only \"*\" on its own"
    )]
    WildcardPrincipal(String),
    #[error("unsupported action {0:?}")]
    Action(String),
    #[error("unsupported condition {operator} {key}")]
    Condition { operator: String, key: String },
}

/// A role's trust policy: its statements, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    pub statements: Vec<Statement>,
}

/// One statement of a trust policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal: Principal,
    /// Actions as written (`sts:AssumeRole`, `sts:TagSession`, `sts:*`...); IAM compares them
    /// without regard to case, with `*` and `?` wildcards.
    pub actions: Vec<String>,
    /// Every condition must hold (one condition holds when any of its values matches).
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// Whom a statement names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// `"Principal": "*"`: everyone.
    pub any: bool,
    /// `"AWS"`: accounts, roles, assumed-role sessions, IAM users, or `"*"`.
    pub aws: Vec<String>,
    /// `"Federated"`: IAM OIDC and SAML provider ARNs.
    pub federated: Vec<String>,
    /// `"Service"`: AWS service principals (`rolesanywhere.amazonaws.com`).
    pub service: Vec<String>,
}

/// One test of a condition block: `{operator: {key: values}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub operator: Operator,
    pub key: String,
    pub values: Vec<String>,
}

/// A condition operator: a string test, optionally over a set of values, optionally `IfExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operator {
    pub set: Option<SetOperator>,
    pub test: Test,
    pub if_exists: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOperator {
    ForAllValues,
    ForAnyValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
    /// IAM compares each of an ARN's six `:`-separated parts on its own, with `*` and `?`
    /// wildcards inside a part (`ArnEquals` and `ArnLike` are the same test).
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    /// `"true"`: the key is absent; `"false"`: it is present.
    Null,
}

impl Operator {
    /// A plain operator (no set qualifier, no `IfExists`).
    pub fn of(test: Test) -> Self {
        Self {
            set: None,
            test,
            if_exists: false,
        }
    }

    /// Reads an operator as IAM writes it (`ForAnyValue:StringLikeIfExists`); `None` if the
    /// emulator does not know it.
    pub fn parse(text: &str) -> Option<Self> {
        let (set, rest) = if let Some(rest) = text.strip_prefix("ForAllValues:") {
            (Some(SetOperator::ForAllValues), rest)
        } else if let Some(rest) = text.strip_prefix("ForAnyValue:") {
            (Some(SetOperator::ForAnyValue), rest)
        } else {
            (None, text)
        };
        let (rest, if_exists) = match rest.strip_suffix("IfExists") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let test = match rest {
            "StringEquals" => Test::StringEquals,
            "StringNotEquals" => Test::StringNotEquals,
            "StringLike" => Test::StringLike,
            "StringNotLike" => Test::StringNotLike,
            "ArnEquals" => Test::ArnEquals,
            "ArnLike" => Test::ArnLike,
            "ArnNotEquals" => Test::ArnNotEquals,
            "ArnNotLike" => Test::ArnNotLike,
            "Null" if set.is_none() && !if_exists => Test::Null,
            _ => return None,
        };
        Some(Self {
            set,
            test,
            if_exists,
        })
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.set {
            Some(SetOperator::ForAllValues) => f.write_str("ForAllValues:")?,
            Some(SetOperator::ForAnyValue) => f.write_str("ForAnyValue:")?,
            None => {}
        }
        f.write_str(match self.test {
            Test::StringEquals => "StringEquals",
            Test::StringNotEquals => "StringNotEquals",
            Test::StringLike => "StringLike",
            Test::StringNotLike => "StringNotLike",
            Test::ArnEquals => "ArnEquals",
            Test::ArnLike => "ArnLike",
            Test::ArnNotEquals => "ArnNotEquals",
            Test::ArnNotLike => "ArnNotLike",
            Test::Null => "Null",
        })?;
        if self.if_exists {
            f.write_str("IfExists")?;
        }
        Ok(())
    }
}

impl Condition {
    pub fn new(test: Test, key: impl Into<String>, values: Vec<String>) -> Self {
        Self {
            operator: Operator::of(test),
            key: key.into(),
            values,
        }
    }
}

impl Statement {
    /// An `Allow` statement.
    pub fn allow(principal: Principal, actions: &[&str], conditions: Vec<Condition>) -> Self {
        Self {
            sid: None,
            effect: Effect::Allow,
            principal,
            actions: actions.iter().map(|a| a.to_string()).collect(),
            conditions,
        }
    }
}

impl TrustPolicy {
    /// Reads an IAM trust policy document, refusing whatever the emulator does not understand.
    pub fn from_json(policy: &Value) -> Result<Self, TrustPolicyError> {
        parse::from_json(policy)
    }

    /// The policy as an IAM JSON document.
    pub fn to_json(&self) -> Value {
        parse::to_json(self)
    }

    /// Checks what IAM checks of a policy (no wildcard inside a principal ARN, known actions)
    /// and that the emulator understands every principal, action and condition.
    pub fn validate(&self) -> Result<(), TrustPolicyError> {
        parse::validate(self)
    }
}

impl Serialize for TrustPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TrustPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// The role `arn` trusting exactly what `policy` (an IAM trust policy document) says.
/// `oidc_provider` is the emulator's issuer as IAM names its provider (without `https://`):
/// a `Federated` OIDC provider other than that one is refused, since no token of the emulator
/// could ever match it.
pub fn role_from_trust_policy(
    arn: &str,
    policy: &Value,
    oidc_provider: &str,
) -> Result<Role, TrustPolicyError> {
    let policy = TrustPolicy::from_json(policy)?;
    let expected = format!(":oidc-provider/{oidc_provider}");
    for statement in &policy.statements {
        if let Some(foreign) = statement
            .principal
            .federated
            .iter()
            .find(|p| p.contains(":oidc-provider/") && !p.ends_with(&expected))
        {
            return Err(TrustPolicyError::Principal(foreign.clone()));
        }
    }
    Ok(Role {
        arn: arn.to_string(),
        trust_policy: Some(policy),
        ..Role::default()
    })
}

#[cfg(test)]
mod tests;

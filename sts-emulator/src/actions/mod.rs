//! The STS actions, one module each: the unsigned exchanges (web identity, SAML) and the calls
//! signed with SigV4 (`GetCallerIdentity`, `AssumeRole`, and the IAM user's session tokens).

pub(crate) mod assume_role;
pub(crate) mod saml;
pub(crate) mod signed;
pub(crate) mod user_sessions;
pub(crate) mod web_identity;

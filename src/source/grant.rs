//! Who may use a source, for what: the namespaces it allows (by name or by the labels the admin
//! set), the modes, roles and durations it grants.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::core::{Selector, SelectorExt};

use super::error::SourceError;
use super::keys::read_keys;
use crate::api::{AWSCredentialSource, CredentialSourceMode};
use crate::credentials::LongTermKeys;
use crate::spec::{ResolvedSource, SourceCall};

/// Whether a namespace matches an `allowedNamespaces` list: an entry is a whole name, `*` (every
/// namespace) or a prefix followed by `*`. The chart's admission policy applies the same rule
/// in CEL.
pub fn namespace_allowed(allowed: &[String], namespace: &str) -> bool {
    allowed.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => namespace.starts_with(prefix),
        None => entry == namespace,
    })
}

/// Whether a source admits namespace `namespace` with labels `labels`: by name
/// (`allowedNamespaces`) or by label (`allowedNamespaceSelector`; a selector that cannot be read
/// admits nothing).
pub fn source_admits(
    source: &AWSCredentialSource,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    namespace_allowed(&source.spec.allowed_namespaces, namespace)
        || source
            .spec
            .allowed_namespace_selector
            .clone()
            .and_then(|s| Selector::try_from(s).ok())
            .is_some_and(|s| s.matches(labels))
}

/// A namespace asking for a source's keys: its name and labels.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Checks a source and the Secret it names (pure): the keys, or why they cannot be used by a
/// binding of `requester`'s namespace (`None`: the source's own readiness, whoever asks).
pub fn check_source(
    name: &str,
    source: Option<&AWSCredentialSource>,
    secret: Option<&Secret>,
    requester: Option<Requester<'_>>,
) -> Result<LongTermKeys, SourceError> {
    let source = source.ok_or_else(|| SourceError::NotFound(name.to_string()))?;
    if let Some(Requester { namespace, labels }) = requester
        && !source_admits(source, namespace, labels)
    {
        return Err(SourceError::NotAllowed {
            name: name.to_string(),
            namespace: namespace.to_string(),
        });
    }
    let secret_name = &source.spec.secret_ref.name;
    let secret = secret.ok_or_else(|| SourceError::SecretMissing {
        name: name.to_string(),
        secret: secret_name.clone(),
    })?;
    read_keys(secret.data.as_ref()).map_err(|problem| SourceError::SecretInvalid {
        name: name.to_string(),
        secret: secret_name.clone(),
        problem,
    })
}

/// What a binding asks of its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant<'a> {
    pub mode: CredentialSourceMode,
    /// The role of an `AssumeRole`.
    pub role_arn: Option<&'a str>,
    pub duration_seconds: i32,
}

impl<'a> Grant<'a> {
    /// What the binding whose first exchange is `source` asks for sessions of `duration_seconds`.
    pub fn of(source: &'a ResolvedSource, duration_seconds: i32) -> Self {
        Self {
            mode: source.call.mode(),
            role_arn: match &source.call {
                SourceCall::AssumeRole { role_arn } => Some(role_arn),
                SourceCall::GetFederationToken { .. } | SourceCall::GetSessionToken => None,
            },
            duration_seconds,
        }
    }
}

/// Whether `source` (named `name`) grants what a binding asks (pure): the mode, the role and the
/// session length. The chart's source admission policy applies the same rules in CEL.
pub fn check_grant(
    name: &str,
    source: &AWSCredentialSource,
    grant: Grant<'_>,
) -> Result<(), SourceError> {
    let spec = &source.spec;
    if !spec.allowed_modes.contains(&grant.mode) {
        return Err(SourceError::ModeNotAllowed {
            name: name.to_string(),
            mode: grant.mode.as_str(),
            allowed: spec
                .allowed_modes
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if let Some(role) = grant.role_arn
        && !spec.allowed_role_arns.is_empty()
        && !spec
            .allowed_role_arns
            .iter()
            .filter_map(|p| crate::allowlist::Pattern::parse(p.trim()))
            .any(|p| p.matches(role))
    {
        return Err(SourceError::RoleNotAllowed {
            name: name.to_string(),
            role: role.to_string(),
        });
    }
    if grant.duration_seconds > spec.max_duration_seconds {
        return Err(SourceError::DurationNotAllowed {
            name: name.to_string(),
            asked: grant.duration_seconds,
            max: spec.max_duration_seconds,
        });
    }
    Ok(())
}

/// The entry a namespace's role allowlist must hold for its bindings to use `mode` of source
/// `name` when the mode assumes no role: nothing else would ever be checked for it, so it is
/// never "no role, so allowed".
pub fn allowlist_entry(name: &str, mode: CredentialSourceMode) -> String {
    format!("podcreds:credential-source/{name}/{}", mode.as_str())
}

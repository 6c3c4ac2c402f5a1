//! Validate step: the spec ([`crate::spec::resolve`]), the namespace's role allowlist, and what
//! a credential source grants. Reads only caches; every refusal is an [`Invalid`] with its
//! category, and waits for a change of the binding (or of what it names).

use super::BindingKey;
use super::context::Context;
use crate::allowlist;
use crate::api::AWSRoleBinding;
use crate::source::{self, Grant, Requester};
use crate::spec::{self, FirstExchange, ResolvedSpec, SourceCall, SpecError};

/// Why a binding cannot be acted on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    RoleNotAllowed(#[from] allowlist::RoleNotAllowed),
    #[error(transparent)]
    Source(#[from] source::SourceError),
}

impl Invalid {
    /// Stable, low-cardinality category (condition reason, Event reason, metric label).
    pub fn category(&self) -> &'static str {
        match self {
            Invalid::Spec(e) => e.category(),
            Invalid::RoleNotAllowed(_) => "RoleNotAllowed",
            Invalid::Source(e) => e.category(),
        }
    }
}

/// The binding's resolved spec, if everything it asks for is allowed.
pub fn validate(
    ctx: &Context,
    binding: &AWSRoleBinding,
    key: &BindingKey,
) -> Result<ResolvedSpec, Invalid> {
    let shared = &ctx.shared;
    let settings = &shared.settings;
    let mut spec = spec::resolve(
        &binding.spec,
        &key.namespace,
        &key.name,
        &settings.sts_policy,
    )?;
    let annotation = ctx.role_allowlist(&key.namespace);
    // A SAML assertion says whatever role the binding names, and a role trusting the provider
    // with only `SAML:aud` (the console's default) is open to every ServiceAccount: SAML bindings
    // need the namespace to list their roles, whatever the operator requires of others.
    let require = settings.require_role_allowlist || matches!(spec.first, FirstExchange::Saml(_));
    allowlist::check_all(
        &key.namespace,
        annotation.as_deref(),
        spec.role_arns(),
        require,
    )?;
    let duration = spec.first_exchange_seconds();
    if let FirstExchange::CredentialSource(source) = &mut spec.first {
        // The source must allow the namespace and what the binding asks, and hold usable keys;
        // which keys are in use is part of the fingerprint, so rotated keys re-issue at once.
        let labels = ctx.namespace_labels(&key.namespace);
        let requester = Requester {
            namespace: &key.namespace,
            labels: &labels,
        };
        let keys =
            shared
                .sources
                .keys_for(&source.name, Some(requester), Grant::of(source, duration))?;
        source.key_digest = Some(keys.digest());
        // A mode that assumes no role passes no role check: the namespace must grant it itself.
        if let SourceCall::GetFederationToken { .. } | SourceCall::GetSessionToken = source.call {
            let entry = source::allowlist_entry(&source.name, source.call.mode());
            allowlist::check_all(
                &key.namespace,
                annotation.as_deref(),
                [entry.as_str()],
                true,
            )?;
        }
    }
    Ok(spec)
}

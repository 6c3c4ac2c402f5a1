//! Validate step: the spec ([`crate::spec::resolve`]), the namespace's role allowlist, and what
//! a credential source grants. Reads only caches; every refusal is an [`Invalid`] with its
//! category, and waits for a change of the binding (or of what it names).

use super::BindingKey;
use super::context::Context;
use super::watches;
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

/// What validation refused, with the resolved spec when the spec itself is fine but no longer
/// allowed: the credentials already issued for it may have to be revoked.
#[derive(Debug)]
pub struct Refused {
    pub error: Invalid,
    pub spec: Option<Box<ResolvedSpec>>,
}

/// The binding's resolved spec, if everything it asks for is allowed.
pub fn validate(
    ctx: &Context,
    binding: &AWSRoleBinding,
    key: &BindingKey,
) -> Result<ResolvedSpec, Refused> {
    let refused = |error: Invalid| Refused { error, spec: None };
    if let Some(size) = watches::oversized_spec(binding) {
        return Err(refused(Invalid::Spec(SpecError::Invalid {
            field: "spec".into(),
            problem: format!(
                "it takes {size} bytes; podcreds serves bindings of at most {} bytes (every replica keeps every binding in memory)",
                watches::MAX_SPEC_BYTES
            ),
        })));
    }
    let mut spec = spec::resolve(
        &binding.spec,
        &key.namespace,
        &key.name,
        &ctx.shared.settings.sts_policy,
    )
    .map_err(|e| refused(e.into()))?;
    match allowed(ctx, key, &mut spec) {
        Ok(()) => Ok(spec),
        Err(error) => Err(Refused {
            error,
            spec: Some(Box::new(spec)),
        }),
    }
}

/// Whether the namespace may use what the resolved spec names: every role it passes through, and
/// its credential source, which must also hold usable keys (recorded in the spec).
fn allowed(ctx: &Context, key: &BindingKey, spec: &mut ResolvedSpec) -> Result<(), Invalid> {
    let shared = &ctx.shared;
    let settings = &shared.settings;
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
    Ok(())
}

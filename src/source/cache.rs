//! The read side of the source caches, as reconciliations and flows read them.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};

use super::error::SourceError;
use super::grant::{Grant, Requester, check_grant, check_source};
use crate::api::AWSCredentialSource;
use crate::credentials::LongTermKeys;

/// The caches of sources and of the Secrets in the operator's namespace, as reconciliations and
/// flows read them.
#[derive(Clone)]
pub struct Sources {
    pub operator_namespace: Option<String>,
    pub sources: Store<AWSCredentialSource>,
    pub secrets: Store<Secret>,
    /// True once both caches hold their initial lists.
    pub synced: tokio::sync::watch::Receiver<bool>,
}

impl Sources {
    /// The keys of source `name` for a binding of `requester`'s namespace that asks for `grant`,
    /// from the caches (`None`: the namespace was checked a moment ago, by the validate step).
    pub fn keys_for(
        &self,
        name: &str,
        requester: Option<Requester<'_>>,
        grant: Grant<'_>,
    ) -> Result<LongTermKeys, SourceError> {
        let (source, secret) = self.lookup(name)?;
        if let Some(source) = &source {
            self.owned(source)?;
        }
        let keys = check_source(name, source.as_deref(), secret.as_deref(), requester)?;
        if let Some(source) = &source {
            check_grant(name, source, grant)?;
        }
        Ok(keys)
    }

    /// Whether `source` is this installation's to serve: its Secret is in this operator's
    /// namespace. Another installation in the cluster serves (and reports on) the others.
    pub fn owned(&self, source: &AWSCredentialSource) -> Result<(), SourceError> {
        let operator = self
            .operator_namespace
            .as_deref()
            .ok_or(SourceError::NoOperatorNamespace)?;
        let owner = &source.spec.secret_ref.namespace;
        if owner == operator {
            Ok(())
        } else {
            Err(SourceError::OtherInstallation {
                name: source.metadata.name.clone().unwrap_or_default(),
                owner: owner.clone(),
                operator: operator.to_string(),
            })
        }
    }

    /// Source `name` and the Secret it names, if cached.
    #[allow(clippy::type_complexity)]
    pub fn lookup(
        &self,
        name: &str,
    ) -> Result<
        (
            Option<std::sync::Arc<AWSCredentialSource>>,
            Option<std::sync::Arc<Secret>>,
        ),
        SourceError,
    > {
        let operator_namespace = self
            .operator_namespace
            .as_deref()
            .ok_or(SourceError::NoOperatorNamespace)?;
        let source = self.sources.get(&ObjectRef::new(name));
        let secret = source.as_ref().and_then(|s| {
            self.secrets
                .get(&ObjectRef::new(&s.spec.secret_ref.name).within(operator_namespace))
        });
        Ok((source, secret))
    }
}

//! Observe step: what the cluster and this process's memory say about a binding's Secret.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::BindingKey;
use super::context::Context;
use crate::plan;
use crate::secret::{self, ObservedSecret};

/// The binding's Secret, as far as this process can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// What the Secret says, corrected by this process's own writes the cache has not shown.
    pub secret: ObservedSecret,
    /// The Secret's resourceVersion as read (the precondition of the next write).
    pub version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("reading Secret {name}: {source}")]
    ReadSecret { name: String, source: kube::Error },
}

impl ObserveError {
    pub fn category(&self) -> &'static str {
        match self {
            ObserveError::ReadSecret { .. } => "KubeApiError",
        }
    }
}

/// Reads the metadata of Secret `secret_name` of the binding `key`: from the cache, or from the
/// apiserver where the planner says a cache miss cannot be believed.
pub async fn observe(
    ctx: &Context,
    key: &BindingKey,
    secret_name: &str,
    reports_conflict: bool,
) -> Result<Observation, ObserveError> {
    let memory = &ctx.shared.memory;
    let cached = ctx
        .secrets
        .get(&ObjectRef::new(secret_name).within(&key.namespace));
    let meta = match cached {
        Some(cached) => Some((*cached).clone()),
        None if plan::trust_cache_miss(memory.wrote_secret(&key.uid), reports_conflict) => None,
        None => {
            let api: Api<Secret> = Api::namespaced(ctx.shared.client.clone(), &key.namespace);
            ctx.shared.throttle.kube().await;
            api.get_metadata_opt(secret_name)
                .await
                .map_err(|source| ObserveError::ReadSecret {
                    name: secret_name.to_string(),
                    source,
                })?
        }
    };
    let version = meta
        .as_ref()
        .and_then(|m| m.metadata.resource_version.clone());
    let secret = memory.observe_secret(&key.uid, secret::observe(meta.as_ref(), &key.uid));
    Ok(Observation { secret, version })
}

//! Observe step: what the cluster and this process's memory say about a binding's Secret.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::BindingKey;
use super::context::Context;
use crate::api::AWSRoleBindingStatus;
use crate::plan;
use crate::secret::{self, ObservedSecret, SecretRecord};

/// The binding's Secret, as far as this process can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// What the Secret says, judged by who wrote it (see [`plan::judge`]).
    pub secret: ObservedSecret,
    /// The Secret's resourceVersion as read (the precondition of the next write).
    pub version: Option<String>,
    /// Who last wrote it.
    pub provenance: plan::Provenance,
    /// Which operator wrote the credentials, as the Secret says (see
    /// [`crate::secret::ANNOTATION_WRITTEN_BY`]).
    pub written_by: Option<String>,
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

/// What `status` says about the credentials in the binding's Secret.
pub fn status_times(status: Option<&AWSRoleBindingStatus>) -> plan::StatusTimes {
    plan::StatusTimes {
        issued_at: status
            .and_then(|s| s.last_refresh_time.as_ref())
            .map(|t| t.0),
        expiration: status.and_then(|s| s.expiration.as_ref()).map(|t| t.0),
        renewal_time: status.and_then(|s| s.renewal_time.as_ref()).map(|t| t.0),
    }
}

/// Reads the metadata of Secret `secret_name` of the binding `key`: from the cache, or from the
/// apiserver where the planner says a cache miss cannot be believed; and judges it by who wrote
/// it. `status` is the binding's status as far as this process knows it.
pub async fn observe(
    ctx: &Context,
    key: &BindingKey,
    secret_name: &str,
    reports_conflict: bool,
    status: Option<&AWSRoleBindingStatus>,
) -> Result<Observation, ObserveError> {
    let memory = &ctx.shared.memory;
    let record = match ctx.secrets.get(&key.namespace, secret_name) {
        Some(cached) => Some(cached),
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
                .map(|m| Arc::new(SecretRecord::read(&m.metadata)))
        }
    };
    let version = record
        .as_ref()
        .and_then(|r| r.resource_version())
        .map(str::to_string);
    let observed = secret::observe(record.as_deref(), &key.uid);
    let written_by = record
        .as_ref()
        .and_then(|r| r.written_by())
        .map(str::to_string);
    let own = memory.own_secret_write(&key.uid, version.as_deref());
    let provenance = plan::provenance(version.as_deref(), &observed, own.as_ref());
    let secret = plan::judge(
        observed,
        provenance,
        own.as_ref(),
        &status_times(status),
        Timestamp::now(),
    );
    // A Secret this process never wrote, found as it should be: from now on any other version is
    // someone else's write.
    if let (
        plan::Provenance::Unknown,
        Some(v),
        ObservedSecret::Owned {
            issued,
            intact: true,
        },
    ) = (provenance, version.as_deref(), &secret)
    {
        memory.adopt_secret(&key.uid, v, issued.as_ref());
    }
    Ok(Observation {
        secret,
        version,
        provenance,
        written_by,
    })
}

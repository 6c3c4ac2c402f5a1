//! Act step: exchange the binding's identity through its credential flow, render the Secret,
//! write it.

use jiff::Timestamp;
use kube::Resource;

use super::BindingKey;
use super::context::Context;
use super::observe::Observation;
use super::secret_writer::{SecretWriteError, SecretWriter};
use crate::api::AWSRoleBinding;
use crate::broker::store::Held;
use crate::flow::{ExchangeRequest, FlowError};
use crate::plan;
use crate::retry::RetryClass;
use crate::secret::{self, IssuedMeta, Owner, Rendering};
use crate::spec::ResolvedSpec;

/// A failed refresh; becomes a condition, an Event and a metric.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error(transparent)]
    Secret(#[from] SecretWriteError),
}

impl RefreshError {
    pub fn category(&self) -> &'static str {
        match self {
            RefreshError::Flow(e) => e.category(),
            RefreshError::Secret(e) => e.category(),
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            RefreshError::Flow(e) => e.retry_class(),
            RefreshError::Secret(_) => RetryClass::Transient,
        }
    }
}

fn owner_of(key: &BindingKey) -> Owner {
    Owner {
        api_version: AWSRoleBinding::api_version(&()).into_owned(),
        kind: AWSRoleBinding::kind(&()).into_owned(),
        name: key.name.clone(),
        uid: key.uid.clone(),
    }
}

/// What a refresh wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refreshed {
    /// What the Secret now says about its credentials.
    pub issued: IssuedMeta,
    /// The Secret's UID, if this refresh created it.
    pub created_uid: Option<String>,
    /// The Secret's resourceVersion after the write.
    pub version: Option<String>,
}

/// Exchange -> render -> write.
pub async fn refresh(
    ctx: &Context,
    key: &BindingKey,
    spec: &ResolvedSpec,
    fingerprint: &str,
    observation: Option<&Observation>,
) -> Result<Refreshed, RefreshError> {
    let shared = &ctx.shared;
    let credentials = shared
        .flow
        .exchange(ExchangeRequest {
            namespace: &key.namespace,
            binding: &key.name,
            spec,
        })
        .await?;
    let issued = plan::issued(
        &key.uid,
        Timestamp::now(),
        spec.renew_before,
        fingerprint,
        &credentials,
    );
    if spec.delivery.endpoint {
        shared.endpoint.put(
            &key.uid,
            Held {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                issued: issued.clone(),
                credentials: credentials.clone(),
            },
            Timestamp::now(),
        );
    }
    // Endpoint only: nothing reaches the cluster.
    let Some(observation) = observation.filter(|_| spec.delivery.secret) else {
        return Ok(Refreshed {
            issued,
            created_uid: None,
            version: None,
        });
    };
    let rendered = secret::render(&Rendering {
        namespace: &key.namespace,
        owner: &owner_of(key),
        spec,
        fingerprint,
        credentials: &credentials,
        issued_at: issued.issued_at,
        renewal_time: issued.renewal_time,
        writer: &shared.settings.writer,
    });
    let written = SecretWriter::new(
        shared.client.clone(),
        &shared.throttle,
        &key.namespace,
        &spec.secret_name,
        &key.uid,
    )
    .write(rendered, &observation.secret, observation.version.clone())
    .await?;
    Ok(Refreshed {
        issued,
        created_uid: written.created_uid,
        version: written.version,
    })
}

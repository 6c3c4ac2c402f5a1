//! Act step: exchange the binding's identity through its credential flow, render the Secret,
//! write it.

use jiff::Timestamp;
use kube::Resource;

use super::BindingKey;
use super::context::Context;
use super::observe::Observation;
use super::secret_writer::{SecretWriteError, SecretWriter};
use super::service_account::{self, ServiceAccountError};
use crate::api::AWSRoleBinding;
use crate::api::ImagePullSecretStatus;
use crate::broker::store::Held;
use crate::credentials::IssuedCredentials;
use crate::flow::{ExchangeRequest, FlowError};
use crate::plan;
use crate::retry::RetryClass;
use crate::secret::{self, IssuedMeta, ObservedSecret, Owner, PullRendering, Rendering};
use crate::spec::{ResolvedPullSecret, ResolvedSpec};
use crate::sts::{EcrClient, EcrError, PullToken, PullTokenRequest};

/// A failed refresh; becomes a condition, an Event and a metric.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error(transparent)]
    Secret(#[from] SecretWriteError),
    /// No ECR token for the image-pull Secret: nothing was written, the credentials included.
    #[error(transparent)]
    Ecr(#[from] EcrError),
    /// The image-pull Secret could not be written.
    #[error("image-pull Secret: {0}")]
    PullSecret(SecretWriteError),
    /// The image-pull Secret could not be listed in the ServiceAccount.
    #[error(transparent)]
    ServiceAccount(#[from] ServiceAccountError),
}

impl RefreshError {
    pub fn category(&self) -> &'static str {
        match self {
            RefreshError::Flow(e) => e.category(),
            RefreshError::Secret(e) => e.category(),
            RefreshError::Ecr(e) => e.category(),
            RefreshError::PullSecret(SecretWriteError::Conflict { .. }) => "PullSecretConflict",
            RefreshError::PullSecret(_) => "PullSecretWriteFailed",
            RefreshError::ServiceAccount(e) => e.category(),
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            RefreshError::Flow(e) => e.retry_class(),
            RefreshError::Secret(_) => RetryClass::Transient,
            RefreshError::Ecr(e) => e.retry_class(),
            // Someone else's Secret under the name: wait for the binding (or the Secret) to change.
            RefreshError::PullSecret(SecretWriteError::Conflict { .. }) => RetryClass::External,
            RefreshError::PullSecret(_) => RetryClass::Transient,
            // The ServiceAccount watch brings the binding back when it appears.
            RefreshError::ServiceAccount(ServiceAccountError::NotFound(_)) => RetryClass::External,
            RefreshError::ServiceAccount(_) => RetryClass::Transient,
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
    /// The image-pull Secret written, if the binding has one.
    pub pull_secret: Option<ImagePullSecretStatus>,
}

/// An ECR token for every region the image-pull Secret's registries need, asked with the
/// binding's fresh credentials.
pub async fn pull_tokens(
    ecr: &dyn EcrClient,
    credentials: &IssuedCredentials,
    pull: &ResolvedPullSecret,
) -> Result<Vec<(String, PullToken)>, EcrError> {
    let mut tokens = Vec::new();
    for region in pull.regions() {
        let token = ecr
            .get_authorization_token(PullTokenRequest {
                credentials,
                region,
                endpoint: pull.endpoint.as_deref(),
            })
            .await?;
        tokens.push((region.to_string(), token));
    }
    Ok(tokens)
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
    // Before anything is written: without the token the refresh fails as a whole and is
    // retried, so the Secret never holds credentials newer than its image-pull Secret's plan.
    let tokens = match &spec.image_pull_secret {
        Some(pull) => Some(pull_tokens(shared.ecr.as_ref(), &credentials, pull).await?),
        None => None,
    };
    let mut issued = plan::issued(
        &key.uid,
        Timestamp::now(),
        spec.renew_before,
        fingerprint,
        &credentials,
    );
    let pull_expiration = tokens.as_deref().and_then(secret::pull_expiration);
    if let Some(expiration) = pull_expiration {
        issued = plan::with_pull_token(issued, expiration, &key.uid);
    }
    let owner = owner_of(key);
    let pull_secret = match (&spec.image_pull_secret, &tokens) {
        (Some(pull), Some(tokens)) => {
            let rendered = secret::render_pull_secret(&PullRendering {
                namespace: &key.namespace,
                owner: &owner,
                pull,
                tokens,
                issued_at: issued.issued_at,
                writer: &shared.settings.writer,
            });
            let written = SecretWriter::new(
                shared.client.clone(),
                &shared.throttle,
                &key.namespace,
                &pull.secret_name,
                &key.uid,
            )
            .write(rendered, &ObservedSecret::Missing, None)
            .await
            .map_err(RefreshError::PullSecret)?;
            if pull.add_to_service_account {
                service_account::set_pull_secret(
                    shared.client.clone(),
                    &shared.throttle,
                    &key.namespace,
                    &spec.service_account_name,
                    &pull.secret_name,
                    true,
                )
                .await?;
            }
            Some(ImagePullSecretStatus {
                secret_name: pull.secret_name.clone(),
                expiration: pull_expiration.map(crate::status::time),
                secret_uid: written.created_uid,
                added_to_service_account: pull.add_to_service_account,
            })
        }
        _ => None,
    };
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
            pull_secret,
        });
    };
    let rendered = secret::render(&Rendering {
        namespace: &key.namespace,
        owner: &owner,
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
        pull_secret,
    })
}

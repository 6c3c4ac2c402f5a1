//! Act step, Secret side: writes a rendered Secret without ever taking over one that is not the
//! binding's, and deletes the Secrets a binding left behind under an earlier `secretName`.
//!
//! A missing Secret is created, never applied: an apply would silently take over a Secret
//! someone else created since the cache was read. An existing one is applied with the observed
//! `resourceVersion` as a precondition, so a Secret that changed hands is not overwritten. A
//! conflict (409) means the cache lagged or the name is someone else's: the Secret's metadata is
//! read once from the apiserver to tell which.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tracing::{info, warn};

use crate::secret::{self, FIELD_MANAGER, ObservedSecret};
use crate::status::REASON_CONFLICT;
use crate::text;
use crate::throttle::Throttle;

#[derive(Debug, thiserror::Error)]
pub enum SecretWriteError {
    #[error("writing Secret {name}: {reason}")]
    Write { name: String, reason: String },
    #[error(
        "Secret {name} already exists and is not managed by this binding; it is left untouched"
    )]
    Conflict { name: String, owner: Option<String> },
}

impl SecretWriteError {
    pub fn category(&self) -> &'static str {
        match self {
            SecretWriteError::Write { .. } => "SecretWriteFailed",
            SecretWriteError::Conflict { .. } => REASON_CONFLICT,
        }
    }
}

/// Writes one binding's Secret.
pub struct SecretWriter<'a> {
    api: Api<Secret>,
    throttle: &'a Throttle,
    /// The Secret's name.
    name: &'a str,
    /// The binding's UID (the Secret's controller owner).
    uid: &'a str,
}

/// What a successful write left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// The UID of the Secret, if this write created it.
    pub created_uid: Option<String>,
    /// The Secret's resourceVersion after the write: how this process recognises its own write.
    pub version: Option<String>,
}

/// What to do after one write attempt.
enum Next {
    Done(Written),
    /// Apply over this resourceVersion.
    ApplyOver(Option<String>),
}

impl<'a> SecretWriter<'a> {
    pub fn new(
        client: kube::Client,
        throttle: &'a Throttle,
        namespace: &str,
        name: &'a str,
        uid: &'a str,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            throttle,
            name,
            uid,
        }
    }

    fn failed(&self, e: &kube::Error) -> SecretWriteError {
        SecretWriteError::Write {
            name: self.name.to_string(),
            reason: text::remote(&e.to_string()),
        }
    }

    /// Writes `secret` over what was observed (`version`: the resourceVersion seen in the cache).
    pub async fn write(
        &self,
        mut secret: Secret,
        observed: &ObservedSecret,
        version: Option<String>,
    ) -> Result<Written, SecretWriteError> {
        let mut next = match observed {
            ObservedSecret::Missing => self.create(&secret).await?,
            _ => Next::ApplyOver(version),
        };
        let mut attempt = 0;
        loop {
            let resource_version = match next {
                Next::Done(written) => return Ok(written),
                Next::ApplyOver(version) => version,
            };
            attempt += 1;
            secret.metadata.resource_version = resource_version;
            self.throttle.kube().await;
            next = match self
                .api
                .patch(
                    self.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await
            {
                Ok(applied) => Next::Done(Written {
                    created_uid: None,
                    version: applied.metadata.resource_version,
                }),
                // The cache can lag behind (a broken watch, our own last write): look again,
                // and go on only if the Secret is still this binding's.
                Err(kube::Error::Api(s)) if s.code == 409 && attempt == 1 => {
                    Next::ApplyOver(self.owned_version().await?)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(SecretWriteError::Write {
                        name: self.name.to_string(),
                        reason: "the Secret changed while it was being refreshed; retrying".into(),
                    });
                }
                Err(e) => return Err(self.failed(&e)),
            };
        }
    }

    async fn create(&self, secret: &Secret) -> Result<Next, SecretWriteError> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        self.throttle.kube().await;
        match self.api.create(&params, secret).await {
            Ok(created) => Ok(Next::Done(Written {
                created_uid: created.metadata.uid,
                version: created.metadata.resource_version,
            })),
            // The name is taken: by this binding (the cache lags behind, or someone removed our
            // label) or by someone else, whose Secret stays untouched.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Ok(Next::ApplyOver(self.owned_version().await?))
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// The current resourceVersion of the Secret, read from the apiserver, if this binding
    /// controls it; otherwise the name is someone else's.
    async fn owned_version(&self) -> Result<Option<String>, SecretWriteError> {
        self.throttle.kube().await;
        let fresh = self
            .api
            .get_metadata_opt(self.name)
            .await
            .map_err(|e| self.failed(&e))?;
        let fresh = fresh.map(|m| secret::SecretRecord::read(&m.metadata));
        match secret::observe(fresh.as_ref(), self.uid) {
            ObservedSecret::Owned { .. } => Ok(fresh
                .as_ref()
                .and_then(|r| r.resource_version())
                .map(str::to_string)),
            ObservedSecret::Foreign { owner } => Err(SecretWriteError::Conflict {
                name: self.name.to_string(),
                owner,
            }),
            ObservedSecret::Missing => Err(SecretWriteError::Write {
                name: self.name.to_string(),
                reason: "the Secret was deleted while it was being refreshed; retrying".into(),
            }),
        }
    }
}

/// Deletes Secret `name` of `namespace` if it is still exactly the one binding `binding_uid`
/// created (UID `recorded_uid`), as read from the apiserver first: labelled by podcreds,
/// controlled by this binding and of that UID ([`secret::deletable_as_left_behind`]). The
/// status the name and UID come from is not trusted on its own. The delete is conditional on the
/// UID and version read, so a Secret that changed since is left alone. A failure is logged: the
/// Secret stays, and is garbage collected with the binding.
pub async fn delete_left_behind(
    client: kube::Client,
    throttle: &Throttle,
    namespace: &str,
    name: &str,
    recorded_uid: &str,
    binding_uid: &str,
) {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    throttle.kube().await;
    let meta = match api.get_metadata_opt(name).await {
        Ok(Some(meta)) => meta.metadata,
        Ok(None) => return,
        Err(e) => {
            warn!(secret = %name, error = %e, "could not read the Secret left behind by a secretName change");
            return;
        }
    };
    if let Err(kept) = secret::deletable_as_left_behind(&meta, binding_uid, recorded_uid) {
        warn!(
            secret = %name,
            reason = kept.as_str(),
            "the binding's status names a Secret this binding did not create; it is left alone"
        );
        return;
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    throttle.kube().await;
    match api.delete(name, &params).await {
        Ok(_) => info!(secret = %name, "deleted Secret left behind by a secretName change"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => warn!(secret = %name, error = %e, "could not delete stale Secret"),
    }
}

/// Removes the credentials from Secret `name` of `namespace` (a binding no longer allowed them),
/// keeping the Secret: a merge patch at the version observed (`version`), so a Secret that changed
/// since is left for the next reconciliation.
pub async fn remove_credentials(
    client: kube::Client,
    throttle: &Throttle,
    namespace: &str,
    name: &str,
    version: Option<&str>,
) -> Result<Written, SecretWriteError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    throttle.kube().await;
    match api
        .patch(
            name,
            &params,
            &Patch::Merge(secret::revocation_patch(version)),
        )
        .await
    {
        Ok(patched) => Ok(Written {
            created_uid: None,
            version: patched.metadata.resource_version,
        }),
        Err(e) => Err(SecretWriteError::Write {
            name: name.to_string(),
            reason: text::remote(&e.to_string()),
        }),
    }
}

//! The reconciler, as a pipeline of named steps:
//!
//! 1. **validate** ([`crate::spec`], [`crate::allowlist`], pure): the spec, the admin's policy and
//!    the namespace's role allowlist;
//! 2. **observe** ([`observe`]): the binding's Secret from the cache (or the apiserver where a
//!    cache miss cannot be believed), corrected by this process's [`memory`];
//! 3. **decide** ([`crate::plan`], pure): refresh, wait or report a conflict;
//! 4. **act** ([`refresh`] through the binding's [`crate::flow`], [`secret_writer`]);
//! 5. **report** ([`report`]): metrics, log, Event, status and the requeue, in one place.
//!
//! [`watches`] wires the steps into kube-runtime; [`events`] publishes Events off the critical
//! path.

pub mod conflicts;
pub mod consumers;
pub mod context;
pub mod events;
pub mod fairness;
pub mod memory;
pub mod observe;
pub mod pods;
pub mod quota;
pub mod records;
pub mod refresh;
pub mod report;
pub mod revoke;
pub mod secret_writer;
pub mod service_account;
pub mod sources;
pub mod validate;
pub mod watches;

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{Instrument, info_span, warn};

pub use context::{Context, Parts, Shared, source_caches};
pub use watches::{BindingStores, run};

use crate::api::AWSRoleBinding;
use crate::plan::{self, Decision};
use crate::status::{REASON_CONFLICT, known_status};
use observe::ObserveError;
use refresh::RefreshError;
use report::{Reconciled, ReportError, ready_reason};
use secret_writer::SecretWriteError;

/// Errors that escape a reconciliation (apiserver trouble); everything else becomes status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding has no {0}")]
    MissingMetadata(&'static str),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Revoke(#[from] revoke::RevokeError),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::MissingMetadata(_) => "InvalidObject",
            Error::Observe(e) => e.category(),
            Error::Report(e) => e.category(),
            Error::Revoke(e) => e.category(),
        }
    }
}

/// Who a binding is, read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl BindingKey {
    pub fn of(binding: &AWSRoleBinding) -> Result<Self, Error> {
        Ok(Self {
            namespace: binding
                .namespace()
                .ok_or(Error::MissingMetadata("namespace"))?,
            name: binding.name_any(),
            uid: binding.uid().ok_or(Error::MissingMetadata("uid"))?,
        })
    }
}

/// One reconciliation of one binding.
pub async fn reconcile(binding: Arc<AWSRoleBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = BindingKey::of(&binding)?;
    if !ctx.shared.is_leader() {
        // A standby keeps its caches warm; becoming leader reconciles everything.
        return Ok(Action::await_change());
    }
    // Deciding from caches that are still filling would take every Secret for missing and
    // every namespace for one without an allowlist.
    if !ctx.caches_synced().await {
        return Ok(Action::await_change());
    }
    if plan::going_away(
        binding.metadata.deletion_timestamp.is_some(),
        ctx.namespace_terminating(&key.namespace),
    ) {
        ctx.shared.endpoint.remove(&key.uid);
        ctx.shared
            .metrics
            .reconciled(report::ReconcileResult::GoingAway.as_str());
        return Ok(Action::await_change());
    }
    let span = info_span!("reconcile", namespace = %key.namespace, binding = %key.name);
    let started = Instant::now();
    let (result, action) = pipeline(&binding, &key, &ctx).instrument(span).await?;
    ctx.shared
        .metrics
        .observe_reconcile(result.as_str(), started.elapsed());
    Ok(action)
}

/// validate -> observe -> decide -> act -> report.
async fn pipeline(
    binding: &AWSRoleBinding,
    key: &BindingKey,
    ctx: &Context,
) -> Result<(report::ReconcileResult, Action), Error> {
    let shared = &ctx.shared;
    let requested = report::pending_refresh_request(ctx, binding, key);
    let requested = requested.as_deref();
    let status = {
        let version = binding.metadata.resource_version.as_deref();
        let last_write = shared.memory.status_write(&key.uid, version);
        known_status(version, binding.status.as_ref(), last_write.as_ref()).cloned()
    };
    let spec = match validate::validate(ctx, binding, key) {
        Ok(spec) => spec,
        Err(validate::Refused { error, spec }) => {
            let reconciled = match spec {
                // No longer allowed at all: the credentials already issued go too.
                Some(spec) if plan::revokes(error.category()) => {
                    // The endpoint stops serving at once (the broker also refuses a binding
                    // that is not Ready); the grace period is for the Secret's readers.
                    shared.endpoint.remove(&key.uid);
                    let revoked = revoke::revoke(
                        ctx,
                        key,
                        &spec.secret_name,
                        error.category(),
                        status.as_ref(),
                    )
                    .await?;
                    // The image-pull Secret's token is revoked with the credentials: once the
                    // grace period is over, the Secret goes (and its ServiceAccount entry).
                    if !matches!(revoked, revoke::Revoked::Scheduled(_)) {
                        remove_pull_secret_left_behind(
                            ctx,
                            binding,
                            key,
                            &spec.service_account_name,
                            None,
                        )
                        .await;
                    }
                    Reconciled::NotAllowed {
                        error,
                        secret_name: spec.secret_name,
                        revoked,
                    }
                }
                _ => Reconciled::Invalid(error),
            };
            let result = reconciled.result();
            let consumers = consumers::step(ctx, binding, key, &reconciled).await;
            return Ok((
                result,
                report::report(ctx, binding, key, reconciled, requested, consumers).await?,
            ));
        }
    };
    let fingerprint = spec.fingerprint();
    let reports_conflict = ready_reason(binding) == Some(REASON_CONFLICT);
    // An Endpoint-only binding has no Secret to observe: its credentials live in memory.
    let observation = match spec.delivery.secret {
        true => Some(
            observe::observe(
                ctx,
                key,
                &spec.secret_name,
                reports_conflict,
                status.as_ref(),
            )
            .await?,
        ),
        false => None,
    };
    let foreign = observation
        .as_ref()
        .is_some_and(|o| o.provenance == plan::Provenance::Foreign);
    if let Some(observation) = &observation
        && let Some(other) = plan::overlapping_writer(
            observation.provenance,
            observation.written_by.as_deref(),
            &shared.settings.writer,
        )
    {
        report::report_overlap(ctx, binding, key, other);
    }
    let held = spec
        .delivery
        .endpoint
        .then(|| shared.endpoint.observe(&key.uid));
    let now = Timestamp::now();
    let decision = plan::honour_refresh_request(
        plan::plan_deliveries(
            &fingerprint,
            observation.as_ref().map(|o| &o.secret),
            held.as_ref(),
            now,
        ),
        requested.is_some(),
    );
    let decision = match (&decision, &spec.image_pull_secret) {
        (Decision::Wait(_), Some(pull)) => {
            let missing = pull_secret_missing(ctx, key, &pull.secret_name).await?;
            plan::needs_pull_secret(decision, missing)
        }
        _ => decision,
    };

    let reconciled = match decision {
        Decision::Conflict { owner } => Reconciled::Conflict { spec: &spec, owner },
        Decision::Wait(issued) => Reconciled::Fresh {
            spec: &spec,
            issued,
        },
        // A request skips the wait after a failure (the admin may just have fixed IAM), but
        // not the least interval between two forced exchanges.
        Decision::Refresh { .. }
            if let Some(wait) = match requested {
                Some(_) => {
                    plan::refresh_request_wait(shared.memory.last_forced_refresh(&key.uid), now)
                }
                None => plan::backing_off(shared.memory.held(&key.uid).as_ref(), &fingerprint, now)
                    // Someone keeps writing the Secret: repairs slow down.
                    .or_else(|| {
                        foreign
                            .then(|| {
                                plan::repair_wait(shared.memory.repairs(&key.uid).as_ref(), now)
                            })
                            .flatten()
                    }),
            } =>
        {
            Reconciled::BackingOff(wait)
        }
        Decision::Refresh {
            reason,
            still_valid,
        } => match ctx
            .shares
            .enter(&key.namespace, ObjectRef::from_obj(binding))
        {
            // Its namespace has its share of exchanges in flight: woken when a slot frees.
            None => Reconciled::Parked,
            Some(_slot) => {
                if requested.is_some() {
                    shared.memory.remember_forced_refresh(&key.uid, now);
                }
                match refresh::refresh(ctx, key, &spec, &fingerprint, observation.as_ref()).await {
                    Ok(refreshed) => {
                        if foreign {
                            shared.memory.count_repair(&key.uid, now);
                        }
                        Reconciled::Refreshed {
                            spec: &spec,
                            reason,
                            issued: refreshed.issued,
                            created_uid: refreshed.created_uid,
                            version: refreshed.version,
                            pull_secret: refreshed.pull_secret,
                        }
                    }
                    // The cache did not show the Secret, but the name was taken.
                    Err(RefreshError::Secret(SecretWriteError::Conflict { owner, .. })) => {
                        Reconciled::Conflict { spec: &spec, owner }
                    }
                    Err(error) => Reconciled::Failed {
                        spec: &spec,
                        error,
                        still_valid,
                    },
                }
            }
        },
    };
    let result = reconciled.result();
    let renamed = matches!(
        reconciled,
        Reconciled::Fresh { .. } | Reconciled::Refreshed { .. }
    );
    let consumers = consumers::step(ctx, binding, key, &reconciled).await;
    let action = report::report(ctx, binding, key, reconciled, requested, consumers).await?;
    if renamed {
        // An Endpoint-only binding keeps no Secret: one it had before goes.
        let current = spec.delivery.secret.then_some(spec.secret_name.as_str());
        remove_secrets_left_by_a_rename(ctx, binding, key, current).await;
        let pull = spec.image_pull_secret.as_ref();
        remove_pull_secret_left_behind(ctx, binding, key, &spec.service_account_name, pull).await;
    }
    if !spec.delivery.endpoint {
        shared.endpoint.remove(&key.uid);
    }
    Ok((result, action))
}

/// Deletes the Secret podcreds created under an earlier `secretName` (or before the binding
/// became Endpoint-only, `current` None). The status only says
/// where to look: the Secret must be labelled by podcreds, controlled by this binding and of
/// the UID recorded, as read from the apiserver (see [`secret_writer::delete_left_behind`]).
async fn remove_secrets_left_by_a_rename(
    ctx: &Context,
    binding: &AWSRoleBinding,
    key: &BindingKey,
    current: Option<&str>,
) {
    let Some(status) = binding.status.as_ref() else {
        return;
    };
    if let (Some(previous), Some(uid)) = (&status.secret_name, &status.secret_uid)
        && Some(previous.as_str()) != current
    {
        secret_writer::delete_left_behind(
            ctx.shared.client.clone(),
            &ctx.shared.throttle,
            &key.namespace,
            previous,
            uid,
            &key.uid,
        )
        .await;
    }
}

/// Whether Secret `name` is this binding's image-pull Secret, as the apiserver shows it now:
/// labelled by podcreds, controlled by the binding, of the UID the status recorded. The status
/// alone never has podcreds take an entry out of a ServiceAccount: a forged one could name the
/// user's own pull Secret.
async fn pull_secret_is_ours(
    ctx: &Context,
    key: &BindingKey,
    name: &str,
    recorded_uid: Option<&str>,
) -> bool {
    let Some(recorded_uid) = recorded_uid else {
        return false;
    };
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(ctx.shared.client.clone(), &key.namespace);
    ctx.shared.throttle.kube().await;
    match api.get_metadata_opt(name).await {
        Ok(Some(meta)) => {
            crate::secret::deletable_as_left_behind(&meta.metadata, &key.uid, recorded_uid).is_ok()
        }
        _ => false,
    }
}

/// Whether the binding's image-pull Secret `name` is gone. The cache is believed when it holds
/// the Secret; a miss (rare: the Secret was deleted, or the cache lags behind its creation) is
/// confirmed by the apiserver.
async fn pull_secret_missing(ctx: &Context, key: &BindingKey, name: &str) -> Result<bool, Error> {
    if ctx.secrets.get(&key.namespace, name).is_some() {
        return Ok(false);
    }
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(ctx.shared.client.clone(), &key.namespace);
    ctx.shared.throttle.kube().await;
    let found =
        api.get_metadata_opt(name)
            .await
            .map_err(|source| observe::ObserveError::ReadSecret {
                name: name.to_string(),
                source,
            })?;
    Ok(found.is_none_or(|m| m.metadata.deletion_timestamp.is_some()))
}

/// Undoes what the status says podcreds did for an image-pull Secret the spec no longer asks
/// for (`current`): its entry in the ServiceAccount's `imagePullSecrets` goes (only that entry),
/// and the Secret podcreds created is deleted once `imagePullSecret` is gone or names another
/// Secret, under the same checks as a renamed Secret.
async fn remove_pull_secret_left_behind(
    ctx: &Context,
    binding: &AWSRoleBinding,
    key: &BindingKey,
    service_account: &str,
    current: Option<&crate::spec::ResolvedPullSecret>,
) {
    let Some(pull) = binding
        .status
        .as_ref()
        .and_then(|s| s.image_pull_secret.as_ref())
    else {
        return;
    };
    let still_listed =
        current.is_some_and(|c| c.add_to_service_account && c.secret_name == pull.secret_name);
    if pull.added_to_service_account
        && !still_listed
        && pull_secret_is_ours(ctx, key, &pull.secret_name, pull.secret_uid.as_deref()).await
        && let Err(e) = service_account::set_pull_secret(
            ctx.shared.client.clone(),
            &ctx.shared.throttle,
            &key.namespace,
            service_account,
            &pull.secret_name,
            false,
        )
        .await
    {
        warn!(
            service_account = %service_account,
            secret = %pull.secret_name,
            category = e.category(),
            error = %e,
            "could not take the image-pull Secret out of the ServiceAccount"
        );
    }
    let current = current.map(|c| c.secret_name.as_str());
    if let Some(uid) = &pull.secret_uid
        && Some(pull.secret_name.as_str()) != current
    {
        secret_writer::delete_left_behind(
            ctx.shared.client.clone(),
            &ctx.shared.throttle,
            &key.namespace,
            &pull.secret_name,
            uid,
            &key.uid,
        )
        .await;
    }
}

/// Errors that escaped `reconcile` (apiserver trouble): retry soon, with jitter.
pub fn error_policy(binding: Arc<AWSRoleBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = binding.uid().unwrap_or_default();
    let attempt = ctx.shared.memory.record_failure(&uid);
    ctx.shared.metrics.failed(error.category());
    warn!(binding = %binding.name_any(), error = %error, attempt, "reconciliation failed");
    Action::requeue(plan::retry_after_api_error(attempt, &uid))
}

#[cfg(test)]
mod tests;

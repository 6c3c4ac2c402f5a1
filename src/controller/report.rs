//! Report step: the single place that turns what a reconciliation found into metrics, a log
//! line, an Event, a status write and the requeue. What to say is decided by pure functions
//! (unit-tested below); the rest only executes.

use std::time::Duration;

use jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info, warn};

use super::BindingKey;
use super::consumers::{ConsumersOutcome, ConsumersUpdate};
use super::context::Context;
use super::events::Announcement;
use super::refresh::RefreshError;
use super::revoke::Revoked;
use super::validate::Invalid;
use crate::api::{AWSRoleBinding, REFRESH_REQUEST_ANNOTATION};
use crate::plan::{self, RefreshReason};
use crate::secret::{FIELD_MANAGER, IssuedMeta};
use crate::spec::ResolvedSpec;
use crate::status::{
    self, Holder, Outcome, PullReport, REASON_CONFLICT, RevocationReport, build_status,
    known_status,
};

/// Event reason when the credentials of a binding no longer allowed them are removed.
pub const REASON_REVOKED: &str = "CredentialsRevoked";
use crate::time::rfc3339;

/// What one reconciliation found or did.
#[derive(Debug)]
pub enum Reconciled<'a> {
    /// The spec cannot be acted on.
    Invalid(Invalid),
    /// The binding is no longer allowed credentials (see [`plan::revokes`]), and what became of
    /// those in its Secret `secret_name`.
    NotAllowed {
        error: Invalid,
        secret_name: String,
        revoked: Revoked,
    },
    /// The Secret holds fresh credentials for this spec.
    Fresh {
        spec: &'a ResolvedSpec,
        issued: IssuedMeta,
    },
    /// New credentials were issued and written.
    Refreshed {
        spec: &'a ResolvedSpec,
        reason: RefreshReason,
        issued: IssuedMeta,
        /// The Secret's UID, if this refresh created it.
        created_uid: Option<String>,
        /// The Secret's resourceVersion after the write.
        version: Option<String>,
        /// The image-pull Secret written, if the binding has one.
        pull_secret: Option<crate::api::ImagePullSecretStatus>,
    },
    /// The Secret name belongs to something this binding does not control.
    Conflict {
        spec: &'a ResolvedSpec,
        owner: Option<String>,
    },
    /// A refresh is due, but the binding's namespace has its share of exchanges in flight: the
    /// binding waits for a slot (see [`super::fairness`]).
    Parked,
    /// The last refresh failed and its retry time has not come (see [`plan::backing_off`]):
    /// nothing to do or say until then.
    BackingOff(Duration),
    /// A refresh failed; `still_valid` holds the Secret's credentials while they are good.
    Failed {
        spec: &'a ResolvedSpec,
        error: RefreshError,
        still_valid: Option<IssuedMeta>,
    },
}

/// The result of a reconciliation, as a metric label and a span field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    Invalid,
    Fresh,
    Refreshed,
    Conflict,
    Parked,
    BackingOff,
    Failed,
    /// The binding or its namespace is being deleted: nothing done.
    GoingAway,
}

impl ReconcileResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Invalid => "invalid",
            ReconcileResult::Fresh => "fresh",
            ReconcileResult::Refreshed => "refreshed",
            ReconcileResult::Conflict => "conflict",
            ReconcileResult::Parked => "parked",
            ReconcileResult::BackingOff => "backing_off",
            ReconcileResult::GoingAway => "going_away",
            ReconcileResult::Failed => "failed",
        }
    }
}

impl Reconciled<'_> {
    pub fn result(&self) -> ReconcileResult {
        match self {
            Reconciled::Invalid(_) | Reconciled::NotAllowed { .. } => ReconcileResult::Invalid,
            Reconciled::Fresh { .. } => ReconcileResult::Fresh,
            Reconciled::Refreshed { .. } => ReconcileResult::Refreshed,
            Reconciled::Conflict { .. } => ReconcileResult::Conflict,
            Reconciled::Parked => ReconcileResult::Parked,
            Reconciled::BackingOff(_) => ReconcileResult::BackingOff,
            Reconciled::Failed { .. } => ReconcileResult::Failed,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing status: {0}")]
    WriteStatus(#[source] kube::Error),
}

impl ReportError {
    pub fn category(&self) -> &'static str {
        match self {
            ReportError::WriteStatus(_) => "KubeApiError",
        }
    }
}

fn conflict_message(spec: &ResolvedSpec, owner: Option<&str>) -> String {
    format!(
        "Secret {} already exists and is not managed by this binding (controller: {}); it is left untouched",
        spec.secret_name,
        owner.unwrap_or("none"),
    )
}

/// Where `spec` keeps its credentials.
fn holder(spec: &ResolvedSpec) -> Holder<'_> {
    Holder {
        secret: spec.delivery.secret.then_some(spec.secret_name.as_str()),
        endpoint: spec.delivery.endpoint,
    }
}

/// What `reconciled` says about the image-pull Secret.
fn pull_report<'a>(reconciled: &'a Reconciled<'a>) -> PullReport<'a> {
    match reconciled {
        Reconciled::Fresh { spec, .. } if spec.image_pull_secret.is_none() => PullReport::Clear,
        // Revoked with the credentials (see `pipeline`).
        Reconciled::NotAllowed { revoked, .. } if !matches!(revoked, Revoked::Scheduled(_)) => {
            PullReport::Clear
        }
        Reconciled::Refreshed { pull_secret, .. } => match pull_secret {
            Some(written) => PullReport::Written(written),
            None => PullReport::Clear,
        },
        _ => PullReport::Keep,
    }
}

/// The status outcome of `reconciled`; `None` when there is nothing new to say.
fn outcome<'a>(reconciled: &'a Reconciled<'a>) -> Option<Outcome<'a>> {
    Some(match reconciled {
        Reconciled::Parked | Reconciled::BackingOff(_) => return None,
        Reconciled::Invalid(e) => Outcome::Blocked {
            category: e.category(),
            message: e.to_string(),
        },
        Reconciled::NotAllowed {
            error,
            secret_name,
            revoked,
        } => Outcome::NotAllowed {
            category: error.category(),
            message: error.to_string(),
            revocation: match revoked {
                Revoked::Nothing => RevocationReport::Nothing,
                Revoked::Scheduled(at) => RevocationReport::Scheduled {
                    at: *at,
                    secret_name,
                },
                Revoked::Done => RevocationReport::Revoked { secret_name },
            },
        },
        Reconciled::Fresh { spec, issued } => Outcome::Valid {
            issued,
            holder: holder(spec),
            created_uid: None,
            just_issued: false,
        },
        Reconciled::Refreshed {
            spec,
            issued,
            created_uid,
            ..
        } => Outcome::Valid {
            issued,
            holder: holder(spec),
            created_uid: created_uid.as_deref(),
            just_issued: true,
        },
        Reconciled::Conflict { spec, owner } => Outcome::Blocked {
            category: REASON_CONFLICT,
            message: conflict_message(spec, owner.as_deref()),
        },
        Reconciled::Failed {
            spec,
            error,
            still_valid,
        } => Outcome::RefreshFailed {
            category: error.category(),
            message: error.to_string(),
            still_valid: still_valid.as_ref(),
            holder: holder(spec),
        },
    })
}

/// The Event `reconciled` deserves, if any, given the binding's current Ready reason. Blocked
/// bindings speak once per reason; refreshes and failures always.
pub fn announcement(reconciled: &Reconciled<'_>, previous: Previous<'_>) -> Option<Announcement> {
    let previous_ready_reason = previous.ready_reason;
    let blocked = |category: &'static str, action: &'static str, note: String| {
        plan::announce_blocked(previous_ready_reason, category).then_some(Announcement {
            warning: true,
            reason: category,
            action,
            note,
        })
    };
    match reconciled {
        Reconciled::Invalid(e) => blocked(e.category(), "Validate", e.to_string()),
        // The removal says why; otherwise the binding speaks once per reason.
        Reconciled::NotAllowed {
            error,
            secret_name,
            revoked: Revoked::Done,
        } => Some(Announcement {
            warning: true,
            reason: REASON_REVOKED,
            action: "Revoke",
            note: format!("Removed the credentials from Secret {secret_name}: {error}"),
        }),
        Reconciled::NotAllowed { error, .. } => {
            blocked(error.category(), "Validate", error.to_string())
        }
        Reconciled::Conflict { spec, owner } => blocked(
            REASON_CONFLICT,
            "Refresh",
            conflict_message(spec, owner.as_deref()),
        ),
        Reconciled::Fresh { .. } | Reconciled::Parked | Reconciled::BackingOff(_) => None,
        // A routine issue or renewal is in the status and the metrics; a person needs to hear of
        // it only when it ends a failure or a block.
        Reconciled::Refreshed {
            spec,
            reason,
            issued,
            ..
        } => previous.was_failing().then(|| Announcement {
            warning: false,
            reason: REASON_RECOVERED,
            action: "Refresh",
            note: format!(
                "Wrote credentials for {} to Secret {}, valid until {} ({}; until now: {})",
                spec.identity(),
                spec.secret_name,
                rfc3339(issued.expiration),
                reason.as_str(),
                previous.failure().unwrap_or_default()
            ),
        }),
        Reconciled::Failed { error, .. } => Some(Announcement {
            warning: true,
            reason: "RefreshFailed",
            action: "Refresh",
            note: format!("{}: {error}", error.category()),
        }),
    }
}

/// When to come back after `reconciled`; `None` waits for a change. `attempt` numbers a failure.
pub fn requeue(
    reconciled: &Reconciled<'_>,
    attempt: u32,
    uid: &str,
    now: Timestamp,
) -> Option<Duration> {
    match reconciled {
        Reconciled::Invalid(_) => None,
        Reconciled::NotAllowed {
            revoked: Revoked::Scheduled(at),
            ..
        } => Some(plan::requeue_at(*at, now)),
        Reconciled::NotAllowed { .. } => None,
        Reconciled::Fresh { issued, .. } | Reconciled::Refreshed { issued, .. } => {
            Some(plan::requeue_at(issued.renewal_time, now))
        }
        Reconciled::Conflict { .. } => Some(plan::CONFLICT_RECHECK),
        // Woken when a slot frees, or by the shares' pump should that wake-up be lost: a timer
        // per parked binding would fire for thousands at once.
        Reconciled::Parked => None,
        Reconciled::BackingOff(wait) => Some(*wait),
        Reconciled::Failed {
            error, still_valid, ..
        } => {
            plan::retry_after_failure(error.retry_class(), attempt, still_valid.as_ref(), uid, now)
        }
    }
}

/// The refresh request (`podcreds.dev/refresh-requested-at`) the binding carries and this
/// process has not acted on yet, judged against the status as far as this process knows it.
pub fn pending_refresh_request(
    ctx: &Context,
    binding: &AWSRoleBinding,
    key: &BindingKey,
) -> Option<String> {
    let annotation = binding
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REFRESH_REQUEST_ANNOTATION))?;
    let version = binding.metadata.resource_version.as_deref();
    let last_write = ctx.shared.memory.status_write(&key.uid, version);
    let handled = known_status(version, binding.status.as_ref(), last_write.as_ref())
        .and_then(|s| s.last_handled_refresh_request.as_deref());
    plan::pending_refresh_request(Some(annotation), handled).map(str::to_string)
}

/// Records, logs, announces and writes the status of `reconciled`; returns the requeue.
/// `handled_request` is the refresh request this reconciliation acted on, if any: the status
/// records it with the outcome.
pub async fn report(
    ctx: &Context,
    binding: &AWSRoleBinding,
    key: &BindingKey,
    reconciled: Reconciled<'_>,
    handled_request: Option<&str>,
    consumers: ConsumersOutcome,
) -> Result<Action, ReportError> {
    let shared = &ctx.shared;
    let memory = &shared.memory;
    let metrics = &shared.metrics;
    let now = Timestamp::now();
    let mut attempt = 0;
    match &reconciled {
        Reconciled::Fresh { issued, .. } => {
            memory.clear_failures(&key.uid);
            debug!(binding = %key.name, renewal = %issued.renewal_time, "credentials are fresh");
        }
        Reconciled::Refreshed {
            reason,
            issued,
            version,
            ..
        } => {
            memory.clear_failures(&key.uid);
            if let Some(version) = version {
                memory.remember_secret_write(&key.uid, version.clone(), Some(issued));
            }
            metrics.refreshed(reason.as_str());
            info!(
                binding = %key.name,
                namespace = %key.namespace,
                reason = reason.as_str(),
                expiration = %issued.expiration,
                renewal = %issued.renewal_time,
                "issued credentials"
            );
        }
        Reconciled::Failed { error, .. } => {
            attempt = memory.record_failure(&key.uid);
            metrics.failed(error.category());
            // The ServiceAccount watch wakes the binding when the account appears.
            if let RefreshError::Flow(flow) = error
                && let Some(account) = flow.missing_service_account()
            {
                let registered = memory.wait_for_account(
                    &key.namespace,
                    account,
                    ObjectRef::from_obj(binding),
                    &key.uid,
                );
                if !registered {
                    debug!(binding = %key.name, "too many bindings wait for ServiceAccounts; relying on retries");
                }
            }
        }
        Reconciled::Conflict { spec, .. } => ctx.conflicts.watch(
            shared.client.clone(),
            ObjectRef::from_obj(binding),
            &key.uid,
            &key.namespace,
            &spec.secret_name,
        ),
        Reconciled::Invalid(_)
        | Reconciled::NotAllowed { .. }
        | Reconciled::Parked
        | Reconciled::BackingOff(_) => {}
    }
    if !matches!(reconciled, Reconciled::Conflict { .. }) {
        ctx.conflicts.stop(&key.uid);
    }
    let delay = requeue(&reconciled, attempt, &key.uid, now);
    // An eviction due before then comes first.
    let delay = match (delay, consumers.wake_at) {
        (Some(d), Some(at)) => Some(d.min(plan::requeue_at(at, now))),
        (d, _) => d,
    };
    if let (Reconciled::Failed { spec, .. }, Some(delay)) = (&reconciled, delay)
        && let Ok(wait) = jiff::SignedDuration::try_from(delay)
    {
        memory.hold(
            &key.uid,
            plan::Hold {
                until: now.saturating_add(wait).unwrap_or(now),
                fingerprint: spec.fingerprint(),
            },
        );
    }
    if let Reconciled::Failed { error, .. } = &reconciled {
        warn!(
            binding = %key.name,
            namespace = %key.namespace,
            category = error.category(),
            attempt,
            retry_in = ?delay,
            error = %error,
            "refresh failed"
        );
    }
    metrics.reconciled(reconciled.result().as_str());
    if let Some(event) = announcement(&reconciled, Previous::of(binding)) {
        shared.events.announce(binding, event);
    }
    if let Some(outcome) = outcome(&reconciled) {
        let pull = pull_report(&reconciled);
        let extras = StatusExtras {
            pull,
            handled_request,
            consumers: consumers.update,
        };
        write_status(ctx, binding, key, &outcome, extras, now).await?;
    }
    Ok(match delay {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Event reason when another podcreds operator writes the same binding's Secret.
pub const REASON_OVERLAP: &str = "InstallationOverlap";

/// Says, once per binding, that another podcreds operator (`other`, as the Secret names it)
/// writes this binding's Secret too: a log line, a metric and a Warning Event.
pub fn report_overlap(ctx: &Context, binding: &AWSRoleBinding, key: &BindingKey, other: &str) {
    let shared = &ctx.shared;
    if !shared.memory.first_overlap(&key.uid) {
        return;
    }
    let other = crate::text::remote(other);
    shared.metrics.installation_overlaps.inc();
    warn!(
        binding = %key.name,
        namespace = %key.namespace,
        other = %other,
        me = %shared.settings.writer,
        "another podcreds operator writes this binding's Secret: two installations serve the same bindings"
    );
    shared.events.announce(
        binding,
        Announcement {
            warning: true,
            reason: REASON_OVERLAP,
            action: "Refresh",
            note: format!(
                "Another podcreds operator ({other}) writes this binding's Secret besides {}: give each installation its own name (--installation, chart installation.name) and label bindings podcreds.dev/installation",
                shared.settings.writer
            ),
        },
    );
}

/// The binding's current Ready reason.
pub fn ready_reason(binding: &AWSRoleBinding) -> Option<&str> {
    status::ready_condition(binding.status.as_ref()).map(|c| c.reason.as_str())
}

/// Event reason when credentials are written again after a failure or a block.
pub const REASON_RECOVERED: &str = "Recovered";

/// What the binding's status said before this reconciliation, as far as Events care.
#[derive(Clone, Copy, Debug, Default)]
pub struct Previous<'a> {
    pub ready_reason: Option<&'a str>,
    /// `Degraded=True`: the last refresh failed (the credentials may still be valid).
    pub degraded_reason: Option<&'a str>,
}

impl<'a> Previous<'a> {
    pub fn of(binding: &'a AWSRoleBinding) -> Self {
        let degraded = binding.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == status::CONDITION_DEGRADED && c.status == "True")
        });
        Self {
            ready_reason: ready_reason(binding),
            degraded_reason: degraded.map(|c| c.reason.as_str()),
        }
    }

    /// The failure or block the binding reported, if any.
    fn failure(&self) -> Option<&'a str> {
        self.degraded_reason
            .or(self.ready_reason.filter(|r| *r != status::REASON_ISSUED))
    }

    fn was_failing(&self) -> bool {
        self.failure().is_some()
    }
}

/// What the status reports beside the credentials' outcome.
struct StatusExtras<'a> {
    /// The image-pull Secret, as this pass left it.
    pull: PullReport<'a>,
    /// The refresh request (annotation value) this pass acted on.
    handled_request: Option<&'a str>,
    /// The Secret's consumers, as the pod cache sees them.
    consumers: ConsumersUpdate,
}

/// Applies the status `outcome` leads to, unless it is what the apiserver already holds (as far
/// as this process knows: the cache lags behind our own writes).
async fn write_status(
    ctx: &Context,
    binding: &AWSRoleBinding,
    key: &BindingKey,
    outcome: &Outcome<'_>,
    extras: StatusExtras<'_>,
    now: Timestamp,
) -> Result<(), ReportError> {
    let StatusExtras {
        pull,
        handled_request,
        consumers,
    } = extras;
    let memory = &ctx.shared.memory;
    let version = binding.metadata.resource_version.as_deref();
    let last_write = memory.status_write(&key.uid, version);
    let current = known_status(version, binding.status.as_ref(), last_write.as_ref());
    let mut status = build_status(current, binding.metadata.generation, outcome, now);
    status.image_pull_secret =
        status::pull_secret_status(current.and_then(|c| c.image_pull_secret.as_deref()), pull)
            .map(Box::new);
    if let Some(request) = handled_request {
        status.last_handled_refresh_request = Some(request.to_string());
    }
    consumers.apply(&mut status.consumers);
    if current == Some(&status) {
        return Ok(());
    }
    let api: Api<AWSRoleBinding> = Api::namespaced(ctx.shared.client.clone(), &key.namespace);
    ctx.shared.throttle.kube().await;
    let patch = serde_json::json!({
        "apiVersion": AWSRoleBinding::api_version(&()),
        "kind": AWSRoleBinding::kind(&()),
        "status": status,
    });
    api.patch_status(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map_err(ReportError::WriteStatus)?;
    if let Some(based_on) = version {
        memory.remember_status_write(&key.uid, based_on, status);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

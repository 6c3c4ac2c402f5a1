//! Consumers step (`--watch-pods`): which pods read the binding's Secret, from the pod cache
//! ([`super::pods`]); a Warning Event on each pod that will go stale, once per credential set;
//! with `spec.restartStaleConsumers`, the evictions that are due; what `status.consumers` says.
//! What is stale and when to evict is decided by [`crate::consumers`] (pure).

use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Resource;
use kube::api::{Api, DeleteParams, EvictParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

use super::context::Context;
use super::events::Announcement;
use super::pods::PodCache;
use super::report::Reconciled;
use crate::api::{AWSRoleBinding, BlockedEviction, ConsumersStatus};
use crate::consumers::{self, Consumers, CredentialSet, Restart, StalePod};

/// Event reason on a pod that captured credentials it will not see refreshed.
pub const REASON_WILL_GO_STALE: &str = "CredentialsWillGoStale";
/// Event reason on a binding when one of its stale pods was evicted.
pub const REASON_EVICTED: &str = "StaleConsumerEvicted";
/// Event reason on a binding when the eviction of one of its stale pods was refused.
pub const REASON_EVICTION_BLOCKED: &str = "StaleConsumerEvictionBlocked";

/// Event reason on a binding asking for restarts from an operator that does not watch pods.
pub const REASON_PODS_NOT_WATCHED: &str = "PodsNotWatched";

/// How long one eviction may take before it counts as refused (`Timeout`) and is retried.
pub const EVICTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How soon a refused eviction is tried again.
pub const EVICTION_RETRY: SignedDuration = SignedDuration::from_secs(30);

/// Evictions per namespace: a burst of this many, then one every [`EVICTION_PERIOD_SECONDS`],
/// so that a namespace full of stale pods restarts gradually.
const EVICTION_BURST: NonZeroU32 = NonZeroU32::new(5).expect("non-zero");
const EVICTION_PERIOD_SECONDS: u64 = 2;

static EVICTIONS: LazyLock<Arc<DefaultKeyedRateLimiter<String>>> = LazyLock::new(|| {
    let quota = Quota::with_period(std::time::Duration::from_secs(EVICTION_PERIOD_SECONDS))
        .map(|q| q.allow_burst(EVICTION_BURST))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
    Arc::new(RateLimiter::keyed(quota))
});

/// What the status write does with `status.consumers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumersUpdate {
    /// Pods are not watched, or the binding keeps no Secret: no such field.
    Clear,
    /// Nothing new is known (the pod cache is still filling, or the binding has no valid
    /// credentials to judge against): as it was.
    Keep,
    Set(ConsumersStatus),
}

impl ConsumersUpdate {
    /// `current` after this update.
    pub fn apply(self, current: &mut Option<Box<ConsumersStatus>>) {
        match self {
            ConsumersUpdate::Clear => *current = None,
            ConsumersUpdate::Keep => {}
            ConsumersUpdate::Set(status) => *current = Some(Box::new(status)),
        }
    }
}

/// What the step found: the status update, and when an eviction is due next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumersOutcome {
    pub update: ConsumersUpdate,
    pub wake_at: Option<Timestamp>,
}

impl ConsumersOutcome {
    fn just(update: ConsumersUpdate) -> Self {
        Self {
            update,
            wake_at: None,
        }
    }
}

/// Errors of one eviction, by a stable category.
#[derive(Debug, thiserror::Error)]
pub enum EvictionError {
    #[error("a PodDisruptionBudget allows no disruption now: {0}")]
    DisruptionBudget(String),
    #[error("the operator may not evict pods (chart value consumers.allowEviction): {0}")]
    Forbidden(String),
    #[error("the apiserver asks to slow down: {0}")]
    TooManyRequests(String),
    #[error("the apiserver did not answer within {} s", EVICTION_TIMEOUT.as_secs())]
    Timeout,
    #[error("evicting: {0}")]
    Api(#[source] kube::Error),
}

impl EvictionError {
    pub fn category(&self) -> &'static str {
        match self {
            EvictionError::DisruptionBudget(_) => "DisruptionBudget",
            EvictionError::Forbidden(_) => "Forbidden",
            EvictionError::TooManyRequests(_) => "TooManyRequests",
            EvictionError::Timeout => "Timeout",
            EvictionError::Api(_) => "KubeApiError",
        }
    }

    fn of(error: kube::Error) -> Option<Self> {
        let kube::Error::Api(status) = &error else {
            return Some(EvictionError::Api(error));
        };
        let message = crate::text::remote(&status.message);
        match status.code {
            // Gone already, or replaced by another pod of the same name: nothing to evict.
            404 | 409 => None,
            403 => Some(EvictionError::Forbidden(message)),
            429 if message.to_ascii_lowercase().contains("disruption budget") => {
                Some(EvictionError::DisruptionBudget(message))
            }
            429 => Some(EvictionError::TooManyRequests(message)),
            _ => Some(EvictionError::Api(error)),
        }
    }
}

/// `spec.restartStaleConsumers.leadTime`, or the default.
fn lead_time(binding: &AWSRoleBinding) -> Option<SignedDuration> {
    let restart = binding.spec.restart_stale_consumers.as_ref()?;
    let Some(text) = restart.lead_time.as_deref() else {
        return Some(consumers::DEFAULT_LEAD_TIME);
    };
    match humantime::parse_duration(text)
        .ok()
        .and_then(|d| SignedDuration::try_from(d).ok())
    {
        Some(lead) => Some(lead),
        // The CRD's pattern admits only durations; an old object may not have passed it.
        None => Some(consumers::DEFAULT_LEAD_TIME),
    }
}

/// The consumers of the binding's Secret after `reconciled`: Warning Events on the pods that
/// will go stale and were not told about the credentials the Secret holds yet, the evictions
/// that are due, and the status.
pub async fn step(
    ctx: &Context,
    binding: &AWSRoleBinding,
    key: &super::BindingKey,
    reconciled: &Reconciled<'_>,
) -> ConsumersOutcome {
    let Some(pods) = &ctx.pods else {
        if binding.spec.restart_stale_consumers.is_some()
            && ctx.shared.memory.first_unwatched_restart(&key.uid)
        {
            warn!(namespace = %key.namespace, binding = %key.name, "spec.restartStaleConsumers needs --watch-pods; no pod is restarted");
            ctx.shared.events.announce(
                binding,
                Announcement {
                    warning: true,
                    reason: REASON_PODS_NOT_WATCHED,
                    action: "Evict",
                    note: "spec.restartStaleConsumers needs the operator to watch pods (--watch-pods, chart value consumers.watchPods): no pod is restarted".into(),
                },
            );
        }
        return ConsumersOutcome::just(ConsumersUpdate::Clear);
    };
    let (spec, issued) = match reconciled {
        Reconciled::Fresh { spec, issued } | Reconciled::Refreshed { spec, issued, .. } => {
            (*spec, issued)
        }
        Reconciled::Invalid(_) | Reconciled::NotAllowed { .. } => {
            return ConsumersOutcome::just(ConsumersUpdate::Clear);
        }
        _ => return ConsumersOutcome::just(ConsumersUpdate::Keep),
    };
    if !spec.delivery.secret {
        return ConsumersOutcome::just(ConsumersUpdate::Clear);
    }
    if !pods.synced() {
        return ConsumersOutcome::just(ConsumersUpdate::Keep);
    }
    // The set the status still describes is the one before, if this reconciliation replaced it.
    let previous = match reconciled {
        Reconciled::Refreshed { .. } => binding.status.as_ref().and_then(|s| {
            Some(CredentialSet {
                issued_at: s.last_refresh_time.as_ref()?.0,
                expiration: s.expiration.as_ref()?.0,
            })
        }),
        _ => None,
    };
    let sets = pods.remember_sets(&key.uid, CredentialSet::from(issued), previous);
    let found = pods.consumers(&key.namespace, &spec.secret_name);
    for pod in &found.stale {
        let warned = pods.notes(&pod.namespace, &pod.uid).warned;
        if consumers::warning_due(pod, issued, warned) {
            pods.note(&pod.namespace, &pod.uid, |n| {
                n.warned = Some(issued.expiration)
            });
            warn_pod(ctx, pod, &spec.secret_name, &sets);
        }
    }
    let mut wake_at = None;
    if let Some(lead) = lead_time(binding) {
        wake_at = restart_due(ctx, pods, binding, &found, &sets, lead);
    }
    let mut status = consumers::status(&found);
    if binding.spec.restart_stale_consumers.is_some() {
        status.blocked_evictions = found
            .stale
            .iter()
            .filter_map(|p| pods.notes(&p.namespace, &p.uid).blocked)
            .take(consumers::LISTED_STALE_PODS)
            .collect();
    }
    ConsumersOutcome {
        update: ConsumersUpdate::Set(status),
        wake_at,
    }
}

fn pod_reference(pod: &StalePod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.name.clone()),
        namespace: Some(pod.namespace.clone()),
        uid: Some(pod.uid.clone()),
        ..ObjectReference::default()
    }
}

fn warn_pod(ctx: &Context, pod: &StalePod, secret: &str, sets: &[CredentialSet]) {
    ctx.shared.events.announce_to(
        pod_reference(pod),
        None,
        Announcement {
            warning: true,
            reason: REASON_WILL_GO_STALE,
            action: "Check",
            note: consumers::stale_note(pod, secret, sets),
        },
    );
}

/// Evicts the stale pods whose time has come (as [`consumers::restart`] decides), as the
/// namespace's rate allows; returns when the next one is due.
fn restart_due(
    ctx: &Context,
    pods: &PodCache,
    binding: &AWSRoleBinding,
    found: &Consumers,
    sets: &[CredentialSet],
    lead: SignedDuration,
) -> Option<Timestamp> {
    let mut next: Option<Timestamp> = None;
    let mut sooner = |at: Timestamp| next = Some(next.map_or(at, |n| n.min(at)));
    for pod in &found.stale {
        let notes = pods.notes(&pod.namespace, &pod.uid);
        let now = Timestamp::now();
        match consumers::restart(pod, sets, lead, notes.evicted_for, now) {
            Restart::Nothing => {}
            Restart::At(at) => sooner(at),
            // Its eviction is under way: the binding is woken when it ends.
            Restart::Now if notes.in_flight => {}
            Restart::Now => {
                // A refused eviction waits for its retry time.
                if let Some(retry) = notes.retry_at.filter(|r| *r > now) {
                    sooner(retry);
                    continue;
                }
                if let Err(not_until) = EVICTIONS.check_key(&pod.namespace) {
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ));
                    let wait = SignedDuration::try_from(wait).unwrap_or(EVICTION_RETRY);
                    sooner(now.checked_add(wait).unwrap_or(now));
                    continue;
                }
                let deadline = pod.deadline(sets);
                let holds = pod
                    .containers
                    .iter()
                    .map(|c| consumers::captured(c.started_at, sets))
                    .filter(|c| c.deadline() == deadline)
                    .map(|c| c.describe())
                    .next()
                    .unwrap_or_default();
                pods.note(&pod.namespace, &pod.uid, |n| n.in_flight = true);
                // Off the reconciliation: an apiserver slow to answer an eviction must not hold
                // up the binding.
                tokio::spawn(evict_and_report(Eviction {
                    client: ctx.shared.eviction_client.clone(),
                    throttle: ctx.shared.throttle.clone(),
                    events: ctx.shared.events.clone(),
                    pods: pods.clone(),
                    binding: binding.object_ref(&()),
                    pod: pod.clone(),
                    deadline,
                    holds,
                    previous: notes.blocked,
                }));
            }
        }
    }
    next
}

/// One eviction to make, and what its outcome is reported with.
struct Eviction {
    client: kube::Client,
    throttle: Arc<crate::throttle::Throttle>,
    events: super::events::Events,
    pods: PodCache,
    binding: ObjectReference,
    pod: StalePod,
    deadline: Option<Timestamp>,
    holds: String,
    previous: Option<BlockedEviction>,
}

/// Evicts the pod, records the outcome on it and wakes its binding.
async fn evict_and_report(e: Eviction) {
    let pod = &e.pod;
    let result = evict(&e.client, &e.throttle, pod).await;
    let now = Timestamp::now();
    match result {
        Ok(()) => {
            e.pods.note(&pod.namespace, &pod.uid, |n| {
                n.evicted_for = e.deadline;
                n.blocked = None;
                n.retry_at = None;
                n.in_flight = false;
            });
            info!(namespace = %pod.namespace, pod = %pod.name, holds = %e.holds, "evicted a pod that would go stale");
            e.events.announce_to(
                pod_reference(pod),
                Some(e.binding.clone()),
                Announcement {
                    warning: false,
                    reason: REASON_EVICTED,
                    action: "Evict",
                    note: format!(
                        "Evicted pod {} (uid {}): it read the Secret once at start and holds {}",
                        pod.name, pod.uid, e.holds
                    ),
                },
            );
        }
        Err(error) => {
            let retry = now.checked_add(EVICTION_RETRY).unwrap_or(now);
            let blocked = BlockedEviction {
                pod: pod.name.clone(),
                reason: error.category().to_string(),
                message: crate::text::remote(&error.to_string()),
            };
            let first = e.previous.as_ref() != Some(&blocked);
            e.pods.note(&pod.namespace, &pod.uid, |n| {
                n.blocked = Some(blocked);
                n.retry_at = Some(retry);
                n.in_flight = false;
            });
            warn!(namespace = %pod.namespace, pod = %pod.name, category = error.category(), error = %error, "eviction refused; retrying");
            if first {
                e.events.announce_to(
                    pod_reference(pod),
                    Some(e.binding.clone()),
                    Announcement {
                        warning: true,
                        reason: REASON_EVICTION_BLOCKED,
                        action: "Evict",
                        note: format!("Could not evict pod {}: {error}; retrying", pod.name),
                    },
                );
            }
        }
    }
    if let (Some(name), Some(namespace)) = (&e.binding.name, &e.binding.namespace) {
        e.pods
            .wake(ObjectRef::<AWSRoleBinding>::new(name).within(namespace));
    }
}

async fn evict(
    client: &kube::Client,
    throttle: &crate::throttle::Throttle,
    pod: &StalePod,
) -> Result<(), EvictionError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    throttle.kube().await;
    // Only this very pod: a pod of the same name created since is not the one judged stale.
    let params = EvictParams {
        delete_options: Some(DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        }),
        ..EvictParams::default()
    };
    let evicted = tokio::time::timeout(EVICTION_TIMEOUT, api.evict(&pod.name, &params))
        .await
        .map_err(|_| EvictionError::Timeout)?;
    match evicted {
        Ok(_) => Ok(()),
        Err(e) => match EvictionError::of(e) {
            None => Ok(()),
            Some(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "TooManyRequests")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn refused_evictions_say_why_in_a_few_words() {
        let category =
            |code, message| EvictionError::of(api_error(code, message)).map(|e| e.category());
        assert_eq!(
            category(
                429,
                "Cannot evict pod as it would violate the pod's disruption budget."
            ),
            Some("DisruptionBudget")
        );
        assert_eq!(category(429, "too many requests"), Some("TooManyRequests"));
        assert_eq!(category(403, "forbidden"), Some("Forbidden"));
        assert_eq!(category(500, "boom"), Some("KubeApiError"));
        // Gone, or another pod of the same name: nothing left to evict.
        assert_eq!(category(404, "not found"), None);
        assert_eq!(category(409, "uid precondition"), None);
    }

    #[test]
    fn the_update_clears_keeps_or_sets() {
        let set = ConsumersStatus {
            refreshing: 1,
            ..ConsumersStatus::default()
        };
        let mut current = Some(Box::default());
        ConsumersUpdate::Keep.apply(&mut current);
        assert_eq!(current, Some(Box::default()));
        ConsumersUpdate::Set(set.clone()).apply(&mut current);
        assert_eq!(current, Some(Box::new(set)));
        ConsumersUpdate::Clear.apply(&mut current);
        assert_eq!(current, None);
    }
}

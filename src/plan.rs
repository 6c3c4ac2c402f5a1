//! Decide step (pure): what to do with a binding, given what the Secret says about the
//! credentials it holds, what this process remembers and the clock; when to come back; whether
//! to tell anyone. No I/O here; everything is unit-tested without a cluster, so the controller
//! only executes these verdicts.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::MAX_REFRESH_REQUEST_LEN;
use crate::retry::{self, RetryClass};
use crate::secret::{IssuedMeta, ObservedSecret};

mod provenance;

pub use provenance::{OwnWrite, Provenance, StatusTimes, judge, plausible, provenance};

/// Why fresh credentials are needed now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshReason {
    SecretMissing,
    SpecChanged,
    RenewalDue,
    Expired,
    SecretModified,
    AnnotationsUnreadable,
    /// Someone asked for it (the `podcreds.dev/refresh-requested-at` annotation).
    Requested,
    /// An `Endpoint` binding whose credentials this process does not hold (it just started or
    /// was just elected: they are never written to the cluster).
    EndpointEmpty,
    /// The binding's image-pull Secret (`spec.imagePullSecret`) is gone: a new token is asked
    /// for with new credentials.
    PullSecretMissing,
}

impl RefreshReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshReason::SecretMissing => "SecretMissing",
            RefreshReason::SpecChanged => "SpecChanged",
            RefreshReason::RenewalDue => "RenewalDue",
            RefreshReason::Expired => "Expired",
            RefreshReason::SecretModified => "SecretModified",
            RefreshReason::AnnotationsUnreadable => "AnnotationsUnreadable",
            RefreshReason::Requested => "Requested",
            RefreshReason::EndpointEmpty => "EndpointEmpty",
            RefreshReason::PullSecretMissing => "PullSecretMissing",
        }
    }
}

/// The planner's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Issue new credentials now. `still_valid` holds the Secret's current credentials while
    /// they are good for this spec: a failed refresh then leaves them in place and the binding
    /// stays Ready.
    Refresh {
        reason: RefreshReason,
        still_valid: Option<IssuedMeta>,
    },
    /// Credentials are good; come back at `issued.renewal_time`.
    Wait(IssuedMeta),
    /// The Secret name is taken by something this binding does not control.
    Conflict { owner: Option<String> },
}

fn refresh(reason: RefreshReason) -> Decision {
    Decision::Refresh {
        reason,
        still_valid: None,
    }
}

/// Decides what to do with a binding whose resolved spec has fingerprint `fingerprint`.
pub fn plan(fingerprint: &str, observed: &ObservedSecret, now: Timestamp) -> Decision {
    match observed {
        ObservedSecret::Missing => refresh(RefreshReason::SecretMissing),
        ObservedSecret::Foreign { owner } => Decision::Conflict {
            owner: owner.clone(),
        },
        ObservedSecret::Owned { issued: None, .. } => refresh(RefreshReason::AnnotationsUnreadable),
        ObservedSecret::Owned {
            issued: Some(issued),
            intact,
        } => {
            if issued.fingerprint != fingerprint {
                refresh(RefreshReason::SpecChanged)
            } else if now >= issued.expiration {
                refresh(RefreshReason::Expired)
            } else if !intact {
                refresh(RefreshReason::SecretModified)
            } else if now >= issued.renewal_time {
                Decision::Refresh {
                    reason: RefreshReason::RenewalDue,
                    still_valid: Some(issued.clone()),
                }
            } else {
                Decision::Wait(issued.clone())
            }
        }
    }
}

/// `decision` once the binding's image-pull Secret is known to be missing (as the apiserver says,
/// not only a cache): credentials that are still good are exchanged anyway, since the token
/// comes from them, and stay in place if that fails. Any other decision stands.
pub fn needs_pull_secret(decision: Decision, pull_secret_missing: bool) -> Decision {
    match decision {
        Decision::Wait(issued) if pull_secret_missing => Decision::Refresh {
            reason: RefreshReason::PullSecretMissing,
            still_valid: Some(issued),
        },
        other => other,
    }
}

/// Decides for a binding delivered through a Secret, the node endpoint (the leader's memory), or
/// both: each place is planned as [`plan`] does, and one exchange serves both. A conflict on the
/// Secret blocks the binding; otherwise whichever place needs credentials first decides, and the
/// credentials still valid in either place keep the binding Ready if the exchange fails.
pub fn plan_deliveries(
    fingerprint: &str,
    secret: Option<&ObservedSecret>,
    endpoint: Option<&ObservedSecret>,
    now: Timestamp,
) -> Decision {
    let in_memory = |observed: &ObservedSecret| match plan(fingerprint, observed, now) {
        Decision::Refresh {
            reason: RefreshReason::SecretMissing,
            still_valid,
        } => Decision::Refresh {
            reason: RefreshReason::EndpointEmpty,
            still_valid,
        },
        other => other,
    };
    let (secret, endpoint) = match (secret, endpoint) {
        (Some(s), None) => return plan(fingerprint, s, now),
        (None, Some(e)) => return in_memory(e),
        // No delivery at all cannot be resolved; a Secret is the default.
        (None, None) => return plan(fingerprint, &ObservedSecret::Missing, now),
        (Some(s), Some(e)) => (plan(fingerprint, s, now), in_memory(e)),
    };
    let valid = |d: &Decision| match d {
        Decision::Wait(issued) => Some(issued.clone()),
        Decision::Refresh { still_valid, .. } => still_valid.clone(),
        Decision::Conflict { .. } => None,
    };
    match (secret, endpoint) {
        (conflict @ Decision::Conflict { .. }, _) => conflict,
        (Decision::Wait(a), Decision::Wait(b)) => {
            Decision::Wait(if b.renewal_time < a.renewal_time {
                b
            } else {
                a
            })
        }
        (
            Decision::Refresh {
                reason,
                still_valid,
            },
            other,
        )
        | (
            other,
            Decision::Refresh {
                reason,
                still_valid,
            },
        ) => Decision::Refresh {
            reason,
            still_valid: still_valid.or_else(|| valid(&other)),
        },
        // The endpoint never reports a conflict.
        (_, conflict @ Decision::Conflict { .. }) => conflict,
    }
}

/// The refresh request a binding carries and the operator has not acted on yet: the annotation's
/// value (cut to [`MAX_REFRESH_REQUEST_LEN`] bytes, as the cache keeps it) when it differs from
/// the one the status says was handled last.
pub fn pending_refresh_request<'a>(
    annotation: Option<&'a str>,
    last_handled: Option<&str>,
) -> Option<&'a str> {
    let requested = crate::text::cut(annotation?, MAX_REFRESH_REQUEST_LEN);
    (Some(requested) != last_handled).then_some(requested)
}

/// Least time between two exchanges forced by refresh requests of one binding: whoever may edit a
/// binding can ask again and again, and each request costs STS calls.
pub const REFRESH_REQUEST_INTERVAL: Duration = Duration::from_secs(10);

/// `decision` once a pending refresh request is taken into account: credentials that are still
/// good are exchanged anyway (and stay in place if that fails); a conflict stays a conflict, and
/// a refresh that was due anyway keeps its reason.
pub fn honour_refresh_request(decision: Decision, requested: bool) -> Decision {
    match decision {
        Decision::Wait(issued) if requested => Decision::Refresh {
            reason: RefreshReason::Requested,
            still_valid: Some(issued),
        },
        other => other,
    }
}

/// How long a refresh request must wait because the binding's last forced exchange, at
/// `last_forced`, was less than [`REFRESH_REQUEST_INTERVAL`] ago.
pub fn refresh_request_wait(last_forced: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let next = last_forced?
        .checked_add(SignedDuration::try_from(REFRESH_REQUEST_INTERVAL).ok()?)
        .ok()?;
    (now < next).then(|| requeue_at(next, now))
}

/// Categories of the reasons a binding stops being allowed its credentials at all, as opposed to
/// a spec the operator cannot act on: its role left the namespace's allowlist, or its credential
/// source stopped allowing the namespace (or what the binding asks of it) or was deleted. Then the credentials already in its
/// Secret are revoked (see [`revocation`]).
pub const REVOKING_CATEGORIES: [&str; 6] = [
    "RoleNotAllowed",
    "CredentialSourceNotAllowed",
    "CredentialSourceNotFound",
    "CredentialSourceModeNotAllowed",
    "CredentialSourceRoleNotAllowed",
    "CredentialSourceDurationNotAllowed",
];

/// Whether a binding blocked with `category` loses the credentials in its Secret.
pub fn revokes(category: &str) -> bool {
    REVOKING_CATEGORIES.contains(&category)
}

/// What to do about the credentials of a binding that is no longer allowed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Its Secret holds none (any more): nothing to do.
    Nothing,
    /// Remove them at this time (the admin's grace period runs until then).
    At(Timestamp),
    /// Remove them now.
    Now,
}

/// What to do with the credentials in the Secret of a binding not allowed them since `since`
/// (`None`: found just now), given the admin's `grace` period.
pub fn revocation(
    holds_credentials: bool,
    since: Option<Timestamp>,
    grace: Duration,
    now: Timestamp,
) -> Revocation {
    if !holds_credentials {
        return Revocation::Nothing;
    }
    // A start in the future (a status written by someone else) postpones nothing.
    let since = since.map_or(now, |s| s.min(now));
    let at = SignedDuration::try_from(grace)
        .ok()
        .and_then(|g| since.checked_add(g).ok())
        .unwrap_or(Timestamp::MAX);
    if now >= at {
        Revocation::Now
    } else {
        Revocation::At(at)
    }
}

/// The other operator that wrote the binding's Secret after this one did, if the Secret says so:
/// two installations (or two releases of one) serve the same binding. Only a write this process
/// did not make counts (its own name on the Secret after a restart is no news), and the Secret's
/// word is never trusted for anything but saying so.
pub fn overlapping_writer<'a>(
    provenance: Provenance,
    written_by: Option<&'a str>,
    me: &str,
) -> Option<&'a str> {
    (provenance == Provenance::Foreign)
        .then_some(written_by?)
        .filter(|w| *w != me)
}

/// Least wait before a second repair of a Secret someone else wrote, doubling with every further
/// repair up to [`REPAIR_BACKOFF_CAP`]; a run of repairs is forgotten after [`REPAIR_MEMORY`].
pub const REPAIR_BACKOFF: Duration = Duration::from_secs(5);
pub const REPAIR_BACKOFF_CAP: Duration = Duration::from_secs(300);
pub const REPAIR_MEMORY: Duration = Duration::from_secs(600);

/// A run of refreshes made because someone else wrote the binding's Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repairs {
    pub count: u32,
    pub last: Timestamp,
}

/// How long a refresh made because someone else wrote the Secret must wait, after `repairs`.
/// The first is at once (a tampered Secret is repaired immediately); more follow ever more
/// slowly, so that a writer that answers every write of ours (a second operator reconciling the
/// same binding, a sync tool) cannot make podcreds call STS in a loop.
pub fn repair_wait(repairs: Option<&Repairs>, now: Timestamp) -> Option<Duration> {
    let r = repairs.filter(|r| r.count > 0)?;
    let since = Duration::try_from(now.duration_since(r.last)).unwrap_or(Duration::ZERO);
    if since >= REPAIR_MEMORY {
        return None;
    }
    let delay = REPAIR_BACKOFF
        .saturating_mul(1u32 << r.count.saturating_sub(1).min(16))
        .min(REPAIR_BACKOFF_CAP);
    (since < delay).then(|| delay - since + REQUEUE_SLACK)
}

/// The repairs after one more at `now`.
pub fn count_repair(repairs: Option<&Repairs>, now: Timestamp) -> Repairs {
    let previous = repairs
        .filter(|r| {
            Duration::try_from(now.duration_since(r.last)).unwrap_or(Duration::ZERO) < REPAIR_MEMORY
        })
        .map_or(0, |r| r.count);
    Repairs {
        count: previous.saturating_add(1),
        last: now,
    }
}

/// Share of the granted lifetime after which credentials are refreshed by default.
const DEFAULT_RENEW_AT: f64 = 2.0 / 3.0;
/// Largest share of the lifetime the default renewal moves earlier, to spread refreshes out.
const MAX_JITTER: f64 = 0.10;
/// How long before expiry some SDKs already refresh (Java SDK v1 with 15 minutes left): the
/// default renewal comes no later than this before expiry, so they never read stale credentials.
const SDK_REFRESH_MARGIN_MS: f64 = 15.0 * 60.0 * 1000.0;
/// Least share of the lifetime used before the SDK margin may move a renewal earlier (so short
/// sessions are not renewed almost as soon as they are issued).
const MIN_USED_SHARE: f64 = 1.0 / 3.0;

/// When credentials issued at `issued_at` and expiring at `expiration` (as STS granted, which may
/// be shorter than requested) should be refreshed.
///
/// By default at the earlier of two thirds of the lifetime and [`SDK_REFRESH_MARGIN_MS`] before
/// expiry (the margin is not allowed to move it before a third of the lifetime, and lifetimes of
/// 15 minutes or less keep two thirds), then moved earlier by the jitter: up to a tenth of the
/// lifetime. An explicit `renew_before` replaces all of this while it fits the lifetime.
///
/// `jitter` in `[0, 1)` picks the point inside the jitter window; callers derive it from the
/// binding's identity so the same credentials always get the same renewal time.
pub fn renewal_time(
    issued_at: Timestamp,
    expiration: Timestamp,
    renew_before: Option<Duration>,
    jitter: f64,
) -> Timestamp {
    let lifetime = expiration
        .duration_since(issued_at)
        .max(SignedDuration::ZERO);
    if let Some(before) = renew_before.and_then(|d| SignedDuration::try_from(d).ok()) {
        // Honour an explicit margin only while it leaves part of the lifetime to use: STS may
        // grant far less than requested, and refreshing at issue time would loop.
        if before < lifetime {
            return expiration.checked_sub(before).unwrap_or(issued_at);
        }
    }
    let lifetime_ms = lifetime.as_millis() as f64;
    let mut share = DEFAULT_RENEW_AT;
    if lifetime_ms > SDK_REFRESH_MARGIN_MS {
        let before_margin = (lifetime_ms - SDK_REFRESH_MARGIN_MS) / lifetime_ms;
        share = share.min(before_margin.max(MIN_USED_SHARE));
    }
    let jitter = jitter.clamp(0.0, 1.0);
    let offset_ms = lifetime_ms * share - lifetime_ms * MAX_JITTER * jitter;
    issued_at
        .checked_add(SignedDuration::from_millis(offset_ms.max(0.0) as i64))
        .unwrap_or(issued_at)
}

/// A number in `[0, 1)` derived from `seed` (for example a binding's UID and its expiration),
/// so that renewal times spread evenly and deterministically.
pub fn jitter_from(seed: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a binding is going away (it is being deleted, or its namespace is): then nothing is
/// refreshed, written or announced. Refreshing would fail (a terminating namespace accepts no
/// new tokens, Secrets or Events) and every failure would be a warning about an object nobody
/// wants any more.
pub fn going_away(binding_deleted: bool, namespace_terminating: bool) -> bool {
    binding_deleted || namespace_terminating
}

/// Whether a miss in the Secret cache can be believed. The cache (synced before any decision)
/// holds every Secret podcreds manages, so a miss usually means "missing" and the Secret is
/// created without asking first (a create that finds the name taken looks closer). The
/// apiserver is asked only where a miss is likely wrong or costly: right after this process
/// wrote the binding's Secret (the cache may not show it yet), and while the binding reports a
/// conflict (so STS is not called again for a Secret it may not write).
pub fn trust_cache_miss(wrote_recently: bool, reports_conflict: bool) -> bool {
    !wrote_recently && !reports_conflict
}

/// Whether a blocked binding (invalid spec, conflict) is worth an Event: only when it was not
/// already reporting the same reason, so a binding that stays blocked does not repeat itself.
pub fn announce_blocked(previous_ready_reason: Option<&str>, category: &str) -> bool {
    previous_ready_reason != Some(category)
}

/// How often a binding blocked by a Secret it does not own looks again (the foreign Secret is
/// not labelled, so no watch event announces its removal).
pub const CONFLICT_RECHECK: Duration = Duration::from_secs(120);
/// How often the bindings waiting for their namespace's share of exchange slots are woken into
/// slots that are free, in case a wake-up was lost.
pub const PARKED_RECHECK: Duration = Duration::from_secs(30);
/// Slack added to a requeue so the planner sees the renewal as due when it wakes up.
pub const REQUEUE_SLACK: Duration = Duration::from_millis(250);

/// How long to sleep until `t`, plus [`REQUEUE_SLACK`].
pub fn requeue_at(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO) + REQUEUE_SLACK
}

/// What a successful exchange at `issued_at` means for the Secret: the times podcreds records
/// (whole seconds) and when to refresh. The jitter comes from the binding's UID and the
/// expiration, so the same credentials always get the same renewal time. What the exchange
/// reports about the credentials (assumed role, chain, endpoint) is kept for the status.
pub fn issued(
    uid: &str,
    issued_at: Timestamp,
    renew_before: Option<Duration>,
    fingerprint: &str,
    credentials: &crate::credentials::IssuedCredentials,
) -> IssuedMeta {
    let issued_at = crate::time::whole_second(issued_at);
    let expiration = crate::time::whole_second(credentials.expiration);
    let jitter = jitter_from(&format!("{uid}/{}", expiration.as_second()));
    let renewal_time =
        crate::time::whole_second(renewal_time(issued_at, expiration, renew_before, jitter));
    IssuedMeta {
        issued_at,
        expiration,
        renewal_time,
        fingerprint: fingerprint.to_string(),
        assumed_role_arn: credentials.assumed_role_arn.clone(),
        chain: credentials.chain.clone(),
        sts_endpoint: credentials.sts_endpoint.clone(),
    }
}

/// `issued` once an image-pull token expiring at `token_expiration` rides on the same refresh:
/// the binding is refreshed before the earlier of the two needs it, the token planned as
/// credentials are (two thirds of its lifetime at most, jittered), so a 12-hour ECR token is
/// renewed even when the credentials live longer.
pub fn with_pull_token(
    mut issued: IssuedMeta,
    token_expiration: Timestamp,
    uid: &str,
) -> IssuedMeta {
    let expiration = crate::time::whole_second(token_expiration);
    let jitter = jitter_from(&format!("{uid}/ecr/{}", expiration.as_second()));
    let token_renewal = crate::time::whole_second(renewal_time(
        issued.issued_at,
        expiration.max(issued.issued_at),
        None,
        jitter,
    ));
    if token_renewal < issued.renewal_time {
        issued.renewal_time = token_renewal.max(issued.issued_at);
    }
    issued
}

/// When to try again after failed attempt number `attempt` of class `class`. While credentials
/// in the Secret are `still_valid`, retries are spread so several fit before they expire.
/// `None`: wait for a change of the binding (or of what it waits for).
pub fn retry_after_failure(
    class: RetryClass,
    attempt: u32,
    still_valid: Option<&IssuedMeta>,
    uid: &str,
    now: Timestamp,
) -> Option<Duration> {
    let remaining = still_valid.map(|i| i.expiration.duration_since(now).max(SignedDuration::ZERO));
    let jitter = jitter_from(&format!("{uid}/{attempt}/{}", now.as_millisecond()));
    retry::retry_delay(class, attempt, remaining, jitter)
}

/// After a failed refresh: no new attempt before `until` for the spec with `fingerprint`.
/// Reconciliations triggered meanwhile (the operator's own status write, a Secret event) would
/// otherwise call STS again at once, doubling the calls of every failing binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub until: Timestamp,
    pub fingerprint: String,
}

/// How much longer a binding whose refresh failed must wait before trying again, if at all: a
/// changed spec (another fingerprint) tries at once.
pub fn backing_off(hold: Option<&Hold>, fingerprint: &str, now: Timestamp) -> Option<Duration> {
    let hold = hold.filter(|h| h.fingerprint == fingerprint && now < h.until)?;
    Some(requeue_at(hold.until, now))
}

/// When to try again after a reconciliation failed on the apiserver (not on the binding):
/// transient backoff, never "wait for a change".
pub fn retry_after_api_error(attempt: u32, uid: &str) -> Duration {
    let jitter = jitter_from(&format!("{uid}/{attempt}"));
    retry::retry_delay(RetryClass::Transient, attempt, None, jitter).unwrap_or(retry::BACKOFF_CAP)
}

#[cfg(test)]
mod tests;

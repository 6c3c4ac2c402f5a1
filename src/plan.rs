//! Decide step (pure): what to do with a binding, given what the Secret says about the
//! credentials it holds, what this process remembers and the clock; when to come back; whether
//! to tell anyone. No I/O here; everything is unit-tested without a cluster, so the controller
//! only executes these verdicts.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::MAX_REFRESH_REQUEST_LEN;
use crate::retry::{self, RetryClass};
use crate::secret::{IssuedMeta, ObservedSecret};

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

/// This process's last write of a binding's Secret: the `resourceVersion` the apiserver gave it,
/// what it said about the credentials, and whether the Secret cache has shown it yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnWrite {
    pub version: String,
    /// `None` when the write removed the credentials (a revocation).
    pub issued: Option<IssuedMeta>,
    /// The cache has shown this very version.
    pub seen: bool,
}

/// Who last wrote the binding's Secret, as far as this process can tell. Tamper detection rests
/// on this, not on the field manager's name: anyone who may patch the Secret can write with
/// `--field-manager=podcreds`, but only this process knows the versions it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// The Secret is at the version this process wrote.
    Ours,
    /// The cache has not delivered this process's write yet and shows an older Secret.
    Lagging,
    /// Someone else wrote the Secret after this process did.
    Foreign,
    /// This process has not written the Secret (it started, or became leader, since then):
    /// judged from the Secret's managed fields and the binding's status.
    Unknown,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Ours => "ours",
            Provenance::Lagging => "lagging",
            Provenance::Foreign => "foreign",
            Provenance::Unknown => "unknown",
        }
    }
}

/// What the binding's status says about the credentials in its Secret: the operator writes
/// both, the Secret first, and only the operator may write the status (the chart's status
/// guard), so after a restart a Secret whose annotations disagree with it was changed by
/// someone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusTimes {
    pub issued_at: Option<Timestamp>,
    pub expiration: Option<Timestamp>,
    pub renewal_time: Option<Timestamp>,
}

impl StatusTimes {
    fn agree_with(&self, issued: &IssuedMeta) -> bool {
        self.issued_at == Some(issued.issued_at)
            && self.expiration == Some(issued.expiration)
            && self.renewal_time == Some(issued.renewal_time)
    }
}

/// Longest lifetime STS grants (`GetSessionToken`, `GetFederationToken`: 36 hours).
const LONGEST_LIFETIME: SignedDuration = SignedDuration::from_hours(36);
/// How far in the future an issue time may lie (clock skew between replicas).
const ISSUE_TIME_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// Whether what a Secret says about its credentials could be true: issued in the past and living
/// no longer than STS grants anything. Forged annotations (an expiration in 2099) are not.
pub fn plausible(issued: &IssuedMeta, now: Timestamp) -> bool {
    let latest_issue = now.checked_add(ISSUE_TIME_SKEW).unwrap_or(now);
    issued.issued_at <= latest_issue
        && issued.expiration.duration_since(issued.issued_at) <= LONGEST_LIFETIME
}

/// Who wrote the Secret now at `version`, given this process's own last write.
pub fn provenance(
    version: Option<&str>,
    cached: &ObservedSecret,
    own: Option<&OwnWrite>,
) -> Provenance {
    let Some(own) = own else {
        return Provenance::Unknown;
    };
    if version == Some(own.version.as_str()) {
        return Provenance::Ours;
    }
    // The watch delivers events in order: until it has shown our write, what it shows is older,
    // and can only hold older credentials than the ones we wrote.
    let older = match (cached, &own.issued) {
        (
            ObservedSecret::Owned {
                issued: Some(c), ..
            },
            Some(o),
        ) => c.issued_at < o.issued_at,
        (ObservedSecret::Owned { issued: None, .. }, _) => true,
        _ => false,
    };
    if !own.seen && older {
        Provenance::Lagging
    } else {
        Provenance::Foreign
    }
}

/// The binding's Secret as observed, judged by who wrote it: what this process wrote is intact
/// (and what it wrote wins over a cache that lags behind it), anything written after it by
/// someone else is modified whatever its field manager, and a Secret this process never wrote is
/// intact only if its managed fields say so and its annotations agree with the binding's status.
/// Implausible annotations are never intact.
pub fn judge(
    observed: ObservedSecret,
    provenance: Provenance,
    own: Option<&OwnWrite>,
    status: &StatusTimes,
    now: Timestamp,
) -> ObservedSecret {
    let ObservedSecret::Owned { issued, intact } = observed else {
        return observed;
    };
    let (issued, intact) = match provenance {
        Provenance::Ours => (issued, true),
        Provenance::Lagging => (own.and_then(|o| o.issued.clone()), true),
        Provenance::Foreign => (issued, false),
        Provenance::Unknown => {
            let agrees = issued.as_ref().is_some_and(|i| status.agree_with(i));
            (issued, intact && agrees)
        }
    };
    let intact = intact && issued.as_ref().is_none_or(|i| plausible(i, now));
    ObservedSecret::Owned { issued, intact }
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
/// How often a binding waiting for its namespace's share of exchange slots looks again, in case
/// its wake-up was lost.
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid timestamp")
    }

    fn issued(fp: &str) -> IssuedMeta {
        IssuedMeta {
            issued_at: t(0),
            expiration: t(3600),
            renewal_time: t(2400),
            chain: None,
            fingerprint: fp.into(),
            assumed_role_arn: None,
            sts_endpoint: None,
        }
    }

    fn owned(fp: &str, intact: bool) -> ObservedSecret {
        ObservedSecret::Owned {
            issued: Some(issued(fp)),
            intact,
        }
    }

    #[test]
    fn missing_secret_is_refreshed() {
        assert_eq!(
            plan("f", &ObservedSecret::Missing, t(0)),
            refresh(RefreshReason::SecretMissing)
        );
    }

    #[test]
    fn endpoint_bindings_are_planned_from_memory_and_one_exchange_serves_both() {
        let missing = ObservedSecret::Missing;
        let fresh = owned("f", true);
        // Endpoint only: nothing held (a new leader) is an exchange, held credentials a wait.
        assert_eq!(
            plan_deliveries("f", None, Some(&missing), t(0)),
            refresh(RefreshReason::EndpointEmpty)
        );
        assert_eq!(
            plan_deliveries("f", None, Some(&fresh), t(100)),
            Decision::Wait(issued("f"))
        );
        // Secret only: as before.
        assert_eq!(
            plan_deliveries("f", Some(&missing), None, t(0)),
            refresh(RefreshReason::SecretMissing)
        );
        // Both, the Secret fresh and memory empty (after a fail-over): one exchange, and the
        // Secret's credentials keep the binding Ready if it fails.
        assert_eq!(
            plan_deliveries("f", Some(&fresh), Some(&missing), t(100)),
            Decision::Refresh {
                reason: RefreshReason::EndpointEmpty,
                still_valid: Some(issued("f")),
            }
        );
        // Both fresh: wait for the earlier renewal.
        let mut later = issued("f");
        later.renewal_time = t(3000);
        let held_later = ObservedSecret::Owned {
            issued: Some(later.clone()),
            intact: true,
        };
        assert_eq!(
            plan_deliveries("f", Some(&held_later), Some(&fresh), t(100)),
            Decision::Wait(issued("f"))
        );
        assert_eq!(
            plan_deliveries("f", Some(&fresh), Some(&held_later), t(100)),
            Decision::Wait(issued("f"))
        );
        // A foreign Secret blocks the binding whatever memory holds.
        let foreign = ObservedSecret::Foreign { owner: None };
        assert_eq!(
            plan_deliveries("f", Some(&foreign), Some(&fresh), t(100)),
            Decision::Conflict { owner: None }
        );
        // A spec change reaches both.
        assert_eq!(
            plan_deliveries("g", Some(&fresh), Some(&fresh), t(100)),
            refresh(RefreshReason::SpecChanged)
        );
    }

    #[test]
    fn foreign_secret_is_a_conflict() {
        let observed = ObservedSecret::Foreign {
            owner: Some("Deployment/x".into()),
        };
        assert_eq!(
            plan("f", &observed, t(0)),
            Decision::Conflict {
                owner: Some("Deployment/x".into())
            }
        );
    }

    #[test]
    fn fresh_secret_waits_until_renewal() {
        assert_eq!(
            plan("f", &owned("f", true), t(100)),
            Decision::Wait(issued("f"))
        );
        assert_eq!(
            plan("f", &owned("f", true), t(2399)),
            Decision::Wait(issued("f"))
        );
    }

    #[test]
    fn due_expired_changed_and_modified_secrets_are_refreshed() {
        assert_eq!(
            plan("f", &owned("f", true), t(2400)),
            Decision::Refresh {
                reason: RefreshReason::RenewalDue,
                still_valid: Some(issued("f")),
            }
        );
        assert_eq!(
            plan("f", &owned("f", true), t(3600)),
            refresh(RefreshReason::Expired)
        );
        assert_eq!(
            plan("g", &owned("f", true), t(10)),
            refresh(RefreshReason::SpecChanged)
        );
        assert_eq!(
            plan("f", &owned("f", false), t(10)),
            refresh(RefreshReason::SecretModified)
        );
        assert_eq!(
            plan(
                "f",
                &ObservedSecret::Owned {
                    issued: None,
                    intact: true
                },
                t(10)
            ),
            refresh(RefreshReason::AnnotationsUnreadable)
        );
    }

    fn own(version: &str, issued: IssuedMeta, seen: bool) -> OwnWrite {
        OwnWrite {
            version: version.into(),
            issued: Some(issued),
            seen,
        }
    }

    fn status_of(i: &IssuedMeta) -> StatusTimes {
        StatusTimes {
            issued_at: Some(i.issued_at),
            expiration: Some(i.expiration),
            renewal_time: Some(i.renewal_time),
        }
    }

    #[test]
    fn a_stale_cache_never_causes_a_second_refresh() {
        let stale = owned("f", true);
        let mut written = issued("f");
        written.issued_at = t(2400);
        written.renewal_time = t(4800);
        written.expiration = t(6000);
        let ours = own("8", written.clone(), false);
        // The cache still shows the old credentials (version 7), due at 2400; we wrote new ones
        // at 2400 (version 8).
        let p = provenance(Some("7"), &stale, Some(&ours));
        assert_eq!(p, Provenance::Lagging);
        let judged = judge(stale.clone(), p, Some(&ours), &status_of(&written), t(2401));
        assert_eq!(plan("f", &judged, t(2401)), Decision::Wait(written.clone()));
        // Missing and foreign Secrets are never papered over.
        assert_eq!(
            judge(
                ObservedSecret::Missing,
                p,
                Some(&ours),
                &status_of(&written),
                t(2401)
            ),
            ObservedSecret::Missing
        );
    }

    #[test]
    fn a_write_not_ours_is_a_modification_whatever_its_field_manager() {
        let mine = issued("f");
        let ours = own("8", mine.clone(), true);
        let status = status_of(&mine);
        // The cache shows our version: intact, whatever the managed fields say.
        let cached = owned("f", false);
        let p = provenance(Some("8"), &cached, Some(&ours));
        assert_eq!(p, Provenance::Ours);
        assert_eq!(
            judge(cached, p, Some(&ours), &status, t(10)),
            owned("f", true)
        );
        // Someone patched it afterwards with podcreds' own field manager, forging the expiration:
        // the managed fields look fine, the version is not ours.
        let mut forged = mine.clone();
        forged.expiration = t(3000);
        forged.renewal_time = t(2900);
        let cached = ObservedSecret::Owned {
            issued: Some(forged.clone()),
            intact: true,
        };
        let p = provenance(Some("9"), &cached, Some(&ours));
        assert_eq!(p, Provenance::Foreign);
        assert_eq!(
            plan("f", &judge(cached, p, Some(&ours), &status, t(10)), t(10)),
            refresh(RefreshReason::SecretModified)
        );
        // Before the cache showed our write, a Secret holding credentials as new as ours or newer
        // cannot be the cache lagging.
        let unseen = own("8", mine.clone(), false);
        let newer = owned("f", true);
        assert_eq!(
            provenance(Some("9"), &newer, Some(&unseen)),
            Provenance::Foreign
        );
    }

    #[test]
    fn a_secret_this_process_never_wrote_must_agree_with_the_status() {
        let written = issued("f");
        let agreeing = status_of(&written);
        let p = provenance(Some("3"), &owned("f", true), None);
        assert_eq!(p, Provenance::Unknown);
        // After a restart: the Secret as the status describes it is trusted (no STS call).
        assert_eq!(
            plan(
                "f",
                &judge(owned("f", true), p, None, &agreeing, t(10)),
                t(10)
            ),
            Decision::Wait(written.clone())
        );
        // Forged annotations the status does not back are a modification.
        let mut stale_status = agreeing;
        stale_status.expiration = Some(t(1800));
        assert_eq!(
            plan(
                "f",
                &judge(owned("f", true), p, None, &stale_status, t(10)),
                t(10)
            ),
            refresh(RefreshReason::SecretModified)
        );
        // So is a hand edit the managed fields show.
        assert_eq!(
            plan(
                "f",
                &judge(owned("f", false), p, None, &agreeing, t(10)),
                t(10)
            ),
            refresh(RefreshReason::SecretModified)
        );
    }

    #[test]
    fn implausible_annotations_are_never_intact() {
        let mut far = issued("f");
        far.expiration = Timestamp::from_second(4_070_908_800).expect("2099");
        far.renewal_time = far.expiration;
        assert!(!plausible(&far, t(10)));
        let mut future = issued("f");
        future.issued_at = t(3600);
        future.renewal_time = t(3600);
        assert!(!plausible(&future, t(10)));
        assert!(plausible(&issued("f"), t(10)));
        let forged = ObservedSecret::Owned {
            issued: Some(far.clone()),
            intact: true,
        };
        let status = status_of(&far);
        assert!(matches!(
            judge(forged, Provenance::Unknown, None, &status, t(10)),
            ObservedSecret::Owned { intact: false, .. }
        ));
    }

    #[test]
    fn credentials_of_a_binding_no_longer_allowed_are_revoked_after_the_grace_period() {
        assert!(revokes("RoleNotAllowed"));
        assert!(revokes("CredentialSourceNotAllowed"));
        assert!(revokes("CredentialSourceNotFound"));
        // A spec the operator cannot act on is no reason to take working credentials away.
        assert!(!revokes("InvalidSpec"));
        assert!(!revokes("EndpointNotAllowed"));
        assert!(!revokes("CredentialSourceSecretMissing"));
        let no_grace = Duration::ZERO;
        let hour = Duration::from_secs(3600);
        assert_eq!(revocation(true, None, no_grace, t(0)), Revocation::Now);
        assert_eq!(revocation(false, None, no_grace, t(0)), Revocation::Nothing);
        // With a grace period: removed that long after the binding stopped being allowed.
        assert_eq!(revocation(true, None, hour, t(0)), Revocation::At(t(3600)));
        assert_eq!(
            revocation(true, Some(t(0)), hour, t(1800)),
            Revocation::At(t(3600))
        );
        assert_eq!(revocation(true, Some(t(0)), hour, t(3600)), Revocation::Now);
        assert_eq!(
            revocation(false, Some(t(0)), hour, t(3600)),
            Revocation::Nothing
        );
    }

    #[test]
    fn another_operator_writing_after_this_one_is_an_overlap() {
        let me = "default/ops/podcreds-leader";
        let other = "default/team-b/podcreds-leader";
        assert_eq!(
            overlapping_writer(Provenance::Foreign, Some(other), me),
            Some(other)
        );
        // A hand edit keeps the name of the operator that wrote last: this one.
        assert_eq!(overlapping_writer(Provenance::Foreign, Some(me), me), None);
        assert_eq!(overlapping_writer(Provenance::Foreign, None, me), None);
        // Written by another operator before this one wrote (a previous leader): no news.
        assert_eq!(
            overlapping_writer(Provenance::Unknown, Some(other), me),
            None
        );
        assert_eq!(overlapping_writer(Provenance::Ours, Some(other), me), None);
    }

    #[test]
    fn repairs_of_a_secret_someone_keeps_writing_slow_down() {
        assert_eq!(repair_wait(None, t(0)), None);
        let first = count_repair(None, t(0));
        assert_eq!(first.count, 1);
        // The first repair was at once; the second waits 5 s, the third 10 s, ...
        assert_eq!(
            repair_wait(Some(&first), t(1)),
            Some(Duration::from_secs(4) + REQUEUE_SLACK)
        );
        assert_eq!(repair_wait(Some(&first), t(5)), None);
        let second = count_repair(Some(&first), t(5));
        assert_eq!(
            repair_wait(Some(&second), t(5)),
            Some(Duration::from_secs(10) + REQUEUE_SLACK)
        );
        let mut many = second;
        for i in 0..20 {
            many = count_repair(Some(&many), t(10 + i));
        }
        assert_eq!(
            repair_wait(Some(&many), t(29)),
            Some(REPAIR_BACKOFF_CAP + REQUEUE_SLACK)
        );
        // Ten quiet minutes and the run is forgotten.
        assert_eq!(repair_wait(Some(&many), t(29 + 600)), None);
        assert_eq!(count_repair(Some(&many), t(29 + 600)).count, 1);
    }

    #[test]
    fn default_renewal_is_two_thirds_minus_jitter() {
        assert_eq!(renewal_time(t(0), t(3600), None, 0.0), t(2400));
        // Full jitter moves it 10% of the lifetime earlier.
        assert_eq!(renewal_time(t(0), t(3600), None, 1.0), t(2040));
    }

    #[test]
    fn sessions_under_45_minutes_renew_15_minutes_before_expiry() {
        // One hour (a chained session): two thirds is earlier, 20 minutes before expiry.
        assert_eq!(renewal_time(t(0), t(3600), None, 0.0), t(2400));
        // 30 minutes: 15 minutes before expiry, still moved earlier by the jitter.
        assert_eq!(renewal_time(t(0), t(1800), None, 0.0), t(900));
        assert_eq!(renewal_time(t(0), t(1800), None, 1.0), t(720));
        // 20 minutes: the margin would leave only 5 minutes of use; a third of the lifetime.
        assert_eq!(renewal_time(t(0), t(1200), None, 0.0), t(400));
        // 15 minutes or less: two thirds, as before.
        assert_eq!(renewal_time(t(0), t(900), None, 0.0), t(600));
        assert_eq!(renewal_time(t(0), t(12), None, 0.0), t(8));
    }

    #[test]
    fn explicit_renew_before_is_used_when_it_fits() {
        let r = renewal_time(t(0), t(3600), Some(Duration::from_secs(900)), 0.5);
        assert_eq!(r, t(2700));
    }

    #[test]
    fn shortened_sts_expiry_is_honoured() {
        // Asked for an hour with renewBefore 20m, STS granted 15 minutes: fall back to 2/3.
        let r = renewal_time(t(0), t(900), Some(Duration::from_secs(1200)), 0.0);
        assert_eq!(r, t(600));
        // Very short grants (the emulator in tests) still renew before expiry.
        let r = renewal_time(t(0), t(6), None, 0.99);
        assert!(r > t(0) && r < t(6));
    }

    #[test]
    fn jitter_is_deterministic_and_in_range() {
        let a = jitter_from("uid-1/2026-01-01T00:00:00Z");
        assert_eq!(a, jitter_from("uid-1/2026-01-01T00:00:00Z"));
        assert_ne!(a, jitter_from("uid-2/2026-01-01T00:00:00Z"));
        assert!((0.0..1.0).contains(&a));
    }

    #[test]
    fn jitter_spreads_renewals() {
        // 1000 bindings issued together land in many different seconds of the jitter window.
        let mut seconds = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let r = renewal_time(t(0), t(3600), None, jitter_from(&format!("uid-{i}")));
            seconds.insert(r.as_second());
        }
        assert!(
            seconds.len() > 250,
            "only {} distinct seconds",
            seconds.len()
        );
    }

    #[test]
    fn only_due_credentials_count_as_still_valid() {
        // Expired, modified or issued for another spec: a failed refresh has nothing to fall back on.
        for (fp, observed, now) in [
            ("f", owned("f", true), t(3600)),
            ("f", owned("f", false), t(2500)),
            ("g", owned("f", true), t(2500)),
            ("f", ObservedSecret::Missing, t(2500)),
        ] {
            match plan(fp, &observed, now) {
                Decision::Refresh { still_valid, .. } => assert_eq!(still_valid, None),
                other => panic!("expected a refresh, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_binding_or_namespace_being_deleted_is_left_alone() {
        assert!(!going_away(false, false));
        assert!(going_away(true, false));
        assert!(going_away(false, true));
    }

    #[test]
    fn a_cache_miss_is_believed_unless_we_just_wrote_or_report_a_conflict() {
        assert!(trust_cache_miss(false, false));
        assert!(!trust_cache_miss(true, false));
        assert!(!trust_cache_miss(false, true));
        assert!(!trust_cache_miss(true, true));
    }

    #[test]
    fn blocked_bindings_are_announced_once_per_reason() {
        assert!(announce_blocked(None, "InvalidSpec"));
        assert!(announce_blocked(
            Some("CredentialsIssued"),
            "SecretConflict"
        ));
        assert!(!announce_blocked(Some("SecretConflict"), "SecretConflict"));
        assert!(announce_blocked(Some("InvalidSpec"), "SecretConflict"));
    }

    #[test]
    fn requeue_lands_just_after_the_renewal_time() {
        assert_eq!(
            requeue_at(t(100), t(40)),
            Duration::from_secs(60) + REQUEUE_SLACK
        );
        // A renewal time in the past means now (plus the slack).
        assert_eq!(requeue_at(t(10), t(40)), REQUEUE_SLACK);
    }

    #[test]
    fn issued_credentials_are_recorded_in_whole_seconds() {
        let at: Timestamp = "2027-01-15T08:00:00.750Z".parse().expect("time");
        let exp: Timestamp = "2027-01-15T09:00:00.250Z".parse().expect("time");
        let credentials = crate::credentials::IssuedCredentials {
            access_key_id: "ASIA1".into(),
            secret_access_key: secrecy::SecretString::from("s".to_string()),
            session_token: secrecy::SecretString::from("t".to_string()),
            expiration: exp,
            assumed_role_arn: Some("arn".into()),
            chain: None,
            sts_endpoint: Some("https://sts.eu-west-1.amazonaws.com".into()),
        };
        let meta = super::issued("uid-1", at, None, "fp", &credentials);
        assert_eq!(meta.issued_at.subsec_nanosecond(), 0);
        assert_eq!(meta.expiration.subsec_nanosecond(), 0);
        assert_eq!(meta.renewal_time.subsec_nanosecond(), 0);
        assert!(meta.issued_at < meta.renewal_time && meta.renewal_time < meta.expiration);
        // What the exchange reported is kept for the status.
        assert_eq!(meta.assumed_role_arn.as_deref(), Some("arn"));
        assert_eq!(
            meta.sts_endpoint.as_deref(),
            Some("https://sts.eu-west-1.amazonaws.com")
        );
        // Deterministic: a restarted operator computes the same renewal time.
        assert_eq!(meta, super::issued("uid-1", at, None, "fp", &credentials));
    }

    #[test]
    fn a_failed_binding_waits_for_its_retry_unless_its_spec_changed() {
        let hold = Hold {
            until: t(100),
            fingerprint: "f".into(),
        };
        assert_eq!(
            backing_off(Some(&hold), "f", t(40)),
            Some(Duration::from_secs(60) + REQUEUE_SLACK)
        );
        assert_eq!(backing_off(Some(&hold), "g", t(40)), None);
        assert_eq!(backing_off(Some(&hold), "f", t(100)), None);
        assert_eq!(backing_off(None, "f", t(40)), None);
    }

    #[test]
    fn failures_back_off_and_keep_valid_credentials_in_reach() {
        let now = t(3000);
        let valid = issued("f");
        // Transient: grows with the attempt, capped at a quarter of the remaining 600 s.
        let first = retry_after_failure(RetryClass::Transient, 1, None, "u", now).expect("retry");
        let later = retry_after_failure(RetryClass::Transient, 12, None, "u", now).expect("retry");
        assert!(first < later);
        let capped =
            retry_after_failure(RetryClass::Transient, 12, Some(&valid), "u", now).expect("retry");
        assert!(capped <= Duration::from_secs(150));
        // A wrong binding waits for a change.
        assert_eq!(
            retry_after_failure(RetryClass::Permanent, 1, None, "u", now),
            None
        );
        // Apiserver errors always come back.
        assert!(retry_after_api_error(100, "u") <= crate::retry::BACKOFF_CAP);
    }

    #[test]
    fn a_refresh_request_is_pending_until_the_status_records_it() {
        assert_eq!(pending_refresh_request(None, None), None);
        assert_eq!(pending_refresh_request(Some("a"), None), Some("a"));
        assert_eq!(pending_refresh_request(Some("a"), Some("a")), None);
        assert_eq!(pending_refresh_request(Some("b"), Some("a")), Some("b"));
        // A value longer than the cache keeps is compared as the cache keeps it.
        let long = "x".repeat(MAX_REFRESH_REQUEST_LEN + 10);
        let kept = &long[..MAX_REFRESH_REQUEST_LEN];
        assert_eq!(pending_refresh_request(Some(&long), Some(kept)), None);
    }

    #[test]
    fn a_refresh_request_exchanges_good_credentials_but_never_a_foreign_secret() {
        let good = issued("f");
        assert_eq!(
            honour_refresh_request(Decision::Wait(good.clone()), true),
            Decision::Refresh {
                reason: RefreshReason::Requested,
                still_valid: Some(good.clone()),
            }
        );
        assert_eq!(
            honour_refresh_request(Decision::Wait(good.clone()), false),
            Decision::Wait(good.clone())
        );
        let conflict = Decision::Conflict { owner: None };
        assert_eq!(honour_refresh_request(conflict.clone(), true), conflict);
        let due = refresh(RefreshReason::SpecChanged);
        assert_eq!(honour_refresh_request(due.clone(), true), due);
    }

    #[test]
    fn forced_exchanges_of_one_binding_are_spaced() {
        assert_eq!(refresh_request_wait(None, t(0)), None);
        assert_eq!(
            refresh_request_wait(Some(t(0)), t(4)),
            Some(Duration::from_secs(6) + REQUEUE_SLACK)
        );
        assert_eq!(refresh_request_wait(Some(t(0)), t(10)), None);
    }

    proptest! {
        #[test]
        fn renewal_is_always_inside_the_lifetime(
            lifetime in 1i64..200_000,
            before in proptest::option::of(0u64..300_000),
            jitter in 0.0f64..1.0,
        ) {
            let r = renewal_time(t(0), t(lifetime), before.map(Duration::from_secs), jitter);
            prop_assert!(r >= t(0));
            prop_assert!(r < t(lifetime));
            if before.is_none() {
                // Default: at most two thirds of the lifetime, at least a tenth less than the
                // earlier of two thirds and 15 minutes before expiry (a third at the least).
                let share = r.duration_since(t(0)).as_millis() as f64 / (lifetime * 1000) as f64;
                prop_assert!(share <= 2.0 / 3.0 + 1e-9);
                let target = if lifetime > 900 {
                    (2.0f64 / 3.0).min((1.0 - 900.0 / lifetime as f64).max(1.0 / 3.0))
                } else {
                    2.0 / 3.0
                };
                prop_assert!(share <= target + 1e-3);
                prop_assert!(share >= target - 0.1 - 1e-3);
                // SDKs that refresh with 15 minutes left never see stale credentials, unless the
                // session is so short that a third of it must be used first.
                if lifetime > 900 {
                    prop_assert!(r <= t((lifetime - 900).max(lifetime / 3 + 1)));
                }
            }
        }

        #[test]
        fn still_valid_credentials_are_unexpired_and_for_this_spec(
            now in 0i64..10_000,
            intact in any::<bool>(),
            same in any::<bool>(),
        ) {
            let fp = if same { "f" } else { "g" };
            if let Decision::Refresh { still_valid: Some(v), .. } = plan(fp, &owned("f", intact), t(now)) {
                prop_assert!(t(now) < v.expiration);
                prop_assert_eq!(v.fingerprint.as_str(), fp);
                prop_assert!(intact);
            }
        }

        #[test]
        fn planner_never_waits_past_expiry(
            now in 0i64..10_000,
            intact in any::<bool>(),
            same in any::<bool>(),
        ) {
            let d = plan(if same { "f" } else { "g" }, &owned("f", intact), t(now));
            if let Decision::Wait(meta) = d {
                prop_assert!(t(now) < meta.renewal_time);
                prop_assert!(meta.renewal_time <= meta.expiration);
                prop_assert!(intact && same);
            }
        }
    }

    #[test]
    fn a_pull_token_brings_the_refresh_forward_only_when_it_expires_first() {
        // Credentials for 36 hours renew after 24: a 12-hour ECR token needs it sooner, before
        // it expires and after most of its lifetime.
        let mut long = issued("f");
        long.expiration = t(36 * 3600);
        long.renewal_time = t(24 * 3600);
        let planned = with_pull_token(long.clone(), t(12 * 3600), "uid-1");
        assert!(planned.renewal_time < t(12 * 3600), "{planned:?}");
        assert!(planned.renewal_time >= t(6 * 3600), "{planned:?}");
        assert_eq!(planned.expiration, long.expiration);
        assert_eq!(
            with_pull_token(long.clone(), t(12 * 3600), "uid-1"),
            planned,
            "the same token always plans the same time"
        );
        // One-hour credentials renew long before a 12-hour token needs it.
        assert_eq!(
            with_pull_token(issued("f"), t(12 * 3600), "uid-1"),
            issued("f")
        );
        // A token already expired (a clock far off) never plans before the issue time.
        let past = with_pull_token(issued("f"), t(-10), "uid-1");
        assert_eq!(past.renewal_time, t(0));
    }

    #[test]
    fn a_missing_pull_secret_turns_a_wait_into_a_refresh_that_keeps_the_credentials() {
        assert_eq!(
            needs_pull_secret(Decision::Wait(issued("f")), true),
            Decision::Refresh {
                reason: RefreshReason::PullSecretMissing,
                still_valid: Some(issued("f")),
            }
        );
        assert_eq!(
            needs_pull_secret(Decision::Wait(issued("f")), false),
            Decision::Wait(issued("f"))
        );
        // A refresh keeps its own reason; a conflict stays one.
        assert_eq!(
            needs_pull_secret(refresh(RefreshReason::SpecChanged), true),
            refresh(RefreshReason::SpecChanged)
        );
        let conflict = Decision::Conflict { owner: None };
        assert_eq!(needs_pull_secret(conflict.clone(), true), conflict);
    }
}

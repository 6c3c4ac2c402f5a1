//! Plan step (pure): what to do with a binding, given what the Secret says about the credentials
//! it holds and the clock. No I/O here; everything is unit-tested without a cluster.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// What the operator knows about credentials already in the Secret, read from its annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedMeta {
    pub issued_at: Timestamp,
    pub expiration: Timestamp,
    pub renewal_time: Timestamp,
    /// [`crate::spec::ResolvedSpec::fingerprint`] of the spec the credentials were issued for.
    pub fingerprint: String,
    pub assumed_role_arn: Option<String>,
}

/// The binding's Secret as observed (metadata only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedSecret {
    /// No Secret of that name exists.
    Missing,
    /// A Secret of that name exists and this binding is not its controller: never touch it.
    Foreign { owner: Option<String> },
    /// The binding's own Secret.
    Owned {
        /// `None` when the annotations are missing or unreadable.
        issued: Option<IssuedMeta>,
        /// False when someone else changed or removed keys podcreds writes.
        intact: bool,
    },
}

/// Why fresh credentials are needed now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshReason {
    SecretMissing,
    SpecChanged,
    RenewalDue,
    Expired,
    SecretModified,
    AnnotationsUnreadable,
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
        }
    }
}

/// The planner's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Refresh(RefreshReason),
    /// Credentials are good; come back at `issued.renewal_time`.
    Wait(IssuedMeta),
    /// The Secret name is taken by something this binding does not control.
    Conflict {
        owner: Option<String>,
    },
}

/// Decides what to do with a binding whose resolved spec has fingerprint `fingerprint`.
pub fn plan(fingerprint: &str, observed: &ObservedSecret, now: Timestamp) -> Decision {
    match observed {
        ObservedSecret::Missing => Decision::Refresh(RefreshReason::SecretMissing),
        ObservedSecret::Foreign { owner } => Decision::Conflict {
            owner: owner.clone(),
        },
        ObservedSecret::Owned { issued: None, .. } => {
            Decision::Refresh(RefreshReason::AnnotationsUnreadable)
        }
        ObservedSecret::Owned {
            issued: Some(issued),
            intact,
        } => {
            if issued.fingerprint != fingerprint {
                Decision::Refresh(RefreshReason::SpecChanged)
            } else if now >= issued.expiration {
                Decision::Refresh(RefreshReason::Expired)
            } else if !intact {
                Decision::Refresh(RefreshReason::SecretModified)
            } else if now >= issued.renewal_time {
                Decision::Refresh(RefreshReason::RenewalDue)
            } else {
                Decision::Wait(issued.clone())
            }
        }
    }
}

/// Corrects an observation from a cache that has not yet seen the operator's own last write.
///
/// Right after a refresh, the binding's status update can trigger a reconciliation before the
/// Secret watch delivers the new Secret; planning from the stale copy would refresh again. So
/// credentials this process wrote more recently than what the cache shows take precedence.
pub fn with_recent_write(observed: ObservedSecret, recent: Option<&IssuedMeta>) -> ObservedSecret {
    match (observed, recent) {
        (ObservedSecret::Owned { issued, intact }, Some(r)) => {
            let cache_is_older = issued.as_ref().is_none_or(|c| c.issued_at < r.issued_at);
            if cache_is_older {
                ObservedSecret::Owned {
                    issued: Some(r.clone()),
                    intact: true,
                }
            } else {
                ObservedSecret::Owned { issued, intact }
            }
        }
        (observed, _) => observed,
    }
}

/// Whether the cache already shows the credentials this process last wrote (or newer ones), so
/// the record of that write is no longer needed.
pub fn shows_write(observed: &ObservedSecret, recent: &IssuedMeta) -> bool {
    matches!(
        observed,
        ObservedSecret::Owned { issued: Some(c), .. } if c.issued_at >= recent.issued_at
    )
}

/// Share of the granted lifetime after which credentials are refreshed by default.
const DEFAULT_RENEW_AT: f64 = 2.0 / 3.0;
/// Largest share of the lifetime the default renewal moves earlier, to spread refreshes out.
const MAX_JITTER: f64 = 0.10;

/// When credentials issued at `issued_at` and expiring at `expiration` (as STS granted, which may
/// be shorter than requested) should be refreshed.
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
    let jitter = jitter.clamp(0.0, 1.0);
    let offset_ms = lifetime_ms * DEFAULT_RENEW_AT - lifetime_ms * MAX_JITTER * jitter;
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

/// How failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Apiserver errors, throttling, STS 5xx, timeouts: retry soon with exponential backoff.
    Transient,
    /// Rejected by something outside the cluster (trust policy, IAM): retry slowly, as it may be
    /// fixed without any change to the binding.
    External,
    /// The binding itself is wrong: wait for it (or the watched ServiceAccount) to change.
    Permanent,
}

/// Base and cap of the transient backoff.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How often an externally rejected binding is tried again.
pub const EXTERNAL_RETRY: Duration = Duration::from_secs(300);

/// Delay before retry number `attempt` (1 for the first retry) of a failed refresh.
///
/// Exponential with "equal jitter" (half fixed, half random) so that many bindings failing
/// together do not come back together; while old credentials remain valid the delay is also
/// capped at a quarter of their remaining lifetime so several attempts fit before expiry.
pub fn retry_delay(
    class: RetryClass,
    attempt: u32,
    remaining_validity: Option<SignedDuration>,
    jitter: f64,
) -> Option<Duration> {
    let base = match class {
        RetryClass::Permanent => return None,
        RetryClass::External => EXTERNAL_RETRY,
        RetryClass::Transient => {
            let exp = attempt.saturating_sub(1).min(16);
            BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP)
        }
    };
    let jitter = jitter.clamp(0.0, 1.0);
    let mut delay = base.mul_f64(0.5 + 0.5 * jitter);
    if let Some(remaining) = remaining_validity.and_then(|r| Duration::try_from(r).ok()) {
        delay = delay.min(remaining / 4);
    }
    Some(delay.max(Duration::from_millis(500)))
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
            fingerprint: fp.into(),
            assumed_role_arn: None,
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
            Decision::Refresh(RefreshReason::SecretMissing)
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
            Decision::Refresh(RefreshReason::RenewalDue)
        );
        assert_eq!(
            plan("f", &owned("f", true), t(3600)),
            Decision::Refresh(RefreshReason::Expired)
        );
        assert_eq!(
            plan("g", &owned("f", true), t(10)),
            Decision::Refresh(RefreshReason::SpecChanged)
        );
        assert_eq!(
            plan("f", &owned("f", false), t(10)),
            Decision::Refresh(RefreshReason::SecretModified)
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
            Decision::Refresh(RefreshReason::AnnotationsUnreadable)
        );
    }

    #[test]
    fn a_stale_cache_never_causes_a_second_refresh() {
        let stale = owned("f", true);
        let mut written = issued("f");
        written.issued_at = t(2400);
        written.renewal_time = t(4800);
        written.expiration = t(6000);
        // The cache still shows the old credentials, due at 2400; we wrote new ones at 2400.
        let merged = with_recent_write(stale.clone(), Some(&written));
        assert_eq!(plan("f", &merged, t(2401)), Decision::Wait(written.clone()));
        // A newer Secret in the cache (written by another replica) wins over an old memory.
        let mut old = issued("f");
        old.issued_at = t(-100);
        assert_eq!(with_recent_write(stale.clone(), Some(&old)), stale);
        // Missing and foreign Secrets are never papered over.
        assert_eq!(
            with_recent_write(ObservedSecret::Missing, Some(&written)),
            ObservedSecret::Missing
        );
        // The record of a write is needed only until the cache shows it (or something newer).
        assert!(!shows_write(&stale, &written));
        assert!(shows_write(&stale, &old));
        assert!(!shows_write(&ObservedSecret::Missing, &written));
    }

    #[test]
    fn default_renewal_is_two_thirds_minus_jitter() {
        assert_eq!(renewal_time(t(0), t(3600), None, 0.0), t(2400));
        // Full jitter moves it 10% of the lifetime earlier.
        assert_eq!(renewal_time(t(0), t(3600), None, 1.0), t(2040));
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
    fn retry_delays_grow_and_respect_remaining_validity() {
        let d1 = retry_delay(RetryClass::Transient, 1, None, 1.0).expect("retry");
        let d5 = retry_delay(RetryClass::Transient, 5, None, 1.0).expect("retry");
        assert_eq!(d1, Duration::from_secs(1));
        assert_eq!(d5, Duration::from_secs(16));
        assert_eq!(
            retry_delay(RetryClass::Transient, 40, None, 1.0),
            Some(BACKOFF_CAP)
        );
        let capped = retry_delay(
            RetryClass::Transient,
            40,
            Some(SignedDuration::from_secs(100)),
            1.0,
        );
        assert_eq!(capped, Some(Duration::from_secs(25)));
        assert_eq!(retry_delay(RetryClass::Permanent, 1, None, 0.5), None);
        assert_eq!(
            retry_delay(RetryClass::External, 1, None, 1.0),
            Some(EXTERNAL_RETRY)
        );
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
                // Default: between 56.6% and 66.7% of the lifetime.
                let share = r.duration_since(t(0)).as_millis() as f64 / (lifetime * 1000) as f64;
                prop_assert!(share <= 2.0 / 3.0 + 1e-9);
                prop_assert!(share >= 2.0 / 3.0 - 0.1 - 1e-3);
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

        #[test]
        fn retry_delay_is_bounded(attempt in 0u32..100, remaining in proptest::option::of(1i64..100_000), jitter in 0.0f64..1.0) {
            let d = retry_delay(RetryClass::Transient, attempt, remaining.map(SignedDuration::from_secs), jitter).expect("transient retries");
            prop_assert!(d <= BACKOFF_CAP);
            prop_assert!(d >= Duration::from_millis(500));
        }
    }
}

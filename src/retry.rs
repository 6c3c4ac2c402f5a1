//! Retry vocabulary (pure): how each class of failure is retried, and after how long.

use std::time::Duration;

use jiff::SignedDuration;

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
/// First retry of an externally rejected binding: an admin who just fixed IAM (or RBAC, or the
/// ServiceAccount) should not wait long for the first try after the fix.
pub const EXTERNAL_RETRY_BASE: Duration = Duration::from_secs(5);
/// How often an externally rejected binding is tried again once the backoff has grown: a trust
/// policy nobody fixes costs one STS call per binding every few minutes, no more.
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
    let exp = attempt.saturating_sub(1).min(16);
    let base = match class {
        RetryClass::Permanent => return None,
        RetryClass::External => EXTERNAL_RETRY_BASE
            .saturating_mul(1u32 << exp)
            .min(EXTERNAL_RETRY),
        RetryClass::Transient => BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP),
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
    }

    #[test]
    fn setup_errors_are_retried_quickly_first_then_every_few_minutes() {
        let delays: Vec<u64> = (1..=8)
            .map(|attempt| {
                retry_delay(RetryClass::External, attempt, None, 1.0)
                    .expect("retried")
                    .as_secs()
            })
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        // Jitter spreads a fleet that failed together: at least half of the delay is fixed.
        assert_eq!(
            retry_delay(RetryClass::External, 1, None, 0.0),
            Some(Duration::from_millis(2500))
        );
    }

    proptest! {
        #[test]
        fn retry_delay_is_bounded(attempt in 0u32..100, remaining in proptest::option::of(1i64..100_000), jitter in 0.0f64..1.0) {
            let d = retry_delay(RetryClass::Transient, attempt, remaining.map(SignedDuration::from_secs), jitter).expect("transient retries");
            prop_assert!(d <= BACKOFF_CAP);
            prop_assert!(d >= Duration::from_millis(500));
        }
    }
}

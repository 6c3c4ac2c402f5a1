//! Which STS endpoint to try first (pure). A binding (or the installation) lists its endpoints in
//! order of preference; an endpoint that could not answer (no connection, a timeout, a server
//! error) is tried last for a cool-down, so that the exchanges after a failure go straight to an
//! endpoint that works, and first again once the cool-down has passed: when it is back, it is
//! used again; when it is not, one exchange pays for finding out and the cool-down starts over.
//!
//! The memory is the process's, shared by every binding: endpoints are the admin's (each must be
//! allowed), so one binding's failure at an endpoint is news for all the others.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

/// How long an endpoint that failed is tried last, unless the admin says otherwise
/// (`--sts-endpoint-cooldown`).
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// Most endpoints remembered at once. Only allowed endpoints are ever called, so the admin's
/// allowlist bounds this already; the bound keeps a mistake from growing it.
const MAX_REMEMBERED: usize = 256;

/// When each endpoint last failed.
#[derive(Clone, Debug)]
pub struct EndpointHealth {
    cooldown: Duration,
    failed_at: HashMap<String, Timestamp>,
}

impl EndpointHealth {
    pub fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            failed_at: HashMap::new(),
        }
    }

    /// Whether `endpoint` failed less than the cool-down before `now`.
    pub fn cooling_down(&self, endpoint: &str, now: Timestamp) -> bool {
        self.failed_at.get(endpoint).is_some_and(|at| {
            jiff::SignedDuration::try_from(self.cooldown)
                .ok()
                .and_then(|cooldown| at.checked_add(cooldown).ok())
                .is_some_and(|until| now < until)
        })
    }

    /// The order in which to try `endpoints` (given in order of preference) at `now`: those not
    /// cooling down, in order, then those cooling down, in order. None is ever left out: when
    /// every endpoint failed lately, the first is still tried first.
    pub fn order<'a>(&self, endpoints: &[&'a str], now: Timestamp) -> Vec<&'a str> {
        let (ready, cooling): (Vec<&str>, Vec<&str>) =
            endpoints.iter().partition(|e| !self.cooling_down(e, now));
        ready.into_iter().chain(cooling).collect()
    }

    /// Records that `endpoint` could not answer at `now`.
    pub fn failed(&mut self, endpoint: &str, now: Timestamp) {
        if !self.failed_at.contains_key(endpoint)
            && self.failed_at.len() >= MAX_REMEMBERED
            && let Some(oldest) = self
                .failed_at
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(e, _)| e.clone())
        {
            self.failed_at.remove(&oldest);
        }
        self.failed_at.insert(endpoint.to_string(), now);
    }

    /// Records that `endpoint` answered. Returns whether it had failed before: it is back.
    pub fn answered(&mut self, endpoint: &str) -> bool {
        self.failed_at.remove(endpoint).is_some()
    }

    /// Number of endpoints remembered as failed.
    pub fn remembered(&self) -> usize {
        self.failed_at.len()
    }
}

impl Default for EndpointHealth {
    fn default() -> Self {
        Self::new(DEFAULT_COOLDOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid timestamp")
    }

    const A: &str = "https://sts.eu-west-1.amazonaws.com";
    const B: &str = "https://sts.eu-central-1.amazonaws.com";
    const C: &str = "https://sts.eu-north-1.amazonaws.com";

    #[test]
    fn endpoints_are_tried_in_the_order_given() {
        let health = EndpointHealth::default();
        assert_eq!(health.order(&[A, B, C], t(0)), [A, B, C]);
        assert_eq!(health.order(&[C, A], t(0)), [C, A]);
        assert!(health.order(&[], t(0)).is_empty());
    }

    #[test]
    fn a_failed_endpoint_is_tried_last_during_its_cooldown_then_first_again() {
        let mut health = EndpointHealth::new(Duration::from_secs(30));
        health.failed(A, t(0));
        // The exchanges after the failure skip to B at once...
        assert_eq!(health.order(&[A, B, C], t(1)), [B, C, A]);
        assert_eq!(health.order(&[A, B, C], t(29)), [B, C, A]);
        // ... and go back to A when the cool-down has passed.
        assert_eq!(health.order(&[A, B, C], t(30)), [A, B, C]);
        // A failed again on that try: the cool-down starts over.
        health.failed(A, t(30));
        assert_eq!(health.order(&[A, B, C], t(45)), [B, C, A]);
        // A answered: it is back, and first.
        assert!(health.answered(A));
        assert_eq!(health.order(&[A, B, C], t(46)), [A, B, C]);
        // An endpoint that never failed is not "back".
        assert!(!health.answered(B));
    }

    #[test]
    fn every_endpoint_is_still_tried_when_all_failed_in_order_of_preference() {
        let mut health = EndpointHealth::new(Duration::from_secs(30));
        health.failed(B, t(0));
        health.failed(A, t(1));
        assert_eq!(health.order(&[A, B], t(2)), [A, B]);
        // The order is the binding's, not the failures': another binding lists them reversed.
        assert_eq!(health.order(&[B, A], t(2)), [B, A]);
        // One comes out of its cool-down first.
        assert_eq!(health.order(&[A, B], t(30)), [B, A]);
    }

    #[test]
    fn failures_are_shared_by_every_list_naming_the_endpoint() {
        let mut health = EndpointHealth::default();
        health.failed(A, t(0));
        assert_eq!(health.order(&[C, A, B], t(1)), [C, B, A]);
        assert_eq!(health.order(&[A], t(1)), [A]);
    }

    #[test]
    fn without_a_cooldown_the_order_never_changes() {
        let mut health = EndpointHealth::new(Duration::ZERO);
        health.failed(A, t(0));
        assert_eq!(health.order(&[A, B], t(0)), [A, B]);
    }

    #[test]
    fn the_memory_stays_bounded() {
        let mut health = EndpointHealth::default();
        for i in 0..(MAX_REMEMBERED as i64 + 50) {
            health.failed(&format!("https://sts-{i}.example"), t(i));
        }
        assert_eq!(health.remembered(), MAX_REMEMBERED);
        // The oldest went first; the latest failure is still known.
        assert!(!health.cooling_down("https://sts-0.example", t(MAX_REMEMBERED as i64 + 50)));
        assert!(health.cooling_down(
            &format!("https://sts-{}.example", MAX_REMEMBERED as i64 + 49),
            t(MAX_REMEMBERED as i64 + 50)
        ));
    }
}

//! What the agent remembers (pure): for ≤ [`DECISION_TTL`], that a token (by its SHA-256) was
//! granted a binding as a given pod; and per (binding, pod) the credentials the broker gave,
//! until the operator's renewal time. Neither map keeps a token; both are bounded.
//!
//! While the broker cannot answer (a leader fail-over, an operator restart), a token is answered
//! with the credentials the broker last gave its pod, until they expire: that pod holds them
//! already, so repeating them discloses nothing, and its SDK keeps working through the gap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::broker::wire::{ContainerCredentials, Granted};

/// How long the broker's decision for a token is reused: a deleted pod, or one whose binding
/// changed, is refused at most this long after (plus the broker's own review cache).
pub const DECISION_TTL: Duration = Duration::from_secs(30);
/// Most entries of each map; past it, expired entries go, then everything.
const MAX_ENTRIES: usize = 65_536;

pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PodBinding {
    namespace: String,
    binding: String,
    pod_uid: String,
}

#[derive(Clone)]
struct Held {
    credentials: ContainerCredentials,
    renewal_time: Timestamp,
    expiration: Timestamp,
}

#[derive(Default)]
pub struct Cache {
    decisions: HashMap<(TokenHash, String), (Instant, PodBinding)>,
    credentials: HashMap<PodBinding, Held>,
}

impl Cache {
    /// The credentials to answer with, if the token was granted `binding` less than
    /// [`DECISION_TTL`] ago and the credentials given then are before their renewal time.
    pub fn lookup(
        &self,
        token: &TokenHash,
        binding: &str,
        now: Instant,
        clock: Timestamp,
    ) -> Option<ContainerCredentials> {
        let (at, key) = self.decisions.get(&(*token, binding.to_string()))?;
        if now.saturating_duration_since(*at) >= DECISION_TTL {
            return None;
        }
        let held = self.credentials.get(key)?;
        (clock < held.renewal_time).then(|| held.credentials.clone())
    }

    /// While the broker cannot answer: the credentials last given to the pod this token was
    /// granted as (however long ago), if they have not expired.
    pub fn lookup_during_outage(
        &self,
        token: &TokenHash,
        binding: &str,
        clock: Timestamp,
    ) -> Option<ContainerCredentials> {
        let (_, key) = self.decisions.get(&(*token, binding.to_string()))?;
        let held = self.credentials.get(key)?;
        (clock < held.expiration).then(|| held.credentials.clone())
    }

    /// Remembers the broker's grant for `token`.
    pub fn remember(
        &mut self,
        token: &TokenHash,
        granted: &Granted,
        now: Instant,
        clock: Timestamp,
    ) {
        if self.decisions.len() >= MAX_ENTRIES {
            let credentials = &self.credentials;
            self.decisions.retain(|_, (at, key)| {
                now.saturating_duration_since(*at) < DECISION_TTL
                    || credentials.get(key).is_some_and(|h| clock < h.expiration)
            });
            if self.decisions.len() >= MAX_ENTRIES {
                self.decisions.clear();
            }
        }
        if self.credentials.len() >= MAX_ENTRIES {
            self.credentials.retain(|_, h| clock < h.renewal_time);
            if self.credentials.len() >= MAX_ENTRIES {
                self.credentials.clear();
            }
        }
        let key = PodBinding {
            namespace: granted.namespace.clone(),
            binding: granted.binding.clone(),
            pod_uid: granted.pod_uid.clone(),
        };
        self.decisions
            .insert((*token, granted.binding.clone()), (now, key.clone()));
        self.credentials.insert(
            key,
            Held {
                credentials: granted.credentials.clone(),
                renewal_time: granted.renewal_time,
                expiration: granted.expiration,
            },
        );
    }

    /// Forgets the decision for a token the broker refused.
    pub fn forget(&mut self, token: &TokenHash, binding: &str) {
        self.decisions.remove(&(*token, binding.to_string()));
    }

    pub fn len(&self) -> (usize, usize) {
        (self.decisions.len(), self.credentials.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(pod_uid: &str, key: &str, renewal: Timestamp) -> Granted {
        Granted {
            namespace: "team".into(),
            binding: "b".into(),
            pod_uid: pod_uid.into(),
            renewal_time: renewal,
            expiration: renewal
                .checked_add(jiff::SignedDuration::from_secs(300))
                .expect("time"),
            credentials: ContainerCredentials {
                access_key_id: key.into(),
                secret_access_key: "s".into(),
                token: "t".into(),
                expiration: "2030-01-01T00:00:00Z".into(),
            },
        }
    }

    #[test]
    fn a_grant_is_reused_for_its_token_for_thirty_seconds_and_until_renewal() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        let clock = Timestamp::from_second(1_800_000_000).expect("time");
        let renewal = Timestamp::from_second(1_800_000_600).expect("time");
        let token = token_hash("token-a");
        assert_eq!(cache.lookup(&token, "b", t0, clock), None);
        cache.remember(&token, &granted("pod-1", "AKIA1", renewal), t0, clock);
        let hit = cache.lookup(&token, "b", t0 + Duration::from_secs(29), clock);
        assert_eq!(hit.map(|c| c.access_key_id), Some("AKIA1".to_string()));
        // Another binding, another token: nothing.
        assert_eq!(cache.lookup(&token, "c", t0, clock), None);
        assert_eq!(cache.lookup(&token_hash("token-b"), "b", t0, clock), None);
        // The decision expires after 30 s; the credentials at their renewal time.
        assert_eq!(cache.lookup(&token, "b", t0 + DECISION_TTL, clock), None);
        assert_eq!(cache.lookup(&token, "b", t0, renewal), None);
        // While the broker cannot answer, the pod's own credentials until they expire.
        let later = Timestamp::from_second(1_800_000_700).expect("time");
        assert!(cache.lookup_during_outage(&token, "b", later).is_some());
        let expired = Timestamp::from_second(1_800_000_900).expect("time");
        assert_eq!(cache.lookup_during_outage(&token, "b", expired), None);
        assert_eq!(
            cache.lookup_during_outage(&token_hash("token-b"), "b", later),
            None
        );
        cache.forget(&token, "b");
        assert_eq!(cache.lookup(&token, "b", t0, clock), None);
        assert_eq!(cache.lookup_during_outage(&token, "b", later), None);
    }

    #[test]
    fn pods_are_kept_apart_and_the_hash_is_not_the_token() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        let clock = Timestamp::from_second(1_800_000_000).expect("time");
        let renewal = Timestamp::from_second(1_800_000_600).expect("time");
        cache.remember(
            &token_hash("a"),
            &granted("pod-1", "K1", renewal),
            t0,
            clock,
        );
        cache.remember(
            &token_hash("b"),
            &granted("pod-2", "K2", renewal),
            t0,
            clock,
        );
        assert_eq!(cache.len(), (2, 2));
        assert_eq!(
            cache
                .lookup(&token_hash("a"), "b", t0, clock)
                .map(|c| c.access_key_id),
            Some("K1".into())
        );
        assert_ne!(token_hash("a").to_vec(), b"a".to_vec());
    }
}

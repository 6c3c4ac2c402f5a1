//! The credentials of `Endpoint` bindings, held in the leader's memory only (keyed by binding
//! UID): what the planner observes in place of a Secret, and what the broker serves to agents.
//! Nothing here is ever written to the cluster; a new leader starts empty and exchanges once
//! per `Endpoint` binding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

use crate::credentials::IssuedCredentials;
use crate::secret::{IssuedMeta, ObservedSecret};

/// One binding's current credentials. `Debug` shows no secret (see [`IssuedCredentials`]).
#[derive(Clone, Debug)]
pub struct Held {
    pub namespace: String,
    pub name: String,
    /// Times and fingerprint, as a Secret's annotations would say them.
    pub issued: IssuedMeta,
    pub credentials: IssuedCredentials,
}

/// The store; cheap to share.
#[derive(Clone, Debug, Default)]
pub struct CredentialStore {
    held: Arc<Mutex<HashMap<String, Arc<Held>>>>,
}

impl CredentialStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Held>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `held` as the binding's credentials, and forgets every expired entry (bindings
    /// deleted or moved away from `Endpoint`).
    pub fn put(&self, binding_uid: &str, held: Held, now: Timestamp) {
        let mut map = self.lock();
        map.retain(|_, h| h.issued.expiration > now);
        map.insert(binding_uid.to_string(), Arc::new(held));
    }

    pub fn get(&self, binding_uid: &str) -> Option<Arc<Held>> {
        self.lock().get(binding_uid).cloned()
    }

    pub fn remove(&self, binding_uid: &str) {
        self.lock().remove(binding_uid);
    }

    /// Forgets everything (this replica stopped leading).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the planner sees for the binding: its credentials as a Secret podcreds wrote
    /// would show them, or nothing.
    pub fn observe(&self, binding_uid: &str) -> ObservedSecret {
        match self.get(binding_uid) {
            Some(held) => ObservedSecret::Owned {
                issued: Some(held.issued.clone()),
                intact: true,
            },
            None => ObservedSecret::Missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn held(expiration: Timestamp) -> Held {
        Held {
            namespace: "ns".into(),
            name: "b".into(),
            issued: IssuedMeta {
                issued_at: Timestamp::UNIX_EPOCH,
                expiration,
                renewal_time: expiration,
                fingerprint: "f".into(),
                assumed_role_arn: None,
                chain: None,
                sts_endpoint: None,
            },
            credentials: IssuedCredentials {
                access_key_id: "ASIA".into(),
                secret_access_key: SecretString::from("s".to_string()),
                session_token: SecretString::from("t".to_string()),
                expiration,
                assumed_role_arn: None,
                chain: None,
                sts_endpoint: None,
            },
        }
    }

    #[test]
    fn the_planner_sees_what_is_held_and_expired_entries_go() {
        let store = CredentialStore::default();
        assert_eq!(store.observe("u1"), ObservedSecret::Missing);
        let t = |s| Timestamp::from_second(s).expect("time");
        store.put("u1", held(t(100)), t(0));
        assert!(matches!(
            store.observe("u1"),
            ObservedSecret::Owned { issued: Some(i), intact: true } if i.expiration == t(100)
        ));
        // u1 expired at 100: storing another entry later forgets it.
        store.put("u2", held(t(300)), t(200));
        assert_eq!(store.observe("u1"), ObservedSecret::Missing);
        assert_eq!(store.len(), 1);
        store.clear();
        assert!(store.is_empty());
    }

    #[test]
    fn debug_shows_no_secret() {
        let text = format!("{:?}", held(Timestamp::UNIX_EPOCH));
        assert!(!text.contains("\"s\"") && !text.contains("\"t\""), "{text}");
    }
}

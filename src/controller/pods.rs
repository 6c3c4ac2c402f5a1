//! The pod cache (`--watch-pods`): what the operator keeps of each pod that references a Secret
//! ([`PodUses`]: names, node and per container how it reads which Secret and key; nothing else of
//! the spec), and what it did about the pod (the Event that said it will go stale). Pods that
//! finished or reference no Secret are not kept at all.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use kube::runtime::reflector::ObjectRef;

use crate::api::{AWSRoleBinding, BlockedEviction};
use crate::consumers::{self, Consumers, CredentialSet, PodUses};

/// Only pods that may still run: finished pods consume nothing.
pub const POD_FIELD_SELECTOR: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// What the cache remembers of a pod besides its uses.
#[derive(Clone, Debug)]
struct Entry {
    pod: PodUses,
    notes: Notes,
}

/// What podcreds did about a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// The expiration of the credential set the pod was last warned about.
    pub warned: Option<Timestamp>,
    /// The deadline (what it captured expires) the pod was last evicted for.
    pub evicted_for: Option<Timestamp>,
    /// Its last eviction, refused.
    pub blocked: Option<BlockedEviction>,
    /// When a refused eviction is tried again.
    pub retry_at: Option<Timestamp>,
    /// An eviction of the pod is under way.
    pub in_flight: bool,
}

/// Credential sets remembered per binding: the current one and those before it, enough to know
/// what a pod that started a while ago holds.
pub const SETS_KEPT: usize = 4;

#[derive(Debug, Default)]
struct State {
    /// Namespace -> pod UID -> entry.
    by_namespace: HashMap<String, HashMap<String, Entry>>,
    /// The list in progress (between `Init` and `InitDone`).
    listing: Option<HashMap<String, HashMap<String, Entry>>>,
    synced: bool,
    /// Binding UID -> the credential sets its Secret held, as this process saw them.
    sets: HashMap<String, Vec<CredentialSet>>,
}

/// The pods of one watched scope.
#[derive(Clone, Debug, Default)]
pub struct PodCache {
    state: Arc<Mutex<State>>,
    /// Reconciles a binding now (an eviction of one of its pods ended).
    wake: Arc<Mutex<Option<Wake>>>,
}

type Wake = tokio::sync::mpsc::UnboundedSender<ObjectRef<AWSRoleBinding>>;

/// What changed in the cache: bindings reading these Secrets may have new consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// The (re)list completed: every binding.
    All,
    /// Pods of `namespace` that read these Secrets came, went or changed.
    In {
        namespace: String,
        secrets: BTreeSet<String>,
    },
}

impl PodCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Where [`PodCache::wake`] sends bindings.
    pub fn wake_through(&self, wake: Wake) {
        if let Ok(mut w) = self.wake.lock() {
            *w = Some(wake);
        }
    }

    /// Reconciles `binding` soon.
    pub fn wake(&self, binding: ObjectRef<AWSRoleBinding>) {
        if let Ok(w) = self.wake.lock()
            && let Some(w) = w.as_ref()
        {
            let _ = w.send(binding);
        }
    }

    /// Whether the cache holds its first complete list.
    pub fn synced(&self) -> bool {
        self.lock().synced
    }

    /// The consumers of Secret `secret` in `namespace`.
    pub fn consumers(&self, namespace: &str, secret: &str) -> Consumers {
        let state = self.lock();
        let pods = state
            .by_namespace
            .get(namespace)
            .into_iter()
            .flat_map(|pods| pods.values().map(|e| &e.pod));
        consumers::consumers(pods, namespace, secret)
    }

    /// What podcreds did about pod `uid` of `namespace`.
    pub fn notes(&self, namespace: &str, uid: &str) -> Notes {
        self.lock()
            .by_namespace
            .get(namespace)
            .and_then(|pods| pods.get(uid))
            .map(|e| e.notes.clone())
            .unwrap_or_default()
    }

    /// Changes the notes on pod `uid` of `namespace`, if it is still cached.
    pub fn note(&self, namespace: &str, uid: &str, change: impl FnOnce(&mut Notes)) {
        if let Some(entry) = self
            .lock()
            .by_namespace
            .get_mut(namespace)
            .and_then(|pods| pods.get_mut(uid))
        {
            change(&mut entry.notes);
        }
    }

    /// Records that binding `binding`'s Secret holds `current` (and, if known, held `previous`
    /// before it); returns the sets remembered for it. Bindings whose every remembered set
    /// expired long ago (deleted ones) are forgotten.
    pub fn remember_sets(
        &self,
        binding: &str,
        current: CredentialSet,
        previous: Option<CredentialSet>,
    ) -> Vec<CredentialSet> {
        let mut state = self.lock();
        let stale_before = current
            .issued_at
            .checked_sub(jiff::SignedDuration::from_hours(48))
            .unwrap_or(current.issued_at);
        state
            .sets
            .retain(|_, sets| sets.iter().any(|s| s.expiration > stale_before));
        let sets = state.sets.entry(binding.to_string()).or_default();
        sets.extend(previous);
        sets.push(current);
        sets.sort();
        sets.dedup();
        // Sets written after the current one are not real (a spec change rolled back?): the
        // Secret holds the current one.
        sets.retain(|s| s.issued_at <= current.issued_at);
        let excess = sets.len().saturating_sub(SETS_KEPT);
        sets.drain(..excess);
        sets.clone()
    }

    /// Applies one watch event; says what changed, if anything that matters.
    pub fn apply(&self, event: watcher::Event<Pod>) -> Option<Changed> {
        let mut state = self.lock();
        match event {
            watcher::Event::Init => {
                state.listing = Some(HashMap::new());
                None
            }
            watcher::Event::InitApply(pod) => {
                let uses = PodUses::of(&pod)?;
                let notes = state
                    .by_namespace
                    .get(&uses.namespace)
                    .and_then(|p| p.get(&uses.uid))
                    .map(|e| e.notes.clone())
                    .unwrap_or_default();
                state
                    .listing
                    .get_or_insert_with(HashMap::new)
                    .entry(uses.namespace.clone())
                    .or_default()
                    .insert(uses.uid.clone(), Entry { pod: uses, notes });
                None
            }
            watcher::Event::InitDone => {
                state.by_namespace = state.listing.take().unwrap_or_default();
                state.synced = true;
                Some(Changed::All)
            }
            watcher::Event::Apply(pod) => {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                match PodUses::of(&pod) {
                    Some(uses) => {
                        let pods = state.by_namespace.entry(namespace.clone()).or_default();
                        let secrets = owned(uses.secrets());
                        match pods.get_mut(&uid) {
                            Some(entry) if entry.pod == uses => None,
                            Some(entry) => {
                                let mut secrets = secrets;
                                secrets.extend(owned(entry.pod.secrets()));
                                entry.pod = uses;
                                Some(Changed::In { namespace, secrets })
                            }
                            None => {
                                pods.insert(
                                    uid,
                                    Entry {
                                        pod: uses,
                                        notes: Notes::default(),
                                    },
                                );
                                Some(Changed::In { namespace, secrets })
                            }
                        }
                    }
                    None => forget(&mut state, &namespace, &uid),
                }
            }
            watcher::Event::Delete(pod) => {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                forget(&mut state, &namespace, &uid)
            }
        }
    }
}

fn owned(secrets: BTreeSet<&str>) -> BTreeSet<String> {
    secrets.into_iter().map(str::to_string).collect()
}

fn forget(state: &mut State, namespace: &str, uid: &str) -> Option<Changed> {
    let pods = state.by_namespace.get_mut(namespace)?;
    let entry = pods.remove(uid)?;
    if pods.is_empty() {
        state.by_namespace.remove(namespace);
    }
    Some(Changed::In {
        namespace: namespace.to_string(),
        secrets: owned(entry.pod.secrets()),
    })
}

/// Watches `pods` into a new cache; the stream must be polled for the cache to fill, and
/// yields what changed.
pub fn watch(
    pods: Api<Pod>,
) -> (
    PodCache,
    impl futures::Stream<Item = Result<Changed, watcher::Error>> + Send,
) {
    let cache = PodCache::default();
    let fill = cache.clone();
    let stream = watcher(pods, watcher::Config::default().fields(POD_FIELD_SELECTOR))
        .backoff(super::watches::WatchBackoff::default())
        .filter_map(move |event| {
            let changed = match event {
                Ok(event) => fill.apply(event).map(Ok),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(changed)
        });
    (cache, stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, uid: &str, env_from: &str, started: Option<&str>) -> Pod {
        let status = match started {
            Some(at) => serde_json::json!({"phase": "Running", "containerStatuses": [
                {"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"running": {"startedAt": at}}}]}),
            None => serde_json::json!({"phase": "Pending"}),
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"containers": [{"name": "c", "image": "i",
                "envFrom": [{"secretRef": {"name": env_from}}]}]},
            "status": status,
        }))
        .expect("pod")
    }

    #[test]
    fn the_sets_of_a_binding_are_remembered_a_few_at_a_time() {
        let cache = PodCache::default();
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).expect("time");
        let set = |i: i64| CredentialSet {
            issued_at: t(i * 100),
            expiration: t(i * 100 + 150),
        };
        assert_eq!(cache.remember_sets("b", set(1), None), [set(1)]);
        assert_eq!(cache.remember_sets("b", set(1), None), [set(1)]);
        assert_eq!(
            cache.remember_sets("b", set(3), Some(set(2))),
            [set(1), set(2), set(3)]
        );
        for i in 4..9 {
            cache.remember_sets("b", set(i), None);
        }
        assert_eq!(
            cache.remember_sets("b", set(8), None),
            [set(5), set(6), set(7), set(8)]
        );
        // Another binding's: its own; one whose sets all expired long ago is forgotten.
        assert_eq!(cache.remember_sets("c", set(5000), None), [set(5000)]);
        assert_eq!(cache.lock().sets.len(), 1);
    }

    fn changed(secret: &str) -> Option<Changed> {
        Some(Changed::In {
            namespace: "ns".into(),
            secrets: BTreeSet::from([secret.to_string()]),
        })
    }

    #[test]
    fn the_cache_follows_pods_and_says_what_changed() {
        let cache = PodCache::default();
        assert!(!cache.synced());
        assert_eq!(cache.apply(watcher::Event::Init), None);
        assert_eq!(
            cache.apply(watcher::Event::InitApply(pod("a", "1", "app", None))),
            None
        );
        assert_eq!(cache.apply(watcher::Event::InitDone), Some(Changed::All));
        assert!(cache.synced());
        assert_eq!(cache.consumers("ns", "app").stale.len(), 1);

        // The same uses again: nothing to say. A container starting is news.
        assert_eq!(
            cache.apply(watcher::Event::Apply(pod("a", "1", "app", None))),
            None
        );
        let started = Some("2027-01-15T08:00:00Z");
        assert_eq!(
            cache.apply(watcher::Event::Apply(pod("a", "1", "app", started))),
            changed("app")
        );
        cache.note("ns", "1", |n| n.warned = Some(Timestamp::UNIX_EPOCH));
        assert_eq!(cache.notes("ns", "1").warned, Some(Timestamp::UNIX_EPOCH));
        // A relist keeps what was done about pods still there.
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(pod("a", "1", "app", started)));
        cache.apply(watcher::Event::InitDone);
        assert_eq!(cache.notes("ns", "1").warned, Some(Timestamp::UNIX_EPOCH));

        // Switching Secrets wakes the bindings of both.
        assert_eq!(
            cache.apply(watcher::Event::Apply(pod("a", "1", "db", started))),
            Some(Changed::In {
                namespace: "ns".into(),
                secrets: BTreeSet::from(["app".to_string(), "db".to_string()]),
            })
        );
        assert_eq!(
            cache.apply(watcher::Event::Delete(pod("a", "1", "db", started))),
            changed("db")
        );
        assert_eq!(cache.consumers("ns", "db"), Consumers::default());
        assert_eq!(cache.notes("ns", "1"), Notes::default());
        // A pod that was never kept goes without news.
        assert_eq!(
            cache.apply(watcher::Event::Delete(pod("b", "2", "db", None))),
            None
        );
    }
}

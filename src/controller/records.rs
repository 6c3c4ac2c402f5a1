//! A cache of podcreds' own: one compact record per watched object, keyed by namespace and
//! name, fed by a watch stream. kube-runtime's reflector would keep a copy of every object (and
//! an object reference as its key); podcreds reads a few fields of each, read once here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::watcher;

type ByName<R> = HashMap<Box<str>, Arc<R>>;
type ByNamespace<R> = HashMap<Box<str>, ByName<R>>;

/// Records of type `R`, each read from one object by the function its watch events are applied
/// with.
pub struct Records<R> {
    state: Arc<RwLock<State<R>>>,
}

struct State<R> {
    live: ByNamespace<R>,
    /// The list being read after a (re)connect: it replaces `live` once complete, so that an
    /// object deleted while the watch was down goes, and readers never see half a list.
    relisting: Option<ByNamespace<R>>,
}

impl<R> Clone for Records<R> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<R> Default for Records<R> {
    fn default() -> Self {
        Self {
            state: Arc::new(RwLock::new(State {
                live: HashMap::new(),
                relisting: None,
            })),
        }
    }
}

impl<R> Records<R> {
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State<R>> {
        // A panic elsewhere while holding the lock leaves whole records behind: keep going.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State<R>> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of `name` in `namespace` (`""` for a cluster-scoped object).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<R>> {
        self.read_state().live.get(namespace)?.get(name).cloned()
    }

    /// How many records the cache holds.
    pub fn len(&self) -> usize {
        self.read_state().live.values().map(HashMap::len).sum()
    }

    /// Whether the cache holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a watch stream passes each event to (`inspect`): applies it, errors aside.
    pub fn feed<K: Resource, E, F: Fn(&K) -> R>(
        &self,
        read: F,
    ) -> impl Fn(&Result<watcher::Event<K>, E>) + use<K, E, F, R> {
        let records = self.clone();
        move |event| {
            if let Ok(event) = event {
                records.apply(event, &read);
            }
        }
    }

    /// Applies one watch event, reading each object it carries with `read`.
    pub fn apply<K: Resource>(&self, event: &watcher::Event<K>, read: impl Fn(&K) -> R) {
        let key = |object: &K| -> (Box<str>, Box<str>) {
            let meta = object.meta();
            (
                meta.namespace.as_deref().unwrap_or_default().into(),
                meta.name.as_deref().unwrap_or_default().into(),
            )
        };
        // Records are read before the lock is taken: reading may walk what a tenant made large
        // (a Secret's managed fields), and every reconciliation's lookup would wait for it.
        let change = match event {
            watcher::Event::Apply(object) => Change::Live(key(object), read(object)),
            watcher::Event::InitApply(object) => Change::Listed(key(object), read(object)),
            watcher::Event::Delete(object) => Change::Gone(key(object)),
            watcher::Event::Init => Change::Relist,
            watcher::Event::InitDone => Change::ListDone,
        };
        let mut state = self.write_state();
        match change {
            Change::Live((namespace, name), record) => {
                insert(&mut state.live, namespace, name, record);
            }
            Change::Gone((namespace, name)) => {
                if let Some(names) = state.live.get_mut(&namespace) {
                    names.remove(&name);
                    if names.is_empty() {
                        state.live.remove(&namespace);
                    }
                }
            }
            Change::Relist => state.relisting = Some(HashMap::new()),
            Change::Listed((namespace, name), record) => insert(
                state.relisting.get_or_insert_with(HashMap::new),
                namespace,
                name,
                record,
            ),
            Change::ListDone => {
                if let Some(listed) = state.relisting.take() {
                    state.live = listed;
                }
            }
        }
    }
}

/// A watch event as it changes the records.
enum Change<R> {
    Live((Box<str>, Box<str>), R),
    Gone((Box<str>, Box<str>)),
    Relist,
    Listed((Box<str>, Box<str>), R),
    ListDone,
}

fn insert<R>(map: &mut ByNamespace<R>, namespace: Box<str>, name: Box<str>, record: R) {
    map.entry(namespace)
        .or_default()
        .insert(name, Arc::new(record));
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn object(namespace: &str, name: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                resource_version: Some(value.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn value(records: &Records<String>, namespace: &str, name: &str) -> Option<String> {
        records.get(namespace, name).map(|v| v.to_string())
    }

    fn version(object: &ConfigMap) -> String {
        object.metadata.resource_version.clone().unwrap_or_default()
    }

    #[test]
    fn applies_and_deletes_by_namespace_and_name() {
        let records = Records::default();
        records.apply(&watcher::Event::Apply(object("a", "x", "1")), version);
        records.apply(&watcher::Event::Apply(object("b", "x", "2")), version);
        records.apply(&watcher::Event::Apply(object("a", "x", "3")), version);
        assert_eq!(value(&records, "a", "x"), Some("3".to_string()));
        assert_eq!(value(&records, "b", "x"), Some("2".to_string()));
        assert_eq!(records.get("a", "y"), None);
        records.apply(&watcher::Event::Delete(object("a", "x", "3")), version);
        assert_eq!(records.get("a", "x"), None);
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn a_relist_replaces_the_records_only_once_complete() {
        let records = Records::default();
        records.apply(&watcher::Event::Apply(object("a", "gone", "1")), version);
        records.apply(&watcher::Event::Apply(object("a", "kept", "1")), version);
        records.apply(&watcher::Event::<ConfigMap>::Init, version);
        records.apply(
            &watcher::Event::InitApply(object("a", "kept", "2")),
            version,
        );
        // Until the list is complete, readers see the records as they were.
        assert_eq!(value(&records, "a", "gone"), Some("1".to_string()));
        assert_eq!(value(&records, "a", "kept"), Some("1".to_string()));
        records.apply(&watcher::Event::<ConfigMap>::InitDone, version);
        assert_eq!(records.get("a", "gone"), None);
        assert_eq!(value(&records, "a", "kept"), Some("2".to_string()));
        assert_eq!(records.len(), 1);
    }
}

//! While a binding is blocked by a Secret it does not own, a watch on that one name (a
//! metadata-only watch with a field selector) brings the binding back as soon as the Secret is
//! gone. The Secret is not labelled, so the operator's own Secret watch never sees it, and the
//! periodic recheck alone takes up to two minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

use super::quota::Bound;
use crate::api::AWSRoleBinding;

/// Most conflict watches at once, and per namespace; beyond these, blocked bindings rely on the
/// periodic recheck (each watch is a connection to the apiserver, and tenants decide how many
/// conflicts exist: one namespace cannot take the watches every other namespace would need).
pub const WATCHES: Bound = Bound::shared(64, 8);

/// One watched conflict: the Secret's namespace and name, and the task watching it.
struct Watch {
    namespace: String,
    secret_name: String,
    task: tokio::task::AbortHandle,
}

/// Whether a new watch for `namespace` fits next to the `active` ones.
fn admits(active: &HashMap<String, Watch>, namespace: &str) -> bool {
    let held_by_namespace = active.values().filter(|w| w.namespace == namespace).count();
    WATCHES.admits(active.len(), held_by_namespace)
}

/// The conflict watches of one scope; wake-ups go to that scope's controller.
pub struct ConflictWatches {
    wake: UnboundedSender<ObjectRef<AWSRoleBinding>>,
    /// By binding UID.
    active: Arc<Mutex<HashMap<String, Watch>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl ConflictWatches {
    /// Conflict watches that wake bindings through `wake` when their conflict is gone.
    pub fn new(wake: UnboundedSender<ObjectRef<AWSRoleBinding>>) -> Self {
        Self {
            wake,
            active: Arc::default(),
        }
    }

    /// Watches Secret `namespace/secret_name` until it is gone, then wakes `binding`. Watching
    /// the same name for the same binding again is a no-op.
    pub fn watch(
        &self,
        client: kube::Client,
        binding: ObjectRef<AWSRoleBinding>,
        uid: &str,
        namespace: &str,
        secret_name: &str,
    ) {
        let mut active = lock(&self.active);
        if active
            .get(uid)
            .is_some_and(|w| w.secret_name == secret_name && !w.task.is_finished())
        {
            return;
        }
        if let Some(old) = active.remove(uid) {
            old.task.abort();
        }
        if !admits(&active, namespace) {
            debug!(binding = %binding, "too many conflicts watched; relying on the recheck");
            return;
        }
        let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={secret_name}"));
        let wake = self.wake.clone();
        let registry = self.active.clone();
        let key = uid.to_string();
        let task = tokio::spawn(async move {
            if secret_gone(api, config).await {
                let _ = wake.send(binding);
            }
            lock(&registry).remove(&key);
        });
        active.insert(
            uid.to_string(),
            Watch {
                namespace: namespace.to_string(),
                secret_name: secret_name.to_string(),
                task: task.abort_handle(),
            },
        );
    }

    /// Stops watching for `uid` (its conflict is over, or it was deleted).
    pub fn stop(&self, uid: &str) {
        if let Some(watch) = lock(&self.active).remove(uid) {
            watch.task.abort();
        }
    }

    /// Conflicts watched now.
    pub fn len(&self) -> usize {
        lock(&self.active).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolves true once the watched Secret is deleted (or found missing by a fresh list).
async fn secret_gone(api: Api<PartialObjectMeta<Secret>>, config: watcher::Config) -> bool {
    let events = watcher(api, config).default_backoff();
    futures::pin_mut!(events);
    let mut present = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => present = false,
            Ok(watcher::Event::InitApply(_) | watcher::Event::Apply(_)) => present = true,
            Ok(watcher::Event::InitDone) if !present => return true,
            Ok(watcher::Event::Delete(_)) => return true,
            Ok(watcher::Event::InitDone) => {}
            Err(e) => debug!(error = %e, "conflict watch interrupted; retrying"),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(namespace: &str, name: &str) -> Watch {
        Watch {
            namespace: namespace.into(),
            secret_name: name.into(),
            task: tokio::spawn(futures::future::pending::<()>()).abort_handle(),
        }
    }

    #[tokio::test]
    async fn one_namespace_cannot_take_every_conflict_watch() {
        let mut active = HashMap::new();
        let mut taken = 0;
        for i in 0..100 {
            if admits(&active, "greedy") {
                active.insert(format!("g{i}"), watch("greedy", &format!("s{i}")));
                taken += 1;
            }
        }
        assert_eq!(taken, WATCHES.per_namespace);
        // Other namespaces still get theirs, up to the whole.
        let mut others = 0;
        for ns in 0..20 {
            for i in 0..10 {
                let namespace = format!("ns{ns}");
                if admits(&active, &namespace) {
                    active.insert(format!("{namespace}-{i}"), watch(&namespace, "s"));
                    others += 1;
                }
            }
        }
        assert_eq!(taken + others, WATCHES.total);
        for w in active.values() {
            w.task.abort();
        }
    }
}

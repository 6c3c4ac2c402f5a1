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

use crate::api::AWSRoleBinding;

/// Most conflict watches at once; beyond this, blocked bindings rely on the periodic recheck
/// (each watch is a connection to the apiserver, and tenants decide how many conflicts exist).
const MAX_WATCHES: usize = 64;

/// One watched conflict: the Secret name, and the task watching it.
struct Watch {
    secret_name: String,
    task: tokio::task::AbortHandle,
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
        if active.len() >= MAX_WATCHES {
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

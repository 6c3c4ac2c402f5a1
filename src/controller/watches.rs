//! The watch plumbing: one kube-runtime controller per watched scope, fed by the binding watch,
//! the label-selected metadata-only Secret watch and the ServiceAccount watch; caches that say
//! when they are complete; watches that retry by themselves; leadership changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::Api;
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{debug, info, warn};

use super::conflicts::ConflictWatches;
use super::context::{Context, NamespaceRecord, Shared};
use super::fairness::FairShares;
use super::records::Records;
use super::{error_policy, reconcile};
use crate::api::{AWSRoleBinding, MAX_REFRESH_REQUEST_LEN, REFRESH_REQUEST_ANNOTATION};
use crate::secret::{MANAGED_SELECTOR, SecretRecord};

/// Passes a reflector's events on and sets `listed` once the initial list is in its store.
///
/// A watch channel rather than `Store::wait_until_ready`: kube-runtime's readiness future wakes
/// only the last of several tasks waiting on it, so reconciliations waiting there next to the
/// readiness probe could sleep forever (seen after a restart with bindings already present).
fn tell_when_listed<K, S>(
    stream: S,
    listed: tokio::sync::watch::Sender<bool>,
) -> impl futures::Stream<Item = S::Item>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream.inspect(move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            listed.send_replace(true);
        }
    })
}

/// Drops what the operator never reads from a cached binding: managed fields (at thousands of
/// bindings a large share of the cache), and labels and annotations, which anyone who may edit a
/// binding could make large. Only a refresh request survives, cut to a bounded length.
fn compact_binding(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.labels = None;
    meta.annotations = meta
        .annotations
        .take()
        .and_then(|mut a| a.remove_entry(REFRESH_REQUEST_ANNOTATION))
        .map(|(key, value)| {
            let value = crate::text::cut(&value, MAX_REFRESH_REQUEST_LEN).to_string();
            std::collections::BTreeMap::from([(key, value)])
        });
}

/// Most bytes a binding's spec may take, as JSON. Every field is bounded by the CRD, but all of
/// them at their maximum (five hops of 50 tags, transitive keys, ARNs and external IDs of the
/// longest length, SAML tags) make about 200 KB, and every replica caches every binding. No
/// binding STS accepts comes near this bound: a hop's tags and session policy must pack into
/// STS's `PackedPolicySize`.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;

/// Set by the cache (never kept from the apiserver) on a binding whose spec it dropped for being
/// larger than [`MAX_SPEC_BYTES`]: the spec's size in bytes.
pub const OVERSIZED_SPEC_ANNOTATION: &str = "podcreds.dev/oversized-spec-bytes";

/// Replaces the spec of a cached binding larger than [`MAX_SPEC_BYTES`] with a stub (the
/// ServiceAccount and Secret names), marked with [`OVERSIZED_SPEC_ANNOTATION`]: such a binding is
/// refused (`InvalidSpec`) and costs the cache next to nothing. Runs after [`compact_binding`].
fn bound_spec(binding: &mut AWSRoleBinding) {
    let size = serde_json::to_vec(&binding.spec).map_or(usize::MAX, |v| v.len());
    if size <= MAX_SPEC_BYTES {
        return;
    }
    let stub = serde_json::json!({
        "serviceAccountName": binding.spec.service_account_name,
        "secretName": binding.spec.secret_name,
    });
    match serde_json::from_value(stub) {
        Ok(spec) => binding.spec = spec,
        Err(e) => {
            warn!(error = %e, "could not drop an oversized binding spec from the cache");
            return;
        }
    }
    binding
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(OVERSIZED_SPEC_ANNOTATION.to_string(), size.to_string());
}

/// The size of the spec the cache dropped from `binding`, if it did.
pub fn oversized_spec(binding: &AWSRoleBinding) -> Option<usize> {
    binding
        .metadata
        .annotations
        .as_ref()?
        .get(OVERSIZED_SPEC_ANNOTATION)?
        .parse()
        .ok()
}

/// The watch event `event` as the installation `installation` must see it: a binding of another
/// installation is not there (and one that moved to another is gone), exactly as a label
/// selector on the apiserver would show it.
fn own_bindings(
    installation: &str,
    event: watcher::Event<AWSRoleBinding>,
) -> Option<watcher::Event<AWSRoleBinding>> {
    let owns = |b: &AWSRoleBinding| {
        crate::installation::owns(
            installation,
            b.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::installation::LABEL))
                .map(String::as_str),
        )
    };
    match event {
        watcher::Event::Apply(b) if !owns(&b) => Some(watcher::Event::Delete(b)),
        watcher::Event::InitApply(b) if !owns(&b) => None,
        other => Some(other),
    }
}

/// Keeps of a Secret's metadata only what maps it to the binding to reconcile: its name,
/// namespace and controller owner reference. A tenant who may edit the Secret cannot make one
/// change wake every binding of the namespace through owner references of its own.
fn only_controller(meta: &mut ObjectMeta) {
    let controller = crate::secret::controller_of(meta).cloned();
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        owner_references: controller.map(|c| vec![c]),
        ..ObjectMeta::default()
    };
}

/// Forgets what this process remembers about a binding once its deletion is seen, and stops
/// watching what blocked it.
fn forget_deleted(
    shared: Arc<Shared>,
    conflicts: Arc<ConflictWatches>,
    shares: FairShares,
) -> impl FnMut(&Result<watcher::Event<AWSRoleBinding>, watcher::Error>) {
    move |event| {
        if let Ok(watcher::Event::Delete(binding)) = event
            && let Some(uid) = binding.metadata.uid.as_deref()
        {
            let reference = ObjectRef::from_obj(binding);
            shared.memory.forget(uid);
            conflicts.stop(uid);
            shares.forget(
                binding.metadata.namespace.as_deref().unwrap_or_default(),
                &reference,
            );
        }
    }
}

/// Backoff between attempts to re-establish a broken watch: quick (a restarted apiserver is back
/// in seconds and every missed event delays a refresh), capped low, reset by any success.
#[derive(Clone, Copy, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = (current * 2).min(Self::MAX);
        Some(current)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

/// Logs and drops the errors of a watch stream that retries by itself (with [`WatchBackoff`]).
/// Passed on, each error would make the controller pause *all* its triggers with a growing
/// backoff of its own, which after an apiserver restart stalls every watch for minutes.
fn retried_quietly<K: Send, S>(
    stream: S,
    kind: &'static str,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send
where
    S: futures::Stream<Item = Result<K, watcher::Error>> + Send,
{
    stream.filter_map(move |item| async move {
        match item {
            Ok(object) => Some(Ok(object)),
            Err(e) => {
                warn!(kind, error = %e, "watch interrupted; re-establishing");
                None
            }
        }
    })
}

/// Yields each time `leader` turns true.
fn became_leader(
    leader: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(leader, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                info!("became leader; reconciling every binding");
                return Some(((), rx));
            }
        }
    })
}

/// The stores the admin server and metrics read; filled in as scopes start.
pub type BindingStores = Arc<Mutex<Vec<Store<AWSRoleBinding>>>>;

/// Runs one controller per watched scope until `shutdown` resolves. `ready` is told once every
/// cache has synced.
pub async fn run(
    shared: Arc<Shared>,
    stores: BindingStores,
    ready: tokio::sync::watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let scopes: Vec<Option<String>> = if shared.settings.namespaces.is_empty() {
        vec![None]
    } else {
        shared
            .settings
            .namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    let mut waits = Vec::new();
    let mut runs = Vec::new();
    // Credential sources are cluster-scoped and their Secrets live in the operator's namespace:
    // one watch for every scope, whose changes each scope maps to its own bindings.
    let (source_changes, _) = tokio::sync::broadcast::channel(256);
    let source_watch = tokio::spawn(super::sources::run(
        shared.clone(),
        source_changes.clone(),
        shutdown.clone(),
    ));
    {
        let mut synced = shared.sources.synced.clone();
        waits.push(Box::pin(async move {
            let _ = synced.wait_for(|s| *s).await;
        })
            as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>);
    }
    for scope in scopes {
        let client = shared.client.clone();
        let (bindings, secrets, accounts): (
            Api<AWSRoleBinding>,
            Api<PartialObjectMeta<Secret>>,
            Api<PartialObjectMeta<ServiceAccount>>,
        ) = match &scope {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client),
            ),
        };

        // Pods (`--watch-pods`): only how they reference Secrets. Reconciliations never wait for
        // this cache (without pod RBAC it never fills): consumers are reported once it has.
        let (pod_cache, pod_changes) = if shared.settings.watch_pods {
            let pods: Api<Pod> = match &scope {
                Some(ns) => Api::namespaced(shared.client.clone(), ns),
                None => Api::all(shared.client.clone()),
            };
            let (cache, changes) = super::pods::watch(pods);
            (Some(cache), retried_quietly(changes, "Pod").boxed())
        } else {
            (None, futures::stream::empty().boxed())
        };

        let secret_records = Records::default();
        let (secrets_listed, secrets_synced) = tokio::sync::watch::channel(false);
        let secret_stream = tell_when_listed(
            watcher(secrets, watcher::Config::default().labels(MANAGED_SELECTOR))
                .backoff(WatchBackoff::default())
                .inspect(
                    secret_records
                        .feed(|s: &PartialObjectMeta<Secret>| SecretRecord::read(&s.metadata)),
                )
                .modify(|s: &mut PartialObjectMeta<Secret>| only_controller(&mut s.metadata)),
            secrets_listed,
        )
        .touched_objects();
        let secret_stream = retried_quietly(secret_stream, "Secret");
        // ServiceAccounts are only a trigger (a missing account appearing): no cache.
        let account_stream = retried_quietly(
            watcher(accounts, watcher::Config::default())
                .backoff(WatchBackoff::default())
                .touched_objects(),
            "ServiceAccount",
        );

        // Namespaces: their role allowlist annotation, re-checked on every reconciliation; a
        // change wakes the namespace's bindings.
        let namespace_records = Records::default();
        let (namespaces_listed, namespaces_synced) = tokio::sync::watch::channel(false);
        let namespace_config = match &scope {
            Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default(),
        };
        let namespace_api: Api<PartialObjectMeta<Namespace>> = Api::all(shared.client.clone());
        let namespace_stream =
            tell_when_listed(
                watcher(namespace_api, namespace_config)
                    .backoff(WatchBackoff::default())
                    .inspect(namespace_records.feed(|n: &PartialObjectMeta<Namespace>| {
                        NamespaceRecord::read(&n.metadata)
                    })),
                namespaces_listed,
            )
            // The initial list is no news: every binding is reconciled at start anyway.
            .filter_map(|event| async move {
                match event {
                    Ok(watcher::Event::Apply(namespace)) => Some(Ok(namespace)),
                    Err(e) => Some(Err(e)),
                    Ok(_) => None,
                }
            });
        let namespace_stream = retried_quietly(namespace_stream, "Namespace");

        // Bindings to reconcile now: their conflict is gone, or a slot of their namespace freed.
        let (wake, woken) = tokio::sync::mpsc::unbounded_channel();
        if let Some(pods) = &pod_cache {
            pods.wake_through(wake.clone());
        }
        let conflicts = Arc::new(ConflictWatches::new(wake.clone()));
        let shares = FairShares::new(
            usize::from(shared.settings.concurrency),
            usize::from(shared.settings.namespace_concurrency),
            wake,
        );
        let (binding_store, binding_writer) = reflector::store();
        let (bindings_listed, bindings_synced) = tokio::sync::watch::channel(false);
        // Only this installation's bindings: selected by the apiserver where a label selector can
        // say which, and here otherwise (the default installation's own are the unlabelled ones).
        let installation = shared.settings.installation.clone();
        let binding_config = match crate::installation::selector(&installation) {
            Some(selector) => watcher::Config::default().labels(&selector),
            None => watcher::Config::default(),
        };
        let binding_stream = tell_when_listed(
            reflector::reflector(
                binding_writer,
                watcher(bindings, binding_config)
                    .backoff(WatchBackoff::default())
                    .filter_map(move |event| {
                        futures::future::ready(match event {
                            Ok(event) => own_bindings(&installation, event).map(Ok),
                            Err(e) => Some(Err(e)),
                        })
                    })
                    .modify(|b: &mut AWSRoleBinding| {
                        compact_binding(&mut b.metadata);
                        bound_spec(b);
                    }),
            ),
            bindings_listed,
        )
        .inspect(forget_deleted(
            shared.clone(),
            conflicts.clone(),
            shares.clone(),
        ))
        .touched_objects();
        let binding_stream = retried_quietly(binding_stream, "AWSRoleBinding");
        let controller = Controller::for_stream(binding_stream, binding_store.clone());
        if let Ok(mut s) = stores.lock() {
            s.push(binding_store.clone());
        }
        let waiting = shared.clone();
        let controller = controller
            .owns_stream(secret_stream)
            .watches_stream(
                account_stream,
                move |account: PartialObjectMeta<ServiceAccount>| {
                    waiting.memory.take_waiting(
                        account.metadata.namespace.as_deref().unwrap_or_default(),
                        account.metadata.name.as_deref().unwrap_or_default(),
                    )
                },
            )
            .watches_stream(namespace_stream, {
                let bindings = binding_store.clone();
                move |namespace: PartialObjectMeta<Namespace>| {
                    let name = namespace.metadata.name.unwrap_or_default();
                    bindings
                        .state()
                        .iter()
                        .filter(|b| b.metadata.namespace.as_deref() == Some(name.as_str()))
                        .map(|b| ObjectRef::from_obj(b.as_ref()))
                        .collect::<Vec<_>>()
                }
            })
            .with_config(controller::Config::default().concurrency(shared.settings.concurrency))
            .reconcile_all_on(became_leader(shared.leader.clone()))
            .reconcile_on(futures::stream::unfold(woken, |mut rx| async move {
                rx.recv().await.map(|binding| (binding, rx))
            }))
            .reconcile_on(bindings_of_changed_sources(
                source_changes.subscribe(),
                binding_store.clone(),
            ))
            .reconcile_on(bindings_of_changed_pods(pod_changes, binding_store.clone()))
            .graceful_shutdown_on(shutdown.clone());

        let ctx = Arc::new(Context {
            shared: shared.clone(),
            secrets: secret_records,
            secrets_synced: secrets_synced.clone(),
            namespaces: namespace_records,
            namespaces_synced: namespaces_synced.clone(),
            conflicts,
            shares,
            pods: pod_cache,
        });
        waits.push(Box::pin(async move {
            let _ = bindings_synced.clone().wait_for(|synced| *synced).await;
            let _ = secrets_synced.clone().wait_for(|synced| *synced).await;
            let _ = namespaces_synced.clone().wait_for(|synced| *synced).await;
        }));
        let scope_name = scope.clone().unwrap_or_else(|| "all namespaces".into());
        let pump = ctx.shares.clone().pump(crate::plan::PARKED_RECHECK);
        runs.push(async move {
            info!(scope = %scope_name, "controller started");
            let run = controller
                .run(reconcile, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(e) = result {
                        debug!(error = %e, "reconcile loop error");
                    }
                });
            // The pump runs for ever: it stops with the controller.
            futures::pin_mut!(run, pump);
            futures::future::select(run, pump).await;
        });
    }
    let readiness = async move {
        futures::future::join_all(waits).await;
        info!("caches synced; ready");
        let _ = ready.send(true);
    };
    // Shutting down must not wait for caches that may never sync (an unreachable apiserver),
    // or SIGTERM would hang: stop with the controllers, whether or not readiness was reached.
    let runs = futures::future::join_all(runs);
    futures::pin_mut!(readiness);
    futures::pin_mut!(runs);
    if let futures::future::Either::Left(((), runs)) =
        futures::future::select(readiness, runs).await
    {
        runs.await;
    }
    source_watch.abort();
}

/// The bindings whose Secret the pods named on `changes` read (every binding after a relist).
fn bindings_of_changed_pods(
    changes: impl futures::Stream<Item = Result<super::pods::Changed, watcher::Error>> + Send,
    bindings: Store<AWSRoleBinding>,
) -> impl futures::Stream<Item = ObjectRef<AWSRoleBinding>> + Send {
    changes.flat_map(move |changed| {
        let refs: Vec<_> = match changed {
            Ok(changed) => bindings
                .state()
                .iter()
                .filter(|b| match &changed {
                    super::pods::Changed::All => true,
                    super::pods::Changed::In { namespace, secrets } => {
                        b.metadata.namespace.as_deref() == Some(namespace.as_str())
                            && binding_secret_names(b).any(|s| secrets.contains(s))
                    }
                })
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect(),
            Err(_) => Vec::new(),
        };
        futures::stream::iter(refs)
    })
}

/// The names a binding's Secret may go by: the spec's (or the binding's own name) and, while
/// a rename is under way, the one in its status.
fn binding_secret_names(b: &AWSRoleBinding) -> impl Iterator<Item = &str> {
    let spec = b.spec.secret_name.as_deref().or(b.metadata.name.as_deref());
    let status = b.status.as_ref().and_then(|s| s.secret_name.as_deref());
    spec.into_iter().chain(status)
}

/// The bindings of `bindings` that use a source named on `changes`. A lagging receiver (more
/// changes than the channel holds) reconciles every binding with a source.
fn bindings_of_changed_sources(
    changes: tokio::sync::broadcast::Receiver<String>,
    bindings: Store<AWSRoleBinding>,
) -> impl futures::Stream<Item = ObjectRef<AWSRoleBinding>> + Send {
    futures::stream::unfold(changes, |mut rx| async move {
        let changed = match rx.recv().await {
            Ok(name) => Some(name),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((changed, rx))
    })
    .flat_map(move |changed| {
        let refs: Vec<_> = bindings
            .state()
            .iter()
            .filter(|b| {
                b.spec
                    .credential_source
                    .as_ref()
                    .is_some_and(|s| changed.as_deref().is_none_or(|name| s.name == name))
            })
            .map(|b| ObjectRef::from_obj(b.as_ref()))
            .collect();
        futures::stream::iter(refs)
    })
}

#[cfg(test)]
mod tests;

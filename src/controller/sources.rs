//! The credential source watches: every `AWSCredentialSource` (cluster-scoped) and the Secrets of
//! the operator's own namespace (and no other), cached for [`crate::source::Sources`]. Each change
//! is announced by source name, so that the bindings using that source are reconciled again, and
//! the leader keeps each source's `Ready` condition current.
//!
//! Cached Secrets keep only their two key entries ([`crate::source::compact_secret`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::broadcast;
use tracing::{debug, warn};

use super::context::Shared;
use super::watches::WatchBackoff;
use crate::api::{AWSCredentialSource, AWSCredentialSourceStatus};
use crate::source::{self, SourceError};

/// Names of the sources that changed (their spec, or the Secret they name).
pub type SourceChanges = broadcast::Sender<String>;

/// Sources naming `secret` as their Secret.
fn sources_naming(store: &Store<AWSCredentialSource>, secret: &str) -> Vec<String> {
    store
        .state()
        .iter()
        .filter(|s| s.spec.secret_ref.name == secret)
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .collect()
}

/// Runs the source and Secret watches until `shutdown`, announcing changes on `changes`.
pub async fn run(
    shared: Arc<Shared>,
    changes: SourceChanges,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let Some(feeds) = shared
        .source_feeds
        .lock()
        .ok()
        .and_then(|mut feeds| feeds.take())
    else {
        return;
    };
    let sources = shared.sources.clone();
    if sources.operator_namespace.is_none() {
        // Without its own namespace the operator reads no keys (bindings naming a source say
        // so), and needs no access to sources at all: nothing to watch.
        feeds.listed.send_replace(true);
        std::future::pending::<()>().await;
        return;
    }
    let (sources_listed, mut sources_synced) = tokio::sync::watch::channel(false);
    let (secrets_listed, mut secrets_synced) = tokio::sync::watch::channel(false);
    let listed = feeds.listed;
    tokio::spawn(async move {
        let both = async {
            sources_synced.wait_for(|s| *s).await.is_ok()
                && secrets_synced.wait_for(|s| *s).await.is_ok()
        };
        if both.await {
            let _ = listed.send(true);
        }
    });

    let source_api: Api<AWSCredentialSource> = Api::all(shared.client.clone());
    let source_stream = reflector::reflector(
        feeds.sources,
        watcher(source_api, watcher::Config::default())
            .modify(|s: &mut AWSCredentialSource| {
                s.metadata.managed_fields = None;
                s.metadata.annotations = None;
            })
            .backoff(WatchBackoff::default()),
    )
    .map(move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            sources_listed.send_replace(true);
        }
        event
    })
    .touched_objects()
    .filter_map(|s| async move {
        match s {
            Ok(source) => source.metadata.name.clone().map(|n| vec![n]),
            Err(e) => {
                warn!(kind = "AWSCredentialSource", error = %e, "watch interrupted; re-establishing");
                None
            }
        }
    })
    .boxed();

    let secret_stream = match &sources.operator_namespace {
        Some(namespace) => {
            let api: Api<Secret> = Api::namespaced(shared.client.clone(), namespace);
            let store = sources.sources.clone();
            reflector::reflector(
                feeds.secrets,
                watcher(api, watcher::Config::default())
                    .modify(source::compact_secret)
                    .backoff(WatchBackoff::default()),
            )
            .map(move |event| {
                if let Ok(watcher::Event::InitDone) = event {
                    secrets_listed.send_replace(true);
                }
                event
            })
            .touched_objects()
            .filter_map(move |s| {
                let store = store.clone();
                async move {
                    match s {
                        Ok(secret) => Some(sources_naming(
                            &store,
                            secret.metadata.name.as_deref().unwrap_or_default(),
                        )),
                        Err(e) => {
                            warn!(kind = "Secret", error = %e, "watch of the operator's namespace interrupted; re-establishing");
                            None
                        }
                    }
                }
            })
            .boxed()
        }
        None => {
            // No namespace to read keys from: every binding naming a source says so.
            secrets_listed.send_replace(true);
            futures::stream::pending().boxed()
        }
    };

    tokio::spawn(report_on_leadership(shared.clone()));
    let mut merged = futures::stream::select(source_stream, secret_stream);
    let stop = shutdown;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            names = merged.next() => {
                let Some(names) = names else { return };
                for name in names.into_iter().collect::<BTreeSet<_>>() {
                    // Nobody listening (no scope running yet) is fine: every binding is
                    // reconciled when its scope starts.
                    let _ = changes.send(name.clone());
                    update_status(&shared, &name).await;
                }
            }
            () = &mut stop => return,
        }
    }
}

/// Once the caches hold their first lists, and again each time this replica becomes the leader,
/// writes every source's `Ready` condition: the watch events that would have written it may have
/// arrived while another replica led, or before the lists were complete.
async fn report_on_leadership(shared: Arc<Shared>) {
    let mut synced = shared.sources.synced.clone();
    if synced.wait_for(|s| *s).await.is_err() {
        return;
    }
    let mut leader = shared.leader.clone();
    loop {
        if leader.wait_for(|l| *l).await.is_err() {
            return;
        }
        let names: Vec<String> = shared
            .sources
            .sources
            .state()
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        for name in names {
            update_status(&shared, &name).await;
        }
        if leader.wait_for(|l| !*l).await.is_err() {
            return;
        }
    }
}

/// Writes source `name`'s `Ready` condition if it changed (leader only).
async fn update_status(shared: &Shared, name: &str) {
    if !shared.is_leader() {
        return;
    }
    let Ok((Some(source), secret)) = shared.sources.lookup(name) else {
        // Deleted, or no operator namespace (then nothing can be said about Secrets).
        if shared.sources.operator_namespace.is_none()
            && let Some(source) = shared.sources.sources.get(&ObjectRef::new(name))
        {
            write_status(shared, &source, Err(&SourceError::NoOperatorNamespace)).await;
        }
        return;
    };
    if shared.sources.owned(&source).is_err() {
        // Another installation's source: its operator reports on it.
        return;
    }
    let checked = source::check_source(name, Some(&source), secret.as_deref(), None).map(|_| ());
    write_status(shared, &source, checked.as_ref().map(|_| ())).await;
}

async fn write_status(
    shared: &Shared,
    source: &AWSCredentialSource,
    checked: Result<(), &SourceError>,
) {
    let name = source.metadata.name.clone().unwrap_or_default();
    let generation = source.metadata.generation;
    let status = crate::status::source_status(
        source.status.as_ref(),
        checked,
        generation,
        Timestamp::now(),
    );
    if source.status.as_ref().is_some_and(|current| {
        same_conditions(current, &status) && current.observed_generation == generation
    }) {
        return;
    }
    shared.throttle.kube().await;
    let api: Api<AWSCredentialSource> = Api::all(shared.client.clone());
    let patch = serde_json::json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSCredentialSource",
        "status": status,
    });
    match api
        .patch_status(
            &name,
            &PatchParams::apply(crate::secret::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => debug!(source = %name, "credential source status written"),
        Err(e) => warn!(source = %name, error = %e, "could not write the credential source status"),
    }
}

/// Whether two statuses say the same (transition times aside, which only move on a change).
fn same_conditions(a: &AWSCredentialSourceStatus, b: &AWSCredentialSourceStatus) -> bool {
    a.conditions.len() == b.conditions.len()
        && a.conditions.iter().zip(&b.conditions).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
        })
}

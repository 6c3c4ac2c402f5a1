//! What every reconciliation can reach: the client, the settings, the binding's credential
//! flow, the rate limits, Events, metrics and this process's memory (shared by every watched
//! scope), plus the per-scope Secret cache.

use std::sync::{Arc, Mutex};

use kube::Client;
use kube::api::ObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector;

use super::conflicts::ConflictWatches;
use super::events::Events;
use super::fairness::FairShares;
use super::memory::Memory;
use crate::allowlist::ANNOTATION;
use crate::broker::store::CredentialStore;
use crate::flow::CredentialFlow;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::source::Sources;
use crate::throttle::Throttle;

/// State shared by every watched scope.
pub struct Shared {
    pub client: Client,
    /// The client evictions go through: one that does not retry a `429` itself, since a
    /// PodDisruptionBudget's refusal is an answer to report, not congestion to wait out.
    pub eviction_client: Client,
    pub settings: Settings,
    /// The exchange that turns a binding's identity into credentials.
    pub flow: Arc<dyn CredentialFlow>,
    /// ECR, for the bindings' image-pull Secrets.
    pub ecr: Arc<dyn crate::sts::EcrClient>,
    pub throttle: Arc<Throttle>,
    pub events: Events,
    pub metrics: Metrics,
    pub memory: Memory,
    /// The credentials of `Endpoint` bindings, while this replica leads (see
    /// [`crate::broker::store`]).
    pub endpoint: CredentialStore,
    /// True while this replica may write (always, without leader election).
    pub leader: tokio::sync::watch::Receiver<bool>,
    /// The caches of credential sources and of their Secrets (in the operator's namespace).
    pub sources: Sources,
    /// What fills [`Shared::sources`]; taken once by the watches.
    pub source_feeds: Mutex<Option<SourceFeeds>>,
}

/// The writing ends of the credential source caches, and whether they hold their first lists.
pub struct SourceFeeds {
    pub sources: reflector::store::Writer<crate::api::AWSCredentialSource>,
    pub secrets: reflector::store::Writer<k8s_openapi::api::core::v1::Secret>,
    pub listed: tokio::sync::watch::Sender<bool>,
}

impl Context {
    /// The namespace's role allowlist annotation, if it has one.
    pub fn role_allowlist(&self, namespace: &str) -> Option<String> {
        self.namespaces
            .get("", namespace)
            .and_then(|n| n.role_allowlist.clone())
    }

    /// The namespace's labels (a credential source may select namespaces by label).
    pub fn namespace_labels(&self, namespace: &str) -> std::collections::BTreeMap<String, String> {
        self.namespaces
            .get("", namespace)
            .map(|n| n.labels.clone())
            .unwrap_or_default()
    }

    /// Whether the namespace is being deleted.
    pub fn namespace_terminating(&self, namespace: &str) -> bool {
        self.namespaces
            .get("", namespace)
            .is_some_and(|n| n.terminating)
    }

    /// Waits until the caches a decision reads hold their initial lists; false if they never
    /// will (the process is stopping).
    pub async fn caches_synced(&self) -> bool {
        self.secrets_synced.clone().wait_for(|s| *s).await.is_ok()
            && self
                .namespaces_synced
                .clone()
                .wait_for(|s| *s)
                .await
                .is_ok()
            && self
                .shared
                .sources
                .synced
                .clone()
                .wait_for(|s| *s)
                .await
                .is_ok()
    }
}

/// Empty caches of credential sources and of their Secrets (in `operator_namespace`), and the
/// feeds the watches fill them through.
pub fn source_caches(operator_namespace: Option<String>) -> (Sources, SourceFeeds) {
    let (source_store, source_writer) = reflector::store();
    let (secret_store, secret_writer) = reflector::store();
    let (sources_listed, sources_synced) = tokio::sync::watch::channel(false);
    (
        Sources {
            operator_namespace,
            sources: source_store,
            secrets: secret_store,
            synced: sources_synced,
        },
        SourceFeeds {
            sources: source_writer,
            secrets: secret_writer,
            listed: sources_listed,
        },
    )
}

/// What the composition root (`operator.rs`) builds for the controller: the flow, the rate
/// limits and the credential source caches the flow reads too.
pub struct Parts {
    pub flow: Arc<dyn CredentialFlow>,
    pub ecr: Arc<dyn crate::sts::EcrClient>,
    pub throttle: Arc<Throttle>,
    pub sources: Sources,
    pub source_feeds: SourceFeeds,
    /// Shared with the broker, which serves what it holds.
    pub endpoint: CredentialStore,
}

impl Shared {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
        leader: tokio::sync::watch::Receiver<bool>,
        parts: Parts,
    ) -> Self {
        let reporter = Reporter {
            controller: "podcreds".into(),
            instance: settings.instance.clone(),
        };
        Self {
            events: Events::start(client.clone(), reporter, metrics.clone()),
            eviction_client: client.clone(),
            client,
            settings,
            flow: parts.flow,
            ecr: parts.ecr,
            throttle: parts.throttle,
            metrics,
            memory: Memory::default(),
            endpoint: parts.endpoint,
            leader,
            sources: parts.sources,
            source_feeds: Mutex::new(Some(parts.source_feeds)),
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}

/// What a reconciliation reads of a namespace. Only cluster admins set a namespace's labels and
/// annotations, so the record keeps all its labels (credential sources select on them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceRecord {
    /// Its role allowlist annotation.
    pub role_allowlist: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Whether it is being deleted.
    pub terminating: bool,
}

impl NamespaceRecord {
    pub fn read(meta: &ObjectMeta) -> Self {
        Self {
            role_allowlist: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION).cloned()),
            labels: meta.labels.clone().unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
        }
    }
}

/// Per-scope context handed to every reconciliation.
pub struct Context {
    pub shared: Arc<Shared>,
    /// What the Secrets podcreds manages (label-selected, never their data) say, a record each.
    pub secrets: super::records::Records<crate::secret::SecretRecord>,
    /// True once `secrets` holds the whole initial list (see [`super::watches`]).
    pub secrets_synced: tokio::sync::watch::Receiver<bool>,
    /// The namespaces in scope, a record each.
    pub namespaces: super::records::Records<NamespaceRecord>,
    pub namespaces_synced: tokio::sync::watch::Receiver<bool>,
    /// Watches on the Secrets that block bindings of this scope.
    pub conflicts: Arc<ConflictWatches>,
    /// Fair shares of this scope's exchange slots between namespaces.
    pub shares: FairShares,
    /// The pods of this scope that reference Secrets, with `--watch-pods`.
    pub pods: Option<super::pods::PodCache>,
}

//! The reconciler: fetch -> validate -> plan -> act -> status, wired into kube-runtime.
//!
//! Decisions are made by the pure modules ([`crate::spec`], [`crate::plan`], [`crate::secret`],
//! [`crate::status`]); this module only does the I/O they ask for.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::api::AWSRoleBinding;
use crate::plan::{self, Decision, IssuedMeta, ObservedSecret, RefreshReason, RetryClass};
use crate::secret::{self, FIELD_MANAGER, MANAGED_SELECTOR, Owner, Rendering};
use crate::spec::{self, ResolvedSpec, StsPolicy};
use crate::status::{Outcome, REASON_CONFLICT, StatusWrite, build_status, known_status};
use crate::sts::{AssumeRoleRequest, SharedSts, StsError};
use crate::token::{self, TokenError};

/// How often a binding blocked by a Secret it does not own looks again (the foreign Secret is
/// not labelled, so no watch event announces its removal).
const CONFLICT_RECHECK: Duration = Duration::from_secs(120);
/// Slack added to a requeue so the planner sees the renewal as due when it wakes up.
const REQUEUE_SLACK: Duration = Duration::from_millis(250);

/// Operator settings that shape reconciliation.
#[derive(Clone, Debug)]
pub struct Settings {
    pub sts_policy: StsPolicy,
    /// Lifetime requested for ServiceAccount tokens (the apiserver's minimum is 600 s).
    pub token_expiration_seconds: i64,
    /// Bindings reconciled at once.
    pub concurrency: u16,
    /// Namespaces watched; empty means all.
    pub namespaces: Vec<String>,
    /// Client-side STS rate limit (calls per second) and burst.
    pub sts_rate_per_second: u32,
    pub sts_burst: u32,
    /// Client-side limit on the Kubernetes requests reconciliations make (per second; 0 for
    /// none) and burst.
    pub kube_rate_per_second: u32,
    pub kube_burst: u32,
    /// Name reported on Events (usually the pod name).
    pub instance: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sts_policy: StsPolicy::default(),
            token_expiration_seconds: 600,
            concurrency: 32,
            namespaces: Vec::new(),
            sts_rate_per_second: 50,
            sts_burst: 100,
            kube_rate_per_second: 0,
            kube_burst: 0,
            instance: None,
        }
    }
}

/// Errors that escape a reconciliation (everything else becomes status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding has no {0}")]
    MissingMetadata(&'static str),
    #[error("reading Secret {name}: {source}")]
    ReadSecret { name: String, source: kube::Error },
    #[error("writing status: {0}")]
    WriteStatus(#[source] kube::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::MissingMetadata(_) => "InvalidObject",
            Error::ReadSecret { .. } => "KubeApiError",
            Error::WriteStatus(_) => "KubeApiError",
        }
    }
}

/// A failed refresh; becomes a condition, an Event and a metric.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Sts(#[from] StsError),
    #[error("writing Secret {name}: {reason}")]
    WriteSecret { name: String, reason: String },
    #[error(
        "Secret {name} already exists and is not managed by this binding; it is left untouched"
    )]
    Conflict { name: String, owner: Option<String> },
}

impl RefreshError {
    pub fn category(&self) -> &'static str {
        match self {
            RefreshError::Token(e) => e.category(),
            RefreshError::Sts(e) => e.kind.category(),
            RefreshError::WriteSecret { .. } => "SecretWriteFailed",
            RefreshError::Conflict { .. } => REASON_CONFLICT,
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            RefreshError::Token(e) => e.retry_class(),
            RefreshError::Sts(e) => e.kind.retry_class(),
            RefreshError::WriteSecret { .. } | RefreshError::Conflict { .. } => {
                RetryClass::Transient
            }
        }
    }
}

/// Events waiting to be published; beyond this (a burst of thousands of bindings) they are
/// dropped rather than held in memory: status and metrics carry the same information.
const EVENT_QUEUE: usize = 1024;

/// Events written per second at most, after a burst of [`EVENT_BURST`]. Far above what steady
/// state needs (5,000 bindings with 1-hour sessions refresh about twice a second), low enough
/// that a burst of new bindings spends the apiserver on credentials first.
const EVENT_RATE: NonZeroU32 = NonZeroU32::new(25).expect("non-zero");
const EVENT_BURST: NonZeroU32 = NonZeroU32::new(100).expect("non-zero");

/// Publishes Events a few at a time and at a bounded rate, so a burst costs neither memory nor
/// apiserver capacity that reconciliations need.
async fn publish_events(
    recorder: Recorder,
    queue: tokio::sync::mpsc::Receiver<(Event, k8s_openapi::api::core::v1::ObjectReference)>,
) {
    let pace = RateLimiter::direct(Quota::per_second(EVENT_RATE).allow_burst(EVENT_BURST));
    let pace = &pace;
    futures::stream::unfold(queue, |mut q| async move {
        let item = q.recv().await?;
        pace.until_ready().await;
        Some((item, q))
    })
    .for_each_concurrent(4, |(event, reference)| {
        let recorder = recorder.clone();
        async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(error = %e, "could not publish Event");
            }
        }
    })
    .await;
}

/// Bindings by the (namespace, name) of the ServiceAccount they wait for.
type WaitingForAccounts = HashMap<(String, String), Vec<ObjectRef<AWSRoleBinding>>>;

/// State shared by every watched scope.
pub struct Shared {
    pub client: Client,
    pub sts: SharedSts,
    pub settings: Settings,
    /// Events go to one background publisher through a bounded queue (see [`publish_events`]).
    events: tokio::sync::mpsc::Sender<(Event, k8s_openapi::api::core::v1::ObjectReference)>,
    pub metrics: crate::metrics::Metrics,
    failures: Mutex<HashMap<String, u32>>,
    /// What this process last wrote per binding UID (see [`plan::with_recent_write`]).
    recent: Mutex<HashMap<String, IssuedMeta>>,
    /// Our status writes the binding cache has not shown yet, by binding UID (see
    /// [`crate::status::known_status`]); an entry goes once the cache shows a newer version.
    status_writes: Mutex<HashMap<String, StatusWrite>>,
    /// Bindings waiting for a ServiceAccount to appear, by (namespace, name): the ServiceAccount
    /// watch wakes exactly these instead of scanning every binding on every account event.
    waiting: Mutex<WaitingForAccounts>,
    limiter: DefaultDirectRateLimiter,
    /// None unless a client-side Kubernetes limit was asked for.
    kube_limiter: Option<DefaultDirectRateLimiter>,
    /// True while this replica may write (always, without leader election).
    leader: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    pub fn new(
        client: Client,
        sts: SharedSts,
        settings: Settings,
        metrics: crate::metrics::Metrics,
        leader: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let reporter = Reporter {
            controller: "podcreds".into(),
            instance: settings.instance.clone(),
        };
        let quota = |rate: u32, burst: u32| {
            let rate = std::num::NonZeroU32::new(rate).unwrap_or(std::num::NonZeroU32::MIN);
            let burst = std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN);
            Quota::per_second(rate).allow_burst(burst)
        };
        Self {
            events: {
                let (tx, rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
                tokio::spawn(publish_events(Recorder::new(client.clone(), reporter), rx));
                tx
            },
            client,
            sts,
            metrics,
            limiter: RateLimiter::direct(quota(settings.sts_rate_per_second, settings.sts_burst)),
            kube_limiter: (settings.kube_rate_per_second > 0).then(|| {
                RateLimiter::direct(quota(
                    settings.kube_rate_per_second,
                    settings.kube_burst.max(settings.kube_rate_per_second),
                ))
            }),
            failures: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            status_writes: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            settings,
            leader,
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, HashMap<String, IssuedMeta>> {
        match self.recent.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn status_writes(&self) -> std::sync::MutexGuard<'_, HashMap<String, StatusWrite>> {
        match self.status_writes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records that `binding` waits for ServiceAccount `namespace/name`.
    fn wait_for_account(&self, namespace: &str, name: &str, binding: ObjectRef<AWSRoleBinding>) {
        let mut waiting = match self.waiting.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let entry = waiting
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        if !entry.contains(&binding) {
            entry.push(binding);
        }
    }

    /// The bindings waiting for ServiceAccount `namespace/name`, which stop waiting: they are
    /// reconciled now and, if the account is still missing, wait again.
    pub fn take_waiting(&self, namespace: &str, name: &str) -> Vec<ObjectRef<AWSRoleBinding>> {
        let mut waiting = match self.waiting.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        waiting
            .remove(&(namespace.to_string(), name.to_string()))
            .unwrap_or_default()
    }

    /// Remembers a write. Now and then (not on every write: that would make a burst quadratic)
    /// forgets expired entries, so deleted bindings do not accumulate.
    fn remember(&self, uid: &str, issued: &IssuedMeta) {
        let mut recent = self.recent();
        if recent.len() % 1024 == 1023 {
            let now = Timestamp::now();
            recent.retain(|_, i| i.expiration > now);
        }
        recent.insert(uid.to_string(), issued.clone());
    }

    /// Waits for the Kubernetes client rate limit, if one is set (watches are not counted:
    /// they are few).
    async fn kube_request(&self) {
        if let Some(limiter) = &self.kube_limiter {
            limiter.until_ready().await;
        }
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// Per-scope context handed to every reconciliation.
pub struct Context {
    pub shared: Arc<Shared>,
    /// Metadata of the Secrets podcreds manages (label-selected, never their data).
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// True once `secrets` holds the whole initial list (see [`tell_when_listed`]).
    pub secrets_synced: tokio::sync::watch::Receiver<bool>,
}

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

fn truncate_to_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO) + REQUEUE_SLACK
}

fn owner_of(binding: &AWSRoleBinding, uid: &str) -> Owner {
    Owner {
        api_version: AWSRoleBinding::api_version(&()).into_owned(),
        kind: AWSRoleBinding::kind(&()).into_owned(),
        name: binding.name_any(),
        uid: uid.to_string(),
    }
}

impl Context {
    /// The Secret's metadata. The cache (synced before any decision) holds every Secret podcreds
    /// manages, so a miss usually means "missing", and the Secret is created without asking
    /// first: a create that finds the name taken looks closer (see [`Context::refresh`]).
    /// The apiserver is asked first only where a miss is likely wrong or costly: right after
    /// this process wrote the binding's Secret (the cache may not show it yet), and while the
    /// status reports a conflict (so STS is not called again for a Secret we may not write).
    async fn secret_meta(
        &self,
        binding: &AWSRoleBinding,
        uid: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<PartialObjectMeta<Secret>>, Error> {
        if let Some(cached) = self.secrets.get(&ObjectRef::new(name).within(ns)) {
            return Ok(Some((*cached).clone()));
        }
        let wrote_it = self.shared.recent().contains_key(uid);
        if !wrote_it && ready_reason(binding) != Some(REASON_CONFLICT) {
            return Ok(None);
        }
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), ns);
        self.shared.kube_request().await;
        api.get_metadata_opt(name)
            .await
            .map_err(|source| Error::ReadSecret {
                name: name.to_string(),
                source,
            })
    }

    async fn publish(
        &self,
        binding: &AWSRoleBinding,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(crate::sts::bounded(&note, 1000)),
            action: action.into(),
            secondary: None,
        };
        // Off the reconciliation's critical path: an Event is a report, not part of the work.
        if self
            .shared
            .events
            .try_send((event, binding.object_ref(&())))
            .is_err()
        {
            self.shared.metrics.events_dropped.inc();
            debug!(binding = %binding.name_any(), "Event queue full; dropping an Event");
        }
    }

    async fn write_status(
        &self,
        binding: &AWSRoleBinding,
        outcome: &Outcome<'_>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let uid = binding.uid().ok_or(Error::MissingMetadata("uid"))?;
        let version = binding.metadata.resource_version.as_deref();
        let last_write = {
            let mut writes = self.shared.status_writes();
            // Once the cache shows another version, the record has done its job.
            if writes.get(&uid).is_some_and(|w| !w.ahead_of(version)) {
                writes.remove(&uid);
            }
            writes.get(&uid).cloned()
        };
        let current = known_status(version, binding.status.as_ref(), last_write.as_ref());
        let status = build_status(current, binding.metadata.generation, outcome, now);
        if current == Some(&status) {
            return Ok(());
        }
        let ns = binding
            .namespace()
            .ok_or(Error::MissingMetadata("namespace"))?;
        let api: Api<AWSRoleBinding> = Api::namespaced(self.shared.client.clone(), &ns);
        self.shared.kube_request().await;
        let patch = serde_json::json!({
            "apiVersion": AWSRoleBinding::api_version(&()),
            "kind": AWSRoleBinding::kind(&()),
            "status": status,
        });
        api.patch_status(
            &binding.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map_err(Error::WriteStatus)?;
        if let Some(based_on) = version {
            self.shared.status_writes().insert(
                uid,
                StatusWrite {
                    based_on: based_on.to_string(),
                    status,
                },
            );
        }
        Ok(())
    }

    /// TokenRequest -> STS -> Secret. Returns what the Secret now says about its credentials.
    async fn refresh(
        &self,
        binding: &AWSRoleBinding,
        spec: &ResolvedSpec,
        fingerprint: &str,
        uid: &str,
        observed: &ObservedSecret,
        existing: Option<&PartialObjectMeta<Secret>>,
    ) -> Result<IssuedMeta, RefreshError> {
        let ns = binding.namespace().unwrap_or_default();
        let shared = &self.shared;

        shared.kube_request().await;
        let started = Instant::now();
        let token = token::request_token(
            shared.client.clone(),
            &ns,
            &spec.service_account_name,
            &spec.audience,
            shared.settings.token_expiration_seconds,
        )
        .await;
        shared
            .metrics
            .token_duration
            .observe(started.elapsed().as_secs_f64());
        let token = token?;

        shared.limiter.until_ready().await;
        let started = Instant::now();
        let result = shared
            .sts
            .assume_role_with_web_identity(AssumeRoleRequest {
                role_arn: spec.role_arn.clone(),
                session_name: spec.session_name.clone(),
                web_identity_token: token.token,
                duration_seconds: spec.duration_seconds,
                session_policy: spec.session_policy.clone(),
                policy_arns: spec.policy_arns.clone(),
                region: spec.region.clone(),
                endpoint: spec.endpoint.clone(),
            })
            .await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.kind.category(),
        };
        shared.metrics.observe_sts(outcome, started.elapsed());
        let credentials = result?;

        let issued_at = truncate_to_second(Timestamp::now());
        let expiration = truncate_to_second(credentials.expiration);
        let jitter = plan::jitter_from(&format!("{uid}/{}", expiration.as_second()));
        let renewal_time = truncate_to_second(plan::renewal_time(
            issued_at,
            expiration,
            spec.renew_before,
            jitter,
        ));
        let owner = owner_of(binding, uid);
        let secret = secret::render(&Rendering {
            namespace: &ns,
            owner: &owner,
            spec,
            fingerprint,
            credentials: &credentials,
            issued_at,
            renewal_time,
        });
        let api: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
        let write_error = |e: kube::Error| RefreshError::WriteSecret {
            name: spec.secret_name.clone(),
            reason: crate::sts::bounded(&e.to_string(), 256),
        };
        // The Secret's resourceVersion to apply over, or None once it has been created.
        let mut apply_over = match observed {
            ObservedSecret::Missing => {
                // Create, never apply: an apply would silently take over a Secret someone else
                // created since we looked.
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PostParams::default()
                };
                shared.kube_request().await;
                match api.create(&params, &secret).await {
                    Ok(_) => None,
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // The name is taken: by this binding (the cache lags behind, or someone
                        // removed our label) or by someone else, whose Secret stays untouched.
                        Some(self.owned_version(&api, spec, uid).await?)
                    }
                    Err(e) => return Err(write_error(e)),
                }
            }
            _ => Some(existing.and_then(|m| m.metadata.resource_version.clone())),
        };
        // Apply with the observed resourceVersion as a precondition, so a Secret that changed
        // hands since we looked is not overwritten.
        let mut secret = secret;
        let mut attempt = 0;
        while let Some(resource_version) = apply_over.take() {
            attempt += 1;
            secret.metadata.resource_version = resource_version;
            shared.kube_request().await;
            match api
                .patch(
                    &spec.secret_name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 && attempt == 1 => {
                    // The cache can lag behind (a broken watch, our own last write): look
                    // again, and go on only if the Secret is still this binding's.
                    apply_over = Some(self.owned_version(&api, spec, uid).await?);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(RefreshError::WriteSecret {
                        name: spec.secret_name.clone(),
                        reason: "the Secret changed while it was being refreshed; retrying".into(),
                    });
                }
                Err(e) => return Err(write_error(e)),
            }
        }
        Ok(IssuedMeta {
            issued_at,
            expiration,
            renewal_time,
            fingerprint: fingerprint.to_string(),
            assumed_role_arn: credentials.assumed_role_arn.clone(),
        })
    }

    /// The current resourceVersion of the binding's Secret, read from the apiserver, if this
    /// binding controls it; otherwise the name is someone else's.
    async fn owned_version(
        &self,
        api: &Api<Secret>,
        spec: &ResolvedSpec,
        uid: &str,
    ) -> Result<Option<String>, RefreshError> {
        self.shared.kube_request().await;
        let fresh = api.get_metadata_opt(&spec.secret_name).await.map_err(|e| {
            RefreshError::WriteSecret {
                name: spec.secret_name.clone(),
                reason: crate::sts::bounded(&e.to_string(), 256),
            }
        })?;
        match secret::observe(fresh.as_ref(), uid) {
            ObservedSecret::Owned { .. } => Ok(fresh.and_then(|m| m.metadata.resource_version)),
            ObservedSecret::Foreign { owner } => Err(RefreshError::Conflict {
                name: spec.secret_name.clone(),
                owner,
            }),
            ObservedSecret::Missing => Err(RefreshError::WriteSecret {
                name: spec.secret_name.clone(),
                reason: "the Secret was deleted while it was being refreshed; retrying".into(),
            }),
        }
    }

    /// Deletes Secrets this binding wrote under an earlier `secretName`. Only looks when the
    /// status names another Secret: scanning the cache on every reconciliation would make a
    /// burst of N bindings cost N² work.
    async fn delete_stale_secrets(&self, binding: &AWSRoleBinding, uid: &str, current: &str) {
        let previous = binding
            .status
            .as_ref()
            .and_then(|s| s.secret_name.as_deref());
        if previous.is_none_or(|p| p == current) {
            return;
        }
        let ns = binding.namespace().unwrap_or_default();
        let ns = ns.as_str();
        let stale: Vec<(String, Option<String>)> = self
            .secrets
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .filter(|s| s.metadata.name.as_deref() != Some(current))
            .filter(|s| secret::controller_of(&s.metadata).is_some_and(|o| o.uid == uid))
            .filter_map(|s| Some((s.metadata.name.clone()?, s.metadata.uid.clone())))
            .collect();
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), ns);
        for (name, secret_uid) in stale {
            // Delete exactly the Secret we saw, not a namesake created since.
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: secret_uid,
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            self.shared.kube_request().await;
            match api.delete(&name, &params).await {
                Ok(_) => info!(secret = %name, "deleted Secret left behind by a secretName change"),
                Err(e) => warn!(secret = %name, error = %e, "could not delete stale Secret"),
            }
        }
    }
}

/// One reconciliation of one binding.
pub async fn reconcile(binding: Arc<AWSRoleBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = binding
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let uid = binding.uid().ok_or(Error::MissingMetadata("uid"))?;
    let name = binding.name_any();
    let shared = &ctx.shared;
    if !shared.is_leader() {
        // A standby keeps its caches warm; becoming leader reconciles everything.
        return Ok(Action::await_change());
    }
    // Deciding from a Secret cache that is still filling would take every Secret for missing.
    if ctx
        .secrets_synced
        .clone()
        .wait_for(|synced| *synced)
        .await
        .is_err()
    {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();

    // Validate.
    let spec = match spec::resolve(&binding.spec, &ns, &name, &shared.settings.sts_policy) {
        Ok(spec) => spec,
        Err(e) => {
            let message = e.to_string();
            if ready_reason(&binding) != Some(e.category()) {
                ctx.publish(
                    &binding,
                    EventType::Warning,
                    e.category(),
                    "Validate",
                    message.clone(),
                )
                .await;
            }
            ctx.write_status(
                &binding,
                &Outcome::Blocked {
                    category: e.category(),
                    message,
                },
                now,
            )
            .await?;
            shared.metrics.reconciled("invalid");
            return Ok(Action::await_change());
        }
    };
    let fingerprint = spec.fingerprint();

    // Fetch what the Secret says.
    let existing = ctx
        .secret_meta(&binding, &uid, &ns, &spec.secret_name)
        .await?;
    let cached = secret::observe(existing.as_ref(), &uid);
    let observed = {
        let mut recent = shared.recent();
        let last_write = recent.get(&uid).cloned();
        if last_write
            .as_ref()
            .is_some_and(|w| plan::shows_write(&cached, w))
        {
            // The cache has caught up: the record has done its job (and costs memory).
            recent.remove(&uid);
        }
        plan::with_recent_write(cached, last_write.as_ref())
    };

    // Plan and act.
    match plan::plan(&fingerprint, &observed, now) {
        Decision::Conflict { owner } => on_conflict(&ctx, &binding, &spec, owner, now).await,
        Decision::Wait(issued) => {
            debug!(binding = %name, renewal = %issued.renewal_time, "credentials are fresh");
            ctx.write_status(
                &binding,
                &Outcome::Valid {
                    issued: &issued,
                    secret_name: &spec.secret_name,
                },
                now,
            )
            .await?;
            ctx.delete_stale_secrets(&binding, &uid, &spec.secret_name)
                .await;
            shared.failures().remove(&uid);
            shared.metrics.reconciled("fresh");
            Ok(Action::requeue(until(issued.renewal_time, now)))
        }
        Decision::Refresh(reason) => {
            let still_valid = match &observed {
                ObservedSecret::Owned {
                    issued: Some(i),
                    intact: true,
                } if i.fingerprint == fingerprint && i.expiration > now => Some(i.clone()),
                _ => None,
            };
            match ctx
                .refresh(
                    &binding,
                    &spec,
                    &fingerprint,
                    &uid,
                    &observed,
                    existing.as_ref(),
                )
                .await
            {
                Ok(issued) => on_refreshed(&ctx, &binding, &spec, &uid, reason, issued).await,
                // The cache did not show the Secret, but the name was taken.
                Err(RefreshError::Conflict { owner, .. }) => {
                    on_conflict(&ctx, &binding, &spec, owner, Timestamp::now()).await
                }
                Err(e) => {
                    on_refresh_failed(&ctx, &binding, &spec, &uid, still_valid.as_ref(), e).await
                }
            }
        }
    }
}

/// The Secret name belongs to something this binding does not control: report it, touch
/// nothing, look again later.
async fn on_conflict(
    ctx: &Context,
    binding: &AWSRoleBinding,
    spec: &ResolvedSpec,
    owner: Option<String>,
    now: Timestamp,
) -> Result<Action, Error> {
    let message = format!(
        "Secret {} already exists and is not managed by this binding (controller: {}); it is left untouched",
        spec.secret_name,
        owner.as_deref().unwrap_or("none"),
    );
    if ready_reason(binding) != Some(REASON_CONFLICT) {
        ctx.publish(
            binding,
            EventType::Warning,
            REASON_CONFLICT,
            "Refresh",
            message.clone(),
        )
        .await;
    }
    ctx.write_status(
        binding,
        &Outcome::Blocked {
            category: REASON_CONFLICT,
            message,
        },
        now,
    )
    .await?;
    ctx.shared.metrics.reconciled("conflict");
    Ok(Action::requeue(CONFLICT_RECHECK))
}

async fn on_refreshed(
    ctx: &Context,
    binding: &AWSRoleBinding,
    spec: &ResolvedSpec,
    uid: &str,
    reason: RefreshReason,
    issued: IssuedMeta,
) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let now = Timestamp::now();
    shared.failures().remove(uid);
    shared.remember(uid, &issued);
    shared.metrics.refreshed(reason.as_str());
    shared.metrics.reconciled("refreshed");
    info!(
        binding = %binding.name_any(),
        namespace = binding.namespace().unwrap_or_default(),
        reason = reason.as_str(),
        expiration = %issued.expiration,
        renewal = %issued.renewal_time,
        "issued credentials"
    );
    ctx.publish(
        binding,
        EventType::Normal,
        "Refreshed",
        "Refresh",
        format!(
            "Wrote credentials for {} to Secret {}, valid until {} ({})",
            spec.role_arn,
            spec.secret_name,
            secret::rfc3339(issued.expiration),
            reason.as_str()
        ),
    )
    .await;
    ctx.write_status(
        binding,
        &Outcome::Valid {
            issued: &issued,
            secret_name: &spec.secret_name,
        },
        now,
    )
    .await?;
    ctx.delete_stale_secrets(binding, uid, &spec.secret_name)
        .await;
    Ok(Action::requeue(until(issued.renewal_time, now)))
}

async fn on_refresh_failed(
    ctx: &Context,
    binding: &AWSRoleBinding,
    spec: &ResolvedSpec,
    uid: &str,
    still_valid: Option<&IssuedMeta>,
    error: RefreshError,
) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let now = Timestamp::now();
    let category = error.category();
    let message = error.to_string();
    let attempt = {
        let mut failures = shared.failures();
        let n = failures.entry(uid.to_string()).or_insert(0);
        *n += 1;
        *n
    };
    shared.metrics.failed(category);
    shared.metrics.reconciled("failed");
    if matches!(
        error,
        RefreshError::Token(TokenError::ServiceAccountNotFound(_))
    ) {
        shared.wait_for_account(
            &binding.namespace().unwrap_or_default(),
            &spec.service_account_name,
            ObjectRef::from_obj(binding),
        );
    }
    let remaining = still_valid.map(|i| i.expiration.duration_since(now).max(SignedDuration::ZERO));
    let jitter = plan::jitter_from(&format!("{uid}/{attempt}/{}", now.as_millisecond()));
    let delay = plan::retry_delay(error.retry_class(), attempt, remaining, jitter);
    warn!(
        binding = %binding.name_any(),
        namespace = binding.namespace().unwrap_or_default(),
        category,
        attempt,
        retry_in = ?delay,
        error = %message,
        "refresh failed"
    );
    ctx.publish(
        binding,
        EventType::Warning,
        "RefreshFailed",
        "Refresh",
        format!("{category}: {message}"),
    )
    .await;
    ctx.write_status(
        binding,
        &Outcome::RefreshFailed {
            category,
            message,
            still_valid,
            secret_name: &spec.secret_name,
        },
        now,
    )
    .await?;
    Ok(match delay {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn ready_reason(binding: &AWSRoleBinding) -> Option<&str> {
    crate::status::ready_condition(binding.status.as_ref()).map(|c| c.reason.as_str())
}

/// Errors that escaped `reconcile` (apiserver trouble): retry soon, with jitter.
pub fn error_policy(binding: Arc<AWSRoleBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = binding.uid().unwrap_or_default();
    let attempt = {
        let mut failures = ctx.shared.failures();
        let n = failures.entry(uid.clone()).or_insert(0);
        *n += 1;
        *n
    };
    ctx.shared.metrics.failed(error.category());
    warn!(binding = %binding.name_any(), error = %error, attempt, "reconciliation failed");
    let jitter = plan::jitter_from(&format!("{uid}/{attempt}"));
    Action::requeue(
        plan::retry_delay(RetryClass::Transient, attempt, None, jitter)
            .unwrap_or(plan::BACKOFF_CAP),
    )
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

        let (secret_store, secret_writer) = reflector::store();
        let (secrets_listed, secrets_synced) = tokio::sync::watch::channel(false);
        let secret_stream = tell_when_listed(
            reflector::reflector(
                secret_writer,
                watcher(secrets, watcher::Config::default().labels(MANAGED_SELECTOR))
                    .modify(|s: &mut PartialObjectMeta<Secret>| {
                        secret::compact_for_cache(&mut s.metadata)
                    })
                    .backoff(WatchBackoff::default()),
            ),
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

        let (binding_store, binding_writer) = reflector::store();
        let (bindings_listed, bindings_synced) = tokio::sync::watch::channel(false);
        let binding_stream = tell_when_listed(
            reflector::reflector(
                binding_writer,
                watcher(bindings, watcher::Config::default())
                    // Nothing reads a binding's managed fields; at thousands of bindings they
                    // are a large share of the cache.
                    .modify(|b: &mut AWSRoleBinding| b.metadata.managed_fields = None)
                    .backoff(WatchBackoff::default()),
            ),
            bindings_listed,
        )
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
                    waiting.take_waiting(
                        account.metadata.namespace.as_deref().unwrap_or_default(),
                        account.metadata.name.as_deref().unwrap_or_default(),
                    )
                },
            )
            .with_config(controller::Config::default().concurrency(shared.settings.concurrency))
            .reconcile_all_on(became_leader(shared.leader.clone()))
            .graceful_shutdown_on(shutdown.clone());

        let ctx = Arc::new(Context {
            shared: shared.clone(),
            secrets: secret_store,
            secrets_synced: secrets_synced.clone(),
        });
        waits.push(async move {
            let _ = bindings_synced.clone().wait_for(|synced| *synced).await;
            let _ = secrets_synced.clone().wait_for(|synced| *synced).await;
        });
        let scope_name = scope.clone().unwrap_or_else(|| "all namespaces".into());
        runs.push(async move {
            info!(scope = %scope_name, "controller started");
            controller
                .run(reconcile, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(e) = result {
                        debug!(error = %e, "reconcile loop error");
                    }
                })
                .await;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_learns_that_the_initial_list_is_complete() {
        let (listed, synced) = tokio::sync::watch::channel(false);
        let events: Vec<Result<watcher::Event<Secret>, watcher::Error>> = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(Secret::default())),
            Ok(watcher::Event::InitDone),
        ];
        // Several reconciliations wait at once, as after a restart next to existing bindings.
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let mut synced = synced.clone();
                tokio::spawn(async move { synced.wait_for(|s| *s).await.is_ok() })
            })
            .collect();
        // Let every waiter start waiting before the list completes.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut stream = std::pin::pin!(tell_when_listed(futures::stream::iter(events), listed));
        // Not complete before InitDone has passed.
        stream.next().await;
        stream.next().await;
        assert!(!*synced.borrow());
        stream.next().await;
        for waiter in waiters {
            let woken = tokio::time::timeout(Duration::from_secs(5), waiter).await;
            assert!(matches!(woken, Ok(Ok(true))), "a waiter was not woken");
        }
    }
}

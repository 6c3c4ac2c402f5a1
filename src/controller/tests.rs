//! The controller against a mocked apiserver (tower-test) and a fake STS: the branches that
//! otherwise only the end-to-end suite reaches, without a cluster.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::conflicts::ConflictWatches;
use super::fairness::FairShares;
use super::*;
use crate::credentials::IssuedCredentials;
use crate::secret::{
    ANNOTATION_EXPIRATION, ANNOTATION_FINGERPRINT, ANNOTATION_ISSUED_AT, ANNOTATION_RENEWAL_TIME,
};
use crate::settings::Settings;
use crate::sts::{StsClient, StsError, WebIdentityRequest};

const NS: &str = "ns";
const NAME: &str = "b";
const UID: &str = "uid-1";

/// STS that always issues one-hour credentials and counts its calls.
#[derive(Default)]
struct FakeSts {
    calls: AtomicUsize,
}

impl StsClient for FakeSts {
    fn assume_role_with_web_identity(
        &self,
        _request: WebIdentityRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(IssuedCredentials {
                access_key_id: "ASIAFAKE".into(),
                secret_access_key: SecretString::from("fake-secret".to_string()),
                session_token: SecretString::from("fake-session".to_string()),
                expiration: Timestamp::now() + jiff::SignedDuration::from_secs(3600),
                assumed_role_arn: Some("arn:aws:sts::123456789012:assumed-role/app/ns.b".into()),
                chain: None,
                sts_endpoint: None,
            })
        })
    }
}

/// ECR that issues a 12-hour token per region (`AWS:pw-<region>`), or refuses every call.
#[derive(Default)]
struct FakeEcr {
    regions: Mutex<Vec<String>>,
    refuse: std::sync::atomic::AtomicBool,
}

impl crate::sts::EcrClient for FakeEcr {
    fn get_authorization_token<'a>(
        &'a self,
        request: crate::sts::PullTokenRequest<'a>,
    ) -> BoxFuture<'a, Result<crate::sts::PullToken, crate::sts::EcrError>> {
        use base64::Engine;
        self.regions
            .lock()
            .expect("lock")
            .push(request.region.to_string());
        let region = request.region.to_string();
        let refuse = self.refuse.load(Ordering::SeqCst);
        Box::pin(async move {
            if refuse {
                return Err(crate::sts::EcrError::AccessDenied {
                    region,
                    code: "AccessDeniedException".into(),
                    message: "not authorized to perform: ecr:GetAuthorizationToken".into(),
                });
            }
            Ok(crate::sts::PullToken {
                authorization: SecretString::from(
                    base64::engine::general_purpose::STANDARD.encode(format!("AWS:pw-{region}")),
                ),
                expires_at: Timestamp::now() + jiff::SignedDuration::from_hours(12),
            })
        })
    }
}

/// What `operator.rs` composes, over a fake STS.
fn shared(
    client: kube::Client,
    sts: Arc<FakeSts>,
    leader: tokio::sync::watch::Receiver<bool>,
) -> Shared {
    shared_with_ecr(client, sts, Arc::new(FakeEcr::default()), leader)
}

fn shared_with_ecr(
    client: kube::Client,
    sts: Arc<FakeSts>,
    ecr: Arc<FakeEcr>,
    leader: tokio::sync::watch::Receiver<bool>,
) -> Shared {
    let settings = Settings::default();
    let metrics = crate::metrics::Metrics::default();
    let throttle = Arc::new(crate::throttle::Throttle::new(&settings));
    let (sources, source_feeds) = super::source_caches(settings.operator_namespace.clone());
    let flow = Arc::new(crate::flow::Flows::new(
        crate::flow::FlowDeps {
            client: client.clone(),
            sts,
            throttle: throttle.clone(),
            metrics: metrics.clone(),
            token_expiration_seconds: settings.token_expiration_seconds,
            endpoint_health: Mutex::new(crate::failover::EndpointHealth::default()),
        },
        sources.clone(),
        settings.saml.clone(),
        settings.roles_anywhere.clone(),
    ));
    Shared::new(
        client,
        settings,
        metrics,
        leader,
        super::Parts {
            flow,
            ecr,
            throttle,
            sources,
            source_feeds,
            endpoint: Default::default(),
        },
    )
}

/// One request the mocked apiserver answered: "METHOD path", and the body it was sent.
#[derive(Clone, Debug)]
struct Seen {
    call: String,
    body: Value,
}

type Answer = Box<dyn Fn(&str, &Value) -> (StatusCode, Value) + Send + Sync>;

/// A mocked apiserver that answers every request with `answer` and records it. Events go to a
/// background publisher and may come at any time, so they are answered but not recorded.
fn mocked_apiserver(answer: Answer) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let call = format!("{} {}", request.method(), request.uri().path());
            // Conflict watches run in the background, like Events: answered, not recorded.
            let background = call.contains("/events")
                || request
                    .uri()
                    .query()
                    .is_some_and(|q| q.contains("fieldSelector"));
            let bytes = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (status, reply) = if call.contains("/events") {
                (StatusCode::CREATED, body.clone())
            } else if background {
                (StatusCode::NOT_FOUND, api_status(404, "NotFound"))
            } else {
                answer(&call, &body)
            };
            if !background {
                record.lock().expect("lock").push(Seen { call, body });
            }
            let response = Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()))
                .expect("response");
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), seen)
}

fn api_status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

fn binding() -> AWSRoleBinding {
    serde_json::from_value(json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSRoleBinding",
        "metadata": {"name": NAME, "namespace": NS, "uid": UID, "resourceVersion": "10", "generation": 1},
        "spec": {"serviceAccountName": "app", "roleArn": "arn:aws:iam::123456789012:role/app"},
    }))
    .expect("binding")
}

fn token_granted() -> (StatusCode, Value) {
    (
        StatusCode::CREATED,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {},
               "status": {"token": "header.payload.signature", "expirationTimestamp": "2099-01-01T00:00:00Z"}}),
    )
}

/// Secret metadata as the apiserver returns it, controlled by the test binding.
fn owned_secret_meta(version: &str, annotations: BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {
            "name": NAME, "namespace": NS, "resourceVersion": version, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "podcreds.dev/v1alpha1", "kind": "AWSRoleBinding",
                                 "name": NAME, "uid": UID, "controller": true}],
        }
    })
}

struct Harness {
    ctx: Arc<Context>,
    sts: Arc<FakeSts>,
    ecr: Arc<FakeEcr>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Kept so that the leader and cache-synced flags stay set.
    _flags: (
        tokio::sync::watch::Sender<bool>,
        tokio::sync::watch::Sender<bool>,
    ),
}

impl Harness {
    fn new(answer: Answer) -> Self {
        let (client, seen) = mocked_apiserver(answer);
        let sts = Arc::new(FakeSts::default());
        let ecr = Arc::new(FakeEcr::default());
        let (leader_tx, leader) = tokio::sync::watch::channel(true);
        let shared = Arc::new(shared_with_ecr(client, sts.clone(), ecr.clone(), leader));
        // No credential source watch runs here: its (empty) caches count as listed.
        if let Ok(feeds) = shared.source_feeds.lock()
            && let Some(feeds) = feeds.as_ref()
        {
            feeds.listed.send_replace(true);
        }
        let (wake, _woken) = tokio::sync::mpsc::unbounded_channel();
        let (synced_tx, synced) = tokio::sync::watch::channel(true);
        Self {
            ctx: Arc::new(Context {
                shared,
                secrets: Default::default(),
                secrets_synced: synced.clone(),
                namespaces: Default::default(),
                namespaces_synced: synced,
                conflicts: Arc::new(ConflictWatches::new(wake.clone())),
                shares: FairShares::new(32, 8, wake),
                pods: None,
            }),
            sts,
            ecr,
            seen,
            _flags: (leader_tx, synced_tx),
        }
    }

    async fn reconcile(&self, binding: &AWSRoleBinding) -> Action {
        reconcile(Arc::new(binding.clone()), self.ctx.clone())
            .await
            .expect("reconcile")
    }

    /// The requests made so far (Events aside), forgetting them.
    fn take_calls(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }

    fn sts_calls(&self) -> usize {
        self.sts.calls.load(Ordering::SeqCst)
    }
}

fn calls(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.call.as_str()).collect()
}

const TOKEN: &str = "POST /api/v1/namespaces/ns/serviceaccounts/app/token";
const CREATE_SECRET: &str = "POST /api/v1/namespaces/ns/secrets";
const SECRET: &str = "/api/v1/namespaces/ns/secrets/b";
const STATUS: &str = "PATCH /apis/podcreds.dev/v1alpha1/namespaces/ns/awsrolebindings/b/status";

#[tokio::test]
async fn a_create_that_finds_our_own_secret_reads_it_and_applies_over_it() {
    let harness = Harness::new(Box::new(|call, _| match call {
        TOKEN => token_granted(),
        // The cache lagged: the Secret exists and is this binding's.
        CREATE_SECRET => (StatusCode::CONFLICT, api_status(409, "AlreadyExists")),
        c if c == format!("GET {SECRET}") => {
            (StatusCode::OK, owned_secret_meta("42", BTreeMap::new()))
        }
        c if c == format!("PATCH {SECRET}") => (StatusCode::OK, json!({})),
        STATUS => (
            StatusCode::OK,
            serde_json::to_value(binding()).unwrap_or_default(),
        ),
        _ => (StatusCode::NOT_FOUND, api_status(404, "NotFound")),
    }));
    let action = harness.reconcile(&binding()).await;

    let seen = harness.take_calls();
    assert_eq!(
        calls(&seen),
        vec![
            TOKEN,
            CREATE_SECRET,
            &format!("GET {SECRET}"),
            &format!("PATCH {SECRET}"),
            STATUS
        ]
    );
    // The apply is conditional on the version just read, so a Secret that changed hands since
    // is not overwritten.
    assert_eq!(seen[3].body["metadata"]["resourceVersion"], "42");
    assert_eq!(seen[4].body["status"]["conditions"][1]["type"], "Ready");
    assert_eq!(seen[4].body["status"]["conditions"][1]["status"], "True");
    assert_eq!(harness.sts_calls(), 1);
    // Back at the renewal time, about two thirds of the hour from now.
    assert!(action != Action::await_change());
}

#[tokio::test]
async fn a_create_that_finds_someone_elses_secret_reports_a_conflict_and_writes_nothing() {
    let harness = Harness::new(Box::new(|call, _| match call {
        TOKEN => token_granted(),
        CREATE_SECRET => (StatusCode::CONFLICT, api_status(409, "AlreadyExists")),
        c if c == format!("GET {SECRET}") => (
            StatusCode::OK,
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                   "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "5"}}),
        ),
        STATUS => (
            StatusCode::OK,
            serde_json::to_value(binding()).unwrap_or_default(),
        ),
        _ => (StatusCode::NOT_FOUND, api_status(404, "NotFound")),
    }));
    let action = harness.reconcile(&binding()).await;
    let seen = harness.take_calls();
    assert_eq!(
        calls(&seen),
        vec![TOKEN, CREATE_SECRET, &format!("GET {SECRET}"), STATUS]
    );
    let ready = &seen[3].body["status"]["conditions"][0];
    assert_eq!(ready["type"], "Ready");
    assert_eq!(ready["reason"], "SecretConflict");
    assert_eq!(action, Action::requeue(crate::plan::CONFLICT_RECHECK));
    // The blocking Secret is watched, so its deletion brings the binding back at once.
    assert_eq!(harness.ctx.conflicts.len(), 1);
}

#[tokio::test]
async fn a_stale_cache_after_our_own_write_causes_no_second_refresh_and_no_second_status_write() {
    // What the apiserver holds once the Secret is written, to answer the read-back.
    let written: Arc<Mutex<Option<Value>>> = Arc::new(Mutex::new(None));
    let remember = written.clone();
    let harness = Harness::new(Box::new(move |call, body| match call {
        TOKEN => token_granted(),
        CREATE_SECRET => {
            let annotations = body["metadata"]["annotations"].clone();
            let annotations: BTreeMap<String, String> =
                serde_json::from_value(annotations).unwrap_or_default();
            *remember.lock().expect("lock") = Some(owned_secret_meta("43", annotations));
            let mut created = body.clone();
            created["metadata"]["resourceVersion"] = json!("43");
            (StatusCode::CREATED, created)
        }
        c if c == format!("GET {SECRET}") => match remember.lock().expect("lock").clone() {
            Some(meta) => (StatusCode::OK, meta),
            None => (StatusCode::NOT_FOUND, api_status(404, "NotFound")),
        },
        STATUS => (
            StatusCode::OK,
            serde_json::to_value(binding()).unwrap_or_default(),
        ),
        _ => (StatusCode::NOT_FOUND, api_status(404, "NotFound")),
    }));
    harness.reconcile(&binding()).await;
    assert_eq!(
        calls(&harness.take_calls()),
        vec![TOKEN, CREATE_SECRET, STATUS]
    );
    assert!(written.lock().expect("lock").is_some());

    // The status write and the Secret's creation wake the binding again before either cache
    // shows them. The miss is not believed (this process just wrote the Secret): one read, no
    // STS call, and the status, unchanged as far as this process knows, is not written again.
    harness.reconcile(&binding()).await;
    assert_eq!(
        calls(&harness.take_calls()),
        vec![format!("GET {SECRET}").as_str()]
    );
    assert_eq!(harness.sts_calls(), 1);
}

#[tokio::test]
async fn fresh_credentials_in_the_cache_cost_one_status_write_then_nothing() {
    let harness = Harness::new(Box::new(|call, _| match call {
        STATUS => (
            StatusCode::OK,
            serde_json::to_value(binding()).unwrap_or_default(),
        ),
        _ => (StatusCode::NOT_FOUND, api_status(404, "NotFound")),
    }));
    // The cache holds this binding's Secret, issued a minute ago for the current spec.
    let spec = crate::spec::resolve(&binding().spec, NS, NAME, &Settings::default().sts_policy)
        .expect("valid spec");
    let now = Timestamp::now();
    let issued = crate::plan::issued(
        UID,
        now - jiff::SignedDuration::from_secs(60),
        None,
        &spec.fingerprint(),
        &IssuedCredentials {
            access_key_id: "ASIAFRESH".into(),
            secret_access_key: SecretString::from("s".to_string()),
            session_token: SecretString::from("t".to_string()),
            expiration: now + jiff::SignedDuration::from_secs(3540),
            assumed_role_arn: None,
            chain: None,
            sts_endpoint: None,
        },
    );
    let annotations = BTreeMap::from([
        (
            ANNOTATION_ISSUED_AT.to_string(),
            crate::time::rfc3339(issued.issued_at),
        ),
        (
            ANNOTATION_EXPIRATION.to_string(),
            crate::time::rfc3339(issued.expiration),
        ),
        (
            ANNOTATION_RENEWAL_TIME.to_string(),
            crate::time::rfc3339(issued.renewal_time),
        ),
        (ANNOTATION_FINGERPRINT.to_string(), spec.fingerprint()),
    ]);
    let mut cached: PartialObjectMeta<Secret> =
        serde_json::from_value(owned_secret_meta("7", annotations)).expect("meta");
    cached.metadata.namespace = Some(NS.into());
    harness
        .ctx
        .secrets
        .apply(&watcher::Event::Apply(cached), |s| {
            crate::secret::SecretRecord::read(&s.metadata)
        });

    // The binding's status (which only the operator writes) says the same about them: a
    // restarted operator takes them as they are.
    let mut binding = binding();
    binding.status = Some(crate::api::AWSRoleBindingStatus {
        last_refresh_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            issued.issued_at,
        )),
        expiration: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            issued.expiration,
        )),
        renewal_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            issued.renewal_time,
        )),
        ..Default::default()
    });

    let first = harness.reconcile(&binding).await;
    assert_eq!(calls(&harness.take_calls()), vec![STATUS]);
    // Reconciled again from the same cached binding: the status this process wrote is what the
    // apiserver holds, so nothing is written.
    let second = harness.reconcile(&binding).await;
    assert!(harness.take_calls().is_empty());
    assert_eq!(harness.sts_calls(), 0);
    // Both come back at the renewal time instead of waiting for a change.
    assert_ne!(first, Action::await_change());
    assert_ne!(second, Action::await_change());
}

#[tokio::test]
async fn a_missing_service_account_parks_the_binding_until_the_account_appears() {
    let harness = Harness::new(Box::new(|call, _| match call {
        TOKEN => (StatusCode::NOT_FOUND, api_status(404, "NotFound")),
        STATUS => (
            StatusCode::OK,
            serde_json::to_value(binding()).unwrap_or_default(),
        ),
        _ => (StatusCode::NOT_FOUND, api_status(404, "NotFound")),
    }));
    harness.reconcile(&binding()).await;
    let seen = harness.take_calls();
    assert_eq!(calls(&seen), vec![TOKEN, STATUS]);
    assert_eq!(
        seen[1].body["status"]["conditions"][1]["reason"],
        "ServiceAccountNotFound"
    );
    assert_eq!(harness.sts_calls(), 0);
    // The ServiceAccount watch wakes exactly this binding when `app` appears, once.
    let memory = &harness.ctx.shared.memory;
    assert!(memory.take_waiting(NS, "other").is_empty());
    assert_eq!(
        memory.take_waiting(NS, "app"),
        vec![ObjectRef::<AWSRoleBinding>::new(NAME).within(NS)]
    );
    assert!(memory.take_waiting(NS, "app").is_empty());
}

#[tokio::test]
async fn a_standby_replica_touches_nothing() {
    let harness = Harness::new(Box::new(|_, _| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            api_status(500, "unexpected"),
        )
    }));
    let (_tx, standby) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        leader: standby,
        ..shared(
            harness.ctx.shared.client.clone(),
            harness.sts.clone(),
            harness.ctx.shared.leader.clone(),
        )
    });
    let ctx = Arc::new(Context {
        shared,
        secrets: harness.ctx.secrets.clone(),
        secrets_synced: harness.ctx.secrets_synced.clone(),
        namespaces: harness.ctx.namespaces.clone(),
        namespaces_synced: harness.ctx.namespaces_synced.clone(),
        conflicts: harness.ctx.conflicts.clone(),
        shares: harness.ctx.shares.clone(),
        pods: None,
    });
    let action = reconcile(Arc::new(binding()), ctx)
        .await
        .expect("reconcile");
    assert_eq!(action, Action::await_change());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(harness.take_calls().is_empty());
    assert_eq!(harness.sts_calls(), 0);
}

#[test]
fn objects_without_identity_are_refused_with_a_category() {
    let mut nameless = binding();
    nameless.meta_mut().uid = None;
    let error = BindingKey::of(&nameless).expect_err("no uid");
    assert_eq!(error.category(), "InvalidObject");
}

fn pulling_binding() -> AWSRoleBinding {
    let mut b = binding();
    b.spec.image_pull_secret = Some(Box::new(crate::api::ImagePullSecret {
        registries: vec![
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
            "registry.test:5000".into(),
        ],
        secret_name: None,
        add_to_service_account: false,
    }));
    b
}

fn answer_writes(call: &str, body: &Value) -> (StatusCode, Value) {
    match call {
        TOKEN => token_granted(),
        CREATE_SECRET => {
            let mut created = body.clone();
            created["metadata"]["uid"] = json!(format!(
                "uid-of-{}",
                body["metadata"]["name"].as_str().unwrap_or_default()
            ));
            created["metadata"]["resourceVersion"] = json!("7");
            (StatusCode::CREATED, created)
        }
        STATUS => (
            StatusCode::OK,
            serde_json::to_value(binding()).unwrap_or_default(),
        ),
        _ => (StatusCode::NOT_FOUND, api_status(404, "NotFound")),
    }
}

#[tokio::test]
async fn an_image_pull_secret_gets_a_token_per_region_and_its_own_secret() {
    use base64::Engine;
    let harness = Harness::new(Box::new(answer_writes));
    let action = harness.reconcile(&pulling_binding()).await;
    let seen = harness.take_calls();
    assert_eq!(
        calls(&seen),
        vec![TOKEN, CREATE_SECRET, CREATE_SECRET, STATUS]
    );
    // The ECR registry's own region, then the binding's for the other host.
    assert_eq!(
        *harness.ecr.regions.lock().expect("lock"),
        vec!["eu-west-1".to_string(), "us-east-1".to_string()]
    );
    let pull = &seen[1].body;
    assert_eq!(pull["metadata"]["name"], "b-ecr");
    assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        pull["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "podcreds"
    );
    assert_eq!(pull["metadata"]["ownerReferences"][0]["uid"], UID);
    assert_eq!(pull["metadata"]["ownerReferences"][0]["controller"], true);
    let config = base64::engine::general_purpose::STANDARD
        .decode(pull["data"][".dockerconfigjson"].as_str().expect("data"))
        .expect("base64");
    let config: Value = serde_json::from_slice(&config).expect("docker config");
    let auth = |host: &str| {
        let auth = config["auths"][host]["auth"].as_str().expect("auth");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(auth)
                .expect("base64"),
        )
        .expect("utf-8")
    };
    assert_eq!(
        auth("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
        "AWS:pw-eu-west-1"
    );
    assert_eq!(auth("registry.test:5000"), "AWS:pw-us-east-1");
    assert_eq!(seen[2].body["metadata"]["name"], NAME);
    assert_eq!(seen[2].body["type"], "Opaque");
    let status = &seen[3].body["status"];
    assert_eq!(status["imagePullSecret"]["secretName"], "b-ecr");
    assert_eq!(status["imagePullSecret"]["secretUID"], "uid-of-b-ecr");
    assert!(status["imagePullSecret"]["expiration"].is_string());
    // The token never reaches the status.
    assert!(!status.to_string().contains("pw-"));
    assert!(action != Action::await_change());
    assert_eq!(harness.sts_calls(), 1);
}

#[tokio::test]
async fn without_an_ecr_token_nothing_is_written_and_the_status_names_the_category() {
    let harness = Harness::new(Box::new(answer_writes));
    harness.ecr.refuse.store(true, Ordering::SeqCst);
    let action = harness.reconcile(&pulling_binding()).await;
    let seen = harness.take_calls();
    assert_eq!(calls(&seen), vec![TOKEN, STATUS]);
    let conditions = seen[1].body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .clone();
    let ready = conditions
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "EcrAccessDenied");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ecr:GetAuthorizationToken")
    );
    assert!(seen[1].body["status"]["imagePullSecret"].is_null());
    assert!(action != Action::await_change());
}

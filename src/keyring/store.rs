//! A key ring's Secret in the operator's namespace: created on first use if absent (a 409 means
//! another replica, or the admin's command, created it first: theirs is read), read by every
//! replica, changed only by the admin's rotation steps (`podcreds saml-key`,
//! `podcreds rolesanywhere-ca`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::key::{KeyError, KeyProfile, KeyRing};
use crate::text;

/// How long a replica signs with the keys it read before reading the Secret again: bounds how
/// long after a `promote` step an old key may still sign.
pub const REREAD_AFTER: Duration = Duration::from_secs(20);

/// Labels of the key Secret. Not podcreds' `managed-by` label: the binding Secrets' watch selects
/// on that one, and this Secret belongs to no binding.
fn labels(profile: &KeyProfile) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/part-of".into(), "podcreds".into()),
        (
            "app.kubernetes.io/component".into(),
            profile.component.into(),
        ),
    ])
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the key Secret {namespace}/{name} cannot be read or created: {reason}")]
    Api {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error(
        "the key Secret {namespace}/{name} changed while it was being updated; run the step again"
    )]
    Conflict { namespace: String, name: String },
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn year() -> i16 {
    jiff::Zoned::now().year()
}

fn data_of(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .as_ref()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

/// Where a key ring's Secret lives, and which ring it holds.
#[derive(Clone)]
pub struct KeySecret {
    api: Api<Secret>,
    namespace: String,
    name: String,
    profile: &'static KeyProfile,
}

impl KeySecret {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        profile: &'static KeyProfile,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            profile,
        }
    }

    fn api_error(&self, e: &kube::Error) -> StoreError {
        StoreError::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            reason: match e {
                kube::Error::Api(status) => text::remote(&status.message),
                other => text::remote(&other.to_string()),
            },
        }
    }

    fn secret(&self, ring: &KeyRing, resource_version: Option<String>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels(self.profile)),
                resource_version,
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                ring.to_data()
                    .into_iter()
                    .map(|(k, v)| (k, ByteString(v)))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    /// The keys, creating the Secret with a new key if it does not exist.
    pub async fn ensure(&self) -> Result<KeyRing, StoreError> {
        if let Some(secret) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_error(&e))?
        {
            return Ok(KeyRing::from_data(self.profile, &data_of(&secret))?);
        }
        let ring = KeyRing::generate(self.profile, year())?;
        match self
            .api
            .create(&PostParams::default(), &self.secret(&ring, None))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    namespace = %self.namespace,
                    secret = %self.name,
                    certificate_sha256 = %ring.active.fingerprint(),
                    what = self.profile.what,
                    "created the key"
                );
                Ok(ring)
            }
            // Someone else created it between the read and the create: theirs is the key.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let secret = self
                    .api
                    .get(&self.name)
                    .await
                    .map_err(|e| self.api_error(&e))?;
                Ok(KeyRing::from_data(self.profile, &data_of(&secret))?)
            }
            Err(e) => Err(self.api_error(&e)),
        }
    }

    /// Applies one rotation step to the Secret (read, change, replace at the version read).
    pub async fn update(
        &self,
        step: impl FnOnce(&mut KeyRing, i16) -> Result<(), KeyError>,
    ) -> Result<KeyRing, StoreError> {
        self.ensure().await?;
        let secret = self
            .api
            .get(&self.name)
            .await
            .map_err(|e| self.api_error(&e))?;
        let mut ring = KeyRing::from_data(self.profile, &data_of(&secret))?;
        step(&mut ring, year())?;
        let replacement = self.secret(&ring, secret.metadata.resource_version.clone());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &replacement)
            .await
        {
            Ok(_) => Ok(ring),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(StoreError::Conflict {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            }),
            Err(e) => Err(self.api_error(&e)),
        }
    }
}

/// The keys one replica signs with: read from the Secret at most every [`REREAD_AFTER`].
pub struct KeyCache {
    secret: KeySecret,
    held: tokio::sync::Mutex<Option<(Arc<KeyRing>, Instant)>>,
}

impl KeyCache {
    pub fn new(secret: KeySecret) -> Self {
        Self {
            secret,
            held: tokio::sync::Mutex::new(None),
        }
    }

    /// The current keys.
    pub async fn current(&self) -> Result<Arc<KeyRing>, StoreError> {
        let mut held = self.held.lock().await;
        if let Some((ring, read)) = held.as_ref()
            && read.elapsed() < REREAD_AFTER
        {
            return Ok(ring.clone());
        }
        let ring = Arc::new(self.secret.ensure().await?);
        *held = Some((ring.clone(), Instant::now()));
        Ok(ring)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;
    use crate::keyring::SAML;

    fn status(code: u16, reason: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason})
    }

    /// The calls a mocked apiserver saw, in order: "METHOD path" and the body.
    type Seen = Arc<Mutex<Vec<(String, Value)>>>;

    /// A mocked apiserver answering each request with `answer(method path, body)`; the calls are
    /// recorded in order.
    fn apiserver(
        answer: impl Fn(&str, &Value) -> (StatusCode, Value) + Send + Sync + 'static,
    ) -> (kube::Client, Seen) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let call = format!("{} {}", request.method(), request.uri().path());
                let bytes = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, reply) = answer(&call, &body);
                record.lock().expect("lock").push((call, body));
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()))
                        .expect("response"),
                );
            }
        });
        (kube::Client::new(service, "default"), seen)
    }

    fn secret_json(ring: &KeyRing) -> Value {
        let secret = KeySecret::new(
            kube::Client::new(
                tower_test::mock::pair::<Request<Body>, Response<Body>>().0,
                "x",
            ),
            "ops",
            "key",
            &SAML,
        )
        .secret(ring, Some("7".into()));
        serde_json::to_value(secret).expect("json")
    }

    #[tokio::test]
    async fn a_replica_that_loses_the_create_race_reads_the_winners_key() {
        let winner = KeyRing::generate(&SAML, 2026).expect("key");
        let winner_fingerprint = winner.active.fingerprint();
        let stored = secret_json(&winner);
        let reads = Arc::new(Mutex::new(0));
        let (client, seen) = apiserver(move |call, _| {
            if call.starts_with("GET") {
                let mut n = reads.lock().expect("lock");
                *n += 1;
                // Absent at first; then another replica's key is there.
                return if *n == 1 {
                    (StatusCode::NOT_FOUND, status(404, "NotFound"))
                } else {
                    (StatusCode::OK, stored.clone())
                };
            }
            (StatusCode::CONFLICT, status(409, "AlreadyExists"))
        });
        let ring = KeySecret::new(client, "ops", "key", &SAML)
            .ensure()
            .await
            .expect("read theirs");
        assert_eq!(ring.active.fingerprint(), winner_fingerprint);
        let calls: Vec<String> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        assert_eq!(
            calls,
            [
                "GET /api/v1/namespaces/ops/secrets/key",
                "POST /api/v1/namespaces/ops/secrets",
                "GET /api/v1/namespaces/ops/secrets/key",
            ]
        );
    }

    #[tokio::test]
    async fn rotation_steps_replace_at_the_version_read_and_report_a_race() {
        let stored = secret_json(&KeyRing::generate(&SAML, 2026).expect("key"));
        let (client, seen) = apiserver(move |call, _| {
            if call.starts_with("GET") {
                (StatusCode::OK, stored.clone())
            } else {
                (StatusCode::CONFLICT, status(409, "Conflict"))
            }
        });
        let err = KeySecret::new(client, "ops", "key", &SAML)
            .update(|ring, year| ring.add_next(year))
            .await
            .expect_err("raced");
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        let seen = seen.lock().expect("lock");
        let (call, body) = seen.last().expect("replace");
        assert_eq!(call, "PUT /api/v1/namespaces/ops/secrets/key");
        assert_eq!(body["metadata"]["resourceVersion"], json!("7"));
        assert!(body["data"][crate::keyring::NEXT_KEY].is_string());
    }
}

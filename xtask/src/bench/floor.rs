//! The floors: the bare work of N bindings done directly by a minimal client, the yardsticks for
//! time to Ready. The bare floor makes two apiserver requests per binding (TokenRequest, Secret
//! create) and one STS call; the operator floor writes a Secret that holds usable credentials
//! (key, secret, session token) and adds the status patch that any operator reporting status must
//! make (three requests). A last floor writes podcreds' own Secret instead of the three keys: the
//! difference is what podcreds' renderings of the credentials cost the apiserver.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use podcreds::api::AWSRoleBinding;
use podcreds::credentials::IssuedCredentials;
use podcreds::sts::{
    AwsStsClient, SessionScope, StsClient, StsTarget, StsTimeouts, WebIdentityRequest,
};
use podcreds_testenv::ControlPlane;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sts_emulator::Emulator;

use super::phase::{Phase, PhaseMeter, maybe_profile};
use super::{Args, ROLE, binding, create_bindings, create_namespace, create_service_accounts};

/// Which floor to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FloorKind {
    /// TokenRequest, STS, Secret create.
    Bare,
    /// TokenRequest, STS, Secret create (the whole credential set), status patch of a binding
    /// created before the clock.
    Operator,
    /// The operator floor with the binding's create inside the clock, as podcreds' time has it:
    /// it says how much of podcreds' time is the client's own creates.
    OperatorWithCreate,
    /// The operator floor writing the Secret exactly as podcreds renders it (every rendering of
    /// the credentials, podcreds' annotations, label and owner): what the renderings cost.
    OperatorPodcredsSecret,
}

impl FloorKind {
    pub fn label(self) -> &'static str {
        match self {
            FloorKind::Bare => "bare floor",
            FloorKind::Operator => "operator floor",
            FloorKind::OperatorWithCreate => "operator floor + create",
            FloorKind::OperatorPodcredsSecret => "operator floor, podcreds' Secret",
        }
    }

    fn namespace_prefix(self) -> &'static str {
        match self {
            FloorKind::Bare => "floor",
            FloorKind::Operator => "opfloor",
            FloorKind::OperatorWithCreate => "opfloorc",
            FloorKind::OperatorPodcredsSecret => "opfloorp",
        }
    }
}

/// Runs of one floor for one N; the median is the floor.
#[derive(Serialize, Debug)]
pub struct FloorResult {
    pub kind: FloorKind,
    /// Median of `runs_seconds`.
    pub seconds: f64,
    pub runs_seconds: Vec<f64>,
    /// The phase of the median run.
    pub phase: Phase,
}

/// Times `args.floor_runs` runs of `kind` for N bindings and keeps the median.
pub async fn measure_runs(
    plane: &ControlPlane,
    client: &kube::Client,
    emulator: &Emulator,
    n: usize,
    kind: FloorKind,
    args: &Args,
) -> anyhow::Result<FloorResult> {
    println!("  N={n}: {} ({} at a time)", kind.label(), args.concurrency);
    let mut runs = Vec::new();
    for run in 1..=args.floor_runs.max(1) {
        let (seconds, phase) = measure(plane, client, emulator, n, run, kind, args).await?;
        println!("    run {run}: {seconds:.2}s");
        runs.push((seconds, phase));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let runs_seconds: Vec<f64> = runs.iter().map(|f| f.0).collect();
    let (seconds, phase) = runs.swap_remove(runs.len() / 2);
    println!("    {} (median): {seconds:.2}s", kind.label());
    Ok(FloorResult {
        kind,
        seconds,
        runs_seconds,
        phase,
    })
}

/// The status an operator reports once the credentials are in place (the fields podcreds
/// reports, so the patch is as large as podcreds').
fn ready_status(secret: &str, secret_uid: &str, creds: &IssuedCredentials) -> serde_json::Value {
    let now = jiff::Timestamp::now();
    let seconds = |t: jiff::Timestamp| {
        jiff::Timestamp::from_second(t.as_second())
            .unwrap_or(t)
            .to_string()
    };
    serde_json::json!({
        "status": {
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": podcreds::status::REASON_ISSUED,
                "message": "credentials issued",
                "lastTransitionTime": seconds(now),
                "observedGeneration": 1,
            }],
            "expiration": seconds(creds.expiration),
            "renewalTime": seconds(creds.expiration),
            "lastRefreshTime": seconds(now),
            "assumedRoleArn": creds.assumed_role_arn,
            "secretName": secret,
            "secretUID": secret_uid,
            "observedGeneration": 1,
        }
    })
}

/// The Secret podcreds would write for binding `name` (UID `uid`) of `ns` holding `creds`.
fn podcreds_secret(
    ns: &str,
    name: &str,
    uid: Option<&String>,
    creds: &IssuedCredentials,
) -> anyhow::Result<Secret> {
    let uid = uid.with_context(|| format!("binding {name} has no UID"))?;
    let binding = binding(name, &format!("sa-{}", name.trim_start_matches('b')))?;
    let spec = podcreds::spec::resolve(&binding.spec, ns, name, &Default::default())
        .map_err(|e| anyhow::anyhow!("the benchmark's binding is invalid: {e}"))?;
    let now = jiff::Timestamp::now();
    Ok(podcreds::secret::render(&podcreds::secret::Rendering {
        namespace: ns,
        owner: &podcreds::secret::Owner {
            api_version: "podcreds.dev/v1alpha1".into(),
            kind: "AWSRoleBinding".into(),
            name: name.into(),
            uid: uid.clone(),
        },
        spec: &spec,
        fingerprint: &spec.fingerprint(),
        credentials: creds,
        issued_at: now,
        renewal_time: creds.expiration,
        writer: "bench/floor",
    }))
}

/// One timed run of `kind` for N bindings, `args.concurrency` at a time.
pub async fn measure(
    plane: &ControlPlane,
    client: &kube::Client,
    emulator: &Emulator,
    n: usize,
    run: usize,
    kind: FloorKind,
    args: &Args,
) -> anyhow::Result<(f64, Phase)> {
    let concurrency = args.concurrency;
    let ns = format!("{}-{n}-{run}", kind.namespace_prefix());
    create_namespace(client, &ns).await?;
    create_service_accounts(client, &ns, n, concurrency).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), &ns);
    // The objects exist before the clock starts: these floors time only what an operator does
    // for an object it is told about.
    let owners: HashMap<String, String> = if matches!(
        kind,
        FloorKind::Operator | FloorKind::OperatorPodcredsSecret
    ) {
        create_bindings(client, &ns, n, concurrency).await?;
        bindings
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|b| Some((b.metadata.name?, b.metadata.uid?)))
            .collect()
    } else {
        HashMap::new()
    };
    let sts = AwsStsClient::new(StsTimeouts::default(), None);
    let profile = maybe_profile(
        args,
        client,
        &format!("{}-{n}-{run}", kind.namespace_prefix()),
    );
    let meter = PhaseMeter::start(plane, client, None).await?;
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (accounts, secrets, bindings, sts, ns, owners) =
                (&accounts, &secrets, &bindings, &sts, &ns, &owners);
            async move {
                let name = format!("b{i}");
                if kind == FloorKind::OperatorWithCreate {
                    bindings
                        .create(&PostParams::default(), &binding(&name, &format!("sa-{i}"))?)
                        .await?;
                }
                let request = TokenRequest {
                    spec: Some(TokenRequestSpec {
                        audiences: Some(vec!["sts.amazonaws.com".into()]),
                        expiration_seconds: Some(600),
                        ..TokenRequestSpec::default()
                    }),
                    ..TokenRequest::default()
                };
                let token = accounts
                    .create_token_request(&format!("sa-{i}"), &PostParams::default(), &request)
                    .await?
                    .status
                    .and_then(|s| s.token)
                    .context("no token")?;
                let creds = sts
                    .assume_role_with_web_identity(WebIdentityRequest {
                        role_arn: ROLE.into(),
                        session_name: format!("{ns}.b{i}"),
                        web_identity_token: SecretString::from(token),
                        scope: SessionScope {
                            duration_seconds: 3600,
                            policy: None,
                            policy_arns: vec![],
                        },
                        target: StsTarget {
                            region: "us-east-1".into(),
                            endpoint: Some(emulator.url()),
                        },
                    })
                    .await?;
                let mut data = BTreeMap::from([(
                    "AWS_ACCESS_KEY_ID".to_string(),
                    ByteString(creds.access_key_id.clone().into_bytes()),
                )]);
                if kind != FloorKind::Bare {
                    // An operator's Secret must hold usable credentials: the whole set.
                    data.insert(
                        "AWS_SECRET_ACCESS_KEY".into(),
                        ByteString(creds.secret_access_key.expose_secret().as_bytes().to_vec()),
                    );
                    data.insert(
                        "AWS_SESSION_TOKEN".into(),
                        ByteString(creds.session_token.expose_secret().as_bytes().to_vec()),
                    );
                }
                let secret = if kind == FloorKind::OperatorPodcredsSecret {
                    podcreds_secret(ns, &name, owners.get(&name), &creds)?
                } else {
                    Secret {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            ..ObjectMeta::default()
                        },
                        data: Some(data),
                        ..Secret::default()
                    }
                };
                let post = PostParams {
                    field_manager: (kind == FloorKind::OperatorPodcredsSecret)
                        .then(|| podcreds::secret::FIELD_MANAGER.into()),
                    ..PostParams::default()
                };
                let created = secrets.create(&post, &secret).await?;
                if kind != FloorKind::Bare {
                    let uid = created.metadata.uid.unwrap_or_default();
                    bindings
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(ready_status(&name, &uid, &creds)),
                        )
                        .await?;
                }
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let phase = meter.finish(client).await?;
    if let Some(profile) = profile {
        profile.await?;
    }
    Ok((seconds, phase))
}

//! Hostile load: what tenants' attempts to bloat the operator's caches cost it in memory. Labelled
//! Secrets with a 200 KB annotation each in podcreds' prefix (the Secret cache keeps only
//! podcreds' own, bounded annotations), then bindings just under the cached-size bound and at the
//! CRD's maximum (the cache keeps a stub of those). Measured here; the e2e tests
//! `tenant::labelled_secrets_built_to_bloat_the_cache_cost_nothing` and
//! `tenant::oversized_bindings_are_refused_and_maximal_ones_served` check the behaviour.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::{ControlPlane, Launch, Operator};
use serde::Serialize;
use sts_emulator::{Emulator, Role};

use super::proc::rss_mib;
use super::{Args, create_namespace};

#[derive(Serialize, Debug)]
pub struct HostileResult {
    pub bloat_secrets: usize,
    pub bloat_bytes_each: usize,
    pub rss_before_mib: f64,
    pub rss_after_bloat_mib: f64,
    pub maximal_bindings: usize,
    pub maximal_binding_bytes: usize,
    pub oversized_bindings: usize,
    pub oversized_binding_bytes: usize,
    /// The operator's peak RSS (VmHWM) over the whole phase.
    pub peak_rss_mib: f64,
}

const NS: &str = "hostile";
const PADDING: usize = 200 * 1024;

/// Waits until `done` holds, polling every half second, for at most ten minutes.
async fn until<F, Fut>(what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done().await? {
        if Instant::now() > deadline {
            bail!("hostile: {what} never happened");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

pub async fn measure(
    plane: &ControlPlane,
    emulator: &Emulator,
    bin: &Path,
    args: &Args,
) -> anyhow::Result<HostileResult> {
    let client = plane.client().await?;
    create_namespace(&client, NS).await?;
    podcreds_testenv::create_service_account(&client, NS, "app").await?;
    let role = format!("arn:aws:iam::123456789012:role/{NS}");
    emulator.add_role(Role {
        arn: role.clone(),
        subjects: vec![format!("system:serviceaccount:{NS}:app")],
        ..Role::default()
    });
    let launch = Launch::new(bin, &plane.kubeconfig, plane.dir())
        .ready_timeout(Duration::from_secs(120))
        .args([
            format!("--sts-endpoint={}", emulator.url()),
            "--allow-insecure-sts-endpoints".into(),
            format!("--namespaces={NS}"),
            "--log-format=json".into(),
        ]);
    let operator = Operator::start(launch).await?;
    let pid = operator.pid();
    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), NS);
    let dynamic = kube::api::ApiResource::erase::<AWSRoleBinding>(&());
    let untyped: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &dynamic);
    let create = |name: String, spec: serde_json::Value| {
        let untyped = untyped.clone();
        async move {
            let object: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "podcreds.dev/v1alpha1",
                "kind": "AWSRoleBinding",
                "metadata": {"name": name},
                "spec": spec,
            }))?;
            untyped.create(&PostParams::default(), &object).await?;
            Ok::<(), anyhow::Error>(())
        }
    };
    create(
        "b".into(),
        serde_json::json!({"serviceAccountName": "app", "roleArn": role}),
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    until("the first binding's Secret", || async {
        Ok(secrets.get_opt("b").await?.is_some())
    })
    .await?;
    let rss_before_mib = rss_mib(pid).0;

    // Labelled Secrets with 200 KB annotations in podcreds' prefix.
    let padding = "x".repeat(PADDING);
    futures::stream::iter(0..args.hostile_secrets)
        .map(|i| {
            let secrets = secrets.clone();
            let padding = padding.clone();
            async move {
                let bloat = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("bloat-{i}")),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_string(),
                            "podcreds".to_string(),
                        )])),
                        annotations: Some(BTreeMap::from([(
                            format!("podcreds.dev/pad-{i}"),
                            padding,
                        )])),
                        ..ObjectMeta::default()
                    },
                    ..Secret::default()
                };
                secrets.create(&PostParams::default(), &bloat).await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    // The Secret watch delivers in order: once the operator has recreated its own Secret (deleted
    // after every bloated one was created), it has seen them all.
    let old = secrets.get("b").await?.metadata.uid;
    secrets.delete("b", &Default::default()).await?;
    until("the recreated Secret", || async {
        Ok(secrets
            .get_opt("b")
            .await?
            .is_some_and(|s| s.metadata.uid != old))
    })
    .await?;
    let rss_after_bloat_mib = rss_mib(pid).0;
    for i in 0..args.hostile_secrets {
        let _ = secrets
            .delete(&format!("bloat-{i}"), &Default::default())
            .await;
    }

    // Bindings at the cached-size bound and above it, in a namespace allowing no role (every one
    // is reconciled, none costs an STS call).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deny = serde_json::json!({"metadata": {"annotations": {
        podcreds::allowlist::ANNOTATION: "arn:aws:iam::123456789012:role/none",
    }}});
    namespaces
        .patch(NS, &PatchParams::default(), &Patch::Merge(&deny))
        .await?;
    let maximal = podcreds_testenv::fixtures::large_binding_spec(&role, 11);
    let oversized = podcreds_testenv::fixtures::large_binding_spec(&role, 50);
    let specs: Vec<(String, serde_json::Value)> = (0..args.maximal_bindings)
        .map(|i| (format!("m{i}"), maximal.clone()))
        .chain((0..args.oversized_bindings).map(|i| (format!("x{i}"), oversized.clone())))
        .collect();
    futures::stream::iter(specs)
        .map(|(name, spec)| create(name, spec))
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    let expected = args.maximal_bindings + args.oversized_bindings;
    until("every large binding refused", || async {
        let metrics = operator.metrics().await?;
        let refused: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("podcreds_reconciliations_total{result=\"invalid\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Ok(refused >= expected as f64)
    })
    .await?;
    let peak_rss_mib = rss_mib(pid).1;
    drop(operator);
    let _ = bindings
        .delete_collection(&Default::default(), &Default::default())
        .await;
    let result = HostileResult {
        bloat_secrets: args.hostile_secrets,
        bloat_bytes_each: PADDING,
        rss_before_mib,
        rss_after_bloat_mib,
        maximal_bindings: args.maximal_bindings,
        maximal_binding_bytes: serde_json::to_vec(&maximal)?.len(),
        oversized_bindings: args.oversized_bindings,
        oversized_binding_bytes: serde_json::to_vec(&oversized)?.len(),
        peak_rss_mib,
    };
    println!(
        "  hostile: RSS {:.1} MiB, {:.1} MiB after {} labelled Secrets of 200 KB; peak {:.1} MiB with {} bindings of {} bytes and {} of {} bytes",
        result.rss_before_mib,
        result.rss_after_bloat_mib,
        result.bloat_secrets,
        result.peak_rss_mib,
        result.maximal_bindings,
        result.maximal_binding_bytes,
        result.oversized_bindings,
        result.oversized_binding_bytes
    );
    Ok(result)
}

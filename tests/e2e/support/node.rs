//! The operator and the chart on the test node: rollouts, the leader, CRD adoption, namespaces and the values that reach the node's bridge.

use crate::support::Env;
use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;

/// The chart values (`--set-string`) that let its pods reach the apiserver and the emulator on
/// the node's bridge: STS endpoint and region, and the apiserver's address (no kube-proxy here,
/// so the Service `kubernetes` is unreachable and the explicit variables win).
pub(crate) async fn chart_network_values(node_env: &Env) -> anyhow::Result<Vec<String>> {
    let network = node_env.plane.pod_network().context("no pod network")?;
    let gateway = network.gateway();
    let api_port = network.expose(node_env.plane.api_port()).await?;
    let emulator_port: u16 = node_env
        .emulator
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .context("emulator port")?;
    let sts_port = network.expose(emulator_port).await?;
    Ok(vec![
        format!("operator.stsEndpoint=http://{gateway}:{sts_port}"),
        "operator.defaultRegion=eu-west-1".into(),
        "extraEnv[0].name=KUBERNETES_SERVICE_HOST".into(),
        format!("extraEnv[0].value={gateway}"),
        "extraEnv[1].name=KUBERNETES_SERVICE_PORT".into(),
        format!("extraEnv[1].value={api_port}"),
        "agent.extraEnv[0].name=KUBERNETES_SERVICE_HOST".into(),
        format!("agent.extraEnv[0].value={gateway}"),
        "agent.extraEnv[1].name=KUBERNETES_SERVICE_PORT".into(),
        format!("agent.extraEnv[1].value={api_port}"),
    ])
}

/// Creates namespace `name` enforcing the restricted Pod Security Standard.
pub(crate) async fn restricted_namespace(env: &Env, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            }}))?,
        )
        .await?;
    Ok(())
}

/// After `helm uninstall`: the CRDs are still there (`helm.sh/resource-policy: keep`) and still
/// serve their objects.
pub(crate) async fn ensure_crds_kept(env: &Env) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for (_, crd) in podcreds::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        let kept = crds
            .get_opt(&name)
            .await?
            .with_context(|| format!("helm uninstall deleted CRD {name}"))?;
        ensure!(
            kept.metadata.deletion_timestamp.is_none(),
            "CRD {name} is being deleted after helm uninstall"
        );
    }
    Ok(())
}

/// Makes the podcreds CRDs part of Helm release `release` in `namespace`: the label and
/// annotations Helm checks before it takes over an object it did not create (README, Upgrading).
pub(crate) async fn adopt_crds(env: &Env, release: &str, namespace: &str) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let adopt = json!({"metadata": {
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {
            "meta.helm.sh/release-name": release,
            "meta.helm.sh/release-namespace": namespace,
        },
    }});
    for (_, crd) in podcreds::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        crds.patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&adopt),
        )
        .await
        .with_context(|| format!("adopting CRD {name}"))?;
    }
    Ok(())
}

/// The holder of the operator's leader-election Lease.
pub(crate) async fn leader(node_env: &Env, ns: &str) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(node_env.client.clone(), ns);
    leases
        .get("podcreds-leader")
        .await
        .ok()?
        .spec?
        .holder_identity
}

/// Waits until Deployment `name` has rolled out `replicas` Ready pods of its current generation.
pub(crate) async fn wait_rolled_out(
    node_env: &Env,
    ns: &str,
    name: &str,
    replicas: i32,
) -> anyhow::Result<()> {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(node_env.client.clone(), ns);
    let done = crate::support::wait_for(Duration::from_secs(180), || async {
        let d = deployments.get(name).await.ok()?;
        let generation = d.metadata.generation?;
        let s = d.status?;
        (s.observed_generation == Some(generation)
            && s.updated_replicas == Some(replicas)
            && s.ready_replicas == Some(replicas)
            && s.replicas == Some(replicas))
        .then_some(())
    })
    .await;
    if done.is_none() {
        let pods: Api<Pod> = Api::namespaced(node_env.client.clone(), ns);
        let states: Vec<String> = pods
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .map(|p| {
                format!(
                    "{}: {:?}",
                    p.metadata.name.unwrap_or_default(),
                    p.status
                        .map(|s| (s.phase, s.conditions, s.container_statuses))
                )
            })
            .collect();
        let node = node_env.plane.node().context("no node")?;
        bail!(
            "deployment {ns}/{name} did not roll out {replicas} Ready replicas:\n{}\n{}\n{}",
            states.join("\n"),
            node.logs(30),
            node_env.plane.logs(15)
        );
    }
    Ok(())
}

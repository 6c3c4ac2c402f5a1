//! Consumers that cannot refresh, on the real node: three Deployments read one binding's
//! Secret (a volume with `credential_process`, `envFrom`, a `subPath` mount). With
//! `--watch-pods` the operator reports the two that will go stale (status, metric, an Event per
//! pod and credential set); with `spec.restartStaleConsumers` it evicts only those two, before
//! what they captured expires and once per pod, while a PodDisruptionBudget that forbids
//! evictions is reported and respected.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use podcreds::api::{AWSRoleBinding, ConsumersStatus};
use podcreds_testenv::node::pod_client_pod;
use serde_json::json;

use crate::node::{MOUNT_PATH, pod_client_binary};
use crate::support::{Env, counter, spec_with};
use podcreds_testenv::Options;

/// A Deployment of one pod client on the test node that reads the binding's Secret through its
/// volume (`credential_process`) and, as `name` says, also `envfrom` or as a `subpath` copy.
fn deployment(name: &str, sts_endpoint: &str) -> anyhow::Result<Deployment> {
    let mut pod = pod_client_pod(name, "app", MOUNT_PATH, sts_endpoint, 2000);
    pod["spec"]["nodeName"] = json!(podcreds_testenv::node::NODE_NAME);
    pod["spec"]["hostNetwork"] = json!(true);
    let container = &mut pod["spec"]["containers"][0];
    match name {
        "envfrom" => container["envFrom"] = json!([{"secretRef": {"name": "app"}}]),
        "subpath" => {
            if let Some(mounts) = container["volumeMounts"].as_array_mut() {
                mounts.push(json!({"name": "aws", "mountPath": "/aws/credentials",
                    "subPath": "credentials", "readOnly": true}));
            }
        }
        _ => {}
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod["spec"].clone(),
            },
        },
    }))?)
}

/// The running pods of Deployment `app` (name -> UID).
async fn pods_of(pods: &Api<Pod>, app: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((p.metadata.name?, p.metadata.uid?)))
        .collect())
}

/// The Events of `reason` in `ns`, each with its note and how often it was emitted.
async fn events(
    client: &kube::Client,
    ns: &str,
    reason: &str,
) -> anyhow::Result<Vec<(Option<String>, String, i32, Option<jiff::Timestamp>)>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| {
            let uid = e.regarding.as_ref().and_then(|r| r.uid.clone());
            let count = e.series.as_ref().map_or(1, |s| s.count);
            let at = e.event_time.as_ref().map(|t| t.0);
            (uid, e.note.unwrap_or_default(), count, at)
        })
        .collect())
}

async fn consumers(bindings: &Api<AWSRoleBinding>) -> Option<ConsumersStatus> {
    bindings
        .get("app")
        .await
        .ok()?
        .status?
        .consumers
        .map(|c| *c)
}

pub async fn stale_consumers_are_reported_and_restarted_before_expiry(
    env: &Env,
) -> anyhow::Result<()> {
    let client_binary = pod_client_binary()?;
    // Deployments and PodDisruptionBudgets need their controllers, which come with the pod
    // network; the pods themselves use the host's network, where the emulator listens.
    let node_env = Env::start_with(Options {
        node: true,
        pod_network: true,
        ..Options::default()
    })
    .await
    .context("starting a control plane with a node and its controllers")?;
    let node = node_env
        .plane
        .node()
        .context("the control plane started without its node")?;
    node.import_built_image(
        "pod-client.tar",
        &podcreds_testenv::node::pod_client_image(client_binary)?,
    )?;

    let ns = node_env.namespace("stale").await?;
    node_env.service_account(&ns, "app").await?;
    // Grants of 150 s renewed 120 s before they expire: a new set every 30 s, so pods live
    // through several sets.
    let role = node_env.role(&format!("{ns}-app"), &ns, "app", Some(150));
    let operator = env
        .start_operator_with_kubeconfig(
            &node_env.plane.kubeconfig,
            &[&ns],
            &node_env.emulator.url(),
            &["--watch-pods"],
        )
        .await?;
    node_env
        .create_ready(
            &ns,
            "app",
            spec_with(
                &role,
                json!({"mountPath": MOUNT_PATH, "renewBefore": "120s", "sts": {"region": "eu-west-1"}}),
            ),
            Duration::from_secs(60),
        )
        .await?;

    let sts = node_env.emulator.url();
    let deployments: Api<Deployment> = Api::namespaced(node_env.client.clone(), &ns);
    let built = ["volume", "envfrom", "subpath"]
        .into_iter()
        .map(|name| deployment(name, &sts))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for d in &built {
        deployments.create(&PostParams::default(), d).await?;
    }

    // Reported: one pod that refreshes, two that will go stale, by name.
    let bindings = node_env.bindings(&ns);
    let pods: Api<Pod> = Api::namespaced(node_env.client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let reported = loop {
        let stale: BTreeSet<String> = [
            pods_of(&pods, "envfrom").await?,
            pods_of(&pods, "subpath").await?,
        ]
        .into_iter()
        .flat_map(|p| p.into_keys())
        .collect();
        if let Some(c) = consumers(&bindings).await
            && c.refreshing == 1
            && c.will_go_stale == 2
            && stale.len() == 2
            && c.stale_pods.iter().cloned().collect::<BTreeSet<_>>() == stale
        {
            break c;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "status.consumers never said 1 refreshing and 2 stale ({stale:?}): {:?}; node logs:\n{}",
                consumers(&bindings).await,
                node.logs(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(
        reported.blocked_evictions.is_empty(),
        "evictions reported while restartStaleConsumers is off: {reported:?}"
    );
    let series = format!("podcreds_stale_consumers{{namespace=\"{ns}\"}}");
    let metric = counter(&operator.metrics().await?, &series);
    ensure!(metric == 2.0, "{series} is {metric}, not 2");

    // A Warning Event on each stale pod naming the container, what it captured and when that
    // expires; none on the pod that refreshes.
    let volume_uid = pods_of(&pods, "volume")
        .await?
        .into_values()
        .next()
        .context("no volume pod")?;
    let envfrom_uid = pods_of(&pods, "envfrom")
        .await?
        .into_values()
        .next()
        .context("no envfrom pod")?;
    let subpath_uid = pods_of(&pods, "subpath")
        .await?
        .into_values()
        .next()
        .context("no subpath pod")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let warned = events(&node_env.client, &ns, "CredentialsWillGoStale").await?;
        let note_of = |uid: &str| {
            warned
                .iter()
                .find(|(u, ..)| u.as_deref() == Some(uid))
                .map(|(_, n, ..)| n.clone())
        };
        if let (Some(envfrom), Some(subpath)) = (note_of(&envfrom_uid), note_of(&subpath_uid)) {
            ensure!(
                envfrom.contains("container app read envFrom (every key) of Secret app")
                    && envfrom.contains("expire"),
                "envFrom pod's Event: {envfrom}"
            );
            ensure!(
                subpath.contains("container app read subPath credentials of Secret app"),
                "subPath pod's Event: {subpath}"
            );
            ensure!(
                note_of(&volume_uid).is_none(),
                "the pod that refreshes was warned"
            );
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no CredentialsWillGoStale Event on both stale pods: {warned:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The opt-in. A PodDisruptionBudget forbids evicting the subPath pod.
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(node_env.client.clone(), &ns);
    budgets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "subpath"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "subpath"}}},
            }))?,
        )
        .await?;
    // Evictions are judged against the budget once the disruption controller has seen it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let pdb = budgets.get("subpath").await?;
        let seen = pdb.status.as_ref().and_then(|s| s.observed_generation);
        if seen.is_some() && seen == pdb.metadata.generation {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the disruption controller never processed the budget: {:?}",
                pdb.status
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bindings
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restartStaleConsumers": {"leadTime": "60s"}}})),
        )
        .await?;

    // Until the envFrom Deployment's pod was replaced twice and the blocked subPath eviction is
    // reported, the volume pod and the subPath pod stay.
    // The deadline only stops a stuck run: this apiserver has been seen taking minutes to refuse
    // an eviction a budget forbids.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut envfrom_uids = BTreeSet::from([envfrom_uid.clone()]);
    let blocked = loop {
        for uid in pods_of(&pods, "envfrom").await?.into_values() {
            envfrom_uids.insert(uid);
        }
        let volume_now: Vec<String> = pods_of(&pods, "volume").await?.into_values().collect();
        ensure!(
            volume_now.iter().all(|u| *u == volume_uid),
            "the volume pod was replaced: {volume_now:?}"
        );
        let subpath_now: Vec<String> = pods_of(&pods, "subpath").await?.into_values().collect();
        ensure!(
            subpath_now.iter().all(|u| *u == subpath_uid),
            "the subPath pod was evicted despite its PodDisruptionBudget: {subpath_now:?}"
        );
        let c = consumers(&bindings).await;
        let blocked = c.as_ref().and_then(|c| {
            c.blocked_evictions
                .iter()
                .find(|b| b.reason == "DisruptionBudget")
                .cloned()
        });
        if envfrom_uids.len() >= 3
            && let Some(blocked) = blocked
        {
            break blocked;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "after 10 minutes: envFrom pods {envfrom_uids:?}, status.consumers {c:?}; node logs:\n{}",
                node.logs(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(
        blocked.pod.starts_with("subpath-"),
        "the blocked eviction names {:?}",
        blocked.pod
    );

    // Each evicted pod once, and before what it captured expired.
    let evicted = events(&node_env.client, &ns, "StaleConsumerEvicted").await?;
    let mut per_pod: BTreeMap<String, i32> = BTreeMap::new();
    for (regarding, note, count, at) in &evicted {
        let uid = regarding
            .as_deref()
            .with_context(|| format!("eviction Event about no pod: {note}"))?;
        ensure!(
            note.contains(&format!("(uid {uid})")),
            "eviction Event about {uid} says: {note}"
        );
        ensure!(
            uid != volume_uid && uid != subpath_uid,
            "evicted a pod that refreshes or is protected: {note}"
        );
        *per_pod.entry(uid.to_string()).or_default() += count;
        let expires: jiff::Timestamp = note
            .split("expire at ")
            .nth(1)
            .with_context(|| format!("eviction Event without an expiry: {note}"))?
            .trim()
            .parse()
            .with_context(|| format!("eviction Event without an expiry: {note}"))?;
        let at = at.context("eviction Event without a time")?;
        ensure!(at < expires, "evicted at {at}, after {expires}: {note}");
    }
    ensure!(
        per_pod.len() >= 2 && per_pod.values().all(|n| *n == 1),
        "evictions per pod: {per_pod:?}"
    );
    let envfrom_evictions = per_pod.len();
    // At most one Warning per pod and credential set (repeats are the Event's series), however
    // often the binding was reconciled: this operator serves this one binding, so its refresh
    // counter is the number of sets written.
    let sets = counter(
        &operator.metrics().await?,
        "podcreds_credential_refreshes_total",
    );
    let warned = events(&node_env.client, &ns, "CredentialsWillGoStale").await?;
    let mut per_pod: BTreeMap<Option<String>, i32> = BTreeMap::new();
    for (uid, _, count, _) in &warned {
        *per_pod.entry(uid.clone()).or_default() += count;
    }
    ensure!(
        per_pod.values().all(|n| f64::from(*n) <= sets),
        "warnings per pod {per_pod:?} for {sets} credential sets"
    );
    ensure!(
        !per_pod.contains_key(&Some(volume_uid.clone())),
        "the pod that refreshes was warned"
    );

    // The budget lifted: the subPath pod is evicted too, and nothing is reported blocked.
    budgets.delete("subpath", &DeleteParams::default()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let subpath_now: Vec<String> = pods_of(&pods, "subpath").await?.into_values().collect();
        let c = consumers(&bindings).await;
        if subpath_now.iter().any(|u| *u != subpath_uid)
            && c.as_ref().is_some_and(|c| {
                c.blocked_evictions
                    .iter()
                    .all(|b| b.reason != "DisruptionBudget")
            })
        {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the subPath pod was not evicted once its budget went: {subpath_now:?}, {c:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let volume_now: Vec<String> = pods_of(&pods, "volume").await?.into_values().collect();
    ensure!(
        volume_now == [volume_uid.clone()],
        "the volume pod was replaced: {volume_now:?}"
    );
    println!(
        "  stale consumers: reported 1 refreshing and 2 stale; {} envFrom pods evicted once each before expiry; the budget held, then let the subPath pod go; the volume pod kept its UID",
        envfrom_evictions
    );
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![consumers_stale:
    stale_consumers_are_reported_and_restarted_before_expiry,
];

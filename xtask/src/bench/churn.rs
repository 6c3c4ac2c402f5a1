//! Churn: how much the operator says, per binding, while N bindings are created and while the
//! namespace holding them is deleted, at the product's default log level. A namespace going away
//! should cost no STS call and no warning; the lines per binding should stay flat as N grows.
//!
//! The benchmark's control plane runs no kube-controller-manager (it would compete for the two
//! cores), so this phase does the namespace controller's job itself, in the same order: the
//! namespace is marked for deletion, its content is deleted by collection, then it is finalized.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::{ControlPlane, Launch, Operator};
use serde::Serialize;
use sts_emulator::Emulator;

use super::{Args, binding, create_namespace, create_service_accounts};

/// Log lines by level.
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq)]
pub struct LogLines {
    pub total: usize,
    pub error: usize,
    pub warn: usize,
    pub info: usize,
}

impl LogLines {
    /// Counts the JSON log lines of `log` by their `level` field.
    pub fn count(log: &str) -> Self {
        let mut lines = LogLines::default();
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            lines.total += 1;
            let level = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("level").and_then(|l| l.as_str()).map(str::to_string));
            match level.as_deref() {
                Some("ERROR") => lines.error += 1,
                Some("WARN") => lines.warn += 1,
                Some("INFO") => lines.info += 1,
                _ => {}
            }
        }
        lines
    }

    fn since(self, before: LogLines) -> LogLines {
        LogLines {
            total: self.total - before.total,
            error: self.error - before.error,
            warn: self.warn - before.warn,
            info: self.info - before.info,
        }
    }

    fn per(self, n: usize) -> f64 {
        self.total as f64 / n.max(1) as f64
    }
}

#[derive(Serialize, Debug)]
pub struct ChurnResult {
    pub bindings: usize,
    /// Lines while the bindings were created until all were Ready.
    pub create_lines: LogLines,
    pub create_lines_per_binding: f64,
    /// Lines from the namespace's deletion until the operator had forgotten it.
    pub delete_lines: LogLines,
    pub delete_lines_per_binding: f64,
    /// STS calls made while the namespace went away (should be 0).
    pub delete_sts_calls: u64,
    pub delete_seconds: f64,
}

async fn count_ready(bindings: &Api<AWSRoleBinding>) -> anyhow::Result<usize> {
    Ok(bindings
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|b| {
            podcreds::status::ready_condition(b.status.as_ref()).is_some_and(|c| c.status == "True")
        })
        .count())
}

/// What the namespace controller does once a namespace is marked for deletion.
async fn empty_and_finalize(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let everything = ListParams::default();
    let delete = DeleteParams::default();
    Api::<AWSRoleBinding>::namespaced(client.clone(), ns)
        .delete_collection(&delete, &everything)
        .await?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .delete_collection(&delete, &everything)
        .await?;
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .delete_collection(&delete, &everything)
        .await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = namespaces.get(ns).await?;
    if let Some(spec) = namespace.spec.as_mut() {
        spec.finalizers = Some(Vec::new());
    }
    namespaces
        .replace_subresource("finalize", ns, &PostParams::default(), &namespace)
        .await?;
    Ok(())
}

/// Creates `n` bindings under an operator at the default log level, then deletes their namespace.
pub async fn measure(
    plane: &ControlPlane,
    emulator: &Emulator,
    bin: &Path,
    n: usize,
    args: &Args,
) -> anyhow::Result<ChurnResult> {
    let client = plane.client().await?;
    let ns = format!("churn-{n}");
    create_namespace(&client, &ns).await?;
    create_service_accounts(&client, &ns, n, args.concurrency).await?;
    // The product's default log level; JSON so the levels can be counted.
    let launch = Launch::new(bin, &plane.kubeconfig, plane.dir())
        .ready_timeout(Duration::from_secs(120))
        .args([
            format!("--sts-endpoint={}", emulator.url()),
            "--allow-insecure-sts-endpoints".into(),
            format!("--concurrency={}", args.concurrency),
            format!("--sts-qps={}", args.sts_qps),
            format!("--sts-burst={}", args.sts_qps),
            format!("--namespaces={ns}"),
            "--log-format=json".into(),
        ]);
    let operator = Operator::start(launch).await?;
    let started = LogLines::count(&operator.log());

    let bindings: Api<AWSRoleBinding> = Api::namespaced(client.clone(), &ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let bindings = &bindings;
            async move {
                bindings
                    .create(
                        &PostParams::default(),
                        &binding(&format!("b{i}"), &format!("sa-{i}"))?,
                    )
                    .await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while count_ready(&bindings).await? < n {
        if Instant::now() > deadline {
            bail!("churn: not all {n} bindings got Ready");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the last status writes and Events be logged before the count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let created = LogLines::count(&operator.log());

    let calls_before = emulator.count("AssumeRoleWithWebIdentity");
    let deleting = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    // The namespace controller starts a moment after the mark; the operator sees the mark first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    empty_and_finalize(&client, &ns).await?;
    while namespaces.get_opt(&ns).await?.is_some() {
        if Instant::now() > deadline {
            bail!("churn: namespace {ns} was never removed");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delete_seconds = deleting.elapsed().as_secs_f64();
    // Whatever the operator still does about the namespace (requeues, Events) happens here.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let deleted = LogLines::count(&operator.log());
    let delete_sts_calls = emulator.count("AssumeRoleWithWebIdentity") - calls_before;
    drop(operator);

    let create_lines = created.since(started);
    let delete_lines = deleted.since(created);
    println!(
        "  churn N={n}: create {:.2} lines/binding ({} WARN, {} ERROR), namespace deletion {:.2} lines/binding ({} WARN, {} ERROR), {delete_sts_calls} STS calls",
        create_lines.per(n),
        create_lines.warn,
        create_lines.error,
        delete_lines.per(n),
        delete_lines.warn,
        delete_lines.error,
    );
    Ok(ChurnResult {
        bindings: n,
        create_lines,
        create_lines_per_binding: create_lines.per(n),
        delete_lines,
        delete_lines_per_binding: delete_lines.per(n),
        delete_sts_calls,
        delete_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_by_level() {
        let log = concat!(
            "{\"level\":\"INFO\",\"fields\":{\"message\":\"a\"}}\n",
            "{\"level\":\"WARN\",\"fields\":{\"message\":\"b\"}}\n",
            "not json\n",
            "\n",
            "{\"level\":\"ERROR\"}\n",
        );
        assert_eq!(
            LogLines::count(log),
            LogLines {
                total: 4,
                error: 1,
                warn: 1,
                info: 1
            }
        );
    }
}

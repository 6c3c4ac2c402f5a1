//! Prometheus metrics (prometheus-client), served on the admin address at `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

use crate::api::AWSRoleBinding;
use crate::status::ready_condition;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The credential flow the call is part of (`WebIdentity`, `RoleChain`).
    pub flow: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    /// The credential flow the call is part of (`WebIdentity`, `RoleChain`).
    pub flow: String,
}

/// Every metric the operator records.
#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Family<ResultLabels, Counter>,
    pub refreshes: Family<ReasonLabels, Counter>,
    pub failures: Family<CategoryLabels, Counter>,
    pub sts_duration: Family<OutcomeLabels, Histogram>,
    /// STS calls that moved on to the next endpoint of a fail-over list, by flow.
    pub sts_failovers: Family<FlowLabels, Counter>,
    pub token_duration: Histogram,
    pub reconcile_duration: Family<ResultLabels, Histogram>,
    /// Credentials removed from the Secrets of bindings no longer allowed them, by reason.
    pub revocations: Family<ReasonLabels, Counter>,
    /// Bindings whose Secret another podcreds operator was seen writing (each once).
    pub installation_overlaps: Counter,
    /// Events dropped because the publishing queue was full.
    pub events_dropped: Counter,
    /// 1 while the admission policy guarding bindings is known to be installed.
    pub admission_policy_present: Gauge,
    /// Node agents' requests to the broker, by outcome (`Granted` or a refusal's category).
    pub endpoint_requests: Family<OutcomeOnly, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeOnly {
    pub outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciliations: Family::default(),
            refreshes: Family::default(),
            failures: Family::default(),
            sts_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            sts_failovers: Family::default(),
            token_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            revocations: Family::default(),
            installation_overlaps: Counter::default(),
            events_dropped: Counter::default(),
            admission_policy_present: Gauge::default(),
            endpoint_requests: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers the metrics, plus a collector that reads per-binding state from `bindings` at
    /// scrape time (so deleted bindings disappear from the output without bookkeeping).
    pub fn register(
        &self,
        registry: &mut Registry,
        bindings: Arc<Mutex<Vec<Store<AWSRoleBinding>>>>,
    ) {
        registry.register(
            "podcreds_reconciliations",
            "Reconciliations of AWSRoleBindings by result",
            self.reconciliations.clone(),
        );
        registry.register(
            "podcreds_credential_refreshes",
            "Credentials issued and written, by why they were refreshed",
            self.refreshes.clone(),
        );
        registry.register(
            "podcreds_refresh_failures",
            "Failed refreshes by error category",
            self.failures.clone(),
        );
        registry.register(
            "podcreds_sts_request_duration_seconds",
            "Latency of STS calls (AssumeRoleWithWebIdentity, AssumeRole) by credential flow and outcome",
            self.sts_duration.clone(),
        );
        registry.register(
            "podcreds_sts_endpoint_failovers",
            "STS calls that moved on to the next endpoint of a fail-over list (sts.endpoints, --sts-endpoints) because one could not answer, by credential flow",
            self.sts_failovers.clone(),
        );
        registry.register(
            "podcreds_token_request_duration_seconds",
            "Latency of Kubernetes TokenRequest calls",
            self.token_duration.clone(),
        );
        registry.register(
            "podcreds_reconcile_duration_seconds",
            "Duration of one reconciliation of an AWSRoleBinding, by result",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "podcreds_credential_revocations",
            "Credentials removed from the Secrets of bindings no longer allowed them, by reason (RoleNotAllowed, CredentialSourceNotAllowed, CredentialSourceNotFound)",
            self.revocations.clone(),
        );
        registry.register(
            "podcreds_installation_overlaps",
            "Bindings whose Secret another podcreds operator (another installation or release serving the same bindings) was seen writing, each counted once",
            self.installation_overlaps.clone(),
        );
        registry.register(
            "podcreds_events_dropped",
            "Events dropped because too many were waiting to be published (status and metrics carry the same facts)",
            self.events_dropped.clone(),
        );
        registry.register(
            "podcreds_admission_policy_present",
            "1 while the admission policy that guards AWSRoleBindings (and its binding) exists, 0 when it is missing or cannot be read",
            self.admission_policy_present.clone(),
        );
        registry.register(
            "podcreds_endpoint_requests",
            "Node agents' requests for Endpoint credentials, by outcome (Granted, or the refusal's category)",
            self.endpoint_requests.clone(),
        );
        registry.register_collector(Box::new(BindingCollector { stores: bindings }));
    }

    pub fn endpoint_request(&self, outcome: &str) {
        self.endpoint_requests
            .get_or_create(&OutcomeOnly {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn observe_sts(&self, flow: &str, outcome: &str, elapsed: Duration) {
        self.sts_duration
            .get_or_create(&OutcomeLabels {
                flow: flow.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn failed_over(&self, flow: &str) {
        self.sts_failovers
            .get_or_create(&FlowLabels {
                flow: flow.to_string(),
            })
            .inc();
    }

    pub fn observe_reconcile(&self, result: &str, elapsed: Duration) {
        self.reconcile_duration
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn reconciled(&self, result: &str) {
        self.reconciliations
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn refreshed(&self, reason: &str) {
        self.refreshes
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn revoked(&self, reason: &str) {
        self.revocations
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn failed(&self, category: &str) {
        self.failures
            .get_or_create(&CategoryLabels {
                category: category.into(),
            })
            .inc();
    }
}

/// Per-binding gauges computed from the binding caches at scrape time.
#[derive(Debug)]
struct BindingCollector {
    stores: Arc<Mutex<Vec<Store<AWSRoleBinding>>>>,
}

impl Collector for BindingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let bindings: Vec<Arc<AWSRoleBinding>> = match self.stores.lock() {
            Ok(stores) => stores.iter().flat_map(|s| s.state()).collect(),
            Err(_) => Vec::new(),
        };
        {
            let mut expiry = encoder.encode_descriptor(
                "podcreds_credentials_expiration_timestamp_seconds",
                "When the credentials in each binding's Secret expire (Unix time)",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for b in &bindings {
                let Some(exp) = b.status.as_ref().and_then(|s| s.expiration.as_ref()) else {
                    continue;
                };
                let labels = [
                    (
                        "namespace",
                        b.metadata.namespace.clone().unwrap_or_default(),
                    ),
                    ("name", b.metadata.name.clone().unwrap_or_default()),
                ];
                ConstGauge::new(exp.0.as_second()).encode(expiry.encode_family(&labels)?)?;
            }
        }
        {
            let mut stale = encoder.encode_descriptor(
                "podcreds_stale_consumers",
                "Pods that read a binding's Secret once (env, envFrom, subPath) and will go stale when the credentials they captured expire, by namespace (with --watch-pods)",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (namespace, count) in stale_consumers(&bindings) {
                ConstGauge::new(count).encode(stale.encode_family(&[("namespace", namespace)])?)?;
            }
        }
        let mut ready_counts = [0i64; 2];
        for b in &bindings {
            let ready = ready_condition(b.status.as_ref()).is_some_and(|c| c.status == "True");
            ready_counts[usize::from(ready)] += 1;
        }
        let mut gauge = encoder.encode_descriptor(
            "podcreds_bindings",
            "AWSRoleBindings known to the operator, by readiness",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (ready, count) in [("false", ready_counts[0]), ("true", ready_counts[1])] {
            ConstGauge::new(count).encode(gauge.encode_family(&[("ready", ready)])?)?;
        }
        Ok(())
    }
}

/// Pods that will go stale per namespace, as the bindings' `status.consumers` report them; only
/// namespaces with a binding that reports consumers.
fn stale_consumers(bindings: &[Arc<AWSRoleBinding>]) -> std::collections::BTreeMap<String, i64> {
    let mut out = std::collections::BTreeMap::new();
    for b in bindings {
        if let Some(consumers) = b.status.as_ref().and_then(|s| s.consumers.as_ref()) {
            *out.entry(b.metadata.namespace.clone().unwrap_or_default())
                .or_insert(0) += i64::from(consumers.will_go_stale.max(0));
        }
    }
    out
}

/// The text exposition of `registry`.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(namespace: &str, stale: Option<i32>) -> Arc<AWSRoleBinding> {
        let mut b: AWSRoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "podcreds.dev/v1alpha1", "kind": "AWSRoleBinding",
            "metadata": {"name": "b", "namespace": namespace},
            "spec": {"serviceAccountName": "app", "roleArn": "arn:aws:iam::123456789012:role/app"},
        }))
        .expect("binding");
        b.status = Some(crate::api::AWSRoleBindingStatus {
            consumers: stale.map(|n| {
                Box::new(crate::api::ConsumersStatus {
                    will_go_stale: n,
                    ..Default::default()
                })
            }),
            ..Default::default()
        });
        Arc::new(b)
    }

    #[test]
    fn stale_consumers_add_up_per_namespace() {
        let bindings = [
            binding("a", Some(2)),
            binding("a", Some(1)),
            binding("b", Some(0)),
            binding("c", None),
        ];
        let counts: Vec<(String, i64)> = stale_consumers(&bindings).into_iter().collect();
        assert_eq!(counts, [("a".to_string(), 3), ("b".to_string(), 0)]);
    }
}

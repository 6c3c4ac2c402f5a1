//! Checks that the admission policies the chart installs (the confused-deputy guard on bindings,
//! the credential source guard, the status guard, and the operator's own token and Secret
//! guards) are in place and enforced, at start and then periodically. podcreds runs without
//! them, but then anyone who may create bindings in a namespace gets the AWS identity of every
//! ServiceAccount there (and the other guards' holes open again); so their absence is said
//! loudly: a log line, `/readyz` detail, a metric and the chart's alert.
//!
//! Present is not enough: a policy whose binding only audits or warns, whose failure policy
//! ignores errors, that has no validations, or whose binding was narrowed to some resources or
//! namespaces, guards nothing. [`judge`] (pure) says which.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::Api;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::text;

/// What the last check found about one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyState {
    /// No check has completed yet (or none was asked for).
    Unchecked,
    /// The policy and its binding exist and deny what the policy refuses.
    Present,
    /// `what` ("ValidatingAdmissionPolicy" or "ValidatingAdmissionPolicyBinding") is missing.
    Missing(&'static str),
    /// Both exist, but the policy does not deny anything: `why`.
    NotEnforced(&'static str),
    /// The check itself failed (for example RBAC forbids reading the policy).
    Unknown(String),
}

impl PolicyState {
    /// One line for `/readyz` and the logs.
    pub fn describe(&self, name: &str) -> String {
        match self {
            PolicyState::Unchecked => format!("admission policy {name}: not checked yet"),
            PolicyState::Present => format!("admission policy {name}: present"),
            PolicyState::Missing(what) => {
                format!("admission policy {name}: {what} MISSING; what it guards is not checked")
            }
            PolicyState::NotEnforced(why) => format!(
                "admission policy {name}: NOT ENFORCED ({why}); what it guards is not checked"
            ),
            PolicyState::Unknown(why) => {
                format!("admission policy {name}: cannot be checked ({why})")
            }
        }
    }

    /// The metric value: 1 present, 0 anything else.
    pub fn present(&self) -> i64 {
        i64::from(*self == PolicyState::Present)
    }
}

/// What the last check found about every policy checked, in the order given.
pub type PolicyStates = Vec<(String, PolicyState)>;

/// 1 when every policy is present and enforced, else 0.
pub fn all_present(states: &[(String, PolicyState)]) -> i64 {
    i64::from(!states.is_empty() && states.iter().all(|(_, s)| s.present() == 1))
}

/// Whether a label selector selects fewer objects than "everything".
fn narrows(selector: Option<&LabelSelector>) -> bool {
    selector.is_some_and(|s| {
        s.match_labels.as_ref().is_some_and(|l| !l.is_empty())
            || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
    })
}

/// Whether a binding's `matchResources` limits the policy to part of what it matches. The
/// chart sets none; the apiserver's defaults (empty selectors) limit nothing.
fn narrowed(resources: Option<&MatchResources>) -> bool {
    resources.is_some_and(|r| {
        r.resource_rules
            .as_ref()
            .is_some_and(|rules| !rules.is_empty())
            || r.exclude_resource_rules
                .as_ref()
                .is_some_and(|rules| !rules.is_empty())
            || narrows(r.namespace_selector.as_ref())
            || narrows(r.object_selector.as_ref())
    })
}

/// Judges the policy `name` and its binding (the chart names both alike), as read.
pub fn judge(
    name: &str,
    policy: Option<&ValidatingAdmissionPolicy>,
    binding: Option<&ValidatingAdmissionPolicyBinding>,
) -> PolicyState {
    let Some(policy) = policy else {
        return PolicyState::Missing("ValidatingAdmissionPolicy");
    };
    let Some(binding) = binding else {
        return PolicyState::Missing("ValidatingAdmissionPolicyBinding");
    };
    let spec = policy.spec.as_ref();
    // Unset means Fail.
    if spec
        .and_then(|s| s.failure_policy.as_deref())
        .is_some_and(|f| f != "Fail")
    {
        return PolicyState::NotEnforced("failurePolicy is not Fail");
    }
    if spec
        .and_then(|s| s.validations.as_ref())
        .is_none_or(|v| v.is_empty())
    {
        return PolicyState::NotEnforced("the policy has no validations");
    }
    if binding.spec.policy_name != name {
        return PolicyState::NotEnforced("its binding names another policy");
    }
    if !binding.spec.validation_actions.iter().any(|a| a == "Deny") {
        return PolicyState::NotEnforced("its binding's validationActions do not include Deny");
    }
    if narrowed(binding.spec.match_resources.as_ref()) {
        return PolicyState::NotEnforced("its binding narrows matchResources");
    }
    PolicyState::Present
}

/// Reads the policy `name` and its binding, and judges them.
async fn check(client: &kube::Client, name: &str) -> PolicyState {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let policy = match policies.get_opt(name).await {
        Ok(p) => p,
        Err(e) => return PolicyState::Unknown(text::remote(&e.to_string())),
    };
    let binding = match bindings.get_opt(name).await {
        Ok(b) => b,
        Err(e) => return PolicyState::Unknown(text::remote(&e.to_string())),
    };
    judge(name, policy.as_ref(), binding.as_ref())
}

/// Checks every policy in `names` now and every `interval`, publishing each result; logs when
/// a policy's state changes.
pub async fn run(
    client: kube::Client,
    names: Vec<String>,
    interval: Duration,
    state: watch::Sender<PolicyStates>,
    metrics: Metrics,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let mut found = Vec::with_capacity(names.len());
        for name in &names {
            found.push((name.clone(), check(&client, name).await));
        }
        metrics.admission_policy_present.set(all_present(&found));
        for (name, now) in &found {
            let before = state
                .borrow()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone());
            if before.as_ref() != Some(now) {
                let line = now.describe(name);
                match now {
                    PolicyState::Present => info!("{line}"),
                    _ => warn!("{line}"),
                }
            }
        }
        state.send_replace(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use kube::api::ObjectMeta;

    fn policy(failure: Option<&str>, validations: usize) -> ValidatingAdmissionPolicy {
        ValidatingAdmissionPolicy {
            metadata: ObjectMeta {
                name: Some("g".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ValidatingAdmissionPolicySpec {
                failure_policy: failure.map(str::to_string),
                validations: Some(
                    (0..validations)
                        .map(|_| Validation {
                            expression: "false".into(),
                            ..Validation::default()
                        })
                        .collect(),
                ),
                ..ValidatingAdmissionPolicySpec::default()
            }),
            status: None,
        }
    }

    fn binding(policy: &str, actions: &[&str]) -> ValidatingAdmissionPolicyBinding {
        ValidatingAdmissionPolicyBinding {
            metadata: ObjectMeta {
                name: Some("g".into()),
                ..ObjectMeta::default()
            },
            spec: ValidatingAdmissionPolicyBindingSpec {
                policy_name: policy.into(),
                validation_actions: actions.iter().map(|a| a.to_string()).collect(),
                ..ValidatingAdmissionPolicyBindingSpec::default()
            },
        }
    }

    #[test]
    fn only_a_complete_enforced_policy_counts_as_present() {
        let good = policy(Some("Fail"), 2);
        let deny = binding("g", &["Deny"]);
        assert_eq!(judge("g", Some(&good), Some(&deny)), PolicyState::Present);
        assert_eq!(
            judge(
                "g",
                Some(&policy(None, 1)),
                Some(&binding("g", &["Deny", "Audit"]))
            ),
            PolicyState::Present
        );
        assert_eq!(
            judge("g", None, Some(&deny)),
            PolicyState::Missing("ValidatingAdmissionPolicy")
        );
        assert_eq!(
            judge("g", Some(&good), None),
            PolicyState::Missing("ValidatingAdmissionPolicyBinding")
        );
        for (why, policy, binding) in [
            ("audit only", good.clone(), binding("g", &["Audit"])),
            (
                "warn and audit",
                good.clone(),
                binding("g", &["Warn", "Audit"]),
            ),
            ("other policy", good.clone(), binding("other", &["Deny"])),
            ("ignore", policy(Some("Ignore"), 1), deny.clone()),
            ("no validations", policy(Some("Fail"), 0), deny.clone()),
        ] {
            assert!(
                matches!(
                    judge("g", Some(&policy), Some(&binding)),
                    PolicyState::NotEnforced(_)
                ),
                "{why}"
            );
        }
        // A binding narrowed to some namespaces guards only those.
        let mut narrowed = deny.clone();
        narrowed.spec.match_resources = Some(MatchResources {
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec!["nowhere".into()]),
                }]),
                ..LabelSelector::default()
            }),
            ..MatchResources::default()
        });
        assert_eq!(
            judge("g", Some(&good), Some(&narrowed)),
            PolicyState::NotEnforced("its binding narrows matchResources")
        );
        // The apiserver's defaults narrow nothing.
        let mut defaulted = deny;
        defaulted.spec.match_resources = Some(MatchResources {
            namespace_selector: Some(LabelSelector::default()),
            object_selector: Some(LabelSelector::default()),
            match_policy: Some("Equivalent".into()),
            ..MatchResources::default()
        });
        assert_eq!(
            judge("g", Some(&good), Some(&defaulted)),
            PolicyState::Present
        );
    }

    #[test]
    fn the_metric_is_one_only_when_every_policy_is_present() {
        let present = ("a".to_string(), PolicyState::Present);
        assert_eq!(all_present(std::slice::from_ref(&present)), 1);
        assert_eq!(all_present(&[]), 0);
        for other in [
            PolicyState::Unchecked,
            PolicyState::Missing("ValidatingAdmissionPolicyBinding"),
            PolicyState::NotEnforced("x"),
            PolicyState::Unknown("forbidden".into()),
        ] {
            assert_eq!(other.present(), 0);
            assert_eq!(all_present(&[present.clone(), ("b".into(), other)]), 0);
        }
        assert!(
            PolicyState::Missing("ValidatingAdmissionPolicy")
                .describe("g")
                .contains("ValidatingAdmissionPolicy MISSING")
        );
        assert!(
            PolicyState::NotEnforced("its binding's validationActions do not include Deny")
                .describe("g")
                .contains("NOT ENFORCED")
        );
    }
}

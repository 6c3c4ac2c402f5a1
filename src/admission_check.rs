//! Checks that the admission policy guarding bindings (the chart's confused-deputy guard) is in
//! place, at start and then periodically. podcreds runs without it, but then anyone who may
//! create bindings in a namespace gets the AWS identity of every ServiceAccount there; so its
//! absence is said loudly: a log line, `/readyz` detail, a metric and the chart's alert.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::api::Api;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::text;

/// What the last check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyState {
    /// No check has completed yet (or none was asked for).
    Unchecked,
    /// The policy and its binding exist.
    Present,
    /// `what` ("ValidatingAdmissionPolicy" or "ValidatingAdmissionPolicyBinding") is missing.
    Missing(&'static str),
    /// The check itself failed (for example RBAC forbids reading the policy).
    Unknown(String),
}

impl PolicyState {
    /// One line for `/readyz` and the logs.
    pub fn describe(&self, name: &str) -> String {
        match self {
            PolicyState::Unchecked => format!("admission policy {name}: not checked yet"),
            PolicyState::Present => format!("admission policy {name}: present"),
            PolicyState::Missing(what) => format!(
                "admission policy {name}: {what} MISSING; bindings are not checked for confused-deputy use"
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

/// Reads the policy and its binding (both named `name`, as the chart names them).
async fn check(client: &kube::Client, name: &str) -> PolicyState {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    match policies.get_opt(name).await {
        Ok(None) => return PolicyState::Missing("ValidatingAdmissionPolicy"),
        Err(e) => return PolicyState::Unknown(text::remote(&e.to_string())),
        Ok(Some(_)) => {}
    }
    match bindings.get_opt(name).await {
        Ok(None) => PolicyState::Missing("ValidatingAdmissionPolicyBinding"),
        Err(e) => PolicyState::Unknown(text::remote(&e.to_string())),
        Ok(Some(_)) => PolicyState::Present,
    }
}

/// Checks now and every `interval`, publishing each result; logs when the state changes.
pub async fn run(
    client: kube::Client,
    name: String,
    interval: Duration,
    state: watch::Sender<PolicyState>,
    metrics: Metrics,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let found = check(&client, &name).await;
        metrics.admission_policy_present.set(found.present());
        if *state.borrow() != found {
            let line = found.describe(&name);
            match found {
                PolicyState::Present => info!("{line}"),
                _ => warn!("{line}"),
            }
        }
        state.send_replace(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_complete_policy_counts_as_present() {
        assert_eq!(PolicyState::Present.present(), 1);
        for state in [
            PolicyState::Unchecked,
            PolicyState::Missing("ValidatingAdmissionPolicyBinding"),
            PolicyState::Unknown("forbidden".into()),
        ] {
            assert_eq!(state.present(), 0);
        }
        assert!(
            PolicyState::Missing("ValidatingAdmissionPolicy")
                .describe("g")
                .contains("ValidatingAdmissionPolicy MISSING")
        );
    }
}

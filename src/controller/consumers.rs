//! Consumers step (`--watch-pods`): which pods read the binding's Secret, from the pod cache
//! ([`super::pods`]); a Warning Event on each pod that will go stale, once per credential set;
//! what `status.consumers` says. Which pods those are is decided by [`crate::consumers`] (pure).

use k8s_openapi::api::core::v1::ObjectReference;

use super::context::Context;
use super::events::Announcement;
use super::report::Reconciled;
use crate::api::ConsumersStatus;
use crate::consumers::{self, Consumers};
use crate::secret::IssuedMeta;

/// Event reason on a pod that captured credentials it will not see refreshed.
pub const REASON_WILL_GO_STALE: &str = "CredentialsWillGoStale";

/// What the status write does with `status.consumers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumersUpdate {
    /// Pods are not watched, or the binding keeps no Secret: no such field.
    Clear,
    /// Nothing new is known (the pod cache is still filling, or the binding has no valid
    /// credentials to judge against): as it was.
    Keep,
    Set(ConsumersStatus),
}

impl ConsumersUpdate {
    /// `current` after this update.
    pub fn apply(self, current: &mut Option<ConsumersStatus>) {
        match self {
            ConsumersUpdate::Clear => *current = None,
            ConsumersUpdate::Keep => {}
            ConsumersUpdate::Set(status) => *current = Some(status),
        }
    }
}

/// The consumers of the binding's Secret after `reconciled`, and the pods of theirs that were
/// not warned about the credentials the Secret holds yet get a Warning Event.
pub fn observe(ctx: &Context, namespace: &str, reconciled: &Reconciled<'_>) -> ConsumersUpdate {
    let Some(pods) = &ctx.pods else {
        return ConsumersUpdate::Clear;
    };
    let (spec, issued) = match reconciled {
        Reconciled::Fresh { spec, issued } | Reconciled::Refreshed { spec, issued, .. } => {
            (*spec, issued)
        }
        Reconciled::Invalid(_) | Reconciled::NotAllowed { .. } => return ConsumersUpdate::Clear,
        _ => return ConsumersUpdate::Keep,
    };
    if !spec.delivery.secret {
        return ConsumersUpdate::Clear;
    }
    if !pods.synced() {
        return ConsumersUpdate::Keep;
    }
    let found = pods.consumers(namespace, &spec.secret_name);
    warn_stale(ctx, pods, &found, &spec.secret_name, issued);
    ConsumersUpdate::Set(consumers::status(&found))
}

fn warn_stale(
    ctx: &Context,
    pods: &super::pods::PodCache,
    found: &Consumers,
    secret: &str,
    issued: &IssuedMeta,
) {
    for pod in &found.stale {
        if !consumers::warning_due(pod, issued, pods.warned(&pod.namespace, &pod.uid)) {
            continue;
        }
        pods.remember_warning(&pod.namespace, &pod.uid, issued.expiration);
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectReference::default()
        };
        ctx.shared.events.announce_to(
            reference,
            Announcement {
                warning: true,
                reason: REASON_WILL_GO_STALE,
                action: "Check",
                note: consumers::stale_note(pod, secret, issued),
            },
        );
    }
}

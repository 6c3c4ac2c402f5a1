//! Act step, ServiceAccount side: lists the binding's image-pull Secret in its ServiceAccount's
//! `imagePullSecrets` (`imagePullSecret.addToServiceAccount`), and takes it out again. The
//! patch adds or removes exactly podcreds' own entry of the list as read, conditional on the
//! version read, so the user's entries are never removed, even by a concurrent change.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::secret::FIELD_MANAGER;
use crate::text;
use crate::throttle::Throttle;

#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("ServiceAccount {0} does not exist, so the image-pull Secret cannot be added to it")]
    NotFound(String),
    #[error("listing the image-pull Secret in ServiceAccount {name}: {reason}")]
    Patch { name: String, reason: String },
}

impl ServiceAccountError {
    pub fn category(&self) -> &'static str {
        match self {
            ServiceAccountError::NotFound(_) => "ServiceAccountNotFound",
            ServiceAccountError::Patch { .. } => "ServiceAccountPatchFailed",
        }
    }
}

/// The merge patch that makes `secret` listed (`want`) or not in `current` (the
/// ServiceAccount's `imagePullSecrets` names, in order, read at `version`), touching no other
/// entry; `None` when nothing is to change. A merge patch replaces the whole list, so it is
/// conditional on the version read: a list someone changed since is refused (409), never
/// overwritten.
pub fn pull_secret_patch(
    current: Option<&[String]>,
    version: Option<&str>,
    secret: &str,
    want: bool,
) -> Option<Value> {
    let list = current.unwrap_or_default();
    let listed = list.iter().any(|n| n == secret);
    if listed == want {
        return None;
    }
    let entries: Vec<Value> = list
        .iter()
        .map(String::as_str)
        .filter(|n| want || *n != secret)
        .chain(want.then_some(secret))
        .map(|n| json!({ "name": n }))
        .collect();
    Some(json!({
        "metadata": {"resourceVersion": version},
        "imagePullSecrets": entries,
    }))
}

/// Lists `secret` in ServiceAccount `name`'s `imagePullSecrets` (`want`), or takes it out.
pub async fn set_pull_secret(
    client: kube::Client,
    throttle: &Throttle,
    namespace: &str,
    name: &str,
    secret: &str,
    want: bool,
) -> Result<(), ServiceAccountError> {
    let api: Api<ServiceAccount> = Api::namespaced(client, namespace);
    let failed = |e: kube::Error| ServiceAccountError::Patch {
        name: name.to_string(),
        reason: text::remote(&e.to_string()),
    };
    throttle.kube().await;
    let Some(account) = api.get_opt(name).await.map_err(failed)? else {
        return match want {
            true => Err(ServiceAccountError::NotFound(name.to_string())),
            false => Ok(()),
        };
    };
    let current: Option<Vec<String>> = account
        .image_pull_secrets
        .as_ref()
        .map(|list| list.iter().map(|r| r.name.clone()).collect());
    let Some(patch) = pull_secret_patch(
        current.as_deref(),
        account.metadata.resource_version.as_deref(),
        secret,
        want,
    ) else {
        return Ok(());
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    throttle.kube().await;
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn only_podcreds_own_entry_is_added_or_removed() {
        // No list yet: one is made, if the ServiceAccount is still at the version read.
        assert_eq!(
            pull_secret_patch(None, Some("5"), "b-ecr", true),
            Some(
                json!({"metadata": {"resourceVersion": "5"}, "imagePullSecrets": [{"name": "b-ecr"}]})
            )
        );
        // The user's entries stay, in order; ours goes at the end.
        let users = names(&["dockerhub", "quay"]);
        assert_eq!(
            pull_secret_patch(Some(&users), Some("6"), "b-ecr", true),
            Some(json!({"metadata": {"resourceVersion": "6"},
                        "imagePullSecrets": [{"name": "dockerhub"}, {"name": "quay"}, {"name": "b-ecr"}]}))
        );
        // Already listed, or absent when it should be: nothing to do.
        let with_ours = names(&["dockerhub", "b-ecr", "quay"]);
        assert_eq!(
            pull_secret_patch(Some(&with_ours), Some("7"), "b-ecr", true),
            None
        );
        assert_eq!(
            pull_secret_patch(Some(&users), Some("7"), "b-ecr", false),
            None
        );
        assert_eq!(pull_secret_patch(None, Some("7"), "b-ecr", false), None);
        // Removal takes out exactly our entry.
        assert_eq!(
            pull_secret_patch(Some(&with_ours), Some("8"), "b-ecr", false),
            Some(json!({"metadata": {"resourceVersion": "8"},
                        "imagePullSecrets": [{"name": "dockerhub"}, {"name": "quay"}]}))
        );
    }
}

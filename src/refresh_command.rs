//! `podcreds refresh`: asks the operator for an immediate exchange of one binding by setting its
//! `podcreds.dev/refresh-requested-at` annotation, then waits until the status says the request
//! was handled and reports how it went. The request is an ordinary update of the binding, so
//! whoever runs it needs `patch` on it, and the operator validates the binding as always.

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::api::{AWSRoleBinding, REFRESH_REQUEST_ANNOTATION};
use crate::cli::RefreshArgs;
use crate::status::{CONDITION_DEGRADED, CONDITION_READY};

#[derive(Debug, thiserror::Error)]
pub enum RefreshCommandError {
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[source] kube::Error),
    #[error("cannot request a refresh of {namespace}/{name}: {source}")]
    Patch {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the operator did not act on the request within {0:?}: is it running, and does it watch this namespace? (the request stays recorded and is acted on when it does)"
    )]
    NotHandled(Duration),
    #[error("the exchange failed ({reason}): {message}")]
    Failed { reason: String, message: String },
}

/// Requests the refresh and, unless `args.wait` is zero, waits for its outcome.
pub async fn refresh(args: RefreshArgs) -> Result<String, RefreshCommandError> {
    let client = kube::Client::try_default()
        .await
        .map_err(RefreshCommandError::Cluster)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<AWSRoleBinding> = Api::namespaced(client, &namespace);
    // A new value every time: the time, to the nanosecond.
    let request = jiff::Timestamp::now().to_string();
    let patch =
        serde_json::json!({"metadata": {"annotations": {REFRESH_REQUEST_ANNOTATION: request}}});
    api.patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| RefreshCommandError::Patch {
            namespace: namespace.clone(),
            name: args.name.clone(),
            source,
        })?;
    if args.wait.is_zero() {
        return Ok(format!(
            "refresh of {namespace}/{} requested ({REFRESH_REQUEST_ANNOTATION}={request})\n",
            args.name
        ));
    }
    let deadline = Instant::now() + args.wait;
    loop {
        let binding = api
            .get(&args.name)
            .await
            .map_err(RefreshCommandError::Cluster)?;
        let status = binding.status.unwrap_or_default();
        if status.last_handled_refresh_request.as_deref() == Some(request.as_str()) {
            let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
            if let Some(degraded) = condition(CONDITION_DEGRADED).filter(|c| c.status == "True") {
                return Err(RefreshCommandError::Failed {
                    reason: degraded.reason.clone(),
                    message: degraded.message.clone(),
                });
            }
            return match condition(CONDITION_READY) {
                Some(ready) if ready.status == "True" => {
                    Ok(format!("{namespace}/{}: {}\n", args.name, ready.message))
                }
                Some(ready) => Err(RefreshCommandError::Failed {
                    reason: ready.reason.clone(),
                    message: ready.message.clone(),
                }),
                None => Err(RefreshCommandError::Failed {
                    reason: "NoStatus".into(),
                    message: "the binding reports no Ready condition".into(),
                }),
            };
        }
        if Instant::now() >= deadline {
            return Err(RefreshCommandError::NotHandled(args.wait));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

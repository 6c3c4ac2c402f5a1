//! The TokenRequest edge: a short-lived, audience-bound token of the binding's ServiceAccount.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use secrecy::SecretString;

use crate::retry::RetryClass;
use crate::text;

/// A ServiceAccount token: held in memory for one STS call, never stored or logged.
#[derive(Debug)]
pub struct ServiceAccountToken {
    pub token: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("ServiceAccount {0:?} does not exist in this namespace; waiting for it to be created")]
    ServiceAccountNotFound(String),
    #[error("the apiserver refused the token request for ServiceAccount {name:?}: {reason}")]
    Forbidden { name: String, reason: String },
    #[error("token request for ServiceAccount {name:?} failed: {reason}")]
    Api { name: String, reason: String },
}

impl TokenError {
    pub fn category(&self) -> &'static str {
        match self {
            TokenError::ServiceAccountNotFound(_) => "ServiceAccountNotFound",
            TokenError::Forbidden { .. } => "TokenRequestForbidden",
            TokenError::Api { .. } => "TokenRequestFailed",
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            // The ServiceAccount watch brings the binding back when the account appears; the
            // slow retry only covers an account created just before the binding was registered
            // as waiting for it.
            TokenError::ServiceAccountNotFound(_) => RetryClass::External,
            // RBAC can be fixed without touching the binding.
            TokenError::Forbidden { .. } => RetryClass::External,
            TokenError::Api { .. } => RetryClass::Transient,
        }
    }
}

/// Asks the apiserver for a token of `namespace/name` with `audience`, valid `expiration_seconds`.
pub async fn request_token(
    client: kube::Client,
    namespace: &str,
    name: &str,
    audience: &str,
    expiration_seconds: i64,
) -> Result<ServiceAccountToken, TokenError> {
    let api: Api<ServiceAccount> = Api::namespaced(client, namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
            expiration_seconds: Some(expiration_seconds),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    match api
        .create_token_request(name, &PostParams::default(), &request)
        .await
    {
        Ok(response) => {
            let status = response.status.ok_or_else(|| TokenError::Api {
                name: name.to_string(),
                reason: "the answer had no status".into(),
            })?;
            let token = status
                .token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| TokenError::Api {
                    name: name.to_string(),
                    reason: "the answer had no token".into(),
                })?;
            Ok(ServiceAccountToken {
                token: SecretString::from(token),
            })
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Err(TokenError::ServiceAccountNotFound(name.to_string()))
        }
        Err(kube::Error::Api(status)) if status.code == 403 => Err(TokenError::Forbidden {
            name: name.to_string(),
            reason: text::remote(&status.message),
        }),
        Err(e) => Err(TokenError::Api {
            name: name.to_string(),
            reason: text::remote(&e.to_string()),
        }),
    }
}

//! What the agent and the broker say to each other, and what the agent answers a pod (the AWS
//! container-credentials protocol). Shared by both sides so they cannot drift.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The path prefix, on the broker and on the agent alike: `/v1/credentials/<binding>`.
pub const CREDENTIALS_PATH: &str = "/v1/credentials/";
/// The header carrying the pod's token from the agent to the broker (the agent's own token is
/// the `Authorization: Bearer`).
pub const POD_TOKEN_HEADER: &str = "x-podcreds-pod-token";

/// Credentials as the container-credentials protocol answers them. `Debug` shows the access key
/// ID only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    /// RFC 3339, UTC.
    pub expiration: String,
}

impl std::fmt::Debug for ContainerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl ContainerCredentials {
    pub fn of(credentials: &crate::credentials::IssuedCredentials) -> Self {
        use secrecy::ExposeSecret;
        Self {
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.expose_secret().to_string(),
            token: credentials.session_token.expose_secret().to_string(),
            expiration: crate::time::whole_second(credentials.expiration)
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        }
    }
}

/// The broker's answer to an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Granted {
    pub namespace: String,
    pub binding: String,
    pub pod_uid: String,
    /// When the operator renews these credentials: the agent serves them until then.
    pub renewal_time: Timestamp,
    pub expiration: Timestamp,
    pub credentials: ContainerCredentials,
}

/// An error answer, from the broker to the agent and from the agent to the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    /// A stable category.
    pub code: String,
    /// What to fix.
    pub message: String,
}

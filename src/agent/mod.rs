//! The node agent (`podcreds agent`): a host-network pod on every node that answers the AWS
//! container-credentials protocol at `http://169.254.170.23/v1/credentials/<binding>` for the
//! node's pods, by asking the leading operator's broker over HTTPS.

/// Audience of the agents' own tokens, which the broker reviews.
pub const AGENT_AUDIENCE: &str = "podcreds.dev/broker";
/// Audience of the pods' tokens (the file `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` names).
pub const POD_AUDIENCE: &str = "podcreds.dev/endpoint";

pub mod address;
pub mod broker_client;
pub mod cache;
pub mod leader;
pub mod run;
pub mod serve;

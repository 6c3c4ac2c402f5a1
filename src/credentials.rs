//! Credentials vocabulary (pure): what STS issues, what a role chain answered, an IAM user's
//! long-term keys, and what signs a call. Pure modules (`plan`, `secret`, `spec`) and the edges
//! (`sts`, `flow`, `source`) all speak these types; none of them lives in an edge.
//!
//! Types holding secret material keep it in [`SecretString`], so `Debug` never shows it.

use jiff::Timestamp;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Temporary credentials; the secret parts are redacted from `Debug`.
#[derive(Clone, Debug)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: SecretString,
    pub expiration: Timestamp,
    pub assumed_role_arn: Option<String>,
    /// How the credentials went through a role chain, if they did.
    pub chain: Option<ChainRecord>,
    /// The endpoint that issued them (the last hop's, for a chain); `None`: the AWS regional
    /// endpoint.
    pub sts_endpoint: Option<String>,
}

/// What a role chain's hops answered, kept on the Secret (an annotation) and shown in the status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainRecord {
    /// `durationSeconds` when it asked for more than STS grants a chain (the sessions were
    /// shortened to one hour).
    #[serde(
        rename = "clampedFrom",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub clamped_from: Option<i32>,
    pub hops: Vec<HopRecord>,
}

/// What one `AssumeRole` hop answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HopRecord {
    #[serde(rename = "arn", default, skip_serializing_if = "Option::is_none")]
    pub assumed_role_arn: Option<String>,
    #[serde(rename = "exp")]
    pub expiration: Timestamp,
    #[serde(rename = "pps", default, skip_serializing_if = "Option::is_none")]
    pub packed_policy_size: Option<i32>,
}

/// An IAM user's long-term keys; the secret part is redacted from `Debug`.
#[derive(Clone, Debug)]
pub struct LongTermKeys {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

impl LongTermKeys {
    /// A short hash of the access key ID: part of the fingerprint of bindings using the keys, so
    /// that rotated keys re-issue their credentials (and the old key can be deleted) at once.
    /// The key ID itself never leaves the operator.
    pub fn digest(&self) -> String {
        let digest = Sha256::digest(self.access_key_id.as_bytes());
        hex::encode(&digest[..8])
    }
}

/// What signs a SigV4 STS call: a session's temporary credentials (the previous hop of a role
/// chain), or an IAM user's long-term keys (a credential source). An `AssumeRole` signed with
/// long-term keys is not role chaining, so STS grants it up to 12 hours.
#[derive(Clone, Debug)]
pub enum Signer {
    Session(IssuedCredentials),
    LongTerm(LongTermKeys),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_keys_change_the_digest() {
        let keys = |id: &str| LongTermKeys {
            access_key_id: id.into(),
            secret_access_key: SecretString::from("s".to_string()),
        };
        assert_eq!(keys("AKIA1").digest(), keys("AKIA1").digest());
        assert_ne!(keys("AKIA1").digest(), keys("AKIA2").digest());
        assert!(!keys("AKIA1").digest().contains("AKIA"));
    }
}

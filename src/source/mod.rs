//! `AWSCredentialSource`: an IAM user's long-term keys that bindings may derive temporary
//! credentials from. Pure rules: who may use a source for what ([`grant`]: namespaces, modes,
//! roles, durations), whether its Secret holds well-formed keys ([`keys`]); and [`Sources`]
//! ([`cache`]), the read side of the caches the operator keeps of sources and of their Secrets in
//! its own namespace. The caches themselves are fed by `controller::sources`.
//!
//! The keys are held as [`SecretString`](secrecy::SecretString) from the moment they are read
//! from the cache and are only ever exposed to sign an STS call; errors name the Secret and the
//! data key, never a value.

mod cache;
mod error;
mod grant;
mod keys;
#[cfg(test)]
mod tests;

pub use crate::credentials::LongTermKeys;
pub use cache::Sources;
pub use error::SourceError;
pub use grant::{
    Grant, Requester, allowlist_entry, check_grant, check_source, namespace_allowed, source_admits,
};
pub use keys::{ACCESS_KEY_ID_KEY, KeysError, SECRET_ACCESS_KEY_KEY, compact_secret, read_keys};

//! Whether a source's Secret holds well-formed keys, and what the cache keeps of it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use secrecy::SecretString;

use crate::credentials::LongTermKeys;

/// Data key of the access key ID in a source's Secret.
pub const ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// Data key of the secret access key in a source's Secret.
pub const SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// What is wrong with a source's Secret (never its contents).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    #[error("has no data key {0}")]
    Missing(&'static str),
    #[error(
        "data key {0} is not a well-formed key: it must be 3 to 128 printable characters without white space (a trailing newline?)"
    )]
    Malformed(&'static str),
}

fn key_text(
    data: &BTreeMap<String, ByteString>,
    key: &'static str,
    min: usize,
) -> Result<String, KeysError> {
    let bytes = &data.get(key).ok_or(KeysError::Missing(key))?.0;
    if bytes.is_empty() {
        return Err(KeysError::Missing(key));
    }
    let well_formed =
        (min..=128).contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic());
    if !well_formed {
        return Err(KeysError::Malformed(key));
    }
    // Printable ASCII, so valid UTF-8.
    String::from_utf8(bytes.clone()).map_err(|_| KeysError::Malformed(key))
}

/// Reads the keys from a source Secret's data.
pub fn read_keys(data: Option<&BTreeMap<String, ByteString>>) -> Result<LongTermKeys, KeysError> {
    let empty = BTreeMap::new();
    let data = data.unwrap_or(&empty);
    let access_key_id = key_text(data, ACCESS_KEY_ID_KEY, 3)?;
    let secret = key_text(data, SECRET_ACCESS_KEY_KEY, 8)?;
    Ok(LongTermKeys {
        access_key_id,
        secret_access_key: SecretString::from(secret),
    })
}

/// Keeps of a cached Secret of the operator's namespace only its name, resourceVersion and the
/// two key entries: whatever else lives there (Helm releases, other keys) stays out of memory.
pub fn compact_secret(secret: &mut Secret) {
    let data = secret.data.take().map(|mut data| {
        [ACCESS_KEY_ID_KEY, SECRET_ACCESS_KEY_KEY]
            .into_iter()
            .filter_map(|k| data.remove_entry(k))
            .collect::<BTreeMap<_, _>>()
    });
    *secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: secret.metadata.name.take(),
            namespace: secret.metadata.namespace.take(),
            resource_version: secret.metadata.resource_version.take(),
            ..Default::default()
        },
        data,
        ..Secret::default()
    };
}

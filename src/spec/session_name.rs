//! Role session names: what CloudTrail records for every call made with the credentials, so a
//! binding's must name its namespace, and the default one is unique per binding.

use sha2::{Digest, Sha256};

use super::policy::StsPolicy;
use super::rules::SpecError;

/// Refuses a session name that does not start with `<namespace>.`, unless the admin allows any.
pub(super) fn check_session_prefix(
    field: &str,
    session_name: &str,
    namespace: &str,
    policy: &StsPolicy,
) -> Result<(), SpecError> {
    let prefix = format!("{namespace}.");
    if !policy.allow_unprefixed_session_names && !session_name.starts_with(&prefix) {
        return Err(SpecError::SessionNameNotPrefixed {
            field: field.to_string(),
            session_name: session_name.to_string(),
            prefix,
        });
    }
    Ok(())
}

/// Characters of the hash a cut name ends with: 17 base62 characters carry more than 96 bits,
/// so no tenant can search for a binding name whose cut name collides with another's.
const HASH_CHARS: usize = 17;

/// The first [`HASH_CHARS`] base62 digits of a SHA-256 of `<namespace>/<name>`.
fn name_hash(namespace: &str, name: &str) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    // 128 bits of the digest, written in base 62: more than enough for 17 digits.
    let mut value = u128::from_be_bytes(digest[..16].try_into().unwrap_or([0; 16]));
    let mut out = String::with_capacity(HASH_CHARS);
    for _ in 0..HASH_CHARS {
        out.push(char::from(DIGITS[(value % 62) as usize]));
        value /= 62;
    }
    out
}

/// `full` if it fits in `max` characters, else its start, `_` and the hash of the binding.
/// Kubernetes names never contain `_`, so a cut name never equals an uncut one.
fn cut_with_hash(full: String, max: usize, namespace: &str, name: &str) -> String {
    if full.len() <= max {
        return full;
    }
    let kept = max - 1 - HASH_CHARS;
    // `full` is ASCII (Kubernetes names, cleaned), so any byte index is a character boundary.
    format!("{}_{}", &full[..kept], name_hash(namespace, name))
}

/// `<namespace>.<name>` within the STS session name rules. Kubernetes names only use characters
/// STS accepts, so only the length needs care: a name longer than 64 characters keeps its first
/// 46, then `_` and 17 base62 characters (over 96 bits) of a SHA-256 of `<namespace>/<name>`, so
/// two bindings never share a session name in CloudTrail. The namespace prefix stays whole for
/// namespaces of up to 45 characters.
pub fn default_session_name(namespace: &str, name: &str) -> String {
    let full: String = format!("{namespace}.{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut session = cut_with_hash(full, 64, namespace, name);
    while session.len() < 2 {
        session.push('-');
    }
    session
}

/// Most characters of a Roles Anywhere certificate's common name that keep the source identity
/// Roles Anywhere derives from it (`CN=<common name>`) within STS's 64.
const WORKLOAD_CN_MAX: usize = 61;

/// The common name of a ServiceAccount's Roles Anywhere certificate: `<namespace>.<name>`, cut
/// like a session name to 61 characters. Namespaces hold no `.`, so the name is unambiguous; it
/// only uses characters session tags and source identities allow.
pub fn workload_common_name(namespace: &str, service_account: &str) -> String {
    cut_with_hash(
        format!("{namespace}.{service_account}"),
        WORKLOAD_CN_MAX,
        namespace,
        service_account,
    )
}

/// Most characters of a `GetFederationToken` Name.
const FEDERATION_NAME_MAX: usize = 32;

/// The `GetFederationToken` Name of binding `namespace/name`: `<namespace>.<name>` when it fits
/// in 32 characters (Kubernetes names only use characters the Name allows), otherwise its first
/// 14 characters, `_` and 17 base62 characters of a SHA-256 of `<namespace>/<name>`: deterministic
/// and unique (over 96 bits of hash), shown in CloudTrail as `federated-user/<Name>`.
pub fn federation_name(namespace: &str, name: &str) -> String {
    cut_with_hash(
        format!("{namespace}.{name}"),
        FEDERATION_NAME_MAX,
        namespace,
        name,
    )
}

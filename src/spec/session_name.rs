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

/// Hex characters of the hash a cut default session name ends with (48 bits: no tenant can search
/// for a colliding binding name).
const SESSION_HASH_HEX: usize = 12;

/// `<namespace>.<name>` within the STS session name rules. Kubernetes names only use characters
/// STS accepts, so only the length needs care: a name longer than 64 characters keeps its first
/// 51, then `_` and 12 hex characters of a SHA-256 of `<namespace>/<name>`. Kubernetes names
/// never contain `_`, so a cut name never equals an uncut one, and two cut names of one namespace
/// would need a 48-bit hash collision: two bindings never share a session name in CloudTrail. The
/// namespace prefix stays whole for namespaces of up to 50 characters.
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
    let mut session = if full.len() <= 64 {
        full
    } else {
        let digest = hex::encode(Sha256::digest(format!("{namespace}/{name}").as_bytes()));
        let kept = 64 - 1 - SESSION_HASH_HEX;
        // `full` is ASCII (cleaned above), so any byte index is a character boundary.
        format!("{}_{}", &full[..kept], &digest[..SESSION_HASH_HEX])
    };
    while session.len() < 2 {
        session.push('-');
    }
    session
}

//! The certificate path of a `CreateSession`: the signing (end-entity) certificate, through the
//! intermediates the request sent, to a CA certificate of the trust anchor, with the rules of
//! AWS's "Signature validation" (trust model page of the Roles Anywhere user guide):
//!
//! - every certificate is X.509 v3 and signed with SHA-256 or stronger (MD5 and SHA-1 refused);
//! - the end-entity certificate's basic constraints, if present, say `CA:false`, and its key
//!   usage includes `digitalSignature`;
//! - a trust anchor certificate says `CA:true` and its key usage includes `keyCertSign`;
//! - intermediates say `CA:true` (with `keyCertSign` when they carry a key usage) and honour
//!   `pathLenConstraint`, as PKIX requires;
//! - each is within its validity period, each signature verifies with its issuer's key, and no
//!   certificate below the anchor is revoked.

use x509_parser::oid_registry::{
    OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
    OID_SIG_ED25519,
};
use x509_parser::prelude::*;

/// Why the path does not hold.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChainError {
    #[error("the signing certificate is not acceptable: {0}")]
    Leaf(String),
    #[error("intermediate certificate {subject} is not acceptable: {reason}")]
    Intermediate { subject: String, reason: String },
    #[error("certificate {subject} expired at {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("certificate {subject} is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    #[error("certificate {subject} (serial {serial}) is revoked")]
    Revoked { subject: String, serial: String },
    #[error("no chain from the signing certificate to a CA certificate of the trust anchor")]
    NoPath,
}

/// Signature algorithms of SHA-256 or stronger (RSASSA-PSS: `verify_signature` accepts only
/// SHA-256, -384 and -512 parameters).
fn strong_signature(cert: &X509Certificate<'_>) -> bool {
    let alg = &cert.signature_algorithm.algorithm;
    [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_PKCS1_RSASSAPSS,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ECDSA_WITH_SHA512,
        OID_SIG_ED25519,
    ]
    .contains(alg)
}

fn common(cert: &X509Certificate<'_>) -> Result<(), String> {
    if cert.version() != X509Version::V3 {
        return Err("not an X.509 v3 certificate".into());
    }
    if !strong_signature(cert) {
        return Err(format!(
            "signed with {}, not SHA-256 or stronger",
            cert.signature_algorithm.algorithm
        ));
    }
    Ok(())
}

/// A CA certificate's own rules: a trust anchor's (`anchor`), or an intermediate's.
pub(crate) fn check_ca(cert: &X509Certificate<'_>, anchor: bool) -> Result<(), String> {
    common(cert)?;
    let constraints = cert
        .basic_constraints()
        .map_err(|e| format!("unreadable basic constraints: {e}"))?;
    if !constraints.is_some_and(|c| c.value.ca) {
        return Err("its basic constraints do not say CA:true".into());
    }
    let usage = cert
        .key_usage()
        .map_err(|e| format!("unreadable key usage: {e}"))?;
    match usage {
        Some(u) if !u.value.key_cert_sign() => {
            Err("its key usage does not include keyCertSign".into())
        }
        None if anchor => Err("it has no key usage (keyCertSign is required)".into()),
        _ => Ok(()),
    }
}

/// The signing certificate's rules.
pub(crate) fn check_leaf(cert: &X509Certificate<'_>) -> Result<(), ChainError> {
    let refuse = |reason: String| ChainError::Leaf(reason);
    common(cert).map_err(refuse)?;
    let constraints = cert
        .basic_constraints()
        .map_err(|e| refuse(format!("unreadable basic constraints: {e}")))?;
    if constraints.is_some_and(|c| c.value.ca) {
        return Err(refuse("its basic constraints say CA:true".into()));
    }
    let usage = cert
        .key_usage()
        .map_err(|e| refuse(format!("unreadable key usage: {e}")))?;
    if !usage.is_some_and(|u| u.value.digital_signature()) {
        return Err(refuse(
            "its key usage does not include digitalSignature".into(),
        ));
    }
    Ok(())
}

fn check_validity(cert: &X509Certificate<'_>, now: i64) -> Result<(), ChainError> {
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(ChainError::NotYetValid {
            subject: cert.subject().to_string(),
            not_before: validity.not_before.to_string(),
        });
    }
    if now > validity.not_after.timestamp() {
        return Err(ChainError::Expired {
            subject: cert.subject().to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

/// Whether `issuer` issued `cert`: its subject is `cert`'s issuer and its key verifies `cert`.
fn issued(issuer: &X509Certificate<'_>, cert: &X509Certificate<'_>) -> bool {
    issuer.subject().as_raw() == cert.issuer().as_raw()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Verifies the path from `leaf` through some of `intermediates` to one of `anchors` at `now`
/// (Unix seconds); `revoked` says whether a certificate below the anchor is revoked. Returns the
/// anchor that ends the path.
pub(crate) fn verify_path<'c>(
    leaf: &X509Certificate<'_>,
    intermediates: &[X509Certificate<'_>],
    anchors: &'c [X509Certificate<'c>],
    revoked: &dyn Fn(&X509Certificate<'_>) -> bool,
    now: i64,
) -> Result<&'c X509Certificate<'c>, ChainError> {
    check_leaf(leaf)?;
    check_validity(leaf, now)?;
    let revocation = |cert: &X509Certificate<'_>| {
        if revoked(cert) {
            Err(ChainError::Revoked {
                subject: cert.subject().to_string(),
                serial: cert.raw_serial_as_string(),
            })
        } else {
            Ok(())
        }
    };
    revocation(leaf)?;
    let mut current = leaf;
    let mut used = vec![false; intermediates.len()];
    // Intermediates between `current` and the end-entity certificate, for pathLenConstraint.
    let mut below: u32 = 0;
    loop {
        if let Some(anchor) = anchors.iter().find(|a| issued(a, current)) {
            check_validity(anchor, now)?;
            let path_len = anchor
                .basic_constraints()
                .ok()
                .flatten()
                .and_then(|c| c.value.path_len_constraint);
            if path_len.is_some_and(|max| below > max) {
                return Err(ChainError::NoPath);
            }
            return Ok(anchor);
        }
        let Some(i) =
            (0..intermediates.len()).find(|i| !used[*i] && issued(&intermediates[*i], current))
        else {
            return Err(ChainError::NoPath);
        };
        let next = &intermediates[i];
        check_ca(next, false).map_err(|reason| ChainError::Intermediate {
            subject: next.subject().to_string(),
            reason,
        })?;
        let path_len = next
            .basic_constraints()
            .ok()
            .flatten()
            .and_then(|c| c.value.path_len_constraint);
        if path_len.is_some_and(|max| below > max) {
            return Err(ChainError::Intermediate {
                subject: next.subject().to_string(),
                reason: format!(
                    "its pathLenConstraint ({}) is exceeded",
                    path_len.unwrap_or(0)
                ),
            });
        }
        check_validity(next, now)?;
        revocation(next)?;
        used[i] = true;
        below += 1;
        current = next;
    }
}

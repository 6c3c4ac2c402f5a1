//! IAM Roles Anywhere: trust anchors (a CA bundle), profiles (the roles they may hand out and
//! for how long) and revocations, registered as `create-trust-anchor`, `create-profile` and
//! `import-crl` would; `CreateSession` itself is `actions::roles_anywhere`.
//!
//! What the action checks lives here, one module each: [`signing`] the SigV4 X.509 variants
//! (`AWS4-X509-RSA-SHA256` / `AWS4-X509-ECDSA-SHA256`) exactly as AWS's
//! `aws_signing_helper` builds them, [`chain`] the certificate path to the trust anchor, and
//! [`attributes`] what a certificate becomes in the session (principal tags, source identity,
//! session name).

pub(crate) mod attributes;
pub(crate) mod chain;
pub(crate) mod signing;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;

/// AWS's default `durationSeconds` of a profile.
pub const DEFAULT_PROFILE_DURATION: u64 = 3600;

/// A trust anchor, as `create-trust-anchor` with a `CERTIFICATE_BUNDLE` source makes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrustAnchor {
    /// `arn:aws:rolesanywhere:<region>:<account>:trust-anchor/<id>`.
    pub arn: String,
    /// The CA certificates (PEM, one or more): a certificate chaining to any of them is trusted.
    pub ca_bundle_pem: String,
    /// A disabled trust anchor authenticates nothing (AWS's default is disabled; the emulator's
    /// is enabled, as tests mostly want one that works).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

/// A profile, as `create-profile` makes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// `arn:aws:rolesanywhere:<region>:<account>:profile/<id>`.
    pub arn: String,
    /// The roles `CreateSession` may assume with this profile.
    pub role_arns: Vec<String>,
    /// Sessions last `min(durationSeconds of the request, this)` (900 to 43,200; AWS's default
    /// 3,600).
    #[serde(default)]
    pub duration_seconds: Option<u64>,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Whether a request may name its own `roleSessionName` (AWS refuses one otherwise).
    #[serde(default)]
    pub accept_role_session_name: bool,
    /// The profile's inline session policy, recorded with each session it issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_policy: Option<String>,
    /// The profile's managed policy ARNs, recorded with each session it issues.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policy_arns: Vec<String>,
}

impl Profile {
    /// A profile handing out `role_arns` with AWS's defaults (enabled, one hour).
    pub fn new(arn: &str, role_arns: &[&str]) -> Self {
        Self {
            arn: arn.to_string(),
            role_arns: role_arns.iter().map(|r| r.to_string()).collect(),
            duration_seconds: None,
            enabled: true,
            accept_role_session_name: false,
            session_policy: None,
            managed_policy_arns: Vec::new(),
        }
    }

    /// `durationSeconds` of the profile.
    pub fn duration(&self) -> u64 {
        self.duration_seconds.unwrap_or(DEFAULT_PROFILE_DURATION)
    }
}

impl TrustAnchor {
    /// An enabled trust anchor trusting the CA certificates of `ca_bundle_pem`.
    pub fn new(arn: &str, ca_bundle_pem: &str) -> Self {
        Self {
            arn: arn.to_string(),
            ca_bundle_pem: ca_bundle_pem.to_string(),
            enabled: true,
        }
    }
}

fn enabled() -> bool {
    true
}

/// `POST /_emulator/revocations`: certificates of a trust anchor that are revoked, by serial
/// number (hexadecimal, as `openssl x509 -serial` prints it; `:` separators, case and leading
/// zeros do not matter), or a whole X.509 CRL (PEM or base64 DER) signed by one of the
/// anchor's CAs, as `import-crl` takes it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    pub trust_anchor_arn: String,
    #[serde(default)]
    pub serials: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_pem: Option<String>,
}

/// Why a trust anchor, profile or revocation cannot be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RolesAnywhereError {
    #[error("{0:?} is not a valid Roles Anywhere {1} ARN")]
    Arn(String, &'static str),
    #[error("trust anchor {arn}: {reason}")]
    Bundle { arn: String, reason: String },
    #[error("profile {arn}: {reason}")]
    Profile { arn: String, reason: String },
    #[error("no trust anchor {0}")]
    UnknownTrustAnchor(String),
    #[error("revocation of {arn}: {reason}")]
    Revocation { arn: String, reason: String },
}

/// A Roles Anywhere ARN: (partition, region, account, resource id).
pub(crate) fn split_arn<'a>(
    arn: &'a str,
    kind: &str,
) -> Option<(&'a str, &'a str, &'a str, &'a str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("rolesanywhere"), Some(region), Some(account), Some(r)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let id = r.strip_prefix(kind)?.strip_prefix('/')?;
    let ok = !partition.is_empty()
        && !region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !id.is_empty()
        && !id.contains('/');
    ok.then_some((partition, region, account, id))
}

/// A trust anchor as registered: its CA certificates (DER) and what is revoked under it.
#[derive(Clone, Debug)]
pub struct RegisteredTrustAnchor {
    pub anchor: TrustAnchor,
    pub(crate) cas: Vec<Vec<u8>>,
    /// Revoked serial numbers (big-endian magnitude, no leading zeros), whatever the issuer.
    pub(crate) revoked_serials: BTreeSet<Vec<u8>>,
    /// Serials revoked by imported CRLs, with the CRL issuer's name they belong to.
    pub(crate) crl_entries: BTreeSet<CrlEntry>,
}

/// An entry of an imported CRL: the issuer's name (DER) and a serial number (magnitude).
pub(crate) type CrlEntry = (Vec<u8>, Vec<u8>);

/// The DER of every `CERTIFICATE` block of `pem`.
pub(crate) fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("unreadable PEM: {e}"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err("the bundle holds no PEM certificate".into());
    }
    Ok(out)
}

/// Parses exactly one DER certificate (nothing after it).
pub(crate) fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after the certificate".into()),
        Err(e) => Err(format!("not a DER certificate: {e}")),
    }
}

/// Checks `anchor` as Roles Anywhere checks a trust anchor's certificates (v3, `CA:true`, key
/// usage with `keyCertSign`, a SHA-256 or stronger signature) and registers it.
pub fn register_trust_anchor(
    anchor: TrustAnchor,
) -> Result<RegisteredTrustAnchor, RolesAnywhereError> {
    if split_arn(&anchor.arn, "trust-anchor").is_none() {
        return Err(RolesAnywhereError::Arn(anchor.arn.clone(), "trust anchor"));
    }
    let bundle = |reason: String| RolesAnywhereError::Bundle {
        arn: anchor.arn.clone(),
        reason,
    };
    let cas = pem_certificates(&anchor.ca_bundle_pem).map_err(bundle)?;
    for der in &cas {
        let cert = parse_der(der).map_err(bundle)?;
        chain::check_ca(&cert, true).map_err(|e| bundle(format!("{}: {e}", cert.subject())))?;
    }
    Ok(RegisteredTrustAnchor {
        anchor,
        cas,
        revoked_serials: BTreeSet::new(),
        crl_entries: BTreeSet::new(),
    })
}

/// Checks `profile` as `create-profile` would.
pub fn check_profile(profile: &Profile) -> Result<(), RolesAnywhereError> {
    if split_arn(&profile.arn, "profile").is_none() {
        return Err(RolesAnywhereError::Arn(profile.arn.clone(), "profile"));
    }
    let refuse = |reason: &str| RolesAnywhereError::Profile {
        arn: profile.arn.clone(),
        reason: reason.to_string(),
    };
    if !(900..=43_200).contains(&profile.duration()) {
        return Err(refuse("durationSeconds must be between 900 and 43200"));
    }
    if profile.role_arns.is_empty() || profile.role_arns.len() > 250 {
        return Err(refuse("roleArns must name 1 to 250 roles"));
    }
    Ok(())
}

/// A serial number written in hexadecimal (`1F:71:C5`, `0x1f71c5`...) as its magnitude.
pub(crate) fn serial_from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: String = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    Some(magnitude(&hex::decode(padded).ok()?))
}

/// Big-endian bytes without leading zeros.
pub(crate) fn magnitude(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

impl RegisteredTrustAnchor {
    /// Adds what `revocation` revokes.
    pub fn revoke(&mut self, revocation: &Revocation) -> Result<(), RolesAnywhereError> {
        let refuse = |reason: String| RolesAnywhereError::Revocation {
            arn: revocation.trust_anchor_arn.clone(),
            reason,
        };
        let mut serials = Vec::new();
        for text in &revocation.serials {
            serials.push(
                serial_from_hex(text)
                    .ok_or_else(|| refuse(format!("{text:?} is not a hexadecimal serial")))?,
            );
        }
        let crl = match &revocation.crl_pem {
            Some(text) => self.read_crl(text).map_err(refuse)?,
            None => Vec::new(),
        };
        self.revoked_serials.extend(serials);
        self.crl_entries.extend(crl);
        Ok(())
    }

    /// The (issuer, serial) entries of a CRL signed by one of the anchor's CAs.
    fn read_crl(&self, text: &str) -> Result<Vec<CrlEntry>, String> {
        let der = match Pem::iter_from_buffer(text.as_bytes()).next() {
            Some(Ok(block)) if block.label == "X509 CRL" => block.contents,
            _ => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| "neither a PEM `X509 CRL` nor base64 DER".to_string())?
            }
        };
        let (_, crl) = parse_x509_crl(&der)
            .map_err(|e| format!("not a DER certificate revocation list: {e}"))?;
        let signed_by_anchor = self.cas.iter().any(|ca| {
            parse_der(ca).is_ok_and(|ca| {
                ca.subject().as_raw() == crl.issuer().as_raw()
                    && crl.verify_signature(ca.public_key()).is_ok()
            })
        });
        if !signed_by_anchor {
            return Err("the CRL is not signed by a CA of the trust anchor".into());
        }
        let issuer = crl.issuer().as_raw().to_vec();
        Ok(crl
            .iter_revoked_certificates()
            .map(|r| (issuer.clone(), magnitude(r.raw_serial())))
            .collect())
    }

    /// Whether `cert` is revoked under this trust anchor.
    pub(crate) fn is_revoked(&self, cert: &X509Certificate<'_>) -> bool {
        let serial = magnitude(cert.raw_serial());
        self.revoked_serials.contains(&serial)
            || self
                .crl_entries
                .contains(&(cert.issuer().as_raw().to_vec(), serial))
    }
}

#[cfg(test)]
mod tests;

//! A key ring: the signing keys podcreds holds for one purpose ([`KeyProfile`]: the SAML
//! identity provider's RSA key, the Roles Anywhere workload CA's ECDSA key), each with its
//! self-signed certificate, and how they are kept in a Secret's data. Pure: the Secret's I/O is
//! in [`super::store`].
//!
//! Rotation has an overlap window, so that AWS can know the next certificate before anything is
//! signed with it: `next` is added (announced: the admin uploads it to IAM or the trust anchor),
//! then promoted (signing switches; the old certificate stays announced as `previous`), then the
//! previous certificate is retired (the admin uploads once more).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};

/// Keys of the Secret's data.
pub const ACTIVE_KEY: &str = "active.key.pem";
pub const ACTIVE_CERT: &str = "active.crt.pem";
pub const NEXT_KEY: &str = "next.key.pem";
pub const NEXT_CERT: &str = "next.crt.pem";
pub const PREVIOUS_CERT: &str = "previous.crt.pem";

/// What a ring's keys are for, and how they are made.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyProfile {
    /// What the keys are, in messages ("the SAML signing key").
    pub what: &'static str,
    /// The command that rotates them (`podcreds saml-key`).
    pub command: &'static str,
    /// The `app.kubernetes.io/component` label of the Secret.
    pub component: &'static str,
    /// The common name of the self-signed certificates.
    pub common_name: &'static str,
    pub algorithm: &'static SignatureAlgorithm,
    /// The certificate is a CA's: it signs other certificates (Roles Anywhere trust anchors).
    pub certificate_authority: bool,
}

/// podcreds as a SAML identity provider: RSA 2048, PKCS#1 v1.5 with SHA-256, which every SAML
/// verifier (IAM, xmlsec1, signxml) accepts.
pub static SAML: KeyProfile = KeyProfile {
    what: "the SAML signing key",
    command: "podcreds saml-key",
    component: "saml-signing-key",
    common_name: "podcreds SAML identity provider",
    algorithm: &rcgen::PKCS_RSA_SHA256,
    certificate_authority: false,
};

/// podcreds as the certificate authority of IAM Roles Anywhere: ECDSA P-256 with SHA-256, one of
/// the two key types Roles Anywhere accepts, and small certificates.
pub static ROLES_ANYWHERE_CA: KeyProfile = KeyProfile {
    what: "the Roles Anywhere CA key",
    command: "podcreds rolesanywhere-ca",
    component: "rolesanywhere-ca-key",
    common_name: "podcreds workload CA",
    algorithm: &rcgen::PKCS_ECDSA_P256_SHA256,
    certificate_authority: true,
};

/// The node endpoint broker's CA: it issues each operator replica's serving certificate, and
/// node agents trust the certificates it announces (published in a ConfigMap). ECDSA P-256.
pub static BROKER_CA: KeyProfile = KeyProfile {
    what: "the broker CA key",
    command: "podcreds broker-ca",
    component: "broker-ca-key",
    common_name: "podcreds node endpoint broker CA",
    algorithm: &rcgen::PKCS_ECDSA_P256_SHA256,
    certificate_authority: true,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{0} could not be generated")]
    Generate(&'static str),
    #[error("the Secret of {what} has no {field:?}")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
    #[error("the Secret of {what}: {field:?} is not a usable PEM key or certificate")]
    Unreadable {
        what: &'static str,
        field: &'static str,
    },
    #[error("signing failed")]
    Sign,
    #[error("{0}")]
    Rotation(String),
}

/// One key pair and its certificate. `Debug` shows neither key nor certificate.
pub struct SigningKey {
    key: KeyPair,
    key_pem: String,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("certificate_sha256", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key pair of `profile` with a self-signed certificate (valid from the start of this
    /// year for 20 years: IAM ignores a SAML certificate's dates, Roles Anywhere checks a trust
    /// anchor's, and rotation is the admin's explicit step either way).
    pub fn generate(profile: &'static KeyProfile, year: i16) -> Result<Self, KeyError> {
        let failed = || KeyError::Generate(profile.what);
        let key = KeyPair::generate_for(profile.algorithm).map_err(|_| failed())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|_| failed())?;
        params
            .distinguished_name
            .push(DnType::CommonName, profile.common_name);
        params.not_before = rcgen::date_time_ymd(i32::from(year), 1, 1);
        params.not_after = rcgen::date_time_ymd(i32::from(year) + 20, 1, 1);
        if profile.certificate_authority {
            // A CA for leaves only: no intermediate may be made under it.
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        }
        let cert = params.self_signed(&key).map_err(|_| failed())?;
        Ok(Self {
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    fn from_pem(
        profile: &'static KeyProfile,
        key_pem: &str,
        cert_pem: &str,
        key_field: &'static str,
        cert_field: &'static str,
    ) -> Result<Self, KeyError> {
        let unreadable = |field| KeyError::Unreadable {
            what: profile.what,
            field,
        };
        let key = KeyPair::from_pem_and_sign_algo(key_pem, profile.algorithm)
            .map_err(|_| unreadable(key_field))?;
        let cert_der = pem_certificate_der(cert_pem).ok_or(unreadable(cert_field))?;
        Ok(Self {
            key,
            key_pem: key_pem.to_string(),
            cert_pem: cert_pem.to_string(),
            cert_der,
        })
    }

    /// The key pair, to sign certificates with (a CA's).
    pub fn key_pair(&self) -> &KeyPair {
        &self.key
    }

    /// The profile's signature of `message` (RSA PKCS#1 v1.5 SHA-256, or ECDSA P-256 SHA-256 in
    /// ASN.1 DER).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        rcgen::SigningKey::sign(&self.key, message).map_err(|_| KeyError::Sign)
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the certificate, hex: names a key in logs and docs without revealing anything.
    pub fn fingerprint(&self) -> String {
        certificate_fingerprint(&self.cert_der)
    }
}

/// SHA-256 of a DER certificate, hex.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(der))
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
pub fn pem_certificate_der(pem: &str) -> Option<Vec<u8>> {
    pem_certificates_der(pem).into_iter().next()
}

/// The DER of every `CERTIFICATE` block of a PEM text, in order; a block that is not base64
/// ends the list.
pub fn pem_certificates_der(pem: &str) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN).map(|i| i + BEGIN.len()) {
        let Some(end) = rest[start..].find(END).map(|i| start + i) else {
            break;
        };
        let body: String = rest[start..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        match BASE64.decode(body) {
            Ok(der) if !der.is_empty() => out.push(der),
            _ => break,
        }
        rest = &rest[end + END.len()..];
    }
    out
}

/// The keys the Secret holds: the one that signs, possibly the next one (announced in the
/// metadata, not yet signing) and the certificate of the one it replaced (still announced until
/// retired).
#[derive(Debug)]
pub struct KeyRing {
    pub profile: &'static KeyProfile,
    pub active: SigningKey,
    pub next: Option<SigningKey>,
    pub previous_cert_der: Option<Vec<u8>>,
    previous_cert_pem: Option<String>,
}

impl KeyRing {
    /// A ring with one new active key.
    pub fn generate(profile: &'static KeyProfile, year: i16) -> Result<Self, KeyError> {
        Ok(Self {
            profile,
            active: SigningKey::generate(profile, year)?,
            next: None,
            previous_cert_der: None,
            previous_cert_pem: None,
        })
    }

    /// Reads the Secret's data.
    pub fn from_data(
        profile: &'static KeyProfile,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, KeyError> {
        let what = profile.what;
        let missing = |field| KeyError::Missing { what, field };
        let unreadable = |field| KeyError::Unreadable { what, field };
        let field = |name: &'static str| -> Result<Option<&str>, KeyError> {
            data.get(name)
                .map(|v| std::str::from_utf8(v).map_err(|_| unreadable(name)))
                .transpose()
        };
        let active = SigningKey::from_pem(
            profile,
            field(ACTIVE_KEY)?.ok_or(missing(ACTIVE_KEY))?,
            field(ACTIVE_CERT)?.ok_or(missing(ACTIVE_CERT))?,
            ACTIVE_KEY,
            ACTIVE_CERT,
        )?;
        let next = match (field(NEXT_KEY)?, field(NEXT_CERT)?) {
            (Some(key), Some(cert)) => Some(SigningKey::from_pem(
                profile, key, cert, NEXT_KEY, NEXT_CERT,
            )?),
            (None, None) => None,
            (Some(_), None) => return Err(missing(NEXT_CERT)),
            (None, Some(_)) => return Err(missing(NEXT_KEY)),
        };
        let previous_cert_pem = field(PREVIOUS_CERT)?.map(str::to_string);
        let previous_cert_der = previous_cert_pem
            .as_deref()
            .map(|pem| pem_certificate_der(pem).ok_or(unreadable(PREVIOUS_CERT)))
            .transpose()?;
        Ok(Self {
            profile,
            active,
            next,
            previous_cert_der,
            previous_cert_pem,
        })
    }

    /// The Secret's data for this ring.
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut data = BTreeMap::new();
        data.insert(ACTIVE_KEY.into(), self.active.key_pem.clone().into_bytes());
        data.insert(
            ACTIVE_CERT.into(),
            self.active.cert_pem.clone().into_bytes(),
        );
        if let Some(next) = &self.next {
            data.insert(NEXT_KEY.into(), next.key_pem.clone().into_bytes());
            data.insert(NEXT_CERT.into(), next.cert_pem.clone().into_bytes());
        }
        if let Some(previous) = &self.previous_cert_pem {
            data.insert(PREVIOUS_CERT.into(), previous.clone().into_bytes());
        }
        data
    }

    /// Every certificate AWS must know, DER: active, next, previous.
    pub fn announced_certificates(&self) -> Vec<&[u8]> {
        let mut certs = vec![self.active.certificate_der()];
        if let Some(next) = &self.next {
            certs.push(next.certificate_der());
        }
        if let Some(previous) = &self.previous_cert_der {
            certs.push(previous);
        }
        certs
    }

    /// Step 1 of a rotation: a next key, announced but not signing.
    pub fn add_next(&mut self, year: i16) -> Result<(), KeyError> {
        let command = self.profile.command;
        if self.next.is_some() {
            return Err(KeyError::Rotation(format!(
                "a next key already exists: promote it first (`{command} promote`)"
            )));
        }
        if self.previous_cert_der.is_some() {
            return Err(KeyError::Rotation(format!(
                "the previous certificate is still announced: retire it first (`{command} retire`)"
            )));
        }
        self.next = Some(SigningKey::generate(self.profile, year)?);
        Ok(())
    }

    /// Step 2: the next key signs from now on; the old certificate stays announced.
    pub fn promote(&mut self) -> Result<(), KeyError> {
        let command = self.profile.command;
        let next = self.next.take().ok_or_else(|| {
            KeyError::Rotation(format!(
                "there is no next key to promote: add one first (`{command} add-next`)"
            ))
        })?;
        let old = std::mem::replace(&mut self.active, next);
        self.previous_cert_der = Some(old.cert_der);
        self.previous_cert_pem = Some(old.cert_pem);
        Ok(())
    }

    /// Step 3: the previous certificate is no longer announced.
    pub fn retire(&mut self) -> Result<(), KeyError> {
        if self.previous_cert_der.is_none() {
            return Err(KeyError::Rotation(
                "there is no previous certificate to retire".into(),
            ));
        }
        self.previous_cert_der = None;
        self.previous_cert_pem = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_survives_the_secret_and_rotates_with_overlap() {
        let mut ring = KeyRing::generate(&SAML, 2026).expect("generated");
        let first = ring.active.fingerprint();
        let read = KeyRing::from_data(&SAML, &ring.to_data()).expect("read back");
        assert_eq!(read.active.fingerprint(), first);
        assert_eq!(read.announced_certificates().len(), 1);
        // The signature verifies with the certificate's public key.
        let signature = read.active.sign(b"hello").expect("signed");
        assert_eq!(signature.len(), 256);

        assert!(ring.promote().is_err());
        ring.add_next(2026).expect("next");
        assert!(ring.add_next(2026).is_err());
        let next = ring.next.as_ref().map(SigningKey::fingerprint);
        assert_eq!(ring.announced_certificates().len(), 2);
        let ring_data = ring.to_data();
        let mut ring = KeyRing::from_data(&SAML, &ring_data).expect("read back");
        ring.promote().expect("promoted");
        assert_eq!(Some(ring.active.fingerprint()), next);
        let announced: Vec<String> = ring
            .announced_certificates()
            .iter()
            .map(|der| certificate_fingerprint(der))
            .collect();
        assert_eq!(announced, vec![next.clone().unwrap_or_default(), first]);
        assert!(
            ring.add_next(2026).is_err(),
            "retire before the next rotation"
        );
        let mut ring = KeyRing::from_data(&SAML, &ring.to_data()).expect("read back");
        ring.retire().expect("retired");
        assert_eq!(ring.announced_certificates().len(), 1);
        assert!(ring.retire().is_err());
    }

    #[test]
    fn broken_secrets_are_named_not_shown() {
        let mut data = KeyRing::generate(&SAML, 2026).expect("generated").to_data();
        data.insert(
            ACTIVE_KEY.into(),
            b"-----BEGIN PRIVATE KEY-----\nnope".to_vec(),
        );
        assert_eq!(
            KeyRing::from_data(&SAML, &data).err(),
            Some(KeyError::Unreadable {
                what: SAML.what,
                field: ACTIVE_KEY
            })
        );
        data.remove(ACTIVE_KEY);
        assert_eq!(
            KeyRing::from_data(&SAML, &data).err(),
            Some(KeyError::Missing {
                what: SAML.what,
                field: ACTIVE_KEY
            })
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let ring = KeyRing::generate(&SAML, 2026).expect("generated");
        let shown = format!("{ring:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(!shown.contains(&ring.active.key_pem[40..80]));
    }

    #[test]
    fn a_ca_ring_makes_a_ca_certificate() {
        let ring = KeyRing::generate(&ROLES_ANYWHERE_CA, 2026).expect("generated");
        let read = KeyRing::from_data(&ROLES_ANYWHERE_CA, &ring.to_data()).expect("read back");
        assert_eq!(read.active.fingerprint(), ring.active.fingerprint());
        // The ring of one profile is not read as the other's.
        assert!(KeyRing::from_data(&SAML, &ring.to_data()).is_err());
        // An ECDSA signature (ASN.1 DER), not an RSA one.
        let signature = read.active.sign(b"hello").expect("signed");
        assert!(
            signature.len() < 80 && signature[0] == 0x30,
            "{signature:?}"
        );
    }
}

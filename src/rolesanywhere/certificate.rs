//! The certificate a Roles Anywhere exchange is signed with: a leaf podcreds issues from its
//! workload CA for one exchange (its key never leaves the operator's memory and is dropped after
//! the call), or the admin's from a `kubernetes.io/tls` Secret.
//!
//! A leaf names the ServiceAccount where Roles Anywhere reads it: the subject's CN
//! (`<namespace>.<name>`, which also becomes the session's source identity `CN=<cn>`) and OU
//! (the namespace) become the principal tags `x509Subject/CN` and `x509Subject/OU`, the URI SAN
//! `spiffe://<trust domain>/ns/<namespace>/sa/<name>` the tag `x509SAN/URI`.

use jiff::Timestamp;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::keyring::{SigningKey, pem_certificates_der};
use crate::spec::workload_common_name;

/// Bytes of a leaf's random serial number (the first bit cleared: serials are positive).
const SERIAL_BYTES: usize = 16;

/// How far back a leaf's validity starts, for clocks behind the operator's.
const BACKDATE_SECONDS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("the workload certificate could not be issued: {0}")]
    Issue(String),
    #[error("Secret {secret:?} has no {field:?}: it must be a kubernetes.io/tls Secret")]
    Missing { secret: String, field: &'static str },
    #[error("Secret {secret:?}: {problem}")]
    Unusable { secret: String, problem: String },
}

/// Who a leaf certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSubject {
    pub common_name: String,
    pub organizational_unit: String,
    pub organization: String,
    pub uri: String,
}

impl WorkloadSubject {
    /// The subject of ServiceAccount `namespace/service_account` in `trust_domain`.
    pub fn of(namespace: &str, service_account: &str, trust_domain: &str) -> Self {
        Self {
            common_name: workload_common_name(namespace, service_account),
            organizational_unit: namespace.to_string(),
            organization: trust_domain.to_string(),
            uri: format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"),
        }
    }

    /// The source identity Roles Anywhere derives from the subject.
    pub fn source_identity(&self) -> String {
        format!("CN={}", self.common_name)
    }
}

/// A certificate with its key and the intermediates between it and the trust anchor. `Debug`
/// shows neither the key nor the certificates.
pub struct WorkloadCertificate {
    pub leaf_der: Vec<u8>,
    /// Intermediate CA certificates, leaf's issuer first (none for podcreds' own leaves).
    pub chain_der: Vec<Vec<u8>>,
    key: KeyPair,
    /// The serial number, big-endian, without sign padding.
    serial: Vec<u8>,
    pub not_after: Timestamp,
}

impl std::fmt::Debug for WorkloadCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCertificate")
            .field("serial", &self.serial_decimal())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WorkloadCertificate {
    /// The X.509 SigV4 algorithm of the key: `AWS4-X509-ECDSA-SHA256` or `AWS4-X509-RSA-SHA256`.
    pub fn signing_algorithm(&self) -> &'static str {
        if self.key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
            "AWS4-X509-RSA-SHA256"
        } else {
            "AWS4-X509-ECDSA-SHA256"
        }
    }

    /// The key's signature of `message` (SHA-256; ECDSA in ASN.1 DER, or RSA PKCS#1 v1.5).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertificateError> {
        rcgen::SigningKey::sign(&self.key, message).map_err(|_| {
            CertificateError::Issue("signing with the certificate's key failed".into())
        })
    }

    /// The serial number in decimal: the `Credential=` of an X.509 SigV4 signature.
    pub fn serial_decimal(&self) -> String {
        decimal(&self.serial)
    }
}

/// `bytes` (big-endian, unsigned) in decimal.
fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![0]; // least significant first
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for d in &mut digits {
            let v = u32::from(*d) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

fn offset_date_time(t: Timestamp) -> Result<::time::OffsetDateTime, CertificateError> {
    ::time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .map_err(|_| CertificateError::Issue("the time is out of range".into()))
}

/// A new leaf for `subject`, valid from a little before `now` for `lifetime_seconds`, signed by
/// the CA key `ca` (whose certificate is the trust anchor's, so no intermediates).
pub fn issue_leaf(
    ca: &SigningKey,
    subject: &WorkloadSubject,
    now: Timestamp,
    lifetime_seconds: i64,
) -> Result<WorkloadCertificate, CertificateError> {
    let failed = |what: &str| CertificateError::Issue(what.to_string());
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|_| failed("no key pair"))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, subject.organization.as_str());
    name.push(
        DnType::OrganizationalUnitName,
        subject.organizational_unit.as_str(),
    );
    name.push(DnType::CommonName, subject.common_name.as_str());
    params.distinguished_name = name;
    params.subject_alt_names = vec![SanType::URI(
        subject
            .uri
            .as_str()
            .try_into()
            .map_err(|_| failed("the URI SAN is not IA5"))?,
    )];
    let mut serial = rand::random::<[u8; SERIAL_BYTES]>();
    serial[0] &= 0x7f;
    serial[0] |= 0x01 << 6; // never a leading zero byte: the DER serial is exactly these bytes
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = offset_date_time(
        now.checked_sub(jiff::SignedDuration::from_secs(BACKDATE_SECONDS))
            .map_err(|_| failed("the time is out of range"))?,
    )?;
    let not_after = now
        .checked_add(jiff::SignedDuration::from_secs(lifetime_seconds))
        .map_err(|_| failed("the time is out of range"))?;
    params.not_after = offset_date_time(not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_ca_cert_der(&ca.certificate_der().into(), ca.key_pair())
        .map_err(|_| failed("the CA certificate is unreadable"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|_| failed("signing the certificate failed"))?;
    Ok(WorkloadCertificate {
        leaf_der: cert.der().to_vec(),
        chain_der: Vec::new(),
        key,
        serial: serial.to_vec(),
        not_after,
    })
}

/// The algorithms Roles Anywhere verifies: RSA or ECDSA P-256, with SHA-256.
const KEY_ALGORITHMS: [&SignatureAlgorithm; 2] =
    [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_RSA_SHA256];

/// The certificate of a `kubernetes.io/tls` Secret (`tls.crt`: the leaf, then its
/// intermediates; `tls.key`), checked as Roles Anywhere would: the key matches, it is RSA or
/// ECDSA P-256, and the certificate is valid at `now`.
pub fn admin_certificate(
    secret: &str,
    tls_crt: Option<&[u8]>,
    tls_key: Option<&[u8]>,
    now: Timestamp,
) -> Result<WorkloadCertificate, CertificateError> {
    let missing = |field| CertificateError::Missing {
        secret: secret.to_string(),
        field,
    };
    let unusable = |problem: &str| CertificateError::Unusable {
        secret: secret.to_string(),
        problem: problem.to_string(),
    };
    let crt = std::str::from_utf8(tls_crt.ok_or(missing("tls.crt"))?)
        .map_err(|_| unusable("tls.crt is not PEM text"))?;
    let key = std::str::from_utf8(tls_key.ok_or(missing("tls.key"))?)
        .map_err(|_| unusable("tls.key is not PEM text"))?;
    let mut certificates = pem_certificates_der(crt).into_iter();
    let leaf_der = certificates
        .next()
        .ok_or_else(|| unusable("tls.crt holds no PEM certificate"))?;
    let chain_der: Vec<Vec<u8>> = certificates.collect();
    let key = KEY_ALGORITHMS
        .iter()
        .find_map(|alg| KeyPair::from_pem_and_sign_algo(key, alg).ok())
        .ok_or_else(|| {
            unusable("tls.key is not an unencrypted RSA or ECDSA P-256 key (the key types Roles Anywhere accepts)")
        })?;
    let (_, leaf) = X509Certificate::from_der(&leaf_der).map_err(|_| {
        unusable("the first certificate of tls.crt is not a readable X.509 certificate")
    })?;
    if leaf.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(unusable(
            "tls.key is not the key of tls.crt's first certificate",
        ));
    }
    let not_after = Timestamp::from_second(leaf.validity().not_after.timestamp())
        .map_err(|_| unusable("the certificate's notAfter is out of range"))?;
    let not_before = Timestamp::from_second(leaf.validity().not_before.timestamp())
        .map_err(|_| unusable("the certificate's notBefore is out of range"))?;
    if now >= not_after {
        return Err(unusable(&format!(
            "the certificate expired at {not_after}: renew it (cert-manager renews before expiry when the Certificate's renewBefore allows)"
        )));
    }
    if now < not_before {
        return Err(unusable(&format!(
            "the certificate is not valid before {not_before}"
        )));
    }
    let serial = leaf.tbs_certificate.raw_serial();
    let serial = serial
        .iter()
        .position(|b| *b != 0)
        .map_or(vec![0], |first| serial[first..].to_vec());
    drop(leaf);
    Ok(WorkloadCertificate {
        leaf_der,
        chain_der,
        key,
        serial,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{KeyRing, ROLES_ANYWHERE_CA};
    use x509_parser::extensions::GeneralName;

    fn now() -> Timestamp {
        "2026-12-04T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn serials_are_written_in_decimal() {
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(decimal(&u128::MAX.to_be_bytes()), u128::MAX.to_string());
        // Longer than any integer type: 2^160 - 1.
        assert_eq!(
            decimal(&[0xff; 20]),
            "1461501637330902918203684832716283019655932542975"
        );
    }

    #[test]
    fn a_leaf_names_the_service_account_where_roles_anywhere_reads_it() {
        let ring = KeyRing::generate(&ROLES_ANYWHERE_CA, 2026).unwrap();
        let subject = WorkloadSubject::of("team-a", "billing", "prod.example");
        let leaf = issue_leaf(&ring.active, &subject, now(), 3600).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf.leaf_der).unwrap();
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["team-a.billing"]);
        let ou: Vec<_> = cert
            .subject()
            .iter_organizational_unit()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(ou, ["team-a"]);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            [GeneralName::URI(
                "spiffe://prod.example/ns/team-a/sa/billing"
            )]
        );
        assert_eq!(subject.source_identity(), "CN=team-a.billing");
        // Issued by the CA, valid from a little before now for the lifetime, and no CA itself.
        let (_, ca) = X509Certificate::from_der(ring.active.certificate_der()).unwrap();
        assert_eq!(cert.issuer(), ca.subject());
        cert.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(
            cert.validity().not_before.timestamp(),
            now().as_second() - 300
        );
        assert_eq!(
            cert.validity().not_after.timestamp(),
            now().as_second() + 3600
        );
        assert!(!cert.is_ca());
        assert_eq!(leaf.signing_algorithm(), "AWS4-X509-ECDSA-SHA256");
        assert_eq!(
            leaf.serial_decimal(),
            decimal(cert.tbs_certificate.raw_serial())
        );
        // Every leaf is new: its own key and serial.
        let other = issue_leaf(&ring.active, &subject, now(), 3600).unwrap();
        assert_ne!(other.serial_decimal(), leaf.serial_decimal());
        assert!(!format!("{leaf:?}").contains("BEGIN"));
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    #[test]
    fn an_admin_certificate_is_checked_before_use() {
        let ring = KeyRing::generate(&ROLES_ANYWHERE_CA, 2026).unwrap();
        let subject = WorkloadSubject::of("ns", "sa", "cluster.local");
        let issued = issue_leaf(&ring.active, &subject, now(), 3600).unwrap();
        let crt = format!(
            "{}{}",
            pem("CERTIFICATE", &issued.leaf_der),
            ring.active.certificate_pem()
        );
        let key = issued.key.serialize_pem();
        let read =
            admin_certificate("tls", Some(crt.as_bytes()), Some(key.as_bytes()), now()).unwrap();
        assert_eq!(read.serial_decimal(), issued.serial_decimal());
        assert_eq!(read.chain_der, [ring.active.certificate_der().to_vec()]);

        let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let err = |crt: Option<&str>, key: Option<&str>, at: Timestamp| {
            admin_certificate("tls", crt.map(str::as_bytes), key.map(str::as_bytes), at)
                .unwrap_err()
                .to_string()
        };
        assert!(err(Some(&crt), Some(&other_key), now()).contains("not the key of"));
        assert!(err(None, Some(&key), now()).contains("no \"tls.crt\""));
        assert!(err(Some("junk"), Some(&key), now()).contains("no PEM certificate"));
        let later = now()
            .checked_add(jiff::SignedDuration::from_hours(2))
            .unwrap();
        assert!(err(Some(&crt), Some(&key), later).contains("expired"));
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .unwrap()
            .serialize_pem();
        assert!(err(Some(&crt), Some(&p384), now()).contains("RSA or ECDSA P-256"));
    }
}

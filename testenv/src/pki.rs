//! Certificates and keys for a throw-away control plane.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// A certificate and its private key, PEM encoded.
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster's CA; issues serving and client certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn pki(e: rcgen::Error) -> Error {
    Error::Pki(e.to_string())
}

impl Ca {
    pub fn new(common_name: &str) -> Result<Self, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let key = KeyPair::generate().map_err(pki)?;
        Ok(Self {
            issuer: CertifiedIssuer::self_signed(params, key).map_err(pki)?,
        })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for loopback.
    pub fn serving(&self) -> Result<CertAndKey, Error> {
        self.serving_with(&[])
    }

    /// A serving certificate for loopback and `extra` addresses (a test pod network's gateway).
    pub fn serving_with(&self, extra: &[std::net::IpAddr]) -> Result<CertAndKey, Error> {
        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .map_err(pki)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::V4(
                std::net::Ipv4Addr::LOCALHOST,
            )));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::V4(
                std::net::Ipv4Addr::new(10, 0, 0, 1),
            )));
        for address in extra {
            params.subject_alt_names.push(SanType::IpAddress(*address));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        params.distinguished_name = dn;
        self.sign(params)
    }

    /// A client certificate for user `name` in `groups` (organisations).
    pub fn client(&self, name: &str, groups: &[&str]) -> Result<CertAndKey, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        for g in groups {
            dn.push(DnType::OrganizationName, *g);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<CertAndKey, Error> {
        let key = KeyPair::generate().map_err(pki)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(pki)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// An ECDSA P-256 key for signing ServiceAccount tokens (ES256): (PKCS#8 private key PEM,
/// public key PEM).
pub fn service_account_key() -> Result<(String, String), Error> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(pki)?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

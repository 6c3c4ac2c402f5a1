//! A Roles Anywhere trust anchor of the test's own: its CA, profile and workload certificates.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, SignatureAlgorithm, date_time_ymd,
};
use std::path::{Path, PathBuf};

/// The files `aws_signing_helper` reads.
pub(crate) struct Workload {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub(crate) intermediates: Option<PathBuf>,
    /// The session name Roles Anywhere gives: the serial in hex.
    pub serial_hex: String,
}

impl Workload {
    /// `aws_signing_helper credential-process` arguments for `role` at `endpoint`.
    pub(crate) fn helper_args(&self, role: &str, endpoint: &str) -> Vec<String> {
        let mut args = vec![
            "credential-process".to_string(),
            "--certificate".into(),
            self.certificate.display().to_string(),
            "--private-key".into(),
            self.private_key.display().to_string(),
            "--trust-anchor-arn".into(),
            ANCHOR.into(),
            "--profile-arn".into(),
            PROFILE.into(),
            "--role-arn".into(),
            role.into(),
            "--endpoint".into(),
            endpoint.into(),
            "--region".into(),
            "us-east-1".into(),
        ];
        if let Some(bundle) = &self.intermediates {
            args.extend(["--intermediates".to_string(), bundle.display().to_string()]);
        }
        args
    }
}

/// A CA made for the test: its parameters and key (to issue with) and its PEM.
pub(crate) struct Ca {
    pub(crate) params: CertificateParams,
    pub(crate) key: KeyPair,
    pub pem: String,
}

impl Ca {
    pub(crate) fn root(cn: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(cn);
        let pem = params.self_signed(&key)?.pem();
        Ok(Self { params, key, pem })
    }

    /// An intermediate CA (RSA key) under this one.
    pub(crate) fn intermediate(&self, cn: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let params = ca_params(cn);
        let pem = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))?
            .pem();
        Ok(Self { params, key, pem })
    }

    /// A workload certificate and key, written as PEM files (the key as PKCS#8) into `dir`.
    pub(crate) fn issue(
        &self,
        dir: &Path,
        alg: &'static SignatureAlgorithm,
        cn: &str,
        serial: u64,
        change: impl FnOnce(&mut CertificateParams),
    ) -> anyhow::Result<Workload> {
        let key = KeyPair::generate_for(alg)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2100, 1, 1);
        change(&mut params);
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key))?;
        let certificate = dir.join(format!("{cn}-{serial}.crt"));
        let private_key = dir.join(format!("{cn}-{serial}.key"));
        std::fs::write(&certificate, cert.pem())?;
        std::fs::write(&private_key, key.serialize_pem())?;
        Ok(Workload {
            certificate,
            private_key,
            intermediates: None,
            serial_hex: even_hex(serial),
        })
    }
}

pub(crate) const PROFILE: &str =
    "arn:aws:rolesanywhere:us-east-1:123456789012:profile/0e2e0000-b22c-4e00-8000-000000000002";

pub(crate) const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/0e2e0000-a11c-4e00-8000-000000000001";

/// `serial` in lower-case hex, left-padded with a zero to an even length (the emulator writes
/// serials so, as AWS's source identity rules do).
pub(crate) fn even_hex(serial: u64) -> String {
    let hex = format!("{serial:x}");
    if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    }
}

pub(crate) fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    params
}

//! The broker's TLS: each replica's serving certificate (IP SAN: the pod's IP), issued at start
//! by the broker CA kept in the key ring ([`crate::keyring::BROKER_CA`]), and the CA
//! certificates published in a ConfigMap of the operator's namespace for agents to trust.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::keyring::{KeyRing, SigningKey};

/// The ConfigMap key holding the CA certificates (PEM, every one the ring announces).
pub const CA_KEY: &str = "ca.crt";
/// Default name of the ConfigMap and of the key Secret.
pub const DEFAULT_CA_CONFIGMAP: &str = "podcreds-broker-ca";
pub const DEFAULT_CA_SECRET: &str = "podcreds-broker-ca-key";
/// How long a serving certificate is valid: a replica issues one at every start.
const SERVING_LIFETIME_DAYS: i64 = 90;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("issuing the broker's serving certificate failed: {0}")]
    Issue(&'static str),
    #[error("the broker's TLS configuration is unusable: {0}")]
    Config(String),
    #[error("publishing the broker CA in ConfigMap {namespace}/{name}: {reason}")]
    Publish {
        namespace: String,
        name: String,
        reason: String,
    },
}

impl TlsError {
    pub fn category(&self) -> &'static str {
        match self {
            TlsError::Issue(_) | TlsError::Config(_) => "BrokerTls",
            TlsError::Publish { .. } => "KubeApiError",
        }
    }
}

/// A serving certificate for `ip` (and `dns` names), signed by `ca`; with the CA certificate
/// after it, the chain a TLS server presents.
pub struct Serving {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Issues the serving certificate of a replica reachable at `ip`.
pub fn issue_serving(
    ca: &SigningKey,
    ip: IpAddr,
    dns: &[String],
    now: Timestamp,
) -> Result<Serving, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|_| TlsError::Issue("no key pair"))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "podcreds broker");
    params.subject_alt_names = std::iter::once(SanType::IpAddress(ip))
        .chain(
            dns.iter()
                .filter_map(|d| d.as_str().try_into().ok().map(SanType::DnsName)),
        )
        .collect();
    let at = |t: Timestamp| {
        ::time::OffsetDateTime::from_unix_timestamp(t.as_second())
            .map_err(|_| TlsError::Issue("the time is out of range"))
    };
    let start = now
        .checked_sub(jiff::SignedDuration::from_mins(5))
        .map_err(|_| TlsError::Issue("the time is out of range"))?;
    let end = now
        .checked_add(jiff::SignedDuration::from_hours(24 * SERVING_LIFETIME_DAYS))
        .map_err(|_| TlsError::Issue("the time is out of range"))?;
    params.not_before = at(start)?;
    params.not_after = at(end)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_ca_cert_der(&ca.certificate_der().into(), ca.key_pair())
        .map_err(|_| TlsError::Issue("the CA certificate is unreadable"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|_| TlsError::Issue("signing the certificate failed"))?;
    Ok(Serving {
        chain: vec![
            cert.der().clone(),
            CertificateDer::from(ca.certificate_der().to_vec()),
        ],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// The rustls server configuration presenting `serving` (HTTP/1.1 only).
pub fn server_config(serving: Serving) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Config(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(serving.chain, serving.key)
    .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The PEM text agents trust: every certificate the ring announces (active, next, previous), so
/// a rotation through its three steps never leaves an agent distrusting a replica.
pub fn trust_bundle(ring: &KeyRing) -> String {
    let mut pem = ring.active.certificate_pem().to_string();
    for der in ring.announced_certificates().into_iter().skip(1) {
        pem.push_str(&pem_of(der));
    }
    pem
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Writes the trust bundle into the ConfigMap (server-side apply, podcreds' field manager).
pub async fn publish(
    client: kube::Client,
    namespace: &str,
    name: &str,
    bundle: &str,
) -> Result<(), TlsError> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/part-of".into(), "podcreds".into()),
                ("app.kubernetes.io/component".into(), "broker-ca".into()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(CA_KEY.to_string(), bundle.to_string())])),
        ..ConfigMap::default()
    };
    api.patch(
        name,
        &PatchParams::apply(crate::secret::FIELD_MANAGER).force(),
        &Patch::Apply(&map),
    )
    .await
    .map(|_| ())
    .map_err(|e| TlsError::Publish {
        namespace: namespace.to_string(),
        name: name.to_string(),
        reason: match e {
            kube::Error::Api(status) => crate::text::remote(&status.message),
            other => crate::text::remote(&other.to_string()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{BROKER_CA, pem_certificates_der};

    #[test]
    fn the_serving_certificate_names_the_pod_ip_and_chains_to_the_ca() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ring = KeyRing::generate(&BROKER_CA, 2026).expect("ring");
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let now = Timestamp::now();
        let serving = issue_serving(&ring.active, ip, &[], now).expect("issued");
        assert_eq!(serving.chain.len(), 2);
        // A client trusting only the published bundle accepts it for that IP, not another.
        let mut roots = rustls::RootCertStore::empty();
        for der in pem_certificates_der(&trust_bundle(&ring)) {
            roots.add(CertificateDer::from(der)).expect("root");
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .expect("verifier");
        use rustls::client::danger::ServerCertVerifier;
        let check = |name: &str| {
            verifier.verify_server_cert(
                &serving.chain[0],
                &serving.chain[1..],
                &rustls::pki_types::ServerName::try_from(name.to_string()).expect("name"),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
        };
        assert!(check("10.1.2.3").is_ok());
        assert!(check("10.1.2.4").is_err());
        // Another CA's bundle does not.
        let other = KeyRing::generate(&BROKER_CA, 2026).expect("ring");
        let mut roots = rustls::RootCertStore::empty();
        for der in pem_certificates_der(&trust_bundle(&other)) {
            roots.add(CertificateDer::from(der)).expect("root");
        }
        let foreign = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .expect("verifier");
        assert!(
            foreign
                .verify_server_cert(
                    &serving.chain[0],
                    &serving.chain[1..],
                    &rustls::pki_types::ServerName::try_from("10.1.2.3").expect("name"),
                    &[],
                    rustls::pki_types::UnixTime::now(),
                )
                .is_err()
        );
        assert!(server_config(serving).is_ok());
    }

    #[test]
    fn a_rotation_keeps_every_announced_certificate_trusted() {
        let mut ring = KeyRing::generate(&BROKER_CA, 2026).expect("ring");
        ring.add_next(2026).expect("next");
        assert_eq!(pem_certificates_der(&trust_bundle(&ring)).len(), 2);
        ring.promote().expect("promote");
        assert_eq!(pem_certificates_der(&trust_bundle(&ring)).len(), 2);
        ring.retire().expect("retire");
        assert_eq!(pem_certificates_der(&trust_bundle(&ring)).len(), 1);
    }
}

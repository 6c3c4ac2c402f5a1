//! IAM Roles Anywhere for the action tests: a small PKI made with rcgen (CAs, intermediates,
//! end-entity certificates with RSA or ECDSA keys), `CreateSession` requests signed the way AWS's
//! `aws_signing_helper` signs them, and the emulator's REST-JSON answers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SerialNumber, SignatureAlgorithm, SigningKey, date_time_ymd,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sts_emulator::Emulator;

use super::ACCOUNT;

pub const RSA: &SignatureAlgorithm = &rcgen::PKCS_RSA_SHA256;
pub const ECDSA: &SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;

pub fn trust_anchor_arn(id: &str) -> String {
    format!("arn:aws:rolesanywhere:us-east-1:{ACCOUNT}:trust-anchor/{id}")
}

pub fn profile_arn(id: &str) -> String {
    format!("arn:aws:rolesanywhere:us-east-1:{ACCOUNT}:profile/{id}")
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A certificate authority: its parameters (to issue with), key and certificate.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub cert: Certificate,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    params
}

impl Ca {
    /// A self-signed root CA (ECDSA P-256).
    pub fn root(cn: &str) -> Self {
        Self::root_with(cn, |_| {})
    }

    pub fn root_with(cn: &str, change: impl FnOnce(&mut CertificateParams)) -> Self {
        let key = KeyPair::generate_for(ECDSA).expect("key");
        let mut params = ca_params(cn);
        change(&mut params);
        let cert = params.self_signed(&key).expect("self-signed");
        Self { params, key, cert }
    }

    /// An intermediate CA under this one, with an RSA key.
    pub fn intermediate(&self, cn: &str, change: impl FnOnce(&mut CertificateParams)) -> Self {
        let key = KeyPair::generate_for(RSA).expect("key");
        let mut params = ca_params(cn);
        change(&mut params);
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .expect("intermediate");
        Self { params, key, cert }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// An end-entity certificate for a new key of `alg`: subject `CN=<cn>`, serial `serial`,
    /// key usage `digitalSignature`, valid 2020 to 2100, then `change`.
    pub fn issue(
        &self,
        alg: &'static SignatureAlgorithm,
        cn: &str,
        serial: u64,
        change: impl FnOnce(&mut CertificateParams),
    ) -> Holder {
        let key = KeyPair::generate_for(alg).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2100, 1, 1);
        change(&mut params);
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .expect("leaf");
        Holder {
            cert: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
            chain: Vec::new(),
        }
    }
}

/// What a workload holds: its certificate, key, and the intermediates it sends.
pub struct Holder {
    pub cert: Vec<u8>,
    pub cert_pem: String,
    pub key: KeyPair,
    pub chain: Vec<Vec<u8>>,
}

impl Holder {
    pub fn with_chain(mut self, chain: &[&Ca]) -> Self {
        self.chain = chain.iter().map(|c| c.der()).collect();
        self
    }

    /// `RSA` or `ECDSA`, as the helper names the key type in the algorithm.
    pub fn algorithm(&self) -> &'static str {
        if self.key.algorithm() == RSA {
            "AWS4-X509-RSA-SHA256"
        } else {
            "AWS4-X509-ECDSA-SHA256"
        }
    }

    /// The serial number in decimal (as the credential scope names it).
    pub fn serial_decimal(&self) -> String {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.cert).expect("parse");
        cert.serial.to_string()
    }
}

/// A `CreateSession` about to be sent: its query string, body and headers (tests may tamper
/// with any of them after signing).
pub struct Request {
    pub query: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// How a request is signed (the defaults are the helper's).
pub struct Signing<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub time: jiff::Timestamp,
    pub algorithm: Option<&'a str>,
    pub serial: Option<String>,
    /// Header names (lower case) left out of the signature.
    pub unsigned: &'a [&'a str],
}

impl Default for Signing<'_> {
    fn default() -> Self {
        Self {
            region: "us-east-1",
            service: "rolesanywhere",
            time: jiff::Timestamp::now(),
            algorithm: None,
            serial: None,
            unsigned: &[],
        }
    }
}

const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The query string of `pairs` as the helper (Go's `url.Values.Encode`) writes it: sorted,
/// every character but the unreserved ones percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut pairs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, QUERY),
                percent_encoding::utf8_percent_encode(v, QUERY)
            )
        })
        .collect();
    pairs.sort();
    pairs.join("&")
}

/// The helper's request for `role` with `profile` and `anchor` (ARNs in the query, as the
/// helper sends them) and `body`, signed by `holder` for `host`.
pub fn request(
    host: &str,
    holder: &Holder,
    arns: (&str, &str, &str),
    body: &str,
    signing: &Signing<'_>,
) -> Request {
    let (anchor, profile, role) = arns;
    let query = query(&[
        ("profileArn", profile),
        ("roleArn", role),
        ("trustAnchorArn", anchor),
    ]);
    sign(host, holder, query, body.to_string(), signing)
}

/// Signs a `POST /sessions?<query>` with `body` as `aws_signing_helper` 1.4.0 does.
pub fn sign(
    host: &str,
    holder: &Holder,
    query: String,
    body: String,
    signing: &Signing<'_>,
) -> Request {
    let amz_date = signing.time.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut headers = vec![
        ("host".to_string(), host.to_string()),
        ("content-type".to_string(), "application/json".to_string()),
        ("x-amz-date".to_string(), amz_date.clone()),
        ("x-amz-x509".to_string(), BASE64.encode(&holder.cert)),
    ];
    if !holder.chain.is_empty() {
        let chain: Vec<String> = holder.chain.iter().map(|c| BASE64.encode(c)).collect();
        headers.push(("x-amz-x509-chain".to_string(), chain.join(",")));
    }
    headers.sort();
    let signed: Vec<&(String, String)> = headers
        .iter()
        .filter(|(k, _)| !signing.unsigned.contains(&k.as_str()))
        .collect();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_names = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "POST\n/sessions\n{query}\n{canonical_headers}\n{signed_names}\n{}",
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    let algorithm = signing.algorithm.unwrap_or(holder.algorithm());
    let day = &amz_date[..8];
    let scope = format!("{day}/{}/{}/aws4_request", signing.region, signing.service);
    let to_sign = format!(
        "{algorithm}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let signature = hex::encode(holder.key.sign(to_sign.as_bytes()).expect("sign"));
    let serial = signing
        .serial
        .clone()
        .unwrap_or_else(|| holder.serial_decimal());
    headers.push((
        "authorization".to_string(),
        format!(
            "{algorithm} Credential={serial}/{scope}, SignedHeaders={signed_names}, Signature={signature}"
        ),
    ));
    Request {
        query,
        body,
        headers,
    }
}

/// What the emulator answered a `CreateSession`.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub error_type: Option<String>,
    pub json: Value,
}

impl Answer {
    /// The error type, or `Ok` for a 201.
    pub fn code(&self) -> String {
        match (&self.error_type, self.status) {
            (_, 201) => "Ok".into(),
            (Some(t), _) => t.clone(),
            (None, s) => format!("HTTP {s}"),
        }
    }

    pub fn message(&self) -> String {
        self.json["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The credentials of the first credential set.
    pub fn credentials(&self) -> super::Credentials {
        let c = &self.json["credentialSet"][0]["credentials"];
        super::Credentials {
            access_key_id: c["accessKeyId"].as_str().expect("accessKeyId").into(),
            secret_access_key: c["secretAccessKey"]
                .as_str()
                .expect("secretAccessKey")
                .into(),
            session_token: c["sessionToken"].as_str().map(str::to_string),
        }
    }

    pub fn set(&self) -> &Value {
        &self.json["credentialSet"][0]
    }
}

/// Sends `request` to the emulator.
pub async fn send(emulator: &Emulator, request: Request) -> Answer {
    let url = format!("{}/sessions?{}", emulator.url(), request.query);
    let mut builder = http::Request::post(url);
    for (k, v) in &request.headers {
        builder = builder.header(k, v);
    }
    let req = builder
        .body(Full::new(Bytes::from(request.body)))
        .expect("request");
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(req).await.expect("response");
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        error_type,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

/// The host (`127.0.0.1:<port>`) of the emulator.
pub fn host(emulator: &Emulator) -> String {
    emulator.url().trim_start_matches("http://").to_string()
}

//! The SigV4 X.509 variants of IAM Roles Anywhere ("The IAM Roles Anywhere authentication
//! signing process" in its user guide), as AWS's `aws_signing_helper` 1.4.0 builds them:
//!
//! - `Authorization: AWS4-X509-RSA-SHA256 | AWS4-X509-ECDSA-SHA256 Credential=<serial in
//!   decimal>/<yyyymmdd>/<region>/rolesanywhere/aws4_request, SignedHeaders=<a;b;c>,
//!   Signature=<hex>`; the algorithm names the key type of the signing certificate;
//! - the signing certificate in `X-Amz-X509` (base64 DER), intermediates in `X-Amz-X509-Chain`
//!   (comma-separated base64 DER, at most 5), both among the signed headers, with `host` and
//!   `x-amz-date`;
//! - the canonical request of SigV4: method, path, the query string (names and values
//!   URI-encoded, sorted), each signed header as `name:value` (values of a repeated header
//!   joined by `,`, spaces trimmed and runs of spaces collapsed), the signed header names, and
//!   the hex SHA-256 of the body;
//! - the string to sign `<algorithm>\n<X-Amz-Date>\n<scope>\n<hex SHA-256 of the canonical
//!   request>`, signed with the certificate's private key: RSA PKCS#1 v1.5 with SHA-256, or
//!   ECDSA with SHA-256 (an ASN.1 DER signature), hex-encoded.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::*;

use crate::sigv4::{SignedRequest, canonical_query, parse_amz_date};

pub(crate) const RSA: &str = "AWS4-X509-RSA-SHA256";
pub(crate) const ECDSA: &str = "AWS4-X509-ECDSA-SHA256";
/// The most intermediates `X-Amz-X509-Chain` may carry.
pub(crate) const MAX_CHAIN: usize = 5;

/// Why a request's X.509 signature is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SigningError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("Authorization header is malformed: {0}")]
    Malformed(String),
    #[error("Signature expired: the request time is too far from the server time")]
    Skewed,
    #[error("Credential should be scoped to correct service: 'rolesanywhere'")]
    Service,
    #[error("Credential should be scoped to a valid region, not '{0}'")]
    Region(String),
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{day}'"
    )]
    ScopeDate { scope: String, day: String },
    #[error(
        "The serial number in the Credential ({sent}) is not the signing certificate's ({serial})"
    )]
    Serial { sent: String, serial: String },
    #[error("{0} must be among the signed headers")]
    Unsigned(&'static str),
    #[error("Invalid certificate in {0}: {1}")]
    Certificate(&'static str, String),
    #[error("{algorithm} does not fit the signing certificate's {key} key")]
    Algorithm { algorithm: String, key: String },
    #[error("X-Amz-Content-Sha256 does not match the SHA-256 of the body")]
    ContentHash,
    #[error("Invalid signature")]
    Mismatch,
}

/// The parsed `Authorization` header of a `CreateSession`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct X509Authorization {
    pub algorithm: String,
    /// The signing certificate's serial number, in decimal, as sent.
    pub serial: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: Vec<u8>,
}

fn malformed(why: &str) -> SigningError {
    SigningError::Malformed(why.to_string())
}

pub(crate) fn parse_authorization(headers: &HeaderMap) -> Result<X509Authorization, SigningError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(SigningError::Missing)?
        .to_str()
        .map_err(|_| malformed("not ASCII"))?;
    let (algorithm, rest) = value
        .split_once(' ')
        .ok_or_else(|| malformed("no algorithm"))?;
    if algorithm != RSA && algorithm != ECDSA {
        return Err(SigningError::Malformed(format!(
            "unsupported algorithm {algorithm:?} (expected {RSA} or {ECDSA})"
        )));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("bad component"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(malformed("unknown component")),
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(malformed("bad credential scope"));
    }
    if scope[0].is_empty() || !scope[0].bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            "the credential does not start with a decimal serial number",
        ));
    }
    if scope[1].len() != 8 || !scope[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("bad credential scope date"));
    }
    let signed_headers: Vec<String> = signed
        .ok_or_else(|| malformed("no SignedHeaders"))?
        .split(';')
        .map(str::to_string)
        .collect();
    let signature = hex::decode(signature.ok_or_else(|| malformed("no Signature"))?)
        .map_err(|_| malformed("the signature is not hexadecimal"))?;
    Ok(X509Authorization {
        algorithm: algorithm.to_string(),
        serial: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers,
        signature,
    })
}

/// The certificates a request presents: the signing one (`X-Amz-X509`), then the
/// intermediates (`X-Amz-X509-Chain`), each DER.
pub(crate) fn presented_certificates(
    headers: &HeaderMap,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), SigningError> {
    let leaf = headers
        .get("x-amz-x509")
        .ok_or_else(|| SigningError::Certificate("X-Amz-X509", "missing".into()))?;
    let decode = |header: &'static str, text: &[u8]| {
        BASE64
            .decode(text)
            .map_err(|_| SigningError::Certificate(header, "not base64".into()))
    };
    let leaf = decode("X-Amz-X509", leaf.as_bytes())?;
    let mut chain = Vec::new();
    if let Some(value) = headers.get("x-amz-x509-chain") {
        for part in value.as_bytes().split(|b| *b == b',') {
            chain.push(decode("X-Amz-X509-Chain", part.trim_ascii())?);
        }
        if chain.len() > MAX_CHAIN {
            return Err(SigningError::Certificate(
                "X-Amz-X509-Chain",
                format!("{} certificates, more than {MAX_CHAIN}", chain.len()),
            ));
        }
    }
    Ok((leaf, chain))
}

/// `name:value` of a signed header: repeated values joined by `,`, leading and trailing spaces
/// trimmed, runs of spaces collapsed to one (AWS's Trimall, as the helper applies it).
fn canonical_header(headers: &HeaderMap, name: &str) -> String {
    let joined = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let mut out = String::with_capacity(joined.len());
    for c in joined.trim_matches(' ').chars() {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    format!("{name}:{out}\n")
}

/// The canonical request of `request` over `signed_headers`, with `payload_hash`.
pub(crate) fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let headers: String = signed_headers
        .iter()
        .map(|name| canonical_header(request.headers, name))
        .collect();
    format!(
        "{}\n{}\n{}\n{headers}\n{}\n{payload_hash}",
        request.method,
        if request.path.is_empty() {
            "/"
        } else {
            request.path
        },
        canonical_query(request.query),
        signed_headers.join(";"),
    )
}

/// The string the certificate's key signed.
pub(crate) fn string_to_sign(
    algorithm: &str,
    amz_date: &str,
    scope: &str,
    canonical_request: &str,
) -> String {
    format!(
        "{algorithm}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The verification algorithm for the signing certificate's key under `algorithm`, and the
/// key's type for messages.
fn verification(
    cert: &X509Certificate<'_>,
    algorithm: &str,
) -> Result<&'static dyn VerificationAlgorithm, SigningError> {
    let spki = cert.public_key();
    let key_oid = &spki.algorithm.algorithm;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    let (key, alg): (String, Option<&'static dyn VerificationAlgorithm>) =
        if *key_oid == OID_PKCS1_RSAENCRYPTION {
            (
                "RSA".into(),
                (algorithm == RSA).then_some(&signature::RSA_PKCS1_2048_8192_SHA256 as _),
            )
        } else if *key_oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let alg: Option<&'static dyn VerificationAlgorithm> = match curve {
                Some(c) if c == OID_EC_P256 => Some(&signature::ECDSA_P256_SHA256_ASN1),
                Some(c) if c == OID_NIST_EC_P384 => Some(&signature::ECDSA_P384_SHA256_ASN1),
                _ => None,
            };
            ("EC".into(), alg.filter(|_| algorithm == ECDSA))
        } else {
            (key_oid.to_id_string(), None)
        };
    alg.ok_or(SigningError::Algorithm {
        algorithm: algorithm.to_string(),
        key,
    })
}

/// Verifies the X.509 signature of `request` (its `Authorization` parsed as `auth`) with the
/// signing certificate `leaf` at `now`; `regions` are the regions the emulator serves.
pub(crate) fn verify(
    request: &SignedRequest<'_>,
    auth: &X509Authorization,
    leaf: &X509Certificate<'_>,
    regions: &[String],
    now: jiff::Timestamp,
) -> Result<(), SigningError> {
    if auth.service != "rolesanywhere" {
        return Err(SigningError::Service);
    }
    if !regions.contains(&auth.region) {
        return Err(SigningError::Region(auth.region.clone()));
    }
    for (header, name) in [
        ("host", "Host"),
        ("x-amz-date", "X-Amz-Date"),
        ("x-amz-x509", "X-Amz-X509"),
    ] {
        if !auth.signed_headers.iter().any(|h| h == header) {
            return Err(SigningError::Unsigned(name));
        }
    }
    if request.headers.contains_key("x-amz-x509-chain")
        && !auth.signed_headers.iter().any(|h| h == "x-amz-x509-chain")
    {
        return Err(SigningError::Unsigned("X-Amz-X509-Chain"));
    }
    let serial = leaf.serial.to_string();
    if auth.serial != serial {
        return Err(SigningError::Serial {
            sent: auth.serial.clone(),
            serial,
        });
    }
    let amz_date = request
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| malformed("no X-Amz-Date"))?;
    let when = parse_amz_date(amz_date).ok_or_else(|| malformed("bad X-Amz-Date"))?;
    let day = amz_date.get(..8).unwrap_or(amz_date);
    if day != auth.date {
        return Err(SigningError::ScopeDate {
            scope: auth.date.clone(),
            day: day.to_string(),
        });
    }
    if when.duration_since(now).abs() > jiff::SignedDuration::from_mins(15) {
        return Err(SigningError::Skewed);
    }
    let body_hash = hex::encode(Sha256::digest(request.body));
    if let Some(sent) = request.headers.get("x-amz-content-sha256")
        && sent.as_bytes() != body_hash.as_bytes()
    {
        return Err(SigningError::ContentHash);
    }
    let alg = verification(leaf, &auth.algorithm)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let canonical = canonical_request(request, &auth.signed_headers, &body_hash);
    let to_sign = string_to_sign(&auth.algorithm, amz_date, &scope, &canonical);
    UnparsedPublicKey::new(alg, &leaf.public_key().subject_public_key.data)
        .verify(to_sign.as_bytes(), &auth.signature)
        .map_err(|_| SigningError::Mismatch)
}

//! The `CreateSession` request and its X.509 SigV4 signature, as the Roles Anywhere user guide's
//! signing process describes it: SigV4's canonical request and string to sign over the
//! `rolesanywhere` scope, signed with the certificate's key instead of an HMAC, the certificate
//! in `X-Amz-X509` (and intermediates in `X-Amz-X509-Chain`), and its serial number where SigV4
//! puts an access key ID. The ARNs go in the query, as AWS's own helper sends them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::certificate::{CertificateError, WorkloadCertificate};

/// What one `CreateSession` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParameters<'a> {
    pub trust_anchor_arn: &'a str,
    pub profile_arn: &'a str,
    pub role_arn: &'a str,
    pub duration_seconds: i32,
}

/// A request ready to send: path and query, headers (`Host` included) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    pub path_and_query: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// SigV4's URI encoding: everything but unreserved characters as `%XX`.
fn uri_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `POST /sessions` for `parameters` at `host` in `region`, signed at `now` with `certificate`.
pub fn sign_create_session(
    parameters: &SessionParameters<'_>,
    certificate: &WorkloadCertificate,
    host: &str,
    region: &str,
    now: Timestamp,
) -> Result<SignedRequest, CertificateError> {
    let mut query = [
        ("profileArn", parameters.profile_arn),
        ("roleArn", parameters.role_arn),
        ("trustAnchorArn", parameters.trust_anchor_arn),
    ]
    .iter()
    .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
    .collect::<Vec<_>>();
    query.sort();
    let query = query.join("&");
    let body = serde_json::json!({ "durationSeconds": parameters.duration_seconds })
        .to_string()
        .into_bytes();

    let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let mut headers: Vec<(&'static str, String)> = vec![
        ("content-type", "application/json".into()),
        ("host", host.to_string()),
        ("x-amz-date", amz_date.clone()),
        ("x-amz-x509", BASE64.encode(&certificate.leaf_der)),
    ];
    if !certificate.chain_der.is_empty() {
        let chain: Vec<String> = certificate
            .chain_der
            .iter()
            .map(|der| BASE64.encode(der))
            .collect();
        headers.push(("x-amz-x509-chain", chain.join(",")));
    }
    // Already in lowercase name order.
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let canonical_request = format!(
        "POST\n/sessions\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        sha256_hex(&body)
    );
    let algorithm = certificate.signing_algorithm();
    let scope = format!("{date}/{region}/rolesanywhere/aws4_request");
    let string_to_sign = format!(
        "{algorithm}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let signature = hex::encode(certificate.sign(string_to_sign.as_bytes())?);
    headers.push((
        "authorization",
        format!(
            "{algorithm} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            certificate.serial_decimal()
        ),
    ));
    Ok(SignedRequest {
        path_and_query: format!("/sessions?{query}"),
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{KeyRing, ROLES_ANYWHERE_CA};
    use crate::rolesanywhere::{WorkloadSubject, issue_leaf};
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn arns_are_encoded_as_sigv4_wants() {
        assert_eq!(
            uri_encode("arn:aws:iam::1:role/a b~"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b~"
        );
    }

    /// The signature verifies with the certificate's public key over the string to sign that the
    /// request's own parts produce: what the service recomputes.
    #[test]
    fn the_signature_covers_the_request_and_verifies_with_the_certificate() {
        let ring = KeyRing::generate(&ROLES_ANYWHERE_CA, 2026).unwrap();
        let now: Timestamp = "2026-12-04T12:00:00Z".parse().unwrap();
        let cert = issue_leaf(
            &ring.active,
            &WorkloadSubject::of("ns", "sa", "cluster.local"),
            now,
            3600,
        )
        .unwrap();
        let parameters = SessionParameters {
            trust_anchor_arn: "arn:aws:rolesanywhere:eu-west-1:1:trust-anchor/t",
            profile_arn: "arn:aws:rolesanywhere:eu-west-1:1:profile/p",
            role_arn: "arn:aws:iam::1:role/r",
            duration_seconds: 3600,
        };
        let signed =
            sign_create_session(&parameters, &cert, "ra.example:8443", "eu-west-1", now).unwrap();
        assert_eq!(
            signed.path_and_query,
            "/sessions?profileArn=arn%3Aaws%3Arolesanywhere%3Aeu-west-1%3A1%3Aprofile%2Fp&roleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&trustAnchorArn=arn%3Aaws%3Arolesanywhere%3Aeu-west-1%3A1%3Atrust-anchor%2Ft"
        );
        assert_eq!(signed.body, br#"{"durationSeconds":3600}"#);
        let header = |name: &str| {
            signed
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("x-amz-date"), "20261204T120000Z");
        assert_eq!(header("x-amz-x509"), BASE64.encode(&cert.leaf_der));
        let authorization = header("authorization");
        let prefix = format!(
            "AWS4-X509-ECDSA-SHA256 Credential={}/20261204/eu-west-1/rolesanywhere/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-x509, Signature=",
            cert.serial_decimal()
        );
        assert!(authorization.starts_with(&prefix), "{authorization}");
        let signature = hex::decode(&authorization[prefix.len()..]).unwrap();

        let canonical = format!(
            "POST\n/sessions\n{}\ncontent-type:application/json\nhost:ra.example:8443\nx-amz-date:20261204T120000Z\nx-amz-x509:{}\n\ncontent-type;host;x-amz-date;x-amz-x509\n{}",
            &signed.path_and_query["/sessions?".len()..],
            header("x-amz-x509"),
            sha256_hex(&signed.body)
        );
        let string_to_sign = format!(
            "AWS4-X509-ECDSA-SHA256\n20261204T120000Z\n20261204/eu-west-1/rolesanywhere/aws4_request\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let (_, leaf) = X509Certificate::from_der(&cert.leaf_der).unwrap();
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            leaf.public_key().subject_public_key.data.as_ref(),
        );
        key.verify(string_to_sign.as_bytes(), &signature).unwrap();
        // A changed request no longer verifies.
        key.verify(
            string_to_sign.replace("eu-west-1", "eu-west-2").as_bytes(),
            &signature,
        )
        .unwrap_err();
    }
}

//! SigV4 verification of signed STS calls (GetCallerIdentity, AssumeRole): the canonical request
//! is rebuilt from what arrived, and the signature recomputed with the secret the emulator issued
//! (key derivation and HMAC from `aws-sigv4`).

use std::time::SystemTime;

use http::HeaderMap;
use sha2::{Digest, Sha256};

/// The parsed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("Request is missing Authentication Token")]
    Missing,
    #[error("Authorization header is malformed: {0}")]
    Malformed(&'static str),
    #[error("Signature expired: the request time is too far from the server time")]
    Skewed,
    /// The credential scope's date is not the day of `X-Amz-Date` (AWS's words).
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{day}', from '{amz_date}'."
    )]
    ScopeDate {
        scope: String,
        day: String,
        amz_date: String,
    },
    #[error("The request signature we calculated does not match the signature you provided")]
    Mismatch,
}

pub fn parse_authorization(headers: &HeaderMap) -> Result<Authorization, SignatureError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Malformed("not ASCII"))?;
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or(SignatureError::Malformed("unsupported algorithm"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("bad component"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or(SignatureError::Malformed("no Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(SignatureError::Malformed("bad credential scope"));
    }
    if scope[1].len() != 8 || !scope[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed("bad credential scope date"));
    }
    let signed_headers: Vec<String> = signed_headers
        .ok_or(SignatureError::Malformed("no SignedHeaders"))?
        .split(';')
        .map(str::to_string)
        .collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(SignatureError::Malformed("host is not signed"));
    }
    Ok(Authorization {
        access_key_id: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers,
        signature: signature
            .ok_or(SignatureError::Malformed("no Signature"))?
            .to_string(),
    })
}

const URI_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            (
                percent_encoding::utf8_percent_encode(&k, URI_ENCODE).to_string(),
                percent_encoding::utf8_percent_encode(&v, URI_ENCODE).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_header_value(headers: &HeaderMap, name: &str) -> String {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    values.join(",")
}

/// Parses `x-amz-date` (`20261128T080000Z`).
pub fn parse_amz_date(value: &str) -> Option<jiff::Timestamp> {
    jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", value)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// The parts of an arrived request that its signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Verifies the signature of a request signed with `secret_access_key`.
pub fn verify(
    request: &SignedRequest<'_>,
    auth: &Authorization,
    secret_access_key: &str,
    now: jiff::Timestamp,
) -> Result<(), SignatureError> {
    let SignedRequest {
        method,
        path,
        query,
        headers,
        body,
    } = request;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(SignatureError::Malformed("no x-amz-date"))?;
    let when = parse_amz_date(amz_date).ok_or(SignatureError::Malformed("bad x-amz-date"))?;
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(SignatureError::ScopeDate {
            scope: auth.date.clone(),
            day: amz_date.get(..8).unwrap_or(amz_date).to_string(),
            amz_date: amz_date.to_string(),
        });
    }
    if when.duration_since(now).abs() > jiff::SignedDuration::from_mins(15) {
        return Err(SignatureError::Skewed);
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        canonical_headers.push_str(&format!(
            "{name}:{}\n",
            canonical_header_value(headers, name)
        ));
    }
    let payload_hash = match headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(h) if h != "UNSIGNED-PAYLOAD" => h.to_string(),
        _ => hex::encode(Sha256::digest(body)),
    };
    let canonical_request = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload_hash}",
        path = if path.is_empty() { "/" } else { path },
        query = canonical_query(query),
        signed = auth.signed_headers.join(";"),
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let signing_time: SystemTime =
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(when.as_second().max(0) as u64);
    let key = aws_sigv4::sign::v4::generate_signing_key(
        secret_access_key,
        signing_time,
        &auth.region,
        &auth.service,
    );
    let expected = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4::SigningParams;

    fn signed_request(secret: &str, body: &str, at: SystemTime) -> HeaderMap {
        let identity = aws_credential_types_stub::identity("ASIATEST", secret, Some("tok"));
        let params = SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sts")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let headers = [
            ("host", "127.0.0.1:9999"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:9999/",
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(k, v.parse().expect("header"));
        }
        for (k, v) in instructions.headers() {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        map
    }

    mod aws_credential_types_stub {
        use aws_smithy_runtime_api::client::identity::Identity;
        pub fn identity(akid: &str, secret: &str, token: Option<&str>) -> Identity {
            aws_credential_types::Credentials::new(
                akid,
                secret,
                token.map(str::to_string),
                None,
                "test",
            )
            .into()
        }
    }

    #[test]
    fn sdk_signatures_verify_and_tampering_does_not() {
        let now = SystemTime::now();
        let body = "Action=GetCallerIdentity&Version=2011-06-15";
        let headers = signed_request("s3cr3t", body, now);
        let auth = parse_authorization(&headers).expect("auth");
        assert_eq!(auth.access_key_id, "ASIATEST");
        let ts = jiff::Timestamp::try_from(now).expect("time");
        let request = |body: &'static [u8]| SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let good = request(b"Action=GetCallerIdentity&Version=2011-06-15");
        verify(&good, &auth, "s3cr3t", ts).expect("valid signature");
        assert_eq!(
            verify(&good, &auth, "wrong", ts),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&request(b"Action=AssumeRole"), &auth, "s3cr3t", ts),
            Err(SignatureError::Mismatch)
        );
        let later = ts + jiff::SignedDuration::from_mins(20);
        assert_eq!(
            verify(&good, &auth, "s3cr3t", later),
            Err(SignatureError::Skewed)
        );
    }

    #[test]
    fn arbitrary_authorization_headers_never_panic() {
        // A deterministic sweep of hostile shapes (the emulator faces whatever clients send).
        let pieces = [
            "AWS4-HMAC-SHA256 ",
            "Credential=",
            "a/b/c/d/aws4_request",
            ",",
            "SignedHeaders=",
            "host;x",
            "Signature=",
            "=",
            "/",
            "",
            " ",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let value = format!("{a}{b}{c}{d}");
                        let mut h = HeaderMap::new();
                        if let Ok(v) = value.parse() {
                            h.insert(http::header::AUTHORIZATION, v);
                        }
                        let _ = parse_authorization(&h);
                    }
                }
            }
        }
    }

    #[test]
    fn malformed_authorization_is_rejected() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_authorization(&h), Err(SignatureError::Missing));
        h.insert(
            http::header::AUTHORIZATION,
            "Basic abc".parse().expect("value"),
        );
        assert!(matches!(
            parse_authorization(&h),
            Err(SignatureError::Malformed(_))
        ));
    }
}

//! What the emulator answers: STS failures and their error documents (AWS's, or RGW's), and the
//! XML of successful results.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use crate::Dialect;
use crate::ids::{random_string, request_id};
use crate::state::Session;

pub(crate) const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// AWS's answer when it cannot fetch the issuer's keys.
pub(crate) const IDP_UNREACHABLE: &str = "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements";

/// A refused call: the HTTP status, AWS's error code and message.
#[derive(Debug)]
pub(crate) struct StsFailure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl StsFailure {
    /// A client error (HTTP 400).
    pub fn sender(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// `ValidationError` (HTTP 400).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::sender("ValidationError", message)
    }

    /// `AccessDenied` (HTTP 403).
    pub fn denied(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "AccessDenied",
            message: message.into(),
        }
    }

    /// A failure of the signature or the credentials that made it (HTTP 403).
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code,
            message: message.into(),
        }
    }

    /// `InternalFailure` (HTTP 500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalFailure",
            message: message.into(),
        }
    }
}

/// The injectable error codes (the failure type holds a static code, like real answers).
pub(crate) fn known_code(code: &str) -> &'static str {
    const CODES: [&str; 10] = [
        "AccessDenied",
        "ExpiredTokenException",
        "IDPRejectedClaim",
        "IDPCommunicationError",
        "InvalidIdentityToken",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "RegionDisabledException",
        "Throttling",
        "ValidationError",
    ];
    CODES
        .into_iter()
        .find(|c| *c == code)
        .unwrap_or("InternalFailure")
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

pub(crate) fn error_response(f: &StsFailure, dialect: Dialect) -> Response {
    if dialect == Dialect::CephRgw {
        return ceph_error_response(f);
    }
    let kind = if f.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        f.code,
        xml_escape(&f.message),
        request_id()
    );
    (f.status, [("content-type", "text/xml")], body).into_response()
}

/// RGW's error document: S3's `<Error>` root, its own codes for what AWS calls otherwise, and
/// (as RGW sends for most STS failures) an empty message.
fn ceph_error_response(f: &StsFailure) -> Response {
    let (status, code) = match f.code {
        // RGW refuses tokens it cannot verify while authenticating the request.
        "AccessDenied" | "InvalidIdentityToken" | "ExpiredTokenException" | "IDPRejectedClaim" => {
            (StatusCode::FORBIDDEN, "AccessDenied")
        }
        "ValidationError" | "MalformedPolicyDocument" => {
            (StatusCode::BAD_REQUEST, "InvalidArgument")
        }
        "Throttling" => (StatusCode::SERVICE_UNAVAILABLE, "SlowDown"),
        "InternalFailure" => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        other => (f.status, other),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message></Message><RequestId>tx{}-default</RequestId><HostId>emulator-default-default</HostId></Error>",
        random_string(24, b"0123456789abcdef"),
    );
    (status, [("content-type", "application/xml")], body).into_response()
}

/// A successful answer of `action` whose result element holds `result`.
pub(crate) fn ok_xml(action: &str, result: String) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{XMLNS}\">\n  <{action}Result>\n{result}  </{action}Result>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n",
        request_id()
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

/// A truncated answer, as a broken proxy or a cut connection leaves it.
pub(crate) fn truncated_xml(action: &str) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{XMLNS}\"><{action}Result><Credentials><AccessKeyId>ASIA"
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

pub(crate) fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// `AssumedRoleUser` and `Credentials` of a role session.
pub(crate) fn credentials_xml(access_key_id: &str, s: &Session) -> String {
    format!(
        "    <AssumedRoleUser>\n      <Arn>{}</Arn>\n      <AssumedRoleId>{}</AssumedRoleId>\n    </AssumedRoleUser>\n{}",
        xml_escape(&s.assumed_role_arn),
        xml_escape(&s.assumed_role_id),
        credentials_only_xml(access_key_id, s),
    )
}

/// `Credentials` alone (user sessions).
pub(crate) fn credentials_only_xml(access_key_id: &str, s: &Session) -> String {
    format!(
        "    <Credentials>\n      <AccessKeyId>{access_key_id}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n",
        xml_escape(&s.secret_access_key),
        xml_escape(&s.session_token),
        rfc3339(s.expiration),
    )
}

/// `<SourceIdentity>` when the session has one.
pub(crate) fn source_identity_xml(identity: Option<&str>) -> String {
    identity
        .map(|s| format!("    <SourceIdentity>{}</SourceIdentity>\n", xml_escape(s)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_escape_messages() {
        let r = error_response(
            &StsFailure::sender("ValidationError", "<bad & worse>"),
            Dialect::Aws,
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(xml_escape("<a & 'b'>"), "&lt;a &amp; &apos;b&apos;&gt;");
    }

    #[test]
    fn ceph_errors_use_rgw_codes_and_statuses() {
        for (code, status) in [
            ("AccessDenied", StatusCode::FORBIDDEN),
            ("InvalidIdentityToken", StatusCode::FORBIDDEN),
            ("ValidationError", StatusCode::BAD_REQUEST),
            ("Throttling", StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let r = error_response(&StsFailure::sender(code, "m"), Dialect::CephRgw);
            assert_eq!(r.status(), status, "{code}");
        }
    }

    #[test]
    fn only_known_codes_are_injected() {
        assert_eq!(known_code("Throttling"), "Throttling");
        assert_eq!(known_code("Whatever"), "InternalFailure");
    }
}

//! The Roles Anywhere edge: one `CreateSession` over HTTPS (plain HTTP only where the admin
//! allowed insecure endpoints), signed by `rolesanywhere::signing`. Like the STS client, it takes
//! nothing from the environment: no endpoint override, and no proxy but the admin's
//! (`--sts-proxy`, see [`super::proxy`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use secrecy::SecretString;
use serde::Deserialize;

use super::proxy::{ProxyRoute, StsProxy};
use super::{RolesAnywhereRequest, StsError, StsErrorKind, StsTimeouts};
use crate::credentials::IssuedCredentials;
use crate::rolesanywhere::signing::{SessionParameters, sign_create_session};

/// Most bytes of an answer read (a `CreateSession` answer is about 2 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub(super) type HttpsClient = Client<hyper_rustls::HttpsConnector<ProxyRoute>, Full<Bytes>>;

pub struct RolesAnywhereClient {
    /// `Err` says why no TLS client could be made (reported on every call).
    http: Result<HttpsClient, String>,
    timeouts: StsTimeouts,
    /// The admin's proxy, to name it when a call through it fails.
    proxy: Option<StsProxy>,
}

/// HTTPS with the system's roots, as the STS client's, through the admin's proxy if any; no
/// roots found leaves an empty store, so that every HTTPS call fails with an unknown issuer,
/// which the condition shows.
pub(super) fn connector(
    timeouts: StsTimeouts,
    proxy: Option<&StsProxy>,
) -> Result<hyper_rustls::HttpsConnector<ProxyRoute>, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeouts.connect));
    let tls = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(builder) => builder,
        Err(e) => {
            tracing::warn!(error = %e, "no system CA certificates: Roles Anywhere over HTTPS will fail");
            let config = rustls::ClientConfig::builder_with_provider(
                rustls::crypto::aws_lc_rs::default_provider().into(),
            )
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("no TLS configuration: {e}"))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    Ok(tls
        .https_or_http()
        .enable_http1()
        .wrap_connector(ProxyRoute::new(http, proxy)))
}

impl RolesAnywhereClient {
    pub fn new(timeouts: StsTimeouts, proxy: Option<&StsProxy>) -> Self {
        Self {
            http: connector(timeouts, proxy)
                .map(|c| Client::builder(TokioExecutor::new()).build(c)),
            timeouts,
            proxy: proxy.cloned(),
        }
    }

    /// `CreateSession` at the request's endpoint (or the AWS one of its region).
    pub async fn create_session(
        &self,
        request: RolesAnywhereRequest,
    ) -> Result<IssuedCredentials, StsError> {
        let base = request
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://rolesanywhere.{}.amazonaws.com", request.region));
        let base = base.trim_end_matches('/');
        let uri: http::Uri = base.parse().map_err(|_| {
            invalid(&format!(
                "the Roles Anywhere endpoint {base:?} is not a URL"
            ))
        })?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| invalid(&format!("the Roles Anywhere endpoint {base:?} has no host")))?;
        let signed = sign_create_session(
            &SessionParameters {
                trust_anchor_arn: &request.trust_anchor_arn,
                profile_arn: &request.profile_arn,
                role_arn: &request.role_arn,
                duration_seconds: request.duration_seconds,
            },
            &request.certificate,
            &host,
            &request.region,
            Timestamp::now(),
        )
        .map_err(|e| invalid(&e.to_string()))?;
        let mut builder = http::Request::post(format!("{base}{}", signed.path_and_query));
        for (name, value) in &signed.headers {
            builder = builder.header(*name, value);
        }
        let http_request = builder
            .body(Full::new(Bytes::from(signed.body)))
            .map_err(|_| invalid("the CreateSession request could not be built"))?;
        let exchange = async {
            let http = self.http.as_ref().map_err(|why| unavailable(why))?;
            let response = http.request(http_request).await.map_err(|e| {
                let through = self
                    .proxy
                    .as_ref()
                    .filter(|p| p.proxies(base))
                    .map(|p| format!(" (through the proxy {})", p.shown()))
                    .unwrap_or_default();
                unavailable(&format!("Roles Anywhere unreachable: {e}{through}")).at_endpoint()
            })?;
            let status = response.status();
            let error_type = response
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(':').next().unwrap_or(v).to_string());
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|_| unavailable("the Roles Anywhere answer could not be read"))?
                .to_bytes();
            Ok::<_, StsError>((status, error_type, body))
        };
        let (status, error_type, body) = tokio::time::timeout(
            self.timeouts.operation.max(Duration::from_secs(1)),
            exchange,
        )
        .await
        .map_err(|_| unavailable("Roles Anywhere did not answer in time").at_endpoint())??;
        if !status.is_success() {
            return Err(refusal(status, error_type, &body));
        }
        credentials(&body)
    }
}

fn invalid(message: &str) -> StsError {
    StsError::new(StsErrorKind::InvalidRequest, None, message)
}

fn unavailable(message: &str) -> StsError {
    StsError::new(StsErrorKind::Unavailable, None, message)
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(alias = "Message")]
    message: Option<String>,
    #[serde(rename = "__type")]
    error_type: Option<String>,
}

/// The error of a refused `CreateSession` (REST-JSON: `x-amzn-ErrorType` and `{"message"}`).
fn refusal(status: http::StatusCode, error_type: Option<String>, body: &[u8]) -> StsError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = error_type.or_else(|| {
        parsed
            .as_ref()
            .and_then(|b| b.error_type.as_deref())
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
    });
    let message = parsed
        .and_then(|b| b.message)
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    if status.is_server_error() {
        return StsError::new(StsErrorKind::Unavailable, code.as_deref(), &message).at_endpoint();
    }
    let kind = code
        .as_deref()
        .map_or(StsErrorKind::InvalidRequest, StsErrorKind::from_code);
    StsError::new(kind, code.as_deref(), &message)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionAnswer {
    credential_set: Vec<CredentialSetItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialSetItem {
    assumed_role_user: Option<AssumedRoleUser>,
    credentials: AnswerCredentials,
}

#[derive(Deserialize)]
struct AssumedRoleUser {
    arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// The credentials of a `CreateSession` answer, refused when missing or unreadable.
fn credentials(body: &[u8]) -> Result<IssuedCredentials, StsError> {
    let answer: SessionAnswer = serde_json::from_slice(body)
        .map_err(|_| unavailable("Roles Anywhere answered without a readable credentialSet"))?;
    let item = answer
        .credential_set
        .into_iter()
        .next()
        .ok_or_else(|| unavailable("Roles Anywhere answered with an empty credentialSet"))?;
    let c = item.credentials;
    if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
        return Err(unavailable("Roles Anywhere returned empty credentials"));
    }
    let expiration: Timestamp = c
        .expiration
        .parse()
        .map_err(|_| unavailable("Roles Anywhere returned an invalid expiration"))?;
    Ok(IssuedCredentials {
        access_key_id: c.access_key_id,
        secret_access_key: SecretString::from(c.secret_access_key),
        session_token: SecretString::from(c.session_token),
        expiration,
        assumed_role_arn: item.assumed_role_user.map(|u| u.arn),
        chain: None,
        sts_endpoint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn an_answer_becomes_credentials() {
        let body = br#"{"credentialSet":[{"assumedRoleUser":{"arn":"arn:aws:sts::1:assumed-role/r/abc","assumedRoleId":"AROA:abc"},"credentials":{"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t","expiration":"2026-12-04T13:00:00Z"},"packedPolicySize":3,"roleArn":"arn:aws:iam::1:role/r","sourceIdentity":"CN=a.b"}],"subjectArn":"x"}"#;
        let c = credentials(body).unwrap();
        assert_eq!(c.access_key_id, "ASIA1");
        assert_eq!(c.session_token.expose_secret(), "t");
        assert_eq!(c.expiration.to_string(), "2026-12-04T13:00:00Z");
        assert_eq!(
            c.assumed_role_arn.as_deref(),
            Some("arn:aws:sts::1:assumed-role/r/abc")
        );
        assert_eq!(
            credentials(br#"{"credentialSet":[]}"#).unwrap_err().kind,
            StsErrorKind::Unavailable
        );
    }

    #[test]
    fn refusals_keep_the_code_and_message() {
        let e = refusal(
            http::StatusCode::FORBIDDEN,
            Some("AccessDeniedException".into()),
            br#"{"message":"Untrusted signing certificate."}"#,
        );
        assert_eq!(e.kind, StsErrorKind::AccessDenied);
        assert_eq!(e.code.as_deref(), Some("AccessDeniedException"));
        assert_eq!(e.message, "Untrusted signing certificate.");
        let e = refusal(
            http::StatusCode::NOT_FOUND,
            None,
            br#"{"__type":"com.amazonaws#ResourceNotFoundException","message":"Profile x not found"}"#,
        );
        assert_eq!(e.kind, StsErrorKind::InvalidRequest);
        assert_eq!(e.code.as_deref(), Some("ResourceNotFoundException"));
        let e = refusal(http::StatusCode::BAD_GATEWAY, None, b"<html>");
        assert_eq!(e.kind, StsErrorKind::Unavailable);
        assert_eq!(e.message, "HTTP 502");
        // A server error is the endpoint's; a refusal would be the same at any endpoint.
        assert!(e.endpoint_failed);
        assert!(!refusal(http::StatusCode::FORBIDDEN, None, b"{}").endpoint_failed);
    }
}

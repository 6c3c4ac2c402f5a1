//! The Amazon ECR edge: `GetAuthorizationToken` (JSON 1.1, SigV4 for service `ecr`) signed with a
//! binding's fresh credentials, for its image-pull Secret. Like the STS and Roles Anywhere
//! clients it takes nothing from the environment: the endpoint is the AWS regional one or the
//! admin's `--ecr-endpoint`, the proxy only the admin's `--sts-proxy`.
//!
//! The token is held as a secret from the answer to the Secret's data: no error, log line or
//! `Debug` output shows it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::StsTimeouts;
use super::proxy::StsProxy;
use super::rolesanywhere::{HttpsClient, connector};
use crate::credentials::IssuedCredentials;
use crate::retry::RetryClass;

/// Most bytes of an answer read (an answer is well under 4 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// ECR's API target prefix.
const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// One `GetAuthorizationToken`: the credentials that sign it, the region, and the endpoint
/// (`None`: `https://api.ecr.<region>.amazonaws.com`).
pub struct PullTokenRequest<'a> {
    pub credentials: &'a IssuedCredentials,
    pub region: &'a str,
    pub endpoint: Option<&'a str>,
}

/// A token ECR issued: `base64("AWS:<password>")`, as the `auth` of a docker config.
pub struct PullToken {
    pub authorization: SecretString,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for PullToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why no token was had. Categories are stable: condition reason, Event note, metric label.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EcrError {
    #[error(
        "ECR refused GetAuthorizationToken in {region} ({code}): {message}; the binding's role needs ecr:GetAuthorizationToken"
    )]
    AccessDenied {
        region: String,
        code: String,
        message: String,
    },
    #[error("ECR throttled GetAuthorizationToken in {region}: {message}")]
    Throttled { region: String, message: String },
    #[error("ECR in {region} could not be reached: {message}")]
    Unavailable { region: String, message: String },
    #[error("ECR in {region} refused GetAuthorizationToken ({code}): {message}")]
    Rejected {
        region: String,
        code: String,
        message: String,
    },
    #[error("ECR in {region} answered GetAuthorizationToken without a usable token: {problem}")]
    InvalidAnswer { region: String, problem: String },
    #[error("the ECR request could not be made: {0}")]
    Request(String),
}

impl EcrError {
    pub fn category(&self) -> &'static str {
        match self {
            EcrError::AccessDenied { .. } => "EcrAccessDenied",
            EcrError::Throttled { .. } => "EcrThrottled",
            EcrError::Unavailable { .. } => "EcrUnavailable",
            EcrError::Rejected { .. } => "EcrRequestRejected",
            EcrError::InvalidAnswer { .. } => "EcrInvalidAnswer",
            EcrError::Request(_) => "EcrRequestFailed",
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            EcrError::AccessDenied { .. } | EcrError::Rejected { .. } => RetryClass::External,
            EcrError::Request(_) => RetryClass::Permanent,
            _ => RetryClass::Transient,
        }
    }
}

/// The ECR calls podcreds makes, behind a trait so tests can stand in for ECR.
pub trait EcrClient: Send + Sync {
    fn get_authorization_token<'a>(
        &'a self,
        request: PullTokenRequest<'a>,
    ) -> BoxFuture<'a, Result<PullToken, EcrError>>;
}

/// The AWS regional ECR API endpoint of `region`.
pub fn default_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://api.ecr.{region}.{suffix}")
}

/// [`EcrClient`] over HTTPS (plain HTTP only to an admin's insecure `--ecr-endpoint`).
pub struct HttpEcrClient {
    http: Result<HttpsClient, String>,
    timeouts: StsTimeouts,
    proxy: Option<StsProxy>,
}

impl HttpEcrClient {
    pub fn new(timeouts: StsTimeouts, proxy: Option<&StsProxy>) -> Self {
        Self {
            http: connector(timeouts, proxy)
                .map(|c| Client::builder(TokioExecutor::new()).build(c)),
            timeouts,
            proxy: proxy.cloned(),
        }
    }

    async fn call(&self, request: PullTokenRequest<'_>) -> Result<PullToken, EcrError> {
        let region = request.region.to_string();
        let base = request
            .endpoint
            .map(str::to_string)
            .unwrap_or_else(|| default_endpoint(&region));
        let base = base.trim_end_matches('/').to_string();
        let url = format!("{base}/");
        let http_request = signed_request(&url, request.credentials, &region, SystemTime::now())?;
        let exchange = async {
            let http = self
                .http
                .as_ref()
                .map_err(|why| unavailable(&region, why))?;
            let response = http.request(http_request).await.map_err(|e| {
                let through = self
                    .proxy
                    .as_ref()
                    .filter(|p| p.proxies(&base))
                    .map(|p| format!(" (through the proxy {})", p.shown()))
                    .unwrap_or_default();
                unavailable(&region, &format!("{e}{through}"))
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|_| unavailable(&region, "the answer could not be read"))?
                .to_bytes();
            Ok::<_, EcrError>((status, body))
        };
        let (status, body) = tokio::time::timeout(
            self.timeouts.operation.max(Duration::from_secs(1)),
            exchange,
        )
        .await
        .map_err(|_| unavailable(&region, "no answer in time"))??;
        if !status.is_success() {
            return Err(refusal(&region, status, &body));
        }
        token(&region, &body)
    }
}

impl EcrClient for HttpEcrClient {
    fn get_authorization_token<'a>(
        &'a self,
        request: PullTokenRequest<'a>,
    ) -> BoxFuture<'a, Result<PullToken, EcrError>> {
        Box::pin(self.call(request))
    }
}

fn unavailable(region: &str, message: &str) -> EcrError {
    EcrError::Unavailable {
        region: region.to_string(),
        message: message.to_string(),
    }
}

/// The `GetAuthorizationToken` POST to `url`, signed (SigV4, service `ecr`) with `credentials`.
fn signed_request(
    url: &str,
    credentials: &IssuedCredentials,
    region: &str,
    time: SystemTime,
) -> Result<http::Request<Full<Bytes>>, EcrError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4::SigningParams;
    let uri: http::Uri = url
        .parse()
        .map_err(|_| EcrError::Request(format!("the ECR endpoint {url:?} is not a URL")))?;
    let host = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or_else(|| EcrError::Request(format!("the ECR endpoint {url:?} has no host")))?;
    let body = b"{}";
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(
            &credentials.access_key_id,
            credentials.secret_access_key.expose_secret(),
            Some(credentials.session_token.expose_secret().to_string()).filter(|t| !t.is_empty()),
            None,
            "podcreds-binding",
        )
        .into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecr")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| EcrError::Request("the request could not be signed".into()))?
        .into();
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", TARGET),
    ];
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| EcrError::Request("the request could not be signed".into()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|_| EcrError::Request("the request could not be signed".into()))?
        .into_parts();
    let mut request = http::Request::post(url)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", TARGET)
        .body(Full::new(Bytes::from_static(body)))
        .map_err(|_| EcrError::Request("the request could not be built".into()))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    error_type: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// The error of a refused call (JSON 1.1: `{"__type", "message"}`).
fn refusal(region: &str, status: http::StatusCode, body: &[u8]) -> EcrError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.error_type.as_deref())
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    let message = crate::text::remote(
        &parsed
            .and_then(|b| b.message)
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16())),
    );
    let region = region.to_string();
    if status.is_server_error() {
        return EcrError::Unavailable { region, message };
    }
    match code.as_str() {
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" => {
            EcrError::Throttled { region, message }
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException"
        | "MissingAuthenticationToken" => EcrError::AccessDenied {
            region,
            code,
            message,
        },
        _ => EcrError::Rejected {
            region,
            code,
            message,
        },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: Option<String>,
    expires_at: Option<f64>,
}

/// The token of an answer: `base64("AWS:<password>")` and its expiry.
fn token(region: &str, body: &[u8]) -> Result<PullToken, EcrError> {
    let invalid = |problem: &str| EcrError::InvalidAnswer {
        region: region.to_string(),
        problem: problem.to_string(),
    };
    let answer: Answer =
        serde_json::from_slice(body).map_err(|_| invalid("the answer is not readable"))?;
    let data = answer
        .authorization_data
        .into_iter()
        .next()
        .ok_or_else(|| invalid("no authorizationData"))?;
    let authorization = data
        .authorization_token
        .ok_or_else(|| invalid("no authorizationToken"))?;
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(authorization.as_bytes())
        .map_err(|_| invalid("the authorizationToken is not base64"))?;
    match decoded.iter().position(|b| *b == b':') {
        Some(i) if i > 0 && i + 1 < decoded.len() => {}
        _ => return Err(invalid("the authorizationToken is not user:password")),
    }
    let expires_at = data
        .expires_at
        .filter(|s| s.is_finite())
        .and_then(|s| Timestamp::from_second(s as i64).ok())
        .ok_or_else(|| invalid("no valid expiresAt"))?;
    Ok(PullToken {
        authorization: SecretString::from(authorization),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> IssuedCredentials {
        IssuedCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: SecretString::from("secret".to_string()),
            session_token: SecretString::from("session".to_string()),
            expiration: Timestamp::from_second(1_800_000_000).unwrap(),
            assumed_role_arn: None,
            chain: None,
            sts_endpoint: None,
        }
    }

    #[test]
    fn answers_become_tokens_that_never_show() {
        let body = br#"{"authorizationData":[{"authorizationToken":"QVdTOnBhc3N3b3Jk","expiresAt":1.8E9,"proxyEndpoint":"https://1.dkr.ecr.eu-west-1.amazonaws.com"}]}"#;
        let t = token("eu-west-1", body).unwrap();
        assert_eq!(t.authorization.expose_secret(), "QVdTOnBhc3N3b3Jk");
        assert_eq!(t.expires_at.as_second(), 1_800_000_000);
        assert!(!format!("{t:?}").contains("QVdT"));
        for bad in [
            &br#"{"authorizationData":[]}"#[..],
            br#"{"authorizationData":[{"authorizationToken":"!!","expiresAt":1}]}"#,
            br#"{"authorizationData":[{"authorizationToken":"QVdT","expiresAt":1}]}"#,
            br#"{"authorizationData":[{"authorizationToken":"QVdTOnBhc3N3b3Jk"}]}"#,
            b"<html>",
        ] {
            let e = token("eu-west-1", bad).unwrap_err();
            assert_eq!(e.category(), "EcrInvalidAnswer");
        }
    }

    #[test]
    fn refusals_keep_a_stable_category() {
        let e = refusal(
            "eu-west-1",
            http::StatusCode::BAD_REQUEST,
            br#"{"__type":"AccessDeniedException","message":"not authorized to perform: ecr:GetAuthorizationToken"}"#,
        );
        assert_eq!(e.category(), "EcrAccessDenied");
        assert_eq!(e.retry_class(), RetryClass::External);
        assert!(e.to_string().contains("ecr:GetAuthorizationToken"));
        let e = refusal(
            "eu-west-1",
            http::StatusCode::BAD_REQUEST,
            br#"{"__type":"com.amazonaws.ecr#ThrottlingException","message":"Rate exceeded"}"#,
        );
        assert_eq!(e.category(), "EcrThrottled");
        assert_eq!(e.retry_class(), RetryClass::Transient);
        let e = refusal("eu-west-1", http::StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(e.category(), "EcrUnavailable");
        let e = refusal(
            "eu-west-1",
            http::StatusCode::BAD_REQUEST,
            br#"{"__type":"InvalidParameterException","message":"x"}"#,
        );
        assert_eq!(e.category(), "EcrRequestRejected");
    }

    #[test]
    fn requests_are_signed_for_ecr_with_the_session_token() {
        let request = signed_request(
            "https://api.ecr.eu-west-1.amazonaws.com/",
            &creds(),
            "eu-west-1",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
        .unwrap();
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("authorization").contains("/eu-west-1/ecr/aws4_request"),
            "{}",
            header("authorization")
        );
        assert!(header("authorization").contains("x-amz-target"));
        assert_eq!(header("x-amz-security-token"), "session");
        assert_eq!(header("x-amz-target"), TARGET);
        assert_eq!(
            default_endpoint("cn-north-1"),
            "https://api.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    /// The client against the STS emulator, which verifies the SigV4 signature with the session
    /// it issued: a live session gets the token the registry will check, anything else is
    /// `EcrAccessDenied`; a dead endpoint is `EcrUnavailable`.
    #[tokio::test]
    async fn the_emulator_checks_the_signature_and_issues_the_token() {
        use base64::Engine;
        use sts_emulator::{Config, Dialect, Emulator, Role};
        let role = "arn:aws:iam::123456789012:role/puller";
        let emulator = Emulator::start(Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            issuer: "https://127.0.0.1:1".into(),
            issuer_ca_pem: None,
            roles: vec![Role {
                arn: role.into(),
                ..Role::default()
            }],
            dialect: Dialect::Aws,
            regions: vec!["eu-west-1".into()],
        })
        .await
        .expect("emulator");
        let (key, secret, token) = emulator.session_for(role).expect("known role");
        let live = IssuedCredentials {
            access_key_id: key,
            secret_access_key: SecretString::from(secret),
            session_token: SecretString::from(token),
            ..creds()
        };
        let client = HttpEcrClient::new(StsTimeouts::default(), None);
        let url = emulator.url();
        let got = client
            .get_authorization_token(PullTokenRequest {
                credentials: &live,
                region: "eu-west-1",
                endpoint: Some(&url),
            })
            .await
            .expect("token");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(got.authorization.expose_secret())
            .expect("base64");
        let password = String::from_utf8(decoded).expect("utf-8");
        let tokens = emulator.ecr_tokens();
        assert_eq!(tokens.len(), 1);
        assert_eq!(password, format!("AWS:{}", tokens[0].password));
        assert!(got.expires_at > Timestamp::now());

        let forged = IssuedCredentials {
            secret_access_key: SecretString::from("not-the-secret".to_string()),
            ..live.clone()
        };
        let refused = client
            .get_authorization_token(PullTokenRequest {
                credentials: &forged,
                region: "eu-west-1",
                endpoint: Some(&url),
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.category(), "EcrAccessDenied");
        // A region the emulator does not serve: the scope is refused too.
        let elsewhere = client
            .get_authorization_token(PullTokenRequest {
                credentials: &live,
                region: "us-west-2",
                endpoint: Some(&url),
            })
            .await
            .expect_err("refused");
        assert_eq!(elsewhere.category(), "EcrAccessDenied");
        assert_eq!(emulator.ecr_tokens().len(), 1);

        emulator.shutdown();
        let dead = client
            .get_authorization_token(PullTokenRequest {
                credentials: &live,
                region: "eu-west-1",
                endpoint: Some("http://127.0.0.1:1"),
            })
            .await
            .expect_err("unreachable");
        assert_eq!(dead.category(), "EcrUnavailable");
    }
}

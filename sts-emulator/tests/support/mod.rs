//! A small world for the emulator's action tests: an OIDC issuer on loopback (discovery document
//! and JWKS of a key made for the run), an emulator trusting it, tokens, and STS calls over HTTP,
//! unsigned or signed with SigV4 as the SDKs sign them.

#![allow(dead_code)]

pub mod ra_scene;
pub mod x509;

use std::net::SocketAddr;
use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use axum::Router;
use axum::routing::get;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sts_emulator::{Config, Emulator};

pub const ACCOUNT: &str = "123456789012";

/// An OIDC issuer serving its discovery document and the JWKS of one P-256 key.
pub struct Issuer {
    pub url: String,
    key: EncodingKey,
}

impl Issuer {
    pub async fn start() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let point = pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "k1",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]});
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/openid/v1/jwks")});
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery) }),
            )
            .route(
                "/openid/v1/jwks",
                get(move || async move { axum::Json(jwks) }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
        }
    }

    /// The provider path IAM names this issuer by (`host:port`).
    pub fn provider(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    /// The ARN of this issuer's IAM OIDC provider in the test account.
    pub fn provider_arn(&self) -> String {
        format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{}", self.provider())
    }

    /// A token of `sub` for `aud`, valid ten minutes.
    pub fn token(&self, sub: &str, aud: &str) -> String {
        let now = jiff::Timestamp::now().as_second();
        let header = Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::ES256)
        };
        let claims = json!({"iss": self.url, "sub": sub, "aud": aud, "iat": now, "exp": now + 600});
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }
}

/// An issuer and an emulator trusting it (serving `regions`, `us-east-1` if empty).
pub async fn world(regions: &[&str]) -> (Issuer, Emulator) {
    let issuer = Issuer::start().await;
    let mut config = Config::for_issuer(&issuer.url, "");
    config.issuer_ca_pem = None;
    if !regions.is_empty() {
        config.regions = regions.iter().map(|r| r.to_string()).collect();
    }
    let emulator = Emulator::start(config).await.expect("emulator");
    (issuer, emulator)
}

pub fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// What STS answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The text of the first `<tag>` element.
    pub fn text(&self, tag: &str) -> Option<String> {
        let doc = roxmltree::Document::parse(&self.body).ok()?;
        doc.descendants()
            .find(|n| n.tag_name().name() == tag)
            .and_then(|n| n.text())
            .map(str::to_string)
    }

    /// The error code, or `Ok`.
    pub fn code(&self) -> String {
        if self.status == 200 {
            "Ok".into()
        } else {
            self.text("Code").unwrap_or_default()
        }
    }

    pub fn message(&self) -> String {
        self.text("Message").unwrap_or_default()
    }

    /// (access key ID, secret access key, session token) of the credentials answered.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.text("AccessKeyId").expect("AccessKeyId"),
            secret_access_key: self.text("SecretAccessKey").expect("SecretAccessKey"),
            session_token: self.text("SessionToken").filter(|t| !t.is_empty()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Credentials {
    pub fn seeded(emulator: &Emulator, role_arn: &str) -> Self {
        let (access_key_id, secret_access_key, token) =
            emulator.session_for(role_arn).expect("known role");
        Self {
            access_key_id,
            secret_access_key,
            session_token: Some(token),
        }
    }

    pub fn long_term(access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

/// The form body of `params`.
fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON_1_1: &str = "application/x-amz-json-1.1";

async fn post(
    url: &str,
    content_type: &str,
    body: String,
    headers: Vec<(String, String)>,
) -> Answer {
    let mut request = http::Request::post(url).header("content-type", content_type);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// An unsigned call (`AssumeRoleWithWebIdentity`, `AssumeRoleWithSAML`).
pub async fn call(emulator: &Emulator, params: &[(&str, &str)]) -> Answer {
    post(
        &format!("{}/", emulator.url()),
        FORM,
        form(params),
        Vec::new(),
    )
    .await
}

/// How a signed call names its scope.
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

impl Default for Scope<'_> {
    fn default() -> Self {
        Self {
            region: "us-east-1",
            service: "sts",
            time: SystemTime::now(),
        }
    }
}

/// The headers SigV4 adds to a POST of `body` to `url` signed with `credentials`.
pub fn signature(
    url: &str,
    body: &str,
    credentials: &Credentials,
    scope: &Scope<'_>,
) -> Vec<(String, String)> {
    signed_headers(url, body, &[("content-type", FORM)], credentials, scope)
}

/// The headers SigV4 adds to a POST of `body` to `url` that carries `headers` (besides `host`),
/// signed with `credentials` in `scope`.
fn signed_headers(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
    credentials: &Credentials,
    scope: &Scope<'_>,
) -> Vec<(String, String)> {
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            credentials.session_token.clone(),
            None,
            "test",
        )
        .into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(scope.region)
        .name(scope.service)
        .time(scope.time)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut unsigned = vec![("host", host.as_str())];
    unsigned.extend_from_slice(headers);
    let signable = SignableRequest::new(
        "POST",
        url,
        unsigned.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A call signed with `credentials` in `scope`; `tamper` may change the signed headers.
pub async fn signed_call_with(
    emulator: &Emulator,
    params: &[(&str, &str)],
    credentials: &Credentials,
    scope: &Scope<'_>,
    tamper: impl FnOnce(&mut Vec<(String, String)>),
) -> Answer {
    let url = format!("{}/", emulator.url());
    let body = form(params);
    let mut headers = signature(&url, &body, credentials, scope);
    tamper(&mut headers);
    post(&url, FORM, body, headers).await
}

/// A call signed with `credentials` for `us-east-1`.
pub async fn signed_call(
    emulator: &Emulator,
    params: &[(&str, &str)],
    credentials: &Credentials,
) -> Answer {
    signed_call_with(emulator, params, credentials, &Scope::default(), |_| {}).await
}

/// ECR's `GetAuthorizationToken` (JSON 1.1) with `body`, signed with `credentials` in `scope`
/// (service `ecr`); `tamper` may change the signed headers.
pub async fn ecr_call(
    emulator: &Emulator,
    body: &str,
    credentials: &Credentials,
    scope: &Scope<'_>,
    tamper: impl FnOnce(&mut Vec<(String, String)>),
) -> Answer {
    let url = format!("{}/", emulator.url());
    let target = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
    let mut headers = signed_headers(
        &url,
        body,
        &[("content-type", JSON_1_1), ("x-amz-target", target)],
        credentials,
        scope,
    );
    headers.push(("x-amz-target".into(), target.into()));
    tamper(&mut headers);
    post(&url, JSON_1_1, body.to_string(), headers).await
}

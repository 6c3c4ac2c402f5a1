//! Web identity token verification against an OIDC issuer's published keys, as STS does it:
//! discovery document -> JWKS -> signature, then `iss`, `aud`, `exp`/`nbf`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::Mutex;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<bytes::Bytes>,
>;

/// Claims STS looks at.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Why a token was refused; mapped to the STS error codes.
#[derive(Debug, thiserror::Error)]
pub enum TokenRejection {
    #[error("{0}")]
    Invalid(String),
    #[error("Token is expired")]
    Expired,
    #[error("Couldn't retrieve verification key from your identity provider: {0}")]
    Unreachable(String),
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Fetches and caches an issuer's keys; refetches (at most every few seconds) on an unknown `kid`.
pub struct IssuerKeys {
    issuer: String,
    client: HttpsClient,
    cache: Mutex<Option<(JwkSet, Instant)>>,
}

const REFETCH_AFTER: Duration = Duration::from_secs(5);

impl IssuerKeys {
    /// `ca_pem`: extra trust anchors for the issuer's TLS certificate (a test cluster's CA).
    pub fn new(issuer: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<Arc<Self>> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = ca_pem {
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                roots.add(cert?)?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Arc::new(Self {
            issuer: issuer.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            cache: Mutex::new(None),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, TokenRejection> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| TokenRejection::Unreachable(format!("{url}: {e}")))?;
        let fetch = async {
            let resp = self
                .client
                .get(uri)
                .await
                .map_err(|e| TokenRejection::Unreachable(format!("{url}: {e}")))?;
            if !resp.status().is_success() {
                return Err(TokenRejection::Unreachable(format!(
                    "{url}: HTTP {}",
                    resp.status()
                )));
            }
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| TokenRejection::Unreachable(e.to_string()))?
                .to_bytes();
            serde_json::from_slice(&body)
                .map_err(|e| TokenRejection::Unreachable(format!("{url}: {e}")))
        };
        tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .map_err(|_| TokenRejection::Unreachable(format!("{url}: timed out")))?
    }

    async fn fetch(&self) -> Result<JwkSet, TokenRejection> {
        let discovery: Discovery = self
            .get_json(&format!("{}/.well-known/openid-configuration", self.issuer))
            .await?;
        if discovery.issuer.trim_end_matches('/') != self.issuer {
            return Err(TokenRejection::Unreachable(format!(
                "discovery document names issuer {}",
                discovery.issuer
            )));
        }
        self.get_json(&discovery.jwks_uri).await
    }

    async fn keys(&self, kid: Option<&str>) -> Result<JwkSet, TokenRejection> {
        let mut cache = self.cache.lock().await;
        let stale = match &*cache {
            None => true,
            Some((set, fetched)) => {
                let known = kid.is_none_or(|k| set.find(k).is_some());
                !known && fetched.elapsed() > REFETCH_AFTER
            }
        };
        if stale {
            *cache = Some((self.fetch().await?, Instant::now()));
        }
        cache
            .as_ref()
            .map(|(set, _)| set.clone())
            .ok_or_else(|| TokenRejection::Unreachable("no keys".into()))
    }

    /// Verifies `token` and returns its claims. `audiences`: what the role accepts; `now`: the
    /// verifier's clock (tests skew it to simulate clock drift between cluster and STS).
    pub async fn verify(
        &self,
        token: &str,
        audiences: &[String],
        now: i64,
    ) -> Result<Claims, TokenRejection> {
        let header = decode_header(token)
            .map_err(|e| TokenRejection::Invalid(format!("malformed token: {e}")))?;
        // STS finds the provider by the token's own issuer before it fetches any key.
        if let Some(issuer) = unverified_issuer(token)
            && issuer.trim_end_matches('/') != self.issuer
        {
            return Err(TokenRejection::Invalid(format!(
                "No OpenIDConnect provider found in your account for {issuer}"
            )));
        }
        let set = self.keys(header.kid.as_deref()).await?;
        let jwk = match &header.kid {
            Some(kid) => set.find(kid),
            None => set.keys.first(),
        }
        .ok_or_else(|| TokenRejection::Invalid("token signed by an unknown key".into()))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| TokenRejection::Invalid(format!("unusable key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(audiences);
        // Time is checked below against `now`, not the library's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenRejection::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    TokenRejection::Invalid("Incorrect token audience".into())
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    TokenRejection::Invalid("Incorrect token issuer".into())
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    TokenRejection::Invalid("Token signature is invalid".into())
                }
                _ => TokenRejection::Invalid(format!("token rejected: {e}")),
            })?;
        if claims.exp <= now {
            return Err(TokenRejection::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(TokenRejection::Invalid("Token is not yet valid".into()));
        }
        Ok(claims)
    }
}

/// The `iss` claim of `token`, read without checking anything (to pick the provider).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

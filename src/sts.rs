//! The STS edge: `AssumeRoleWithWebIdentity` and `AssumeRole` behind a trait, so the emulator,
//! moto or real AWS can stand behind it, plus the AWS SDK implementation. Credential flows
//! ([`crate::flow`]) decide what to call; this file only speaks to STS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_sts::config::{Credentials, IdentityCache};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use futures::future::BoxFuture;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use crate::retry::RetryClass;
pub use crate::source::LongTermKeys;
use crate::text;

/// One `AssumeRoleWithWebIdentity` call.
#[derive(Debug)]
pub struct AssumeRoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub web_identity_token: SecretString,
    pub duration_seconds: i32,
    pub session_policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub region: String,
    /// `None`: the AWS regional endpoint of `region`.
    pub endpoint: Option<String>,
}

/// One `AssumeRoleWithSAML` call (unsigned: the assertion is the proof).
#[derive(Debug)]
pub struct SamlAssumeRoleRequest {
    pub role_arn: String,
    /// The IAM SAML provider.
    pub principal_arn: String,
    /// The base64 SAML Response.
    pub saml_assertion: SecretString,
    pub duration_seconds: i32,
    pub session_policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub region: String,
    /// `None`: the AWS regional endpoint of `region`.
    pub endpoint: Option<String>,
}

/// One `AssumeRole` call, signed with `credentials` (the previous session's, never anything
/// from the environment).
#[derive(Debug)]
pub struct ChainedAssumeRoleRequest {
    /// The signing credentials. An empty `session_token` means long-term keys (an IAM user's
    /// `AssumeRole`, which is not role chaining).
    pub credentials: IssuedCredentials,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub duration_seconds: i32,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
    pub session_policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub region: String,
    /// `None`: the AWS regional endpoint of `region`.
    pub endpoint: Option<String>,
}

/// One `GetFederationToken` call, signed with an IAM user's long-term keys.
#[derive(Debug)]
pub struct FederationTokenRequest {
    pub keys: LongTermKeys,
    /// The federated user's name (2-32 characters).
    pub name: String,
    pub duration_seconds: i32,
    pub session_policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub region: String,
    /// `None`: the AWS regional endpoint of `region`.
    pub endpoint: Option<String>,
}

/// One `GetSessionToken` call (without MFA), signed with an IAM user's long-term keys.
#[derive(Debug)]
pub struct SessionTokenRequest {
    pub keys: LongTermKeys,
    pub duration_seconds: i32,
    pub region: String,
    /// `None`: the AWS regional endpoint of `region`.
    pub endpoint: Option<String>,
}

/// What STS answered to an `AssumeRole` call.
#[derive(Clone, Debug)]
pub struct AssumedRole {
    pub credentials: IssuedCredentials,
    /// How much of the packed size limit the session policies and tags use, in percent.
    pub packed_policy_size: Option<i32>,
}

/// Temporary credentials; the secret parts are redacted from `Debug`.
#[derive(Clone, Debug)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: SecretString,
    pub expiration: Timestamp,
    pub assumed_role_arn: Option<String>,
    /// How the credentials went through a role chain, if they did.
    pub chain: Option<ChainRecord>,
}

/// What a role chain's hops answered, kept on the Secret (an annotation) and shown in the status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainRecord {
    /// `durationSeconds` when it asked for more than STS grants a chain (the sessions were
    /// shortened to one hour).
    #[serde(
        rename = "clampedFrom",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub clamped_from: Option<i32>,
    pub hops: Vec<HopRecord>,
}

/// What one `AssumeRole` hop answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HopRecord {
    #[serde(rename = "arn", default, skip_serializing_if = "Option::is_none")]
    pub assumed_role_arn: Option<String>,
    #[serde(rename = "exp")]
    pub expiration: Timestamp,
    #[serde(rename = "pps", default, skip_serializing_if = "Option::is_none")]
    pub packed_policy_size: Option<i32>,
}

/// Low-cardinality classes of STS failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StsErrorKind {
    /// The role's trust policy refused the token (`AccessDenied`, `IDPRejectedClaim`).
    AccessDenied,
    /// The token itself was refused (`InvalidIdentityToken`, `ExpiredTokenException`).
    InvalidIdentityToken,
    /// STS refused the parameters (`ValidationError`, `PackedPolicyTooLarge`, `MalformedPolicyDocument`,
    /// `RegionDisabledException`).
    InvalidRequest,
    /// `Throttling`.
    Throttled,
    /// 5xx, `IDPCommunicationError`, timeouts, connection failures, unreadable answers.
    Unavailable,
}

impl StsErrorKind {
    pub fn category(self) -> &'static str {
        match self {
            StsErrorKind::AccessDenied => "StsAccessDenied",
            StsErrorKind::InvalidIdentityToken => "StsInvalidIdentityToken",
            StsErrorKind::InvalidRequest => "StsInvalidRequest",
            StsErrorKind::Throttled => "StsThrottled",
            StsErrorKind::Unavailable => "StsUnavailable",
        }
    }

    pub fn retry_class(self) -> RetryClass {
        match self {
            StsErrorKind::AccessDenied
            | StsErrorKind::InvalidIdentityToken
            | StsErrorKind::InvalidRequest => RetryClass::External,
            StsErrorKind::Throttled | StsErrorKind::Unavailable => RetryClass::Transient,
        }
    }

    /// Maps an AWS error code to its class; unknown codes count as unavailability.
    pub fn from_code(code: &str) -> StsErrorKind {
        match code {
            "AccessDenied" | "AccessDeniedException" | "IDPRejectedClaim" => {
                StsErrorKind::AccessDenied
            }
            "InvalidIdentityToken" | "ExpiredTokenException" | "ExpiredToken" => {
                StsErrorKind::InvalidIdentityToken
            }
            // `InvalidArgument` is Ceph RGW's name for a refused parameter.
            "ValidationError"
            | "PackedPolicyTooLarge"
            | "MalformedPolicyDocument"
            | "RegionDisabledException"
            | "InvalidParameterValue"
            | "InvalidArgument" => StsErrorKind::InvalidRequest,
            // `SlowDown` is how S3-style services (Ceph RGW) throttle.
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "SlowDown" => {
                StsErrorKind::Throttled
            }
            _ => StsErrorKind::Unavailable,
        }
    }
}

/// A failed STS call. The message is bounded and stripped of control characters, because it
/// can come from any endpoint the admin allowed and ends up in status and Events.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("STS {}: {}{}", code.as_deref().unwrap_or("error"), message, hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct StsError {
    pub kind: StsErrorKind,
    pub code: Option<String>,
    pub message: String,
    /// What to fix, when the answer shows a common setup mistake (see `flow::setup_hints`).
    pub hint: Option<String>,
}

impl StsError {
    pub fn new(kind: StsErrorKind, code: Option<&str>, message: &str) -> Self {
        Self {
            kind,
            code: code.map(|c| text::bounded(c, text::MAX_REMOTE_CODE)),
            message: text::remote(message),
            hint: None,
        }
    }

    pub fn with_hint(self, hint: Option<String>) -> Self {
        Self { hint, ..self }
    }
}

/// Something that can exchange a web identity token for role credentials, and role credentials
/// for another role's.
pub trait StsClient: Send + Sync {
    fn assume_role_with_web_identity(
        &self,
        request: AssumeRoleRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>>;

    /// `AssumeRoleWithSAML`. Clients that only exchange tokens refuse.
    fn assume_role_with_saml(
        &self,
        _request: SamlAssumeRoleRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async {
            Err(StsError::new(
                StsErrorKind::InvalidRequest,
                Some("UnsupportedOperation"),
                "this STS client does not call AssumeRoleWithSAML",
            ))
        })
    }

    /// `GetFederationToken` signed with `request.keys`. Clients that only exchange tokens refuse.
    fn get_federation_token(
        &self,
        _request: FederationTokenRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async { Err(unsupported("GetFederationToken")) })
    }

    /// `GetSessionToken` signed with `request.keys`. Clients that only exchange tokens refuse.
    fn get_session_token(
        &self,
        _request: SessionTokenRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async { Err(unsupported("GetSessionToken")) })
    }

    /// `AssumeRole` signed with `request.credentials`. Clients that only exchange tokens refuse.
    fn assume_role(
        &self,
        _request: ChainedAssumeRoleRequest,
    ) -> BoxFuture<'_, Result<AssumedRole, StsError>> {
        Box::pin(async { Err(unsupported("AssumeRole")) })
    }
}

fn unsupported(action: &str) -> StsError {
    StsError::new(
        StsErrorKind::InvalidRequest,
        Some("UnsupportedOperation"),
        &format!("this STS client does not call {action}"),
    )
}

/// SDK credentials that sign one call: long-term keys, never anything from the environment.
fn long_term_signer(keys: &LongTermKeys) -> Credentials {
    Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.expose_secret().to_string(),
        None,
        None,
        "podcreds-credential-source",
    )
}

fn policy_descriptors(arns: &[String]) -> Option<Vec<PolicyDescriptorType>> {
    (!arns.is_empty()).then(|| {
        arns.iter()
            .map(|arn| PolicyDescriptorType::builder().arn(arn).build())
            .collect()
    })
}

/// A per-call override that signs with `signing` alone. Without a cache: the SDK's identity
/// cache keeps one partition per credentials provider forever, and every call brings a new one.
fn signed_by(signing: Credentials) -> aws_sdk_sts::config::Builder {
    aws_sdk_sts::config::Builder::default()
        .credentials_provider(signing)
        .identity_cache(IdentityCache::no_cache())
}

/// Timeouts for every STS call (the SDK has none by default).
#[derive(Clone, Copy, Debug)]
pub struct StsTimeouts {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
}

impl Default for StsTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(25),
        }
    }
}

/// Most SDK clients kept at once (one per region and endpoint in use).
const MAX_CLIENTS: usize = 32;

/// [`StsClient`] backed by `aws-sdk-sts`. One SDK client per (region, endpoint), created lazily,
/// at most [`MAX_CLIENTS`] at once.
pub struct AwsStsClient {
    base: aws_config::SdkConfig,
    clients: Mutex<HashMap<(String, Option<String>), aws_sdk_sts::Client>>,
}

impl AwsStsClient {
    /// Builds the SDK configuration from explicit settings only. Left to its defaults, the SDK
    /// would take an endpoint from `AWS_ENDPOINT_URL(_STS)` or a profile file and a proxy from
    /// `HTTP(S)_PROXY` / `ALL_PROXY`, and so send tokens where the admin's endpoint allowlist
    /// never looked: here nothing comes from the environment or a profile, the endpoint is the
    /// binding's (already allowed) or the AWS regional one, and connections are always direct.
    /// `AssumeRoleWithWebIdentity` is unsigned, so no credentials provider is configured at all.
    pub fn new(timeouts: StsTimeouts) -> Self {
        // This builder sets no proxy (unlike the SDK's default client, which reads the
        // environment's); the e2e test `security::environment_cannot_reroute_sts_traffic` keeps
        // it that way.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_https();
        // An explicit `SdkConfig`, never `aws_config::defaults()` (which reads the environment
        // and profile files): every client starts from exactly these settings.
        let base = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .http_client(http_client)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeouts.connect)
                    .operation_attempt_timeout(timeouts.attempt)
                    .operation_timeout(timeouts.operation)
                    .build(),
            )
            // One SDK retry for a blip; the controller's own backoff handles the rest.
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .build();
        Self {
            base,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Number of SDK clients held.
    pub fn clients_held(&self) -> usize {
        match self.clients.lock() {
            Ok(guard) => guard.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    fn client_for(&self, region: &str, endpoint: Option<&str>) -> aws_sdk_sts::Client {
        let key = (region.to_string(), endpoint.map(str::to_string));
        let mut clients = match self.clients.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !clients.contains_key(&key) && clients.len() >= MAX_CLIENTS {
            // Regions are the binding's choice: keep the map bounded whatever tenants write.
            // Dropping one client costs a reconnection, nothing else.
            if let Some(evicted) = clients.keys().next().cloned() {
                clients.remove(&evicted);
            }
        }
        clients
            .entry(key)
            .or_insert_with(|| {
                let mut conf = aws_sdk_sts::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()));
                if let Some(url) = endpoint {
                    conf = conf.endpoint_url(url);
                }
                aws_sdk_sts::Client::from_conf(conf.build())
            })
            .clone()
    }
}

impl StsClient for AwsStsClient {
    fn assume_role_with_web_identity(
        &self,
        request: AssumeRoleRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async move {
            let client = self.client_for(&request.region, request.endpoint.as_deref());
            let policy_arns = policy_descriptors(&request.policy_arns);
            let output = client
                .assume_role_with_web_identity()
                .role_arn(&request.role_arn)
                .role_session_name(&request.session_name)
                .web_identity_token(request.web_identity_token.expose_secret())
                .duration_seconds(request.duration_seconds)
                .set_policy(request.session_policy.clone())
                .set_policy_arns(policy_arns)
                .send()
                .await
                .map_err(classify_sdk_error)?;
            issued(
                output.credentials(),
                output.assumed_role_user().map(|u| u.arn().to_string()),
            )
        })
    }

    fn assume_role_with_saml(
        &self,
        request: SamlAssumeRoleRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async move {
            let client = self.client_for(&request.region, request.endpoint.as_deref());
            let policy_arns = policy_descriptors(&request.policy_arns);
            let output = client
                .assume_role_with_saml()
                .role_arn(&request.role_arn)
                .principal_arn(&request.principal_arn)
                .saml_assertion(request.saml_assertion.expose_secret())
                .duration_seconds(request.duration_seconds)
                .set_policy(request.session_policy.clone())
                .set_policy_arns(policy_arns)
                .send()
                .await
                .map_err(classify_sdk_error)?;
            issued(
                output.credentials(),
                output.assumed_role_user().map(|u| u.arn().to_string()),
            )
        })
    }

    fn get_federation_token(
        &self,
        request: FederationTokenRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(self.federation_token(request))
    }

    fn get_session_token(
        &self,
        request: SessionTokenRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(self.session_token(request))
    }

    fn assume_role(
        &self,
        request: ChainedAssumeRoleRequest,
    ) -> BoxFuture<'_, Result<AssumedRole, StsError>> {
        Box::pin(async move {
            let client = self.client_for(&request.region, request.endpoint.as_deref());
            let session_token = request.credentials.session_token.expose_secret();
            let signing = Credentials::new(
                request.credentials.access_key_id.clone(),
                request
                    .credentials
                    .secret_access_key
                    .expose_secret()
                    .to_string(),
                // Long-term keys have no session token.
                (!session_token.is_empty()).then(|| session_token.to_string()),
                None,
                "podcreds-role-chain",
            );
            let policy_arns = policy_descriptors(&request.policy_arns);
            let tags = (!request.tags.is_empty())
                .then(|| {
                    request
                        .tags
                        .iter()
                        .map(|(key, value)| Tag::builder().key(key).value(value).build())
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|_| {
                    StsError::new(
                        StsErrorKind::InvalidRequest,
                        Some("ConstructionFailure"),
                        "a session tag could not be built",
                    )
                })?;
            let transitive = (!request.transitive_tag_keys.is_empty())
                .then(|| request.transitive_tag_keys.clone());
            let output = client
                .assume_role()
                .role_arn(&request.role_arn)
                .role_session_name(&request.session_name)
                .duration_seconds(request.duration_seconds)
                .set_external_id(request.external_id.clone())
                .set_source_identity(request.source_identity.clone())
                .set_tags(tags)
                .set_transitive_tag_keys(transitive)
                .set_policy(request.session_policy.clone())
                .set_policy_arns(policy_arns)
                .customize()
                // The previous hop's credentials (or the source's keys) sign this call alone.
                .config_override(signed_by(signing))
                .send()
                .await
                .map_err(classify_sdk_error)?;
            Ok(AssumedRole {
                credentials: issued(
                    output.credentials(),
                    output.assumed_role_user().map(|u| u.arn().to_string()),
                )?,
                packed_policy_size: packed_size(&output),
            })
        })
    }
}

impl AwsStsClient {
    async fn federation_token(
        &self,
        request: FederationTokenRequest,
    ) -> Result<IssuedCredentials, StsError> {
        let client = self.client_for(&request.region, request.endpoint.as_deref());
        let output = client
            .get_federation_token()
            .name(&request.name)
            .duration_seconds(request.duration_seconds)
            .set_policy(request.session_policy.clone())
            .set_policy_arns(policy_descriptors(&request.policy_arns))
            .customize()
            .config_override(signed_by(long_term_signer(&request.keys)))
            .send()
            .await
            .map_err(classify_sdk_error)?;
        issued(
            output.credentials(),
            output.federated_user().map(|u| u.arn().to_string()),
        )
    }

    async fn session_token(
        &self,
        request: SessionTokenRequest,
    ) -> Result<IssuedCredentials, StsError> {
        let client = self.client_for(&request.region, request.endpoint.as_deref());
        let output = client
            .get_session_token()
            .duration_seconds(request.duration_seconds)
            .customize()
            .config_override(signed_by(long_term_signer(&request.keys)))
            .send()
            .await
            .map_err(classify_sdk_error)?;
        issued(output.credentials(), None)
    }
}

/// The credentials of an STS answer, refused when missing, empty or with an unreadable expiration.
fn issued(
    creds: Option<&aws_sdk_sts::types::Credentials>,
    assumed_role_arn: Option<String>,
) -> Result<IssuedCredentials, StsError> {
    let unavailable = |what: &str| StsError::new(StsErrorKind::Unavailable, None, what);
    let creds = creds.ok_or_else(|| unavailable("STS answered without credentials"))?;
    let expiration = Timestamp::from_second(creds.expiration().secs())
        .map_err(|_| unavailable("STS returned an invalid Expiration"))?;
    if creds.access_key_id().is_empty() || creds.secret_access_key().is_empty() {
        return Err(unavailable("STS returned empty credentials"));
    }
    Ok(IssuedCredentials {
        access_key_id: creds.access_key_id().to_string(),
        secret_access_key: SecretString::from(creds.secret_access_key().to_string()),
        session_token: SecretString::from(creds.session_token().to_string()),
        expiration,
        assumed_role_arn,
        chain: None,
    })
}

/// The `PackedPolicySize` percentage of an `AssumeRole` answer. The SDK model marks it deprecated
/// in favour of `SessionTokenUtilization` (also a percentage, of the session token's allowed
/// size); STS services that still send the older field are read first, the newer one otherwise.
fn packed_size(output: &aws_sdk_sts::operation::assume_role::AssumeRoleOutput) -> Option<i32> {
    #[allow(deprecated)]
    let packed = output.packed_policy_size();
    packed.or(output.session_token_utilization())
}

/// Code and message of an S3-style error document (`<Error><Code>..</Code>..</Error>` at the
/// root, as Ceph RGW answers STS calls), which the SDK's parser, expecting AWS's
/// `<ErrorResponse>` wrapper, leaves without a code.
fn s3_style_error(body: &[u8]) -> Option<(String, Option<String>)> {
    // Only the start of the document matters; a remote answer is never read whole.
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let element = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = start + text[start..].find(&format!("</{name}>"))?;
        let value = text[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        (!value.trim().is_empty()).then_some(value)
    };
    let root = text
        .trim_start_matches('\u{feff}')
        .split("?>")
        .last()
        .unwrap_or_default()
        .trim_start();
    if !root.starts_with("<Error>") {
        return None;
    }
    Some((element("Code")?, element("Message")))
}

fn classify_sdk_error<E>(err: SdkError<E, HttpResponse>) -> StsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let meta = service.err();
            let (code, message) = match meta.code() {
                Some(code) => (Some(code.to_string()), meta.message().map(str::to_string)),
                None => match service.raw().body().bytes().and_then(s3_style_error) {
                    Some((code, message)) => (Some(code), message),
                    None => (None, None),
                },
            };
            let kind = code
                .as_deref()
                .map(StsErrorKind::from_code)
                .unwrap_or(StsErrorKind::Unavailable);
            StsError::new(
                kind,
                code.as_deref(),
                message.as_deref().unwrap_or("no message"),
            )
        }
        SdkError::TimeoutError(_) => StsError::new(
            StsErrorKind::Unavailable,
            Some("Timeout"),
            "STS did not answer in time",
        ),
        SdkError::DispatchFailure(d) => {
            let what = if d.is_timeout() {
                "timed out connecting to STS"
            } else if d.is_io() {
                "could not connect to STS"
            } else {
                "could not send the request to STS"
            };
            StsError::new(StsErrorKind::Unavailable, Some("DispatchFailure"), what)
        }
        SdkError::ResponseError(_) => StsError::new(
            StsErrorKind::Unavailable,
            Some("MalformedResponse"),
            "STS sent an answer that could not be read",
        ),
        SdkError::ConstructionFailure(_) => StsError::new(
            StsErrorKind::InvalidRequest,
            Some("ConstructionFailure"),
            "the STS request could not be built",
        ),
        _ => StsError::new(
            StsErrorKind::Unavailable,
            None,
            "unexpected STS client error",
        ),
    }
}

/// Shared handle to whichever STS implementation is in use.
pub type SharedSts = Arc<dyn StsClient>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_classes() {
        for (code, kind) in [
            ("AccessDenied", StsErrorKind::AccessDenied),
            ("IDPRejectedClaim", StsErrorKind::AccessDenied),
            ("InvalidIdentityToken", StsErrorKind::InvalidIdentityToken),
            ("ExpiredTokenException", StsErrorKind::InvalidIdentityToken),
            ("ValidationError", StsErrorKind::InvalidRequest),
            ("Throttling", StsErrorKind::Throttled),
            ("SlowDown", StsErrorKind::Throttled),
            ("InvalidArgument", StsErrorKind::InvalidRequest),
            ("IDPCommunicationError", StsErrorKind::Unavailable),
            ("InternalFailure", StsErrorKind::Unavailable),
        ] {
            assert_eq!(StsErrorKind::from_code(code), kind, "{code}");
        }
        assert_eq!(StsErrorKind::Throttled.retry_class(), RetryClass::Transient);
        assert_eq!(
            StsErrorKind::AccessDenied.retry_class(),
            RetryClass::External
        );
    }

    #[test]
    fn s3_style_error_documents_are_read() {
        let ceph = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message></Message><RequestId>tx1-default</RequestId><HostId>h</HostId></Error>"#;
        assert_eq!(
            s3_style_error(ceph),
            Some(("AccessDenied".to_string(), None))
        );
        let with_message =
            b"<Error><Code>InvalidArgument</Code><Message>a &lt;b&gt; &amp; c</Message></Error>";
        assert_eq!(
            s3_style_error(with_message),
            Some(("InvalidArgument".to_string(), Some("a <b> & c".to_string())))
        );
        // AWS's wrapped documents are the SDK's business; garbage is nobody's.
        let aws = b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>";
        assert_eq!(s3_style_error(aws), None);
        assert_eq!(s3_style_error(b"<Error><Code></Code></Error>"), None);
        assert_eq!(s3_style_error(b"\xff\xfe<html>"), None);
        assert_eq!(s3_style_error(b"<Error><Code>unterminated"), None);
    }

    #[test]
    fn remote_messages_are_bounded_and_cleaned() {
        let e = StsError::new(
            StsErrorKind::Unavailable,
            Some("X"),
            &format!("a\nb\u{7}{}", "z".repeat(1000)),
        );
        assert!(e.message.chars().count() <= text::MAX_REMOTE_MESSAGE + 1);
        assert!(!e.message.contains('\n'));
        assert!(e.message.starts_with("a b "));
    }

    #[test]
    fn credentials_are_redacted_in_debug() {
        let creds = IssuedCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: SecretString::from("very-secret-key".to_string()),
            session_token: SecretString::from("very-secret-token".to_string()),
            expiration: Timestamp::now(),
            assumed_role_arn: None,
            chain: None,
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("very-secret-key"));
        assert!(!shown.contains("very-secret-token"));
        let req = AssumeRoleRequest {
            role_arn: "arn".into(),
            session_name: "s".into(),
            web_identity_token: SecretString::from("eyJ-token".to_string()),
            duration_seconds: 900,
            session_policy: None,
            policy_arns: vec![],
            region: "us-east-1".into(),
            endpoint: None,
        };
        assert!(!format!("{req:?}").contains("eyJ-token"));
        let saml = SamlAssumeRoleRequest {
            role_arn: "arn".into(),
            principal_arn: "provider".into(),
            saml_assertion: SecretString::from("PHNhbWxwOlJlc3BvbnNl".to_string()),
            duration_seconds: 900,
            session_policy: None,
            policy_arns: vec![],
            region: "us-east-1".into(),
            endpoint: None,
        };
        assert!(!format!("{saml:?}").contains("PHNhbWxw"));
    }

    #[tokio::test]
    async fn the_client_cache_stays_bounded_whatever_regions_bindings_name() {
        let sts = AwsStsClient::new(StsTimeouts::default());
        for i in 0..(MAX_CLIENTS * 3) {
            sts.client_for(&format!("xx-test-{i}"), None);
        }
        assert_eq!(sts.clients_held(), MAX_CLIENTS);
        // A client in use is reused, not duplicated.
        sts.client_for("xx-test-1000", Some("http://127.0.0.1:1"));
        sts.client_for("xx-test-1000", Some("http://127.0.0.1:1"));
        assert_eq!(sts.clients_held(), MAX_CLIENTS);
    }

    /// The SDK path of `AssumeRole` against the emulator, which verifies the SigV4 signature
    /// made with the explicit credentials and enforces the chain rules.
    #[tokio::test]
    async fn assume_role_is_signed_with_the_previous_credentials() {
        use sts_emulator::{Config, Dialect, Emulator, Role};
        let entry = "arn:aws:iam::123456789012:role/entry";
        let tagged = "arn:aws:iam::123456789012:role/tagged";
        let untagged = "arn:aws:iam::123456789012:role/untagged";
        let emulator = Emulator::start(Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            issuer: "https://127.0.0.1:1".into(),
            issuer_ca_pem: None,
            roles: vec![
                Role {
                    arn: entry.into(),
                    ..Role::default()
                },
                Role {
                    arn: tagged.into(),
                    trusted_roles: vec![entry.into()],
                    external_id: Some("ext-1".into()),
                    allow_tag_session: true,
                    allow_set_source_identity: true,
                    ..Role::default()
                },
                Role {
                    arn: untagged.into(),
                    trusted_roles: vec![entry.into()],
                    ..Role::default()
                },
            ],
            dialect: Dialect::Aws,
            regions: vec!["us-east-1".into()],
        })
        .await
        .expect("emulator");
        let seeded = || {
            let (key, secret, token) = emulator.session_for(entry).expect("known role");
            IssuedCredentials {
                access_key_id: key,
                secret_access_key: SecretString::from(secret),
                session_token: SecretString::from(token),
                expiration: Timestamp::now(),
                assumed_role_arn: None,
                chain: None,
            }
        };
        let request = |credentials, role_arn: &str| ChainedAssumeRoleRequest {
            credentials,
            role_arn: role_arn.into(),
            session_name: "ns.b".into(),
            external_id: Some("ext-1".into()),
            duration_seconds: 3600,
            tags: vec![("team".into(), "a b".into()), ("stage".into(), "x".into())],
            transitive_tag_keys: vec!["team".into()],
            source_identity: Some("alice".into()),
            session_policy: Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into()),
            policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
            region: "us-east-1".into(),
            endpoint: Some(emulator.url()),
        };
        let sts = AwsStsClient::new(StsTimeouts::default());
        let assumed = sts
            .assume_role(request(seeded(), tagged))
            .await
            .expect("assumed");
        assert_eq!(
            assumed.credentials.assumed_role_arn.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/tagged/ns.b")
        );
        assert!(
            assumed
                .packed_policy_size
                .is_some_and(|p| p > 0 && p <= 100)
        );
        let call = emulator
            .calls()
            .calls
            .into_iter()
            .find(|c| c.action == "AssumeRole")
            .expect("logged");
        assert_eq!(call.result, "Ok");
        assert_eq!(call.source_identity.as_deref(), Some("alice"));
        assert_eq!(call.external_id.as_deref(), Some("ext-1"));
        assert_eq!(call.transitive_tag_keys, ["team"]);
        assert_eq!(
            call.tags
                .iter()
                .map(|t| (t.key.as_str(), t.value.as_str()))
                .collect::<Vec<_>>(),
            [("team", "a b"), ("stage", "x")]
        );
        // A role whose trust policy lacks sts:TagSession refuses a tagged session.
        let denied = sts
            .assume_role(request(seeded(), untagged))
            .await
            .expect_err("no TagSession");
        assert_eq!(denied.kind, StsErrorKind::AccessDenied);
        assert!(denied.message.contains("sts:TagSession"), "{denied}");
        // Credentials STS never issued are refused: the signature is really checked.
        let mut forged = seeded();
        forged.secret_access_key = SecretString::from("not-the-secret".to_string());
        let refused = sts
            .assume_role(request(forged, tagged))
            .await
            .expect_err("forged");
        assert_eq!(refused.code.as_deref(), Some("SignatureDoesNotMatch"));
        emulator.shutdown();
    }
}

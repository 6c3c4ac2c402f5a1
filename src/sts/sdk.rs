//! [`StsClient`] backed by `aws-sdk-sts`, configured from the operator's flags alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_sts::config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_sts::config::{Credentials, IdentityCache};
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use futures::future::BoxFuture;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::proxy::StsProxy;
use super::sdk_error::classify_sdk_error;
use super::{
    AssumeRoleRequest, AssumedRole, FederationTokenRequest, RolesAnywhereClient,
    RolesAnywhereRequest, SamlRequest, SessionTokenRequest, StsClient, StsError, StsErrorKind,
    StsTarget, WebIdentityRequest,
};
use crate::credentials::{IssuedCredentials, LongTermKeys, Signer};

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

/// SDK credentials for what signs an `AssumeRole`: a session's (with its token) or long-term keys.
fn sdk_credentials(signer: &Signer) -> Credentials {
    match signer {
        Signer::LongTerm(keys) => long_term_signer(keys),
        Signer::Session(session) => Credentials::new(
            session.access_key_id.clone(),
            session.secret_access_key.expose_secret().to_string(),
            Some(session.session_token.expose_secret().to_string()),
            None,
            "podcreds-role-chain",
        ),
    }
}

/// Session tags as the SDK takes them.
fn sdk_tags(tags: &[(String, String)]) -> Result<Option<Vec<Tag>>, StsError> {
    (!tags.is_empty())
        .then(|| {
            tags.iter()
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
        })
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

/// The HTTP client every SDK client shares: rustls with aws-lc, the system's roots, and the
/// admin's proxy for HTTPS endpoints or none. Built as the SDK builds its own default client,
/// except that the proxy is the one given, never `ProxyConfig::from_env()`.
fn http_client(proxy: Option<&StsProxy>) -> aws_sdk_sts::config::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let proxy = proxy.map_or_else(ProxyConfig::disabled, StsProxy::sdk_config);
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(proxy.clone()));
        connector.build()
    })
}

/// [`StsClient`] backed by `aws-sdk-sts`. One SDK client per (region, endpoint), created lazily,
/// at most [`MAX_CLIENTS`] at once.
pub struct AwsStsClient {
    base: aws_config::SdkConfig,
    clients: Mutex<HashMap<(String, Option<String>), aws_sdk_sts::Client>>,
    roles_anywhere: RolesAnywhereClient,
    /// The admin's proxy, to name it when a call through it fails.
    proxy: Option<StsProxy>,
}

impl AwsStsClient {
    /// Builds the SDK configuration from explicit settings only. Left to its defaults, the SDK
    /// would take an endpoint from `AWS_ENDPOINT_URL(_STS)` or a profile file and a proxy from
    /// `HTTP(S)_PROXY` / `ALL_PROXY`, and so send tokens where the admin's endpoint allowlist
    /// never looked: here nothing comes from the environment or a profile, the endpoint is the
    /// binding's (already allowed) or the AWS regional one, and connections are direct or go
    /// through the admin's proxy (`--sts-proxy`), never one from the environment.
    /// `AssumeRoleWithWebIdentity` is unsigned, so no credentials provider is configured at all.
    pub fn new(timeouts: StsTimeouts, proxy: Option<&StsProxy>) -> Self {
        // The e2e tests `security::environment_cannot_reroute_sts_traffic` and
        // `network::sts_calls_go_through_the_admins_proxy` keep it that way.
        let http_client = http_client(proxy);
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
            roles_anywhere: RolesAnywhereClient::new(timeouts, proxy),
            proxy: proxy.cloned(),
        }
    }

    /// How a call to `target` failed, naming the admin's proxy when the call went through it
    /// and could not get an answer: a refused or unreachable proxy looks like an endpoint down.
    fn failed(&self, target: &StsTarget) -> impl FnOnce(StsError) -> StsError + '_ {
        let through = self.proxy.as_ref().filter(|proxy| {
            let endpoint = target.endpoint.clone().unwrap_or_else(|| {
                format!("https://sts.{}.amazonaws.com", target.signing_region())
            });
            proxy.proxies(&endpoint)
        });
        move |error| match through {
            Some(proxy) if error.endpoint_failed => {
                let mut error = error;
                error.message = format!("{} (through the proxy {})", error.message, proxy.shown());
                error
            }
            _ => error,
        }
    }

    /// Number of SDK clients held.
    pub fn clients_held(&self) -> usize {
        match self.clients.lock() {
            Ok(guard) => guard.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    fn client_for(&self, target: &StsTarget) -> aws_sdk_sts::Client {
        let (region, endpoint) = (target.signing_region(), target.endpoint.as_deref());
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
    fn create_session(
        &self,
        request: RolesAnywhereRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(self.roles_anywhere.create_session(request))
    }

    fn assume_role_with_web_identity(
        &self,
        request: WebIdentityRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async move {
            let client = self.client_for(&request.target);
            let scope = &request.scope;
            let output = client
                .assume_role_with_web_identity()
                .role_arn(&request.role_arn)
                .role_session_name(&request.session_name)
                .web_identity_token(request.web_identity_token.expose_secret())
                .duration_seconds(scope.duration_seconds)
                .set_policy(scope.policy.clone())
                .set_policy_arns(policy_descriptors(&scope.policy_arns))
                .send()
                .await
                .map_err(classify_sdk_error)
                .map_err(self.failed(&request.target))?;
            issued(
                output.credentials(),
                output.assumed_role_user().map(|u| u.arn().to_string()),
            )
        })
    }

    fn assume_role_with_saml(
        &self,
        request: SamlRequest,
    ) -> BoxFuture<'_, Result<IssuedCredentials, StsError>> {
        Box::pin(async move {
            let client = self.client_for(&request.target);
            let scope = &request.scope;
            let output = client
                .assume_role_with_saml()
                .role_arn(&request.role_arn)
                .principal_arn(&request.principal_arn)
                .saml_assertion(request.saml_assertion.expose_secret())
                .duration_seconds(scope.duration_seconds)
                .set_policy(scope.policy.clone())
                .set_policy_arns(policy_descriptors(&scope.policy_arns))
                .send()
                .await
                .map_err(classify_sdk_error)
                .map_err(self.failed(&request.target))?;
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
        request: AssumeRoleRequest,
    ) -> BoxFuture<'_, Result<AssumedRole, StsError>> {
        Box::pin(async move {
            let client = self.client_for(&request.target);
            let scope = &request.scope;
            let transitive = (!request.transitive_tag_keys.is_empty())
                .then(|| request.transitive_tag_keys.clone());
            let output = client
                .assume_role()
                .role_arn(&request.role_arn)
                .role_session_name(&request.session_name)
                .duration_seconds(scope.duration_seconds)
                .set_external_id(request.external_id.clone())
                .set_source_identity(request.source_identity.clone())
                .set_tags(sdk_tags(&request.tags)?)
                .set_transitive_tag_keys(transitive)
                .set_policy(scope.policy.clone())
                .set_policy_arns(policy_descriptors(&scope.policy_arns))
                .customize()
                // The previous hop's credentials (or the source's keys) sign this call alone.
                .config_override(signed_by(sdk_credentials(&request.signer)))
                .send()
                .await
                .map_err(classify_sdk_error)
                .map_err(self.failed(&request.target))?;
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
        let client = self.client_for(&request.target);
        let scope = &request.scope;
        let output = client
            .get_federation_token()
            .name(&request.name)
            .duration_seconds(scope.duration_seconds)
            .set_tags(sdk_tags(&request.tags)?)
            .set_policy(scope.policy.clone())
            .set_policy_arns(policy_descriptors(&scope.policy_arns))
            .customize()
            .config_override(signed_by(long_term_signer(&request.keys)))
            .send()
            .await
            .map_err(classify_sdk_error)
            .map_err(self.failed(&request.target))?;
        issued(
            output.credentials(),
            output.federated_user().map(|u| u.arn().to_string()),
        )
    }

    async fn session_token(
        &self,
        request: SessionTokenRequest,
    ) -> Result<IssuedCredentials, StsError> {
        let client = self.client_for(&request.target);
        let output = client
            .get_session_token()
            .duration_seconds(request.duration_seconds)
            .customize()
            .config_override(signed_by(long_term_signer(&request.keys)))
            .send()
            .await
            .map_err(classify_sdk_error)
            .map_err(self.failed(&request.target))?;
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
        sts_endpoint: None,
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

#[cfg(test)]
mod tests;

//! The SAML flow: podcreds as the identity provider. A TokenRequest proves the ServiceAccount
//! exists and that the operator may act for it (the same guard and RBAC as web identity; the
//! token goes nowhere), then a fresh assertion about that ServiceAccount, signed with the key
//! from the operator's key Secret, is exchanged with STS `AssumeRoleWithSAML`.

use std::sync::Arc;

use futures::future::BoxFuture;
use jiff::Timestamp;

use super::timed_sts_call;
use super::token::timed_request_token;
use super::{ExchangeRequest, FirstExchange, FlowError};
use crate::metrics::Metrics;
use crate::retry::RetryClass;
use crate::saml::SamlSettings;
use crate::saml::assertion::{AssertionClaims, encoded_response, subject};
use crate::saml::key::KeyError;
use crate::saml::store::{KeyCache, KeySecret, StoreError};
use crate::sts::{IssuedCredentials, SamlAssumeRoleRequest, SharedSts, StsErrorKind};
use crate::throttle::Throttle;

/// Why a SAML exchange failed before or instead of an ordinary STS error.
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error(
        "SAML is not enabled: ask the cluster admin to run the operator with --saml-enabled (chart value saml.enabled)"
    )]
    NotConfigured,
    #[error("the binding has no spec.saml")]
    NotRequested,
    #[error("spec.roleArn is required with spec.saml")]
    NoRole,
    #[error(transparent)]
    Key(#[from] StoreError),
    #[error("the SAML assertion could not be signed: {0}")]
    Sign(#[from] KeyError),
    /// STS refused a freshly signed assertion: IAM does not know the signing certificate or the
    /// issuer, which is what an out-of-date metadata document looks like.
    #[error(
        "SAML provider metadata out of date: re-upload `podcreds saml-metadata` to {provider_arn} (STS {code}: {message})"
    )]
    Rejected {
        provider_arn: String,
        code: String,
        message: String,
    },
}

impl SamlError {
    pub fn category(&self) -> &'static str {
        match self {
            SamlError::NotConfigured | SamlError::NotRequested => "SamlNotConfigured",
            SamlError::NoRole => "InvalidSpec",
            SamlError::Key(_) | SamlError::Sign(_) => "SamlKeyUnavailable",
            SamlError::Rejected { .. } => "SamlAssertionRejected",
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            SamlError::NotConfigured
            | SamlError::NotRequested
            | SamlError::NoRole
            | SamlError::Rejected { .. } => RetryClass::External,
            SamlError::Key(_) | SamlError::Sign(_) => RetryClass::Transient,
        }
    }
}

pub struct Saml {
    pub client: kube::Client,
    pub sts: SharedSts,
    pub throttle: Arc<Throttle>,
    pub metrics: Metrics,
    /// Lifetime requested for the ServiceAccount tokens that prove the account may be used.
    pub token_expiration_seconds: i64,
    pub settings: SamlSettings,
    /// `None` when the operator has no namespace for its key Secret.
    pub keys: Option<KeyCache>,
}

impl Saml {
    pub const NAME: &'static str = "SAML";

    pub fn new(
        client: kube::Client,
        sts: SharedSts,
        throttle: Arc<Throttle>,
        metrics: Metrics,
        token_expiration_seconds: i64,
        settings: SamlSettings,
    ) -> Self {
        let keys = settings
            .key_namespace
            .as_deref()
            .map(|ns| KeyCache::new(KeySecret::new(client.clone(), ns, &settings.key_secret)));
        Self {
            client,
            sts,
            throttle,
            metrics,
            token_expiration_seconds,
            settings,
            keys,
        }
    }

    async fn exchange(
        &self,
        request: ExchangeRequest<'_>,
        duration_seconds: i32,
        flow: &'static str,
    ) -> Result<IssuedCredentials, FlowError> {
        let spec = request.spec;
        let saml = spec.saml.as_ref().ok_or(SamlError::NotRequested)?;
        let role_arn = spec.role_arn.as_deref().ok_or(SamlError::NoRole)?;
        let keys = self.keys.as_ref().ok_or(SamlError::NotConfigured)?;

        let proof = timed_request_token(
            &self.client,
            &self.throttle,
            &self.metrics,
            request,
            self.token_expiration_seconds,
        )
        .await;
        // Only the permission matters: the token itself is dropped unused.
        drop(proof?);

        let ring = keys.current().await.map_err(SamlError::from)?;
        let subject = subject(request.namespace, &spec.service_account_name);
        let claims = AssertionClaims {
            issuer: &self.settings.entity_id,
            subject: &subject,
            role_arn,
            provider_arn: &saml.provider_arn,
            session_name: &spec.session_name,
            session_duration_seconds: duration_seconds,
            source_identity: saml.source_identity.as_deref(),
            tags: &saml.tags,
            transitive_tag_keys: &saml.transitive_tag_keys,
        };
        let assertion =
            encoded_response(&claims, &ring.active, Timestamp::now()).map_err(SamlError::from)?;

        let result = timed_sts_call(&self.throttle, &self.metrics, flow, async {
            self.sts
                .assume_role_with_saml(SamlAssumeRoleRequest {
                    role_arn: role_arn.to_string(),
                    principal_arn: saml.provider_arn.clone(),
                    saml_assertion: assertion,
                    duration_seconds,
                    session_policy: spec.session_policy.clone(),
                    policy_arns: spec.policy_arns.clone(),
                    region: spec.region.clone(),
                    endpoint: spec.endpoint.clone(),
                })
                .await
        })
        .await;
        result.map_err(|e| match (e.kind, e.code.as_deref()) {
            // A fresh assertion cannot have expired; one STS cannot verify was signed with a
            // key, or by an issuer, IAM's copy of the metadata does not name.
            (StsErrorKind::InvalidIdentityToken, Some("InvalidIdentityToken")) => {
                FlowError::Saml(SamlError::Rejected {
                    provider_arn: saml.provider_arn.clone(),
                    code: "InvalidIdentityToken".into(),
                    message: e.message,
                })
            }
            _ => FlowError::Sts(e),
        })
    }
}

impl FirstExchange for Saml {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn exchange_for<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        Box::pin(self.exchange(request, duration_seconds, flow))
    }
}

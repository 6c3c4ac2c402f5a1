//! The SAML flow: podcreds as the identity provider. A TokenRequest proves the ServiceAccount
//! exists and that the operator may act for it (the same guard and RBAC as web identity; the
//! token goes nowhere), then a fresh assertion about that ServiceAccount, signed with the key
//! from the operator's key Secret, is exchanged with STS `AssumeRoleWithSAML`.

use std::sync::Arc;

use futures::future::BoxFuture;
use jiff::Timestamp;

use super::deps::{FlowDeps, scope};
use super::error::{FlowError, SamlError};
use super::seam::{ExchangeRequest, FirstExchangeFlow};
use super::setup_hints;
use crate::credentials::IssuedCredentials;
use crate::keyring::{self, KeyCache, KeySecret};
use crate::saml::SamlSettings;
use crate::saml::assertion::{AssertionClaims, encoded_response, subject};
use crate::spec::ResolvedSaml;
use crate::sts::{SamlRequest, StsErrorKind};

pub struct Saml {
    pub deps: Arc<FlowDeps>,
    pub settings: SamlSettings,
    /// `None` when the operator has no namespace for its key Secret.
    pub keys: Option<KeyCache>,
}

impl Saml {
    pub fn new(deps: Arc<FlowDeps>, settings: SamlSettings) -> Self {
        let keys = settings.key_namespace.as_deref().map(|ns| {
            KeyCache::new(KeySecret::new(
                deps.client.clone(),
                ns,
                &settings.key_secret,
                &keyring::SAML,
            ))
        });
        Self {
            deps,
            settings,
            keys,
        }
    }

    async fn run(
        &self,
        request: ExchangeRequest<'_>,
        saml: &ResolvedSaml,
        duration_seconds: i32,
        flow: &'static str,
    ) -> Result<IssuedCredentials, FlowError> {
        let spec = request.spec;
        let keys = self.keys.as_ref().ok_or(SamlError::NotConfigured)?;
        self.deps.prove_account(request).await?;

        let ring = keys.current().await.map_err(SamlError::from)?;
        let subject = subject(request.namespace, &spec.service_account_name);
        let claims = AssertionClaims {
            issuer: &self.settings.entity_id,
            subject: &subject,
            role_arn: &saml.role_arn,
            provider_arn: &saml.provider_arn,
            session_name: &spec.session_name,
            session_duration_seconds: duration_seconds,
            source_identity: saml.source_identity.as_deref(),
            tags: &saml.tags,
            transitive_tag_keys: &saml.transitive_tag_keys,
        };
        let assertion =
            encoded_response(&claims, &ring.active, Timestamp::now()).map_err(SamlError::from)?;

        let result = self
            .deps
            .sts_exchange(flow, spec, |target| {
                self.deps.sts.assume_role_with_saml(SamlRequest {
                    role_arn: saml.role_arn.clone(),
                    principal_arn: saml.provider_arn.clone(),
                    saml_assertion: assertion.clone(),
                    scope: scope(spec, duration_seconds),
                    target,
                })
            })
            .await;
        result
            .map(|served| served.credentials())
            .map_err(|e| match (e.kind, e.code.as_deref()) {
                // A fresh assertion cannot have expired; one STS cannot verify was signed with a
                // key, or by an issuer, IAM's copy of the metadata does not name.
                (StsErrorKind::InvalidIdentityToken, Some("InvalidIdentityToken")) => {
                    FlowError::Saml(SamlError::Rejected {
                        provider_arn: saml.provider_arn.clone(),
                        code: "InvalidIdentityToken".into(),
                        message: e.message,
                    })
                }
                _ => {
                    let hint = setup_hints::for_role(&e, &saml.role_arn, duration_seconds);
                    FlowError::Sts(e.with_hint(hint))
                }
            })
    }
}

impl FirstExchangeFlow for Saml {
    type Spec = ResolvedSaml;

    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        saml: &'a ResolvedSaml,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        Box::pin(self.run(request, saml, duration_seconds, flow))
    }
}

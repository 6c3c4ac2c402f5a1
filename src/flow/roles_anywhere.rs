//! The Roles Anywhere flow: podcreds as the workload CA. A TokenRequest proves the ServiceAccount
//! exists and that the operator may act for it (the same guard and RBAC as web identity; the
//! token goes nowhere), then a leaf certificate naming that ServiceAccount, issued for this one
//! exchange from the CA key in the operator's key Secret (or the admin's certificate from a
//! Secret of the binding's namespace), signs Roles Anywhere `CreateSession`.

use std::sync::Arc;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::deps::FlowDeps;
use super::error::{FlowError, RolesAnywhereError};
use super::seam::{ExchangeRequest, FirstExchangeFlow};
use super::setup_hints;
use crate::credentials::IssuedCredentials;
use crate::keyring::{self, KeyCache, KeySecret};
use crate::rolesanywhere::{
    RolesAnywhereSettings, WorkloadCertificate, WorkloadSubject, admin_certificate, issue_leaf,
};
use crate::spec::ResolvedRolesAnywhere;
use crate::sts::{RolesAnywhereRequest, StsErrorKind};

/// How long a leaf is valid: it signs one request at once, so a quarter of an hour covers any
/// clock skew and retry without outliving its purpose (its key is dropped after the call).
const LEAF_LIFETIME_SECONDS: i64 = 900;

pub struct RolesAnywhere {
    pub deps: Arc<FlowDeps>,
    pub settings: RolesAnywhereSettings,
    /// `None` when podcreds is not a CA here (no `--rolesanywhere-enabled`).
    pub ca: Option<KeyCache>,
}

impl RolesAnywhere {
    pub fn new(deps: Arc<FlowDeps>, settings: RolesAnywhereSettings) -> Self {
        let ca = settings.ca_namespace.as_deref().map(|ns| {
            KeyCache::new(KeySecret::new(
                deps.client.clone(),
                ns,
                &settings.ca_secret,
                &keyring::ROLES_ANYWHERE_CA,
            ))
        });
        Self { deps, settings, ca }
    }

    /// The certificate to sign with: a new leaf from podcreds' CA, or the admin's.
    async fn certificate(
        &self,
        request: ExchangeRequest<'_>,
        ra: &ResolvedRolesAnywhere,
    ) -> Result<(WorkloadCertificate, Option<String>), RolesAnywhereError> {
        let now = Timestamp::now();
        if let Some(name) = &ra.certificate_secret_name {
            let secrets: Api<Secret> = Api::namespaced(self.deps.client.clone(), request.namespace);
            self.deps.throttle.kube().await;
            let secret = secrets
                .get_opt(name)
                .await
                .map_err(|e| RolesAnywhereError::SecretUnreadable {
                    name: name.clone(),
                    reason: crate::text::remote(&e.to_string()),
                })?
                .ok_or_else(|| RolesAnywhereError::SecretNotFound(name.clone()))?;
            let field = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| v.0.clone())
            };
            let cert = admin_certificate(
                name,
                field("tls.crt").as_deref(),
                field("tls.key").as_deref(),
                now,
            )?;
            return Ok((cert, None));
        }
        let ca = self.ca.as_ref().ok_or(RolesAnywhereError::NotConfigured)?;
        let ring = ca.current().await?;
        let subject = WorkloadSubject::of(
            request.namespace,
            &request.spec.service_account_name,
            &self.settings.trust_domain,
        );
        let cert = issue_leaf(&ring.active, &subject, now, LEAF_LIFETIME_SECONDS)?;
        Ok((cert, Some(ring.active.fingerprint())))
    }

    async fn run(
        &self,
        request: ExchangeRequest<'_>,
        ra: &ResolvedRolesAnywhere,
        duration_seconds: i32,
        flow: &'static str,
    ) -> Result<IssuedCredentials, FlowError> {
        if ra.certificate_secret_name.is_none() && self.ca.is_none() {
            return Err(RolesAnywhereError::NotConfigured.into());
        }
        self.deps.prove_account(request).await?;
        let (certificate, ca_fingerprint) = self.certificate(request, ra).await?;
        let result = self
            .deps
            .sts_call(
                flow,
                self.deps.sts.create_session(RolesAnywhereRequest {
                    certificate,
                    trust_anchor_arn: ra.trust_anchor_arn.clone(),
                    profile_arn: ra.profile_arn.clone(),
                    role_arn: ra.role_arn.clone(),
                    duration_seconds,
                    region: ra.region.clone(),
                    endpoint: ra.endpoint.clone(),
                }),
            )
            .await;
        let result = result.map(|credentials| IssuedCredentials {
            // Roles Anywhere has one endpoint (the operator's, or AWS's in the trust anchor's
            // region): no fail-over list.
            sts_endpoint: ra.endpoint.clone(),
            ..credentials
        });
        result.map_err(|e| {
            if e.kind == StsErrorKind::AccessDenied
                && let Some(hint) =
                    setup_hints::roles_anywhere_certificate(&e, ra, ca_fingerprint.as_deref())
            {
                return FlowError::RolesAnywhere(RolesAnywhereError::Rejected {
                    code: e.code.clone().unwrap_or_default(),
                    message: e.message.clone(),
                    hint,
                });
            }
            let hint = setup_hints::for_role(&e, &ra.role_arn, duration_seconds)
                .or_else(|| setup_hints::roles_anywhere_trust(&e, &request, ra));
            FlowError::Sts(e.with_hint(hint))
        })
    }
}

impl FirstExchangeFlow for RolesAnywhere {
    type Spec = ResolvedRolesAnywhere;

    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        ra: &'a ResolvedRolesAnywhere,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        Box::pin(self.run(request, ra, duration_seconds, flow))
    }
}

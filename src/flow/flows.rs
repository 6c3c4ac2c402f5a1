//! Every flow the operator runs, and the one place that chooses between them: an exhaustive
//! match on the binding's resolved first exchange, so a new kind of exchange cannot be
//! forgotten here.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::credential_source::CredentialSource;
use super::deps::FlowDeps;
use super::error::FlowError;
use super::role_chain::RoleChain;
use super::roles_anywhere::RolesAnywhere;
use super::saml::Saml;
use super::seam::{CredentialFlow, ExchangeRequest, FirstExchangeFlow};
use super::web_identity::WebIdentity;
use crate::credentials::IssuedCredentials;
use crate::rolesanywhere::RolesAnywhereSettings;
use crate::saml::SamlSettings;
use crate::source::Sources;
use crate::spec::FirstExchange;

pub struct Flows {
    web_identity: WebIdentity,
    saml: Saml,
    roles_anywhere: RolesAnywhere,
    credential_source: CredentialSource,
    role_chain: RoleChain,
}

impl Flows {
    /// Built by the composition root (`operator.rs`); the controller only sees
    /// [`CredentialFlow`].
    pub fn new(
        deps: FlowDeps,
        sources: Sources,
        saml: SamlSettings,
        roles_anywhere: RolesAnywhereSettings,
    ) -> Self {
        let deps = Arc::new(deps);
        Self {
            web_identity: WebIdentity { deps: deps.clone() },
            saml: Saml::new(deps.clone(), saml),
            roles_anywhere: RolesAnywhere::new(deps.clone(), roles_anywhere),
            credential_source: CredentialSource {
                deps: deps.clone(),
                sources,
            },
            role_chain: RoleChain { deps },
        }
    }

    /// The binding's first exchange, for credentials lasting `duration_seconds`, observed under
    /// the metric label `flow`.
    fn first_exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
        duration_seconds: i32,
        flow: &'static str,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        match &request.spec.first {
            FirstExchange::WebIdentity { role_arn } => {
                self.web_identity
                    .exchange(request, role_arn, duration_seconds, flow)
            }
            FirstExchange::Saml(saml) => self.saml.exchange(request, saml, duration_seconds, flow),
            FirstExchange::RolesAnywhere(ra) => {
                self.roles_anywhere
                    .exchange(request, ra, duration_seconds, flow)
            }
            FirstExchange::CredentialSource(source) => {
                self.credential_source
                    .exchange(request, source, duration_seconds, flow)
            }
        }
    }
}

impl CredentialFlow for Flows {
    fn exchange<'a>(
        &'a self,
        request: ExchangeRequest<'a>,
    ) -> BoxFuture<'a, Result<IssuedCredentials, FlowError>> {
        let spec = request.spec;
        if spec.role_chain.is_empty() {
            return self.first_exchange(request, spec.first_exchange_seconds(), spec.first.name());
        }
        Box::pin(async move {
            let first = self
                .first_exchange(request, spec.first_exchange_seconds(), RoleChain::NAME)
                .await?;
            Ok(self.role_chain.hops_after(request, first).await?)
        })
    }
}

//! Operator settings that shape reconciliation, as [`crate::cli`] reads them from flags.

use std::time::Duration;

use secrecy::SecretString;

use crate::rolesanywhere::RolesAnywhereSettings;
use crate::saml::SamlSettings;
use crate::spec::StsPolicy;
use crate::sts::{ProxyError, StsProxy};

/// How STS and Roles Anywhere are reached: the admin's proxy, and how long an endpoint that
/// failed is tried last.
#[derive(Clone, Debug)]
pub struct StsNetwork {
    /// `--sts-proxy`, as given (it may hold credentials: a secret, never shown).
    pub proxy: Option<SecretString>,
    /// `--sts-no-proxy`.
    pub no_proxy: Vec<String>,
    /// `--sts-endpoint-cooldown`.
    pub endpoint_cooldown: Duration,
}

impl StsNetwork {
    /// The proxy, checked; `None` without one.
    pub fn proxy(&self) -> Result<Option<StsProxy>, ProxyError> {
        self.proxy
            .as_ref()
            .map(|url| StsProxy::parse(url, &self.no_proxy))
            .transpose()
    }
}

impl Default for StsNetwork {
    fn default() -> Self {
        Self {
            proxy: None,
            no_proxy: Vec::new(),
            endpoint_cooldown: crate::failover::DEFAULT_COOLDOWN,
        }
    }
}

/// Operator settings that shape reconciliation.
#[derive(Clone, Debug)]
pub struct Settings {
    pub sts_policy: StsPolicy,
    /// The proxy and the endpoint cool-down.
    pub sts_network: StsNetwork,
    /// Lifetime requested for ServiceAccount tokens (the apiserver's minimum is 600 s).
    pub token_expiration_seconds: i64,
    /// Bindings reconciled at once.
    pub concurrency: u16,
    /// Exchanges one namespace may always run at once; it gets more only while as many slots
    /// stay free for other namespaces (see `controller::fairness`).
    pub namespace_concurrency: u16,
    /// Namespaces watched; empty means all.
    pub namespaces: Vec<String>,
    /// Client-side STS rate limit (calls per second) and burst.
    pub sts_rate_per_second: u32,
    pub sts_burst: u32,
    /// Client-side limit on the Kubernetes requests reconciliations make (per second; 0 for
    /// none) and burst.
    pub kube_rate_per_second: u32,
    pub kube_burst: u32,
    /// Whether a namespace without the `podcreds.dev/allowed-role-arns` annotation may bind no
    /// role at all (deny by default) rather than any.
    pub require_role_allowlist: bool,
    /// The operator's own namespace, the only one where credential source Secrets are read.
    pub operator_namespace: Option<String>,
    /// Name reported on Events (usually the pod name).
    pub instance: Option<String>,
    /// The SAML identity provider (`spec.saml` bindings).
    pub saml: SamlSettings,
    /// podcreds as the Roles Anywhere workload CA (`spec.rolesAnywhere` bindings).
    pub roles_anywhere: RolesAnywhereSettings,
    /// How long the credentials of a binding no longer allowed them (role not in the
    /// namespace's allowlist, credential source not allowing the namespace or gone) stay in its
    /// Secret before they are removed.
    pub revocation_grace: std::time::Duration,
    /// The installation this operator serves: bindings labelled `podcreds.dev/installation` with
    /// this name (unlabelled ones for the default installation), see [`crate::installation`].
    pub installation: String,
    /// Who writes: the installation and this deployment of it (its leader-election Lease, or
    /// the process), recorded on every Secret it writes so that another operator writing the
    /// same Secrets (two installations serving the same bindings) is noticed.
    pub writer: String,
    /// Watch pods (`--watch-pods`) to report the consumers of every binding's Secret and, for
    /// bindings that ask for it, restart those that will go stale.
    pub watch_pods: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sts_policy: StsPolicy::default(),
            sts_network: StsNetwork::default(),
            token_expiration_seconds: 600,
            concurrency: 32,
            namespace_concurrency: 8,
            namespaces: Vec::new(),
            sts_rate_per_second: 50,
            sts_burst: 100,
            kube_rate_per_second: 0,
            kube_burst: 0,
            require_role_allowlist: false,
            operator_namespace: None,
            instance: None,
            saml: SamlSettings::default(),
            roles_anywhere: RolesAnywhereSettings::default(),
            revocation_grace: std::time::Duration::ZERO,
            installation: crate::installation::DEFAULT.to_string(),
            writer: format!("{}/test", crate::installation::DEFAULT),
            watch_pods: false,
        }
    }
}

//! IAM Roles Anywhere, pure: podcreds as the workload CA ([`certificate`]: a short-lived leaf
//! certificate per exchange, or the admin's from a Secret) and the X.509 SigV4 signing of
//! `CreateSession` ([`signing`]). The HTTP call is in `sts::rolesanywhere`, the flow in
//! `flow::roles_anywhere`, the CA key's custody in `keyring`.

pub mod certificate;
pub mod signing;

pub use certificate::{
    CertificateError, WorkloadCertificate, WorkloadSubject, admin_certificate, issue_leaf,
};

/// Default name of the Secret, in the operator's namespace, holding the workload CA keys.
pub const DEFAULT_CA_SECRET: &str = "podcreds-rolesanywhere-ca";

/// Default SPIFFE trust domain of the certificates' URI SAN.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The operator's Roles Anywhere settings.
#[derive(Clone, Debug)]
pub struct RolesAnywhereSettings {
    /// The operator's namespace, holding the CA Secret; `None` when podcreds is not a Roles
    /// Anywhere CA (bindings may still name an admin's certificate Secret).
    pub ca_namespace: Option<String>,
    pub ca_secret: String,
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<name>` is every certificate's URI SAN.
    pub trust_domain: String,
}

impl Default for RolesAnywhereSettings {
    fn default() -> Self {
        Self {
            ca_namespace: None,
            ca_secret: DEFAULT_CA_SECRET.into(),
            trust_domain: DEFAULT_TRUST_DOMAIN.into(),
        }
    }
}

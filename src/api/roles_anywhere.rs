//! A binding's `rolesAnywhere`: IAM Roles Anywhere `CreateSession`, signed with a certificate
//! podcreds issues for the ServiceAccount from its workload CA (or one the admin issued).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::patterns;

/// The Roles Anywhere exchange of a binding.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolesAnywhereExchange {
    /// ARN of the Roles Anywhere trust anchor holding the CA that signs the certificate
    /// (`arn:aws:rolesanywhere:<region>:<account>:trust-anchor/<id>`). Its region is where
    /// `CreateSession` goes. Defaults to the operator's `--rolesanywhere-trust-anchor-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1011), regex(pattern = patterns::TRUST_ANCHOR_ARN))]
    pub trust_anchor_arn: Option<String>,

    /// ARN of the Roles Anywhere profile listing the binding's role
    /// (`arn:aws:rolesanywhere:<region>:<account>:profile/<id>`). Defaults to the operator's
    /// `--rolesanywhere-profile-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1011), regex(pattern = patterns::PROFILE_ARN))]
    pub profile_arn: Option<String>,

    /// A `kubernetes.io/tls` Secret of this namespace holding a certificate an admin issued
    /// elsewhere (for example cert-manager: `tls.crt` with its chain, `tls.key`), re-read on every
    /// exchange, instead of one podcreds issues. Whoever creates or changes the binding must be
    /// allowed to read that Secret (the admission policy checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DNS_SUBDOMAIN))]
    pub certificate_secret_name: Option<String>,
}

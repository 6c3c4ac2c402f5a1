//! A binding's `imagePullSecret`: an Amazon ECR image-pull Secret kept fresh from the binding's
//! credentials, for clusters outside EKS whose kubelets pull from ECR.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::patterns;

/// Keep a `kubernetes.io/dockerconfigjson` Secret for Amazon ECR registries: podcreds calls ECR
/// `GetAuthorizationToken` with the binding's credentials (which need
/// `ecr:GetAuthorizationToken` and the repositories' pull permissions) and writes one `auths`
/// entry per registry, with the user `AWS` and the token, refreshed well before the token expires
/// (ECR tokens last 12 hours). Only with `sts.provider: AWS`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullSecret {
    /// Registry hosts the Secret authenticates to (1 to 10), as image references name them:
    /// `123456789012.dkr.ecr.eu-west-1.amazonaws.com`. The token of an ECR registry's region is
    /// asked of that region's ECR; a host that is not an ECR registry name (a pull-through
    /// proxy, a test registry) gets the token of the binding's `sts.region`. The kubelet sends
    /// the token to every host listed.
    #[schemars(length(min = 1, max = 10), inner(length(min = 1, max = 253), regex(pattern = patterns::REGISTRY_HOST)))]
    pub registries: Vec<String>,

    /// Name of the image-pull Secret, in this namespace. Defaults to `<binding name>-ecr`. It
    /// must differ from the credentials' `secretName`; podcreds never writes to a Secret that
    /// another owner already holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DNS_SUBDOMAIN))]
    pub secret_name: Option<String>,

    /// Add the Secret to the ServiceAccount's `imagePullSecrets`, so that every pod of the
    /// ServiceAccount pulls with it. podcreds adds only its own entry and never removes the
    /// others; turning this off (or removing `imagePullSecret`) removes the entry again. Needs
    /// the operator's permission to patch ServiceAccounts (chart:
    /// `ecrPullSecrets.serviceAccounts: true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub add_to_service_account: bool,
}

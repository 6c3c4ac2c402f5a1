//! What the cluster admin decides about where tokens go (operator flags / chart values), and the
//! checks of that configuration made once at start.

use super::rules::TAG_VALUE;

/// What the cluster admin decides about where tokens go (operator flags / chart values).
#[derive(Clone, Debug)]
pub struct StsPolicy {
    /// Region used when a binding names none.
    pub default_region: String,
    /// STS endpoint used when a binding names none; `None` means the AWS regional endpoint.
    pub default_endpoint: Option<String>,
    /// Token audience used when a binding names none.
    pub default_audience: String,
    /// Audiences a binding may ask for besides the default.
    pub allowed_audiences: Vec<String>,
    /// STS endpoints a binding may name besides the default.
    pub allowed_endpoints: Vec<String>,
    /// Let `spec.sessionName` be any name; by default it must start with `<namespace>.`, so a
    /// binding cannot pass for another namespace's in CloudTrail.
    pub allow_unprefixed_session_names: bool,
    /// Let STS endpoints be plain `http://` URLs, which carry the ServiceAccount token in clear
    /// (for a trusted network path only, such as loopback in a test).
    pub allow_insecure_endpoints: bool,
    /// The cluster's name, for the `kubernetes-cluster-name` session tag of bindings that ask
    /// for Kubernetes session tags (`--cluster-name`); those bindings are refused without it.
    pub cluster_name: Option<String>,
    /// The IAM SAML provider ARN for bindings whose `spec.saml` names none
    /// (`--saml-provider-arn`).
    pub default_saml_provider_arn: Option<String>,
    /// Further SAML provider ARNs bindings may name (`--saml-allowed-provider-arns`): podcreds
    /// asserts a ServiceAccount to no other provider.
    pub allowed_saml_provider_arns: Vec<String>,
    /// The Roles Anywhere trust anchor and profile for bindings whose `spec.rolesAnywhere` names
    /// none (`--rolesanywhere-trust-anchor-arn`, `--rolesanywhere-profile-arn`).
    pub default_trust_anchor_arn: Option<String>,
    pub default_profile_arn: Option<String>,
    /// Where Roles Anywhere `CreateSession` goes (`--rolesanywhere-endpoint`); `None` means
    /// `https://rolesanywhere.<trust anchor region>.amazonaws.com`.
    pub rolesanywhere_endpoint: Option<String>,
}

impl Default for StsPolicy {
    fn default() -> Self {
        Self {
            default_region: "us-east-1".into(),
            default_endpoint: None,
            default_audience: "sts.amazonaws.com".into(),
            allowed_audiences: Vec::new(),
            allowed_endpoints: Vec::new(),
            allow_unprefixed_session_names: false,
            allow_insecure_endpoints: false,
            cluster_name: None,
            default_saml_provider_arn: None,
            allowed_saml_provider_arns: Vec::new(),
            default_trust_anchor_arn: None,
            default_profile_arn: None,
            rolesanywhere_endpoint: None,
        }
    }
}

/// The audience of AWS STS: tokens minted for it are AWS credentials' raw material.
pub const AWS_STS_AUDIENCE: &str = "sts.amazonaws.com";

impl StsPolicy {
    /// Whether tokens (and SAML assertions, and SigV4 requests signed with an IAM user's keys)
    /// may go to `endpoint` as if it were AWS: it is an AWS endpoint, the AWS regional default
    /// (`None`), or the endpoint the admin made everyone's default.
    pub fn trusted_like_aws(&self, endpoint: Option<&str>) -> bool {
        match endpoint {
            None => true,
            Some(e) => super::is_aws_endpoint(e) || Some(e) == self.default_endpoint.as_deref(),
        }
    }

    /// Checks what the operator would use without any binding asking: refuses a plain-HTTP
    /// default endpoint unless plain HTTP is allowed. Run once at start.
    pub fn check(&self) -> Result<(), PolicyError> {
        match &self.default_endpoint {
            Some(endpoint) if is_plain_http(endpoint) && !self.allow_insecure_endpoints => {
                return Err(PolicyError::InsecureDefaultEndpoint(endpoint.clone()));
            }
            _ => {}
        }
        match &self.rolesanywhere_endpoint {
            Some(endpoint) if is_plain_http(endpoint) && !self.allow_insecure_endpoints => {
                return Err(PolicyError::InsecureRolesAnywhereEndpoint(endpoint.clone()));
            }
            _ => {}
        }
        match &self.cluster_name {
            Some(name) if name.is_empty() || !TAG_VALUE.is_match(name.as_bytes()) => {
                Err(PolicyError::InvalidClusterName(name.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Allowed endpoints that bindings cannot use because they are plain HTTP (worth a warning
    /// at start).
    pub fn unusable_allowed_endpoints(&self) -> Vec<&str> {
        if self.allow_insecure_endpoints {
            return Vec::new();
        }
        self.allowed_endpoints
            .iter()
            .map(String::as_str)
            .filter(|e| is_plain_http(e))
            .collect()
    }
}

/// Whether `endpoint` is a plain `http://` URL (any letter case: the SDK accepts both).
pub fn is_plain_http(endpoint: &str) -> bool {
    endpoint
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// Why the operator's own configuration is refused at start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "--sts-endpoint {0:?} is plain HTTP: every ServiceAccount token sent there would travel in clear. Use an https:// endpoint, or pass --allow-insecure-sts-endpoints (chart: operator.allowInsecureStsEndpoints) if the network path is trusted, for example loopback in a test"
    )]
    InsecureDefaultEndpoint(String),
    #[error(
        "--rolesanywhere-endpoint {0:?} is plain HTTP: requests signed with workload certificates would travel in clear. Use an https:// endpoint, or pass --allow-insecure-sts-endpoints if the network path is trusted"
    )]
    InsecureRolesAnywhereEndpoint(String),
    #[error(
        "--cluster-name {0:?} cannot be a session tag value: use 1 to 256 letters, digits, spaces or _.:/=+@-"
    )]
    InvalidClusterName(String),
}

//! What the cluster admin decides about where tokens go (operator flags / chart values), and the
//! checks of that configuration made once at start.

use super::rules::TAG_VALUE;

/// What the cluster admin decides about where tokens go (operator flags / chart values).
#[derive(Clone, Debug)]
pub struct StsPolicy {
    /// Region used when a binding names none.
    pub default_region: String,
    /// STS endpoints, in order of preference, for bindings that name none (`--sts-endpoints`,
    /// or `--sts-endpoint` for one); empty means the AWS regional endpoint.
    pub default_endpoints: Vec<String>,
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
    /// Where ECR `GetAuthorizationToken` goes for image-pull Secrets (`--ecr-endpoint`); `None`
    /// means `https://api.ecr.<region>.amazonaws.com`. Only the admin names it: a binding never
    /// chooses where its credentials sign requests to.
    pub ecr_endpoint: Option<String>,
}

impl Default for StsPolicy {
    fn default() -> Self {
        Self {
            default_region: "us-east-1".into(),
            default_endpoints: Vec::new(),
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
            ecr_endpoint: None,
        }
    }
}

/// The audience of AWS STS: tokens minted for it are AWS credentials' raw material.
pub const AWS_STS_AUDIENCE: &str = "sts.amazonaws.com";

impl StsPolicy {
    /// Whether tokens (and SAML assertions, and SigV4 requests signed with an IAM user's keys)
    /// may go to `endpoint` as if it were AWS: it is an AWS endpoint, the AWS regional default
    /// (`None`), or one of the endpoints the admin made everyone's default.
    pub fn trusted_like_aws(&self, endpoint: Option<&str>) -> bool {
        match endpoint {
            None => true,
            Some(e) => super::is_aws_endpoint(e) || self.is_default_endpoint(e),
        }
    }

    /// Whether `endpoint` is one of the admin's default endpoints.
    pub fn is_default_endpoint(&self, endpoint: &str) -> bool {
        self.default_endpoints.iter().any(|d| d == endpoint)
    }

    /// The first default endpoint (`None`: the AWS regional endpoint).
    pub fn default_endpoint(&self) -> Option<&str> {
        self.default_endpoints.first().map(String::as_str)
    }

    /// Checks what the operator would use without any binding asking: refuses a default
    /// endpoint that is not an http(s) URL, is listed twice, or is plain HTTP while plain HTTP is
    /// not allowed. Run once at start.
    pub fn check(&self) -> Result<(), PolicyError> {
        for (i, endpoint) in self.default_endpoints.iter().enumerate() {
            if !is_http_url(endpoint) {
                return Err(PolicyError::InvalidDefaultEndpoint(endpoint.clone()));
            }
            if self.default_endpoints[..i].contains(endpoint) {
                return Err(PolicyError::DuplicateDefaultEndpoint(endpoint.clone()));
            }
            if is_plain_http(endpoint) && !self.allow_insecure_endpoints {
                return Err(PolicyError::InsecureDefaultEndpoint(endpoint.clone()));
            }
        }
        match &self.rolesanywhere_endpoint {
            Some(endpoint) if is_plain_http(endpoint) && !self.allow_insecure_endpoints => {
                return Err(PolicyError::InsecureRolesAnywhereEndpoint(endpoint.clone()));
            }
            _ => {}
        }
        match &self.ecr_endpoint {
            Some(endpoint) if !is_http_url(endpoint) => {
                return Err(PolicyError::InvalidEcrEndpoint(endpoint.clone()));
            }
            Some(endpoint) if is_plain_http(endpoint) && !self.allow_insecure_endpoints => {
                return Err(PolicyError::InsecureEcrEndpoint(endpoint.clone()));
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

/// Whether `endpoint` is an `http://` or `https://` URL with something after the scheme, of at
/// most 2048 characters (the CRD's bound).
pub fn is_http_url(endpoint: &str) -> bool {
    let rest = if is_plain_http(endpoint) {
        &endpoint[7..]
    } else if endpoint
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    {
        &endpoint[8..]
    } else {
        return false;
    };
    !rest.is_empty() && endpoint.len() <= 2048
}

/// Why the operator's own configuration is refused at start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "--sts-endpoint {0:?} is plain HTTP: every ServiceAccount token sent there would travel in clear. Use an https:// endpoint, or pass --allow-insecure-sts-endpoints (chart: operator.allowInsecureStsEndpoints) if the network path is trusted, for example loopback in a test"
    )]
    InsecureDefaultEndpoint(String),
    #[error("--sts-endpoints entry {0:?} is not an http(s) URL")]
    InvalidDefaultEndpoint(String),
    #[error("--sts-endpoints lists {0:?} twice: each endpoint is tried once, in the order given")]
    DuplicateDefaultEndpoint(String),
    #[error(
        "--rolesanywhere-endpoint {0:?} is plain HTTP: requests signed with workload certificates would travel in clear. Use an https:// endpoint, or pass --allow-insecure-sts-endpoints if the network path is trusted"
    )]
    InsecureRolesAnywhereEndpoint(String),
    #[error("--ecr-endpoint {0:?} is not an http(s) URL")]
    InvalidEcrEndpoint(String),
    #[error(
        "--ecr-endpoint {0:?} is plain HTTP: requests signed with the bindings' credentials would travel in clear. Use an https:// endpoint, or pass --allow-insecure-sts-endpoints if the network path is trusted"
    )]
    InsecureEcrEndpoint(String),
    #[error(
        "--cluster-name {0:?} cannot be a session tag value: use 1 to 256 letters, digits, spaces or _.:/=+@-"
    )]
    InvalidClusterName(String),
}

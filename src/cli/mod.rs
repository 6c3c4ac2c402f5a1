//! Command line of the `podcreds` binary. Every `run` flag has an environment variable twin.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "podcreds",
    version,
    about = "Short-lived AWS credentials for Kubernetes ServiceAccounts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (AWSRoleBinding, AWSCredentialSource) as YAML.
    Crd {
        /// Only this one: `AWSRoleBinding` or `AWSCredentialSource`.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Print podcreds' SAML identity provider metadata (for `aws iam create-saml-provider
    /// --saml-metadata-document file://...`), creating the signing key if there is none yet.
    SamlMetadata(SamlKeyArgs),
    /// Rotate the SAML signing key, one explicit step at a time (see docs/saml.md).
    SamlKey {
        #[command(subcommand)]
        step: SamlKeyStep,
    },
    /// Help with IAM Roles Anywhere: the trust anchor holding podcreds' workload CA.
    #[command(subcommand)]
    Rolesanywhere(RolesAnywhereCommand),
    /// Rotate the Roles Anywhere workload CA, one explicit step at a time (see
    /// docs/rolesanywhere.md).
    RolesanywhereCa {
        #[command(subcommand)]
        step: CaStep,
    },
    /// Print the version.
    Version,
    /// Help with the IAM side of a binding.
    #[command(subcommand)]
    Iam(IamCommand),
    /// The cluster's OIDC documents, for clusters whose issuer AWS cannot reach.
    #[command(subcommand)]
    Oidc(OidcCommand),
    /// Run the node agent: serve the AWS container-credentials protocol to this node's pods at
    /// http://169.254.170.23/v1/credentials/<binding>, from the leading operator's broker.
    Agent(Box<AgentArgs>),
    /// Ask the operator for an immediate exchange of a binding (after fixing IAM, or to rotate
    /// its credentials now), and wait for the outcome.
    Refresh(RefreshArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// Addresses to serve pods on. Each one that is not loopback is added to --interface at
    /// start and removed at exit (an IPv6 one the node cannot take is skipped).
    #[arg(
        long,
        env = "PODCREDS_AGENT_LISTEN",
        value_delimiter = ',',
        default_value = "169.254.170.23:80,[fd00:ec2::23]:80"
    )]
    pub listen: Vec<SocketAddr>,
    /// The node's interface that receives the link-local addresses.
    #[arg(long, env = "PODCREDS_AGENT_INTERFACE", default_value = "lo")]
    pub interface: String,
    /// The agent's own projected ServiceAccount token (audience --agent-audience of the
    /// operator), which the broker reviews.
    #[arg(
        long,
        env = "PODCREDS_AGENT_TOKEN_FILE",
        default_value = "/var/run/secrets/podcreds/broker/token"
    )]
    pub token_file: std::path::PathBuf,
    /// The operator's namespace: its leader-election Lease, the leader's pod and the broker CA
    /// ConfigMap.
    #[arg(
        long,
        env = "PODCREDS_OPERATOR_NAMESPACE",
        default_value = "podcreds-system"
    )]
    pub operator_namespace: String,
    /// Name of the operator's leader-election Lease.
    #[arg(
        long,
        env = "PODCREDS_LEADER_ELECTION_LEASE",
        default_value = "podcreds-leader"
    )]
    pub leader_election_lease: String,
    /// The broker's port on the operator pods.
    #[arg(long, env = "PODCREDS_BROKER_PORT", default_value_t = 8443)]
    pub broker_port: u16,
    /// The ConfigMap, in the operator's namespace, holding the broker CA's certificates.
    #[arg(long, env = "PODCREDS_BROKER_CA_CONFIGMAP", default_value = crate::broker::tls::DEFAULT_CA_CONFIGMAP)]
    pub broker_ca_configmap: String,
    /// The audience pods' tokens must have (named in the error a pod without one gets).
    #[arg(long, env = "PODCREDS_ENDPOINT_AUDIENCE", default_value = crate::agent::POD_AUDIENCE)]
    pub endpoint_audience: String,
    /// This node's name (downward API), for the log.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    #[arg(long, env = "PODCREDS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    #[arg(long, env = "PODCREDS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RefreshArgs {
    /// Name of the AWSRoleBinding.
    pub name: String,
    /// Namespace of the binding (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// How long to wait for the operator's answer; 0 returns as soon as the request is recorded.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
}

#[derive(Subcommand, Debug)]
pub enum IamCommand {
    /// Print the trust policy of every role a binding passes through (its roleArn, then each
    /// roleChain hop), admitting exactly this binding's ServiceAccount, audience and chain.
    TrustPolicy(TrustPolicyArgs),
}

#[derive(Subcommand, Debug)]
pub enum OidcCommand {
    /// Write the cluster's discovery document and JWKS, ready to host at the issuer URL, and say
    /// how to register the provider with IAM.
    Export(OidcExportArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyOutput {
    /// Each policy as JSON under a comment naming the role and the command that applies it.
    Text,
    /// One JSON list of `{roleArn, assumedBy, trustPolicy}`.
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TrustPolicyArgs {
    /// Name of the AWSRoleBinding: read from the cluster, or picked among a manifest's bindings.
    pub name: Option<String>,
    /// Read the bindings from this manifest instead of the cluster (`-` for standard input):
    /// every AWSRoleBinding in it, other kinds skipped.
    #[arg(short = 'f', long = "filename")]
    pub filename: Option<std::path::PathBuf>,
    /// Namespace of the binding (default: the manifest's, else the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The cluster's OIDC issuer URL (default: read from the cluster's discovery document).
    #[arg(long)]
    pub issuer: Option<String>,
    /// The binding's first exchange is AssumeRoleWithSAML through this IAM SAML provider.
    #[arg(long, conflicts_with = "issuer")]
    pub saml_provider_arn: Option<String>,
    /// The IAM user whose keys an AWSCredentialSource holds, for bindings whose first exchange is
    /// AssumeRole with those keys (arn:aws:iam::<account>:user/<name>).
    #[arg(long)]
    pub user_arn: Option<String>,
    /// The operator's default audience (its --audience).
    #[arg(long, default_value = "sts.amazonaws.com")]
    pub audience: String,
    /// The operator's --cluster-name, for bindings with kubernetesSessionTags.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// The operator's --rolesanywhere-trust-anchor-arn, for Roles Anywhere bindings naming none.
    #[arg(long)]
    pub trust_anchor_arn: Option<String>,
    /// The operator's --rolesanywhere-profile-arn, for Roles Anywhere bindings naming none.
    #[arg(long)]
    pub profile_arn: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: PolicyOutput,
}

#[derive(clap::Args, Debug, Clone)]
pub struct OidcExportArgs {
    /// Directory to write `.well-known/openid-configuration` and `openid/v1/jwks` into.
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Refuse unless the cluster's issuer is this URL (where the files will be hosted).
    #[arg(long)]
    pub issuer: Option<String>,
    /// The audience IAM's provider must accept (the operator's --audience).
    #[arg(long, default_value = "sts.amazonaws.com")]
    pub audience: String,
}

/// Where the SAML signing key Secret is, and the IdP entity ID.
#[derive(clap::Args, Debug, Clone)]
pub struct SamlKeyArgs {
    /// The operator's namespace, which holds the key Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "podcreds-system")]
    pub namespace: String,
    /// Name of the key Secret.
    #[arg(long, env = "PODCREDS_SAML_KEY_SECRET", default_value = crate::saml::DEFAULT_KEY_SECRET)]
    pub saml_key_secret: String,
    /// The IdP entity ID (the operator's --saml-entity-id).
    #[arg(long, env = "PODCREDS_SAML_ENTITY_ID", default_value = crate::saml::DEFAULT_ENTITY_ID)]
    pub saml_entity_id: String,
}

/// One step of a SAML signing key rotation.
#[derive(Subcommand, Debug, Clone)]
pub enum SamlKeyStep {
    /// Add a next key: announced in the metadata (re-upload it), not signing yet.
    AddNext(SamlKeyArgs),
    /// Sign with the next key from now on; the old certificate stays announced.
    Promote(SamlKeyArgs),
    /// Stop announcing the previous certificate (re-upload the metadata afterwards).
    Retire(SamlKeyArgs),
}

#[derive(Subcommand, Debug)]
pub enum RolesAnywhereCommand {
    /// Print the CA bundle the trust anchor must hold (creating the CA key if there is none yet),
    /// and on standard error the `aws rolesanywhere` commands that create or update it.
    TrustAnchor(TrustAnchorArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BundleOutput {
    /// The CA certificates, PEM.
    Pem,
    /// The `--source` document of `aws rolesanywhere create-trust-anchor`.
    SourceJson,
}

/// Where the Roles Anywhere CA key Secret is.
#[derive(clap::Args, Debug, Clone)]
pub struct CaArgs {
    /// The operator's namespace, which holds the CA Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "podcreds-system")]
    pub namespace: String,
    /// Name of the CA Secret (the operator's --rolesanywhere-ca-secret).
    #[arg(long, env = "PODCREDS_ROLESANYWHERE_CA_SECRET", default_value = crate::rolesanywhere::DEFAULT_CA_SECRET)]
    pub ca_secret: String,
    /// The trust anchor to update, to print its `update-trust-anchor` command in full.
    #[arg(long, env = "PODCREDS_ROLESANYWHERE_TRUST_ANCHOR_ARN")]
    pub trust_anchor_arn: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TrustAnchorArgs {
    #[command(flatten)]
    pub ca: CaArgs,
    #[arg(short = 'o', long, value_enum, default_value = "pem")]
    pub output: BundleOutput,
}

/// One step of a Roles Anywhere CA rotation.
#[derive(Subcommand, Debug, Clone)]
pub enum CaStep {
    /// Add a next CA: in the bundle (update the trust anchor), not signing yet.
    AddNext(CaArgs),
    /// Sign with the next CA from now on; the old certificate stays in the bundle.
    Promote(CaArgs),
    /// Drop the previous CA from the bundle (update the trust anchor afterwards).
    Retire(CaArgs),
}

impl CaStep {
    pub fn parts(&self) -> (&CaArgs, crate::key_command::RotationStep) {
        use crate::key_command::RotationStep;
        match self {
            CaStep::AddNext(a) => (a, RotationStep::AddNext),
            CaStep::Promote(a) => (a, RotationStep::Promote),
            CaStep::Retire(a) => (a, RotationStep::Retire),
        }
    }
}

impl SamlKeyStep {
    pub fn parts(&self) -> (&SamlKeyArgs, crate::key_command::RotationStep) {
        use crate::key_command::RotationStep;
        match self {
            SamlKeyStep::AddNext(a) => (a, RotationStep::AddNext),
            SamlKeyStep::Promote(a) => (a, RotationStep::Promote),
            SamlKeyStep::Retire(a) => (a, RotationStep::Retire),
        }
    }
}

mod run;
pub use run::{LogFormat, RunArgs, parse_service_account};

#[cfg(test)]
mod tests;

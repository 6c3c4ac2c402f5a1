//! `podcreds run`: the operator's flags, each with an environment variable twin, and how they
//! become the operator's settings.

use std::net::SocketAddr;

use clap::ValueEnum;

use crate::settings::Settings;
use crate::spec::StsPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// AWS region for bindings that name none.
    #[arg(long, env = "PODCREDS_DEFAULT_REGION", default_value = "us-east-1")]
    pub default_region: String,
    /// STS endpoint for bindings that name none (default: the AWS regional endpoint). The same
    /// as --sts-endpoints with one endpoint.
    #[arg(long, env = "PODCREDS_STS_ENDPOINT", conflicts_with = "sts_endpoints")]
    pub sts_endpoint: Option<String>,
    /// STS endpoints for bindings that name none, in order of preference (comma separated): each
    /// exchange goes to the first that answers, moving on when one cannot be reached, times out
    /// or answers with a server error. List endpoints of one service (credentials from one must
    /// work at the others).
    #[arg(long, env = "PODCREDS_STS_ENDPOINTS", value_delimiter = ',')]
    pub sts_endpoints: Vec<String>,
    /// Further STS endpoints a binding may name in spec.sts.endpoint or spec.sts.endpoints (comma
    /// separated).
    #[arg(long, env = "PODCREDS_ALLOWED_STS_ENDPOINTS", value_delimiter = ',')]
    pub allowed_sts_endpoints: Vec<String>,
    /// How long an STS endpoint that could not answer is tried last (after the other endpoints
    /// of a fail-over list); then it is tried first again.
    #[arg(long, env = "PODCREDS_STS_ENDPOINT_COOLDOWN", default_value = "30s", value_parser = humantime::parse_duration)]
    pub sts_endpoint_cooldown: std::time::Duration,
    /// HTTP proxy for every STS and Roles Anywhere call to an https:// endpoint
    /// (`http://[user:password@]host:port`), reached with CONNECT: the proxy sees the endpoint's
    /// host and port, never a token. Plain-HTTP endpoints are never proxied. HTTP(S)_PROXY and
    /// NO_PROXY are never read.
    #[arg(long, env = "PODCREDS_STS_PROXY", value_name = "URL", value_parser = secret_value, hide_env_values = true)]
    pub sts_proxy: Option<secrecy::SecretString>,
    /// Hosts reached without --sts-proxy (comma separated): host names (also matching their
    /// subdomains), IP addresses or CIDR ranges, as in NO_PROXY.
    #[arg(long, env = "PODCREDS_STS_NO_PROXY", value_delimiter = ',')]
    pub sts_no_proxy: Vec<String>,
    /// Allow plain http:// STS endpoints. The ServiceAccount token travels in clear over them:
    /// for trusted network paths only, such as loopback in a test.
    #[arg(long, env = "PODCREDS_ALLOW_INSECURE_STS_ENDPOINTS")]
    pub allow_insecure_sts_endpoints: bool,
    /// Token audience for bindings that name none.
    #[arg(long, env = "PODCREDS_AUDIENCE", default_value = "sts.amazonaws.com")]
    pub audience: String,
    /// Further audiences a binding may name in spec.audience (comma separated).
    #[arg(long, env = "PODCREDS_ALLOWED_AUDIENCES", value_delimiter = ',')]
    pub allowed_audiences: Vec<String>,
    /// The cluster's name, sent as the `kubernetes-cluster-name` session tag of bindings that ask
    /// for Kubernetes session tags (`spec.kubernetesSessionTags`); such bindings are refused
    /// without it.
    #[arg(long, env = "PODCREDS_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Act as a SAML identity provider for bindings with spec.saml: keep a signing key in a
    /// Secret of the operator's namespace (--namespace, POD_NAMESPACE), created at start if
    /// absent.
    #[arg(long, env = "PODCREDS_SAML_ENABLED")]
    pub saml_enabled: bool,
    /// The IAM SAML provider ARN (`arn:aws:iam::<account>:saml-provider/<name>`) for bindings
    /// whose spec.saml names none.
    #[arg(long, env = "PODCREDS_SAML_PROVIDER_ARN")]
    pub saml_provider_arn: Option<String>,
    /// Further IAM SAML provider ARNs bindings may name in spec.saml.providerArn (comma
    /// separated); podcreds asserts a ServiceAccount to no provider but these and
    /// --saml-provider-arn.
    #[arg(
        long,
        env = "PODCREDS_SAML_ALLOWED_PROVIDER_ARNS",
        value_delimiter = ','
    )]
    pub saml_allowed_provider_arns: Vec<String>,
    /// The SAML identity provider's entity ID: the Issuer of every assertion and the `entityID`
    /// of the metadata IAM holds.
    #[arg(long, env = "PODCREDS_SAML_ENTITY_ID", default_value = crate::saml::DEFAULT_ENTITY_ID)]
    pub saml_entity_id: String,
    /// Name of the Secret, in the operator's namespace (POD_NAMESPACE), holding the SAML signing
    /// keys; created with a new key if absent.
    #[arg(long, env = "PODCREDS_SAML_KEY_SECRET", default_value = crate::saml::DEFAULT_KEY_SECRET)]
    pub saml_key_secret: String,
    /// Act as the IAM Roles Anywhere certificate authority for bindings with spec.rolesAnywhere:
    /// keep a CA key in a Secret of the operator's namespace (--namespace), created at start if
    /// absent, and issue a short-lived certificate per exchange.
    #[arg(long, env = "PODCREDS_ROLESANYWHERE_ENABLED")]
    pub rolesanywhere_enabled: bool,
    /// Name of the Secret, in the operator's namespace, holding the Roles Anywhere CA keys.
    #[arg(long, env = "PODCREDS_ROLESANYWHERE_CA_SECRET", default_value = crate::rolesanywhere::DEFAULT_CA_SECRET)]
    pub rolesanywhere_ca_secret: String,
    /// The trust anchor (`arn:aws:rolesanywhere:<region>:<account>:trust-anchor/<id>`) for
    /// bindings whose spec.rolesAnywhere names none.
    #[arg(long, env = "PODCREDS_ROLESANYWHERE_TRUST_ANCHOR_ARN")]
    pub rolesanywhere_trust_anchor_arn: Option<String>,
    /// The profile (`arn:aws:rolesanywhere:<region>:<account>:profile/<id>`) for bindings whose
    /// spec.rolesAnywhere names none.
    #[arg(long, env = "PODCREDS_ROLESANYWHERE_PROFILE_ARN")]
    pub rolesanywhere_profile_arn: Option<String>,
    /// Where Roles Anywhere CreateSession goes (default:
    /// https://rolesanywhere.<trust anchor region>.amazonaws.com).
    #[arg(long, env = "PODCREDS_ROLESANYWHERE_ENDPOINT")]
    pub rolesanywhere_endpoint: Option<String>,
    /// Where ECR GetAuthorizationToken goes for the bindings' image-pull Secrets (default:
    /// https://api.ecr.<region>.amazonaws.com). Plain HTTP only with
    /// --allow-insecure-sts-endpoints.
    #[arg(long, env = "PODCREDS_ECR_ENDPOINT")]
    pub ecr_endpoint: Option<String>,
    /// The SPIFFE trust domain of the certificates' URI SAN
    /// (`spiffe://<domain>/ns/<namespace>/sa/<name>`).
    #[arg(long, env = "PODCREDS_ROLESANYWHERE_TRUST_DOMAIN", default_value = crate::rolesanywhere::DEFAULT_TRUST_DOMAIN)]
    pub rolesanywhere_trust_domain: String,
    /// Serve the node endpoint's broker: keep the credentials of bindings with `Endpoint`
    /// delivery in memory and answer podcreds' node agents over HTTPS (--broker-address). Needs
    /// --namespace (the CA key Secret and the CA ConfigMap) and --pod-ip.
    #[arg(long, env = "PODCREDS_BROKER_ENABLED")]
    pub broker_enabled: bool,
    /// Address of the broker's HTTPS server.
    #[arg(long, env = "PODCREDS_BROKER_ADDRESS", default_value = "0.0.0.0:8443")]
    pub broker_address: SocketAddr,
    /// This pod's IP (the downward API's status.podIP): the broker certificate's IP SAN.
    #[arg(long, env = "POD_IP", required_if_eq("broker_enabled", "true"))]
    pub pod_ip: Option<std::net::IpAddr>,
    /// The Secret, in --namespace, holding the broker CA's keys (created if absent).
    #[arg(long, env = "PODCREDS_BROKER_CA_SECRET", default_value = crate::broker::tls::DEFAULT_CA_SECRET)]
    pub broker_ca_secret: String,
    /// The ConfigMap, in --namespace, where the broker CA's certificates are published for agents.
    #[arg(long, env = "PODCREDS_BROKER_CA_CONFIGMAP", default_value = crate::broker::tls::DEFAULT_CA_CONFIGMAP)]
    pub broker_ca_configmap: String,
    /// The node agents' ServiceAccount, `<namespace>/<name>`: the only identity the broker
    /// answers.
    #[arg(long, env = "PODCREDS_AGENT_SERVICE_ACCOUNT", default_value = "podcreds-node/podcreds-agent", value_parser = parse_service_account)]
    pub agent_service_account: (String, String),
    /// Audience of the agents' own projected tokens.
    #[arg(long, env = "PODCREDS_AGENT_AUDIENCE", default_value = crate::agent::AGENT_AUDIENCE)]
    pub agent_audience: String,
    /// Audience of the pods' projected tokens (the token file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
    /// names).
    #[arg(long, env = "PODCREDS_ENDPOINT_AUDIENCE", default_value = crate::agent::POD_AUDIENCE)]
    pub endpoint_audience: String,
    /// Let spec.sessionName be any name. By default it must start with `<namespace>.`, so that a
    /// binding cannot pass for another namespace's in CloudTrail.
    #[arg(long, env = "PODCREDS_ALLOW_UNPREFIXED_SESSION_NAMES")]
    pub allow_unprefixed_session_names: bool,
    /// Lifetime requested for ServiceAccount tokens, in seconds (the apiserver's minimum is 600).
    /// MinIO ends a session when its token expires: raise it to the session length MinIO
    /// bindings should get.
    #[arg(long, env = "PODCREDS_TOKEN_EXPIRATION_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(i64).range(600..=3600))]
    pub token_expiration_seconds: i64,
    /// Bindings reconciled concurrently.
    #[arg(long, env = "PODCREDS_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Exchanges one namespace may always run at once (0: a quarter of --concurrency). A
    /// namespace gets more slots only while as many stay free for the others, so one namespace
    /// with thousands of slow or failing bindings cannot delay another's renewals.
    #[arg(long, env = "PODCREDS_NAMESPACE_CONCURRENCY", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub namespace_concurrency: u16,
    /// Client-side limit on STS calls per second (the AWS account quota, shared with every other caller, is about 600/s).
    #[arg(long, env = "PODCREDS_STS_QPS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub sts_qps: u32,
    /// Burst allowed above --sts-qps.
    #[arg(long, env = "PODCREDS_STS_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub sts_burst: u32,
    /// Client-side limit on Kubernetes requests per second made by reconciliations; 0 (the
    /// default) sets none and leaves protecting the apiserver to its priority and fairness, as
    /// SIG API Machinery recommends.
    #[arg(long, env = "PODCREDS_KUBE_QPS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100000))]
    pub kube_qps: u32,
    /// Burst allowed above --kube-qps (at least --kube-qps).
    #[arg(long, env = "PODCREDS_KUBE_BURST", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100000))]
    pub kube_burst: u32,
    /// Namespaces to watch (comma separated); all namespaces when empty.
    #[arg(long, env = "PODCREDS_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Refuse every role in namespaces without the `podcreds.dev/allowed-role-arns` annotation
    /// (deny by default) instead of allowing any.
    #[arg(long, env = "PODCREDS_REQUIRE_ROLE_ALLOWLIST")]
    pub require_role_allowlist: bool,
    /// The installation this operator serves: only bindings labelled `podcreds.dev/installation`
    /// with this name, or, for the default installation, bindings without that label. Give each
    /// installation in a cluster its own name, so that no two reconcile the same bindings.
    #[arg(long, env = "PODCREDS_INSTALLATION", default_value = crate::installation::DEFAULT, value_parser = parse_installation)]
    pub installation: String,
    /// How long the credentials of a binding that is no longer allowed them (its role left the
    /// namespace's allowlist; its credential source stopped allowing the namespace or was
    /// deleted) stay in its Secret before they are removed (0: at once). The Secret is kept.
    #[arg(long, env = "PODCREDS_REVOCATION_GRACE_PERIOD", default_value = "0s", value_parser = humantime::parse_duration)]
    pub revocation_grace_period: std::time::Duration,
    /// Watch pods (needs RBAC to list and watch them; chart value consumers.watchPods) to report
    /// in each binding's status.consumers which pods read its Secret once (env, envFrom,
    /// subPath) and will go stale, with a Warning Event on each such pod and the
    /// podcreds_stale_consumers metric. Bindings with spec.restartStaleConsumers need it (and
    /// RBAC to create pods/eviction).
    #[arg(long, env = "PODCREDS_WATCH_PODS")]
    pub watch_pods: bool,
    /// Names of the ValidatingAdmissionPolicies (each with a binding of the same name) that guard
    /// podcreds: bindings, credential sources, status writes, the operator's own tokens and
    /// Secrets (comma separated, or repeated). podcreds checks that each exists and denies what
    /// it refuses (its binding's validationActions include Deny, failurePolicy Fail, not
    /// narrowed) and reports it (log, /readyz, metric).
    #[arg(
        long = "admission-policy-name",
        env = "PODCREDS_ADMISSION_POLICY_NAME",
        value_delimiter = ','
    )]
    pub admission_policy_names: Vec<String>,
    /// How often the admission policies are checked.
    #[arg(long, env = "PODCREDS_ADMISSION_POLICY_CHECK_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub admission_policy_check_interval: std::time::Duration,
    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "PODCREDS_ADMIN_ADDRESS", default_value = "0.0.0.0:8080")]
    pub admin_address: SocketAddr,
    /// Log format.
    #[arg(long, env = "PODCREDS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (for example `info` or `podcreds=debug`). The AWS
    /// SDK's and the HTTP stacks' targets never log above debug whatever it says: their trace
    /// level prints STS request bodies (tokens, SAML assertions).
    #[arg(long, env = "PODCREDS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Name reported on Events and used as leader-election identity (the chart sets the pod name).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Elect a leader through a Lease so that only one replica writes; the others keep their
    /// caches warm and take over within about --leader-election-lease-seconds.
    #[arg(long, env = "PODCREDS_LEADER_ELECTION")]
    pub leader_election: bool,
    /// The operator's own namespace: where the Secrets of AWSCredentialSources are read (and
    /// nowhere else), and where the SAML signing key Secret lives. Without it, bindings naming a
    /// credential source are refused.
    #[arg(
        long = "namespace",
        env = "POD_NAMESPACE",
        required_if_eq("saml_enabled", "true"),
        required_if_eq("rolesanywhere_enabled", "true"),
        required_if_eq("broker_enabled", "true")
    )]
    pub operator_namespace: Option<String>,
    /// Serve AWSCredentialSources (needs read access to them cluster-wide and to the Secrets of
    /// --namespace). `false` ignores them: bindings naming one are refused.
    #[arg(long, env = "PODCREDS_CREDENTIAL_SOURCES", default_value_t = true, action = clap::ArgAction::Set)]
    pub credential_sources: bool,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", required_if_eq("leader_election", "true"))]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "PODCREDS_LEADER_ELECTION_LEASE",
        default_value = "podcreds-leader"
    )]
    pub leader_election_lease: String,
    /// How long a leader's Lease is valid without renewal (seconds).
    #[arg(long, env = "PODCREDS_LEADER_ELECTION_LEASE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(4..=300))]
    pub leader_election_lease_seconds: u64,
}

/// A value that may hold credentials: never shown by `Debug`, nor by clap's errors (it has none).
fn secret_value(value: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(secrecy::SecretString::from(value.to_string()))
}

/// `<namespace>/<name>` of a ServiceAccount.
pub fn parse_service_account(text: &str) -> Result<(String, String), String> {
    crate::spec::parse_service_account_ref(text)
        .map(|(namespace, name)| (namespace.to_string(), name.to_string()))
        .ok_or_else(|| format!("{text:?} is not <namespace>/<name> of a ServiceAccount"))
}

fn parse_installation(name: &str) -> Result<String, String> {
    if crate::installation::valid(name) {
        Ok(name.to_string())
    } else {
        Err("an installation name is a label value: 1 to 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit".into())
    }
}

impl RunArgs {
    /// The broker's configuration, if it is enabled.
    pub fn broker(&self) -> Option<crate::broker::BrokerConfig> {
        if !self.broker_enabled {
            return None;
        }
        let (agent_namespace, agent_name) = &self.agent_service_account;
        Some(crate::broker::BrokerConfig {
            address: self.broker_address,
            pod_ip: self.pod_ip?,
            namespace: self.operator_namespace.clone()?,
            ca_secret: self.broker_ca_secret.clone(),
            ca_configmap: self.broker_ca_configmap.clone(),
            settings: crate::broker::server::BrokerSettings {
                agent_user: crate::broker::authorize::service_account_user(
                    agent_namespace,
                    agent_name,
                ),
                agent_audience: self.agent_audience.clone(),
                pod_audience: self.endpoint_audience.clone(),
            },
        })
    }

    /// Who this operator is when it writes: its installation, and its deployment (the
    /// leader-election Lease replicas share, or this process).
    fn writer(&self) -> String {
        let deployment = if self.leader_election {
            format!(
                "{}/{}",
                self.leader_election_namespace.as_deref().unwrap_or("-"),
                self.leader_election_lease
            )
        } else {
            self.instance
                .clone()
                .unwrap_or_else(|| format!("pid-{}", std::process::id()))
        };
        format!("{}/{deployment}", self.installation)
    }

    /// The operator settings these flags describe.
    pub fn settings(&self) -> Settings {
        Settings {
            sts_policy: StsPolicy {
                default_region: self.default_region.clone(),
                default_endpoints: self
                    .sts_endpoint
                    .iter()
                    .chain(&self.sts_endpoints)
                    .filter(|e| !e.is_empty())
                    .cloned()
                    .collect(),
                default_audience: self.audience.clone(),
                allowed_audiences: self
                    .allowed_audiences
                    .iter()
                    .filter(|a| !a.is_empty())
                    .cloned()
                    .collect(),
                allowed_endpoints: self
                    .allowed_sts_endpoints
                    .iter()
                    .filter(|e| !e.is_empty())
                    .cloned()
                    .collect(),
                allow_unprefixed_session_names: self.allow_unprefixed_session_names,
                allow_insecure_endpoints: self.allow_insecure_sts_endpoints,
                cluster_name: self.cluster_name.clone().filter(|c| !c.is_empty()),
                default_saml_provider_arn: self.saml_provider_arn.clone().filter(|a| !a.is_empty()),
                allowed_saml_provider_arns: self
                    .saml_allowed_provider_arns
                    .iter()
                    .filter(|a| !a.is_empty())
                    .cloned()
                    .collect(),
                default_trust_anchor_arn: self
                    .rolesanywhere_trust_anchor_arn
                    .clone()
                    .filter(|a| !a.is_empty()),
                default_profile_arn: self
                    .rolesanywhere_profile_arn
                    .clone()
                    .filter(|a| !a.is_empty()),
                rolesanywhere_endpoint: self
                    .rolesanywhere_endpoint
                    .clone()
                    .filter(|e| !e.is_empty()),
                ecr_endpoint: self.ecr_endpoint.clone().filter(|e| !e.is_empty()),
            },
            roles_anywhere: crate::rolesanywhere::RolesAnywhereSettings {
                ca_namespace: self
                    .operator_namespace
                    .clone()
                    .filter(|n| self.rolesanywhere_enabled && !n.is_empty()),
                ca_secret: self.rolesanywhere_ca_secret.clone(),
                trust_domain: self.rolesanywhere_trust_domain.clone(),
            },
            saml: crate::saml::SamlSettings {
                entity_id: self.saml_entity_id.clone(),
                default_provider_arn: self.saml_provider_arn.clone().filter(|a| !a.is_empty()),
                key_namespace: self
                    .operator_namespace
                    .clone()
                    .filter(|n| self.saml_enabled && !n.is_empty()),
                key_secret: self.saml_key_secret.clone(),
            },
            sts_network: crate::settings::StsNetwork {
                proxy: self
                    .sts_proxy
                    .clone()
                    .filter(|p| !secrecy::ExposeSecret::expose_secret(p).is_empty()),
                no_proxy: self
                    .sts_no_proxy
                    .iter()
                    .filter(|h| !h.is_empty())
                    .cloned()
                    .collect(),
                endpoint_cooldown: self.sts_endpoint_cooldown,
            },
            token_expiration_seconds: self.token_expiration_seconds,
            concurrency: self.concurrency,
            namespace_concurrency: match self.namespace_concurrency {
                0 => (self.concurrency / 4).max(1),
                n => n.min(self.concurrency),
            },
            namespaces: self
                .namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
            sts_rate_per_second: self.sts_qps,
            sts_burst: self.sts_burst,
            kube_rate_per_second: self.kube_qps,
            kube_burst: self.kube_burst,
            require_role_allowlist: self.require_role_allowlist,
            operator_namespace: self
                .operator_namespace
                .clone()
                .filter(|n| self.credential_sources && !n.is_empty()),
            instance: self.instance.clone(),
            revocation_grace: self.revocation_grace_period,
            installation: self.installation.clone(),
            writer: self.writer(),
            watch_pods: self.watch_pods,
        }
    }
}

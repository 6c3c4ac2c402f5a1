//! Wiring for `podcreds run`: telemetry, the Kubernetes client, STS, metrics, the admin server,
//! the controllers and graceful shutdown.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::admission_check::PolicyState;
use crate::cli::{LogFormat, RunArgs};
use crate::controller::{self, Shared};
use crate::failover::EndpointHealth;
use crate::flow::{FlowDeps, Flows};
use crate::metrics::Metrics;
use crate::spec::is_plain_http;
use crate::sts::{AwsStsClient, StsProxy, StsTimeouts};
use crate::throttle::Throttle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid --log-level {0:?}: {1}")]
    LogFilter(String, String),
    #[error("no usable Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("cannot serve the admin address: {0}")]
    Admin(#[source] std::io::Error),
    #[error("leader election: {0}")]
    LeaderElection(String),
    #[error(transparent)]
    Policy(#[from] crate::spec::PolicyError),
    #[error(transparent)]
    Proxy(#[from] crate::sts::ProxyError),
    #[error("node endpoint broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
}

/// Runs leader election on a Lease, publishing whether this replica leads, until `shutdown`;
/// then releases the Lease so a standby takes over at once.
async fn lead(
    manager: kube_lease_manager::LeaseManager,
    leader: tokio::sync::watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            changed = manager.changed() => match changed {
                Ok(is_leader) => {
                    tracing::info!(is_leader, "leadership changed");
                    let _ = leader.send(is_leader);
                }
                Err(e) => {
                    // Without a confirmed Lease this replica must not write.
                    let _ = leader.send(false);
                    tracing::warn!(error = %e, "leader election failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            },
            _ = &mut shutdown => {
                let _ = leader.send(false);
                if let Err(e) = manager.release().await {
                    tracing::warn!(error = %e, "could not release the leader Lease");
                }
                return;
            }
        }
    }
}

/// Targets whose most verbose levels print HTTP messages whole, or could: the AWS SDK's
/// orchestrator logs every request and response at TRACE through their `Debug` form, which
/// prints a body held in memory byte for byte (the body of an `AssumeRoleWithWebIdentity` holds
/// the ServiceAccount token, `WebIdentityToken=`; of an `AssumeRoleWithSAML` the signed
/// assertion, `SAMLAssertion=`), and logs response bodies (the credentials) when
/// `LOG_SENSITIVE_BODIES` is set; SigV4 prints signed bodies when `LOG_SIGNABLE_BODY` is set; the
/// HTTP stacks below log frames. Whatever `--log-level` asks for, their events and spans above
/// [`TRANSPORT_LOG_CAP`] are dropped.
pub const CAPPED_TARGETS: [&str; 11] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_http",
    "aws_smithy_types",
    "aws_sigv4",
    "aws_sdk_sts",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
];

/// The most verbose level [`CAPPED_TARGETS`] may log at.
pub const TRANSPORT_LOG_CAP: tracing::Level = tracing::Level::DEBUG;

/// Whether an event or span of `target` at `level` is dropped whatever the log filter says.
pub fn capped(target: &str, level: &tracing::Level) -> bool {
    *level > TRANSPORT_LOG_CAP
        && CAPPED_TARGETS.iter().any(|t| {
            target
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// The operator's subscriber: `filter` (the `--log-level`), with [`CAPPED_TARGETS`] capped
/// on top of it, writing to `writer`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, StartError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| StartError::LogFilter(filter.to_string(), e.to_string()))?;
    let cap = tracing_subscriber::filter::filter_fn(|m| !capped(m.target(), m.level()));
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(writer);
    let registry = tracing_subscriber::registry();
    Ok(match format {
        LogFormat::Json => Box::new(
            registry.with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_filter(filter.and(cap)),
            ),
        ),
        LogFormat::Text => Box::new(registry.with(layer.with_filter(filter.and(cap)))),
    })
}

/// Installs the tracing subscriber once (a second call is a no-op).
pub fn init_telemetry(format: LogFormat, filter: &str) -> Result<(), StartError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = subscriber(format, filter, std::io::stdout)?.try_init();
    Ok(())
}

/// How long in-flight reconciliations get to finish after SIGTERM (the chart's
/// terminationGracePeriodSeconds is 30).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves once SIGTERM or SIGINT arrives.
pub async fn termination() {
    let sigterm = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = sigterm => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("termination signal received; shutting down");
}

/// Runs the operator until a termination signal.
pub async fn run(args: RunArgs) -> Result<(), StartError> {
    init_telemetry(args.log_format, &args.log_level)?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let settings = args.settings();
    if let Err(refused) = settings.sts_policy.check() {
        tracing::error!(error = %refused, "refusing to start");
        return Err(refused.into());
    }
    let proxy = match settings.sts_network.proxy() {
        Ok(proxy) => proxy,
        Err(refused) => {
            tracing::error!(error = %refused, "refusing to start");
            return Err(refused.into());
        }
    };
    for endpoint in settings.sts_policy.unusable_allowed_endpoints() {
        tracing::warn!(
            endpoint,
            "allowed STS endpoint is plain HTTP; bindings naming it are refused (InsecureEndpoint) without --allow-insecure-sts-endpoints"
        );
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        region = %settings.sts_policy.default_region,
        endpoints = ?settings.sts_policy.default_endpoints,
        sts_proxy = proxy.as_ref().map_or("none", StsProxy::shown),
        sts_proxy_authenticated = proxy.as_ref().is_some_and(StsProxy::authenticated),
        sts_no_proxy = proxy.as_ref().map_or("", StsProxy::no_proxy),
        sts_endpoint_cooldown = ?settings.sts_network.endpoint_cooldown,
        audience = %settings.sts_policy.default_audience,
        namespaces = ?settings.namespaces,
        installation = %settings.installation,
        writer = %settings.writer,
        "starting podcreds"
    );
    let client = kube::Client::try_default()
        .await
        .map_err(StartError::KubeConfig)?;
    if let Some(proxy) = &proxy {
        for endpoint in settings
            .sts_policy
            .default_endpoints
            .iter()
            .chain(&settings.sts_policy.allowed_endpoints)
            .filter(|e| is_plain_http(e))
        {
            tracing::warn!(
                endpoint,
                proxy = proxy.shown(),
                "plain-HTTP STS endpoint is reached directly, never through --sts-proxy (the proxy would see every token)"
            );
        }
    }
    let sts = Arc::new(AwsStsClient::new(StsTimeouts::default(), proxy.as_ref()));
    let ecr = Arc::new(crate::sts::HttpEcrClient::new(
        StsTimeouts::default(),
        proxy.as_ref(),
    ));
    // Key rings are created at start so `podcreds saml-metadata` / `podcreds rolesanywhere
    // trust-anchor` have a key to print before any binding exists; a failure here is not fatal
    // (exchanges try again and report it).
    let rings = [
        (
            settings.saml.key_namespace.as_deref(),
            &settings.saml.key_secret,
            &crate::keyring::SAML,
        ),
        (
            settings.roles_anywhere.ca_namespace.as_deref(),
            &settings.roles_anywhere.ca_secret,
            &crate::keyring::ROLES_ANYWHERE_CA,
        ),
    ];
    for (namespace, name, profile) in rings {
        let Some(namespace) = namespace else { continue };
        let secret = crate::keyring::KeySecret::new(client.clone(), namespace, name, profile);
        match secret.ensure().await {
            Ok(ring) => tracing::info!(
                keys = profile.what,
                certificate_sha256 = %ring.active.fingerprint(),
                announced = ring.announced_certificates().len(),
                "key ring ready"
            ),
            Err(e) => tracing::warn!(
                keys = profile.what,
                error = %e,
                "key ring unavailable; exchanges needing it will retry"
            ),
        }
    }

    let metrics = Metrics::default();
    let stores: controller::BindingStores = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::default();
    metrics.register(&mut registry, stores.clone());

    let shutdown = termination().boxed().shared();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let names: Vec<String> = args
        .admission_policy_names
        .iter()
        .filter(|n| !n.is_empty())
        .cloned()
        .collect();
    let policies = (!names.is_empty()).then(|| {
        let unchecked = names
            .iter()
            .map(|n| (n.clone(), PolicyState::Unchecked))
            .collect();
        let (state_tx, state_rx) = tokio::sync::watch::channel(unchecked);
        tokio::spawn(crate::admission_check::run(
            client.clone(),
            names,
            args.admission_policy_check_interval,
            state_tx,
            metrics.clone(),
        ));
        state_rx
    });
    let admin = crate::admin::serve(
        args.admin_address,
        Arc::new(registry),
        ready_rx,
        policies,
        shutdown.clone(),
    )
    .await
    .map_err(StartError::Admin)?;
    let admin = tokio::spawn(admin);

    let (leader_tx, leader_rx) = tokio::sync::watch::channel(!args.leader_election);
    let election = if args.leader_election {
        let namespace = args.leader_election_namespace.clone().ok_or_else(|| {
            StartError::LeaderElection("--leader-election-namespace is required".into())
        })?;
        let identity = args
            .instance
            .clone()
            .unwrap_or_else(|| format!("podcreds-{}", std::process::id()));
        let lease_seconds = args.leader_election_lease_seconds;
        let manager = kube_lease_manager::LeaseManagerBuilder::new(
            client.clone(),
            &args.leader_election_lease,
        )
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(lease_seconds)
        .with_grace((lease_seconds / 3).max(1))
        .with_field_manager(crate::secret::FIELD_MANAGER)
        .build()
        .await
        .map_err(|e| StartError::LeaderElection(e.to_string()))?;
        Some(tokio::spawn(lead(manager, leader_tx, shutdown.clone())))
    } else {
        drop(leader_tx);
        None
    };

    let endpoint = crate::broker::store::CredentialStore::default();
    // The composition root: the flows and what they share are built here, once.
    let throttle = Arc::new(Throttle::new(&settings));
    let (sources, source_feeds) = controller::source_caches(settings.operator_namespace.clone());
    let flow = Arc::new(Flows::new(
        FlowDeps {
            client: client.clone(),
            sts,
            throttle: throttle.clone(),
            metrics: metrics.clone(),
            token_expiration_seconds: settings.token_expiration_seconds,
            endpoint_health: Mutex::new(EndpointHealth::new(
                settings.sts_network.endpoint_cooldown,
            )),
        },
        sources.clone(),
        settings.saml.clone(),
        settings.roles_anywhere.clone(),
    ));
    let parts = controller::Parts {
        flow,
        ecr,
        throttle,
        sources,
        source_feeds,
        endpoint: endpoint.clone(),
    };
    let broker = match args.broker() {
        Some(config) => Some(
            crate::broker::start(
                client.clone(),
                config,
                endpoint.clone(),
                stores.clone(),
                leader_rx.clone(),
                metrics.clone(),
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let mut shared = Shared::new(client, settings, metrics, leader_rx, parts);
    if shared.settings.watch_pods {
        match eviction_client().await {
            Ok(client) => shared.eviction_client = client,
            Err(e) => {
                tracing::warn!(error = %e, "no client without retries for evictions; a refused eviction is reported only after the client's own retries")
            }
        }
    }
    let shared = Arc::new(shared);
    // Controllers whose caches never synced (an unreachable apiserver) do not notice a graceful
    // shutdown; after a grace period, exit anyway rather than hang until SIGKILL.
    let grace = async {
        shutdown.clone().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = controller::run(shared, stores, ready_tx, shutdown.clone()) => {}
        () = grace => tracing::warn!("controllers did not stop within {SHUTDOWN_GRACE:?}; exiting"),
    }
    if let Some(election) = election {
        // Releasing the Lease lets a standby take over at once; do not hang on it.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), election).await;
    }
    if let Some(broker) = broker {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), broker).await;
    }
    if let Ok(Err(e)) = admin.await {
        tracing::warn!(error = %e, "admin server stopped with an error");
    }
    tracing::info!("stopped");
    Ok(())
}

/// A client like the operator's whose requests are not retried on `429`, `503` or `504`: the
/// Eviction API answers a PodDisruptionBudget's refusal with `429` and `Retry-After`, which the
/// default client would wait out for minutes.
async fn eviction_client() -> Result<kube::Client, String> {
    let mut config = kube::Config::infer().await.map_err(|e| e.to_string())?;
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut out) = self.0.lock() {
                out.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn sts_request_bodies_never_reach_the_log_at_any_level() {
        for filter in [
            "trace",
            "aws_smithy_runtime=trace,hyper=trace,h2=trace,trace",
        ] {
            let captured = Captured::default();
            let sub = subscriber(LogFormat::Json, filter, captured.clone()).expect("filter");
            tracing::subscriber::with_default(sub, || {
                // What the SDK's orchestrator logs at TRACE for each request it transmits.
                tracing::trace!(
                    target: "aws_smithy_runtime::client::orchestrator",
                    request = "Action=AssumeRoleWithWebIdentity&WebIdentityToken=eyJhbGciOi",
                    "transmitting request"
                );
                tracing::trace!(target: "aws_sigv4::http_request::sign", "SAMLAssertion=PHNhbWxw");
                tracing::trace!(target: "hyper::proto::h1::io", "WebIdentityToken=eyJ");
                tracing::trace!(target: "h2", "SAMLAssertion=PHNhbWxw");
                // Everything else keeps its level, and the capped targets keep DEBUG.
                tracing::trace!(target: "podcreds::controller", "own trace line");
                tracing::trace!(target: "hyperactive", "another crate's trace line");
                tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "sdk debug line");
            });
            let out = String::from_utf8(captured.0.lock().map(|o| o.clone()).unwrap_or_default())
                .expect("utf-8");
            for needle in [
                "WebIdentityToken=",
                "SAMLAssertion=",
                "eyJ",
                "transmitting request",
            ] {
                assert!(!out.contains(needle), "{filter}: {needle} logged:\n{out}");
            }
            for kept in [
                "own trace line",
                "another crate's trace line",
                "sdk debug line",
            ] {
                assert!(out.contains(kept), "{filter}: {kept} missing:\n{out}");
            }
        }
    }

    #[test]
    fn only_the_transport_targets_are_capped() {
        use tracing::Level;
        assert!(capped(
            "aws_smithy_runtime::client::orchestrator",
            &Level::TRACE
        ));
        assert!(capped("hyper", &Level::TRACE));
        assert!(!capped("hyper", &Level::DEBUG));
        assert!(!capped("hyper_rustls", &Level::TRACE));
        assert!(!capped("podcreds::sts", &Level::TRACE));
        assert!(!capped("h2o", &Level::TRACE));
    }
}

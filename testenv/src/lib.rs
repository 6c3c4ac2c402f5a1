//! A real, local Kubernetes control plane for podcreds' end-to-end tests and demo: etcd,
//! kube-apiserver and (optionally) kube-controller-manager, built from source by
//! `cargo xtask testenv`, started on free loopback ports with throw-away PKI.
//!
//! Nothing here is skipped silently: a missing binary or a process that does not come up is an
//! [`Error`] that says what to run.
#![forbid(unsafe_code)]

mod client;
pub mod fixtures;
pub mod loopback;
pub mod moto;
pub mod netns;
pub mod node;
pub mod oci;
pub mod operator;
pub mod pki;
pub mod process;
pub mod registry;
pub mod release;
pub mod tools;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

pub use client::{
    UserAuth, client_from_kubeconfig, create_service_account, decode_secret, kubeconfig_yaml,
    secret_versions,
};
pub use operator::{Launch, Operator};
pub use process::{Process, free_port};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    MissingTool(String),
    #[error("certificates: {0}")]
    Pki(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{component} did not become ready: {reason}\n--- {component} log (tail) ---\n{log}")]
    NotReady {
        component: String,
        reason: String,
        log: String,
    },
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    KubeConfig(String),
    #[error("yaml: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("image: {0}")]
    Image(String),
    /// A node tool (`ctr`, `ip`) that ran and failed.
    #[error("{0}")]
    Command(String),
    /// Not in a network namespace of the run, or cannot enter one.
    #[error("network namespace: {0}")]
    Namespace(String),
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Options {
    /// Also run kube-controller-manager (garbage collection, namespace deletion, default ServiceAccounts).
    pub controller_manager: bool,
    /// Serve kube-apiserver's `/debug/pprof` (the benchmark's CPU profile of the apiserver).
    pub apiserver_profiling: bool,
    /// Also run a node (containerd and a kubelet, see [`node`]) so that pods really run. Off by
    /// default: it needs root and a network namespace of the run ([`netns`]), takes seconds to
    /// start, and most tests need no pods. The node's address is on a bridge of its own
    /// ([`node::PodNetwork`]) inside that namespace, so the apiserver reaches the kubelet there
    /// (`kubectl logs`, `exec`).
    pub node: bool,
    /// With `node`: what a chart's pods need. Pods on the node's bridge, the
    /// ServiceAccount admission plugin (token volumes), kube-scheduler, and the deployment,
    /// replicaset, daemonset (the node agent), disruption (PodDisruptionBudgets),
    /// root-ca-cert-publisher and node lifecycle (it lifts the node's `not-ready` taint)
    /// controllers.
    pub pod_network: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            controller_manager: true,
            apiserver_profiling: false,
            node: false,
            pod_network: false,
        }
    }
}

/// A running control plane. Dropping it stops every process and removes its files.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    etcd: Process,
    apiserver: Process,
    controller_manager: Option<Process>,
    scheduler: Option<Process>,
    node: Option<node::Node>,
    pod_network: Option<node::PodNetwork>,
    /// `https://127.0.0.1:<port>`; also the ServiceAccount token issuer.
    pub api_url: String,
    pub ca_pem: String,
    pub kubeconfig: PathBuf,
    ca: pki::Ca,
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents)?;
    Ok(())
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and (if asked) kube-controller-manager and waits until the
    /// apiserver is ready.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let etcd_bin = tools::binary("etcd")?;
        let apiserver_bin = tools::binary("kube-apiserver")?;
        let kcm_bin = if options.controller_manager {
            Some(tools::binary("kube-controller-manager")?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("podcreds-testenv-")
            .tempdir()?;
        let root = dir.path();

        // Pods of their own network (not the host's) are only possible on a node.
        let pods_networked = options.node && options.pod_network;
        let pod_network = if options.node {
            netns::require("a test node")?;
            Some(node::PodNetwork::create()?)
        } else {
            None
        };
        let ca = pki::Ca::new("podcreds-testenv-ca")?;
        let serving = ca.serving_with(
            &pod_network
                .iter()
                .map(|n| std::net::IpAddr::V4(n.gateway()))
                .collect::<Vec<_>>(),
        )?;
        let admin = ca.client("testenv-admin", &["system:masters"])?;
        // The apiserver's identity towards the kubelet (logs, exec, port-forward).
        let kubelet_client = ca.client("kube-apiserver-kubelet-client", &["system:masters"])?;
        let ca_pem = ca.cert_pem();
        write(&root.join("ca.pem"), &ca_pem)?;
        write(&root.join("serving.pem"), &serving.cert_pem)?;
        write(&root.join("serving-key.pem"), &serving.key_pem)?;
        write(&root.join("kubelet-client.pem"), &kubelet_client.cert_pem)?;
        write(
            &root.join("kubelet-client-key.pem"),
            &kubelet_client.key_pem,
        )?;
        let (sa_key, sa_pub) = pki::service_account_key()?;
        write(&root.join("sa.key"), &sa_key)?;
        write(&root.join("sa.pub"), &sa_pub)?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Process::spawn(
            "etcd",
            &etcd_bin,
            &[
                "--name=testenv".into(),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=testenv={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--quota-backend-bytes=8589934592".into(),
                "--log-level=warn".into(),
            ],
            &[],
            root,
        )?;

        let api_port = free_port()?;
        let api_url = format!("https://127.0.0.1:{api_port}");
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            format!("--cert-dir={}", root.join("certs").display()),
            format!("--tls-cert-file={}", root.join("serving.pem").display()),
            format!(
                "--tls-private-key-file={}",
                root.join("serving-key.pem").display()
            ),
            format!("--client-ca-file={}", root.join("ca.pem").display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-issuer={api_url}"),
            format!(
                "--service-account-key-file={}",
                root.join("sa.pub").display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                root.join("sa.key").display()
            ),
            // As on hardened clusters: setting blockOwnerDeletion on an owner reference
            // needs `update` on the owner's `finalizers` subresource.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            "--allow-privileged=true".into(),
            format!("--profiling={}", options.apiserver_profiling),
            // The test node's address is on its bridge, inside the run's namespace (see `node`).
            "--kubelet-preferred-address-types=InternalIP".into(),
            format!(
                "--kubelet-client-certificate={}",
                root.join("kubelet-client.pem").display()
            ),
            format!(
                "--kubelet-client-key={}",
                root.join("kubelet-client-key.pem").display()
            ),
            "--v=1".into(),
        ];
        // Without a node nothing creates the default ServiceAccounts that plugin insists on; with
        // a pod network the chart's pods need the token volumes it adds.
        if !pods_networked {
            apiserver_args.push("--disable-admission-plugins=ServiceAccount".into());
        }
        let apiserver =
            Process::spawn("kube-apiserver", &apiserver_bin, &apiserver_args, &[], root)?;

        let kubeconfig = root.join("admin.kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(&api_url, &ca_pem, &UserAuth::Certificate(admin)),
        )?;

        let mut plane = Self {
            dir,
            etcd,
            apiserver,
            controller_manager: None,
            scheduler: None,
            node: None,
            pod_network,
            api_url,
            ca_pem,
            kubeconfig,
            ca,
        };
        plane.wait_ready().await?;
        plane.allow_anonymous_issuer_discovery().await?;
        if let Some(bin) = kcm_bin {
            let root = plane.dir.path().to_path_buf();
            plane.controller_manager = Some(Process::spawn(
                "kube-controller-manager",
                &bin,
                &[
                    format!("--kubeconfig={}", plane.kubeconfig.display()),
                    format!(
                        "--service-account-private-key-file={}",
                        root.join("sa.key").display()
                    ),
                    format!("--root-ca-file={}", root.join("ca.pem").display()),
                    if pods_networked {
                        "--controllers=garbagecollector,namespace,serviceaccount,deployment,replicaset,daemonset,disruption,root-ca-cert-publisher,nodelifecycle".into()
                    } else {
                        "--controllers=garbagecollector,namespace,serviceaccount".into()
                    },
                    "--secure-port=0".into(),
                    "--leader-elect=false".into(),
                    "--concurrent-gc-syncs=5".into(),
                    "--v=1".into(),
                ],
                &[],
                &root,
            )?);
        }
        if pods_networked {
            let root = plane.dir.path().to_path_buf();
            plane.scheduler = Some(Process::spawn(
                "kube-scheduler",
                &tools::binary("kube-scheduler")?,
                &[
                    format!("--kubeconfig={}", plane.kubeconfig.display()),
                    "--leader-elect=false".into(),
                    "--bind-address=127.0.0.1".into(),
                    format!("--secure-port={}", free_port()?),
                    "--v=1".into(),
                ],
                &[],
                &root,
            )?);
        }
        if options.node {
            let admin = plane.client().await?;
            let root = plane.dir.path().to_path_buf();
            let network = plane
                .pod_network
                .as_ref()
                .ok_or_else(|| Error::Command("a node without its network".into()))?;
            let node = node::Node::start(
                &root,
                node::Cluster {
                    api_url: &plane.api_url,
                    ca: &plane.ca,
                    ca_pem: &plane.ca_pem,
                    admin: &admin,
                    admin_kubeconfig: &plane.kubeconfig,
                },
                network,
                pods_networked,
            )
            .await?;
            plane.node = Some(node);
        }
        Ok(plane)
    }

    /// The node's network (its bridge), if [`Options::node`] asked for a node; with
    /// [`Options::pod_network`] pods join it too.
    pub fn pod_network(&self) -> Option<&node::PodNetwork> {
        self.pod_network.as_ref()
    }

    /// The apiserver's port.
    pub fn api_port(&self) -> u16 {
        self.api_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(443)
    }

    /// The node, if [`Options::node`] asked for one.
    pub fn node(&self) -> Option<&node::Node> {
        self.node.as_ref()
    }

    /// Process ids of kube-apiserver and etcd, for the benchmark's CPU accounting.
    pub fn pids(&self) -> (u32, u32) {
        (self.apiserver.pid(), self.etcd.pid())
    }

    /// The directory holding this control plane's files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let client = self.client().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let mut last;
        loop {
            for p in [&mut self.etcd, &mut self.apiserver] {
                if let Some(status) = p.exited() {
                    return Err(Error::NotReady {
                        component: p.name().into(),
                        reason: format!("exited with {status}"),
                        log: p.log_tail(40),
                    });
                }
            }
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::KubeConfig(e.to_string()))?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = body,
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: "kube-apiserver".into(),
                    reason: last,
                    log: self.apiserver.log_tail(40),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// STS-style verifiers fetch the issuer's discovery document and JWKS anonymously.
    async fn allow_anonymous_issuer_discovery(&self) -> Result<(), Error> {
        let api: Api<ClusterRoleBinding> = Api::all(self.client().await?);
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("testenv:anonymous-issuer-discovery".into()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "system:service-account-issuer-discovery".into(),
            },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Group".into(),
                name: "system:unauthenticated".into(),
                namespace: None,
            }]),
        };
        api.patch(
            "testenv:anonymous-issuer-discovery",
            &PatchParams::apply("testenv").force(),
            &Patch::Apply(&binding),
        )
        .await?;
        Ok(())
    }

    /// An admin (system:masters) client.
    pub async fn client(&self) -> Result<Client, Error> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// Writes a kubeconfig for a user with a client certificate and returns its path.
    pub fn user_kubeconfig(&self, name: &str, groups: &[&str]) -> Result<PathBuf, Error> {
        let cert = self.ca.client(name, groups)?;
        let path = self.dir.path().join(format!("user-{name}.kubeconfig"));
        write(
            &path,
            &kubeconfig_yaml(&self.api_url, &self.ca_pem, &UserAuth::Certificate(cert)),
        )?;
        Ok(path)
    }

    /// Writes a kubeconfig that authenticates with `token` (for example a ServiceAccount's).
    pub fn token_kubeconfig(&self, label: &str, token: &str) -> Result<PathBuf, Error> {
        let path = self.dir.path().join(format!("token-{label}.kubeconfig"));
        write(
            &path,
            &kubeconfig_yaml(
                &self.api_url,
                &self.ca_pem,
                &UserAuth::Token(token.to_string()),
            ),
        )?;
        Ok(path)
    }

    /// Creates or updates the CRDs in a multi-document YAML and waits until they are established.
    pub async fn install_crds(&self, yaml: &str) -> Result<(), Error> {
        use serde::Deserialize;
        let api: Api<CustomResourceDefinition> = Api::all(self.client().await?);
        // Parse first: the YAML parser is not Send, so it must not live across an await.
        let crds = serde_yaml::Deserializer::from_str(yaml)
            .map(CustomResourceDefinition::deserialize)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = Vec::new();
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(
                &name,
                &PatchParams::apply("testenv").force(),
                &Patch::Apply(&crd),
            )
            .await?;
            names.push(name);
        }
        for name in names {
            let cond = kube::runtime::conditions::is_crd_established();
            let wait = kube::runtime::wait::await_condition(api.clone(), &name, cond);
            tokio::time::timeout(Duration::from_secs(30), wait)
                .await
                .map_err(|_| Error::NotReady {
                    component: format!("CRD {name}"),
                    reason: "not established within 30s".into(),
                    log: self.apiserver.log_tail(20),
                })?
                .map_err(|e| Error::KubeConfig(e.to_string()))?;
        }
        Ok(())
    }

    /// Creates a fresh namespace named `<prefix>-<random>` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> Result<String, Error> {
        let api: Api<Namespace> = Api::all(self.client().await?);
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = api.create(&PostParams::default(), &ns).await?;
        Ok(created.metadata.name.unwrap_or_default())
    }

    /// The last lines of every component's log, for failure reports.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for p in [
            Some(&self.etcd),
            Some(&self.apiserver),
            self.controller_manager.as_ref(),
            self.scheduler.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            out.push_str(&format!(
                "--- {} (last {lines} lines) ---\n{}\n",
                p.name(),
                p.log_tail(lines)
            ));
        }
        if let Some(node) = &self.node {
            out.push_str(&node.logs(lines));
        }
        out
    }

    /// Stops and restarts kube-apiserver with the same flags (watch breakage tests).
    pub async fn restart_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver.restart()?;
        self.wait_ready().await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // No new pod may be bound while the node goes; then the node: its containers, mounts and
        // shims live under the directory that is removed when the fields are dropped; then the
        // pod network it used.
        self.scheduler.take();
        self.node.take();
        self.pod_network.take();
    }
}

//! A real node for the test control plane: containerd (Debian's, with runc) and a kubelet built
//! from the same Kubernetes release, each with its own root, state and socket under the control
//! plane's directory, registered as node [`NODE_NAME`] with its address on a bridge of its own
//! ([`PodNetwork`]) inside the run's network namespace ([`crate::netns`]).
//!
//! What this machine needs, and why (see docs/testing.md): cgroup v1 with the cgroupfs driver,
//! no QoS cgroups and no node-allocatable enforcement; containerd's `restrict_oom_score_adj`
//! (negative OOM scores are forbidden here, even to root); a locally built pause image (nothing
//! can be pulled); without a pod network a CNI configuration holding only `loopback`, so pods use
//! `hostNetwork: true` (the run's namespace is their host); eviction and image garbage collection thresholds low enough that
//! a full shared disk never evicts a test pod or deletes an imported image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node as NodeObject;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use crate::oci::{self, Image};
use crate::pki::Ca;
use crate::process::{Process, free_port};
use crate::{Error, UserAuth, kubeconfig_yaml, tools};

mod network;
mod pods;

pub use network::PodNetwork;
pub use pods::{
    POD_CLIENT_IMAGE, endpoint_client_pod, pod_client_image, pod_client_pod, static_program_image,
};

/// The node's name. Its address (`InternalIP`, what the apiserver dials for logs and exec) is its
/// bridge's: the kubelet refuses a loopback `--node-ip`, and the machine's own interfaces are not
/// in the run's namespace.
pub const NODE_NAME: &str = "podcreds-test-node";

/// The pause image every pod sandbox runs: busybox `sleep`, built here.
pub const PAUSE_IMAGE: &str = "localhost/podcreds-testenv/pause:1";

/// Debian programs the SAML tests verify signatures with (the STS emulator runs `xmlsec1`).
pub const SAML_PROGRAMS: [(&str, &str); 1] = [("/usr/bin/xmlsec1", "xmlsec1")];

/// Programs the node takes from Debian packages, with the package to install.
pub const HOST_PROGRAMS: [(&str, &str); 7] = [
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/containerd-shim-runc-v2", "containerd"),
    ("/usr/bin/ctr", "containerd"),
    ("/usr/sbin/runc", "runc"),
    ("/usr/lib/cni/loopback", "containernetworking-plugins"),
    ("/bin/busybox", "busybox-static"),
    ("/bin/ip", "iproute2"),
];

/// A running node. Dropping it stops the kubelet, every container, containerd and their shims,
/// and unmounts what they mounted.
pub struct Node {
    dir: PathBuf,
    socket: PathBuf,
    /// Pods are deleted through the API first, so that the kubelet tears their network down
    /// (veth, namespace) before the node stops.
    admin_kubeconfig: PathBuf,
    containerd: Process,
    kubelet: Option<Process>,
}

fn missing_host_programs() -> Vec<String> {
    HOST_PROGRAMS
        .iter()
        .filter(|(path, _)| !Path::new(path).is_file())
        .map(|(path, package)| format!("{path} (Debian package {package})"))
        .collect()
}

fn containerd_config(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  # One hosts.toml per registry (certs.d/<host:port>/hosts.toml), read at every pull: see
  # Node::trust_plain_http_registry.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
"#,
        socket = socket.display()
    )
}

struct KubeletPorts {
    port: u16,
    healthz: u16,
}

fn kubelet_config(
    dir: &Path,
    socket: &Path,
    ca_file: &Path,
    address: std::net::Ipv4Addr,
    ports: &KubeletPorts,
) -> String {
    let d = dir.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
containerRuntimeEndpoint: unix://{socket}
podLogsDir: {d}/pod-logs
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
"#,
        port = ports.port,
        healthz = ports.healthz,
        socket = socket.display(),
        ca = ca_file.display(),
    )
}

/// The control plane a node registers with.
pub(crate) struct Cluster<'a> {
    pub api_url: &'a str,
    pub ca: &'a Ca,
    pub ca_pem: &'a str,
    pub admin: &'a Client,
    pub admin_kubeconfig: &'a Path,
}

impl Node {
    /// Starts containerd, imports the pause image, registers a kubelet with `cluster` at the
    /// address of `network` and waits until the node is Ready. With `pods_networked`, pods get
    /// addresses on `network`'s bridge; otherwise they need `hostNetwork: true`.
    pub(crate) async fn start(
        root: &Path,
        cluster: Cluster<'_>,
        network: &PodNetwork,
        pods_networked: bool,
    ) -> Result<Self, Error> {
        let Cluster {
            api_url,
            ca,
            ca_pem,
            admin,
            admin_kubeconfig,
        } = cluster;
        let missing = missing_host_programs();
        if !missing.is_empty() {
            return Err(Error::MissingTool(format!(
                "a test node needs {}; run `cargo xtask testenv` (it installs them with apt-get)",
                missing.join(", ")
            )));
        }
        let kubelet_bin = tools::binary("kubelet")?;
        let dir = root.join("node");
        for sub in [
            "containerd",
            "cni",
            "kubelet",
            "pod-logs",
            "images",
            "certs.d",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let socket = dir.join("containerd.sock");
        std::fs::write(
            dir.join("containerd.toml"),
            containerd_config(&dir, &socket),
        )?;
        let cni = if pods_networked {
            network.cni_config(&dir)
        } else {
            r#"{"cniVersion":"1.0.0","name":"loopback-only","plugins":[{"type":"loopback"}]}"#
                .to_string()
        };
        std::fs::write(dir.join("cni/10-test.conflist"), cni)?;
        let containerd = Process::spawn(
            "containerd",
            Path::new("/usr/bin/containerd"),
            &[
                format!("--config={}", dir.join("containerd.toml").display()),
                "--log-level=warn".into(),
            ],
            &[],
            &dir,
        )?;
        let mut node = Self {
            dir: dir.clone(),
            socket,
            admin_kubeconfig: admin_kubeconfig.to_path_buf(),
            containerd,
            kubelet: None,
        };
        node.wait_for_containerd().await?;

        let pause = Image {
            name: PAUSE_IMAGE.into(),
            entries: vec![oci::busybox_applet("sleep")?],
            entrypoint: vec!["/bin/sleep".into(), "2147483647".into()],
            ..Image::default()
        };
        let archive = dir.join("images/pause.tar");
        pause.write_archive(&archive)?;
        node.import_image(&archive)?;

        // The kubelet's identity: a client certificate from the test CA, bound to the
        // `system:node` role (the test apiserver authorizes with RBAC only, no Node authorizer).
        let user = format!("system:node:{NODE_NAME}");
        let cert = ca.client(&user, &["system:nodes"])?;
        let kubeconfig = dir.join("kubelet.kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(api_url, ca_pem, &UserAuth::Certificate(cert)),
        )?;
        bind_node_role(admin, &user).await?;

        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_pem)?;
        let ports = KubeletPorts {
            port: free_port()?,
            healthz: free_port()?,
        };
        let config = dir.join("kubelet.yaml");
        std::fs::write(
            &config,
            kubelet_config(&dir, &node.socket, &ca_file, network.gateway(), &ports),
        )?;
        node.kubelet = Some(Process::spawn(
            "kubelet",
            &kubelet_bin,
            &[
                format!("--config={}", config.display()),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--root-dir={}", dir.join("kubelet").display()),
                format!("--cert-dir={}", dir.join("kubelet-pki").display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={}", network.gateway()),
                "--v=1".into(),
            ],
            &[],
            &dir,
        )?);
        node.wait_ready(admin).await?;
        Ok(node)
    }

    async fn wait_for_containerd(&mut self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.containerd.exited() {
                return Err(Error::NotReady {
                    component: "containerd".into(),
                    reason: format!("exited with {status}"),
                    log: self.containerd.log_tail(30),
                });
            }
            if self.socket.exists() && self.ctr(&["version"]).is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: "containerd".into(),
                    reason: "its socket did not answer within 30s".into(),
                    log: self.containerd.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_ready(&mut self, admin: &Client) -> Result<(), Error> {
        let nodes: Api<NodeObject> = Api::all(admin.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut last = String::from("not registered");
        loop {
            if let Some(kubelet) = self.kubelet.as_mut()
                && let Some(status) = kubelet.exited()
            {
                return Err(Error::NotReady {
                    component: "kubelet".into(),
                    reason: format!("exited with {status}"),
                    log: kubelet.log_tail(40),
                });
            }
            if let Ok(node) = nodes.get(NODE_NAME).await {
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_ == "Ready");
                match ready {
                    Some(c) if c.status == "True" => return Ok(()),
                    Some(c) => {
                        last = format!(
                            "Ready={} {}: {}",
                            c.status,
                            c.reason.unwrap_or_default(),
                            c.message.unwrap_or_default()
                        )
                    }
                    None => last = "registered, no Ready condition yet".into(),
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: "kubelet".into(),
                    reason: format!("node {NODE_NAME} not Ready within 120s ({last})"),
                    log: self.logs(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Runs `ctr` against this node's containerd in the `k8s.io` namespace (the CRI's).
    fn ctr(&self, args: &[&str]) -> Result<String, Error> {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .map_err(|e| Error::MissingTool(format!("cannot run ctr (containerd): {e}")))?;
        if !output.status.success() {
            return Err(Error::Command(format!(
                "ctr {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Imports an OCI archive into the node's image store, as `ctr -n k8s.io images import`;
    /// pods then run it with `imagePullPolicy: Never` (or `IfNotPresent`).
    pub fn import_image(&self, archive: &Path) -> Result<(), Error> {
        self.ctr(&["images", "import", &archive.to_string_lossy()])
            .map(|_| ())
    }

    /// Writes `image` as `<node dir>/images/<file_name>` and imports it.
    pub fn import_built_image(&self, file_name: &str, image: &Image) -> Result<(), Error> {
        let archive = self.dir().join("images").join(file_name);
        image.write_archive(&archive)?;
        self.import_image(&archive)
    }

    /// Lets the kubelet pull images from the registry at `host` (`127.0.0.1:<port>`) over plain
    /// HTTP: containerd's hosts file for that registry (`certs.d/<host>/hosts.toml`), the way a
    /// node is pointed at a mirror or a private registry. containerd reads it at every pull, so
    /// this takes effect without a restart. Without it, containerd speaks HTTPS to the registry.
    pub fn trust_plain_http_registry(&self, host: &str) -> Result<(), Error> {
        let dir = self.dir.join("certs.d").join(host);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        Ok(())
    }

    /// Names of the images the node holds.
    pub fn images(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .ctr(&["images", "ls", "-q"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// A directory for image archives and other files of this node.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the kubelet writes container logs: `<ns>_<pod>_<uid>/<container>/<restart>.log`.
    pub fn pod_logs_dir(&self) -> PathBuf {
        self.dir.join("pod-logs")
    }

    /// The log files of `container` in pod `namespace/pod`, oldest restart first.
    pub fn container_log_files(&self, namespace: &str, pod: &str, container: &str) -> Vec<PathBuf> {
        let prefix = format!("{namespace}_{pod}_");
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.pod_logs_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .flat_map(|e| {
                std::fs::read_dir(e.path().join(container))
                    .into_iter()
                    .flatten()
            })
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        files
    }

    /// The lines `container` printed (the CRI log prefix of time, stream and tag removed).
    pub fn container_output(&self, namespace: &str, pod: &str, container: &str) -> Vec<String> {
        self.container_log_files(namespace, pod, container)
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The tails of the containerd and kubelet logs.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = format!(
            "--- containerd (last {lines} lines) ---\n{}\n",
            self.containerd.log_tail(lines)
        );
        if let Some(kubelet) = &self.kubelet {
            out.push_str(&format!(
                "--- kubelet (last {lines} lines) ---\n{}\n",
                kubelet.log_tail(lines)
            ));
        }
        out
    }

    /// Process ids of shims serving this node's containerd (found by its socket on their command line).
    fn shim_pids(&self) -> Vec<u32> {
        let socket = self.socket.to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let args: Vec<String> = c
                        .split(|b| *b == 0)
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    args.first().is_some_and(|a| a.contains("containerd-shim"))
                        && args.iter().any(|a| a == &socket)
                })
            })
            .collect()
    }

    /// Mount points under this node's directory, deepest first.
    fn mounts(&self) -> Vec<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        mounts.dedup();
        mounts
    }
}

async fn bind_node_role(admin: &Client, user: &str) -> Result<(), Error> {
    let api: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let name = "testenv:node";
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "system:node".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.into(),
            namespace: None,
        }]),
    };
    api.patch(
        name,
        &PatchParams::apply("testenv").force(),
        &Patch::Apply(&binding),
    )
    .await?;
    Ok(())
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(kubectl) = tools::binary("kubectl") {
            let kubeconfig = &self.admin_kubeconfig;
            let _ = Command::new(kubectl)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["delete", "pods", "--all", "--all-namespaces"])
                .args(["--grace-period=0", "--force", "--wait=false"])
                .output();
            for _ in 0..60 {
                match self.ctr(&["tasks", "ls", "-q"]) {
                    Ok(tasks) if tasks.trim().is_empty() => break,
                    Err(_) => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(250)),
                }
            }
        }
        // The kubelet first, so that it restarts nothing; then every container (a stopped
        // containerd leaves its containers and shims running); then containerd.
        if let Some(mut kubelet) = self.kubelet.take() {
            let _ = kubelet.kill();
        }
        if let Ok(tasks) = self.ctr(&["tasks", "ls", "-q"]) {
            for id in tasks.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
            }
            for id in tasks.lines().filter(|l| !l.is_empty()) {
                for _ in 0..20 {
                    if self.ctr(&["tasks", "delete", id]).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = self.containerd.terminate();
        for pid in self.shim_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for mount in self.mounts() {
            let _ = Command::new("umount").args(["-l", &mount]).status();
        }
    }
}

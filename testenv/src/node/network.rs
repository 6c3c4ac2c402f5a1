//! The test node's pod network: a bridge of its own in the run's network namespace.

use std::path::Path;
use std::process::Command;

use crate::Error;

/// The test node's network: a bridge with a private /24 (from 10.249.0.0/16) in the run's
/// network namespace; its address is the node's (the kubelet listens there). With a pod network,
/// pods join it with no default route, so they reach only the bridge's own address. What pods
/// must reach on loopback (the apiserver, the STS emulator) is exposed on the bridge address by
/// [`PodNetwork::expose`]. Dropping it removes the bridge (and the namespace's end removes
/// anything left).
pub struct PodNetwork {
    bridge: String,
    subnet: String,
    gateway: std::net::Ipv4Addr,
    forwarders: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

fn ip(args: &[&str]) -> Result<String, Error> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::MissingTool(format!("cannot run ip (iproute2): {e}")))?;
    if !output.status.success() {
        return Err(Error::Command(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl PodNetwork {
    /// Creates a bridge `pcbr<N>` with address 10.249.N.1/24, for the first N no interface of
    /// this machine uses.
    pub fn create() -> Result<Self, Error> {
        crate::netns::require("a test node's bridge")?;
        let addresses = ip(&["-4", "-o", "addr"])?;
        let links = ip(&["-o", "link"])?;
        let mut last_error = None;
        for n in 0..=255u8 {
            let subnet = format!("10.249.{n}");
            let bridge = format!("pcbr{n}");
            if addresses.contains(&format!(" {subnet}.")) || links.contains(&format!(" {bridge}:"))
            {
                continue;
            }
            // Another run may take the same one between the listing and here: then try the next.
            if let Err(e) = ip(&["link", "add", &bridge, "type", "bridge"]) {
                last_error = Some(e);
                continue;
            }
            let network = Self {
                bridge: bridge.clone(),
                subnet: format!("{subnet}.0/24"),
                gateway: std::net::Ipv4Addr::new(10, 249, n, 1),
                forwarders: std::sync::Mutex::new(Vec::new()),
            };
            ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge])?;
            ip(&["link", "set", &bridge, "up"])?;
            return Ok(network);
        }
        Err(last_error.unwrap_or_else(|| {
            Error::Command("no free 10.249.N.0/24 subnet for a test pod network".into())
        }))
    }

    /// The bridge's address: what pods reach the host at.
    pub fn gateway(&self) -> std::net::Ipv4Addr {
        self.gateway
    }

    pub(super) fn cni_config(&self, dir: &Path) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "podcreds-test",
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": dir.join("cni-ipam"),
                    "ranges": [[{"subnet": self.subnet, "gateway": self.gateway.to_string()}]],
                    // Only the bridge's subnet, and the node endpoint's link-local address
                    // (on the host, where podcreds' agent adds it): no default route, nothing
                    // beyond this machine.
                    "routes": [
                        {"dst": self.subnet},
                        {"dst": "169.254.170.23/32", "gw": self.gateway.to_string()},
                    ],
                },
            }],
        })
        .to_string()
    }

    /// Listens on the bridge address and forwards every connection to `127.0.0.1:<port>`;
    /// returns the port pods connect to.
    pub async fn expose(&self, port: u16) -> Result<u16, Error> {
        let listener = tokio::net::TcpListener::bind((self.gateway, 0)).await?;
        let exposed = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        if let Ok(mut forwarders) = self.forwarders.lock() {
            forwarders.push(task.abort_handle());
        }
        Ok(exposed)
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        if let Ok(forwarders) = self.forwarders.lock() {
            for f in forwarders.iter() {
                f.abort();
            }
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

//! Finding the broker: the leading operator replica, named by the leader-election Lease's
//! holder, at its pod's IP; and the CA its certificate chains to, from the ConfigMap the
//! operator publishes. The agent may read exactly these three objects of the operator's
//! namespace.

use std::net::IpAddr;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Api;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("reading {what} {namespace}/{name}: {reason}")]
    Read {
        what: &'static str,
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("the Lease {0} names no leader (is the operator running, with leader election?)")]
    NoHolder(String),
    #[error("the leading pod {0} has no IP yet")]
    NoIp(String),
    #[error("ConfigMap {0} holds no CA certificate under ca.crt")]
    NoCa(String),
}

impl LeaderError {
    pub fn category(&self) -> &'static str {
        match self {
            LeaderError::Read { .. } => "KubeApiError",
            LeaderError::NoHolder(_) | LeaderError::NoIp(_) => "NoLeader",
            LeaderError::NoCa(_) => "NoBrokerCa",
        }
    }
}

/// The leader's pod name, as the Lease holds it.
pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// The pod's IP.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

pub struct Finder {
    namespace: String,
    lease: String,
    configmap: String,
    leases: Api<Lease>,
    pods: Api<Pod>,
    configmaps: Api<ConfigMap>,
}

impl Finder {
    pub fn new(client: kube::Client, namespace: &str, lease: &str, configmap: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            lease: lease.to_string(),
            configmap: configmap.to_string(),
            leases: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            configmaps: Api::namespaced(client, namespace),
        }
    }

    fn read_error(&self, what: &'static str, name: &str, e: kube::Error) -> LeaderError {
        LeaderError::Read {
            what,
            namespace: self.namespace.clone(),
            name: name.to_string(),
            reason: match e {
                kube::Error::Api(status) => crate::text::remote(&status.message),
                other => crate::text::remote(&other.to_string()),
            },
        }
    }

    /// The leader's pod name and IP.
    pub async fn leader(&self) -> Result<(String, IpAddr), LeaderError> {
        let lease = self
            .leases
            .get(&self.lease)
            .await
            .map_err(|e| self.read_error("Lease", &self.lease, e))?;
        let name = holder(&lease)
            .ok_or_else(|| LeaderError::NoHolder(self.lease.clone()))?
            .to_string();
        let pod = self
            .pods
            .get(&name)
            .await
            .map_err(|e| self.read_error("Pod", &name, e))?;
        let ip = pod_ip(&pod).ok_or_else(|| LeaderError::NoIp(name.clone()))?;
        Ok((name, ip))
    }

    /// The CA certificates (PEM) agents trust.
    pub async fn ca(&self) -> Result<String, LeaderError> {
        let map = self
            .configmaps
            .get(&self.configmap)
            .await
            .map_err(|e| self.read_error("ConfigMap", &self.configmap, e))?;
        map.data
            .and_then(|d| d.get(crate::broker::tls::CA_KEY).cloned())
            .filter(|pem| pem.contains("BEGIN CERTIFICATE"))
            .ok_or_else(|| LeaderError::NoCa(self.configmap.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::PodStatus;

    #[test]
    fn the_lease_holder_and_its_pod_ip_locate_the_broker() {
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some("podcreds-7d9-x".into()),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        assert_eq!(holder(&lease), Some("podcreds-7d9-x"));
        assert_eq!(holder(&Lease::default()), None);
        let released = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        assert_eq!(holder(&released), None);
        let pod = Pod {
            status: Some(PodStatus {
                pod_ip: Some("10.249.0.7".into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        assert_eq!(pod_ip(&pod), Some("10.249.0.7".parse().expect("ip")));
        assert_eq!(pod_ip(&Pod::default()), None);
    }
}

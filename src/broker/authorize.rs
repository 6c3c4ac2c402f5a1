//! Who may have a binding's credentials through the node endpoint (pure). The apiserver's
//! TokenReview has verified both tokens (signature, audience, expiry, and for a bound token that
//! its pod still exists with that UID); here its answers are read:
//!
//! - the agent's token must be the agent ServiceAccount's, bound to a pod on a node, and gives
//!   that node;
//! - the pod's token must be a ServiceAccount's, bound to a pod on the same node;
//! - the binding, named in the URL and looked up in the pod's namespace, must exist, list
//!   `Endpoint` in `spec.delivery`, name the pod's ServiceAccount and be Ready.
//!
//! Every refusal has a stable category, an HTTP status of the container-credentials protocol and
//! a message naming the fix; none carries a token or a credential.

use std::collections::BTreeMap;

pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// What TokenReview said about a token it authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Reviewed {
    pub username: String,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Reviewed {
    fn extra(&self, key: &str) -> Option<&str> {
        self.extra
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The node an authenticated agent runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub node: String,
}

/// The pod that asks, as its bound token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub service_account: String,
    pub name: String,
    pub uid: String,
    pub node: String,
}

/// What the broker knows of the binding a pod names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingFacts {
    pub uid: String,
    pub service_account: String,
    pub endpoint: bool,
    /// The Ready condition: `Ok(())` when True, else its reason.
    pub ready: Result<(), String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the request carries no pod token: set AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE to a projected ServiceAccount token with audience {audience}"
    )]
    PodTokenMissing { audience: String },
    #[error(
        "the pod's token was refused ({reason}): mount a projected ServiceAccount token with audience {audience} and point AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE at it"
    )]
    PodTokenRefused { reason: String, audience: String },
    #[error(
        "the pod's token is not a ServiceAccount token bound to a pod on a node: use a projected serviceAccountToken volume, not a token from a Secret or TokenRequest without a pod"
    )]
    PodTokenNotBound,
    #[error("the agent's token was refused ({reason})")]
    AgentTokenRefused { reason: String },
    #[error(
        "{username} is not the node agent's ServiceAccount ({expected}); only podcreds' agent may ask"
    )]
    NotTheAgent { username: String, expected: String },
    #[error("the agent's token is not bound to a pod on a node")]
    AgentNotBound,
    #[error(
        "pod {namespace}/{pod} runs on node {pod_node}, not on node {agent_node} of the agent asking; call the endpoint of the pod's own node (169.254.170.23)"
    )]
    OtherNode {
        namespace: String,
        pod: String,
        pod_node: String,
        agent_node: String,
    },
    #[error(
        "no AWSRoleBinding {name} in namespace {namespace}: the URL names a binding of the pod's own namespace (http://169.254.170.23/v1/credentials/<binding>)"
    )]
    BindingNotFound { namespace: String, name: String },
    #[error(
        "AWSRoleBinding {namespace}/{name} does not deliver through the node endpoint: add Endpoint to its spec.delivery"
    )]
    NotEndpoint { namespace: String, name: String },
    #[error(
        "AWSRoleBinding {namespace}/{name} binds ServiceAccount {bound}, and the pod runs as {pod_account}: run the pod as {bound}, or use a binding of {pod_account}"
    )]
    OtherServiceAccount {
        namespace: String,
        name: String,
        bound: String,
        pod_account: String,
    },
    #[error(
        "AWSRoleBinding {namespace}/{name} is not Ready ({reason}): kubectl describe awsrb -n {namespace} {name} says why"
    )]
    NotReady {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error(
        "the credentials of AWSRoleBinding {namespace}/{name} are being issued (the operator just started or took over); retry"
    )]
    NotIssuedYet { namespace: String, name: String },
    #[error("this operator replica does not lead; the agent retries on the leader")]
    NotLeader,
    #[error("the apiserver could not review a token: {0}")]
    ReviewUnavailable(String),
    #[error("the binding name {0:?} is not a Kubernetes object name")]
    BadBindingName(String),
}

impl Refusal {
    /// Stable, low-cardinality: the metric label and the error code in the answer.
    pub fn category(&self) -> &'static str {
        match self {
            Refusal::PodTokenMissing { .. } => "PodTokenMissing",
            Refusal::PodTokenRefused { .. } => "PodTokenRefused",
            Refusal::PodTokenNotBound => "PodTokenNotBound",
            Refusal::AgentTokenRefused { .. } => "AgentTokenRefused",
            Refusal::NotTheAgent { .. } => "NotTheAgent",
            Refusal::AgentNotBound => "AgentNotBound",
            Refusal::OtherNode { .. } => "OtherNode",
            Refusal::BindingNotFound { .. } => "BindingNotFound",
            Refusal::NotEndpoint { .. } => "NotEndpoint",
            Refusal::OtherServiceAccount { .. } => "OtherServiceAccount",
            Refusal::NotReady { .. } => "BindingNotReady",
            Refusal::NotIssuedYet { .. } => "NotIssuedYet",
            Refusal::NotLeader => "NotLeader",
            Refusal::ReviewUnavailable(_) => "ReviewUnavailable",
            Refusal::BadBindingName(_) => "BadBindingName",
        }
    }

    /// The HTTP status: 4xx when the caller must change something (SDKs do not retry), 5xx
    /// when waiting helps (SDKs retry).
    pub fn status(&self) -> u16 {
        match self {
            Refusal::PodTokenMissing { .. } | Refusal::BadBindingName(_) => 400,
            Refusal::PodTokenRefused { .. } | Refusal::AgentTokenRefused { .. } => 401,
            Refusal::PodTokenNotBound
            | Refusal::NotTheAgent { .. }
            | Refusal::AgentNotBound
            | Refusal::OtherNode { .. }
            | Refusal::NotEndpoint { .. }
            | Refusal::OtherServiceAccount { .. } => 403,
            Refusal::BindingNotFound { .. } => 404,
            Refusal::NotReady { .. }
            | Refusal::NotIssuedYet { .. }
            | Refusal::NotLeader
            | Refusal::ReviewUnavailable(_) => 503,
        }
    }
}

/// `system:serviceaccount:<namespace>:<name>` of a ServiceAccount.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

fn split_service_account(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// The agent, if `reviewed` is the agent ServiceAccount `expected`
/// (`system:serviceaccount:<ns>:<name>`) bound to a pod on a node.
pub fn agent(reviewed: &Reviewed, expected: &str) -> Result<Agent, Refusal> {
    if reviewed.username != expected {
        return Err(Refusal::NotTheAgent {
            username: reviewed.username.clone(),
            expected: expected.to_string(),
        });
    }
    match (
        reviewed.extra(EXTRA_POD_UID),
        reviewed.extra(EXTRA_NODE_NAME),
    ) {
        (Some(_), Some(node)) => Ok(Agent {
            node: node.to_string(),
        }),
        _ => Err(Refusal::AgentNotBound),
    }
}

/// The pod a reviewed pod token speaks for.
pub fn pod(reviewed: &Reviewed) -> Result<Pod, Refusal> {
    let (namespace, service_account) =
        split_service_account(&reviewed.username).ok_or(Refusal::PodTokenNotBound)?;
    match (
        reviewed.extra(EXTRA_POD_NAME),
        reviewed.extra(EXTRA_POD_UID),
        reviewed.extra(EXTRA_NODE_NAME),
    ) {
        (Some(name), Some(uid), Some(node)) => Ok(Pod {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
            node: node.to_string(),
        }),
        _ => Err(Refusal::PodTokenNotBound),
    }
}

/// Whether `pod`, asking through `agent`, may have the credentials of binding `name` of its
/// namespace (`binding`, if it exists).
pub fn authorize(
    agent: &Agent,
    pod: &Pod,
    name: &str,
    binding: Option<&BindingFacts>,
) -> Result<(), Refusal> {
    if pod.node != agent.node {
        return Err(Refusal::OtherNode {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            pod_node: pod.node.clone(),
            agent_node: agent.node.clone(),
        });
    }
    let binding = binding.ok_or_else(|| Refusal::BindingNotFound {
        namespace: pod.namespace.clone(),
        name: name.to_string(),
    })?;
    if !binding.endpoint {
        return Err(Refusal::NotEndpoint {
            namespace: pod.namespace.clone(),
            name: name.to_string(),
        });
    }
    if binding.service_account != pod.service_account {
        return Err(Refusal::OtherServiceAccount {
            namespace: pod.namespace.clone(),
            name: name.to_string(),
            bound: binding.service_account.clone(),
            pod_account: pod.service_account.clone(),
        });
    }
    binding.ready.clone().map_err(|reason| Refusal::NotReady {
        namespace: pod.namespace.clone(),
        name: name.to_string(),
        reason,
    })
}

/// Whether `name` can be an object name (a DNS subdomain), checked before any lookup.
pub fn binding_name(name: &str) -> Result<&str, Refusal> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(name)
    } else {
        Err(Refusal::BadBindingName(
            crate::text::cut(name, 64).to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "system:serviceaccount:podcreds-node:podcreds-agent";

    fn reviewed(username: &str, pod: Option<(&str, &str)>, node: Option<&str>) -> Reviewed {
        let mut extra = BTreeMap::new();
        if let Some((name, uid)) = pod {
            extra.insert(EXTRA_POD_NAME.to_string(), vec![name.to_string()]);
            extra.insert(EXTRA_POD_UID.to_string(), vec![uid.to_string()]);
        }
        if let Some(node) = node {
            extra.insert(EXTRA_NODE_NAME.to_string(), vec![node.to_string()]);
        }
        Reviewed {
            username: username.into(),
            extra,
        }
    }

    fn facts(sa: &str, endpoint: bool, ready: Result<(), String>) -> BindingFacts {
        BindingFacts {
            uid: "b-uid".into(),
            service_account: sa.into(),
            endpoint,
            ready,
        }
    }

    #[test]
    fn only_the_agent_account_bound_to_a_node_is_an_agent() {
        let a = agent(&reviewed(AGENT, Some(("agent-x", "u")), Some("n1")), AGENT);
        assert_eq!(a, Ok(Agent { node: "n1".into() }));
        let other = agent(
            &reviewed(
                "system:serviceaccount:team:app",
                Some(("p", "u")),
                Some("n1"),
            ),
            AGENT,
        );
        assert_eq!(other.map_err(|e| e.category()), Err("NotTheAgent"));
        // The agent's account with a token bound to no pod (a TokenRequest without a pod).
        let unbound = agent(&reviewed(AGENT, None, None), AGENT);
        assert_eq!(unbound.map_err(|e| e.status()), Err(403));
    }

    #[test]
    fn a_pod_token_must_be_a_service_account_bound_to_a_pod_on_a_node() {
        let p = pod(&reviewed(
            "system:serviceaccount:team:app",
            Some(("web-1", "pod-uid")),
            Some("n1"),
        ))
        .expect("pod");
        assert_eq!(
            p,
            Pod {
                namespace: "team".into(),
                service_account: "app".into(),
                name: "web-1".into(),
                uid: "pod-uid".into(),
                node: "n1".into(),
            }
        );
        for bad in [
            reviewed("system:serviceaccount:team:app", None, Some("n1")),
            reviewed("system:serviceaccount:team:app", Some(("p", "u")), None),
            reviewed("alice", Some(("p", "u")), Some("n1")),
            reviewed("system:serviceaccount:team", Some(("p", "u")), Some("n1")),
            reviewed("system:serviceaccount:a:b:c", Some(("p", "u")), Some("n1")),
        ] {
            assert_eq!(pod(&bad), Err(Refusal::PodTokenNotBound), "{bad:?}");
        }
    }

    #[test]
    fn every_condition_of_the_binding_and_node_is_checked() {
        let agent = Agent { node: "n1".into() };
        let pod = Pod {
            namespace: "team".into(),
            service_account: "app".into(),
            name: "web-1".into(),
            uid: "u".into(),
            node: "n1".into(),
        };
        let ok = facts("app", true, Ok(()));
        assert_eq!(authorize(&agent, &pod, "b", Some(&ok)), Ok(()));
        let elsewhere = Pod {
            node: "n2".into(),
            ..pod.clone()
        };
        let refused = |p: &Pod, f: Option<&BindingFacts>| {
            authorize(&agent, p, "b", f)
                .map_err(|e| (e.category(), e.status(), e.to_string()))
                .expect_err("refused")
        };
        let (category, status, message) = refused(&elsewhere, Some(&ok));
        assert_eq!((category, status), ("OtherNode", 403));
        assert!(
            message.contains("node n2") && message.contains("node n1"),
            "{message}"
        );
        assert_eq!(refused(&pod, None).0, "BindingNotFound");
        let (category, _, message) = refused(&pod, Some(&facts("app", false, Ok(()))));
        assert_eq!(category, "NotEndpoint");
        assert!(
            message.contains("add Endpoint to its spec.delivery"),
            "{message}"
        );
        let (category, _, message) = refused(&pod, Some(&facts("other", true, Ok(()))));
        assert_eq!(category, "OtherServiceAccount");
        assert!(message.contains("ServiceAccount other"), "{message}");
        let (category, status, message) = refused(
            &pod,
            Some(&facts("app", true, Err("StsAccessDenied".into()))),
        );
        assert_eq!((category, status), ("BindingNotReady", 503));
        assert!(message.contains("StsAccessDenied"), "{message}");
    }

    #[test]
    fn binding_names_are_checked_before_any_lookup() {
        assert_eq!(binding_name("reports-reader"), Ok("reports-reader"));
        for bad in ["", "../x", "A", "-x", "x-", "a/b", "a b"] {
            assert!(binding_name(bad).is_err(), "{bad}");
        }
    }
}

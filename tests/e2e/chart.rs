//! The Helm chart: lint, rendering with several value sets, and a real install whose RBAC is
//! proven sufficient (the operator runs as the chart's ServiceAccount) and minimal (what it does
//! not grant is refused), plus the admission policy against the confused deputy.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::helm::{
    binding_named, chart_dir, forbidden, grant, helm, helm_install, of_kind, refusal_of, render,
    rule, rules_grant, service_account_token, with_admission_policy,
};
use crate::support::{Env, spec, wait_for};

/// The ValidatingAdmissionPolicy whose name ends in `suffix`, as JSON text.
fn policy_named(docs: &[serde_json::Value], suffix: &str) -> anyhow::Result<String> {
    of_kind(docs, "ValidatingAdmissionPolicy")
        .into_iter()
        .find(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
        })
        .map(|p| p.to_string())
        .with_context(|| format!("no ValidatingAdmissionPolicy named *{suffix}"))
}

/// With `agent.enabled`: the DaemonSet has exactly the privileges the link-local address needs,
/// only in its own privileged namespace, and the operator gets its broker and nothing more.
async fn agent_renders_least_privilege(env: &Env) -> anyhow::Result<()> {
    let (ok, stdout, stderr) = helm(
        env,
        &[
            "lint",
            "--strict",
            chart_dir().to_str().context("path")?,
            "--set",
            "agent.enabled=true",
        ],
    )
    .await?;
    ensure!(
        ok,
        "helm lint --strict with the agent failed:\n{stdout}\n{stderr}"
    );
    let docs = render(env, &["agent.enabled=true"]).await?;
    let daemonset = of_kind(&docs, "DaemonSet")
        .first()
        .copied()
        .context("no agent DaemonSet")?;
    ensure!(daemonset["metadata"]["namespace"] == "podcreds-node");
    let pod = &daemonset["spec"]["template"]["spec"];
    ensure!(pod["hostNetwork"] == true);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    ensure!(security["capabilities"]["drop"] == json!(["ALL"]));
    ensure!(
        security["capabilities"]["add"] == json!(["NET_ADMIN", "NET_BIND_SERVICE"]),
        "agent capabilities {}",
        security["capabilities"]
    );
    ensure!(security["allowPrivilegeEscalation"] == false);
    ensure!(security["readOnlyRootFilesystem"] == true);
    ensure!(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
    ensure!(container["args"][0] == "agent");
    let volumes = pod["volumes"].as_array().context("volumes")?;
    ensure!(
        volumes.len() == 1
            && volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["audience"]
                == "podcreds.dev/broker",
        "the agent mounts more than its own broker token: {volumes:?}"
    );
    let namespace = of_kind(&docs, "Namespace")
        .first()
        .copied()
        .context("no agent Namespace")?;
    ensure!(namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged");
    // The operator's pods stay restricted; they only gain the broker's port and POD_IP.
    let deployment = of_kind(&docs, "Deployment")
        .first()
        .copied()
        .context("Deployment")?;
    let operator = &deployment["spec"]["template"]["spec"]["containers"][0];
    ensure!(operator["securityContext"]["capabilities"]["drop"][0] == "ALL");
    ensure!(
        operator["securityContext"]
            .get("capabilities")
            .and_then(|c| c.get("add"))
            .is_none()
    );
    ensure!(
        operator["args"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "--broker-enabled")),
        "the operator does not serve the broker"
    );
    // The agent's Role: three reads in the operator's namespace, nothing else.
    let agent_role = of_kind(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "t-podcreds-agent")
        .context("no agent Role")?;
    ensure!(agent_role["metadata"]["namespace"] == "podcreds-system");
    for rule in agent_role["rules"].as_array().context("rules")? {
        ensure!(
            rule["verbs"] == json!(["get"]),
            "the agent may {}",
            rule["verbs"]
        );
        ensure!(
            rule["resources"] != json!(["secrets"]),
            "the agent may read Secrets"
        );
    }
    ensure!(
        !of_kind(&docs, "ClusterRoleBinding")
            .iter()
            .any(|b| b["subjects"].to_string().contains("podcreds-agent")),
        "the agent has a cluster-wide role"
    );
    // The agent's namespace cannot be the release's.
    let chart = chart_dir();
    let (ok, _, stderr) = helm(
        env,
        &[
            "template",
            "t",
            chart.to_str().context("path")?,
            "--namespace",
            "podcreds-node",
            "--kube-version",
            "1.37.2",
            "--set",
            "agent.enabled=true",
        ],
    )
    .await?;
    ensure!(
        !ok && stderr.contains("privileged namespace of their own"),
        "the agent was rendered into the release namespace: {stderr}"
    );
    Ok(())
}

/// One rendering of the chart: the values set, and what must hold of the documents.
struct RenderCase {
    name: &'static str,
    sets: &'static [&'static str],
    check: fn(&[serde_json::Value]) -> anyhow::Result<()>,
}

/// Values the chart must refuse, and part of what it says.
const REFUSED_VALUES: &[(&[&str], &str)] = &[
    (
        &["operator.typo=1"],
        "additional properties 'typo' not allowed",
    ),
    (&["leaderElection.enabled=false"], "leaderElection"),
    (&["operator.logFormat=xml"], "logFormat"),
    (
        &["operator.revocationGracePeriod=soon"],
        "revocationGracePeriod",
    ),
    (&["installation.name=a/b"], "installation"),
    (&["rbac.scope=namespaced"], "watchNamespaces"),
    (
        &["operator.stsEndpoint=http://minio.storage:9000"],
        "allowInsecureStsEndpoints",
    ),
    // A proxy URL with credentials belongs in a Secret, never in values.
    (
        &["operator.stsProxy=http://user:password@proxy.corp:3128"],
        "/operator/stsProxy",
    ),
    (
        &[
            "operator.stsProxy=http://proxy.corp:3128",
            "operator.stsProxySecretRef.name=corp-proxy",
        ],
        "set operator.stsProxy or operator.stsProxySecretRef",
    ),
    (
        &[
            "operator.stsEndpoint=https://sts.eu-west-1.amazonaws.com",
            "operator.stsEndpoints={https://sts.eu-central-1.amazonaws.com}",
        ],
        "set operator.stsEndpoint (one endpoint) or operator.stsEndpoints",
    ),
    (
        &["operator.stsEndpoints={http://minio.storage:9000}"],
        "allowInsecureStsEndpoints",
    ),
];

const RENDER_CASES: &[RenderCase] = &[
    RenderCase {
        name: "defaults",
        sets: &[],
        check: renders_defaults,
    },
    RenderCase {
        name: "crds-disabled",
        sets: &["crds.enabled=false"],
        check: renders_no_crds,
    },
    RenderCase {
        name: "crds-not-kept",
        sets: &["crds.keep=false"],
        check: renders_unkept_crds,
    },
    RenderCase {
        name: "installation",
        sets: &["installation.name=blue"],
        check: renders_a_second_installation,
    },
    RenderCase {
        name: "saml",
        sets: &["saml.enabled=true"],
        check: renders_the_saml_key_admitted,
    },
    RenderCase {
        name: "no-operator-guards",
        sets: &["operatorTokenPolicy.enabled=false"],
        check: renders_without_operator_guards,
    },
    RenderCase {
        name: "unprefixed-session-names",
        sets: &["operator.allowUnprefixedSessionNames=true"],
        check: renders_relaxed_session_names,
    },
    RenderCase {
        name: "plain-http",
        sets: &[
            "operator.stsEndpoint=http://minio.storage:9000",
            "operator.allowInsecureStsEndpoints=true",
        ],
        check: renders_plain_http_on_request,
    },
    RenderCase {
        name: "fail-over-and-proxy",
        sets: &[
            "operator.stsEndpoints={https://sts.eu-west-1.amazonaws.com,https://sts.eu-central-1.amazonaws.com}",
            "operator.stsEndpointCooldown=1m",
            "operator.stsProxySecretRef.name=corp-proxy",
            "operator.stsNoProxy={minio.storage.svc,10.0.0.0/8}",
        ],
        check: renders_failover_and_proxy,
    },
    RenderCase {
        name: "network-policy",
        sets: &[
            "metrics.networkPolicy.enabled=true",
            "metrics.port=9443",
            "metrics.networkPolicy.from[0].namespaceSelector.matchLabels.team=monitoring",
        ],
        check: renders_the_network_policy,
    },
    RenderCase {
        name: "namespaced-rbac",
        sets: &[
            "rbac.scope=namespaced",
            "operator.watchNamespaces={team-a,team-b}",
        ],
        check: renders_namespaced_rbac,
    },
    RenderCase {
        name: "ha",
        sets: &[
            "replicaCount=2",
            "leaderElection.enabled=true",
            "podDisruptionBudget.enabled=true",
        ],
        check: renders_ha,
    },
    RenderCase {
        name: "consumers",
        sets: &["consumers.watchPods=true", "consumers.allowEviction=true"],
        check: renders_pod_watching_and_eviction,
    },
    RenderCase {
        name: "monitoring",
        sets: &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
        ],
        check: renders_monitoring,
    },
];

/// The operator container's arguments, as JSON text.
fn operator_args(docs: &[serde_json::Value]) -> String {
    of_kind(docs, "Deployment")
        .first()
        .map(|d| d["spec"]["template"]["spec"]["containers"][0]["args"].to_string())
        .unwrap_or_default()
}

pub async fn chart_lints_and_renders_what_matters(env: &Env) -> anyhow::Result<()> {
    let chart = chart_dir();
    let (ok, stdout, stderr) =
        helm(env, &["lint", "--strict", chart.to_str().context("path")?]).await?;
    ensure!(ok, "helm lint --strict failed:\n{stdout}\n{stderr}");
    agent_renders_least_privilege(env).await?;
    let mut failures = Vec::new();
    for case in RENDER_CASES {
        let docs = render(env, case.sets).await?;
        if let Err(e) = (case.check)(&docs) {
            failures.push(format!("{} ({:?}): {e:#}", case.name, case.sets));
        }
    }
    for (sets, expected) in REFUSED_VALUES {
        let mut args = vec![
            "template",
            "t",
            chart.to_str().context("path")?,
            "--kube-version",
            "1.37.2",
        ];
        for s in sets.iter() {
            args.extend(["--set", s]);
        }
        let (ok, _, stderr) = helm(env, &args).await?;
        if ok || !stderr.contains(expected) {
            failures.push(format!(
                "{sets:?} should fail mentioning {expected:?}: {stderr}"
            ));
        }
    }
    ensure!(
        failures.is_empty(),
        "chart renderings:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// Defaults: no agent, the CRDs as generated, a restricted and probed Deployment, a ClusterRole with exactly what is needed, and the five guards.
fn renders_defaults(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    ensure!(
        of_kind(docs, "DaemonSet").is_empty(),
        "the node agent is installed without agent.enabled"
    );
    // The CRDs are templates (Helm upgrades them), exactly what the Rust types generate, labelled
    // as the release's and kept on uninstall.
    let rendered = of_kind(docs, "CustomResourceDefinition");
    ensure!(
        rendered.len() == podcreds::crds().len(),
        "{} CRDs rendered",
        rendered.len()
    );
    for (file, crd) in podcreds::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let doc = rendered
            .iter()
            .find(|d| d["metadata"]["name"] == name.as_str())
            .with_context(|| format!("no CRD {name} rendered ({file})"))?;
        ensure!(
            doc["spec"] == serde_json::to_value(&crd.spec)?,
            "the chart's CRD {name} is not what the Rust types generate"
        );
        ensure!(
            doc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep",
            "CRD {name} is not kept on uninstall: {}",
            doc["metadata"]
        );
        ensure!(doc["metadata"]["labels"]["app.kubernetes.io/component"] == "crds");
    }
    let deployment = of_kind(docs, "Deployment")
        .first()
        .copied()
        .context("Deployment")?;
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    ensure!(pod["securityContext"]["runAsNonRoot"] == true);
    ensure!(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
    ensure!(container["securityContext"]["readOnlyRootFilesystem"] == true);
    ensure!(container["securityContext"]["allowPrivilegeEscalation"] == false);
    ensure!(container["securityContext"]["capabilities"]["drop"][0] == "ALL");
    ensure!(container["livenessProbe"]["httpGet"]["path"] == "/healthz");
    ensure!(container["readinessProbe"]["httpGet"]["path"] == "/readyz");
    ensure!(
        container["image"]
            .as_str()
            .is_some_and(|i| i.ends_with(":0.1.0")),
        "image {}",
        container["image"]
    );
    let labels = &deployment["metadata"]["labels"];
    for l in [
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "helm.sh/chart",
    ] {
        ensure!(labels.get(l).is_some(), "Deployment lacks label {l}");
    }
    let cluster_role = of_kind(docs, "ClusterRole")
        .first()
        .copied()
        .context("ClusterRole")?;
    let rules = &cluster_role["rules"];
    for (group, resource, verb) in [
        ("podcreds.dev", "awsrolebindings", "watch"),
        ("podcreds.dev", "awsrolebindings/status", "patch"),
        ("podcreds.dev", "awsrolebindings/finalizers", "update"),
        ("", "serviceaccounts/token", "create"),
        ("", "secrets", "create"),
        ("", "secrets", "patch"),
        ("events.k8s.io", "events", "create"),
    ] {
        ensure!(
            rules_grant(rules, group, resource, verb),
            "ClusterRole lacks {verb} {group}/{resource}"
        );
    }
    for (group, resource, verb) in [
        ("podcreds.dev", "awsrolebindings", "update"),
        ("podcreds.dev", "awsrolebindings", "patch"),
        ("", "pods", "list"),
        ("", "configmaps", "get"),
        ("", "serviceaccounts", "create"),
        ("", "secrets", "update"),
        ("coordination.k8s.io", "leases", "create"),
    ] {
        ensure!(
            !rules_grant(rules, group, resource, verb),
            "ClusterRole grants {verb} {group}/{resource}"
        );
    }
    ensure!(of_kind(docs, "ValidatingAdmissionPolicy").len() == 5);
    // Status writes: this release's operator (and system:masters) only.
    let status_guard = policy_named(docs, "status-guard")?;
    for expected in [
        "awsrolebindings/status",
        "system:serviceaccount:podcreds-system:t-podcreds",
        "system:masters",
    ] {
        ensure!(
            status_guard.contains(expected),
            "the status guard lacks {expected}: {status_guard}"
        );
    }
    let source_guard = policy_named(docs, "source-guard")?;
    ensure!(
        source_guard.contains("AWSCredentialSource") && source_guard.contains("allowedNamespaces"),
        "the source guard does not check a source's allowed namespaces"
    );
    let binding_guard = policy_named(docs, "binding-guard")?;
    ensure!(
        binding_guard.contains("object.spec.sessionName.startsWith(request.namespace + '.')"),
        "the admission policy does not check session names"
    );
    // The token guard binds only the operator's ServiceAccount, and denies the system namespaces
    // and its own.
    let token_guard: serde_json::Value = serde_json::from_str(&policy_named(docs, "token-guard")?)?;
    let expression_of = |name: &str| -> String {
        token_guard["spec"]["variables"]
            .as_array()
            .and_then(|vars| vars.iter().find(|v| v["name"] == name))
            .and_then(|v| v["expression"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    ensure!(
        expression_of("deniedNamespaces")
            == r#"["kube-system","kube-public","kube-node-lease","podcreds-system"]"#,
        "denied namespaces: {}",
        expression_of("deniedNamespaces")
    );
    ensure!(expression_of("allowedAudiences") == r#"["sts.amazonaws.com"]"#);
    let token_guard = token_guard.to_string();
    for expected in [
        "system:serviceaccount:podcreds-system:t-podcreds",
        "object.spec.expirationSeconds <= 600",
    ] {
        ensure!(
            token_guard.contains(expected),
            "the token guard lacks {expected}: {token_guard}"
        );
    }
    ensure!(
        of_kind(docs, "ValidatingAdmissionPolicyBinding").len() == 5,
        "each policy needs its binding"
    );
    // The Secret guard: Opaque, labelled, outside the denied namespaces; the SAML key only with
    // SAML.
    let secret_guard = policy_named(docs, "secret-guard")?;
    for expected in [
        "system:serviceaccount:podcreds-system:t-podcreds",
        "object.type == 'Opaque'",
        "app.kubernetes.io/managed-by",
        r#"[\"kube-system\",\"kube-public\",\"kube-node-lease\",\"podcreds-system\"]"#,
    ] {
        ensure!(
            secret_guard.contains(expected),
            "the Secret guard lacks {expected}: {secret_guard}"
        );
    }
    ensure!(!secret_guard.contains("podcreds-saml-signing-key"));
    Ok(())
}

/// `crds.enabled=false`: the CRDs are managed elsewhere.
fn renders_no_crds(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    ensure!(
        of_kind(docs, "CustomResourceDefinition").is_empty(),
        "crds.enabled=false still renders CRDs"
    );
    Ok(())
}

/// `crds.keep=false`: uninstall may delete the CRDs.
fn renders_unkept_crds(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    ensure!(
        of_kind(docs, "CustomResourceDefinition")
            .iter()
            .all(|d| d["metadata"]["annotations"].is_null()),
        "crds.keep=false still keeps the CRDs"
    );
    Ok(())
}

/// A second installation: its operator, its status guard for its own bindings only.
fn renders_a_second_installation(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    let args = operator_args(docs);
    ensure!(args.contains("--installation=blue"), "{args}");
    let status_guard = policy_named(docs, "status-guard")?;
    ensure!(
        status_guard.contains("podcreds.dev/installation") && status_guard.contains(r#"\"blue\""#),
        "the status guard is not limited to the installation's bindings: {status_guard}"
    );
    let binding_guard = policy_named(docs, "binding-guard")?;
    ensure!(
        binding_guard.contains("oldObject.metadata.labels['podcreds.dev/installation']"),
        "moving a binding to another installation is not checked like a spec change"
    );
    Ok(())
}

/// With SAML the Secret guard admits the signing key.
fn renders_the_saml_key_admitted(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    ensure!(policy_named(docs, "secret-guard")?.contains("podcreds-saml-signing-key"));
    Ok(())
}

/// The operator guards go only with `operatorTokenPolicy.enabled=false`.
fn renders_without_operator_guards(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    ensure!(
        policy_named(docs, "token-guard").is_err() && policy_named(docs, "secret-guard").is_err(),
        "the operator guards cannot be turned off"
    );

    Ok(())
}

/// Relaxing the session-name rule relaxes both the operator and the admission policy; the other defaults stay.
fn renders_relaxed_session_names(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    let binding_guard = policy_named(docs, "binding-guard")?;
    ensure!(
        !binding_guard.contains("sessionName.startsWith"),
        "the relaxed admission policy still checks session names"
    );
    let args = operator_args(docs);
    ensure!(args.contains("--allow-unprefixed-session-names"), "{args}");
    ensure!(
        !args.contains("--allow-insecure-sts-endpoints"),
        "plain HTTP allowed by default: {args}"
    );
    ensure!(
        args.contains("--revocation-grace-period=0s"),
        "credentials of bindings no longer allowed are not revoked at once by default: {args}"
    );
    ensure!(
        args.contains("--installation=default"),
        "the release serves no named installation: {args}"
    );

    Ok(())
}

/// Plain HTTP only on request; no monitoring objects and no NetworkPolicy by default.
fn renders_plain_http_on_request(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    let args = operator_args(docs);
    ensure!(args.contains("--allow-insecure-sts-endpoints"), "{args}");
    ensure!(
        of_kind(docs, "ServiceMonitor").is_empty() && of_kind(docs, "PrometheusRule").is_empty()
    );
    ensure!(
        of_kind(docs, "NetworkPolicy").is_empty(),
        "a NetworkPolicy by default"
    );

    Ok(())
}

/// A fail-over list and the proxy: its credentials come from a Secret through the flag's environment twin, never in the Deployment's arguments.
fn renders_failover_and_proxy(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    let container = &of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"].to_string();
    for expected in [
        "--sts-endpoints=https://sts.eu-west-1.amazonaws.com,https://sts.eu-central-1.amazonaws.com",
        "--sts-endpoint-cooldown=1m",
        "--sts-no-proxy=minio.storage.svc,10.0.0.0/8",
    ] {
        ensure!(args.contains(expected), "{expected} not in {args}");
    }
    ensure!(!args.contains("--sts-proxy"), "{args}");
    let proxy_env = container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "PODCREDS_STS_PROXY"))
        .context("no PODCREDS_STS_PROXY")?;
    ensure!(
        proxy_env["valueFrom"]["secretKeyRef"] == json!({"name": "corp-proxy", "key": "url"}),
        "{proxy_env}"
    );
    Ok(())
}

/// The optional NetworkPolicy admits only the admin port of the operator pods, from the peers given.
fn renders_the_network_policy(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    let policies = of_kind(docs, "NetworkPolicy");
    ensure!(policies.len() == 1, "{} NetworkPolicies", policies.len());
    let policy = &policies[0]["spec"];
    let deployment = of_kind(docs, "Deployment")[0];
    ensure!(
        policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"],
        "the NetworkPolicy selects other pods than the operator's: {policy}"
    );
    ensure!(policy["policyTypes"] == json!(["Ingress"]), "{policy}");
    ensure!(
        policy["ingress"]
            == json!([{
                "ports": [{"port": 9443, "protocol": "TCP"}],
                "from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
            }]),
        "unexpected ingress rules: {policy}"
    );
    ensure!(
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
            == 9443,
        "the admin port moved without the NetworkPolicy"
    );

    Ok(())
}

/// Namespaced RBAC: Roles in the listed namespaces only, no ClusterRole that writes.
fn renders_namespaced_rbac(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    // Namespaced RBAC: Roles in the listed namespaces only, no ClusterRole.
    // Cluster-scoped objects cannot be granted by a Role: the only ClusterRoles left read the
    // watched namespaces and the admission policy, by name.
    for cluster_role in of_kind(docs, "ClusterRole") {
        for rule in cluster_role["rules"].as_array().context("rules")? {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .map(|v| v.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            ensure!(
                verbs.iter().all(|v| ["get", "list", "watch"].contains(v)),
                "namespaced scope renders a ClusterRole that writes: {rule}"
            );
            ensure!(
                rule["resourceNames"]
                    .as_array()
                    .is_some_and(|names| !names.is_empty()),
                "namespaced scope renders a ClusterRole rule without resourceNames: {rule}"
            );
        }
    }
    // (the leader-election Role in the release namespace grants only Leases)
    let namespaces: Vec<&str> = of_kind(docs, "Role")
        .iter()
        .filter(|r| rules_grant(&r["rules"], "", "secrets", "create"))
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .collect();
    ensure!(
        namespaces == ["team-a", "team-b"],
        "Roles in {namespaces:?}"
    );
    let args = operator_args(docs);
    ensure!(args.contains("--namespaces=team-a,team-b"), "{args}");
    let token_guard = policy_named(docs, "token-guard")?;
    ensure!(
        token_guard.contains(r#"request.namespace in [\"team-a\",\"team-b\"]"#),
        "the token guard does not keep the operator to its namespaces: {token_guard}"
    );

    Ok(())
}

/// HA: two replicas need leader election, which brings its Lease Role and flag.
fn renders_ha(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    let deployment = of_kind(docs, "Deployment")[0];
    ensure!(deployment["spec"]["replicas"] == 2);
    ensure!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .to_string()
            .contains("--leader-election")
    );
    ensure!(of_kind(docs, "Role").iter().any(|r| rules_grant(
        &r["rules"],
        "coordination.k8s.io",
        "leases",
        "update"
    )));
    ensure!(of_kind(docs, "PodDisruptionBudget").len() == 1);

    Ok(())
}

/// Watching pods (stale consumers) and evicting them: the flag and exactly those rights, only
/// when asked for (the defaults grant no pod access at all).
fn renders_pod_watching_and_eviction(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    ensure!(
        operator_args(docs).contains("--watch-pods"),
        "{}",
        operator_args(docs)
    );
    let cluster_role = of_kind(docs, "ClusterRole")
        .first()
        .copied()
        .context("ClusterRole")?;
    let rules = &cluster_role["rules"];
    for (resource, verb) in [
        ("pods", "list"),
        ("pods", "watch"),
        ("pods/eviction", "create"),
    ] {
        ensure!(
            rules_grant(rules, "", resource, verb),
            "ClusterRole lacks {verb} {resource}"
        );
    }
    for (resource, verb) in [("pods", "delete"), ("pods", "patch"), ("pods", "get")] {
        ensure!(
            !rules_grant(rules, "", resource, verb),
            "ClusterRole grants {verb} {resource}"
        );
    }
    Ok(())
}

/// Monitoring objects on request, with the alerts.
fn renders_monitoring(docs: &[serde_json::Value]) -> anyhow::Result<()> {
    // Monitoring objects on request.
    ensure!(
        of_kind(docs, "ServiceMonitor").len() == 1 && of_kind(docs, "PrometheusRule").len() == 1
    );
    let alerts = of_kind(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"].to_string();
    for a in [
        "PodcredsCredentialsExpiringSoon",
        "PodcredsRefreshFailing",
        "PodcredsDown",
    ] {
        ensure!(alerts.contains(a), "no {a} alert");
    }

    Ok(())
}

pub async fn chart_installs_with_sufficient_and_minimal_rbac(env: &Env) -> anyhow::Result<()> {
    let (release_ns, release, stdout) =
        helm_install(env, "podcreds-system", "pc", &["--wait=false"]).await?;
    ensure!(
        stdout.contains("AWSRoleBinding"),
        "NOTES.txt not shown:\n{stdout}"
    );

    // Run the operator out of cluster with the chart's ServiceAccount identity.
    // The chart names its objects <release>-podcreds.
    let token = service_account_token(env, &release_ns, &format!("{release}-podcreds")).await?;
    let kubeconfig = env.plane.token_kubeconfig(&release, &token)?;
    let (ns, role) = env.app_namespace("chartrbac", None).await?;
    let _op = env
        .start_operator_with_kubeconfig(&kubeconfig, &[&ns], &env.emulator.url(), &[])
        .await?;
    env.create_ready(&ns, "b", spec(&role), Duration::from_secs(60))
        .await?;
    // A binding of a ServiceAccount that does not exist yet: its Warning Event proves the chart's
    // identity may publish Events.
    env.create_binding(
        &ns,
        "early",
        json!({"serviceAccountName": "later", "roleArn": role}),
    )
    .await?;
    let published = crate::support::wait_for(Duration::from_secs(30), || async {
        let events = env.events(&ns).await.ok()?;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("RefreshFailed"))
            .then_some(())
    })
    .await;
    ensure!(
        published.is_some(),
        "the chart identity could not publish Events"
    );

    // Least privilege is tested, not claimed.
    let as_operator = podcreds_testenv::client_from_kubeconfig(&kubeconfig).await?;
    let pods: Api<Pod> = Api::namespaced(as_operator.clone(), &ns);
    ensure!(
        forbidden(pods.list(&ListParams::default()).await),
        "the operator may list pods"
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(as_operator.clone(), &ns);
    ensure!(
        forbidden(config_maps.list(&ListParams::default()).await),
        "the operator may list configmaps"
    );
    let bindings: Api<podcreds::api::AWSRoleBinding> = Api::namespaced(as_operator.clone(), &ns);
    let spec_change = json!({"spec": {"roleArn": "arn:aws:iam::123456789012:role/escalated"}});
    ensure!(
        forbidden(
            bindings
                .patch("b", &PatchParams::default(), &Patch::Merge(&spec_change))
                .await
        ),
        "the operator may change a binding's spec"
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(as_operator.clone(), &ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("rogue".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    ensure!(
        forbidden(accounts.create(&PostParams::default(), &sa).await),
        "the operator may create ServiceAccounts"
    );
    let namespaces: Api<Namespace> = Api::all(as_operator.clone());
    ensure!(
        forbidden(namespaces.delete(&ns, &Default::default()).await),
        "the operator may delete namespaces"
    );

    // Uninstall keeps the CRD, the bindings and the users' Secrets.
    let (ok, _, stderr) = helm(env, &["uninstall", &release, "--namespace", &release_ns]).await?;
    ensure!(ok, "helm uninstall failed: {stderr}");
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    ensure!(
        crds.get_opt("awsrolebindings.podcreds.dev")
            .await?
            .is_some(),
        "uninstall removed the CRD"
    );
    ensure!(
        env.bindings(&ns).get_opt("b").await?.is_some(),
        "uninstall removed a binding"
    );
    ensure!(
        env.secrets(&ns).get_opt("b").await?.is_some(),
        "uninstall removed a credentials Secret"
    );
    Ok(())
}

pub async fn admission_policy_stops_the_confused_deputy(env: &Env) -> anyhow::Result<()> {
    with_admission_policy(env, "vap", confused_deputy_checks).await
}

pub async fn admission_policy_checks_every_spec_update(env: &Env) -> anyhow::Result<()> {
    with_admission_policy(env, "vapupd", spec_update_checks).await
}

/// The bindings of `ns` as seen by user `user` (a client certificate, no groups).
async fn bindings_as(
    env: &Env,
    ns: &str,
    user: &str,
) -> anyhow::Result<Api<podcreds::api::AWSRoleBinding>> {
    let kubeconfig = env.plane.user_kubeconfig(user, &[])?;
    let client = podcreds_testenv::client_from_kubeconfig(&kubeconfig).await?;
    Ok(Api::namespaced(client, ns))
}

async fn confused_deputy_checks(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("deputy").await?;
    env.service_account(&ns, "payments").await?;
    let binding_rights = rule(
        &["podcreds.dev"],
        &["awsrolebindings"],
        &["get", "list", "create", "update", "patch"],
    );
    grant(env, &ns, "mallory", vec![binding_rights.clone()]).await?;
    grant(
        env,
        &ns,
        "trent",
        vec![
            binding_rights,
            rule(&[""], &["serviceaccounts/token"], &["create"]),
        ],
    )
    .await?;
    let binding = |name: &str, role: &str| {
        serde_json::from_value::<podcreds::api::AWSRoleBinding>(json!({
            "apiVersion": "podcreds.dev/v1alpha1",
            "kind": "AWSRoleBinding",
            "metadata": {"name": name},
            "spec": {"serviceAccountName": "payments", "roleArn": role},
        }))
    };
    let role = "arn:aws:iam::123456789012:role/payments";

    // Mallory may create bindings but not act as the ServiceAccount: refused, with the reason.
    let mallory = bindings_as(env, &ns, "mallory").await?;
    let refusal = refusal_of(env, &ns, &mallory, binding("steal", role)?)
        .await
        .context("the admission policy never refused a binding by a user without token rights")?;
    ensure!(
        refusal.contains("may not create tokens for ServiceAccount payments"),
        "unclear refusal: {refusal}"
    );

    // Trent may create tokens for it: admitted.
    let trent = bindings_as(env, &ns, "trent").await?;
    trent
        .create(&PostParams::default(), &binding("legit", role)?)
        .await?;

    // Listing an image-pull Secret in the ServiceAccount changes what all its pods pull with:
    // Trent may act as it but not patch it, so he may ask for the Secret but not for that.
    let pulling = |name: &str, listed: bool| {
        serde_json::from_value::<podcreds::api::AWSRoleBinding>(json!({
            "apiVersion": "podcreds.dev/v1alpha1",
            "kind": "AWSRoleBinding",
            "metadata": {"name": name},
            "spec": {"serviceAccountName": "payments", "roleArn": role, "imagePullSecret": {
                "registries": ["123456789012.dkr.ecr.eu-west-1.amazonaws.com"],
                "addToServiceAccount": listed}},
        }))
    };
    let refused = refusal_of(env, &ns, &trent, pulling("listed", true)?)
        .await
        .context(
            "addToServiceAccount was admitted from a user who may not patch the ServiceAccount",
        )?;
    ensure!(
        refused.contains("may not patch ServiceAccount payments"),
        "unclear refusal: {refused}"
    );
    trent
        .create(&PostParams::default(), &pulling("pull", false)?)
        .await?;

    // The namespace may restrict which roles it binds.
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let annotate = json!({"metadata": {"annotations": {"podcreds.dev/allowed-role-arns": "arn:aws:iam::123456789012:role/payments-*"}}});
    namespaces
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&annotate))
        .await?;
    let refused = refusal_of(
        env,
        &ns,
        &trent,
        binding("other", "arn:aws:iam::123456789012:role/admin")?,
    )
    .await
    .context("a role outside the namespace's allowed set was admitted")?;
    ensure!(
        refused.contains("is not allowed in namespace"),
        "unclear refusal: {refused}"
    );
    trent
        .create(
            &PostParams::default(),
            &binding("allowed", "arn:aws:iam::123456789012:role/payments-reader")?,
        )
        .await?;
    if env.bindings(&ns).get_opt("steal").await?.is_some() {
        bail!("a refused binding exists");
    }
    Ok(())
}

/// The update hole: a user who may patch bindings but may not create tokens for their
/// ServiceAccount must not be able to redirect, widen or lengthen the credentials issued for it.
async fn spec_update_checks(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("update").await?;
    env.service_account(&ns, "payments").await?;
    // Trent lengthens the sessions to two hours below: the role allows that much.
    let role = env.long_role(&format!("{ns}-payments"), &ns, "payments", 7200);
    grant(
        env,
        &ns,
        "mallory",
        vec![
            rule(
                &["podcreds.dev"],
                &["awsrolebindings"],
                &["get", "list", "update", "patch"],
            ),
            PolicyRule {
                resource_names: Some(vec!["loot".into()]),
                ..rule(&[""], &["secrets"], &["get"])
            },
        ],
    )
    .await?;
    grant(
        env,
        &ns,
        "trent",
        vec![
            rule(
                &["podcreds.dev"],
                &["awsrolebindings"],
                &["get", "list", "create", "update", "patch"],
            ),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
        ],
    )
    .await?;
    let mallory = bindings_as(env, &ns, "mallory").await?;
    let trent = bindings_as(env, &ns, "trent").await?;
    let scoped = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::payments/*"}]}"#;
    let spec = json!({
        "serviceAccountName": "payments",
        "roleArn": role,
        "secretName": "payments-aws",
        "sessionPolicy": scoped,
    });
    let binding: podcreds::api::AWSRoleBinding = serde_json::from_value(json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSRoleBinding",
        "metadata": {"name": "payments"},
        "spec": spec,
    }))?;

    // Wait until the policy is active (a create by a user without token rights is refused),
    // then trent binds.
    grant(
        env,
        &ns,
        "probe",
        vec![rule(&["podcreds.dev"], &["awsrolebindings"], &["create"])],
    )
    .await?;
    let probe = bindings_as(env, &ns, "probe").await?;
    refusal_of(env, &ns, &probe, binding_named(&binding, "probe"))
        .await
        .context("the admission policy never became active")?;
    let _operator = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    trent.create(&PostParams::default(), &binding).await?;
    env.wait_ready(&ns, "payments", "True", Duration::from_secs(60))
        .await?;

    // Every spec change by mallory is refused with the reason; none reaches the binding.
    let attacks = [
        (
            "secretName to a Secret she can read, without the session policy",
            json!({"spec": {"secretName": "loot", "sessionPolicy": null}}),
        ),
        ("secretName alone", json!({"spec": {"secretName": "loot"}})),
        (
            "dropping the session policy",
            json!({"spec": {"sessionPolicy": null}}),
        ),
        (
            "another role",
            json!({"spec": {"roleArn": "arn:aws:iam::123456789012:role/payments-admin"}}),
        ),
        (
            "a longer session",
            json!({"spec": {"durationSeconds": 43200}}),
        ),
        (
            "another session name",
            json!({"spec": {"sessionName": "prod.payments"}}),
        ),
        (
            "another audience",
            json!({"spec": {"audience": "other.example"}}),
        ),
        (
            "another endpoint",
            json!({"spec": {"sts": {"endpoint": "https://sts.attacker.example"}}}),
        ),
    ];
    for (what, patch) in &attacks {
        match mallory
            .patch("payments", &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 => ensure!(
                s.message
                    .contains("may not change the binding of that ServiceAccount"),
                "unclear refusal of {what}: {}",
                s.message
            ),
            other => bail!("mallory's update ({what}) was not refused: {other:?}"),
        }
    }
    let after = env.bindings(&ns).get("payments").await?;
    ensure!(
        after.spec == binding.spec,
        "the binding's spec changed: {:?}",
        after.spec
    );

    // An update that leaves the spec alone stays admitted (labels, annotations).
    let label = json!({"metadata": {"labels": {"team": "payments"}}});
    mallory
        .patch("payments", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .context("a metadata-only update by mallory was refused")?;

    // Someone who may act as the ServiceAccount may still change the spec.
    let longer = json!({"spec": {"durationSeconds": 7200}});
    trent
        .patch("payments", &PatchParams::default(), &Patch::Merge(&longer))
        .await
        .context("trent's spec change was refused")?;

    // No credentials ever reached the Secret mallory can read.
    ensure!(
        env.secrets(&ns).get_opt("loot").await?.is_none(),
        "Secret loot was written"
    );
    ensure!(
        env.secrets(&ns).get_opt("payments-aws").await?.is_some(),
        "the binding's own Secret is gone"
    );
    Ok(())
}

/// The operator says when an admission policy of the chart is missing or not enforced (log,
/// /readyz detail, metric), and notices when it is installed, weakened to audit or warn only,
/// restored or removed: the binding guard and the operator's token guard alike.
pub async fn a_missing_admission_policy_is_reported(env: &Env) -> anyhow::Result<()> {
    use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
    // It installs the chart's policies for a while, like `with_admission_policy`.
    let ns = env.namespace("guardcheck").await?;
    // A release name of its own: the policies are cluster-scoped and named after the release.
    let release = format!("gc{}", &ns[ns.len() - 5..]);
    let guard = |which: &str| format!("{release}-podcreds-{which}");
    let names = [
        "binding-guard",
        "source-guard",
        "status-guard",
        "token-guard",
        "secret-guard",
    ]
    .map(guard)
    .join(",");
    let op = env
        .start_operator(
            &[&ns],
            &env.emulator.url(),
            &[
                &format!("--admission-policy-name={names}"),
                "--admission-policy-check-interval=1s",
            ],
        )
        .await?;
    // What the operator reports: the metric's value and a word /readyz must show (and, when
    // everything is present, must not).
    let reported = |value: u8, word: String| {
        let op = &op;
        async move {
            let metrics = op.metrics().await.ok()?;
            let (_, readyz) = podcreds_testenv::loopback::get(&op.admin, "/readyz")
                .await
                .ok()?;
            let metric = metrics.contains(&format!("podcreds_admission_policy_present {value}"));
            let shown = if value == 1 {
                !readyz.contains("MISSING") && !readyz.contains("NOT ENFORCED")
            } else {
                readyz.lines().any(|l| l.contains(&word))
            };
            (metric && shown).then_some(())
        }
    };
    wait_for(Duration::from_secs(30), || {
        reported(
            0,
            format!(
                "{}: ValidatingAdmissionPolicy MISSING",
                guard("binding-guard")
            ),
        )
    })
    .await
    .context("a missing admission policy was not reported")?;
    ensure!(
        op.log().contains("MISSING"),
        "no log line about the missing policy"
    );

    let chart = chart_dir();
    let (ok, _, stderr) = helm(
        env,
        &[
            "install",
            &release,
            chart.to_str().context("path")?,
            "--namespace",
            &ns,
            "--set",
            "rbac.create=false",
            "--set",
            "serviceAccount.create=false",
            "--set",
            "metrics.service.enabled=false",
            "--set",
            "crds.enabled=false",
        ],
    )
    .await?;
    ensure!(ok, "helm install failed: {stderr}");
    let checks = async {
        wait_for(Duration::from_secs(30), || reported(1, String::new()))
            .await
            .context("the installed admission policies were not noticed")?;
        // A guard whose binding only audits (or warns) guards nothing.
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(env.client.clone());
        let actions = |list: &[&str]| json!({"spec": {"validationActions": list}});
        for (which, weakened) in [("binding-guard", "Audit"), ("token-guard", "Warn")] {
            bindings
                .patch(
                    &guard(which),
                    &PatchParams::default(),
                    &Patch::Merge(&actions(&[weakened])),
                )
                .await?;
            wait_for(Duration::from_secs(30), || {
                reported(0, format!("{}: NOT ENFORCED", guard(which)))
            })
            .await
            .with_context(|| format!("the {which} weakened to [{weakened}] was not reported"))?;
            ensure!(
                op.log().contains("validationActions do not include Deny"),
                "no log line about the weakened {which}"
            );
            bindings
                .patch(
                    &guard(which),
                    &PatchParams::default(),
                    &Patch::Merge(&actions(&["Deny"])),
                )
                .await?;
            wait_for(Duration::from_secs(30), || reported(1, String::new()))
                .await
                .with_context(|| format!("the restored {which} was not noticed"))?;
        }
        anyhow::Ok(())
    }
    .await;
    let (ok, _, stderr) = helm(env, &["uninstall", &release, "--namespace", &ns]).await?;
    ensure!(ok, "helm uninstall failed: {stderr}");
    checks?;
    wait_for(Duration::from_secs(30), || {
        reported(
            0,
            format!(
                "{}: ValidatingAdmissionPolicy MISSING",
                guard("token-guard")
            ),
        )
    })
    .await
    .context("the removed admission policies were not noticed")?;
    Ok(())
}

/// The node endpoint with the chart's identities: the operator (broker) and the agent run with
/// their ServiceAccounts' tokens under the chart's Secret guard, serve a pod, and the agent can
/// do nothing beyond finding the broker.
pub async fn the_node_agent_needs_only_what_the_chart_grants(env: &Env) -> anyhow::Result<()> {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Secret;

    let probe = env.namespace("agentrbac").await?;
    let agents = format!("{probe}-node");
    let (release_ns, release, _) = helm_install(
        env,
        "podcreds-system",
        "pa",
        &[
            "--wait=false",
            "--set",
            "agent.enabled=true",
            "--set",
            &format!("agent.namespace={agents}"),
        ],
    )
    .await?;
    let namespace = Api::<Namespace>::all(env.client.clone())
        .get(&agents)
        .await
        .context("the chart created no agent namespace")?;
    ensure!(
        namespace
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-security.kubernetes.io/enforce"))
            .map(String::as_str)
            == Some("privileged"),
        "the agent namespace is not the privileged one"
    );
    let operator_token =
        service_account_token(env, &release_ns, &format!("{release}-podcreds")).await?;
    let operator_kubeconfig = env
        .plane
        .token_kubeconfig(&format!("{release}-op"), &operator_token)?;
    let agent_token = service_account_token(env, &agents, "podcreds-agent").await?;
    let agent_kubeconfig = env
        .plane
        .token_kubeconfig(&format!("{release}-agent"), &agent_token)?;
    let scene = crate::support::endpoint::Scene::start_with(
        env,
        "agentrbac-app",
        None,
        crate::support::endpoint::Setup {
            ops: Some(release_ns.clone()),
            agents: Some((agents.clone(), "podcreds-agent".into())),
            operator_kubeconfig: Some(operator_kubeconfig),
            agent_kubeconfig: Some(agent_kubeconfig.clone()),
        },
    )
    .await?;
    // Sufficient: the broker's key and CA under the Secret guard, the agent finding the leader.
    let token = scene.granted(env).await?;

    // Minimal: the agent's own identity reads no Secret, mints no token, reviews no token and
    // sees nothing but the Lease, pods and the CA ConfigMap of the operator's namespace.
    let agent = podcreds_testenv::client_from_kubeconfig(&agent_kubeconfig).await?;
    let app_ns = scene.namespace().to_string();
    for (ns, name) in [
        (release_ns.as_str(), "podcreds-broker-ca-key"),
        (app_ns.as_str(), "b"),
    ] {
        let secrets: Api<Secret> = Api::namespaced(agent.clone(), ns);
        ensure!(
            forbidden(secrets.get(name).await),
            "the agent may read Secret {ns}/{name}"
        );
        ensure!(
            forbidden(secrets.list(&ListParams::default()).await),
            "the agent may list Secrets in {ns}"
        );
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(agent.clone(), &app_ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["sts.amazonaws.com".into()]),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    ensure!(
        forbidden(
            accounts
                .create_token_request("app", &PostParams::default(), &request)
                .await
        ),
        "the agent may create ServiceAccount tokens"
    );
    let reviews: Api<TokenReview> = Api::all(agent.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.clone(),
            audiences: None,
        },
        ..TokenReview::default()
    };
    ensure!(
        forbidden(reviews.create(&PostParams::default(), &review).await),
        "the agent may review tokens"
    );
    let pods: Api<Pod> = Api::namespaced(agent.clone(), &app_ns);
    ensure!(
        forbidden(pods.get("app-ok").await),
        "the agent may read pods outside the operator's namespace"
    );
    let operator_pods: Api<Pod> = Api::namespaced(agent.clone(), &release_ns);
    ensure!(
        forbidden(operator_pods.list(&ListParams::default()).await),
        "the agent may list the operator's pods"
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(agent.clone(), &release_ns);
    ensure!(
        forbidden(config_maps.get("kube-root-ca.crt").await),
        "the agent may read other ConfigMaps"
    );
    ensure!(
        config_maps.get("podcreds-broker-ca").await.is_ok(),
        "the agent cannot read the broker CA"
    );
    let leases: Api<Lease> = Api::namespaced(agent.clone(), &release_ns);
    ensure!(
        forbidden(
            leases
                .patch(
                    "podcreds-leader",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"holderIdentity": "agent"}}))
                )
                .await
        ),
        "the agent may take the leader Lease"
    );
    scene.logs_hide(&token)?;
    let (ok, _, stderr) = helm(env, &["uninstall", &release, "--namespace", &release_ns]).await?;
    ensure!(ok, "helm uninstall failed: {stderr}");
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![chart:
    chart_lints_and_renders_what_matters,
    chart_installs_with_sufficient_and_minimal_rbac,
    admission_policy_stops_the_confused_deputy,
    admission_policy_checks_every_spec_update,
    a_missing_admission_policy_is_reported,
    the_node_agent_needs_only_what_the_chart_grants,
];

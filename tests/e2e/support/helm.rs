//! Helm and the chart's RBAC from a test's side: installing and rendering the chart, tokens and
//! grants for the identities the chart creates, and reading a refusal of its admission policies.

use std::path::PathBuf;

use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::support::{Env, wait_for};

/// `binding` under another name.
pub(crate) fn binding_named(
    binding: &podcreds::api::AWSRoleBinding,
    name: &str,
) -> podcreds::api::AWSRoleBinding {
    let mut renamed = binding.clone();
    renamed.metadata.name = Some(name.into());
    renamed
}

/// The admission refusal `api` gets for creating `binding`, waiting (up to 20 s) for the policy
/// to become active; a binding admitted meanwhile is removed and the attempt repeated.
pub(crate) async fn refusal_of(
    env: &Env,
    ns: &str,
    api: &Api<podcreds::api::AWSRoleBinding>,
    binding: podcreds::api::AWSRoleBinding,
) -> Option<String> {
    let name = binding.metadata.name.clone().unwrap_or_default();
    wait_for(Duration::from_secs(20), || async {
        match api.create(&PostParams::default(), &binding).await {
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 => Some(s.message),
            Ok(_) => {
                let _ = env.bindings(ns).delete(&name, &Default::default()).await;
                None
            }
            Err(_) => None,
        }
    })
    .await
}

/// Runs `checks` while a release that installs only the chart's admission policy exists, and
/// uninstalls it afterwards whatever `checks` returned.
pub(crate) async fn with_admission_policy<'a, F, Fut>(
    env: &'a Env,
    release_prefix: &str,
    checks: F,
) -> anyhow::Result<()>
where
    F: FnOnce(&'a Env) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Only the policy matters here: no ServiceAccount, RBAC or Deployment of a second operator.
    let (release_ns, release, _) = helm_install(
        env,
        "podcreds-vap",
        release_prefix,
        &[
            "--set",
            "rbac.create=false",
            "--set",
            "serviceAccount.create=false",
            "--set",
            "metrics.service.enabled=false",
        ],
    )
    .await?;
    let result = checks(env).await;
    let (ok, _, stderr) = helm(env, &["uninstall", &release, "--namespace", &release_ns]).await?;
    ensure!(ok, "helm uninstall failed: {stderr}");
    result
}

pub(crate) fn forbidden<T>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if s.code == 403)
}

pub(crate) fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    }
}

pub(crate) async fn grant(
    env: &Env,
    ns: &str,
    user: &str,
    rules: Vec<PolicyRule>,
) -> anyhow::Result<()> {
    let roles: Api<Role> = Api::namespaced(env.client.clone(), ns);
    roles
        .create(
            &PostParams::default(),
            &Role {
                metadata: ObjectMeta {
                    name: Some(user.into()),
                    ..ObjectMeta::default()
                },
                rules: Some(rules),
            },
        )
        .await?;
    let bindings: Api<RoleBinding> = Api::namespaced(env.client.clone(), ns);
    bindings
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: ObjectMeta {
                    name: Some(user.into()),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: user.into(),
                },
                subjects: Some(vec![Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "User".into(),
                    name: user.into(),
                    namespace: None,
                }]),
            },
        )
        .await?;
    Ok(())
}

pub(crate) async fn service_account_token(
    env: &Env,
    ns: &str,
    name: &str,
) -> anyhow::Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(env.client.clone(), ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let response = api
        .create_token_request(name, &PostParams::default(), &request)
        .await?;
    response.status.and_then(|s| s.token).context("no token")
}

pub(crate) fn rules_grant(
    rules: &serde_json::Value,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    rules.as_array().is_some_and(|rules| {
        rules.iter().any(|r| {
            let has = |field: &str, v: &str| {
                r[field]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == v || x == "*"))
            };
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    })
}

pub(crate) fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// `helm template` with `--set` values, parsed into documents.
pub(crate) async fn render(env: &Env, sets: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "t",
        chart.to_str().context("path")?,
        "--namespace",
        "podcreds-system",
        "--kube-version",
        "1.37.2",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, stdout, stderr) = helm(env, &args).await?;
    ensure!(ok, "helm template {sets:?} failed: {stderr}");
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&stdout) {
        use serde::Deserialize;
        let value = serde_json::Value::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// A release of the chart in a new namespace `<prefix>-…`, named `<release_prefix>-<suffix>`:
/// returns (namespace, release, helm's stdout). Fails when helm does. The suite's environment
/// owns the CRDs (installed from the Rust types when it starts), as a first installation owns
/// them for a second: the release leaves them alone (`crds.enabled=false`).
pub(crate) async fn helm_install(
    env: &Env,
    prefix: &str,
    release_prefix: &str,
    extra: &[&str],
) -> anyhow::Result<(String, String, String)> {
    let release_ns = env.namespace(prefix).await?;
    let release = format!("{release_prefix}-{}", &release_ns[release_ns.len() - 5..]);
    let chart = chart_dir();
    let mut args = vec![
        "install",
        &release,
        chart.to_str().context("path")?,
        "--namespace",
        &release_ns,
        "--set",
        "crds.enabled=false",
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = helm(env, &args).await?;
    ensure!(ok, "helm install failed:\n{stdout}\n{stderr}");
    Ok((release_ns, release, stdout))
}

pub(crate) async fn helm(env: &Env, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let helm = podcreds_testenv::tools::binary("helm")?;
    let home = env.plane.dir().join("helm-home");
    std::fs::create_dir_all(&home)?;
    let out = tokio::process::Command::new(helm)
        .args(args)
        .env("KUBECONFIG", &env.plane.kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

pub(crate) fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/podcreds")
}

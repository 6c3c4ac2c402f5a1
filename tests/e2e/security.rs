//! Attacks a namespace tenant (or a compromised operator) could try, run against the real control
//! plane, each shown to fail: docs/security.md's threat model lists them.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;

use crate::chart::{refusal_of, with_admission_policy};
use crate::support::Env;

/// A fresh namespace `<prefix>-…` created with `annotations` (set at creation, so the apiserver's
/// admission sees them at once).
async fn annotated_namespace(
    env: &Env,
    prefix: &str,
    annotations: &[(&str, &str)],
) -> anyhow::Result<String> {
    let api: Api<Namespace> = Api::all(env.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = api.create(&PostParams::default(), &ns).await?;
    created.metadata.name.context("namespace without a name")
}

fn binding(name: &str, spec: serde_json::Value) -> anyhow::Result<podcreds::api::AWSRoleBinding> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSRoleBinding",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

/// One row of `tests/data/allowlist-cases.json`, the table the unit tests of
/// `src/allowlist.rs` read too.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AllowlistCase {
    annotation: String,
    role_arn: String,
    allowed: bool,
    why: String,
}

/// The admission policy's CEL and the operator's Rust (`podcreds::allowlist`) give every case of
/// the shared table the same, expected answer: a `*` never reaches into another path segment.
pub async fn role_allowlist_is_path_aware_in_cel_and_rust(env: &Env) -> anyhow::Result<()> {
    with_admission_policy(env, "vaproles", role_allowlist_checks).await
}

async fn role_allowlist_checks(env: &Env) -> anyhow::Result<()> {
    let cases: Vec<AllowlistCase> =
        serde_json::from_str(include_str!("../data/allowlist-cases.json"))?;
    let mut namespaces: BTreeMap<&str, String> = BTreeMap::new();
    for case in &cases {
        if !namespaces.contains_key(case.annotation.as_str()) {
            let ns = annotated_namespace(
                env,
                "roles",
                &[(podcreds::allowlist::ANNOTATION, &case.annotation)],
            )
            .await?;
            namespaces.insert(&case.annotation, ns);
        }
    }

    // Wait until the policy is active: a namespace allowing one role refuses another.
    let probe_ns = annotated_namespace(
        env,
        "roles-probe",
        &[(
            podcreds::allowlist::ANNOTATION,
            "arn:aws:iam::123456789012:role/probe",
        )],
    )
    .await?;
    let other =
        json!({"serviceAccountName": "app", "roleArn": "arn:aws:iam::123456789012:role/other"});
    refusal_of(
        env,
        &probe_ns,
        &env.bindings(&probe_ns),
        binding("probe", other)?,
    )
    .await
    .context("the admission policy never became active")?;

    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let ns = &namespaces[case.annotation.as_str()];
        let spec = json!({"serviceAccountName": "app", "roleArn": case.role_arn});
        let admitted = match env.create_binding(ns, &format!("case-{i}"), spec).await {
            Ok(_) => true,
            Err(kube::Error::Api(s))
                if (s.code == 403 || s.code == 422)
                    && s.message.contains("is not allowed in namespace") =>
            {
                false
            }
            Err(e) => bail!("case {i} ({}): unexpected answer: {e}", case.why),
        };
        let operator = podcreds::allowlist::allowed(&case.annotation, &case.role_arn);
        if admitted != case.allowed || operator != case.allowed {
            wrong.push(format!(
                "case {i}: {:?} vs {}: expected {}, admission said {admitted}, the operator {operator} ({})",
                case.annotation, case.role_arn, case.allowed, case.why
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    Ok(())
}

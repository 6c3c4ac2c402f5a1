//! The AWS side of a scene: IAM users' keys, credential sources, and the trust policies `podcreds iam trust-policy` prints.

use crate::support::{ACCOUNT, Env, podcreds_cli};
use anyhow::{Context, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use podcreds::api::AWSCredentialSource;
use serde_json::Value;
use serde_json::json;
use std::collections::BTreeMap;
use sts_emulator::User;

/// A source as [`create_source`] makes it, with `grants` as the rest of its spec.
pub(crate) async fn create_source_with(
    env: &Env,
    op_ns: &str,
    keys: &Keys,
    grants: serde_json::Value,
) -> anyhow::Result<String> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("user-keys".into()),
            namespace: Some(op_ns.to_string()),
            ..ObjectMeta::default()
        },
        data: Some(key_data(keys)),
        ..Secret::default()
    };
    env.secrets(op_ns)
        .create(&PostParams::default(), &secret)
        .await?;
    let source: AWSCredentialSource = serde_json::from_value(json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSCredentialSource",
        "metadata": {"name": op_ns},
        "spec": {"secretRef": {"name": "user-keys", "namespace": op_ns}},
    }))?;
    let mut source = source;
    let mut spec = serde_json::to_value(&source.spec)?;
    if let (Some(spec), Some(grants)) = (spec.as_object_mut(), grants.as_object()) {
        for (k, v) in grants {
            spec.insert(k.clone(), v.clone());
        }
    }
    source.spec = serde_json::from_value(spec)?;
    Api::<AWSCredentialSource>::all(env.client.clone())
        .create(&PostParams::default(), &source)
        .await?;
    Ok(op_ns.to_string())
}

/// Lets namespace `ns` bind every role of the test account and use the modes of `source` that
/// assume no role (which a namespace must list itself).
pub(crate) async fn allow_source_modes(env: &Env, ns: &str, source: &str) -> anyhow::Result<()> {
    env.allow_roles(
        ns,
        &format!(
            "arn:aws:iam::{ACCOUNT}:role/**,podcreds:credential-source/{source}/GetFederationToken,podcreds:credential-source/{source}/GetSessionToken"
        ),
    )
    .await
}

/// A source named after the operator's namespace `op_ns`, whose Secret `user-keys` there holds
/// `keys`, allowing `allowed` every mode and 36-hour sessions (what most tests exercise; the
/// defaults are tested on their own).
pub(crate) async fn create_source(
    env: &Env,
    op_ns: &str,
    keys: &Keys,
    allowed: &[&str],
) -> anyhow::Result<String> {
    create_source_with(
        env,
        op_ns,
        keys,
        json!({
            "allowedNamespaces": allowed,
            "allowedModes": ["AssumeRole", "GetFederationToken", "GetSessionToken"],
            "maxDurationSeconds": 129600,
        }),
    )
    .await
}

/// New keys for the user `user` (`generation` makes each pair distinct).
pub(crate) fn user_keys(env: &Env, user: &str, generation: u32) -> Keys {
    let tag: String = user
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_uppercase();
    let keys = Keys {
        user_arn: format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
        access_key_id: format!("AKIA{tag}{generation}"),
        secret_access_key: format!("{user}/{generation}/long-term-secret-key-material"),
    };
    env.emulator.add_user(User {
        arn: keys.user_arn.clone(),
        access_key_id: keys.access_key_id.clone(),
        secret_access_key: keys.secret_access_key.clone(),
        lifetime_seconds: None,
    });
    keys
}

/// A binding manifest as an admin would keep it.
pub(crate) fn manifest(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSRoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

/// The IAM side, as an admin does it: `podcreds iam trust-policy` over a manifest of bindings,
/// one trust policy per role (the statements of every binding that uses the role merged), each
/// registered with `sts` as the role's trust policy.
pub(crate) async fn apply_printed_trust_policies(
    env: &Env,
    sts: &sts_emulator::Emulator,
    bindings: &[Value],
    extra_args: &[&str],
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("bindings.yaml");
    let text: Vec<String> = bindings
        .iter()
        .map(serde_yaml::to_string)
        .collect::<Result<_, _>>()?;
    std::fs::write(&manifest, text.join("---\n"))?;
    let manifest = manifest.to_string_lossy().to_string();
    let mut args = vec![
        "iam",
        "trust-policy",
        "-f",
        manifest.as_str(),
        "--issuer",
        env.plane.api_url.as_str(),
        "-o",
        "json",
    ];
    args.extend_from_slice(extra_args);
    let out = podcreds_cli(env, &args).await?;
    ensure!(
        out.status.success(),
        "podcreds iam trust-policy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    let mut by_role: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in printed {
        let role = entry["roleArn"].as_str().context("roleArn")?.to_string();
        let statements = entry["trustPolicy"]["Statement"]
            .as_array()
            .context("Statement")?
            .clone();
        by_role.entry(role).or_default().extend(statements);
    }
    let provider = env.plane.api_url.trim_start_matches("https://");
    for (role, statements) in by_role {
        let document = json!({"Version": "2012-10-17", "Statement": statements});
        let parsed = sts_emulator::role_from_trust_policy(&role, &document, provider)
            .map_err(|e| anyhow::anyhow!("the emulator cannot read the policy of {role}: {e}"))?;
        sts.add_role(parsed);
    }
    Ok(())
}

pub(crate) fn key_data(keys: &Keys) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            ByteString(keys.access_key_id.clone().into_bytes()),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            ByteString(keys.secret_access_key.clone().into_bytes()),
        ),
    ])
}

/// Long-term keys of one IAM user, registered on the emulator.
pub(crate) struct Keys {
    pub(crate) user_arn: String,
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
}

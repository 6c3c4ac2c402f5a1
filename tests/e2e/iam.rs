//! The IAM helpers an administrator runs: `podcreds iam trust-policy` prints trust policies the
//! emulator then enforces as written (a binding they were printed for gets Ready, any other
//! ServiceAccount is refused), and `podcreds oidc export` writes documents that verify the
//! cluster's real tokens.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use sts_emulator::role_from_trust_policy;

use crate::support::{ACCOUNT, Env, aws_caller_identity, kubelet_layout, spec_with};

const READY: Duration = Duration::from_secs(60);

/// Runs the podcreds binary with `args` as the cluster admin; its stdout on success.
async fn podcreds(env: &Env, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_podcreds"))
        .args(args)
        .env("KUBECONFIG", &env.plane.kubeconfig)
        .output()
        .await?;
    Ok(out)
}

async fn podcreds_ok(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    let out = podcreds(env, args).await?;
    if !out.status.success() {
        bail!(
            "podcreds {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn oidc_provider(env: &Env) -> anyhow::Result<String> {
    Ok(env
        .plane
        .api_url
        .strip_prefix("https://")
        .context("the test issuer is https")?
        .trim_end_matches('/')
        .to_string())
}

pub async fn trust_policies_printed_for_a_chain_admit_exactly_its_binding(
    env: &Env,
) -> anyhow::Result<()> {
    let ns = env.namespace("iam").await?;
    env.service_account(&ns, "app").await?;
    env.service_account(&ns, "other").await?;
    let arn = |name: &str| format!("arn:aws:iam::{ACCOUNT}:role/{ns}-{name}");
    let mount = tempfile::tempdir()?;
    let mount_path = mount.path().to_string_lossy().to_string();
    let spec = spec_with(
        &arn("entry"),
        json!({
            "durationSeconds": 900,
            "mountPath": mount_path,
            "roleChain": [
                {"roleArn": arn("hub"), "sourceIdentity": "alice"},
                {"roleArn": arn("leaf"), "externalId": "ext-42",
                 "tags": [{"key": "team", "value": "a"}]},
            ],
        }),
    );
    env.create_binding(&ns, "reader", spec.clone()).await?;

    // The administrator's step: print the policies from the binding in the cluster (the issuer
    // read from the cluster's own discovery document) and give them to IAM as they are.
    let printed = podcreds_ok(
        env,
        &[
            "iam",
            "trust-policy",
            "-n",
            &ns,
            "reader",
            "--output",
            "json",
        ],
    )
    .await?;
    let policies: Vec<Value> = serde_json::from_str(&printed)?;
    let roles: Vec<&str> = policies
        .iter()
        .filter_map(|p| p["roleArn"].as_str())
        .collect();
    ensure!(
        roles == [arn("entry"), arn("hub"), arn("leaf")],
        "one policy per role of the chain, in order: {roles:?}"
    );
    let provider = oidc_provider(env)?;
    for policy in &policies {
        let role_arn = policy["roleArn"].as_str().unwrap_or_default();
        let role = role_from_trust_policy(role_arn, &policy["trustPolicy"], &provider)
            .with_context(|| format!("the emulator cannot read the policy of {role_arn}"))?;
        env.emulator.add_role(role);
    }
    // The text form is what a person reads: each policy under the command that applies it.
    let text = podcreds_ok(env, &["iam", "trust-policy", "-n", &ns, "reader"]).await?;
    ensure!(
        text.contains(&format!(
            "aws iam update-assume-role-policy --role-name {ns}-leaf"
        )),
        "{text}"
    );

    let _operator = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.wait_ready(&ns, "reader", "True", READY).await?;
    let data = env.secret_data(&ns, "reader").await?;
    kubelet_layout(mount.path(), &data, 1)?;
    let identity = aws_caller_identity(
        &env.emulator.url(),
        &[("AWS_CONFIG_FILE", &mount.path().join("config"))],
    )
    .await?;
    let expected = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ns}-leaf/");
    ensure!(
        identity["Arn"]
            .as_str()
            .is_some_and(|a| a.starts_with(&expected)),
        "the Secret's credentials are the leaf role's: {identity}"
    );

    // The same roles refuse another ServiceAccount of the namespace: the policy pinned `sub`.
    let mut other = spec;
    other["serviceAccountName"] = json!("other");
    other["secretName"] = json!("other");
    env.create_binding(&ns, "other", other).await?;
    env.wait_reason(&ns, "other", "StsAccessDenied", READY)
        .await?;
    ensure!(
        env.secret_data(&ns, "other").await.is_err(),
        "a refused binding gets no Secret"
    );
    Ok(())
}

/// Verifies `token`'s signature and issuer against the exported JWKS, as IAM would.
fn verify_with_exported_jwks(token: &str, jwks: &Value, issuer: &str) -> anyhow::Result<()> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.context("the token names no key")?;
    let keys: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone())?;
    let key = keys
        .find(&kid)
        .with_context(|| format!("the exported JWKS lacks key {kid}"))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&["sts.amazonaws.com"]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(key)?,
        &validation,
    )?;
    Ok(())
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{} was not written", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

pub async fn exported_oidc_documents_verify_the_clusters_tokens(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("oidc").await?;
    env.service_account(&ns, "app").await?;
    let out = tempfile::tempdir()?;
    let out_path = out.path().to_string_lossy().to_string();
    let issuer = env.plane.api_url.trim_end_matches('/').to_string();
    let said = podcreds_ok(
        env,
        &["oidc", "export", "--out", &out_path, "--issuer", &issuer],
    )
    .await?;
    ensure!(
        said.contains(&format!(
            "aws iam create-open-id-connect-provider --url {issuer}"
        )),
        "the command says how to register the provider: {said}"
    );
    let discovery = read_json(&out.path().join(".well-known/openid-configuration"))?;
    ensure!(discovery["issuer"] == issuer.as_str(), "{discovery}");
    ensure!(
        discovery["jwks_uri"] == format!("{issuer}/openid/v1/jwks").as_str(),
        "the discovery document points at the JWKS hosted beside it: {discovery}"
    );
    let jwks = read_json(&out.path().join("openid/v1/jwks"))?;

    // A real token of the cluster verifies against the exported keys alone.
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["sts.amazonaws.com".into()]),
            expiration_seconds: Some(600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = accounts
        .create_token_request("app", &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .context("no token")?;
    verify_with_exported_jwks(&token, &jwks, &issuer)?;

    // An issuer that is not the cluster's would make IAM trust nothing: refused, nothing written.
    let elsewhere = tempfile::tempdir()?;
    let refused = podcreds(
        env,
        &[
            "oidc",
            "export",
            "--out",
            &elsewhere.path().to_string_lossy(),
            "--issuer",
            "https://oidc.example.com",
        ],
    )
    .await?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("not \"https://oidc.example.com\""),
        "a foreign issuer is refused with the reason: {stderr}"
    );
    ensure!(
        std::fs::read_dir(elsewhere.path())?.next().is_none(),
        "nothing is written when the export is refused"
    );
    Ok(())
}

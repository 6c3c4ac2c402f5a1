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
use sts_emulator::{Emulator, Faults, role_from_trust_policy};

use crate::support::{
    ACCOUNT, Env, aws_caller_identity, kubelet_layout, ready_message, spec, spec_with, wait_for,
};

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
                {"roleArn": arn("hub"), "sourceIdentity": format!("{ns}.alice")},
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

/// Waits until `name`'s Ready condition has `reason` and a message containing `fix`.
async fn wait_for_fix(
    env: &Env,
    ns: &str,
    name: &str,
    reason: &str,
    fix: &str,
) -> anyhow::Result<()> {
    let found = wait_for(READY, || async {
        let binding = env.bindings(ns).get(name).await.ok()?;
        let message = ready_message(&binding);
        let condition = podcreds::status::ready_condition(binding.status.as_ref())?;
        (condition.reason == reason && message.contains(fix)).then_some(())
    })
    .await;
    if found.is_none() {
        let binding = env.bindings(ns).get(name).await?;
        bail!(
            "{ns}/{name} never said {reason} with {fix:?}: {:?}",
            binding.status.as_ref().map(|s| &s.conditions)
        );
    }
    Ok(())
}

pub async fn setup_mistakes_are_reported_with_their_fix(env: &Env) -> anyhow::Result<()> {
    // A trust policy that pins another ServiceAccount, and an audience IAM's provider lacks.
    let (ns, _role) = env.app_namespace("setup", None).await?;
    env.service_account(&ns, "web").await?;
    let role_for_app = format!("arn:aws:iam::{ACCOUNT}:role/{ns}-r");
    let _operator = env
        .start_operator(
            &[&ns],
            &env.emulator.url(),
            &["--allowed-audiences=internal"],
        )
        .await?;
    let mut denied = spec(&role_for_app);
    denied["serviceAccountName"] = json!("web");
    env.create_binding(&ns, "web", denied).await?;
    wait_for_fix(
        env,
        &ns,
        "web",
        "StsAccessDenied",
        &format!("sub system:serviceaccount:{ns}:web and aud sts.amazonaws.com: `podcreds iam trust-policy -n {ns} web`"),
    )
    .await?;
    env.create_binding(
        &ns,
        "aud",
        spec_with(&role_for_app, json!({"audience": "internal"})),
    )
    .await?;
    wait_for_fix(
        env,
        &ns,
        "aud",
        "StsInvalidIdentityToken",
        "add-client-id-to-open-id-connect-provider",
    )
    .await?;

    // An STS that has no provider for this cluster's issuer (another account, another cluster).
    let elsewhere = Emulator::start(sts_emulator::Config::for_issuer(
        "https://oidc.example.com/other-cluster",
        &env.plane.ca_pem,
    ))
    .await?;
    elsewhere.add_role(sts_emulator::Role {
        arn: role_for_app.clone(),
        subjects: vec![format!("system:serviceaccount:{ns}:app")],
        ..Default::default()
    });
    let ns2 = env.namespace("setup-issuer").await?;
    env.service_account(&ns2, "app").await?;
    let _operator2 = env.start_operator(&[&ns2], &elsewhere.url(), &[]).await?;
    env.create_binding(&ns2, "app", spec(&role_for_app)).await?;
    wait_for_fix(
        env,
        &ns2,
        "app",
        "StsInvalidIdentityToken",
        "no IAM OIDC provider is registered for the cluster's issuer",
    )
    .await?;

    // AWS cannot fetch the issuer's keys (the documents are not hosted where the issuer says).
    let unreachable = Emulator::start(sts_emulator::Config::for_issuer(
        &env.plane.api_url,
        &env.plane.ca_pem,
    ))
    .await?;
    unreachable.add_role(sts_emulator::Role {
        arn: role_for_app.clone(),
        subjects: vec![format!("system:serviceaccount:{ns}:app")],
        ..Default::default()
    });
    unreachable.set_faults(Faults {
        idp_error_next: 1_000,
        ..Faults::default()
    });
    let ns3 = env.namespace("setup-jwks").await?;
    env.service_account(&ns3, "app").await?;
    let _operator3 = env.start_operator(&[&ns3], &unreachable.url(), &[]).await?;
    env.create_binding(&ns3, "app", spec(&role_for_app)).await?;
    wait_for_fix(
        env,
        &ns3,
        "app",
        "StsUnavailable",
        "AWS could not fetch the cluster's JWKS",
    )
    .await?;
    // The hint travels with the Event too, where `kubectl describe` shows it.
    let events = env.events(&ns).await?;
    ensure!(
        events.iter().any(|e| e
            .message
            .as_deref()
            .is_some_and(|n| n.contains("podcreds iam trust-policy"))),
        "the Event carries the fix: {:?}",
        events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![iam:
    trust_policies_printed_for_a_chain_admit_exactly_its_binding,
    exported_oidc_documents_verify_the_clusters_tokens,
    setup_mistakes_are_reported_with_their_fix,
];

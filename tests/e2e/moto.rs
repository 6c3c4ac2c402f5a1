//! The core flow and a role chain against moto, an STS implementation we did not write: proves wire
//! compatibility (moto checks nothing about the token itself, nor trust policies).

use std::time::Duration;

use anyhow::{Context, ensure};
use podcreds_testenv::decode_secret;
use serde_json::json;

use crate::support::peers::start_moto;
use crate::support::{Env, aws_caller_identity, spec_with};

pub async fn core_flow_against_moto(env: &Env) -> anyhow::Result<()> {
    let (mut moto, moto_url) = start_moto(env).await?;

    let ns = env.namespace("moto").await?;
    env.service_account(&ns, "app").await?;
    let _op = env.start_operator(&[&ns], &moto_url, &[]).await?;
    let role = format!("arn:aws:iam::{}:role/moto-role", crate::support::ACCOUNT);
    let binding = env
        .create_ready(
            &ns,
            "moto",
            spec_with(&role, json!({"durationSeconds": 900})),
            Duration::from_secs(60),
        )
        .await?;
    let status = binding.status.context("status")?;
    let assumed = status.assumed_role_arn.context("assumedRoleArn")?;
    ensure!(assumed.contains(":assumed-role/moto-role/"), "{assumed}");

    let data = decode_secret(&env.secrets(&ns).get("moto").await?);
    ensure!(
        data["AWS_ACCESS_KEY_ID"].starts_with("ASIA"),
        "moto issued {}",
        data["AWS_ACCESS_KEY_ID"]
    );
    let process: serde_json::Value = serde_json::from_str(&data["credential-process.json"])?;
    let exp: jiff::Timestamp = process["Expiration"]
        .as_str()
        .context("Expiration")?
        .parse()?;
    ensure!(exp > jiff::Timestamp::now());

    // The shared-credentials file works with the AWS CLI against moto.
    let dir = tempfile::tempdir()?;
    let (creds, config) = crate::support::secret_files(dir.path(), &data)?;
    let ident = aws_caller_identity(
        &moto_url,
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &creds),
            ("AWS_CONFIG_FILE", &config),
        ],
    )
    .await?;
    ensure!(
        ident["Account"] == crate::support::ACCOUNT,
        "moto answered {ident}"
    );
    moto.terminate()?;
    Ok(())
}

/// A role chain against moto: wire compatibility of `AssumeRole` with tags, transitive keys, a
/// source identity and an external ID, signed with the first exchange's credentials (moto
/// checks no trust policy; the emulator does).
pub async fn role_chain_against_moto(env: &Env) -> anyhow::Result<()> {
    let (mut moto, moto_url) = start_moto(env).await?;
    let ns = env.namespace("motochain").await?;
    env.service_account(&ns, "app").await?;
    let _op = env
        .start_operator(&[&ns], &moto_url, &["--cluster-name=moto"])
        .await?;
    let entry = format!("arn:aws:iam::{}:role/moto-entry", crate::support::ACCOUNT);
    let hop = format!("arn:aws:iam::{}:role/moto-hop", crate::support::ACCOUNT);
    let binding = env
        .create_ready(
            &ns,
            "chained",
            spec_with(
                &entry,
                json!({
                    "durationSeconds": 7200,
                    "kubernetesSessionTags": true,
                    "roleChain": [{
                        "roleArn": hop,
                        "externalId": "ext-1",
                        "sourceIdentity": format!("{ns}.moto-user"),
                        "tags": [{"key": "team", "value": "a"}],
                        "transitiveTagKeys": ["team"],
                        "sessionPolicy": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
                    }],
                }),
            ),
            Duration::from_secs(60),
        )
        .await?;
    let status = binding.status.context("status")?;
    let assumed = status.assumed_role_arn.context("assumedRoleArn")?;
    ensure!(assumed.contains(":assumed-role/moto-hop/"), "{assumed}");
    ensure!(status.chain.len() == 1, "{:?}", status.chain);
    ensure!(
        status.chain[0].expiration.is_some(),
        "moto's answer had no readable Expiration"
    );
    let clamped = status
        .conditions
        .iter()
        .find(|c| c.type_ == "SessionDurationClamped")
        .context("no SessionDurationClamped")?;
    ensure!(clamped.status == "True", "{clamped:?}");

    // The chained credentials work with the AWS CLI against moto, as the hop's role.
    let data = decode_secret(&env.secrets(&ns).get("chained").await?);
    let dir = tempfile::tempdir()?;
    let (creds, config) = crate::support::secret_files(dir.path(), &data)?;
    let ident = aws_caller_identity(
        &moto_url,
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &creds),
            ("AWS_CONFIG_FILE", &config),
        ],
    )
    .await?;
    ensure!(
        ident["Arn"]
            .as_str()
            .is_some_and(|a| a.contains(":assumed-role/moto-hop/")),
        "moto answered {ident}"
    );
    moto.terminate()?;
    Ok(())
}

/// The three long-term-key modes against moto: each binding gets Ready with credentials moto
/// issued, which the AWS CLI then uses against moto.
pub async fn credential_sources_against_moto(env: &Env) -> anyhow::Result<()> {
    let (mut moto, moto_url) = start_moto(env).await?;
    let ns = env.namespace("moto-src").await?;
    env.service_account(&ns, "app").await?;
    let op_ns = env.namespace("moto-src-op").await?;
    // moto checks no signature: any well-formed long-term key pair will do.
    let keys = crate::support::aws::user_keys(env, &op_ns, 1);
    let source = crate::support::aws::create_source(env, &op_ns, &keys, &[&ns]).await?;
    crate::support::aws::allow_source_modes(env, &ns, &source).await?;
    let _op = env
        .start_operator(&[&ns], &moto_url, &[&format!("--namespace={op_ns}")])
        .await?;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    let role = format!(
        "arn:aws:iam::{}:role/moto-user-role",
        crate::support::ACCOUNT
    );
    for (name, spec) in [
        (
            "federation",
            json!({"serviceAccountName": "app", "sessionPolicy": policy,
                   "credentialSource": {"name": source, "mode": "GetFederationToken"}}),
        ),
        (
            "session",
            json!({"serviceAccountName": "app",
                   "credentialSource": {"name": source, "mode": "GetSessionToken"}}),
        ),
        (
            "assume",
            json!({"serviceAccountName": "app", "roleArn": role,
                   "credentialSource": {"name": source}}),
        ),
    ] {
        let binding = env
            .create_ready(&ns, name, spec, Duration::from_secs(60))
            .await
            .with_context(|| format!("{name} against moto"))?;
        let data = decode_secret(&env.secrets(&ns).get(name).await?);
        ensure!(
            data["AWS_ACCESS_KEY_ID"] != keys.access_key_id
                && data.get("AWS_SESSION_TOKEN").is_some_and(|t| !t.is_empty()),
            "{name}: the Secret holds what moto issued (with a session token), not the source's keys"
        );
        let status = binding.status.context("status")?;
        ensure!(status.expiration.is_some(), "{name}: {status:?}");
        let dir = tempfile::tempdir()?;
        let (creds, config) = crate::support::secret_files(dir.path(), &data)?;
        let ident = aws_caller_identity(
            &moto_url,
            &[
                ("AWS_SHARED_CREDENTIALS_FILE", &creds),
                ("AWS_CONFIG_FILE", &config),
            ],
        )
        .await
        .with_context(|| format!("{name}: the AWS CLI with moto's credentials"))?;
        ensure!(ident["Account"].is_string(), "{name}: {ident}");
    }
    moto.terminate()?;
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![moto:
    core_flow_against_moto,
    role_chain_against_moto,
    credential_sources_against_moto,
];

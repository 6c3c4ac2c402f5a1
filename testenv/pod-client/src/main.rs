//! Runs in a test pod on the test node, built static so its image needs nothing else: a client
//! that consumes podcreds' Secret the way AWS SDKs do. Every round it reads `AWS_CONFIG_FILE`, runs
//! the profile's `credential_process` (as an SDK does when it refreshes), and calls STS
//! GetCallerIdentity with aws-sdk-sts and those credentials, so every round proves that what the
//! kubelet currently shows in the volume works.
//!
//! With `AWS_CONTAINER_CREDENTIALS_FULL_URI` set it uses the SDK's container-credentials provider
//! instead (aws-config's `EcsCredentialsProvider`, which sends the contents of
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`), kept for the whole run behind the SDK's own
//! credentials cache, as an application would: the SDK decides when to fetch again.
//!
//! Usage: `pod-client <sts-endpoint> [interval-ms]`. One JSON line per round on stdout:
//! `{"unix_ms", "credentials", "expiration", "arn", "error"}`, where `credentials` is a short
//! SHA-256 fingerprint of the access key id (no credential is ever printed). Runs until killed.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::{Arc, Mutex};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use sha2::{Digest, Sha256};

/// The `[default]` profile's `region` and `credential_process` of an AWS config file.
fn profile(config: &str) -> Result<(String, String), String> {
    let mut in_default = false;
    let (mut region, mut process) = (None, None);
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_default = line == "[default]";
            continue;
        }
        if !in_default {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "region" => region = Some(value.trim().to_string()),
                "credential_process" => process = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    match (region, process) {
        (Some(r), Some(p)) => Ok((r, p)),
        _ => Err("the [default] profile has no region or no credential_process".into()),
    }
}

/// What `credential_process` printed, checked like an SDK checks it.
struct ProcessCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

fn run_credential_process(command: &str) -> Result<ProcessCredentials, String> {
    // podcreds restricts the mount path to [A-Za-z0-9._/-], so splitting on whitespace is exact.
    let mut words = command.split_whitespace();
    let program = words.next().ok_or("credential_process is empty")?;
    let output = std::process::Command::new(program)
        .args(words)
        .output()
        .map_err(|e| format!("cannot run credential_process {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!("credential_process exited with {}", output.status));
    }
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("credential_process printed no JSON document: {e}"))?;
    let field = |name: &str| {
        doc.get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("credential_process output lacks {name}"))
    };
    if doc.get("Version").and_then(|v| v.as_u64()) != Some(1) {
        return Err("credential_process output is not Version 1".into());
    }
    Ok(ProcessCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: field("SessionToken")?,
        expiration: field("Expiration")?,
    })
}

fn fingerprint(access_key_id: &str) -> String {
    hex::encode(&Sha256::digest(access_key_id.as_bytes())[..6])
}

/// The SDK's container-credentials provider, noting what it last fetched (fingerprint,
/// expiration) for the round's line, and counting its fetches.
#[derive(Debug)]
struct Noted {
    inner: aws_config::ecs::EcsCredentialsProvider,
    last: Arc<Mutex<(String, String, u64)>>,
}

impl ProvideCredentials for Noted {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let credentials = self.inner.provide_credentials().await?;
            if let Ok(mut last) = self.last.lock() {
                last.0 = fingerprint(credentials.access_key_id());
                last.1 = credentials
                    .expiry()
                    .and_then(|e| e.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs().to_string())
                    .unwrap_or_default();
                last.2 += 1;
            }
            Ok(credentials)
        })
    }
}

/// One client for the whole run, on the container-credentials endpoint.
struct EndpointClient {
    sts: aws_sdk_sts::Client,
    last: Arc<Mutex<(String, String, u64)>>,
}

fn endpoint_client(endpoint: &str) -> EndpointClient {
    let last = Arc::new(Mutex::new((String::new(), String::new(), 0)));
    let provider = Noted {
        inner: aws_config::ecs::EcsCredentialsProvider::builder().build(),
        last: last.clone(),
    };
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build();
    EndpointClient {
        sts: aws_sdk_sts::Client::from_conf(config),
        last,
    }
}

async fn endpoint_round(client: &EndpointClient) -> serde_json::Value {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut line = serde_json::json!({"unix_ms": unix_ms});
    let outcome = client.sts.get_caller_identity().send().await;
    if let Ok(last) = client.last.lock() {
        line["credentials"] = last.0.clone().into();
        line["expiration"] = last.1.clone().into();
        line["fetches"] = last.2.into();
    }
    match outcome {
        Ok(identity) => line["arn"] = identity.arn().unwrap_or_default().into(),
        Err(e) => {
            line["error"] = format!(
                "GetCallerIdentity: {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            )
            .into()
        }
    }
    line
}

async fn round(endpoint: &str) -> serde_json::Value {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut line = serde_json::json!({"unix_ms": unix_ms});
    let outcome = async {
        let path = std::env::var("AWS_CONFIG_FILE").map_err(|_| "AWS_CONFIG_FILE is not set")?;
        let config = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let (region, command) = profile(&config)?;
        let creds = run_credential_process(&command)?;
        line["credentials"] = fingerprint(&creds.access_key_id).into();
        line["expiration"] = creds.expiration.clone().into();
        let sts_config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                creds.access_key_id,
                creds.secret_access_key,
                Some(creds.session_token),
                None,
                "credential_process",
            ))
            .build();
        let identity = aws_sdk_sts::Client::from_conf(sts_config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                format!(
                    "GetCallerIdentity: {}",
                    aws_sdk_sts::error::DisplayErrorContext(e)
                )
            })?;
        Ok::<_, String>(identity.arn().unwrap_or_default().to_string())
    }
    .await;
    match outcome {
        Ok(arn) => line["arn"] = arn.into(),
        Err(e) => line["error"] = e.into(),
    }
    line
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(endpoint) = args.next() else {
        eprintln!("usage: pod-client <sts-endpoint> [interval-ms]");
        return ExitCode::from(2);
    };
    let interval = args
        .next()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(1));
    if std::env::var_os("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some() {
        let client = endpoint_client(&endpoint);
        loop {
            println!("{}", endpoint_round(&client).await);
            tokio::time::sleep(interval).await;
        }
    }
    loop {
        println!("{}", round(&endpoint).await);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_profile_of_the_generated_config() {
        let config = "[profile other]\nregion = x\n[default]\nregion = eu-west-1\ncredential_process = cat /m/credential-process.json\n";
        assert_eq!(
            profile(config),
            Ok((
                "eu-west-1".to_string(),
                "cat /m/credential-process.json".to_string()
            ))
        );
        assert!(profile("[default]\nregion = x\n").is_err());
    }
}

//! The floor: the bare work of N bindings (TokenRequest, STS, Secret create) done directly by a
//! minimal client, the yardstick for podcreds' time to Ready.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use podcreds::sts::{AssumeRoleRequest, AwsStsClient, StsClient, StsTimeouts};
use podcreds_testenv::ControlPlane;
use secrecy::SecretString;
use sts_emulator::Emulator;

use super::phase::{Phase, PhaseMeter, maybe_profile};
use super::{Args, ROLE, create_namespace, create_service_accounts};

/// The bare work of N bindings done directly: TokenRequest, STS, Secret create.
pub async fn measure(
    plane: &ControlPlane,
    client: &kube::Client,
    emulator: &Emulator,
    n: usize,
    run: usize,
    args: &Args,
) -> anyhow::Result<(f64, Phase)> {
    let concurrency = args.concurrency;
    let ns = format!("floor-{n}-{run}");
    create_namespace(client, &ns).await?;
    create_service_accounts(client, &ns, n, concurrency).await?;
    let sts = AwsStsClient::new(StsTimeouts::default());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let profile = maybe_profile(args, client, &format!("floor-{n}-{run}"));
    let meter = PhaseMeter::start(plane, client, None).await?;
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (accounts, secrets, sts, ns) = (&accounts, &secrets, &sts, &ns);
            async move {
                let request = TokenRequest {
                    spec: Some(TokenRequestSpec {
                        audiences: Some(vec!["sts.amazonaws.com".into()]),
                        expiration_seconds: Some(600),
                        ..TokenRequestSpec::default()
                    }),
                    ..TokenRequest::default()
                };
                let token = accounts
                    .create_token_request(&format!("sa-{i}"), &PostParams::default(), &request)
                    .await?
                    .status
                    .and_then(|s| s.token)
                    .context("no token")?;
                let creds = sts
                    .assume_role_with_web_identity(AssumeRoleRequest {
                        role_arn: ROLE.into(),
                        session_name: format!("{ns}.b{i}"),
                        web_identity_token: SecretString::from(token),
                        duration_seconds: 3600,
                        session_policy: None,
                        policy_arns: vec![],
                        region: "us-east-1".into(),
                        endpoint: Some(emulator.url()),
                    })
                    .await?;
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("b{i}")),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([(
                        "AWS_ACCESS_KEY_ID".to_string(),
                        ByteString(creds.access_key_id.into_bytes()),
                    )])),
                    ..Secret::default()
                };
                secrets.create(&PostParams::default(), &secret).await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let phase = meter.finish(client).await?;
    if let Some(profile) = profile {
        profile.await?;
    }
    Ok((seconds, phase))
}

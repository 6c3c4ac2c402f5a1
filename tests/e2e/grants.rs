//! A tenant gets exactly what its namespace was granted, through every path: Kubernetes session
//! tags cannot be forged with another session of a shared role, a credential source hands out
//! only the modes, roles and durations it names, and what podcreds signs or sends goes only where
//! it belongs. Every role here trusts exactly what `podcreds iam trust-policy` prints, and the
//! STS emulator evaluates those policies statement by statement, as IAM does.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use podcreds::credentials::{IssuedCredentials, Signer};
use podcreds::sts::{
    AssumeRoleRequest, AwsStsClient, SessionScope, StsClient, StsErrorKind, StsTarget, StsTimeouts,
};
use secrecy::SecretString;
use serde_json::json;

use crate::support::aws::{apply_printed_trust_policies, manifest};
use crate::support::aws::{create_source_with, user_keys};
use crate::support::{ACCOUNT, Env, spec_with};

const READY: Duration = Duration::from_secs(60);

/// The credentials in a binding's Secret.
async fn credentials_of(env: &Env, ns: &str, name: &str) -> anyhow::Result<IssuedCredentials> {
    let data = env.secret_data(ns, name).await?;
    let get = |key: &str| data.get(key).cloned().context(format!("no {key}"));
    Ok(IssuedCredentials {
        access_key_id: get("AWS_ACCESS_KEY_ID")?,
        secret_access_key: SecretString::from(get("AWS_SECRET_ACCESS_KEY")?),
        session_token: SecretString::from(get("AWS_SESSION_TOKEN")?),
        expiration: jiff::Timestamp::now(),
        assumed_role_arn: None,
        chain: None,
        sts_endpoint: None,
    })
}

/// `AssumeRole` of `role_arn` signed with `signer`, as a tenant holding those credentials would
/// call it.
async fn assume_as_tenant(
    env: &Env,
    signer: Signer,
    role_arn: &str,
    session_name: &str,
    tags: Vec<(String, String)>,
) -> Result<(), podcreds::sts::StsError> {
    let transitive = tags.iter().map(|(k, _)| k.clone()).collect();
    AwsStsClient::new(StsTimeouts::default(), None)
        .assume_role(AssumeRoleRequest {
            signer,
            role_arn: role_arn.to_string(),
            session_name: session_name.to_string(),
            external_id: None,
            tags,
            transitive_tag_keys: transitive,
            source_identity: None,
            scope: SessionScope {
                duration_seconds: 900,
                policy: None,
                policy_arns: vec![],
            },
            target: StsTarget {
                region: "us-east-1".into(),
                endpoint: Some(env.emulator.url()),
            },
        })
        .await
        .map(|_| ())
}

fn kubernetes_tags(ns: &str, binding: &str) -> Vec<(String, String)> {
    [
        ("kubernetes-namespace", ns),
        ("kubernetes-service-account", "app"),
        ("kubernetes-binding-name", binding),
        ("kubernetes-cluster-name", "e2e"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// HIGH 1 of the security review: a dev tenant binds the entry role that dev's and prod's
/// chains share, reads its credentials, and calls `AssumeRole` on the shared hop claiming
/// `kubernetes-namespace: prod`. The printed trust policies pin the hop to each binding's own
/// session of the entry role and to its tag values: refused, while both chains work.
pub async fn forged_kubernetes_tags_are_refused(env: &Env) -> anyhow::Result<()> {
    let prod = env.namespace("tags-prod").await?;
    let dev = env.namespace("tags-dev").await?;
    for ns in [&prod, &dev] {
        env.service_account(ns, "app").await?;
    }
    let entry = format!("arn:aws:iam::{ACCOUNT}:role/{dev}-shared-entry");
    let hop = format!("arn:aws:iam::{ACCOUNT}:role/{dev}-shared-hop");
    let chained = |ns: &str| {
        manifest(
            ns,
            "chained",
            spec_with(
                &entry,
                json!({"kubernetesSessionTags": true, "roleChain": [{"roleArn": hop}]}),
            ),
        )
    };
    let entry_only = manifest(&dev, "entry-only", spec_with(&entry, json!({})));
    let bindings = [chained(&prod), chained(&dev), entry_only];
    apply_printed_trust_policies(env, &env.emulator, &bindings, &["--cluster-name", "e2e"]).await?;
    let _op = env
        .start_operator(&[&prod, &dev], &env.emulator.url(), &["--cluster-name=e2e"])
        .await?;
    for binding in &bindings {
        let ns = binding["metadata"]["namespace"].as_str().context("ns")?;
        let name = binding["metadata"]["name"].as_str().context("name")?;
        env.create_ready(ns, name, binding["spec"].clone(), READY)
            .await?;
    }
    // Positive control: prod's hop carried prod's tags.
    let prod_hop = env.emulator.calls().calls.into_iter().find(|c| {
        c.action == "AssumeRole"
            && c.role_arn.as_deref() == Some(hop.as_str())
            && c.result == "Ok"
            && c.tags
                .iter()
                .any(|t| t.key == "kubernetes-namespace" && t.value == prod)
    });
    ensure!(prod_hop.is_some(), "prod's chain never reached the hop");

    // The attack: dev's own session of the shared entry role, claiming prod.
    let stolen = credentials_of(env, &dev, "entry-only").await?;
    let forged = assume_as_tenant(
        env,
        Signer::Session(stolen.clone()),
        &hop,
        &format!("{dev}.forged"),
        kubernetes_tags(&prod, "chained"),
    )
    .await;
    match forged {
        Err(e) if e.kind == StsErrorKind::AccessDenied => {}
        Err(e) => bail!("the forged tags were refused, but not by the trust policy: {e}"),
        Ok(()) => bail!("a dev session of the shared entry role assumed the hop as prod"),
    }
    // Not even with dev's own values: the hop trusts dev's chained binding's session only.
    let own = assume_as_tenant(
        env,
        Signer::Session(stolen),
        &hop,
        &format!("{dev}.forged"),
        kubernetes_tags(&dev, "chained"),
    )
    .await;
    ensure!(
        own.as_ref().err().map(|e| e.kind) == Some(StsErrorKind::AccessDenied),
        "the hop admitted another session of the entry role: {own:?}"
    );
    Ok(())
}

/// HIGH 2 of the security review: a source that says nothing grants `AssumeRole` only; a team
/// cannot get the IAM user's own session (`GetSessionToken`), and with its own credentials
/// cannot assume another team's role, whose printed trust policy pins that team's session names.
pub async fn a_credential_source_grants_only_what_it_names(env: &Env) -> anyhow::Result<()> {
    let team_a = env.namespace("grant-a").await?;
    let team_b = env.namespace("grant-b").await?;
    for ns in [&team_a, &team_b] {
        env.service_account(ns, "app").await?;
    }
    let op_ns = env.namespace("grant-op").await?;
    let keys = user_keys(env, &op_ns, 1);
    let source = create_source_with(
        env,
        &op_ns,
        &keys,
        json!({"allowedNamespaces": [team_a, team_b]}),
    )
    .await?;
    // The namespaces even list the no-role mode: the source still does not grant it.
    for ns in [&team_a, &team_b] {
        env.allow_roles(
            ns,
            &format!(
                "arn:aws:iam::{ACCOUNT}:role/**,podcreds:credential-source/{source}/GetSessionToken"
            ),
        )
        .await?;
    }
    let role = |ns: &str| format!("arn:aws:iam::{ACCOUNT}:role/{ns}-reader");
    let reader = |ns: &str| {
        manifest(
            ns,
            "reader",
            json!({"serviceAccountName": "app", "roleArn": role(ns), "credentialSource": {"name": source}}),
        )
    };
    let user_arn = format!("arn:aws:iam::{ACCOUNT}:user/{op_ns}");
    apply_printed_trust_policies(
        env,
        &env.emulator,
        &[reader(&team_a), reader(&team_b)],
        &["--user-arn", &user_arn],
    )
    .await?;
    let _op = env
        .start_operator(
            &[&team_a, &team_b],
            &env.emulator.url(),
            &[&format!("--namespace={op_ns}")],
        )
        .await?;
    for ns in [&team_a, &team_b] {
        env.create_ready(ns, "reader", reader(ns)["spec"].clone(), READY)
            .await?;
    }

    // GetSessionToken is refused by the operator before the keys are used.
    env.create_binding(
        &team_a,
        "whole-user",
        json!({"serviceAccountName": "app", "credentialSource": {"name": source, "mode": "GetSessionToken"}}),
    )
    .await?;
    let refused = env
        .wait_reason(
            &team_a,
            "whole-user",
            "CredentialSourceModeNotAllowed",
            READY,
        )
        .await?;
    let message = crate::support::ready_message(&refused);
    ensure!(message.contains("allowedModes"), "{message}");
    let user_sessions = env
        .emulator
        .calls()
        .calls
        .iter()
        .filter(|c| {
            c.action == "GetSessionToken"
                && c.access_key_id.as_deref() == Some(keys.access_key_id.as_str())
        })
        .count();
    ensure!(user_sessions == 0, "{user_sessions} GetSessionToken calls");

    // team-a's credentials cannot assume team-b's role.
    let team_a_creds = credentials_of(env, &team_a, "reader").await?;
    let crossed = assume_as_tenant(
        env,
        Signer::Session(team_a_creds),
        &role(&team_b),
        &format!("{team_b}.stolen"),
        vec![],
    )
    .await;
    ensure!(
        crossed.as_ref().err().map(|e| e.kind) == Some(StsErrorKind::AccessDenied),
        "team-a's credentials assumed team-b's role: {crossed:?}"
    );
    // Nor through podcreds: team-b's role admits only team-b's session names.
    env.create_binding(&team_a, "steal", reader(&team_b)["spec"].clone())
        .await?;
    env.wait_reason(&team_a, "steal", "StsAccessDenied", READY)
        .await?;

    // With the chart's admission policies, the mode is refused before the binding exists.
    crate::support::helm::with_admission_policy(env, "grants", |env| async move {
        let spec = json!({"serviceAccountName": "app", "credentialSource": {"name": source, "mode": "GetSessionToken"}});
        let refusal = crate::support::wait_for(READY, || async {
            match env.create_binding(&team_b, "refused", spec.clone()).await {
                Err(kube::Error::Api(status))
                    if status.message.contains("does not allow mode GetSessionToken") =>
                {
                    Some(status.message)
                }
                Ok(_) => {
                    let _ = env
                        .bindings(&team_b)
                        .delete("refused", &Default::default())
                        .await;
                    None
                }
                Err(_) => None,
            }
        })
        .await
        .context("the source guard admitted a mode the source does not allow")?;
        ensure!(refusal.contains("allowedModes"), "{refusal}");
        Ok(())
    })
    .await
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![grants:
    forged_kubernetes_tags_are_refused,
    a_credential_source_grants_only_what_it_names,
];

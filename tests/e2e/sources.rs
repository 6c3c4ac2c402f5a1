//! Credential sources: an IAM user's long-term keys, in a Secret of the operator's namespace, sign
//! `AssumeRole`, `GetFederationToken` or `GetSessionToken` for bindings of the namespaces the
//! `AWSCredentialSource` allows. The emulator verifies every signature with the user's keys and
//! refuses temporary credentials where AWS does.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use podcreds::api::{AWSCredentialSource, AWSRoleBinding};
use serde_json::json;
use sts_emulator::{Faults, Role, User};

use crate::support::aws::{Keys, allow_source_modes, create_source, user_keys};
use crate::support::{ACCOUNT, Env, Operator, aws_caller_identity, kubelet_layout, wait_for};

const READY: Duration = Duration::from_secs(60);

const READ_ONLY_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;

/// A tenant namespace with ServiceAccount `app`, an operator namespace with a source allowing
/// the tenant, and an operator watching the tenant: (tenant, source, keys, operator).
async fn scenario(env: &Env, prefix: &str) -> anyhow::Result<(String, String, Keys, Operator)> {
    let ns = env.namespace(prefix).await?;
    env.service_account(&ns, "app").await?;
    let op_ns = env.namespace(&format!("{prefix}-op")).await?;
    let keys = user_keys(env, &op_ns, 1);
    let source = create_source(env, &op_ns, &keys, &[&ns]).await?;
    allow_source_modes(env, &ns, &source).await?;
    let operator = env
        .start_operator(
            &[&ns],
            &env.emulator.url(),
            &[&format!("--namespace={op_ns}")],
        )
        .await?;
    Ok((ns, source, keys, operator))
}

/// A role the user may assume with its keys.
fn user_role(env: &Env, name: &str, user_arn: &str) -> String {
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/{name}");
    env.emulator.add_role(Role {
        arn: arn.clone(),
        trusted_users: vec![user_arn.to_string()],
        ..Role::default()
    });
    arn
}

/// `aws sts get-caller-identity` with nothing but the binding's Secret, laid out as the kubelet
/// does and read through `AWS_CONFIG_FILE` (`credential_process`).
async fn caller_arn(env: &Env, ns: &str, binding: &str) -> anyhow::Result<String> {
    let data = env.secret_data(ns, binding).await?;
    let dir = tempfile::tempdir()?;
    let mut config_data = data.clone();
    // The generated config points at the documented mount path; here the volume is `dir`.
    let mount = dir.path().to_string_lossy().to_string();
    if let Some(config) = config_data.get_mut("config") {
        *config = config.replace("/var/run/secrets/podcreds", &mount);
    }
    kubelet_layout(dir.path(), &config_data, 1)?;
    let identity = aws_caller_identity(
        &env.emulator.url(),
        &[("AWS_CONFIG_FILE", &dir.path().join("config"))],
    )
    .await?;
    identity["Arn"]
        .as_str()
        .map(str::to_string)
        .context("no Arn in the caller identity")
}

fn ready_reason(b: &AWSRoleBinding) -> Option<(String, String, String)> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Fails if any of `needles` appears in the tenant's Secrets, Events, binding statuses, the
/// sources' statuses or the operator's log.
async fn assert_absent(
    env: &Env,
    ns: &str,
    operator: &Operator,
    needles: &[&str],
) -> anyhow::Result<()> {
    let mut haystacks: Vec<(String, String)> = Vec::new();
    for s in env.secrets(ns).list(&Default::default()).await? {
        haystacks.push((
            format!("Secret {}", s.metadata.name.clone().unwrap_or_default()),
            serde_json::to_string(&podcreds_testenv::decode_secret(&s))?
                + &serde_json::to_string(&s.metadata)?,
        ));
    }
    for e in env.events(ns).await? {
        haystacks.push(("an Event".into(), serde_json::to_string(&e)?));
    }
    for b in env.bindings(ns).list(&Default::default()).await? {
        haystacks.push(("a binding".into(), serde_json::to_string(&b)?));
    }
    for s in Api::<AWSCredentialSource>::all(env.client.clone())
        .list(&Default::default())
        .await?
    {
        haystacks.push(("a source".into(), serde_json::to_string(&s)?));
    }
    haystacks.push(("the operator log".into(), operator.log()));
    for (what, text) in &haystacks {
        for needle in needles {
            ensure!(
                !text.contains(needle),
                "{what} contains long-term key material"
            );
        }
    }
    Ok(())
}

pub async fn each_mode_is_ready_with_working_credentials(env: &Env) -> anyhow::Result<()> {
    let (ns, source, keys, mut operator) = scenario(env, "srcmodes").await?;
    let role = user_role(env, &format!("{ns}-reader"), &keys.user_arn);
    env.create_ready(
        &ns,
        "assume",
        json!({"serviceAccountName": "app", "roleArn": role,
               "policyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
               "credentialSource": {"name": source}}),
        READY,
    )
    .await?;
    env.create_ready(
        &ns,
        "federated",
        json!({"serviceAccountName": "app", "sessionPolicy": READ_ONLY_POLICY,
               "credentialSource": {"name": source, "mode": "GetFederationToken"}}),
        READY,
    )
    .await?;
    let session = env
        .create_ready(
            &ns,
            "session",
            json!({"serviceAccountName": "app", "durationSeconds": 129600,
                   "credentialSource": {"name": source, "mode": "GetSessionToken"}}),
            READY,
        )
        .await?;

    // A real client reads each Secret and STS says who it is.
    let assumed = caller_arn(env, &ns, "assume").await?;
    ensure!(
        assumed == format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ns}-reader/{ns}.assume"),
        "{assumed}"
    );
    let federated = caller_arn(env, &ns, "federated").await?;
    ensure!(
        federated == format!("arn:aws:sts::{ACCOUNT}:federated-user/{ns}.federated"),
        "{federated}"
    );
    let user = caller_arn(env, &ns, "session").await?;
    ensure!(user == keys.user_arn, "{user}");
    // GetSessionToken granted the 36 hours asked for.
    let expires = session
        .status
        .and_then(|s| s.expiration)
        .context("no expiration")?;
    ensure!(
        expires.0 > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(35),
        "GetSessionToken session expires at {expires:?}"
    );

    // Every exchange was signed with the user's long-term keys, and STS saw each once.
    let calls = env.emulator.calls().calls;
    for action in ["AssumeRole", "GetFederationToken", "GetSessionToken"] {
        let signed: Vec<_> = calls
            .iter()
            .filter(|c| {
                c.action == action
                    && c.access_key_id.as_deref() == Some(keys.access_key_id.as_str())
            })
            .collect();
        ensure!(
            signed.len() == 1 && signed[0].result == "Ok",
            "{action}: {signed:?}"
        );
        // What narrows each session reached STS with it.
        let call = signed[0];
        let (policy, arns): (Option<&str>, &[&str]) = match action {
            "AssumeRole" => (None, &["arn:aws:iam::aws:policy/ReadOnlyAccess"]),
            "GetFederationToken" => (Some(READ_ONLY_POLICY), &[]),
            _ => (None, &[]),
        };
        ensure!(
            call.policy.as_deref() == policy && call.policy_arns == arns,
            "{action} did not carry the binding's session policies: {call:?}"
        );
    }
    let metrics = operator.metrics().await?;
    for flow in ["AssumeRole", "GetFederationToken", "GetSessionToken"] {
        ensure!(
            metrics.contains(&format!("flow=\"{flow}\"")),
            "no STS metric with flow {flow}"
        );
    }
    assert_absent(
        env,
        &ns,
        &operator,
        &[&keys.secret_access_key, &keys.access_key_id],
    )
    .await?;

    // A restarted operator finds fresh Secrets: no STS call.
    let signed_by_user = |calls: &[sts_emulator::CallRecord]| {
        calls
            .iter()
            .filter(|c| c.access_key_id.as_deref() == Some(keys.access_key_id.as_str()))
            .count()
    };
    let before = signed_by_user(&env.emulator.calls().calls);
    operator.restart().await?;
    crate::support::wait_until_reconciled_fresh(&operator, 3).await?;
    ensure!(
        signed_by_user(&env.emulator.calls().calls) == before,
        "the restarted operator called STS"
    );
    for name in ["assume", "federated", "session"] {
        env.wait_ready(&ns, name, "True", Duration::from_secs(5))
            .await?;
    }
    // The source itself reports Ready, and nothing of the keys.
    let src = Api::<AWSCredentialSource>::all(env.client.clone())
        .get(&source)
        .await?;
    let ready = src
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .context("the source has no Ready condition")?;
    ensure!(ready.status == "True", "{ready:?}");
    Ok(())
}

pub async fn assume_role_from_user_then_role_chain(env: &Env) -> anyhow::Result<()> {
    let (ns, source, keys, _operator) = scenario(env, "srcchain").await?;
    let entry = user_role(env, &format!("{ns}-entry"), &keys.user_arn);
    let last = format!("arn:aws:iam::{ACCOUNT}:role/{ns}-last");
    env.emulator.add_role(Role {
        arn: last.clone(),
        trusted_roles: vec![entry.clone()],
        ..Role::default()
    });
    env.create_ready(
        &ns,
        "chain",
        json!({"serviceAccountName": "app", "roleArn": entry,
               "credentialSource": {"name": source},
               "roleChain": [{"roleArn": last}]}),
        READY,
    )
    .await?;
    let arn = caller_arn(env, &ns, "chain").await?;
    ensure!(
        arn == format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ns}-last/{ns}.chain"),
        "{arn}"
    );
    // The first hop was the user's AssumeRole (signed with its keys), the second chained.
    let calls = env.emulator.calls().calls;
    let first = calls
        .iter()
        .find(|c| c.action == "AssumeRole" && c.role_arn.as_deref() == Some(entry.as_str()))
        .context("no AssumeRole of the entry role")?;
    ensure!(first.access_key_id.as_deref() == Some(keys.access_key_id.as_str()));
    let second = calls
        .iter()
        .find(|c| c.action == "AssumeRole" && c.role_arn.as_deref() == Some(last.as_str()))
        .context("no AssumeRole of the last role")?;
    ensure!(second.access_key_id == first.issued_access_key_id && second.result == "Ok");
    Ok(())
}

pub async fn invalid_specs_are_refused_with_the_reason(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("srcspec").await?;
    let role = format!("arn:aws:iam::{ACCOUNT}:role/r");
    for (spec, expected) in [
        (
            json!({"serviceAccountName": "app", "credentialSource": {"name": "s", "mode": "GetFederationToken"}}),
            "GetFederationToken needs sessionPolicy or policyArns",
        ),
        (
            json!({"serviceAccountName": "app", "credentialSource": {"name": "s", "mode": "GetSessionToken", "mfaSerialNumber": "arn:aws:iam::123456789012:mfa/u"}}),
            "MFA is not supported",
        ),
        (
            json!({"serviceAccountName": "app", "credentialSource": {"name": "s"}}),
            "roleArn is required",
        ),
        (
            json!({"serviceAccountName": "app", "roleArn": role, "credentialSource": {"name": "s", "mode": "GetSessionToken"}}),
            "assume no role",
        ),
        (
            json!({"serviceAccountName": "app", "sessionPolicy": READ_ONLY_POLICY, "credentialSource": {"name": "s", "mode": "GetSessionToken"}}),
            "GetSessionToken takes no session policy",
        ),
        (
            json!({"serviceAccountName": "app", "roleArn": role, "durationSeconds": 129600, "credentialSource": {"name": "s"}}),
            "durationSeconds above 43200",
        ),
        (
            json!({"serviceAccountName": "app", "roleArn": role, "durationSeconds": 129600}),
            "durationSeconds above 43200",
        ),
        (
            json!({"serviceAccountName": "app", "sessionPolicy": READ_ONLY_POLICY, "roleChain": [{"roleArn": role}], "credentialSource": {"name": "s", "mode": "GetFederationToken"}}),
            "GetFederationToken credentials cannot call AssumeRole",
        ),
        (json!({"serviceAccountName": "app"}), "roleArn is required"),
    ] {
        match env.create_binding(&ns, "refused", spec.clone()).await {
            Ok(_) => bail!("admitted: {spec}"),
            Err(kube::Error::Api(status)) => ensure!(
                status.message.contains(expected),
                "{spec}: {:?} does not say {expected:?}",
                status.message
            ),
            Err(e) => return Err(e.into()),
        }
    }
    // GetSessionToken up to 36 hours, GetFederationToken with managed policies, are admitted.
    env.create_binding(
        &ns,
        "gst",
        json!({"serviceAccountName": "app", "durationSeconds": 129600,
               "credentialSource": {"name": "s", "mode": "GetSessionToken"}}),
    )
    .await?;
    env.create_binding(
        &ns,
        "gft",
        json!({"serviceAccountName": "app",
               "policyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
               "credentialSource": {"name": "s", "mode": "GetFederationToken"}}),
    )
    .await?;
    Ok(())
}

pub async fn the_operator_refuses_what_the_source_does_not_allow(env: &Env) -> anyhow::Result<()> {
    let (ns, source, keys, operator) = scenario(env, "srcdeny").await?;
    // A second source of this installation (its Secret in the operator's namespace) that does
    // not allow this namespace, one of another installation that does, and one that does not exist.
    let other = format!("{source}-narrow");
    let narrow: AWSCredentialSource = serde_json::from_value(json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSCredentialSource",
        "metadata": {"name": other},
        "spec": {"secretRef": {"name": "user-keys", "namespace": source}, "allowedNamespaces": ["someone-else"],
                 "allowedModes": ["GetFederationToken"]},
    }))?;
    // The namespace grants the mode of that source too: only the source's namespaces decide.
    env.allow_roles(
        &ns,
        &format!(
            "arn:aws:iam::{ACCOUNT}:role/**,podcreds:credential-source/{other}/GetFederationToken,podcreds:credential-source/{source}/GetSessionToken"
        ),
    )
    .await?;
    Api::<AWSCredentialSource>::all(env.client.clone())
        .create(&PostParams::default(), &narrow)
        .await?;
    let elsewhere_op = env.namespace("srcdeny-elsewhere").await?;
    let elsewhere_keys = user_keys(env, &elsewhere_op, 1);
    let elsewhere = create_source(env, &elsewhere_op, &elsewhere_keys, &[&ns]).await?;
    let policy = json!(READ_ONLY_POLICY);
    for (name, source_name) in [
        ("not-allowed", other.clone()),
        ("missing", format!("{ns}-nonexistent")),
        ("elsewhere", elsewhere.clone()),
    ] {
        env.create_binding(
            &ns,
            name,
            json!({"serviceAccountName": "app", "sessionPolicy": policy,
                   "credentialSource": {"name": source_name, "mode": "GetFederationToken"}}),
        )
        .await?;
    }
    let denied = env
        .wait_reason(&ns, "not-allowed", "CredentialSourceNotAllowed", READY)
        .await?;
    let message = ready_reason(&denied).map(|r| r.2).unwrap_or_default();
    ensure!(message.contains("allowedNamespaces"), "{message}");
    env.wait_reason(&ns, "missing", "CredentialSourceNotFound", READY)
        .await?;
    let foreign = env
        .wait_reason(&ns, "elsewhere", "CredentialSourceUnavailable", READY)
        .await?;
    let message = ready_reason(&foreign).map(|r| r.2).unwrap_or_default();
    ensure!(
        message.contains(&format!("installation in namespace {elsewhere_op:?}")),
        "{message}"
    );
    let signed_with = |id: &str| {
        env.emulator
            .calls()
            .calls
            .iter()
            .any(|c| c.access_key_id.as_deref() == Some(id))
    };
    ensure!(
        !signed_with(&keys.access_key_id) && !signed_with(&elsewhere_keys.access_key_id),
        "keys were used for a binding their source does not serve"
    );
    // Another installation's source is left to it: this operator writes no status there.
    let untouched = Api::<AWSCredentialSource>::all(env.client.clone())
        .get(&elsewhere)
        .await?;
    ensure!(
        untouched.status.is_none_or(|s| s.conditions.is_empty()),
        "this installation reported on another's source"
    );
    // Allowing the namespace (the source changes) makes the binding Ready without touching it.
    Api::<AWSCredentialSource>::all(env.client.clone())
        .patch(
            &other,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"allowedNamespaces": ["someone-else", ns]}})),
        )
        .await?;
    env.wait_ready(&ns, "not-allowed", "True", READY).await?;

    // The source's Secret losing a key: the binding says which, the source too.
    let broken = BTreeMap::from([(
        "AWS_ACCESS_KEY_ID".to_string(),
        ByteString(keys.access_key_id.clone().into_bytes()),
    )]);
    let op_ns = source.clone();
    env.secrets(&op_ns)
        .replace(
            "user-keys",
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("user-keys".into()),
                    namespace: Some(op_ns.clone()),
                    ..ObjectMeta::default()
                },
                data: Some(broken),
                ..Secret::default()
            },
        )
        .await?;
    env.create_binding(
        &ns,
        "broken",
        json!({"serviceAccountName": "app", "credentialSource": {"name": source, "mode": "GetSessionToken"}}),
    )
    .await?;
    let b = env
        .wait_reason(&ns, "broken", "CredentialSourceSecretInvalid", READY)
        .await?;
    let message = ready_reason(&b).map(|r| r.2).unwrap_or_default();
    ensure!(message.contains("AWS_SECRET_ACCESS_KEY"), "{message}");
    let src_not_ready = wait_for(READY, || async {
        let s = Api::<AWSCredentialSource>::all(env.client.clone())
            .get(&source)
            .await
            .ok()?;
        s.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
    })
    .await
    .context("the source did not report its broken Secret")?;
    ensure!(
        src_not_ready.reason == "CredentialSourceSecretInvalid",
        "{src_not_ready:?}"
    );
    assert_absent(
        env,
        &ns,
        &operator,
        &[&keys.secret_access_key, &elsewhere_keys.secret_access_key],
    )
    .await?;
    Ok(())
}

pub async fn rotated_keys_are_used_at_once(env: &Env) -> anyhow::Result<()> {
    let (ns, source, keys, operator) = scenario(env, "srcrotate").await?;
    env.create_ready(
        &ns,
        "session",
        json!({"serviceAccountName": "app", "credentialSource": {"name": source, "mode": "GetSessionToken"}}),
        READY,
    )
    .await?;
    let first = env.secret_data(&ns, "session").await?;
    // The admin creates a second key, puts it in the Secret, then deletes the first.
    let op_ns = source.clone();
    let user = keys
        .user_arn
        .rsplit('/')
        .next()
        .context("user name")?
        .to_string();
    let new_keys = user_keys(env, &user, 2);
    env.secrets(&op_ns)
        .patch(
            "user-keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {
                "AWS_ACCESS_KEY_ID": base64_of(&new_keys.access_key_id),
                "AWS_SECRET_ACCESS_KEY": base64_of(&new_keys.secret_access_key),
            }})),
        )
        .await?;
    let reissued = wait_for(READY, || async {
        let data = env.secret_data(&ns, "session").await.ok()?;
        (data.get("AWS_ACCESS_KEY_ID") != first.get("AWS_ACCESS_KEY_ID")).then_some(data)
    })
    .await
    .context("rotated keys did not re-issue the credentials")?;
    env.emulator.remove_access_key(&keys.access_key_id);
    let calls = env.emulator.calls().calls;
    let last = calls
        .iter()
        .rev()
        .find(|c| c.action == "GetSessionToken")
        .context("no GetSessionToken")?;
    ensure!(
        last.access_key_id.as_deref() == Some(new_keys.access_key_id.as_str())
            && last.issued_access_key_id.as_deref()
                == reissued.get("AWS_ACCESS_KEY_ID").map(String::as_str),
        "the new credentials were not issued with the new key: {last:?}"
    );
    env.wait_ready(&ns, "session", "True", READY).await?;
    let arn = caller_arn(env, &ns, "session").await?;
    ensure!(arn == keys.user_arn, "{arn}");
    assert_absent(
        env,
        &ns,
        &operator,
        &[&keys.secret_access_key, &new_keys.secret_access_key],
    )
    .await?;
    Ok(())
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub async fn an_outage_keeps_valid_credentials(env: &Env) -> anyhow::Result<()> {
    // An emulator of its own: the outage must not reach other tests.
    let sts = sts_emulator::Emulator::start(sts_emulator::Config::for_issuer(
        &env.plane.api_url,
        &env.plane.ca_pem,
    ))
    .await?;
    let ns = env.namespace("srcoutage").await?;
    env.service_account(&ns, "app").await?;
    let op_ns = env.namespace("srcoutage-op").await?;
    let keys = Keys {
        user_arn: format!("arn:aws:iam::{ACCOUNT}:user/{op_ns}"),
        access_key_id: "AKIAOUTAGEUSER0001".into(),
        secret_access_key: "outage-user-long-term-secret-key-material".into(),
    };
    sts.add_user(User {
        arn: keys.user_arn.clone(),
        access_key_id: keys.access_key_id.clone(),
        secret_access_key: keys.secret_access_key.clone(),
        // Short sessions, so the refresh (at about two thirds) falls inside the outage and
        // the credentials outlive it.
        lifetime_seconds: Some(45),
    });
    let source = create_source(env, &op_ns, &keys, &[&ns]).await?;
    allow_source_modes(env, &ns, &source).await?;
    let _operator = env
        .start_operator(&[&ns], &sts.url(), &[&format!("--namespace={op_ns}")])
        .await?;
    env.create_ready(
        &ns,
        "session",
        json!({"serviceAccountName": "app",
               "credentialSource": {"name": source, "mode": "GetSessionToken"}}),
        READY,
    )
    .await?;
    let before = env.secret_data(&ns, "session").await?;
    sts.set_faults(Faults {
        down_for_ms: 36_000,
        ..Faults::default()
    });
    // Degraded while STS is down, Ready all along, the Secret untouched.
    let degraded = wait_for(READY, || async {
        let b = env.bindings(&ns).get("session").await.ok()?;
        let conditions = b.status?.conditions;
        conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True")
            .then_some(conditions)
    })
    .await
    .context("never Degraded during the outage")?;
    ensure!(
        degraded
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        "{degraded:?}"
    );
    ensure!(env.secret_data(&ns, "session").await? == before);
    // Once STS is back, fresh credentials and Degraded False.
    wait_for(READY, || async {
        let b = env.bindings(&ns).get("session").await.ok()?;
        b.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "False")
            .then_some(())
    })
    .await
    .context("did not recover after the outage")?;
    ensure!(env.secret_data(&ns, "session").await? != before);
    sts.shutdown();
    Ok(())
}

pub async fn admission_refuses_namespaces_a_source_does_not_allow(env: &Env) -> anyhow::Result<()> {
    // The chart's own policy, applied to the real apiserver.
    let docs = crate::support::helm::render(env, &[]).await?;
    let guard: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-source-guard"))
        })
        .collect();
    ensure!(
        guard.len() == 2,
        "the chart renders {} source-guard objects",
        guard.len()
    );
    let mut applied = Vec::new();
    for doc in &guard {
        let kind = doc["kind"].as_str().context("kind")?;
        let resource = kube::api::ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: kind.into(),
            plural: match kind {
                "ValidatingAdmissionPolicy" => "validatingadmissionpolicies".into(),
                _ => "validatingadmissionpolicybindings".into(),
            },
        };
        let api: Api<kube::api::DynamicObject> = Api::all_with(env.client.clone(), &resource);
        let name = doc["metadata"]["name"]
            .as_str()
            .context("name")?
            .to_string();
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(doc),
        )
        .await?;
        applied.push((api, name));
    }
    let result = admission_checks(env).await;
    for (api, name) in applied {
        let _ = api.delete(&name, &Default::default()).await;
    }
    result
}

async fn admission_checks(env: &Env) -> anyhow::Result<()> {
    let allowed_ns = env.namespace("srcvap").await?;
    let other_ns = env.namespace("srcvap-x").await?;
    let op_ns = env.namespace("srcvap-op").await?;
    let keys = user_keys(env, &op_ns, 1);
    let source = create_source(env, &op_ns, &keys, &[&allowed_ns]).await?;
    // Both namespaces grant the no-role modes themselves: the source alone decides here.
    allow_source_modes(env, &allowed_ns, &source).await?;
    env.allow_roles(
        &other_ns,
        &format!(
            "arn:aws:iam::{ACCOUNT}:role/**,podcreds:credential-source/{source}/GetSessionToken,podcreds:credential-source/{op_ns}-none/GetSessionToken"
        ),
    )
    .await?;
    let spec = json!({"serviceAccountName": "app", "credentialSource": {"name": source, "mode": "GetSessionToken"}});
    // The policy sees new params after a moment: retry until the refusal shows.
    let refused = wait_for(READY, || async {
        match env.create_binding(&other_ns, "refused", spec.clone()).await {
            Err(kube::Error::Api(status))
                if status.message.contains("does not allow namespace") =>
            {
                Some(status.message)
            }
            Ok(_) => {
                let _ = env
                    .bindings(&other_ns)
                    .delete("refused", &Default::default())
                    .await;
                None
            }
            Err(_) => None,
        }
    })
    .await
    .context("the admission policy admitted a namespace the source does not allow")?;
    ensure!(refused.contains(&other_ns), "{refused}");
    // The allowed namespace, a source that does not exist (the operator reports it), and a
    // binding without a source all pass.
    env.create_binding(&allowed_ns, "allowed", spec.clone())
        .await?;
    env.create_binding(
        &other_ns,
        "unknown-source",
        json!({"serviceAccountName": "app", "credentialSource": {"name": format!("{op_ns}-none"), "mode": "GetSessionToken"}}),
    )
    .await?;
    env.create_binding(
        &other_ns,
        "web-identity",
        json!({"serviceAccountName": "app", "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/r")}),
    )
    .await?;
    Ok(())
}

/// A Secret someone else holds blocks a source's binding as it blocks any other: the reason says
/// so and nothing is written there. The operator caches only its own Secrets, so it learns of the
/// foreign one when its create is refused: that first exchange is the only use of the keys.
pub async fn a_foreign_secret_costs_a_source_binding_one_exchange(env: &Env) -> anyhow::Result<()> {
    let (ns, source, keys, operator) = scenario(env, "srcconflict").await?;
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("taken".into()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("owner".into(), "someone else".into())])),
        ..Secret::default()
    };
    env.secrets(&ns)
        .create(&PostParams::default(), &foreign)
        .await?;
    env.create_binding(
        &ns,
        "blocked",
        json!({"serviceAccountName": "app", "secretName": "taken", "sessionPolicy": READ_ONLY_POLICY,
               "credentialSource": {"name": source, "mode": "GetFederationToken"}}),
    )
    .await?;
    env.wait_reason(&ns, "blocked", "SecretConflict", READY)
        .await?;
    let data = env.secret_data(&ns, "taken").await?;
    ensure!(
        data.get("owner").map(String::as_str) == Some("someone else") && data.len() == 1,
        "the foreign Secret is untouched: {:?}",
        data.keys().collect::<Vec<_>>()
    );
    let used = || {
        env.emulator
            .calls()
            .calls
            .iter()
            .filter(|c| c.access_key_id.as_deref() == Some(keys.access_key_id.as_str()))
            .count()
    };
    let at_conflict = used();
    crate::support::looked_again(env, &operator, &ns, "blocked", "conflict").await?;
    ensure!(
        at_conflict <= 1 && used() == at_conflict,
        "the keys signed {at_conflict} calls until the conflict and {} after",
        used() - at_conflict
    );
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![sources:
    each_mode_is_ready_with_working_credentials,
    assume_role_from_user_then_role_chain,
    invalid_specs_are_refused_with_the_reason,
    the_operator_refuses_what_the_source_does_not_allow,
    rotated_keys_are_used_at_once,
    an_outage_keeps_valid_credentials,
    admission_refuses_namespaces_a_source_does_not_allow,
    a_foreign_secret_costs_a_source_binding_one_exchange,
];

//! podcreds as a SAML identity provider: bindings with `spec.saml` exchange assertions podcreds
//! signs with STS `AssumeRoleWithSAML`. The STS emulator checks every assertion as AWS does, its
//! signature by Debian's `xmlsec1` with the certificates of the metadata `podcreds saml-metadata`
//! printed (and nothing else); PyPI's signxml cross-checks assertions signed with the operator's
//! key; moto proves wire compatibility.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use podcreds_testenv::decode_secret;
use serde_json::json;
use sts_emulator::{Config, Emulator, Faults, Role};

use crate::support::{
    ACCOUNT, Env, Operator, aws_caller_identity, ready_message, spec_with, wait_for,
};

const READY: Duration = Duration::from_secs(60);

/// One SAML setup: an app namespace with ServiceAccount `app`, the operator's own namespace
/// (holding the key Secret), an IAM SAML provider registered from `podcreds saml-metadata`, a
/// role trusting the provider for `app`, and an operator.
struct Scene {
    ns: String,
    operator_ns: String,
    provider: String,
    role: String,
    operator: Operator,
}

/// Runs the `podcreds` binary with the admin's kubeconfig: its standard output.
async fn podcreds(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_podcreds"))
        .args(args)
        .env("KUBECONFIG", &env.plane.kubeconfig)
        .env_remove("POD_NAMESPACE")
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "podcreds {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `podcreds saml-metadata` for the key Secret in `operator_ns`.
async fn metadata(env: &Env, operator_ns: &str) -> anyhow::Result<String> {
    podcreds(env, &["saml-metadata", "--namespace", operator_ns]).await
}

/// An emulator of this test's own, so its counters are the test's alone.
async fn private_emulator(env: &Env) -> anyhow::Result<Emulator> {
    Emulator::start(Config::for_issuer(&env.plane.api_url, &env.plane.ca_pem)).await
}

async fn scene(
    env: &Env,
    prefix: &str,
    sts: &Emulator,
    lifetime_seconds: Option<u64>,
    extra: &[&str],
) -> anyhow::Result<Scene> {
    let ns = env.namespace(prefix).await?;
    env.service_account(&ns, "app").await?;
    // SAML bindings need their namespace to list the roles they may name.
    env.allow_roles(&ns, &format!("arn:aws:iam::{ACCOUNT}:role/**"))
        .await?;
    let operator_ns = env.namespace(&format!("{prefix}-op")).await?;
    let provider = format!("arn:aws:iam::{ACCOUNT}:saml-provider/{ns}");
    // As an admin would: print the metadata (creating the key) and upload it to IAM.
    sts.add_saml_provider(&provider, &metadata(env, &operator_ns).await?)
        .map_err(anyhow::Error::msg)?;
    let role = format!("arn:aws:iam::{ACCOUNT}:role/{ns}-saml");
    sts.add_role(Role {
        arn: role.clone(),
        subjects: vec![format!("system:serviceaccount:{ns}:app")],
        saml_providers: vec![provider.clone()],
        lifetime_seconds,
        allow_tag_session: true,
        allow_set_source_identity: true,
        ..Role::default()
    });
    let mut args = vec![
        "--saml-enabled".to_string(),
        format!("--namespace={operator_ns}"),
        format!("--saml-provider-arn={provider}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = env.start_operator(&[&ns], &sts.url(), &args).await?;
    Ok(Scene {
        ns,
        operator_ns,
        provider,
        role,
        operator,
    })
}

/// Every `AssumeRoleWithSAML` call `sts` saw.
fn saml_calls(sts: &Emulator) -> Vec<sts_emulator::CallRecord> {
    sts.calls()
        .calls
        .into_iter()
        .filter(|c| c.action == "AssumeRoleWithSAML")
        .collect()
}

fn condition(b: &podcreds::api::AWSRoleBinding, type_: &str) -> Option<(String, String)> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Verifies `response` (a SAML Response) with signxml and `cert_pem`: Ok(true) if it verifies.
async fn signxml_verifies(response: &str, cert_pem: &str) -> anyhow::Result<bool> {
    const VERIFY: &str = r#"
import sys
from signxml import XMLVerifier
from signxml.exceptions import InvalidSignature
data, cert = open(sys.argv[1], "rb").read(), open(sys.argv[2]).read()
try:
    verified = XMLVerifier().verify(data, x509_cert=cert)
    tag = verified.signed_xml.tag
    print("valid" if tag.endswith("}Assertion") else "wrong-element " + tag)
except InvalidSignature as e:
    print("invalid")
"#;
    let dir = tempfile::tempdir()?;
    let doc = dir.path().join("response.xml");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&doc, response)?;
    std::fs::write(&cert, cert_pem)?;
    let python = podcreds_testenv::tools::venv_program("python")?;
    let out = tokio::process::Command::new(python)
        .arg("-c")
        .arg(VERIFY)
        .arg(&doc)
        .arg(&cert)
        .output()
        .await?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match said.as_str() {
        "valid" => Ok(true),
        "invalid" => Ok(false),
        _ => bail!(
            "signxml said {said:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The key ring in the operator's key Secret.
async fn key_ring(env: &Env, operator_ns: &str) -> anyhow::Result<podcreds::keyring::KeyRing> {
    let secret = env
        .secrets(operator_ns)
        .get(podcreds::saml::DEFAULT_KEY_SECRET)
        .await?;
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok(podcreds::keyring::KeyRing::from_data(
        &podcreds::keyring::SAML,
        &data,
    )?)
}

const SAML_SESSION_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#;

pub async fn saml_binding_gets_working_credentials(env: &Env) -> anyhow::Result<()> {
    let sts = private_emulator(env).await?;
    let s = scene(env, "saml", &sts, None, &["--log-level=trace"]).await?;
    let mut op = s.operator;
    let ns = &s.ns;
    let binding = env
        .create_ready(
            ns,
            "app",
            spec_with(
                &s.role,
                json!({"saml": {
                    "sourceIdentity": format!("{ns}.alice"),
                    "tags": [{"key": "team", "value": "blue"}],
                    "transitiveTagKeys": ["team"],
                }, "sessionPolicy": SAML_SESSION_POLICY}),
            ),
            READY,
        )
        .await?;
    let assumed = binding
        .status
        .as_ref()
        .and_then(|st| st.assumed_role_arn.clone())
        .context("assumedRoleArn")?;
    let expected = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ns}-saml/{ns}.app");
    ensure!(assumed == expected, "{assumed}");

    // A real AWS client uses the Secret's credentials file: the emulator checks the SigV4
    // signature made with them.
    let data = env.secret_data(ns, "app").await?;
    let dir = tempfile::tempdir()?;
    let (creds, config) = crate::support::secret_files(dir.path(), &data)?;
    let ident = aws_caller_identity(
        &sts.url(),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &creds),
            ("AWS_CONFIG_FILE", &config),
        ],
    )
    .await?;
    ensure!(ident["Arn"] == expected.as_str(), "AWS CLI saw {ident}");

    // What STS saw: the ServiceAccount as subject, the tags and source identity, and a signature
    // xmlsec1 verified with the certificate of the uploaded metadata.
    let calls = saml_calls(&sts);
    ensure!(!calls.is_empty(), "no AssumeRoleWithSAML call");
    let ring = key_ring(env, &s.operator_ns).await?;
    for call in &calls {
        ensure!(call.result == "Ok", "{call:?}");
        ensure!(call.saml_signature.as_deref() == Some("Valid"), "{call:?}");
        ensure!(
            call.saml_certificate_sha256.as_deref() == Some(&*ring.active.fingerprint()),
            "{call:?}"
        );
        ensure!(
            call.subject.as_deref() == Some(&*format!("system:serviceaccount:{ns}:app")),
            "{call:?}"
        );
        ensure!(call.audience.as_deref() == Some("https://signin.aws.amazon.com/saml"));
        ensure!(
            call.source_identity.as_deref() == Some(format!("{ns}.alice").as_str()),
            "{call:?}"
        );
        ensure!(
            call.tags
                .iter()
                .any(|t| t.key == "team" && t.value == "blue"),
            "{call:?}"
        );
        ensure!(call.transitive_tag_keys == ["team"], "{call:?}");
        ensure!(
            call.policy.as_deref() == Some(SAML_SESSION_POLICY),
            "the session policy did not reach AssumeRoleWithSAML: {call:?}"
        );
    }
    let counters = sts.calls().counters;
    ensure!(
        counters.saml_signatures_valid == calls.len() as u64
            && counters.saml_signatures_invalid == 0,
        "xmlsec1 must have checked every assertion: {counters:?}, {} calls",
        calls.len()
    );
    let metrics = op.metrics().await?;
    ensure!(
        metrics.contains(
            "podcreds_sts_request_duration_seconds_count{flow=\"SAML\",outcome=\"success\"}"
        ),
        "no SAML metric:\n{metrics}"
    );

    // A second verifier we did not write: signxml accepts an assertion signed with the
    // operator's key, hostile values included, and refuses it tampered or under another
    // certificate.
    let hostile = podcreds::saml::assertion::AssertionClaims {
        issuer: "urn:podcreds:saml-idp",
        subject: "system:serviceaccount:a<&>:b\"'",
        role_arn: &s.role,
        provider_arn: &s.provider,
        session_name: "x&y<z>\"q'\r\n\tw",
        session_duration_seconds: 900,
        source_identity: Some("</saml:AttributeValue>"),
        tags: &[("k".into(), "]]>&amp;".into())],
        transitive_tag_keys: &["k".into()],
    };
    let response =
        podcreds::saml::assertion::signed_response(&hostile, &ring.active, jiff::Timestamp::now())?;
    ensure!(
        signxml_verifies(&response, ring.active.certificate_pem()).await?,
        "signxml refused the assertion"
    );
    let tampered = response.replace("system:serviceaccount:a&lt;", "system:serviceaccount:b&lt;");
    ensure!(tampered != response);
    ensure!(
        !signxml_verifies(&tampered, ring.active.certificate_pem()).await?,
        "signxml accepted a tampered assertion"
    );
    let other = podcreds::keyring::KeyRing::generate(&podcreds::keyring::SAML, 2026)?;
    ensure!(
        !signxml_verifies(&response, other.active.certificate_pem()).await?,
        "signxml accepted another certificate"
    );

    // A restarted operator finds fresh credentials and calls STS zero times.
    let before = sts.calls().counters.total;
    op.restart().await?;
    crate::support::wait_until_reconciled_fresh(&op, 1).await?;
    ensure!(
        sts.calls().counters.total == before,
        "the restarted operator called STS"
    );
    env.wait_ready(ns, "app", "True", Duration::from_secs(10))
        .await?;

    // Neither an assertion nor the private key reaches the log (at trace level), Events or
    // status; nor do the credentials.
    let key_secret = env
        .secrets(&s.operator_ns)
        .get(podcreds::saml::DEFAULT_KEY_SECRET)
        .await?;
    let key_pem = String::from_utf8(
        key_secret.data.unwrap_or_default()[podcreds::keyring::ACTIVE_KEY]
            .0
            .clone(),
    )?;
    let key_line = key_pem.lines().nth(2).context("key body")?.to_string();
    let events = serde_json::to_string(&env.events(ns).await?)?;
    let status = serde_json::to_string(&env.bindings(ns).get("app").await?.status)?;
    let log = op.log();
    ensure!(log.contains(r#""level":"TRACE""#), "not a trace log");
    let base64_response = BASE64.encode("<samlp:Response");
    for (what, text) in [
        ("operator log", &log),
        ("events", &events),
        ("status", &status),
    ] {
        for needle in [
            "<samlp:Response",
            "saml:Assertion",
            &base64_response[..16],
            "SignatureValue",
            "PRIVATE KEY",
            &key_line,
            &BASE64.encode(&key_pem)[..60],
            &data["AWS_SECRET_ACCESS_KEY"],
            &data["AWS_SESSION_TOKEN"],
            // The request body STS gets: the SDK prints it at TRACE unless capped.
            "SAMLAssertion=",
            "Action=AssumeRoleWithSAML",
        ] {
            ensure!(!text.contains(needle), "{needle:?} appears in the {what}");
        }
    }

    // The documented example is admitted; the apiserver refuses what the operator would refuse.
    let example: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../examples/saml.yaml"))?;
    env.create_binding(ns, "example", serde_json::to_value(&example["spec"])?)
        .await
        .context("examples/saml.yaml refused")?;
    // Each refused by the CRD's own rules (422), naming the field at fault.
    for (bad, why, field) in [
        (
            json!({"saml": {"providerArn": "arn:aws:iam::123456789012:role/nope"}}),
            "role ARN as provider",
            "spec.saml.providerArn",
        ),
        (
            json!({"saml": {"sourceIdentity": "aws:x"}}),
            "reserved source identity",
            "spec.saml.sourceIdentity",
        ),
        (
            json!({"saml": {"tags": [{"key": "kubernetes-ns", "value": "x"}]}}),
            "reserved tag",
            "spec.saml.tags",
        ),
        (
            json!({"saml": {"tags": [{"key": "a", "value": "x"}], "transitiveTagKeys": ["b"]}}),
            "transitive key of no tag",
            "transitiveTagKeys",
        ),
        (
            json!({"saml": {}, "sts": {"provider": "MinIO", "endpoint": "http://127.0.0.1:1"}}),
            "MinIO",
            "saml",
        ),
        (
            json!({"saml": {"sourceIdentity": format!("{ns}.alice")}, "roleChain": [{"roleArn": "arn:aws:iam::123456789012:role/x", "sourceIdentity": format!("{ns}.bob")}]}),
            "a second source identity",
            "sourceIdentity",
        ),
    ] {
        match env.create_binding(ns, "bad", spec_with(&s.role, bad)).await {
            Ok(_) => bail!("the apiserver admitted a binding with {why}"),
            Err(kube::Error::Api(status)) => ensure!(
                status.code == 422 && status.message.contains(field),
                "a binding with {why} was refused without naming {field}: {} {}",
                status.code,
                status.message
            ),
            Err(other) => bail!("creating a binding with {why} failed otherwise: {other}"),
        }
    }
    sts.shutdown();
    Ok(())
}

pub async fn outdated_metadata_names_the_fix_and_recovers(env: &Env) -> anyhow::Result<()> {
    let sts = private_emulator(env).await?;
    let s = scene(env, "saml-stale", &sts, None, &[]).await?;
    let ns = &s.ns;
    env.create_ready(ns, "app", spec_with(&s.role, json!({"saml": {}})), READY)
        .await?;
    // A rotation whose metadata nobody re-uploaded: IAM still knows only the old certificate.
    podcreds(
        env,
        &["saml-key", "add-next", "--namespace", &s.operator_ns],
    )
    .await?;
    podcreds(env, &["saml-key", "promote", "--namespace", &s.operator_ns]).await?;
    let new_key = key_ring(env, &s.operator_ns).await?.active.fingerprint();

    // Each spec change asks for new credentials at once; once the operator signs with the new key
    // (it rereads the key Secret), STS refuses and the condition names the fix.
    let mut duration = 900;
    let refused = wait_for(Duration::from_secs(90), || {
        duration += 60;
        let patch = json!({"spec": {"durationSeconds": duration}});
        async move {
            let _ = env
                .bindings(ns)
                .patch(
                    "app",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let b = env.bindings(ns).get("app").await.ok()?;
            let ready = podcreds::status::ready_condition(b.status.as_ref())?;
            (ready.reason == "SamlAssertionRejected").then_some(b)
        }
    })
    .await
    .context("the binding never reported the rejected assertion")?;
    let message = ready_message(&refused);
    ensure!(
        message.contains("SAML provider metadata out of date: re-upload `podcreds saml-metadata`")
            && message.contains(&s.provider),
        "{message}"
    );
    let counters = sts.calls().counters;
    ensure!(counters.saml_signatures_invalid >= 1, "{counters:?}");

    // The fix the message names: re-upload the metadata; the next exchange works.
    sts.add_saml_provider(&s.provider, &metadata(env, &s.operator_ns).await?)
        .map_err(anyhow::Error::msg)?;
    let patch = json!({"spec": {"durationSeconds": duration + 60}});
    env.bindings(ns)
        .patch(
            "app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    env.wait_ready(ns, "app", "True", READY).await?;
    let last = saml_calls(&sts).pop().context("calls")?;
    ensure!(last.result == "Ok", "{last:?}");
    ensure!(
        last.saml_certificate_sha256.as_deref() == Some(&*new_key),
        "{last:?}"
    );
    sts.shutdown();
    Ok(())
}

pub async fn key_rotation_keeps_exchanges_working(env: &Env) -> anyhow::Result<()> {
    let sts = private_emulator(env).await?;
    // 15 s grants: the operator exchanges every few seconds throughout the rotation.
    let s = scene(env, "saml-rotate", &sts, Some(15), &[]).await?;
    let ns = &s.ns;
    env.create_ready(ns, "app", spec_with(&s.role, json!({"saml": {}})), READY)
        .await?;
    let old_key = key_ring(env, &s.operator_ns).await?.active.fingerprint();

    // 1. A next key, announced: the admin uploads metadata with both certificates.
    let both = podcreds(
        env,
        &["saml-key", "add-next", "--namespace", &s.operator_ns],
    )
    .await?;
    ensure!(both.matches("<md:KeyDescriptor").count() == 2, "{both}");
    sts.add_saml_provider(&s.provider, &both)
        .map_err(anyhow::Error::msg)?;
    // 2. Promote: exchanges switch to the new key.
    podcreds(env, &["saml-key", "promote", "--namespace", &s.operator_ns]).await?;
    let new_key = key_ring(env, &s.operator_ns).await?.active.fingerprint();
    ensure!(new_key != old_key);
    let switched = wait_for(Duration::from_secs(90), || async {
        saml_calls(&sts)
            .iter()
            .any(|c| c.saml_certificate_sha256.as_deref() == Some(&*new_key))
            .then_some(())
    })
    .await;
    ensure!(
        switched.is_some(),
        "the operator never signed with the new key"
    );
    // 3. Retire the old certificate: the admin uploads metadata with the new one only.
    let only_new = podcreds(env, &["saml-key", "retire", "--namespace", &s.operator_ns]).await?;
    ensure!(
        only_new.matches("<md:KeyDescriptor").count() == 1,
        "{only_new}"
    );
    sts.add_saml_provider(&s.provider, &only_new)
        .map_err(anyhow::Error::msg)?;
    let after_retire = saml_calls(&sts).len();
    let more = wait_for(Duration::from_secs(60), || async {
        (saml_calls(&sts).len() >= after_retire + 2).then_some(())
    })
    .await;
    ensure!(more.is_some(), "no exchange after the rotation");

    // Not one exchange failed, and each was verified with a certificate IAM knew at the time.
    let calls = saml_calls(&sts);
    for call in &calls {
        ensure!(
            call.result == "Ok",
            "an exchange failed during the rotation: {call:?}"
        );
        ensure!(call.saml_signature.as_deref() == Some("Valid"), "{call:?}");
    }
    ensure!(
        calls[after_retire..]
            .iter()
            .all(|c| c.saml_certificate_sha256.as_deref() == Some(&*new_key)),
        "an old key signed after the rotation"
    );
    let b = env.bindings(ns).get("app").await?;
    ensure!(
        condition(&b, "Degraded").is_none_or(|(st, _)| st == "False"),
        "{:?}",
        b.status
    );
    sts.shutdown();
    Ok(())
}

pub async fn saml_outage_degrades_then_recovers(env: &Env) -> anyhow::Result<()> {
    let sts = private_emulator(env).await?;
    let s = scene(env, "saml-outage", &sts, Some(30), &[]).await?;
    let ns = &s.ns;
    env.create_ready(ns, "app", spec_with(&s.role, json!({"saml": {}})), READY)
        .await?;
    let before = env.secrets(ns).get("app").await?;
    let expiration: jiff::Timestamp = decode_secret(&before)["expiration"].parse()?;
    sts.set_faults(Faults {
        down_for_ms: 24_000,
        only_action: Some("AssumeRoleWithSAML".into()),
        ..Faults::default()
    });
    let mut saw_degraded = false;
    while jiff::Timestamp::now() < expiration - jiff::SignedDuration::from_secs(5) {
        let b = env.bindings(ns).get("app").await?;
        ensure!(
            condition(&b, "Ready").is_some_and(|(st, _)| st == "True"),
            "Ready left True while the credentials were valid: {:?}",
            b.status
        );
        if condition(&b, "Degraded").is_some_and(|(st, _)| st == "True") {
            saw_degraded = true;
        }
        if saw_degraded && condition(&b, "Degraded").is_some_and(|(st, _)| st == "False") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(saw_degraded, "Degraded never reported the outage");
    let recovered = wait_for(Duration::from_secs(30), || async {
        let b = env.bindings(ns).get("app").await.ok()?;
        let st = env.secrets(ns).get("app").await.ok()?;
        (condition(&b, "Degraded").is_some_and(|(d, _)| d == "False")
            && st.metadata.resource_version != before.metadata.resource_version)
            .then_some(())
    })
    .await;
    ensure!(recovered.is_some(), "no recovery after the outage");
    let metrics = s.operator.metrics().await?;
    ensure!(
        metrics.contains(
            "podcreds_sts_request_duration_seconds_count{flow=\"SAML\",outcome=\"StsUnavailable\"}"
        ),
        "no SAML failure metric:\n{metrics}"
    );
    sts.shutdown();
    Ok(())
}

pub async fn role_chain_after_saml(env: &Env) -> anyhow::Result<()> {
    let sts = private_emulator(env).await?;
    let s = scene(env, "saml-chain", &sts, None, &[]).await?;
    let ns = &s.ns;
    let target = format!("arn:aws:iam::{ACCOUNT}:role/{ns}-target");
    let spec = spec_with(
        &s.role,
        json!({
            "saml": {
                "sourceIdentity": format!("{ns}.ci-bot"),
                "tags": [{"key": "team", "value": "blue"}],
                "transitiveTagKeys": ["team"],
            },
            "roleChain": [{"roleArn": target}],
        }),
    );
    // Both roles trust exactly what `podcreds iam trust-policy` prints for this binding (the
    // scene's own rule for the entry role is replaced): the SAML provider and SAML:sub with
    // TagSession and SetSourceIdentity, then the entry role for the hop.
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("binding.yaml");
    std::fs::write(
        &manifest,
        serde_json::to_string(&json!({
            "apiVersion": "podcreds.dev/v1alpha1",
            "kind": "AWSRoleBinding",
            "metadata": {"name": "app", "namespace": ns},
            "spec": spec,
        }))?,
    )?;
    let printed = podcreds(
        env,
        &[
            "iam",
            "trust-policy",
            "-f",
            manifest.to_str().context("path")?,
            "--saml-provider-arn",
            &s.provider,
            "--output",
            "json",
        ],
    )
    .await?;
    let policies: Vec<serde_json::Value> = serde_json::from_str(&printed)?;
    ensure!(policies.len() == 2, "{printed}");
    ensure!(
        policies[0]["trustPolicy"]["Statement"][0]["Principal"]["Federated"] == s.provider.as_str(),
        "{printed}"
    );
    for policy in &policies {
        let arn = policy["roleArn"].as_str().context("roleArn")?;
        sts.add_role(
            sts_emulator::role_from_trust_policy(arn, &policy["trustPolicy"], "unused")
                .with_context(|| format!("the emulator cannot read the policy of {arn}"))?,
        );
    }
    let b = env.create_ready(ns, "app", spec, READY).await?;
    let status = b.status.context("status")?;
    ensure!(status.chain.len() == 1, "{status:?}");
    let expected = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ns}-target/{ns}.app");
    ensure!(
        status.assumed_role_arn.as_deref() == Some(&*expected),
        "{status:?}"
    );
    // The hop was signed with the SAML session's credentials, inheriting its transitive tag and
    // source identity.
    let calls = sts.calls().calls;
    let saml = calls
        .iter()
        .find(|c| c.action == "AssumeRoleWithSAML" && c.result == "Ok")
        .context("no SAML exchange")?;
    let hop = calls
        .iter()
        .find(|c| c.action == "AssumeRole" && c.result == "Ok")
        .context("no hop")?;
    ensure!(
        hop.access_key_id == saml.access_key_id,
        "{hop:?} after {saml:?}"
    );
    ensure!(
        hop.inherited_tags
            .iter()
            .any(|t| t.key == "team" && t.value == "blue"),
        "{hop:?}"
    );
    ensure!(
        hop.source_identity.as_deref() == Some(format!("{ns}.ci-bot").as_str()),
        "{hop:?}"
    );
    ensure!(saml.saml_signature.as_deref() == Some("Valid"), "{saml:?}");
    let data = env.secret_data(ns, "app").await?;
    let dir = tempfile::tempdir()?;
    let (creds, config) = crate::support::secret_files(dir.path(), &data)?;
    let ident = aws_caller_identity(
        &sts.url(),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &creds),
            ("AWS_CONFIG_FILE", &config),
        ],
    )
    .await?;
    ensure!(ident["Arn"] == expected.as_str(), "AWS CLI saw {ident}");
    let metrics = s.operator.metrics().await?;
    ensure!(
        metrics.contains(
            "podcreds_sts_request_duration_seconds_count{flow=\"RoleChain\",outcome=\"success\"}"
        ),
        "{metrics}"
    );
    sts.shutdown();
    Ok(())
}

pub async fn saml_against_moto(env: &Env) -> anyhow::Result<()> {
    let (mut moto, moto_url) = crate::support::peers::start_moto(env).await?;
    let ns = env.namespace("saml-moto").await?;
    env.service_account(&ns, "app").await?;
    env.allow_roles(&ns, &format!("arn:aws:iam::{ACCOUNT}:role/**"))
        .await?;
    let operator_ns = env.namespace("saml-moto-op").await?;
    let provider = format!("arn:aws:iam::{ACCOUNT}:saml-provider/podcreds");
    let _op = env
        .start_operator(
            &[&ns],
            &moto_url,
            &[
                "--saml-enabled",
                &format!("--namespace={operator_ns}"),
                &format!("--saml-provider-arn={provider}"),
            ],
        )
        .await?;
    let role = format!("arn:aws:iam::{ACCOUNT}:role/moto-saml");
    let b = env
        .create_ready(
            &ns,
            "app",
            spec_with(&role, json!({"durationSeconds": 900, "saml": {}})),
            READY,
        )
        .await?;
    let assumed = b
        .status
        .and_then(|st| st.assumed_role_arn)
        .context("assumedRoleArn")?;
    // moto read the role and the session name from the assertion's attributes.
    ensure!(
        assumed.ends_with(&format!(":assumed-role/moto-saml/{ns}.app")),
        "{assumed}"
    );
    let data = env.secret_data(&ns, "app").await?;
    ensure!(
        data["AWS_ACCESS_KEY_ID"].starts_with("ASIA"),
        "{}",
        data["AWS_ACCESS_KEY_ID"]
    );
    moto.terminate()?;
    Ok(())
}

pub async fn chart_rbac_lets_the_operator_keep_only_its_saml_key(env: &Env) -> anyhow::Result<()> {
    use crate::support::helm::{forbidden, helm, helm_install, service_account_token};
    // Namespaced RBAC: with rbac.scope=cluster the permissions on binding Secrets reach every
    // namespace, the operator's own included (docs/security.md says so).
    let ns = env.namespace("saml-chart").await?;
    env.service_account(&ns, "app").await?;
    env.allow_roles(&ns, &format!("arn:aws:iam::{ACCOUNT}:role/**"))
        .await?;
    let watch = format!("operator.watchNamespaces={{{ns}}}");
    let provider = format!("arn:aws:iam::{ACCOUNT}:saml-provider/{ns}");
    // The chart's binding guard admits SAML bindings only for the providers its values name.
    let provider_value = format!("saml.providerArn={provider}");
    let (release_ns, release, _) = helm_install(
        env,
        "saml-system",
        "ps",
        &[
            "--wait=false",
            "--set",
            "saml.enabled=true",
            "--set",
            &provider_value,
            "--set",
            "rbac.scope=namespaced",
            "--set",
            &watch,
        ],
    )
    .await?;
    let token = service_account_token(env, &release_ns, &format!("{release}-podcreds")).await?;
    let kubeconfig = env.plane.token_kubeconfig(&release, &token)?;

    // The operator, as the chart's ServiceAccount, creates its key at start.
    let sts = private_emulator(env).await?;
    let _op = env
        .start_operator_with_kubeconfig(
            &kubeconfig,
            &[&ns],
            &sts.url(),
            &[
                "--saml-enabled",
                &format!("--namespace={release_ns}"),
                // As the chart runs it with the namespaced RBAC scope.
                "--credential-sources=false",
                &format!("--saml-provider-arn={provider}"),
            ],
        )
        .await?;
    let created = wait_for(Duration::from_secs(20), || async {
        env.secrets(&release_ns)
            .get_opt(podcreds::saml::DEFAULT_KEY_SECRET)
            .await
            .ok()
            .flatten()
    })
    .await
    .context("the operator did not create its key Secret")?;
    ensure!(
        created
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key(podcreds::keyring::ACTIVE_KEY)),
        "the key Secret has no key"
    );
    sts.add_saml_provider(&provider, &metadata(env, &release_ns).await?)
        .map_err(anyhow::Error::msg)?;
    let role = format!("arn:aws:iam::{ACCOUNT}:role/{ns}-saml");
    sts.add_role(Role {
        arn: role.clone(),
        subjects: vec![format!("system:serviceaccount:{ns}:app")],
        saml_providers: vec![provider.clone()],
        ..Role::default()
    });
    env.create_ready(&ns, "app", spec_with(&role, json!({"saml": {}})), READY)
        .await?;

    // It may read its key and nothing else of its namespace's Secrets, and change none.
    let as_operator = podcreds_testenv::client_from_kubeconfig(&kubeconfig).await?;
    let own: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(as_operator, &release_ns);
    ensure!(own.get(podcreds::saml::DEFAULT_KEY_SECRET).await.is_ok());
    let mut other = created.clone();
    other.metadata = kube::api::ObjectMeta {
        name: Some("not-the-key".into()),
        ..Default::default()
    };
    env.secrets(&release_ns)
        .create(&kube::api::PostParams::default(), &other)
        .await?;
    ensure!(
        forbidden(own.get("not-the-key").await),
        "the operator may read other Secrets of its namespace"
    );
    ensure!(
        forbidden(
            own.replace(
                podcreds::saml::DEFAULT_KEY_SECRET,
                &kube::api::PostParams::default(),
                &created
            )
            .await
        ),
        "the operator may overwrite its key"
    );
    ensure!(
        forbidden(
            own.delete(podcreds::saml::DEFAULT_KEY_SECRET, &Default::default())
                .await
        ),
        "the operator may delete its key"
    );
    let (ok, _, stderr) = helm(env, &["uninstall", &release, "--namespace", &release_ns]).await?;
    ensure!(ok, "helm uninstall failed: {stderr}");
    sts.shutdown();
    Ok(())
}

pub async fn tampered_expired_and_foreign_assertions_are_refused(env: &Env) -> anyhow::Result<()> {
    use podcreds::saml::assertion::{AssertionClaims, signed_response};
    use podcreds::sts::{
        AwsStsClient, SamlRequest, SessionScope, StsClient, StsTarget, StsTimeouts,
    };
    use secrecy::SecretString;

    let sts = private_emulator(env).await?;
    let ring = podcreds::keyring::KeyRing::generate(&podcreds::keyring::SAML, 2026)?;
    let provider = format!("arn:aws:iam::{ACCOUNT}:saml-provider/direct");
    let metadata =
        podcreds::saml::metadata::idp_metadata("urn:direct", &ring.announced_certificates());
    sts.add_saml_provider(&provider, &metadata)
        .map_err(anyhow::Error::msg)?;
    let role = format!("arn:aws:iam::{ACCOUNT}:role/direct");
    sts.add_role(Role {
        arn: role.clone(),
        subjects: vec!["system:serviceaccount:ns:app".into()],
        saml_providers: vec![provider.clone()],
        ..Role::default()
    });
    let claims = AssertionClaims {
        issuer: "urn:direct",
        subject: "system:serviceaccount:ns:app",
        role_arn: &role,
        provider_arn: &provider,
        session_name: "ns.app",
        session_duration_seconds: 900,
        source_identity: None,
        tags: &[],
        transitive_tag_keys: &[],
    };
    let client = AwsStsClient::new(StsTimeouts::default(), None);
    let call = |response: String, principal: &str| SamlRequest {
        role_arn: role.clone(),
        principal_arn: principal.to_string(),
        saml_assertion: SecretString::from(BASE64.encode(response)),
        scope: SessionScope {
            duration_seconds: 900,
            policy: None,
            policy_arns: vec![],
        },
        target: StsTarget {
            region: "us-east-1".into(),
            endpoint: Some(sts.url()),
        },
    };
    let now = jiff::Timestamp::now();
    let valid = signed_response(&claims, &ring.active, now)?;
    client
        .assume_role_with_saml(call(valid.clone(), &provider))
        .await
        .context("a valid assertion was refused")?;

    let refusal = |r: Result<podcreds::credentials::IssuedCredentials, podcreds::sts::StsError>| {
        r.err().and_then(|e| e.code)
    };
    // Tampered: another subject after signing.
    let tampered = valid.replace("ns:app</saml:NameID>", "ns:admin</saml:NameID>");
    ensure!(tampered != valid);
    let code = refusal(
        client
            .assume_role_with_saml(call(tampered, &provider))
            .await,
    );
    ensure!(code.as_deref() == Some("InvalidIdentityToken"), "{code:?}");
    // Signed by a key whose certificate the provider does not hold.
    let foreign_key = podcreds::keyring::KeyRing::generate(&podcreds::keyring::SAML, 2026)?;
    let foreign = signed_response(&claims, &foreign_key.active, now)?;
    let code = refusal(client.assume_role_with_saml(call(foreign, &provider)).await);
    ensure!(code.as_deref() == Some("InvalidIdentityToken"), "{code:?}");
    // Issued more than 5 minutes ago (and expired).
    let old = signed_response(
        &claims,
        &ring.active,
        now - jiff::SignedDuration::from_mins(6),
    )?;
    let code = refusal(client.assume_role_with_saml(call(old, &provider)).await);
    ensure!(code.as_deref() == Some("ExpiredTokenException"), "{code:?}");
    // Another issuer than the metadata's.
    let other_issuer = AssertionClaims {
        issuer: "urn:someone-else",
        ..claims.clone()
    };
    let response = signed_response(&other_issuer, &ring.active, now)?;
    let code = refusal(
        client
            .assume_role_with_saml(call(response, &provider))
            .await,
    );
    ensure!(code.as_deref() == Some("InvalidIdentityToken"), "{code:?}");
    // A provider IAM does not know.
    let unknown = format!("arn:aws:iam::{ACCOUNT}:saml-provider/unknown");
    let code = refusal(
        client
            .assume_role_with_saml(call(valid.clone(), &unknown))
            .await,
    );
    ensure!(code.as_deref() == Some("InvalidIdentityToken"), "{code:?}");
    // A role pair the assertion does not name.
    let elsewhere = AssertionClaims {
        role_arn: "arn:aws:iam::123456789012:role/other",
        ..claims.clone()
    };
    let response = signed_response(&elsewhere, &ring.active, now)?;
    let code = refusal(
        client
            .assume_role_with_saml(call(response, &provider))
            .await,
    );
    ensure!(code.as_deref() == Some("AccessDenied"), "{code:?}");

    // xmlsec1 judged exactly the signatures that got that far: the valid one and the role pair
    // it names (valid), the tampered and the foreign one (invalid); the others were refused
    // before it (stale, wrong issuer, unknown provider).
    let counters = sts.calls().counters;
    ensure!(
        counters.saml_signatures_valid == 2 && counters.saml_signatures_invalid == 2,
        "{counters:?}"
    );
    sts.shutdown();
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![saml:
    saml_binding_gets_working_credentials,
    outdated_metadata_names_the_fix_and_recovers,
    key_rotation_keeps_exchanges_working,
    saml_outage_degrades_then_recovers,
    role_chain_after_saml,
    saml_against_moto,
    chart_rbac_lets_the_operator_keep_only_its_saml_key,
    tampered_expired_and_foreign_assertions_are_refused,
];

//! The core flow and its edge cases against the STS emulator.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use podcreds::secret::{ANNOTATION_EXPIRATION, ANNOTATION_ROLE_ARN, DATA_KEYS};
use podcreds_testenv::decode_secret;
use serde_json::json;

use crate::support::{Env, ready_message, spec, spec_with, wait_for};

const READY: Duration = Duration::from_secs(60);

include!("../data/invalid_specs.rs");

pub async fn binding_issues_working_credentials(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("core").await?;
    env.service_account(&ns, "app").await?;
    let role = env.role(&format!("{ns}-reader"), &ns, "app", None);
    let op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.create_binding(&ns, "reader", spec(&role)).await?;
    let binding = env.wait_ready(&ns, "reader", "True", READY).await?;

    // Status.
    let status = binding.status.clone().context("status")?;
    ensure!(
        status.secret_name.as_deref() == Some("reader"),
        "secretName {:?}",
        status.secret_name
    );
    let expiration = status.expiration.clone().context("expiration")?;
    let renewal = status.renewal_time.clone().context("renewalTime")?;
    ensure!(
        renewal.0 < expiration.0,
        "renewal {renewal:?} not before expiration {expiration:?}"
    );
    ensure!(status.observed_generation == binding.metadata.generation);
    ensure!(
        status.assumed_role_arn.as_deref()
            == Some(&*format!(
                "arn:aws:sts::{}:assumed-role/{ns}-reader/{ns}.reader",
                crate::support::ACCOUNT
            )),
        "assumedRoleArn {:?}",
        status.assumed_role_arn
    );

    // The Secret.
    let secret = env.secrets(&ns).get("reader").await?;
    ensure!(secret.type_.as_deref() == Some("Opaque"));
    let data = decode_secret(&secret);
    for key in DATA_KEYS {
        ensure!(data.contains_key(key), "Secret lacks {key}");
    }
    let process: serde_json::Value = serde_json::from_str(&data["credential-process.json"])?;
    ensure!(process["Version"] == 1);
    ensure!(process["AccessKeyId"] == data["AWS_ACCESS_KEY_ID"].as_str());
    ensure!(
        data["config"]
            .contains("credential_process = cat /var/run/secrets/podcreds/credential-process.json")
    );
    let owner = secret
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .context("owner reference")?;
    ensure!(owner.controller == Some(true) && Some(&owner.uid) == binding.metadata.uid.as_ref());
    ensure!(
        secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str)
            == Some("podcreds")
    );

    // What STS saw.
    let calls = env.issued_for(&role);
    ensure!(
        calls.len() == 1,
        "expected one STS call, saw {}",
        calls.len()
    );
    let call = &calls[0];
    ensure!(
        call.subject.as_deref() == Some(&*format!("system:serviceaccount:{ns}:app")),
        "{call:?}"
    );
    ensure!(
        call.audience.as_deref() == Some("sts.amazonaws.com"),
        "{call:?}"
    );
    ensure!(
        call.session_name.as_deref() == Some(&*format!("{ns}.reader")),
        "{call:?}"
    );
    ensure!(call.result == "Ok", "{call:?}");

    // A routine first issue is in the status and the metrics, not in an Event (a person needs
    // Events for failures, blocks and recoveries: `missing_service_account_then_created`).

    // Metrics report the binding.
    let metrics = op.metrics().await?;
    ensure!(
        metrics.contains("podcreds_credentials_expiration_timestamp_seconds{namespace=\"")
            && metrics.contains("podcreds_sts_request_duration_seconds"),
        "metrics lack binding gauges:\n{metrics}"
    );

    // No credential ever reaches logs, Events or status.
    let secrets = [
        data["AWS_SECRET_ACCESS_KEY"].clone(),
        data["AWS_SESSION_TOKEN"].clone(),
    ];
    let events = serde_json::to_string(&env.events(&ns).await?)?;
    let status_text = serde_json::to_string(&env.bindings(&ns).get("reader").await?.status)?;
    for (what, text) in [
        ("operator log", op.log()),
        ("events", events),
        ("status", status_text),
    ] {
        for s in &secrets {
            ensure!(
                !text.contains(s.as_str()),
                "a credential appears in the {what}"
            );
        }
        ensure!(
            !text.contains("eyJ"),
            "something like a JWT appears in the {what}"
        );
    }

    // Not even at the most verbose level: an operator at `--log-level trace` (every target,
    // the SDK's and the HTTP stacks' included), authenticated with a bearer token as in a
    // cluster, issues credentials for another binding, and its log holds neither them (plain or
    // base64, as in the Secret it applies) nor the ServiceAccount tokens: its own and the one it
    // sends to STS.
    // This test runs alone (main.rs RUNS_ALONE): a chart release's status guard would refuse
    // this operator's identity.
    let (trace_ns, trace_role) = env.app_namespace("core-trace", None).await?;
    let operator_token = namespace_admin_token(env, &trace_ns, "podcreds-trace").await?;
    let kubeconfig = env
        .plane
        .token_kubeconfig(&format!("trace-{trace_ns}"), &operator_token)?;
    // With the AWS SDK's own switches for printing bodies turned on in its environment, as a
    // debugging session might leave them: the SDK then logs response bodies (the credentials) at
    // TRACE, and SigV4 the bodies it signs.
    let traced = env
        .launch_operator(
            &[&trace_ns],
            &env.emulator.url(),
            &["--log-level=trace"],
            crate::support::OperatorOptions {
                kubeconfig: Some(&kubeconfig),
                env: vec![
                    ("LOG_SENSITIVE_BODIES".into(), "true".into()),
                    ("LOG_SIGNABLE_BODY".into(), "true".into()),
                ],
                ..crate::support::OperatorOptions::default()
            },
        )
        .await?;
    env.create_ready(
        &trace_ns,
        "reader",
        json!({"serviceAccountName": "app", "roleArn": trace_role}),
        READY,
    )
    .await?;
    let data = env.secret_data(&trace_ns, "reader").await?;
    let log = traced.log();
    ensure!(
        log.contains(r#""level":"TRACE""#),
        "the operator did not log at trace level"
    );
    for key in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        let value = &data[key];
        ensure!(
            !log.contains(value.as_str()),
            "{key} appears in the trace log"
        );
        ensure!(
            !log.contains(&BASE64.encode(value)),
            "{key} appears base64-encoded in the trace log"
        );
    }
    ensure!(
        !log.contains(&operator_token),
        "the operator's own token appears in the trace log"
    );
    ensure!(
        !log.contains("eyJ"),
        "something like a JWT appears in the trace log"
    );
    // No STS request or response body at all: the SDK prints each request and response at
    // TRACE, bodies included when they are in memory or the switches above are on, unless the
    // operator's log filter caps it (whatever --log-level says).
    for needle in [
        "WebIdentityToken=",
        "SAMLAssertion=",
        "Action=AssumeRoleWithWebIdentity",
    ] {
        ensure!(
            !log.contains(needle),
            "an STS request body ({needle}) appears in the trace log"
        );
    }
    Ok(())
}

/// A token of a new ServiceAccount `name` that may do anything in `ns` (and nothing elsewhere).
async fn namespace_admin_token(env: &Env, ns: &str, name: &str) -> anyhow::Result<String> {
    use k8s_openapi::api::rbac::v1::{
        ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
    };
    env.service_account(ns, name).await?;
    let bindings: kube::Api<RoleBinding> = kube::Api::namespaced(env.client.clone(), ns);
    bindings
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: "cluster-admin".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: name.into(),
                    namespace: Some(ns.into()),
                    ..Subject::default()
                }]),
            },
        )
        .await?;
    // Plus what the operator reads outside the namespace, as the chart grants it with
    // rbac.scope=namespaced: the namespace object itself (its role allowlist).
    let read_namespace = ClusterRole {
        metadata: ObjectMeta {
            name: Some(format!("{ns}-{name}")),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["namespaces".into()]),
            resource_names: Some(vec![ns.into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    kube::Api::<ClusterRole>::all(env.client.clone())
        .create(&PostParams::default(), &read_namespace)
        .await?;
    kube::Api::<ClusterRoleBinding>::all(env.client.clone())
        .create(
            &PostParams::default(),
            &ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some(format!("{ns}-{name}")),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: format!("{ns}-{name}"),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: name.into(),
                    namespace: Some(ns.into()),
                    ..Subject::default()
                }]),
            },
        )
        .await?;
    let token = crate::support::helm::service_account_token(env, ns, name).await?;
    // The JWT check above relies on this.
    ensure!(token.starts_with("eyJ"), "not a JWT");
    Ok(token)
}

pub async fn refresh_happens_before_expiry_and_honours_shorter_grants(
    env: &Env,
) -> anyhow::Result<()> {
    let ns = env.namespace("refresh").await?;
    env.service_account(&ns, "app").await?;
    // The role grants 12 s whatever is asked: podcreds must trust the Expiration STS returns.
    let role = env.role(&format!("{ns}-short"), &ns, "app", Some(12));
    let _op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.create_ready(
        &ns,
        "short",
        spec_with(
            &role,
            json!({"durationSeconds": 3600, "renewBefore": "20m"}),
        ),
        READY,
    )
    .await?;

    // Watch the Secret through three credential sets: every version must be replaced before it
    // expires (the wait is bounded only so that a stuck operator fails the test).
    let mut seen: Vec<(String, jiff::Timestamp)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while seen.len() < 3 && tokio::time::Instant::now() < deadline {
        let secret = env.secrets(&ns).get("short").await?;
        let data = decode_secret(&secret);
        let exp: jiff::Timestamp = data["expiration"].parse()?;
        let key = data["AWS_ACCESS_KEY_ID"].clone();
        ensure!(
            exp > jiff::Timestamp::now(),
            "the Secret holds expired credentials ({key} expired at {exp})"
        );
        if seen.last().map(|(k, _)| k) != Some(&key) {
            seen.push((key, exp));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(
        seen.len() >= 3,
        "the credentials were refreshed {} times only",
        seen.len()
    );
    let calls = env.issued_for(&role);
    ensure!(
        calls.iter().all(|c| c.granted_seconds == Some(12)),
        "{calls:?}"
    );
    // One STS call per credential set: every call's keys reached the Secret, except at most one
    // issued since the last look.
    let seen_keys: std::collections::BTreeSet<&str> =
        seen.iter().map(|(k, _)| k.as_str()).collect();
    let unseen = calls
        .iter()
        .filter(|c| {
            c.access_key_id
                .as_deref()
                .is_none_or(|k| !seen_keys.contains(k))
        })
        .count();
    ensure!(
        unseen <= 1,
        "{unseen} of {} STS calls issued credentials that never reached the Secret",
        calls.len()
    );
    let binding = env.bindings(&ns).get("short").await?;
    let status = binding.status.context("status")?;
    let exp = status.expiration.context("expiration")?.0;
    let issued = status.last_refresh_time.context("lastRefreshTime")?.0;
    ensure!(
        exp.duration_since(issued) <= jiff::SignedDuration::from_secs(13),
        "status expiration does not follow the granted lifetime"
    );
    Ok(())
}

pub async fn missing_service_account_then_created(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("nosa").await?;
    let role = env.role(&format!("{ns}-late"), &ns, "late", None);
    let _op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.create_binding(
        &ns,
        "late",
        json!({"serviceAccountName": "late", "roleArn": role}),
    )
    .await?;
    let b = env
        .wait_reason(&ns, "late", "ServiceAccountNotFound", READY)
        .await?;
    let msg = ready_message(&b);
    ensure!(
        msg.contains("late"),
        "message should name the ServiceAccount: {msg}"
    );
    ensure!(
        env.secrets(&ns).get_opt("late").await?.is_none(),
        "no Secret before the SA exists"
    );
    env.service_account(&ns, "late").await?;
    env.wait_ready(&ns, "late", "True", Duration::from_secs(30))
        .await?;
    // The Events tell the story a person needs: the block, then the recovery, each once.
    let told = wait_for(Duration::from_secs(30), || async {
        let events = env.events(&ns).await.ok()?;
        let count = |reason: &str| {
            events
                .iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .map(|e| e.count.unwrap_or(1).max(1))
                .sum::<i32>()
        };
        let blocked = events
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("RefreshFailed")
                    && e.message
                        .as_deref()
                        .is_some_and(|n| n.starts_with("ServiceAccountNotFound"))
            })
            .count();
        let recovered = count("Recovered");
        (recovered == 1).then_some((blocked, events))
    })
    .await
    .context("no Recovered Event after the ServiceAccount appeared")?;
    ensure!(
        told.0 >= 1,
        "no RefreshFailed Event naming the missing ServiceAccount: {:?}",
        told.1
    );
    Ok(())
}

pub async fn trust_policy_rejection_writes_nothing(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("trust").await?;
    env.service_account(&ns, "intruder").await?;
    // The role trusts another ServiceAccount only.
    let role = env.role(&format!("{ns}-guarded"), &ns, "someone-else", None);
    let _op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.create_binding(
        &ns,
        "guarded",
        json!({"serviceAccountName": "intruder", "roleArn": role}),
    )
    .await?;
    let b = env
        .wait_reason(&ns, "guarded", "StsAccessDenied", READY)
        .await?;
    let ready = podcreds::status::ready_condition(b.status.as_ref()).context("Ready")?;
    ensure!(ready.status == "False");
    ensure!(ready.message.contains("AccessDenied"), "{}", ready.message);
    ensure!(
        env.secrets(&ns).get_opt("guarded").await?.is_none(),
        "a Secret was written"
    );
    let calls = env.emulator.calls().calls;
    let denied = calls
        .iter()
        .find(|c| c.role_arn.as_deref() == Some(&role))
        .context("no STS call")?;
    ensure!(denied.subject.as_deref() == Some(&*format!("system:serviceaccount:{ns}:intruder")));
    ensure!(denied.result == "AccessDenied");
    // A refusal is retried after its backoff (2.5 to 5 s for the first retry, then doubling),
    // not again at once because the operator's own status write woke the binding.
    let attempts = wait_for(READY, || async {
        let attempts: Vec<_> = env
            .emulator
            .calls()
            .calls
            .into_iter()
            .filter(|c| c.role_arn.as_deref() == Some(role.as_str()))
            .collect();
        (attempts.len() >= 2).then_some(attempts)
    })
    .await
    .context("the refused binding was never retried")?;
    let at = |i: usize| -> anyhow::Result<jiff::Timestamp> { Ok(attempts[i].at.parse()?) };
    let gap = at(1)?.duration_since(at(0)?);
    ensure!(
        gap >= jiff::SignedDuration::from_millis(2400),
        "retried {gap:?} after the refusal: the backoff was skipped"
    );
    Ok(())
}

/// An admin who fixed IAM asks for an attempt now (`podcreds refresh`, or the annotation), and
/// every new request value costs exactly one exchange.
pub async fn refresh_requests_act_at_once_and_once_per_value(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("refresh").await?;
    env.service_account(&ns, "app").await?;
    let role = format!("arn:aws:iam::{}:role/{ns}-late", crate::support::ACCOUNT);
    let op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.create_binding(&ns, "late", spec(&role)).await?;
    // The role does not exist yet: refused.
    env.wait_reason(&ns, "late", "StsAccessDenied", READY)
        .await?;
    // The admin creates the role and asks for an attempt.
    env.role(&format!("{ns}-late"), &ns, "app", None);
    let out =
        crate::support::podcreds_cli(env, &["refresh", "-n", &ns, "late", "--wait", "60s"]).await?;
    ensure!(
        out.status.success(),
        "podcreds refresh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout)?;
    ensure!(said.contains("holds credentials valid until"), "{said}");
    let binding = env.bindings(&ns).get("late").await?;
    let handled = binding
        .status
        .as_ref()
        .and_then(|s| s.last_handled_refresh_request.clone())
        .context("no handled refresh request in the status")?;
    let annotation = binding
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(podcreds::api::REFRESH_REQUEST_ANNOTATION).cloned());
    ensure!(annotation.as_deref() == Some(handled.as_str()));

    // Fresh credentials are exchanged anyway when asked: once per new value.
    let key_of = |data: std::collections::BTreeMap<String, String>| {
        data.get("AWS_ACCESS_KEY_ID").cloned().unwrap_or_default()
    };
    let mut keys = vec![key_of(env.secret_data(&ns, "late").await?)];
    for value in ["rotate-1", "rotate-2"] {
        let before = env.calls_for(&role);
        let patch = json!({"metadata": {"annotations": {podcreds::api::REFRESH_REQUEST_ANNOTATION: value}}});
        env.bindings(&ns)
            .patch("late", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        wait_for(READY, || async {
            let b = env.bindings(&ns).get("late").await.ok()?;
            (b.status?.last_handled_refresh_request.as_deref() == Some(value)).then_some(())
        })
        .await
        .with_context(|| format!("request {value} was never handled"))?;
        let key = wait_for(READY, || async {
            let key = key_of(env.secret_data(&ns, "late").await.ok()?);
            (!keys.contains(&key)).then_some(key)
        })
        .await
        .with_context(|| format!("request {value} did not rotate the credentials"))?;
        keys.push(key);
        let calls = env.calls_for(&role) - before;
        ensure!(calls == 1, "request {value} cost {calls} STS calls");
    }
    // The same value again is no new request: the operator's next pass (a spec-neutral label
    // change wakes it; its metric shows it looked) makes no call.
    let before = env.calls_for(&role);
    let fresh = r#"podcreds_reconciliations_total{result="fresh"}"#;
    let looked = crate::support::counter(&op.metrics().await?, fresh);
    let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
    env.bindings(&ns)
        .patch("late", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_for(READY, || async {
        let now = crate::support::counter(&op.metrics().await.ok()?, fresh);
        (now > looked).then_some(())
    })
    .await
    .context("the operator never looked at the touched binding")?;
    let binding = env.bindings(&ns).get("late").await?;
    ensure!(
        binding
            .status
            .and_then(|s| s.last_handled_refresh_request)
            .as_deref()
            == Some("rotate-2")
    );
    ensure!(
        env.calls_for(&role) == before,
        "an old request was acted on twice"
    );
    Ok(())
}

pub async fn invalid_specs_are_rejected_by_the_apiserver(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("invalid").await?;
    // The shared table the operator's unit tests judge too (tests/data/invalid_specs.rs).
    let mut cases: Vec<(String, serde_json::Value, &str)> = invalid_specs()
        .into_iter()
        .map(|c| (c.name.to_string(), c.spec, c.apiserver))
        .collect();
    // Every role ARN the shared table of role ARNs refuses, under the provider it names.
    for (i, (provider, accepted, arn)) in crate::support::peers::role_arn_table()?
        .into_iter()
        .enumerate()
    {
        if !accepted {
            cases.push((
                format!("arn-{}-{i}", provider.to_lowercase()),
                crate::support::peers::binding_for(&provider, &arn),
                "spec.roleArn",
            ));
        }
    }
    let mut failures = Vec::new();
    for (name, spec, expected) in &cases {
        match env.create_binding(&ns, name, spec.clone()).await {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 || !status.message.contains(expected) {
                    failures.push(format!(
                        "{name}: {} {:?} (wanted {expected:?})",
                        status.code, status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} cases wrong:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

pub async fn deleted_secret_is_recreated_and_edited_secret_restored(
    env: &Env,
) -> anyhow::Result<()> {
    let (ns, role, _op) = env.scenario("restore", None).await?;
    env.create_ready(&ns, "b", spec(&role), READY).await?;
    let first = env.secrets(&ns).get("b").await?;

    env.secrets(&ns)
        .delete("b", &DeleteParams::default())
        .await?;
    let recreated = wait_for(Duration::from_secs(30), || async {
        let s = env.secrets(&ns).get_opt("b").await.ok()??;
        (s.metadata.uid != first.metadata.uid).then_some(s)
    })
    .await
    .context("the deleted Secret was not recreated")?;
    ensure!(decode_secret(&recreated).len() == DATA_KEYS.len());

    // Someone edits a key by hand (as `kubectl edit` would, with its own field manager).
    let tampered = json!({"data": {"credential-process.json": "dGFtcGVyZWQ="}});
    env.secrets(&ns)
        .patch("b", &PatchParams::default(), &Patch::Merge(&tampered))
        .await?;
    let restored = wait_for(Duration::from_secs(30), || async {
        let data = env.secret_data(&ns, "b").await.ok()?;
        let doc: serde_json::Value = serde_json::from_str(&data["credential-process.json"]).ok()?;
        (doc["Version"] == 1).then_some(data)
    })
    .await;
    ensure!(restored.is_some(), "the edited Secret was not restored");
    Ok(())
}

pub async fn foreign_secret_is_never_touched(env: &Env) -> anyhow::Result<()> {
    let (ns, role) = env.app_namespace("conflict", None).await?;
    let mine = Secret {
        metadata: ObjectMeta {
            name: Some("taken".into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("password".to_string(), "keep-me".to_string())].into()),
        ..Secret::default()
    };
    let created = env
        .secrets(&ns)
        .create(&PostParams::default(), &mine)
        .await?;
    let op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.create_binding(&ns, "b", spec_with(&role, json!({"secretName": "taken"})))
        .await?;
    let b = env.wait_reason(&ns, "b", "SecretConflict", READY).await?;
    ensure!(
        podcreds::status::ready_condition(b.status.as_ref()).is_some_and(|c| c.status == "False")
    );
    let events = env.events(&ns).await?;
    ensure!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("SecretConflict")),
        "no SecretConflict Event"
    );
    crate::support::looked_again(env, &op, &ns, "b", "conflict").await?;
    let after = env.secrets(&ns).get("taken").await?;
    ensure!(
        after.metadata.resource_version == created.metadata.resource_version,
        "the foreign Secret was written"
    );
    ensure!(decode_secret(&after).get("password").map(String::as_str) == Some("keep-me"));
    // podcreds does not cache Secrets that are not its own, so its first attempt learns of this
    // one only when its create is refused: at most one credential set was issued, and dropped.
    // Once the status reports the conflict, further reconciliations look before calling STS.
    let issued = env.issued_for(&role).len();
    ensure!(
        issued <= 1,
        "{issued} credential sets issued for a binding that cannot write them"
    );
    crate::support::looked_again(env, &op, &ns, "b", "conflict").await?;
    ensure!(
        env.issued_for(&role).len() == issued,
        "STS was called again for a binding already known to be in conflict"
    );
    ensure!(
        env.secrets(&ns)
            .get("taken")
            .await?
            .metadata
            .resource_version
            == created.metadata.resource_version,
        "the foreign Secret was written"
    );
    Ok(())
}

pub async fn deleting_the_binding_garbage_collects_the_secret(env: &Env) -> anyhow::Result<()> {
    let (ns, role, _op) = env.scenario("gc", None).await?;
    env.create_ready(&ns, "b", spec(&role), READY).await?;
    env.bindings(&ns)
        .delete("b", &DeleteParams::foreground())
        .await?;
    let gone = wait_for(Duration::from_secs(60), || async {
        env.secrets(&ns)
            .get_opt("b")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    ensure!(gone.is_some(), "the Secret outlived its binding");
    Ok(())
}

pub async fn spec_changes_issue_new_credentials(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("change").await?;
    env.service_account(&ns, "app").await?;
    let role_a = env.role(&format!("{ns}-a"), &ns, "app", None);
    // Role b serves the 7200 s asked below: its MaxSessionDuration allows two hours.
    let role_b = env.long_role(&format!("{ns}-b"), &ns, "app", 7200);
    let _op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.create_ready(&ns, "b", spec(&role_a), READY).await?;
    let key_of =
        |data: &std::collections::BTreeMap<String, String>| data["AWS_ACCESS_KEY_ID"].clone();
    let mut previous = key_of(&env.secret_data(&ns, "b").await?);

    // Two hours from role a, left at IAM's one-hour MaxSessionDuration: AWS refuses rather than
    // grant less, the binding says so with the command that raises the maximum, and the
    // credentials it holds stay.
    let two_hours = json!({"spec": {"durationSeconds": 7200}});
    env.bindings(&ns)
        .patch("b", &PatchParams::default(), &Patch::Merge(&two_hours))
        .await?;
    let role_a_name = role_a.rsplit('/').next().unwrap_or_default().to_string();
    let refused = wait_for(Duration::from_secs(30), || async {
        let b = env.bindings(&ns).get("b").await.ok()?;
        let degraded = b
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True")?;
        (degraded.reason == "StsInvalidRequest").then_some(degraded.message)
    })
    .await
    .context("a session longer than the role allows was not refused")?;
    ensure!(
        refused.contains("MaxSessionDuration")
            && refused.contains(&format!(
                "aws iam update-role --role-name {role_a_name} --max-session-duration 7200"
            )),
        "the refusal does not name the fix: {refused}"
    );
    ensure!(
        key_of(&env.secret_data(&ns, "b").await?) == previous,
        "the refused exchange replaced the credentials"
    );
    let back = json!({"spec": {"durationSeconds": null}});
    env.bindings(&ns)
        .patch("b", &PatchParams::default(), &Patch::Merge(&back))
        .await?;

    let changes = [
        json!({"spec": {"roleArn": role_b}}),
        json!({"spec": {"durationSeconds": 7200}}),
        json!({"spec": {"sessionPolicy": SCOPED_POLICY}}),
        json!({"spec": {"policyArns": SCOPED_POLICY_ARNS}}),
    ];
    for change in changes {
        env.bindings(&ns)
            .patch("b", &PatchParams::default(), &Patch::Merge(&change))
            .await?;
        let prev = previous.clone();
        let next = wait_for(Duration::from_secs(30), || async {
            let data = env.secret_data(&ns, "b").await.ok()?;
            let key = key_of(&data);
            (key != prev).then_some(key)
        })
        .await
        .with_context(|| format!("no new credentials after {change}"))?;
        previous = next;
    }
    let secret = env.secrets(&ns).get("b").await?;
    let annotations = secret.metadata.annotations.unwrap_or_default();
    ensure!(
        annotations.get(ANNOTATION_ROLE_ARN) == Some(&role_b),
        "{annotations:?}"
    );
    ensure!(annotations.contains_key(ANNOTATION_EXPIRATION));
    let b_calls = env.issued_for(&role_b);
    ensure!(
        b_calls.iter().any(|c| c.duration_seconds == Some(7200)),
        "{b_calls:?}"
    );
    // The session policies reach STS as the binding says: the inline one from its change on,
    // the managed ones added to it by the last change.
    let last = b_calls.last().context("no call for role b")?;
    ensure!(
        last.policy.as_deref() == Some(SCOPED_POLICY) && last.policy_arns == SCOPED_POLICY_ARNS,
        "the last exchange did not carry the binding's session policies: {last:?}"
    );
    ensure!(
        b_calls
            .iter()
            .any(|c| c.policy.as_deref() == Some(SCOPED_POLICY) && c.policy_arns.is_empty()),
        "no exchange carried the inline policy alone: {b_calls:?}"
    );
    Ok(())
}

/// A session policy a binding narrows its credentials with (inline, and managed).
const SCOPED_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
const SCOPED_POLICY_ARNS: [&str; 2] = [
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::123456789012:policy/team-a-boundary",
];

pub async fn restart_with_fresh_secrets_makes_no_sts_calls(env: &Env) -> anyhow::Result<()> {
    let (ns, role, mut op) = env.scenario("restart", None).await?;
    env.create_ready_many(&ns, "b", 5, spec(&role), READY)
        .await?;
    // Let status writes settle, then remember every Secret's version.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions = |list: Vec<Secret>| {
        list.into_iter()
            .map(|s| {
                (
                    s.metadata.name.unwrap_or_default(),
                    s.metadata.resource_version.unwrap_or_default(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = versions(env.secrets(&ns).list(&Default::default()).await?.items);
    let calls_before = env.calls_for(&role);

    op.restart().await?;
    crate::support::wait_until_reconciled_fresh(&op, 5).await?;

    let after = versions(env.secrets(&ns).list(&Default::default()).await?.items);
    ensure!(
        env.calls_for(&role) == calls_before,
        "the restarted operator called STS"
    );
    ensure!(
        before == after,
        "the restarted operator wrote Secrets:\n{before:?}\n{after:?}"
    );
    for i in 0..5 {
        env.wait_ready(&ns, &format!("b{i}"), "True", Duration::from_secs(5))
            .await?;
    }
    Ok(())
}

pub async fn disallowed_endpoint_and_audience_send_nothing(env: &Env) -> anyhow::Result<()> {
    let (ns, role, op) = env.scenario("allow", None).await?;
    // A listener that records whether anything ever connects.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let trap_url = format!("http://{}", trap.local_addr()?);
    env.create_binding(
        &ns,
        "exfil",
        spec_with(&role, json!({"sts": {"endpoint": trap_url}})),
    )
    .await?;
    env.create_binding(
        &ns,
        "apiaud",
        spec_with(&role, json!({"audience": env.plane.api_url})),
    )
    .await?;
    env.wait_reason(&ns, "exfil", "EndpointNotAllowed", READY)
        .await?;
    env.wait_reason(&ns, "apiaud", "AudienceNotAllowed", READY)
        .await?;
    let connected = tokio::time::timeout(Duration::from_secs(2), trap.accept()).await;
    ensure!(
        connected.is_err(),
        "the operator connected to a disallowed endpoint"
    );
    ensure!(
        env.calls_for(&role) == 0,
        "STS was called for refused bindings"
    );
    // No token was even requested: this operator (which serves only this namespace) made no
    // TokenRequest at all.
    let metrics = op.metrics().await?;
    let requested =
        crate::support::counter(&metrics, "podcreds_token_request_duration_seconds_count");
    ensure!(
        metrics.contains("podcreds_reconcile_duration_seconds_count") && requested == 0.0,
        "the operator requested {requested} tokens for bindings it refused"
    );
    Ok(())
}

pub async fn bindings_colliding_on_a_secret_name_never_share_it(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("collide").await?;
    env.service_account(&ns, "app").await?;
    env.service_account(&ns, "other").await?;
    let role = env.role(&format!("{ns}-r"), &ns, "app", None);
    let other_role = env.role(&format!("{ns}-o"), &ns, "other", None);
    let op = env.start_operator(&[&ns], &env.emulator.url(), &[]).await?;
    env.create_ready(
        &ns,
        "first",
        spec_with(&role, json!({"secretName": "shared"})),
        READY,
    )
    .await?;
    let before = env.secrets(&ns).get("shared").await?;
    env.create_binding(
        &ns,
        "second",
        json!({"serviceAccountName": "other", "roleArn": other_role, "secretName": "shared"}),
    )
    .await?;
    let b = env
        .wait_reason(&ns, "second", "SecretConflict", READY)
        .await?;
    let message = ready_message(&b);
    ensure!(
        message.contains("AWSRoleBinding/first"),
        "the conflict should name the owner: {message}"
    );
    crate::support::looked_again(env, &op, &ns, "second", "conflict").await?;
    let after = env.secrets(&ns).get("shared").await?;
    ensure!(
        after.metadata.resource_version == before.metadata.resource_version,
        "the first binding's Secret was written"
    );
    ensure!(
        env.issued_for(&other_role).is_empty(),
        "credentials were issued for the colliding binding"
    );
    Ok(())
}

pub async fn renaming_the_secret_moves_the_credentials(env: &Env) -> anyhow::Result<()> {
    let (ns, role, _op) = env.scenario("rename", None).await?;
    env.create_ready(
        &ns,
        "b",
        spec_with(&role, json!({"secretName": "one"})),
        READY,
    )
    .await?;
    let change = json!({"spec": {"secretName": "two"}});
    env.bindings(&ns)
        .patch("b", &PatchParams::default(), &Patch::Merge(&change))
        .await?;
    let moved = wait_for(Duration::from_secs(30), || async {
        let two = env.secrets(&ns).get_opt("two").await.ok()??;
        let one_gone = env.secrets(&ns).get_opt("one").await.ok()?.is_none();
        one_gone.then_some(two)
    })
    .await
    .context("the credentials did not move from Secret one to Secret two")?;
    ensure!(decode_secret(&moved).len() == DATA_KEYS.len());
    let b = env.bindings(&ns).get("b").await?;
    ensure!(b.status.and_then(|s| s.secret_name).as_deref() == Some("two"));
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![lifecycle:
    binding_issues_working_credentials,
    refresh_happens_before_expiry_and_honours_shorter_grants,
    missing_service_account_then_created,
    trust_policy_rejection_writes_nothing,
    refresh_requests_act_at_once_and_once_per_value,
    invalid_specs_are_rejected_by_the_apiserver,
    deleted_secret_is_recreated_and_edited_secret_restored,
    foreign_secret_is_never_touched,
    deleting_the_binding_garbage_collects_the_secret,
    spec_changes_issue_new_credentials,
    restart_with_fresh_secrets_makes_no_sts_calls,
    disallowed_endpoint_and_audience_send_nothing,
    bindings_colliding_on_a_secret_name_never_share_it,
    renaming_the_secret_moves_the_credentials,
];

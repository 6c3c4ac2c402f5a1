//! What a namespace tenant can do to podcreds' own objects, run as attacks against the real
//! control plane: forged Secret metadata and Secrets built to bloat the operator's memory.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use podcreds::secret::{
    ANNOTATION_EXPIRATION, ANNOTATION_RENEWAL_TIME, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use serde_json::json;

use crate::support::{Env, spec, wait_for};

/// Someone who may patch the Secret pushes its expiration to 2099, so the operator would wait
/// while the credentials lapse: the edit counts as a modification and is repaired at once. Then
/// again with podcreds' own field manager, which the Secret's managed fields cannot tell from
/// the operator: any write the operator did not make itself (it remembers the resourceVersions
/// of its own writes) is a modification.
pub async fn forged_expiration_annotations_are_repaired(env: &Env) -> anyhow::Result<()> {
    let (ns, role, _op) = env.scenario("forgedexp", None).await?;
    env.create_ready(
        &ns,
        "b",
        json!({"serviceAccountName": "app", "roleArn": role}),
        Duration::from_secs(60),
    )
    .await?;
    ensure!(env.calls_for(&role) == 1, "one exchange expected");
    let far = "2099-01-01T00:00:00Z";
    let forged = json!({"metadata": {"annotations": {ANNOTATION_EXPIRATION: far, ANNOTATION_RENEWAL_TIME: far}}});
    for (round, manager) in [(1, "mallory"), (2, podcreds::secret::FIELD_MANAGER)] {
        env.secrets(&ns)
            .patch(
                "b",
                &PatchParams {
                    field_manager: Some(manager.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&forged),
            )
            .await?;
        let repaired = wait_for(Duration::from_secs(30), || async {
            let secret = env.secrets(&ns).get("b").await.ok()?;
            let expiration = secret.annotations().get(ANNOTATION_EXPIRATION)?.clone();
            (expiration != far).then_some(expiration)
        })
        .await
        .with_context(|| {
            format!("the expiration forged by field manager {manager} was never replaced")
        })?;
        ensure!(
            env.calls_for(&role) == 1 + round,
            "expected exactly one new exchange for the forgery by {manager}, saw {} calls",
            env.calls_for(&role)
        );
        let binding = wait_for(Duration::from_secs(30), || async {
            let b = env.bindings(&ns).get("b").await.ok()?;
            let expiration = b.status.as_ref()?.expiration.as_ref()?.0.to_string();
            (expiration == repaired).then_some(b)
        })
        .await;
        ensure!(
            binding.is_some(),
            "the status never reported the repaired expiration {repaired}"
        );
    }
    Ok(())
}

/// Someone who may patch but not delete a Secret labels it as podcreds' and points its
/// controller reference at a binding. When the binding's secretName changes, podcreds deletes
/// the Secret it created (by UID) and nothing else.
pub async fn a_rename_deletes_only_the_secret_podcreds_created(env: &Env) -> anyhow::Result<()> {
    let (ns, role, _op) = env.scenario("forgedowner", None).await?;
    let binding = env
        .create_ready(
            &ns,
            "b",
            json!({"serviceAccountName": "app", "roleArn": role, "secretName": "first"}),
            Duration::from_secs(60),
        )
        .await?;
    let first = env.secrets(&ns).get("first").await?;
    let recorded = binding.status.as_ref().and_then(|s| s.secret_uid.clone());
    ensure!(
        recorded.is_some() && recorded == first.metadata.uid,
        "status.secretUID {recorded:?} is not the created Secret's {:?}",
        first.metadata.uid
    );

    let victim = Secret {
        metadata: ObjectMeta {
            name: Some("victim".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "precious".to_string(),
            ByteString(b"do not delete".to_vec()),
        )])),
        ..Secret::default()
    };
    env.secrets(&ns)
        .create(&PostParams::default(), &victim)
        .await?;
    let forged = json!({"metadata": {
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        "ownerReferences": [{
            "apiVersion": "podcreds.dev/v1alpha1", "kind": "AWSRoleBinding", "name": "b",
            "uid": binding.metadata.uid, "controller": true,
        }],
    }});
    env.secrets(&ns)
        .patch("victim", &PatchParams::default(), &Patch::Merge(&forged))
        .await?;

    let rename = json!({"spec": {"secretName": "second"}});
    env.bindings(&ns)
        .patch("b", &PatchParams::default(), &Patch::Merge(&rename))
        .await?;
    wait_for(Duration::from_secs(60), || async {
        let gone = env.secrets(&ns).get_opt("first").await.ok()?.is_none();
        let moved = env.secrets(&ns).get_opt("second").await.ok()?.is_some();
        (gone && moved).then_some(())
    })
    .await
    .context("the credentials never moved from Secret first to second")?;
    ensure!(
        env.secrets(&ns).get_opt("victim").await?.is_some(),
        "podcreds deleted a Secret it never created"
    );
    Ok(())
}

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kib / 1024.0)
}

/// Labelled Secrets in the tenant's namespace, each with a 200 KB annotation in podcreds'
/// prefix: the operator sees them all and goes on serving its binding. What they cost in memory
/// (1,500 of them) is measured by `cargo xtask bench --hostile-secrets` (docs/performance.md);
/// a test checks behaviour only.
pub async fn labelled_secrets_built_to_bloat_the_cache_cost_nothing(
    env: &Env,
) -> anyhow::Result<()> {
    const SECRETS: usize = 100;
    let (ns, role, op) = env.scenario("bloat", None).await?;
    env.create_ready(
        &ns,
        "b",
        json!({"serviceAccountName": "app", "roleArn": role}),
        Duration::from_secs(60),
    )
    .await?;
    let before = rss_mib(op.process.pid())?;
    let padding = "x".repeat(200 * 1024);
    let secrets = env.secrets(&ns);
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(0..SECRETS)
        .map(|i| {
            let secrets = secrets.clone();
            let padding = padding.clone();
            async move {
                let bloat = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("bloat-{i}")),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY_LABEL.to_string(),
                            MANAGED_BY_VALUE.to_string(),
                        )])),
                        annotations: Some(BTreeMap::from([(
                            format!("podcreds.dev/pad-{i}"),
                            padding,
                        )])),
                        ..ObjectMeta::default()
                    },
                    ..Secret::default()
                };
                secrets.create(&PostParams::default(), &bloat).await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for result in created {
        result?;
    }
    // The Secret watch delivers events in order: once the operator has reacted to the deletion
    // of the binding's own Secret (created after every bloated one), it has seen them all.
    let old_uid = secrets.get("b").await?.metadata.uid;
    secrets.delete("b", &Default::default()).await?;
    wait_for(Duration::from_secs(120), || async {
        let s = secrets.get_opt("b").await.ok()??;
        (s.metadata.uid != old_uid).then_some(())
    })
    .await
    .context("the operator never recreated its Secret after the bloated ones")?;
    let after = rss_mib(op.process.pid())?;
    println!(
        "    (RSS {before:.1} MiB before {SECRETS} bloated Secrets, {after:.1} MiB after; measured, not asserted)"
    );
    // Still serving: the binding is Ready with its new Secret.
    let result = env
        .wait_ready(&ns, "b", "True", Duration::from_secs(60))
        .await
        .map(drop);
    // Give the etcd space back to the rest of the run.
    for i in 0..SECRETS {
        let _ = secrets
            .delete(&format!("bloat-{i}"), &Default::default())
            .await;
    }
    result
}

/// A binding blocked by a Secret it does not own comes back as soon as that Secret is deleted,
/// not at its next periodic recheck (two minutes).
pub async fn a_conflict_clears_when_the_foreign_secret_goes(env: &Env) -> anyhow::Result<()> {
    let (ns, role, _op) = env.scenario("conflictgone", None).await?;
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("taken".into()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    env.secrets(&ns)
        .create(&PostParams::default(), &foreign)
        .await?;
    env.create_binding(
        &ns,
        "b",
        json!({"serviceAccountName": "app", "roleArn": role, "secretName": "taken"}),
    )
    .await?;
    env.wait_reason(&ns, "b", "SecretConflict", Duration::from_secs(60))
        .await?;
    env.secrets(&ns)
        .delete("taken", &Default::default())
        .await?;
    // Well inside the 120 s recheck: only the watch on the blocking name can explain it.
    env.wait_ready(&ns, "b", "True", Duration::from_secs(45))
        .await
        .context("the binding did not recover from the conflict before its periodic recheck")?;
    Ok(())
}

/// One namespace with many bindings waiting on a slow STS must not hold up another
/// namespace's bindings: the other's become Ready while most of the busy namespace's still wait.
/// A private control plane, because the operator must watch every namespace (one shared pool).
pub async fn a_busy_namespace_does_not_hold_up_another(env: &Env) -> anyhow::Result<()> {
    const BUSY: usize = 60;
    const QUIET: usize = 3;
    let _ = env;
    let private = crate::support::Env::start().await?;
    let result = async {
        let (busy, busy_role) = private.app_namespace("fair-busy", None).await?;
        let (quiet, quiet_role) = private.app_namespace("fair-quiet", None).await?;
        private.emulator.set_faults(sts_emulator::Faults {
            latency_ms: 1_000,
            ..sts_emulator::Faults::default()
        });
        let _op = private
            .start_operator(
                &[],
                &private.emulator.url(),
                &["--concurrency=4", "--namespace-concurrency=1"],
            )
            .await?;
        for i in 0..BUSY {
            private
                .create_binding(
                    &busy,
                    &format!("b{i}"),
                    json!({"serviceAccountName": "app", "roleArn": busy_role}),
                )
                .await?;
        }
        for i in 0..QUIET {
            private
                .create_binding(
                    &quiet,
                    &format!("q{i}"),
                    json!({"serviceAccountName": "app", "roleArn": quiet_role}),
                )
                .await?;
        }
        for i in 0..QUIET {
            private
                .wait_ready(&quiet, &format!("q{i}"), "True", Duration::from_secs(120))
                .await?;
        }
        let busy_ready = private.issued_for(&busy_role).len();
        ensure!(
            busy_ready < BUSY / 2,
            "the quiet namespace waited until {busy_ready} of {BUSY} busy bindings were served"
        );
        // And the busy namespace is served too, only not first.
        for i in 0..BUSY {
            private
                .wait_ready(&busy, &format!("b{i}"), "True", Duration::from_secs(180))
                .await?;
        }
        Ok(())
    }
    .await;
    private.emulator.shutdown();
    result
}

/// The operator itself enforces the namespace's role allowlist, whether or not an admission
/// policy did: a binding admitted before the annotation stops being refreshed as soon as the
/// annotation excludes its role, the credentials already in its Secret are removed (the Secret
/// stays), and it comes back when the role is allowed again.
pub async fn the_operator_enforces_the_role_allowlist_itself(env: &Env) -> anyhow::Result<()> {
    let (ns, role, op) = env.scenario("allowlist", Some(900)).await?;
    env.create_ready(&ns, "b", spec(&role), Duration::from_secs(60))
        .await?;
    let calls_before = env.calls_for(&role);
    let annotate = |value: &str| json!({"metadata": {"annotations": {podcreds::allowlist::ANNOTATION: value}}});
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(env.client.clone());
    namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(&annotate("arn:aws:iam::123456789012:role/other-*")),
        )
        .await?;
    // Eventually, within the wait limit (30 s, the bound the revocation must meet with the
    // default grace period of 0), the Secret holds no credential, and still exists.
    let emptied = wait_for(Duration::from_secs(30), || async {
        let secret = env.secrets(&ns).get("b").await.ok()?;
        let data = podcreds_testenv::decode_secret(&secret);
        podcreds::secret::CREDENTIAL_KEYS
            .iter()
            .all(|k| !data.contains_key(*k))
            .then_some(data)
    })
    .await
    .context("the credentials of a binding whose role left the allowlist were not removed")?;
    ensure!(
        emptied.contains_key("config"),
        "the Secret lost more than its credentials: {:?}",
        emptied.keys()
    );
    let blocked = env
        .wait_reason(&ns, "b", "RoleNotAllowed", Duration::from_secs(30))
        .await?;
    let message = podcreds::status::ready_condition(blocked.status.as_ref())
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains("is not allowed in namespace") && message.contains("removed"),
        "unclear condition: {message}"
    );
    let revoked = wait_for(Duration::from_secs(30), || async {
        let b = env.bindings(&ns).get("b").await.ok()?;
        b.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == podcreds::status::CONDITION_REVOKED && c.status == "True")
    })
    .await
    .context("no CredentialsRevoked condition")?;
    ensure!(revoked.reason == "RoleNotAllowed", "{revoked:?}");
    let event = wait_for(Duration::from_secs(30), || async {
        env.events(&ns).await.ok()?.into_iter().find(|e| {
            e.reason.as_deref() == Some("CredentialsRevoked")
                && e.type_.as_deref() == Some("Warning")
        })
    })
    .await
    .context("no CredentialsRevoked Warning Event")?;
    ensure!(
        event
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("Removed the credentials from Secret b"),
        "{event:?}"
    );
    ensure!(
        crate::support::counter(
            &op.metrics().await?,
            "podcreds_credential_revocations_total{reason=\"RoleNotAllowed\"}"
        ) >= 1.0,
        "the revocation was not counted"
    );
    ensure!(
        env.calls_for(&role) == calls_before,
        "STS was called for a role the namespace does not allow"
    );
    // Allowed again (a pattern that covers it): Ready with fresh credentials, without any change
    // to the binding.
    let pattern = format!("{}*", &role[..role.rfind('/').unwrap_or(0) + 1]);
    namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(&annotate(&pattern)),
        )
        .await?;
    env.wait_ready(&ns, "b", "True", Duration::from_secs(30))
        .await?;
    let data = env.secret_data(&ns, "b").await?;
    ensure!(
        data.contains_key("AWS_SECRET_ACCESS_KEY"),
        "no credentials after the role was allowed again"
    );
    Ok(())
}

/// With --require-role-allowlist a namespace without the annotation may bind no role.
pub async fn a_required_allowlist_denies_by_default(env: &Env) -> anyhow::Result<()> {
    let (ns, role) = env.app_namespace("denydefault", None).await?;
    let _op = env
        .start_operator(&[&ns], &env.emulator.url(), &["--require-role-allowlist"])
        .await?;
    env.create_binding(&ns, "b", spec(&role)).await?;
    let blocked = env
        .wait_reason(&ns, "b", "RoleNotAllowed", Duration::from_secs(30))
        .await?;
    let message = podcreds::status::ready_condition(blocked.status.as_ref())
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains("--require-role-allowlist"),
        "unclear condition: {message}"
    );
    ensure!(env.calls_for(&role) == 0, "STS was called");
    Ok(())
}

/// Deleting a namespace full of bindings is no news: the operator makes no refresh attempt for
/// bindings that are going away, and logs no warning and publishes no Event about them.
pub async fn a_deleted_namespace_leaves_the_operator_quiet(env: &Env) -> anyhow::Result<()> {
    const BINDINGS: usize = 20;
    let (ns, role, op) = env.scenario("quietdelete", None).await?;
    for i in 0..BINDINGS {
        env.create_binding(&ns, &format!("b{i}"), spec(&role))
            .await?;
    }
    for i in 0..BINDINGS {
        env.wait_ready(&ns, &format!("b{i}"), "True", Duration::from_secs(60))
            .await?;
    }
    let calls_before = env.calls_for(&role);
    let log_before = op.log().lines().count();
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(env.client.clone());
    namespaces.delete(&ns, &Default::default()).await?;
    wait_for(Duration::from_secs(120), || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await
    .context("the namespace was never deleted")?;
    // Let the last watch events reach the operator.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = op.log();
    let warnings: Vec<&str> = log
        .lines()
        .skip(log_before)
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    ensure!(
        warnings.is_empty(),
        "{} warnings while the namespace went away, for example {}",
        warnings.len(),
        warnings.first().copied().unwrap_or_default()
    );
    ensure!(
        env.calls_for(&role) == calls_before,
        "STS was called for bindings that were going away"
    );
    Ok(())
}

/// A tenant who may patch bindings' status and read Secrets, but not delete them, forges the
/// status of a binding to name a Secret of someone else (its UID read with her Secret access)
/// and one of another binding, as if the binding had left them behind under an earlier
/// `secretName`. The operator reads each before any delete, finds it not created by this
/// binding, and leaves it alone. With the chart's status guard installed, her status patch is
/// refused outright.
pub async fn a_forged_status_deletes_no_secret(env: &Env) -> anyhow::Result<()> {
    use crate::support::helm::{grant, rule, with_admission_policy};
    use kube::api::Api;
    let ns = {
        // No chart release may be installed meanwhile (the test runs alone, main.rs RUNS_ALONE):
        // its status guard would refuse the forgery this half needs to see.
        let (ns, role, op) = env.scenario("forgedstatus", None).await?;
        env.create_ready(&ns, "b", spec(&role), Duration::from_secs(60))
            .await?;
        env.create_ready(&ns, "other", spec(&role), Duration::from_secs(60))
            .await?;
        let victim = Secret {
            metadata: ObjectMeta {
                name: Some("victim".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "precious".to_string(),
                ByteString(b"do not delete".to_vec()),
            )])),
            ..Secret::default()
        };
        env.secrets(&ns)
            .create(&PostParams::default(), &victim)
            .await?;
        grant(
            env,
            &ns,
            "mallory",
            vec![
                rule(
                    &["podcreds.dev"],
                    &["awsrolebindings", "awsrolebindings/status"],
                    &["get", "list", "patch"],
                ),
                rule(&[""], &["secrets"], &["get", "list"]),
            ],
        )
        .await?;
        let kubeconfig = env.plane.user_kubeconfig("mallory", &[])?;
        let mallory = podcreds_testenv::client_from_kubeconfig(&kubeconfig).await?;
        let as_mallory: Api<podcreds::api::AWSRoleBinding> = Api::namespaced(mallory.clone(), &ns);
        let secrets_as_mallory: Api<Secret> = Api::namespaced(mallory, &ns);
        for target in ["victim", "other"] {
            let uid = secrets_as_mallory
                .get(target)
                .await?
                .metadata
                .uid
                .context("Secret without a UID")?;
            let forged = json!({"status": {"secretName": target, "secretUID": uid}});
            // A release uninstalled a moment ago may still be enforced briefly.
            wait_for(Duration::from_secs(20), || async {
                as_mallory
                    .patch_status("b", &PatchParams::default(), &Patch::Merge(&forged))
                    .await
                    .ok()
            })
            .await
            .context("mallory's status patch was never admitted")?;
            // The operator looked at the Secret the status named, and said why it kept it.
            let kept = format!(r#""secret":"{target}""#);
            wait_for(Duration::from_secs(30), || async {
                op.log()
                    .lines()
                    .any(|l| l.contains("did not create") && l.contains(&kept))
                    .then_some(())
            })
            .await
            .with_context(|| {
                format!("the operator never judged the forged status naming {target}")
            })?;
            ensure!(
                env.secrets(&ns).get_opt(target).await?.is_some(),
                "a forged status made podcreds delete Secret {target}"
            );
        }
        // The operator wrote its own record back.
        wait_for(Duration::from_secs(30), || async {
            let b = env.bindings(&ns).get("b").await.ok()?;
            (b.status?.secret_name.as_deref() == Some("b")).then_some(())
        })
        .await
        .context("the operator never restored the binding's status")?;
        ensure!(env.secrets(&ns).get_opt("b").await?.is_some());
        ns
    };

    // With the chart's status guard, the forgery itself is refused.
    with_admission_policy(env, "vapstatus", |env| async move {
        let kubeconfig = env.plane.user_kubeconfig("mallory", &[])?;
        let mallory = podcreds_testenv::client_from_kubeconfig(&kubeconfig).await?;
        let as_mallory: Api<podcreds::api::AWSRoleBinding> = Api::namespaced(mallory, &ns);
        let forged = json!({"status": {"secretName": "victim"}});
        let refusal = wait_for(Duration::from_secs(20), || async {
            match as_mallory
                .patch_status("b", &PatchParams::default(), &Patch::Merge(&forged))
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 => Some(s.message),
                _ => None,
            }
        })
        .await
        .context("the status guard never refused mallory's status patch")?;
        ensure!(
            refusal.contains("only the podcreds operator") && refusal.contains("mallory"),
            "unclear refusal: {refusal}"
        );
        Ok(())
    })
    .await
}

/// The refreshes an operator made, from its metrics.
async fn refreshes(op: &crate::support::Operator) -> anyhow::Result<f64> {
    Ok(crate::support::counter(
        &op.metrics().await?,
        "podcreds_credential_refreshes_total",
    ))
}

/// Two installations in one cluster, watching the same namespace with different default
/// regions, serve disjoint sets of bindings: an unlabelled binding is the default
/// installation's alone (one STS call per refresh, its region in the Secret, one status change
/// per refresh), the other never even caches it; labelled for the other installation, it moves
/// there and the first lets go. Two operators of the same installation (a second release by
/// mistake) are noticed and reported.
pub async fn two_installations_serve_disjoint_bindings(env: &Env) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // 12 s grants: a renewal every 8 s or so, so a few refreshes make the observation window.
    let (ns, role) = env.app_namespace("installs", Some(12)).await?;
    let default_op = env
        .start_operator(&[&ns], &env.emulator.url(), &["--default-region=eu-west-1"])
        .await?;
    let blue_op = env
        .start_operator(
            &[&ns],
            &env.emulator.url(),
            &["--installation=blue", "--default-region=us-west-2"],
        )
        .await?;
    // Every change of the binding, from its creation on.
    let changes = Arc::new(AtomicUsize::new(0));
    let watch = {
        let changes = changes.clone();
        let api = env.bindings(&ns);
        tokio::spawn(async move {
            let config = kube::runtime::watcher::Config::default().fields("metadata.name=b");
            let events = kube::runtime::watcher(api, config);
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                if let Ok(kube::runtime::watcher::Event::Apply(_)) = event {
                    changes.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let result = async {
        env.create_ready(&ns, "b", spec(&role), Duration::from_secs(60))
            .await?;
        // The window: until the default installation has refreshed four times.
        wait_for(Duration::from_secs(120), || async {
            (refreshes(&default_op).await.ok()? >= 4.0).then_some(())
        })
        .await
        .context("the default installation did not keep refreshing the binding")?;
        let before = refreshes(&default_op).await?;
        let calls = env.issued_for(&role).len() as f64;
        let after = refreshes(&default_op).await?;
        let seen = changes.load(Ordering::SeqCst) as f64;
        // Exactly one STS call per refresh (one more may be in flight while we count).
        ensure!(
            calls >= before && calls <= after + 1.0,
            "{calls} STS calls for {before}..{after} refreshes: someone else is exchanging"
        );
        // The creation, then one status change per refresh: no flapping.
        ensure!(
            seen <= after + 2.0,
            "the binding changed {seen} times over {after} refreshes"
        );
        let blue = blue_op.metrics().await?;
        ensure!(
            crate::support::counter(&blue, "podcreds_credential_refreshes_total") == 0.0
                && crate::support::counter(&blue, "podcreds_reconciliations_total") == 0.0
                && crate::support::counter(&blue, "podcreds_bindings{") == 0.0,
            "the blue installation touched a binding of the default installation"
        );
        ensure!(env.secret_data(&ns, "b").await?["AWS_REGION"] == "eu-west-1");

        // Labelled for blue: blue takes it (its region), the default installation lets go.
        let label = json!({"metadata": {"labels": {podcreds::installation::LABEL: "blue"}}});
        env.bindings(&ns)
            .patch("b", &PatchParams::default(), &Patch::Merge(&label))
            .await?;
        wait_for(Duration::from_secs(60), || async {
            let data = env.secret_data(&ns, "b").await.ok()?;
            (data.get("AWS_REGION")? == "us-west-2").then_some(())
        })
        .await
        .context("the blue installation never took over the relabelled binding")?;
        let default_done = refreshes(&default_op).await?;
        let blue_start = refreshes(&blue_op).await?;
        wait_for(Duration::from_secs(120), || async {
            (refreshes(&blue_op).await.ok()? >= blue_start + 2.0).then_some(())
        })
        .await
        .context("the blue installation did not keep refreshing the binding")?;
        ensure!(
            refreshes(&default_op).await? == default_done,
            "the default installation kept refreshing a binding it no longer serves"
        );
        ensure!(env.secret_data(&ns, "b").await?["AWS_REGION"] == "us-west-2");

        // A second operator of the blue installation (another release by mistake) writes the
        // same Secret: noticed and reported.
        let second = env
            .start_operator(
                &[&ns],
                &env.emulator.url(),
                &["--installation=blue", "--default-region=eu-central-1"],
            )
            .await?;
        wait_for(Duration::from_secs(60), || async {
            let a = crate::support::counter(
                &blue_op.metrics().await.ok()?,
                "podcreds_installation_overlaps_total",
            );
            let b = crate::support::counter(
                &second.metrics().await.ok()?,
                "podcreds_installation_overlaps_total",
            );
            (a + b >= 1.0).then_some(())
        })
        .await
        .context("two operators of one installation writing one Secret went unnoticed")?;
        wait_for(Duration::from_secs(30), || async {
            env.events(&ns).await.ok()?.into_iter().find(|e| {
                e.reason.as_deref() == Some("InstallationOverlap")
                    && e.type_.as_deref() == Some("Warning")
            })
        })
        .await
        .context("no InstallationOverlap Warning Event")?;
        ensure!(
            blue_op
                .log()
                .contains("two installations serve the same bindings")
                || second
                    .log()
                    .contains("two installations serve the same bindings"),
            "no log line about the overlap"
        );
        anyhow::Ok(())
    }
    .await;
    watch.abort();
    result
}

fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM")?;
    Ok(kib / 1024.0)
}

/// Every replica caches every binding, and a binding can be made about 200 KB within the CRD's
/// limits. The operator caches a binding's spec only up to `MAX_SPEC_BYTES` (64 KiB) and refuses
/// a larger one (`InvalidSpec`, its size named) with a stub in its cache; one just under the
/// bound is served as any other. The peak RSS of 1,500 maximal bindings against the chart's
/// memory limit is measured by `cargo xtask bench --maximal-bindings` (docs/performance.md).
pub async fn oversized_bindings_are_refused_and_maximal_ones_served(
    env: &Env,
) -> anyhow::Result<()> {
    const CACHED: usize = 40;
    const OVERSIZED: usize = 5;
    let (ns, role, op) = env.scenario("maxbindings", None).await?;
    // No role is allowed here: every binding is reconciled, and none costs an STS call.
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(env.client.clone());
    let deny = json!({"metadata": {"annotations": {podcreds::allowlist::ANNOTATION: "arn:aws:iam::123456789012:role/none"}}});
    namespaces
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&deny))
        .await?;
    let cached = podcreds_testenv::fixtures::large_binding_spec(&role, 11);
    let cached_bytes = serde_json::to_vec(&cached)?.len();
    ensure!(
        cached_bytes < podcreds::controller::watches::MAX_SPEC_BYTES
            && cached_bytes > podcreds::controller::watches::MAX_SPEC_BYTES * 9 / 10,
        "the test's largest cached binding is {cached_bytes} bytes"
    );
    let oversized = podcreds_testenv::fixtures::large_binding_spec(&role, 50);
    let before = peak_rss_mib(op.process.pid())?;
    let specs: Vec<(String, serde_json::Value)> = (0..CACHED)
        .map(|i| (format!("m{i}"), cached.clone()))
        .chain((0..OVERSIZED).map(|i| (format!("x{i}"), oversized.clone())))
        .collect();
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(specs)
        .map(|(name, spec)| {
            let ns = ns.clone();
            async move {
                env.create_binding(&ns, &name, spec).await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for result in created {
        result?;
    }
    // Every binding reconciled: first as many refusals as bindings in the operator's metrics
    // (cheap to poll), then the status of each says why it is refused.
    let total = (CACHED + OVERSIZED) as f64;
    wait_for(Duration::from_secs(300), || async {
        let metrics = op.metrics().await.ok()?;
        (crate::support::counter(
            &metrics,
            "podcreds_reconciliations_total{result=\"invalid\"}",
        ) >= total)
            .then_some(())
    })
    .await
    .context("the operator never reconciled every binding")?;
    let api = env.bindings(&ns);
    let all_reported = wait_for(Duration::from_secs(120), || async {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut sample = None;
        let mut params = kube::api::ListParams::default().limit(250);
        loop {
            let page = api.list(&params).await.ok()?;
            for b in &page.items {
                let ready = podcreds::status::ready_condition(b.status.as_ref())?;
                *reasons.entry(ready.reason.clone()).or_default() += 1;
                if b.metadata.name.as_deref() == Some("x0") {
                    sample = Some(ready.message.clone());
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        // The cached ones are resolved whole and refused for what they ask (their SAML provider
        // or role, no STS call), the oversized ones for their size.
        let reported: usize = reasons.values().sum();
        (reported == CACHED + OVERSIZED && reasons.get("InvalidSpec") == Some(&OVERSIZED))
            .then_some(sample)
    })
    .await
    .context("not every binding was reconciled")?;
    let message = all_reported.unwrap_or_default();
    ensure!(
        message.contains("bytes")
            && message.contains(&podcreds::controller::watches::MAX_SPEC_BYTES.to_string()),
        "an oversized binding is not refused for its size: {message}"
    );
    let peak = peak_rss_mib(op.process.pid())?;
    println!(
        "    (maximal bindings: {CACHED} of {cached_bytes} bytes and {OVERSIZED} of {} bytes; peak RSS {before:.1} MiB before, {peak:.1} MiB after; measured, not asserted)",
        serde_json::to_vec(&oversized)?.len()
    );
    // Give the etcd space back to the rest of the run.
    let _ = api
        .delete_collection(&Default::default(), &Default::default())
        .await;
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![tenant:
    forged_expiration_annotations_are_repaired,
    a_rename_deletes_only_the_secret_podcreds_created,
    a_forged_status_deletes_no_secret,
    two_installations_serve_disjoint_bindings,
    labelled_secrets_built_to_bloat_the_cache_cost_nothing,
    oversized_bindings_are_refused_and_maximal_ones_served,
    a_conflict_clears_when_the_foreign_secret_goes,
    a_busy_namespace_does_not_hold_up_another,
    the_operator_enforces_the_role_allowlist_itself,
    a_required_allowlist_denies_by_default,
    a_deleted_namespace_leaves_the_operator_quiet,
];

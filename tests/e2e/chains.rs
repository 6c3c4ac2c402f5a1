//! Role chains: the web identity exchange followed by `AssumeRole` hops, each signed with the
//! credentials of the one before, against the emulator (which verifies every signature and
//! enforces what STS does for chains: the one hour cap, tag rules, transitive tags, source
//! identity, external IDs, the trust policy's `sts:TagSession` / `sts:SetSourceIdentity`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use podcreds::api::AWSRoleBinding;
use podcreds_testenv::decode_secret;
use podcreds_testenv::tools::clean_aws_env;
use serde_json::json;
use sts_emulator::{CallRecord, Emulator, Faults, Role};

use crate::support::{ACCOUNT, Env, aws_caller_identity, kubelet_layout, ready_message, wait_for};

include!("../data/role_chain_cases.rs");

const READY: Duration = Duration::from_secs(60);

/// The roles of one chain registered on an emulator: an entry role trusting the namespace's
/// ServiceAccount `app` (web identity), then hops each trusting the role before it.
struct Chain {
    entry: String,
    hops: Vec<String>,
}

impl Chain {
    fn all(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.entry).chain(&self.hops)
    }
}

/// Registers `<ns>-<prefix>-entry` and `<ns>-<prefix>-hop<i>` on `sts`; `hop` adjusts each hop's
/// role (by default it allows tags and a source identity, with sessions of normal length).
fn chain_roles(
    sts: &Emulator,
    ns: &str,
    prefix: &str,
    hops: usize,
    hop: impl Fn(usize, &mut Role),
) -> Chain {
    let arn = |name: String| format!("arn:aws:iam::{ACCOUNT}:role/{ns}-{prefix}-{name}");
    let entry = arn("entry".into());
    sts.add_role(Role {
        arn: entry.clone(),
        subjects: vec![format!("system:serviceaccount:{ns}:app")],
        ..Role::default()
    });
    let mut previous = entry.clone();
    let mut arns = Vec::new();
    for i in 0..hops {
        let mut role = Role {
            arn: arn(format!("hop{i}")),
            trusted_roles: vec![previous.clone()],
            allow_tag_session: true,
            allow_set_source_identity: true,
            ..Role::default()
        };
        hop(i, &mut role);
        previous = role.arn.clone();
        arns.push(role.arn.clone());
        sts.add_role(role);
    }
    Chain { entry, hops: arns }
}

/// A binding of ServiceAccount `app` through `chain`, each hop's fields from `hops`, plus `extra`.
fn chain_spec(
    chain: &Chain,
    hops: &[serde_json::Value],
    extra: serde_json::Value,
) -> serde_json::Value {
    let role_chain: Vec<serde_json::Value> = chain
        .hops
        .iter()
        .zip(hops)
        .map(|(arn, fields)| {
            let mut hop = json!({"roleArn": arn});
            if let (Some(hop), Some(fields)) = (hop.as_object_mut(), fields.as_object()) {
                hop.extend(fields.clone());
            }
            hop
        })
        .collect();
    let mut spec =
        json!({"serviceAccountName": "app", "roleArn": chain.entry, "roleChain": role_chain});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

/// The calls `sts` saw for `role_arn` of `action` that succeeded, oldest first.
fn ok_calls(sts: &Emulator, action: &str, role_arn: &str) -> Vec<CallRecord> {
    sts.calls()
        .calls
        .into_iter()
        .filter(|c| {
            c.action == action && c.role_arn.as_deref() == Some(role_arn) && c.result == "Ok"
        })
        .collect()
}

fn calls_for_chain(sts: &Emulator, chain: &Chain) -> usize {
    let calls = sts.calls().calls;
    chain
        .all()
        .map(|arn| {
            calls
                .iter()
                .filter(|c| c.role_arn.as_deref() == Some(arn.as_str()))
                .count()
        })
        .sum()
}

fn condition(b: &AWSRoleBinding, type_: &str) -> Option<(String, String, String)> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn tags_of(tags: &[sts_emulator::SessionTag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}

const BOTO3_CALLER: &str = r#"
import json, sys, boto3
print(json.dumps(boto3.client("sts", endpoint_url=sys.argv[1]).get_caller_identity()))
"#;

/// `GetCallerIdentity` through boto3 with nothing but the Secret's shared credentials file.
async fn boto3_caller(
    endpoint: &str,
    credentials: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    let python = podcreds_testenv::tools::venv_program("python")?;
    let mut cmd = tokio::process::Command::new(python);
    clean_aws_env(cmd.as_std_mut());
    cmd.args(["-c", BOTO3_CALLER, endpoint])
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_DEFAULT_REGION", "us-east-1");
    let out = cmd.output().await?;
    ensure!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Session policies of the hops of `a_two_hop_chain_serves_aws_clients_as_the_last_role`.
const HOP_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#;
const HOP_POLICY_ARN: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

pub async fn a_two_hop_chain_serves_aws_clients_as_the_last_role(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("chain").await?;
    env.service_account(&ns, "app").await?;
    let sts = &env.emulator;
    // The last role grants 20 s, so the test sees the chain renewed.
    let chain = chain_roles(sts, &ns, "c", 2, |i, role| {
        if i == 1 {
            role.lifetime_seconds = Some(20);
        }
    });
    let op = env.start_operator(&[&ns], &sts.url(), &[]).await?;
    let mount = tempfile::Builder::new()
        .prefix("podcreds-chain-")
        .tempdir()?;
    let mount_path = mount.path().to_string_lossy().into_owned();
    let b = env
        .create_ready(
            &ns,
            "app",
            chain_spec(
                &chain,
                &[
                    json!({"sessionPolicy": HOP_POLICY}),
                    json!({"sessionName": format!("{ns}.last"), "policyArns": [HOP_POLICY_ARN]}),
                ],
                json!({"durationSeconds": 900, "mountPath": mount_path}),
            ),
            READY,
        )
        .await?;
    let last_name = chain.hops[1].rsplit('/').next().unwrap_or_default();
    let expected_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{last_name}/{ns}.last");
    let status = b.status.clone().context("status")?;
    ensure!(
        status.assumed_role_arn.as_deref() == Some(expected_arn.as_str()),
        "{status:?}"
    );
    ensure!(
        status.chain.len() == 2,
        "one status entry per hop: {status:?}"
    );
    ensure!(
        status.chain[0].assumed_role_arn.as_deref()
            == Some(format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ns}-c-hop0/{ns}.app").as_str()),
        "{status:?}"
    );
    ensure!(
        status
            .chain
            .iter()
            .all(|h| h.expiration.is_some() && h.packed_policy_size_percent.is_some())
    );
    for type_ in ["SessionDurationClamped", "PackedPolicyNearLimit"] {
        let c = condition(&b, type_).with_context(|| format!("no {type_}"))?;
        ensure!(c.0 == "False", "{type_}: {c:?}");
    }

    // Each hop was signed with the credentials the step before issued, and the Secret holds the
    // last hop's.
    let data = env.secret_data(&ns, "app").await?;
    let first = ok_calls(sts, "AssumeRoleWithWebIdentity", &chain.entry);
    let hop0 = ok_calls(sts, "AssumeRole", &chain.hops[0]);
    let hop1 = ok_calls(sts, "AssumeRole", &chain.hops[1]);
    let (Some(first), Some(hop0), Some(hop1)) = (first.first(), hop0.first(), hop1.first()) else {
        bail!("the chain's calls are missing: {:?}", sts.calls().calls);
    };
    ensure!(
        first.duration_seconds == Some(900),
        "the first exchange asked {:?}",
        first.duration_seconds
    );
    ensure!(
        hop0.access_key_id == first.access_key_id,
        "hop 0 was not signed with the first exchange's key"
    );
    ensure!(
        hop0.subject
            .as_deref()
            .is_some_and(|s| s.contains(&format!("{ns}-c-entry")))
    );
    ensure!(
        hop1.access_key_id == hop0.issued_access_key_id,
        "hop 1 was not signed with hop 0's key"
    );
    ensure!(
        hop1.issued_access_key_id.as_deref() == data.get("AWS_ACCESS_KEY_ID").map(String::as_str)
    );
    // Each hop's session policies reach its own call, and no other.
    ensure!(
        first.policy.is_none() && first.policy_arns.is_empty(),
        "the first exchange carried a hop's policy: {first:?}"
    );
    ensure!(
        hop0.policy.as_deref() == Some(HOP_POLICY) && hop0.policy_arns.is_empty(),
        "hop 0: {hop0:?}"
    );
    ensure!(
        hop1.policy.is_none() && hop1.policy_arns == [HOP_POLICY_ARN],
        "hop 1: {hop1:?}"
    );

    // Real clients, with nothing but the Secret's files: the AWS CLI through the generated
    // config (credential_process), boto3 through the shared credentials file.
    kubelet_layout(mount.path(), &data, 1)?;
    let ident = aws_caller_identity(
        &sts.url(),
        &[("AWS_CONFIG_FILE", &mount.path().join("config"))],
    )
    .await?;
    ensure!(ident["Arn"] == expected_arn.as_str(), "AWS CLI saw {ident}");
    let ident = boto3_caller(&sts.url(), &mount.path().join("credentials")).await?;
    ensure!(ident["Arn"] == expected_arn.as_str(), "boto3 saw {ident}");

    // The 20 s session is renewed by a whole new chain, and the new credentials work too.
    let old_key = data.get("AWS_ACCESS_KEY_ID").cloned().unwrap_or_default();
    let renewed = wait_for(Duration::from_secs(40), || async {
        let d = env.secret_data(&ns, "app").await.ok()?;
        (d.get("AWS_ACCESS_KEY_ID") != Some(&old_key)).then_some(d)
    })
    .await
    .context("the chain was never renewed")?;
    kubelet_layout(mount.path(), &renewed, 2)?;
    let ident = aws_caller_identity(
        &sts.url(),
        &[("AWS_CONFIG_FILE", &mount.path().join("config"))],
    )
    .await?;
    ensure!(
        ident["Arn"] == expected_arn.as_str(),
        "AWS CLI saw {ident} after the renewal"
    );
    let issues = ok_calls(sts, "AssumeRoleWithWebIdentity", &chain.entry).len();
    ensure!(issues >= 2, "{issues} chains issued");
    ensure!(
        chain
            .hops
            .iter()
            .all(|h| ok_calls(sts, "AssumeRole", h).len() >= issues - 1),
        "every renewal runs the whole chain"
    );
    let metrics = op.metrics().await?;
    ensure!(
        metrics.contains(
            "podcreds_sts_request_duration_seconds_count{flow=\"RoleChain\",outcome=\"success\"}"
        ),
        "no RoleChain STS metric:\n{metrics}"
    );
    Ok(())
}

pub async fn kubernetes_session_tags_reach_sts_and_cannot_be_overridden(
    env: &Env,
) -> anyhow::Result<()> {
    let ns = env.namespace("chaintags").await?;
    env.service_account(&ns, "app").await?;
    let sts = &env.emulator;
    let chain = chain_roles(sts, &ns, "t", 2, |_, _| {});
    let _op = env
        .start_operator(&[&ns], &sts.url(), &["--cluster-name=e2e-cluster"])
        .await?;
    env.create_ready(
        &ns,
        "tagged",
        chain_spec(
            &chain,
            &[
                json!({"tags": [{"key": "team", "value": "payments"}], "transitiveTagKeys": ["team"], "sourceIdentity": format!("{ns}.ci-bot"), "externalId": "ext-1"}),
                json!({"tags": [{"key": "stage", "value": "prod"}]}),
            ],
            json!({"kubernetesSessionTags": true}),
        ),
        READY,
    )
    .await?;
    let kubernetes = BTreeMap::from([
        ("kubernetes-namespace".to_string(), ns.clone()),
        ("kubernetes-service-account".to_string(), "app".to_string()),
        ("kubernetes-binding-name".to_string(), "tagged".to_string()),
        (
            "kubernetes-cluster-name".to_string(),
            "e2e-cluster".to_string(),
        ),
    ]);
    let hop0 = ok_calls(sts, "AssumeRole", &chain.hops[0]);
    let hop0 = hop0.first().context("no call for hop 0")?;
    let mut expected = kubernetes.clone();
    expected.insert("team".into(), "payments".into());
    ensure!(
        tags_of(&hop0.tags) == expected,
        "hop 0 sent {:?}",
        hop0.tags
    );
    for key in kubernetes.keys().chain(["team".to_string()].iter()) {
        ensure!(
            hop0.transitive_tag_keys.contains(key),
            "{key} is not transitive: {:?}",
            hop0.transitive_tag_keys
        );
    }
    let identity = format!("{ns}.ci-bot");
    ensure!(hop0.source_identity.as_deref() == Some(identity.as_str()));
    ensure!(hop0.external_id.as_deref() == Some("ext-1"));
    // The next session inherits them all (and the source identity), and adds its own tag.
    let hop1 = ok_calls(sts, "AssumeRole", &chain.hops[1]);
    let hop1 = hop1.first().context("no call for hop 1")?;
    ensure!(
        tags_of(&hop1.inherited_tags) == expected,
        "hop 1 inherited {:?}",
        hop1.inherited_tags
    );
    ensure!(tags_of(&hop1.tags) == BTreeMap::from([("stage".to_string(), "prod".to_string())]));
    ensure!(
        hop1.source_identity.as_deref() == Some(identity.as_str()),
        "the source identity did not persist"
    );

    // A tenant can neither set the Kubernetes tags nor override an inherited transitive tag.
    for (name, hops, refusal) in [
        (
            "forge-namespace",
            vec![
                json!({"tags": [{"key": "kubernetes-namespace", "value": "kube-system"}]}),
                json!({}),
            ],
            "not starting with aws: or kubernetes-",
        ),
        (
            "forge-later",
            vec![
                json!({}),
                json!({"tags": [{"key": "KUBERNETES-SERVICE-ACCOUNT", "value": "admin"}]}),
            ],
            "not starting with aws: or kubernetes-",
        ),
        (
            "override-team",
            vec![
                json!({"tags": [{"key": "team", "value": "payments"}], "transitiveTagKeys": ["team"]}),
                json!({"tags": [{"key": "Team", "value": "admins"}]}),
            ],
            "an earlier hop made transitive",
        ),
    ] {
        let spec = chain_spec(&chain, &hops, json!({"kubernetesSessionTags": true}));
        match env.create_binding(&ns, name, spec).await {
            Ok(_) => bail!("{name} was admitted"),
            Err(kube::Error::Api(status)) => ensure!(
                status.message.contains(refusal),
                "{name}: the refusal does not say why: {}",
                status.message
            ),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub async fn chained_sessions_are_clamped_to_an_hour_and_report_their_packed_size(
    env: &Env,
) -> anyhow::Result<()> {
    let ns = env.namespace("chainclamp").await?;
    env.service_account(&ns, "app").await?;
    let sts = &env.emulator;
    let chain = chain_roles(sts, &ns, "k", 1, |_, _| {});
    let _op = env.start_operator(&[&ns], &sts.url(), &[]).await?;

    // Two hours asked: the chain gets one, and the status says so instead of failing.
    let b = env
        .create_ready(
            &ns,
            "long",
            chain_spec(&chain, &[json!({})], json!({"durationSeconds": 7200})),
            READY,
        )
        .await?;
    let (status, reason, message) =
        condition(&b, "SessionDurationClamped").context("no clamp condition")?;
    ensure!(
        status == "True" && reason == "RoleChainingLimit",
        "{status} {reason}"
    );
    ensure!(message.contains("7200"), "{message}");
    let hop = ok_calls(sts, "AssumeRole", &chain.hops[0]);
    ensure!(
        hop.first().and_then(|c| c.duration_seconds) == Some(3600),
        "the hop asked {:?}",
        hop.first().map(|c| c.duration_seconds)
    );
    let st = b.status.clone().context("status")?;
    let (expiration, renewal) = (
        st.expiration.context("expiration")?.0,
        st.renewal_time.context("renewalTime")?.0,
    );
    ensure!(
        expiration.duration_since(jiff::Timestamp::now()) <= jiff::SignedDuration::from_secs(3600),
        "a chained session outlives an hour: {expiration}"
    );
    ensure!(
        renewal <= expiration - jiff::SignedDuration::from_mins(15),
        "renewal at {renewal} is less than 15 minutes before {expiration}"
    );

    // Tags that fill more than 90% of the packed size: Ready, with a warning and the percentage.
    let tags = |n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| json!({"key": format!("k{i:02}"), "value": "v".repeat(248)}))
            .collect()
    };
    let b = env
        .create_ready(
            &ns,
            "packed",
            chain_spec(&chain, &[json!({"tags": tags(15)})], json!({})),
            READY,
        )
        .await?;
    let percent = b
        .status
        .as_ref()
        .and_then(|s| s.chain.first())
        .and_then(|h| h.packed_policy_size_percent)
        .context("no packed size")?;
    ensure!(percent > 90 && percent <= 100, "{percent}%");
    let (status, _, message) =
        condition(&b, "PackedPolicyNearLimit").context("no packed condition")?;
    ensure!(status == "True", "{message}");
    ensure!(
        message.contains(&format!("roleChain[0] uses {percent}%")),
        "{message}"
    );

    // More than fits: STS refuses, the binding says which hop and why.
    env.create_binding(
        &ns,
        "toolarge",
        chain_spec(&chain, &[json!({"tags": tags(17)})], json!({})),
    )
    .await?;
    let b = env
        .wait_reason(&ns, "toolarge", "StsInvalidRequest", READY)
        .await?;
    let message = ready_message(&b);
    ensure!(
        message.contains("roleChain[0]") && message.contains("PackedPolicyTooLarge"),
        "{message}"
    );
    ensure!(env.secrets(&ns).get_opt("toolarge").await?.is_none());
    Ok(())
}

pub async fn hostile_role_chains_are_refused_at_admission(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("chainhostile").await?;
    // The documented example is admitted as it stands (in its own namespace's name).
    let example: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../examples/role-chain.yaml"))?;
    let example_spec = serde_json::to_value(&example["spec"])?;
    env.create_binding(&ns, "example", example_spec)
        .await
        .context("examples/role-chain.yaml was refused")?;
    let cases = chain_cases();
    ensure!(cases.len() >= 25, "the shared table lost its cases");
    let mut wrong = Vec::new();
    for case in cases {
        let mut spec = chain_case_base();
        if let (Some(spec), Some(fields)) = (spec.as_object_mut(), case.fields.as_object()) {
            spec.extend(fields.clone());
        }
        match env.create_binding(&ns, case.name, spec).await {
            Ok(_) => wrong.push(format!("{}: admitted", case.name)),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                if !status.message.contains(case.apiserver) {
                    wrong.push(format!(
                        "{}: {:?} lacks {:?}",
                        case.name, status.message, case.apiserver
                    ));
                }
            }
            Err(e) => wrong.push(format!("{}: {e}", case.name)),
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

pub async fn a_restarted_operator_makes_no_sts_call_for_a_fresh_chain(
    env: &Env,
) -> anyhow::Result<()> {
    let ns = env.namespace("chainrestart").await?;
    env.service_account(&ns, "app").await?;
    let sts = &env.emulator;
    let chain = chain_roles(sts, &ns, "r", 2, |_, _| {});
    let mut op = env
        .start_operator(&[&ns], &sts.url(), &["--cluster-name=e2e-cluster"])
        .await?;
    for name in ["a", "b"] {
        env.create_ready(
            &ns,
            name,
            chain_spec(
                &chain,
                &[
                    json!({"tags": [{"key": "team", "value": "x"}], "transitiveTagKeys": ["team"]}),
                    json!({}),
                ],
                json!({"kubernetesSessionTags": true, "durationSeconds": 7200}),
            ),
            READY,
        )
        .await?;
    }
    // Let status writes settle, then remember every version.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions = || async {
        let mut v = BTreeMap::new();
        for name in ["a", "b"] {
            let s = env.secrets(&ns).get(name).await?;
            let b = env.bindings(&ns).get(name).await?;
            v.insert(
                name,
                (
                    s.metadata.resource_version,
                    b.metadata.resource_version,
                    b.status,
                ),
            );
        }
        Ok::<_, anyhow::Error>(v)
    };
    let before = versions().await?;
    let calls_before = calls_for_chain(sts, &chain);

    op.restart().await?;
    crate::support::wait_until_reconciled_fresh(&op, 2).await?;

    ensure!(
        calls_for_chain(sts, &chain) == calls_before,
        "the restarted operator called STS"
    );
    let after = versions().await?;
    ensure!(
        before == after,
        "the restarted operator wrote a Secret or a status:\n{before:?}\n{after:?}"
    );
    for name in ["a", "b"] {
        let b = env
            .wait_ready(&ns, name, "True", Duration::from_secs(5))
            .await?;
        ensure!(
            b.status.is_some_and(|s| s.chain.len() == 2),
            "{name} lost its chain status"
        );
    }
    Ok(())
}

pub async fn refused_hops_say_what_the_trust_policy_lacks(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("chaindeny").await?;
    env.service_account(&ns, "app").await?;
    let sts = &env.emulator;
    let no_tags = chain_roles(sts, &ns, "notag", 1, |_, r| r.allow_tag_session = false);
    let no_identity = chain_roles(sts, &ns, "noid", 1, |_, r| {
        r.allow_set_source_identity = false
    });
    let external = chain_roles(sts, &ns, "ext", 1, |_, r| {
        r.external_id = Some("expected-id".into())
    });
    // A namespace whose allowlist names the entry role but not the hop.
    let fenced = env.namespace("chainfence").await?;
    env.service_account(&fenced, "app").await?;
    let hidden = chain_roles(sts, &fenced, "f", 1, |_, _| {});
    let namespaces: kube::Api<Namespace> = kube::Api::all(env.client.clone());
    namespaces
        .patch(
            &fenced,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {podcreds::allowlist::ANNOTATION: hidden.entry}}})),
        )
        .await?;
    let _op = env.start_operator(&[&ns, &fenced], &sts.url(), &[]).await?;

    for (name, chain, hop, names) in [
        (
            "tags",
            &no_tags,
            json!({"tags": [{"key": "team", "value": "a"}]}),
            "sts:TagSession",
        ),
        (
            "identity",
            &no_identity,
            json!({"sourceIdentity": format!("{ns}.alice")}),
            "sts:SetSourceIdentity",
        ),
        (
            "external",
            &external,
            json!({"externalId": "other-id"}),
            "externalId must match",
        ),
    ] {
        env.create_binding(&ns, name, chain_spec(chain, &[hop], json!({})))
            .await?;
        let b = env.wait_reason(&ns, name, "StsAccessDenied", READY).await?;
        let message = ready_message(&b);
        ensure!(
            message.contains("roleChain[0]")
                && message.contains(&chain.hops[0])
                && message.contains(names),
            "{name}: the condition does not name {names}: {message}"
        );
        ensure!(
            env.secrets(&ns).get_opt(name).await?.is_none(),
            "{name}: a Secret was written"
        );
    }

    // The allowlist covers every hop: refused before any STS call.
    env.create_binding(&fenced, "b", chain_spec(&hidden, &[json!({})], json!({})))
        .await?;
    let b = env
        .wait_reason(&fenced, "b", "RoleNotAllowed", READY)
        .await?;
    ensure!(
        ready_message(&b).contains(&hidden.hops[0]),
        "{}",
        ready_message(&b)
    );
    ensure!(
        calls_for_chain(sts, &hidden) == 0,
        "STS was called for a role the namespace does not allow"
    );
    Ok(())
}

pub async fn a_hop_outage_keeps_valid_credentials_and_a_conflict_costs_one_chain(
    env: &Env,
) -> anyhow::Result<()> {
    let ns = env.namespace("chainfault").await?;
    env.service_account(&ns, "app").await?;
    let sts = Emulator::start(sts_emulator::Config::for_issuer(
        &env.plane.api_url,
        &env.plane.ca_pem,
    ))
    .await?;
    let chain = chain_roles(&sts, &ns, "o", 1, |_, r| r.lifetime_seconds = Some(30));
    let op = env.start_operator(&[&ns], &sts.url(), &[]).await?;
    let steps = async {
        env.create_ready(&ns, "b", chain_spec(&chain, &[json!({})], json!({})), READY)
            .await?;
        let before = env.secrets(&ns).get("b").await?;
        let expiration: jiff::Timestamp = decode_secret(&before)["expiration"].parse()?;
        // The hops fail (the first exchange still works) across the renewal time, about 20 s in.
        sts.set_faults(Faults {
            down_for_ms: 24_000,
            only_action: Some("AssumeRole".into()),
            ..Faults::default()
        });
        let mut saw_degraded = false;
        while jiff::Timestamp::now() < expiration - jiff::SignedDuration::from_secs(5) {
            let b = env.bindings(&ns).get("b").await?;
            ensure!(
                condition(&b, "Ready").is_some_and(|c| c.0 == "True"),
                "Ready left True while the credentials were valid: {:?}",
                b.status
            );
            if let Some((status, reason, message)) = condition(&b, "Degraded")
                && status == "True"
            {
                ensure!(
                    reason == "StsUnavailable" && message.contains("roleChain[0]"),
                    "{reason}: {message}"
                );
                saw_degraded = true;
                let now = env.secrets(&ns).get("b").await?;
                ensure!(
                    now.metadata.resource_version == before.metadata.resource_version,
                    "the Secret was written while the hop failed"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ensure!(saw_degraded, "Degraded never reported the failing hop");
        let recovered = wait_for(Duration::from_secs(40), || async {
            let s = env.secrets(&ns).get("b").await.ok()?;
            (s.metadata.resource_version != before.metadata.resource_version).then_some(s)
        })
        .await
        .context("no fresh credentials after the hops came back")?;
        let new_exp: jiff::Timestamp = decode_secret(&recovered)["expiration"].parse()?;
        ensure!(new_exp > expiration);
        let metrics = op.metrics().await?;
        ensure!(
            metrics.contains("podcreds_sts_request_duration_seconds_count{flow=\"RoleChain\",outcome=\"StsUnavailable\"}"),
            "no failed RoleChain call in the metrics:\n{metrics}"
        );

        // A chained binding whose Secret name is taken: refused, the foreign Secret untouched,
        // and at most one chain exchanged (and dropped) before the conflict was known.
        let foreign = env
            .secrets(&ns)
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some("taken".into()),
                        ..ObjectMeta::default()
                    },
                    string_data: Some([("password".to_string(), "keep-me".to_string())].into()),
                    ..Secret::default()
                },
            )
            .await?;
        let conflicted = chain_roles(&sts, &ns, "x", 1, |_, _| {});
        env.create_binding(
            &ns,
            "c",
            chain_spec(&conflicted, &[json!({})], json!({"secretName": "taken"})),
        )
        .await?;
        env.wait_reason(&ns, "c", "SecretConflict", READY).await?;
        crate::support::looked_again(env, &op, &ns, "c", "conflict").await?;
        let after = env.secrets(&ns).get("taken").await?;
        ensure!(
            after.metadata.resource_version == foreign.metadata.resource_version,
            "the foreign Secret was written"
        );
        let chains = ok_calls(&sts, "AssumeRoleWithWebIdentity", &conflicted.entry).len();
        ensure!(
            chains <= 1,
            "{chains} chains exchanged for a Secret the binding may not write"
        );
        Ok::<(), anyhow::Error>(())
    };
    let result = steps.await;
    sts.shutdown();
    result
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![chains:
    a_two_hop_chain_serves_aws_clients_as_the_last_role,
    kubernetes_session_tags_reach_sts_and_cannot_be_overridden,
    chained_sessions_are_clamped_to_an_hour_and_report_their_packed_size,
    hostile_role_chains_are_refused_at_admission,
    a_restarted_operator_makes_no_sts_call_for_a_fresh_chain,
    refused_hops_say_what_the_trust_policy_lacks,
    a_hop_outage_keeps_valid_credentials_and_a_conflict_costs_one_chain,
];

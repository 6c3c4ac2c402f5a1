//! The actions over HTTP, as clients call them: trust policies evaluated statement by
//! statement, principals as IAM reads them, `MaxSessionDuration`, the session policies logged,
//! the SigV4 credential scope, and the control API refusing what IAM refuses.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::json;
use sts_emulator::{Role, RoleError, TrustPolicyError, User, role_from_trust_policy};
use support::{ACCOUNT, Credentials, Scope, call, role_arn, signed_call, signed_call_with, world};

const APP: &str = "system:serviceaccount:ns:app";
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
const MAX_EXCEEDED: &str =
    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.";

fn web_identity_policy(provider_arn: &str, provider: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": provider_arn},
         "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": {"StringLike": {format!("{provider}:sub"): "system:serviceaccount:ns:*"},
                       "StringEquals": {format!("{provider}:aud"): "sts.amazonaws.com"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "sts:*",
         "Condition": {"StringLike": {"sts:RoleSessionName": "blocked*"}}},
    ]})
}

#[tokio::test]
async fn web_identity_is_held_to_the_trust_policy_and_the_role_limits() {
    let (issuer, sts) = world(&[]).await;
    let provider = issuer.provider();
    let document = web_identity_policy(&issuer.provider_arn(), &provider);
    let mut role = role_from_trust_policy(&role_arn("web"), &document, &provider).expect("read");
    sts.add_role(role.clone());
    role.arn = role_arn("web-long");
    role.max_session_duration = Some(7200);
    sts.add_role(role.clone());
    role.arn = role_arn("web-fast");
    role.lifetime_seconds = Some(20);
    sts.add_role(role);
    // The same statements, but for this issuer's provider in another account.
    let elsewhere = issuer.provider_arn().replace(ACCOUNT, "444455556666");
    let other = role_from_trust_policy(
        &role_arn("web-elsewhere"),
        &web_identity_policy(&elsewhere, &provider),
        &provider,
    )
    .expect("read");
    sts.add_role(other);

    let exchange = |role: &str, sub: &str, session: &str, extra: &[(&str, &str)]| {
        let token = issuer.token(sub, "sts.amazonaws.com");
        let role = role_arn(role);
        let mut params = vec![
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role.as_str()),
            ("RoleSessionName", session),
            ("WebIdentityToken", token.as_str()),
        ];
        params.extend_from_slice(extra);
        let params: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sts = sts.clone();
        async move {
            let params: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            call(&sts, &params).await
        }
    };
    let ok = exchange("web", APP, "ns.app", &[]).await;
    assert_eq!(ok.code(), "Ok", "{}", ok.body);
    assert_eq!(ok.text("SubjectFromWebIdentityToken").as_deref(), Some(APP));
    let denied = exchange("web", "system:serviceaccount:other:app", "ns.app", &[]).await;
    assert_eq!(denied.code(), "AccessDenied");
    assert!(denied.message().contains("sts:AssumeRoleWithWebIdentity"));
    // An explicit deny on the session name wins over the allow.
    assert_eq!(
        exchange("web", APP, "blocked-1", &[]).await.code(),
        "AccessDenied"
    );
    // The provider of another account is not this token's.
    assert_eq!(
        exchange("web-elsewhere", APP, "ns.app", &[]).await.code(),
        "AccessDenied"
    );

    // MaxSessionDuration: 3600 unless the role says more; beyond it, AWS's ValidationError.
    let long = exchange("web", APP, "ns.app", &[("DurationSeconds", "7200")]).await;
    assert_eq!(long.code(), "ValidationError");
    assert_eq!(long.message(), MAX_EXCEEDED);
    let allowed = exchange("web-long", APP, "ns.app", &[("DurationSeconds", "7200")]).await;
    assert_eq!(allowed.code(), "Ok", "{}", allowed.body);
    let too_long = exchange("web-long", APP, "ns.app", &[("DurationSeconds", "7201")]).await;
    assert_eq!(too_long.message(), MAX_EXCEEDED);
    // The lifetime device shortens what is granted, whatever was asked.
    let fast = exchange("web-fast", APP, "ns.app", &[("DurationSeconds", "3600")]).await;
    assert_eq!(fast.code(), "Ok");

    // Session policies reach the log as sent.
    let with_policies = exchange(
        "web",
        APP,
        "ns.app",
        &[
            ("Policy", POLICY),
            (
                "PolicyArns.member.1.arn",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
            ),
            (
                "PolicyArns.member.2.arn",
                "arn:aws:iam::123456789012:policy/p",
            ),
        ],
    )
    .await;
    assert_eq!(with_policies.code(), "Ok");
    let calls = sts.calls().calls;
    let last = calls.last().expect("logged");
    assert_eq!(last.policy.as_deref(), Some(POLICY));
    assert_eq!(
        last.policy_arns,
        [
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "arn:aws:iam::123456789012:policy/p"
        ]
    );
    let granted: Vec<Option<u64>> = calls
        .iter()
        .filter(|c| c.result == "Ok")
        .map(|c| c.granted_seconds)
        .collect();
    assert_eq!(
        granted,
        [Some(3600), Some(7200), Some(20), Some(3600)],
        "{calls:?}"
    );
    let json = serde_json::to_value(last).expect("json");
    assert_eq!(json["policy"], POLICY);
    assert_eq!(json["policyArns"][1], "arn:aws:iam::123456789012:policy/p");
}

/// `AssumeRole` of `role` with `credentials`, plus `extra` parameters.
async fn assume(
    sts: &sts_emulator::Emulator,
    credentials: &Credentials,
    role: &str,
    session: &str,
    extra: &[(&str, &str)],
) -> support::Answer {
    let mut params = vec![
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session),
    ];
    params.extend_from_slice(extra);
    signed_call(sts, &params, credentials).await
}

#[tokio::test]
async fn assume_role_evaluates_principals_tags_and_denies() {
    let (issuer, sts) = world(&[]).await;
    let entry = role_arn("entry");
    let hop = role_arn("hop");
    let last = role_arn("last");
    sts.add_role(Role {
        arn: entry.clone(),
        ..Role::default()
    });
    sts.add_role(Role {
        arn: role_arn("stranger"),
        ..Role::default()
    });
    let hop_policy = json!({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": entry}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"AWS": entry}, "Action": "sts:TagSession",
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]},
                       "StringEquals": {"sts:ExternalId": "ext-1"}}},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
         "Condition": {"StringLike": {"sts:RoleSessionName": "blocked*"}}},
    ]});
    sts.add_role(role_from_trust_policy(&hop, &hop_policy, &issuer.provider()).expect("read"));
    // The last role trusts hop sessions that carry the team tag "blue" as a principal tag.
    let last_policy = json!({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": hop}, "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}},
    }]});
    sts.add_role(role_from_trust_policy(&last, &last_policy, &issuer.provider()).expect("read"));

    let from_entry = Credentials::seeded(&sts, &entry);
    let plain = assume(&sts, &from_entry, &hop, "s1", &[]).await;
    assert_eq!(plain.code(), "Ok", "{}", plain.body);
    // Tags need sts:TagSession, whose statement wants the external ID and only the team key.
    let team = [
        ("Tags.member.1.Key", "team"),
        ("Tags.member.1.Value", "blue"),
    ];
    let tagged = assume(&sts, &from_entry, &hop, "s2", &team).await;
    assert_eq!(tagged.code(), "AccessDenied");
    assert!(
        tagged.message().contains("sts:TagSession"),
        "{}",
        tagged.body
    );
    let mut with_id = team.to_vec();
    with_id.extend([
        ("ExternalId", "ext-1"),
        ("TransitiveTagKeys.member.1", "team"),
    ]);
    let tagged = assume(&sts, &from_entry, &hop, "s3", &with_id).await;
    assert_eq!(tagged.code(), "Ok", "{}", tagged.body);
    let stage = [
        ("Tags.member.1.Key", "stage"),
        ("Tags.member.1.Value", "x"),
        ("ExternalId", "ext-1"),
    ];
    assert_eq!(
        assume(&sts, &from_entry, &hop, "s4", &stage).await.code(),
        "AccessDenied"
    );
    // An explicit deny wins, and says so.
    let blocked = assume(&sts, &from_entry, &hop, "blocked-1", &[]).await;
    assert_eq!(blocked.code(), "AccessDenied");
    assert!(
        blocked.message().contains("explicit deny"),
        "{}",
        blocked.body
    );
    // Another role's session is not the trusted principal.
    let stranger = Credentials::seeded(&sts, &role_arn("stranger"));
    let refused = assume(&sts, &stranger, &hop, "s5", &[]).await;
    assert!(refused.message().contains("sts:AssumeRole on resource"));

    // Principal tags: the tagged hop session (its transitive tag inherited) may go on; the
    // untagged one may not.
    let tagged_hop = tagged.credentials();
    let next = assume(&sts, &tagged_hop, &last, "s6", &[]).await;
    assert_eq!(next.code(), "Ok", "{}", next.body);
    let untagged_hop = plain.credentials();
    assert_eq!(
        assume(&sts, &untagged_hop, &last, "s7", &[]).await.code(),
        "AccessDenied"
    );
    // Chaining stays capped at an hour whatever the role allows.
    let chained = assume(
        &sts,
        &from_entry,
        &hop,
        "s8",
        &[("DurationSeconds", "3601")],
    )
    .await;
    assert!(
        chained.message().contains("role chaining"),
        "{}",
        chained.body
    );

    // Session policies of every hop reach the log.
    let policies = [
        ("Policy", POLICY),
        (
            "PolicyArns.member.1.arn",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
        ),
    ];
    assert_eq!(
        assume(&sts, &from_entry, &hop, "s9", &policies)
            .await
            .code(),
        "Ok"
    );
    let logged = sts.calls().calls.pop().expect("logged");
    assert_eq!(logged.policy.as_deref(), Some(POLICY));
    assert_eq!(
        logged.policy_arns,
        ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    );
    assert!(logged.packed_policy_size.is_some());
}

#[tokio::test]
async fn users_and_role_sessions_are_different_principals() {
    let (issuer, sts) = world(&[]).await;
    let alice = format!("arn:aws:iam::{ACCOUNT}:user/alice");
    sts.add_user(User {
        arn: alice.clone(),
        access_key_id: "AKIAALICE0001".into(),
        secret_access_key: "alice-secret".into(),
        lifetime_seconds: None,
    });
    let keys = Credentials::long_term("AKIAALICE0001", "alice-secret");
    let trusting_alice = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": alice}, "Action": "sts:AssumeRole"}]});
    let mut reports =
        role_from_trust_policy(&role_arn("reports"), &trusting_alice, &issuer.provider())
            .expect("read");
    reports.max_session_duration = Some(43200);
    sts.add_role(reports);
    sts.add_role(
        role_from_trust_policy(&role_arn("short"), &trusting_alice, &issuer.provider())
            .expect("read"),
    );
    // A role whose name is the user's: its sessions are not the user.
    sts.add_role(Role {
        arn: role_arn("alice"),
        ..Role::default()
    });

    // Not chaining: up to the role's MaxSessionDuration.
    let long = [("DurationSeconds", "43200")];
    let answer = assume(&sts, &keys, &role_arn("reports"), "r1", &long).await;
    assert_eq!(answer.code(), "Ok", "{}", answer.body);
    let refused = assume(
        &sts,
        &keys,
        &role_arn("short"),
        "r2",
        &[("DurationSeconds", "7200")],
    )
    .await;
    assert_eq!(refused.message(), MAX_EXCEEDED);
    // The user's GetSessionToken session is the user too.
    let session = signed_call(
        &sts,
        &[("Action", "GetSessionToken"), ("Version", "2011-06-15")],
        &keys,
    )
    .await;
    assert_eq!(session.code(), "Ok", "{}", session.body);
    let from_session = assume(&sts, &session.credentials(), &role_arn("short"), "r3", &[]).await;
    assert_eq!(from_session.code(), "Ok", "{}", from_session.body);
    let impostor = Credentials::seeded(&sts, &role_arn("alice"));
    assert_eq!(
        assume(&sts, &impostor, &role_arn("short"), "r4", &[])
            .await
            .code(),
        "AccessDenied"
    );
    // GetFederationToken logs its session policies too.
    let federated = signed_call(
        &sts,
        &[
            ("Action", "GetFederationToken"),
            ("Version", "2011-06-15"),
            ("Name", "bob"),
            ("Policy", POLICY),
        ],
        &keys,
    )
    .await;
    assert_eq!(federated.code(), "Ok", "{}", federated.body);
    let logged = sts.calls().calls.pop().expect("logged");
    assert_eq!(logged.policy.as_deref(), Some(POLICY));
}

#[tokio::test]
async fn sigv4_scopes_name_sts_a_served_region_and_the_request_day() {
    let (_issuer, sts) = world(&["us-east-1", "eu-west-1"]).await;
    let role = role_arn("r");
    sts.add_role(Role {
        arn: role.clone(),
        ..Role::default()
    });
    let credentials = Credentials::seeded(&sts, &role);
    let identity = [("Action", "GetCallerIdentity"), ("Version", "2011-06-15")];
    let with = |region, service| Scope {
        region,
        service,
        time: SystemTime::now(),
    };
    let ok = signed_call_with(
        &sts,
        &identity,
        &credentials,
        &with("eu-west-1", "sts"),
        |_| {},
    )
    .await;
    assert_eq!(ok.code(), "Ok", "{}", ok.body);
    assert_eq!(
        ok.text("Arn").as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/r/seeded-session")
    );
    let region = signed_call_with(
        &sts,
        &identity,
        &credentials,
        &with("ap-south-1", "sts"),
        |_| {},
    )
    .await;
    assert_eq!(region.status, 403);
    assert_eq!(region.code(), "SignatureDoesNotMatch");
    assert!(
        region
            .message()
            .contains("Credential should be scoped to a valid region")
    );
    let service = signed_call_with(
        &sts,
        &identity,
        &credentials,
        &with("us-east-1", "s3"),
        |_| {},
    )
    .await;
    assert_eq!(service.code(), "SignatureDoesNotMatch");
    assert!(service.message().contains("correct service: 'sts'"));
    // The scope's day must be X-Amz-Date's.
    let day = signed_call_with(
        &sts,
        &identity,
        &credentials,
        &Scope::default(),
        |headers| {
            for (name, value) in headers.iter_mut() {
                if name == "x-amz-date" {
                    let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
                    *value = yesterday.strftime("%Y%m%dT%H%M%SZ").to_string();
                }
            }
        },
    )
    .await;
    assert_eq!(day.code(), "SignatureDoesNotMatch");
    assert!(
        day.message()
            .starts_with("Date in Credential scope does not match"),
        "{}",
        day.body
    );
    // A request made an hour ago, signed then: refused for its time, not its scope.
    let old = Scope {
        time: SystemTime::now() - Duration::from_secs(3600),
        ..Scope::default()
    };
    let stale = signed_call_with(&sts, &identity, &credentials, &old, |_| {}).await;
    assert_eq!(stale.code(), "SignatureDoesNotMatch");
    assert!(stale.message().contains("Signature expired"));
}

#[tokio::test]
async fn roles_iam_would_refuse_are_refused() {
    let (_issuer, sts) = world(&[]).await;
    let wildcard = Role {
        arn: role_arn("r"),
        trusted_roles: vec![role_arn("entry-*")],
        ..Role::default()
    };
    assert!(matches!(
        sts.try_add_role(wildcard),
        Err(RoleError::TrustPolicy {
            error: TrustPolicyError::WildcardPrincipal(_),
            ..
        })
    ));
    let long = Role {
        arn: role_arn("r"),
        max_session_duration: Some(86400),
        ..Role::default()
    };
    assert!(matches!(
        sts.try_add_role(long),
        Err(RoleError::MaxSessionDuration { .. })
    ));
    // The control API answers 400 with the reason, and reads the old name of the lifetime.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let put = |body: serde_json::Value| {
        let request = http::Request::post(format!("{}/_emulator/roles", sts.url()))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .expect("request");
        client.request(request)
    };
    let refused = put(
        json!({"arn": role_arn("w"), "trustedUsers": [format!("arn:aws:iam::{ACCOUNT}:user/*")]}),
    )
    .await
    .expect("answer");
    assert_eq!(refused.status(), 400);
    let accepted = put(json!({"arn": role_arn("l"), "subjects": [APP], "maxSessionSeconds": 12}))
        .await
        .expect("answer");
    assert_eq!(accepted.status(), 204);
    // An emulator configured with a role IAM would refuse does not start.
    let base = sts_emulator::Config::for_issuer("https://127.0.0.1:1", "");
    let bad = sts_emulator::Config {
        roles: vec![Role {
            arn: "arn:aws:iam::1:role/r".into(),
            ..Role::default()
        }],
        issuer_ca_pem: None,
        ..base
    };
    assert!(sts_emulator::Emulator::start(bad).await.is_err());
}

//! IAM Roles Anywhere `CreateSession` over HTTP: the rules of profiles, of the role's trust
//! policy for the service, of certificate attributes, the call log, faults and the control API.

mod support;

use serde_json::json;
use sts_emulator::{Faults, Profile, role_from_trust_policy};
use support::ra_scene::{add_role, expect_refused, scene, trust_policy};
use support::x509::{
    self, Ca, ECDSA, RSA, Signing, host, profile_arn, request, send, trust_anchor_arn,
};
use support::{role_arn, world};

#[tokio::test]
async fn profiles_hold_the_role_the_duration_and_the_session_name() {
    let s = scene().await;
    let holder = s.ca.issue(ECDSA, "workload", 0x42, |_| {});
    let invalid =
        |a: &x509::Answer, words: &str| expect_refused(a, "ValidationException", 400, words);

    // min(profile, request): the profile's 3600 wins over a longer request.
    let a = s.create(&holder, r#"{"durationSeconds":7200}"#).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(s.last_call().granted_seconds, Some(3600));
    let a = s.create(&holder, r#"{"durationSeconds":900}"#).await;
    assert_eq!(a.status, 201);
    assert_eq!(s.last_call().granted_seconds, Some(900));
    invalid(
        &s.create(&holder, r#"{"durationSeconds":899}"#).await,
        "durationSeconds",
    );
    invalid(
        &s.create(&holder, r#"{"durationSeconds":43201}"#).await,
        "durationSeconds",
    );
    // A profile of 12 hours still meets the role's MaxSessionDuration (1 hour by default).
    let mut long = Profile::new(&s.profile, &[&s.role]);
    long.duration_seconds = Some(43_200);
    s.sts.add_profile(long.clone()).expect("profile");
    invalid(&s.create(&holder, "").await, "MaxSessionDuration");
    let mut role = role_from_trust_policy(&s.role, &trust_policy(&s.anchor, json!({})), "unused")
        .expect("policy");
    role.max_session_duration = Some(43_200);
    s.sts.add_role(role);
    assert_eq!(s.create(&holder, "").await.status, 201);
    assert_eq!(s.last_call().granted_seconds, Some(43_200));

    // roleSessionName only where the profile accepts one.
    let named = r#"{"roleSessionName":"alice.build"}"#;
    expect_refused(
        &s.create(&holder, named).await,
        "AccessDeniedException",
        403,
        "Not authorized to set roleSessionName.",
    );
    long.accept_role_session_name = true;
    s.sts.add_profile(long.clone()).expect("profile");
    let a = s.create(&holder, named).await;
    assert!(
        a.set()["assumedRoleUser"]["arn"]
            .as_str()
            .is_some_and(|arn| arn.ends_with("/alice.build")),
        "{a:?}"
    );
    invalid(
        &s.create(&holder, r#"{"roleSessionName":"a:b"}"#).await,
        "roleSessionName",
    );

    // The role must be the profile's; the profile enabled; the ARNs known.
    let other = role_arn("ra-other");
    add_role(&s.sts, &other, trust_policy(&s.anchor, json!({})));
    let mut req = request(
        &host(&s.sts),
        &holder,
        (&s.anchor, &s.profile, &other),
        "",
        &Signing::default(),
    );
    req.body.clear();
    expect_refused(
        &send(&s.sts, req).await,
        "AccessDeniedException",
        403,
        "roleArns",
    );
    s.sts
        .add_profile(Profile {
            enabled: false,
            ..long
        })
        .expect("profile");
    expect_refused(
        &s.create(&holder, "").await,
        "AccessDeniedException",
        403,
        "disabled",
    );
    let mut req = request(
        &host(&s.sts),
        &holder,
        (&s.anchor, &profile_arn("nope"), &s.role),
        "",
        &Signing::default(),
    );
    req.body.clear();
    expect_refused(
        &send(&s.sts, req).await,
        "ResourceNotFoundException",
        404,
        "Profile",
    );

    // The parameters may come in the body (AWS's documented form); twice, they must agree.
    s.sts
        .add_profile(Profile::new(&s.profile, &[&s.role]))
        .expect("profile");
    let body =
        json!({"profileArn": s.profile, "roleArn": s.role, "trustAnchorArn": s.anchor}).to_string();
    let req = x509::sign(
        &host(&s.sts),
        &holder,
        String::new(),
        body,
        &Signing::default(),
    );
    assert_eq!(send(&s.sts, req).await.status, 201);
    let body = json!({"roleArn": other}).to_string();
    let a = s.create(&holder, &body).await;
    invalid(&a, "roleArn is sent twice");
    let req = x509::sign(
        &host(&s.sts),
        &holder,
        String::new(),
        "{}".into(),
        &Signing::default(),
    );
    invalid(&send(&s.sts, req).await, "profileArn");
}

#[tokio::test]
async fn trust_policies_see_the_service_the_trust_anchor_and_the_certificate() {
    let s = scene().await;
    let holder = s.ca.issue(RSA, "alice", 0x99, |p| {
        p.distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "Security");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        p.subject_alt_names = vec![
            rcgen::SanType::DnsName("alice.example.com".try_into().expect("dns")),
            rcgen::SanType::URI(
                "spiffe://example.com/ns/app/sa/alice"
                    .try_into()
                    .expect("uri"),
            ),
        ];
    });
    let ok = |policy: serde_json::Value| {
        add_role(&s.sts, &s.role, policy);
        s.create(&holder, "")
    };
    let pinned = trust_policy(
        &s.anchor,
        json!({"StringEquals": {
            "aws:PrincipalTag/x509Subject/CN": "alice",
            "aws:PrincipalTag/x509Subject/OU": "Security",
            "aws:PrincipalTag/x509Issuer/CN": "Test Root CA",
            "aws:PrincipalTag/x509SAN/DNS": "alice.example.com",
            "aws:PrincipalTag/x509SAN/URI": "spiffe://example.com/ns/app/sa/alice",
            "sts:SourceIdentity": "CN=alice",
            "aws:SourceAccount": support::ACCOUNT,
        }}),
    );
    assert_eq!(ok(pinned).await.status, 201);
    let call = s.last_call();
    for (key, value) in [
        ("x509Subject/O", "Example"),
        ("x509SAN/DNS", "alice.example.com"),
    ] {
        assert!(
            call.tags.iter().any(|t| t.key == key && t.value == value),
            "{:?}",
            call.tags
        );
    }
    let refused =
        |a: &x509::Answer, words: &str| expect_refused(a, "AccessDeniedException", 403, words);
    let other_cn = trust_policy(
        &s.anchor,
        json!({"StringEquals": {"aws:PrincipalTag/x509Subject/CN": "bob"}}),
    );
    refused(
        &ok(other_cn).await,
        "does not allow rolesanywhere.amazonaws.com sts:AssumeRole",
    );
    let other_anchor = trust_policy(&trust_anchor_arn("elsewhere"), json!({}));
    refused(&ok(other_anchor).await, "sts:AssumeRole");
    let any_anchor = trust_policy(
        &format!(
            "arn:aws:rolesanywhere:*:{}:trust-anchor/*",
            support::ACCOUNT
        ),
        json!({}),
    );
    assert_eq!(ok(any_anchor).await.status, 201);
    // Roles Anywhere always tags and sets the source identity: both actions are required.
    let no_tags = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "rolesanywhere.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
    }]});
    refused(&ok(no_tags).await, "sts:TagSession");
    let other_service = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
    }]});
    refused(&ok(other_service).await, "sts:AssumeRole");
    let denied_cn = json!({"Version": "2012-10-17", "Statement": [
        trust_policy(&s.anchor, json!({}))["Statement"][0].clone(),
        {"Effect": "Deny", "Principal": {"Service": "rolesanywhere.amazonaws.com"}, "Action": "sts:*",
         "Condition": {"StringLike": {"aws:PrincipalTag/x509Subject/CN": "ali*"}}},
    ]});
    refused(&ok(denied_cn).await, "sts:AssumeRole");
    // An unknown role is refused like an untrusting one.
    let mut req = request(
        &host(&s.sts),
        &holder,
        (&s.anchor, &s.profile, &role_arn("ghost")),
        "",
        &Signing::default(),
    );
    req.body.clear();
    s.sts
        .add_profile(Profile::new(&s.profile, &[&s.role, &role_arn("ghost")]))
        .expect("profile");
    refused(&send(&s.sts, req).await, "Unable to assume role");
}

#[tokio::test]
async fn certificate_attributes_sts_would_not_take_fail_the_request() {
    let s = scene().await;
    // STS takes no parentheses in a tag value: AWS refuses the request naming the attribute.
    let holder = s.ca.issue(ECDSA, "John Smith (EMP1)", 1, |_| {});
    let a = s.create(&holder, "").await;
    expect_refused(
        &a,
        "AccessDeniedException",
        403,
        "Some attributes failed to be mapped into session tags",
    );
    assert!(a.message().contains("Subject: [ CN ]"), "{}", a.message());
    // A CN a tag takes but a source identity does not (`:`).
    let holder = s.ca.issue(ECDSA, "system:serviceaccount:ns:app", 2, |_| {});
    expect_refused(
        &s.create(&holder, "").await,
        "AccessDeniedException",
        403,
        "source identity",
    );
    // Without a CN, the source identity is ID=<serial>, left-padded to an even length.
    let holder = s.ca.issue(ECDSA, "unused", 291, |p| {
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
    });
    let a = s.create(&holder, "").await;
    assert_eq!(a.set()["sourceIdentity"], "ID=0123", "{a:?}");
    // A CN of 62 to 64 characters is the source identity as it is.
    let cn = "a".repeat(62);
    let holder = s.ca.issue(ECDSA, &cn, 3, |_| {});
    assert_eq!(
        s.create(&holder, "").await.set()["sourceIdentity"],
        cn.as_str()
    );
}

#[tokio::test]
async fn calls_are_logged_and_faults_are_injected() {
    let s = scene().await;
    let holder = s.ca.issue(ECDSA, "workload", 1, |_| {});
    s.sts.set_faults(Faults {
        throttle_next: 1,
        only_action: Some("CreateSession".into()),
        ..Faults::default()
    });
    let a = s.create(&holder, "").await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (429, "ThrottlingException"),
        "{a:?}"
    );
    s.sts.set_faults(Faults {
        fail_next: 1,
        ..Faults::default()
    });
    assert_eq!(
        s.create(&holder, "").await.code(),
        "InternalServerException"
    );
    s.sts.set_faults(Faults {
        error_code: Some("AccessDenied".into()),
        error_next: 1,
        ..Faults::default()
    });
    assert_eq!(s.create(&holder, "").await.code(), "AccessDeniedException");
    s.sts.set_faults(Faults {
        malformed_next: 1,
        ..Faults::default()
    });
    let a = s.create(&holder, "").await;
    assert_eq!((a.status, a.json.is_null()), (201, true), "{a:?}");
    assert_eq!(s.create(&holder, "").await.status, 201);
    let results: Vec<String> = s
        .sts
        .calls()
        .calls
        .iter()
        .map(|c| c.result.clone())
        .collect();
    assert_eq!(
        results,
        [
            "ThrottlingException",
            "InternalServerException",
            "AccessDeniedException",
            "Malformed",
            "Ok"
        ]
    );
    assert_eq!(s.sts.count("CreateSession"), 5);
    let last = s.last_call();
    assert_eq!(last.role_arn.as_deref(), Some(s.role.as_str()));
    assert!(
        last.access_key_id
            .as_deref()
            .is_some_and(|k| k.starts_with("ASIA"))
    );
    assert_eq!(last.source_identity.as_deref(), Some("CN=workload"));
}

#[tokio::test]
async fn the_control_api_registers_anchors_profiles_and_revocations() {
    let (_issuer, sts) = world(&[]).await;
    let ca = Ca::root("Control CA");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let post = |path: &str, body: serde_json::Value| {
        let request = http::Request::post(format!("{}{path}", sts.url()))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .expect("request");
        let client = client.clone();
        async move {
            client
                .request(request)
                .await
                .expect("response")
                .status()
                .as_u16()
        }
    };
    let anchor = trust_anchor_arn("ctl");
    assert_eq!(
        post(
            "/_emulator/trust-anchors",
            json!({"arn": anchor, "caBundlePem": ca.pem()})
        )
        .await,
        204
    );
    // A bundle of an end-entity certificate is no trust anchor.
    let leaf = ca.issue(ECDSA, "leaf", 1, |_| {});
    assert_eq!(
        post(
            "/_emulator/trust-anchors",
            json!({"arn": trust_anchor_arn("bad"), "caBundlePem": leaf.cert_pem})
        )
        .await,
        400
    );
    assert_eq!(
        post(
            "/_emulator/trust-anchors",
            json!({"arn": "arn:aws:iam::123456789012:role/x", "caBundlePem": ca.pem()})
        )
        .await,
        400
    );
    let profile = json!({"arn": profile_arn("ctl"), "roleArns": [role_arn("r")], "durationSeconds": 900, "acceptRoleSessionName": true});
    assert_eq!(post("/_emulator/profiles", profile).await, 204);
    assert_eq!(
        post(
            "/_emulator/profiles",
            json!({"arn": profile_arn("p"), "roleArns": [role_arn("r")], "durationSeconds": 60})
        )
        .await,
        400
    );
    assert_eq!(
        post(
            "/_emulator/revocations",
            json!({"trustAnchorArn": anchor, "serials": ["01:AB"]})
        )
        .await,
        204
    );
    assert_eq!(
        post(
            "/_emulator/revocations",
            json!({"trustAnchorArn": trust_anchor_arn("none"), "serials": ["01"]})
        )
        .await,
        400
    );
    assert_eq!(
        post(
            "/_emulator/revocations",
            json!({"trustAnchorArn": anchor, "serials": ["xyz"]})
        )
        .await,
        400
    );
}

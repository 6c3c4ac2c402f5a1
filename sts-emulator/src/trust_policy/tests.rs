use jiff::Timestamp;
use serde_json::json;

use super::evaluate::glob;
use super::*;
use crate::Dialect;
use crate::roles::{RoleError, register};
use crate::state::{Session, SessionKind, SessionTag};

const PROVIDER: &str = "127.0.0.1:6443";
const ACCOUNT: &str = "111122223333";

fn oidc_provider() -> String {
    format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{PROVIDER}")
}

fn session(kind: SessionKind, arn: &str, owner: &str) -> Session {
    Session {
        secret_access_key: String::new(),
        session_token: String::new(),
        expiration: Timestamp::MAX,
        assumed_role_arn: arn.into(),
        assumed_role_id: String::new(),
        account: ACCOUNT.into(),
        role_arn: owner.into(),
        kind,
        tags: Vec::new(),
        transitive_tags: Vec::new(),
        source_identity: None,
    }
}

fn role_session(role: &str, name: &str) -> Session {
    session(
        SessionKind::Role,
        &format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{name}"),
        &format!("arn:aws:iam::{ACCOUNT}:role/{role}"),
    )
}

fn user_keys(user: &str) -> Session {
    let arn = format!("arn:aws:iam::{ACCOUNT}:user/{user}");
    session(SessionKind::LongTerm, &arn, &arn)
}

fn tag(key: &str, value: &str) -> SessionTag {
    SessionTag {
        key: key.into(),
        value: value.into(),
    }
}

fn policy(statements: serde_json::Value) -> TrustPolicy {
    TrustPolicy::from_json(&json!({"Version": "2012-10-17", "Statement": statements}))
        .expect("understood")
}

#[test]
fn iam_wildcards_match_as_iam_does() {
    assert!(glob(
        "system:serviceaccount:ns:*",
        "system:serviceaccount:ns:app"
    ));
    assert!(glob(
        "system:serviceaccount:ns:*",
        "system:serviceaccount:ns:"
    ));
    assert!(glob("a*b*c", "aXXbYYc"));
    assert!(glob("a?c", "abc"));
    assert!(!glob("a?c", "ac"));
    assert!(!glob("a*b", "aXXc"));
    assert!(glob("*", ""));
    assert!(!glob("App", "app"));
}

#[test]
fn web_identity_statements_need_the_provider_subject_and_audience() {
    let p = policy(json!([{
        "Effect": "Allow",
        "Principal": {"Federated": oidc_provider()},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{PROVIDER}:sub"): "system:serviceaccount:ns:app",
            format!("{PROVIDER}:aud"): "sts.amazonaws.com",
        }}
    }]));
    let provider = oidc_provider();
    let caller = Caller::WebIdentity {
        provider: &provider,
    };
    let mut request = RequestContext::default();
    // Keys compare without regard to case.
    request
        .set(
            &format!("{}:SUB", PROVIDER.to_uppercase()),
            "system:serviceaccount:ns:app",
        )
        .set(&format!("{PROVIDER}:aud"), "sts.amazonaws.com");
    let action = "sts:AssumeRoleWithWebIdentity";
    assert_eq!(p.decide(action, &caller, &request), Decision::Allowed);
    // Another provider (another cluster, another account) is not trusted.
    let elsewhere = format!("arn:aws:iam::444455556666:oidc-provider/{PROVIDER}");
    let foreign = Caller::WebIdentity {
        provider: &elsewhere,
    };
    assert_eq!(p.decide(action, &foreign, &request), Decision::ImplicitDeny);
    // Values compare with case; a missing key fails a positive test.
    let mut other = request.clone();
    other.set(&format!("{PROVIDER}:sub"), "system:serviceaccount:ns:App");
    assert_eq!(p.decide(action, &caller, &other), Decision::ImplicitDeny);
    let mut missing = RequestContext::default();
    missing.set(&format!("{PROVIDER}:aud"), "sts.amazonaws.com");
    assert_eq!(p.decide(action, &caller, &missing), Decision::ImplicitDeny);
    // The statement allows no other action.
    assert_eq!(
        p.decide("sts:TagSession", &caller, &request),
        Decision::ImplicitDeny
    );
}

#[test]
fn an_explicit_deny_wins_over_any_allow() {
    let p = policy(json!([
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
         "Action": ["sts:AssumeRole", "sts:TagSession"]},
        {"Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/intern")},
         "Action": "sts:*"},
        {"Effect": "Deny", "Principal": "*", "Action": "sts:TagSession",
         "Condition": {"StringEquals": {"aws:RequestTag/team": "admins"}}},
    ]));
    let dev = role_session("dev", "s");
    let intern = role_session("intern", "s");
    let mut request = RequestContext::default();
    assert_eq!(
        p.decide("sts:AssumeRole", &Caller::Aws(&dev), &request),
        Decision::Allowed
    );
    assert_eq!(
        p.decide("sts:AssumeRole", &Caller::Aws(&intern), &request),
        Decision::ExplicitDeny
    );
    request.request_tags(&[tag("team", "admins")]);
    let actions = ["sts:AssumeRole", "sts:TagSession"];
    assert_eq!(
        p.first_refused(&actions, &Caller::Aws(&dev), &request),
        Some(("sts:TagSession", Decision::ExplicitDeny))
    );
    let mut fine = RequestContext::default();
    fine.request_tags(&[tag("team", "payments")]);
    assert_eq!(p.first_refused(&actions, &Caller::Aws(&dev), &fine), None);
}

#[test]
fn aws_principals_match_as_iam_reads_them() {
    let entry_role = format!("arn:aws:iam::{ACCOUNT}:role/entry");
    let entry_session = format!("arn:aws:sts::{ACCOUNT}:assumed-role/entry/s1");
    let user = format!("arn:aws:iam::{ACCOUNT}:user/alice");
    let decide = |principal: &str, caller: &Session| {
        policy(json!([{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]))
            .decide("sts:AssumeRole", &Caller::Aws(caller), &RequestContext::default())
            == Decision::Allowed
    };
    let s1 = role_session("entry", "s1");
    let s2 = role_session("entry", "s2");
    let other_role = role_session("other", "s1");
    let alice = user_keys("alice");
    let mut alice_session = alice.clone();
    alice_session.kind = SessionKind::UserSession;
    // A role ARN: every session of that role, no other role's, no user.
    assert!(decide(&entry_role, &s1) && decide(&entry_role, &s2));
    assert!(!decide(&entry_role, &other_role) && !decide(&entry_role, &alice));
    // An assumed-role session ARN: that session only.
    assert!(decide(&entry_session, &s1) && !decide(&entry_session, &s2));
    // A user ARN: its long-term keys and its GetSessionToken sessions, no role session.
    assert!(decide(&user, &alice) && decide(&user, &alice_session));
    let mut impostor = role_session("alice", "s");
    impostor.role_arn = user.clone();
    assert!(!decide(&user, &impostor));
    // The account (root or bare) and "*": every principal of it.
    for any in [
        format!("arn:aws:iam::{ACCOUNT}:root"),
        ACCOUNT.to_string(),
        "*".into(),
    ] {
        assert!(decide(&any, &s1) && decide(&any, &alice), "{any}");
    }
    assert!(!decide("arn:aws:iam::444455556666:root", &s1));
    assert!(!decide("444455556666", &alice));
    assert!(!decide(&format!("arn:aws-cn:iam::{ACCOUNT}:root"), &s1));
    // Federated principals never match signed callers; AWS principals never match tokens.
    let provider = oidc_provider();
    let web = Caller::WebIdentity {
        provider: &provider,
    };
    assert_eq!(
        policy(json!([{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:*"}])).decide(
            "sts:AssumeRoleWithWebIdentity",
            &web,
            &RequestContext::default()
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(
        policy(json!([{"Effect": "Allow", "Principal": "*", "Action": "sts:*"}])).decide(
            "sts:AssumeRoleWithWebIdentity",
            &web,
            &RequestContext::default()
        ),
        Decision::Allowed
    );
}

#[test]
fn conditions_and_or_and_negate_as_iam_does() {
    let s = role_session("entry", "s");
    let caller = Caller::Aws(&s);
    let allowed = |conditions: serde_json::Value, request: &RequestContext| {
        policy(
            json!([{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
                       "Condition": conditions}]),
        )
        .decide("sts:AssumeRole", &caller, request)
            == Decision::Allowed
    };
    let mut request = RequestContext::default();
    request
        .set("sts:ExternalId", "ext-1")
        .set("sts:RoleSessionName", "ns.app")
        .request_tags(&[tag("team", "blue"), tag("stage", "prod")])
        .principal_tags(&[tag("tenant", "a")]);
    let empty = RequestContext::default();
    // Several values of one key: any of them. Several keys or operators: all of them.
    assert!(allowed(
        json!({"StringEquals": {"sts:ExternalId": ["other", "ext-1"]}}),
        &request
    ));
    assert!(allowed(
        json!({"StringEquals": {"sts:ExternalId": "ext-1"}, "StringLike": {"sts:RoleSessionName": "ns.*"}}),
        &request
    ));
    assert!(!allowed(
        json!({"StringEquals": {"sts:ExternalId": "ext-1", "sts:RoleSessionName": "other"}}),
        &request
    ));
    assert!(allowed(
        json!({"StringLike": {"aws:RequestTag/Team": "bl?e", "aws:PrincipalTag/tenant": "*"}}),
        &request
    ));
    // A missing key fails the positive operators and passes the negated ones.
    assert!(!allowed(
        json!({"StringLike": {"sts:SourceIdentity": "*"}}),
        &request
    ));
    assert!(allowed(
        json!({"StringNotEquals": {"sts:SourceIdentity": "mallory"}}),
        &request
    ));
    assert!(!allowed(
        json!({"StringNotLike": {"sts:ExternalId": "ext-*"}}),
        &request
    ));
    assert!(allowed(
        json!({"StringEqualsIfExists": {"sts:SourceIdentity": "alice"}}),
        &request
    ));
    // Sets: ForAllValues holds for no tags at all, ForAnyValue needs one.
    let only_known = json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "stage"]}});
    assert!(allowed(only_known.clone(), &request) && allowed(only_known, &empty));
    assert!(!allowed(
        json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}),
        &request
    ));
    let any_team = json!({"ForAnyValue:StringLike": {"aws:TagKeys": "te*"}});
    assert!(allowed(any_team.clone(), &request) && !allowed(any_team, &empty));
    // Null: "true" when absent, "false" when present.
    assert!(allowed(json!({"Null": {"aws:TagKeys": "false"}}), &request));
    assert!(allowed(json!({"Null": {"aws:TagKeys": "true"}}), &empty));
    assert!(!allowed(
        json!({"Null": {"sts:ExternalId": "true"}}),
        &request
    ));
}

#[test]
fn actions_match_without_case_and_with_wildcards() {
    let s = role_session("entry", "s");
    let p = policy(json!([{"Effect": "Allow", "Principal": {"AWS": "*"},
                           "Action": ["STS:assumerole", "sts:Set*"]}]));
    let request = RequestContext::default();
    let caller = Caller::Aws(&s);
    assert_eq!(
        p.decide("sts:AssumeRole", &caller, &request),
        Decision::Allowed
    );
    assert_eq!(
        p.decide("sts:SetSourceIdentity", &caller, &request),
        Decision::Allowed
    );
    assert_eq!(
        p.first_refused(
            &["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            &caller,
            &request
        ),
        Some(("sts:TagSession", Decision::ImplicitDeny))
    );
}

#[test]
fn documents_round_trip_through_json_and_serde() {
    let document = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "ci",
        "Effect": "Allow",
        "Principal": {"Federated": ["arn:aws:iam::111122223333:saml-provider/podcreds"]},
        "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
        "Condition": {
            "StringEquals": {"SAML:sub": ["system:serviceaccount:ns:app"], "saml:aud": ["https://signin.aws.amazon.com/saml"]},
            "ForAllValues:StringLike": {"aws:TagKeys": ["team", "stage"]},
        },
    }]});
    let p = TrustPolicy::from_json(&document).expect("understood");
    assert_eq!(p.to_json(), document);
    let role: Role = serde_json::from_value(json!({
        "arn": "arn:aws:iam::111122223333:role/r",
        "trustPolicy": document,
        "maxSessionSeconds": 20,
    }))
    .expect("role JSON");
    assert_eq!(role.trust_policy.as_ref(), Some(&p));
    assert_eq!(role.lifetime_seconds, Some(20));
    let back = serde_json::to_value(&role).expect("serialize");
    assert_eq!(back["trustPolicy"], document);
    assert_eq!(back["lifetimeSeconds"], 20);
    // The control API refuses a document it does not understand.
    let refused = serde_json::from_value::<Role>(json!({
        "arn": "arn:aws:iam::111122223333:role/r",
        "trustPolicy": {"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]},
    }));
    assert!(refused.is_err());
}

#[test]
fn real_policies_become_roles() {
    let saml = "arn:aws:iam::111122223333:saml-provider/podcreds";
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": oidc_provider()},
         "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": {"StringEquals": {format!("{PROVIDER}:sub"): "system:serviceaccount:ns:app"}}},
        {"Effect": "Allow", "Principal": {"Federated": saml},
         "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
         "Condition": {"StringEquals": {"saml:sub": "system:serviceaccount:ns:app"}}},
    ]});
    let role = role_from_trust_policy("arn:aws:iam::111122223333:role/r", &document, PROVIDER)
        .expect("understood");
    let p = role.trust_policy.expect("policy");
    assert_eq!(p.statements.len(), 2);
    assert_eq!(p.statements[1].principal.federated, [saml]);
    assert!(role.subjects.is_empty() && role.saml_providers.is_empty());
    // A provider other than the emulator's issuer can never be matched: refused.
    assert_eq!(
        role_from_trust_policy("arn:aws:iam::1:role/r", &document, "elsewhere"),
        Err(TrustPolicyError::Principal(oidc_provider()))
    );
}

#[test]
fn anything_not_understood_is_refused() {
    let base = |statement: serde_json::Value| json!({"Statement": [statement]});
    let web = json!({"Federated": oidc_provider()});
    let condition = |operator: &str, key: &str| TrustPolicyError::Condition {
        operator: operator.into(),
        key: key.into(),
    };
    for (document, expected) in [
        (json!({}), TrustPolicyError::NoStatements),
        (json!({"Statement": []}), TrustPolicyError::NoStatements),
        (
            json!({"Statement": [], "Extra": 1}),
            TrustPolicyError::Element("Extra".into()),
        ),
        (
            base(
                json!({"Effect": "Allow", "NotPrincipal": {"AWS": "*"}, "Action": "sts:AssumeRole"}),
            ),
            TrustPolicyError::Element("NotPrincipal".into()),
        ),
        (
            base(json!({"Effect": "allow", "Principal": "*", "Action": "sts:AssumeRole"})),
            TrustPolicyError::Effect("allow".into()),
        ),
        (
            base(json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "iam:PassRole"})),
            TrustPolicyError::Action("iam:PassRole".into()),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRoles"}),
            ),
            TrustPolicyError::Action("sts:AssumeRoles".into()),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": {"CanonicalUser": "x"}, "Action": "sts:AssumeRole"}),
            ),
            TrustPolicyError::Principal(r#"{"CanonicalUser":"x"}"#.into()),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/entry-*"}, "Action": "sts:AssumeRole"}),
            ),
            TrustPolicyError::WildcardPrincipal("arn:aws:iam::111122223333:role/entry-*".into()),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:group/g"}, "Action": "sts:AssumeRole"}),
            ),
            TrustPolicyError::Principal("arn:aws:iam::111122223333:group/g".into()),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"}, "Action": "sts:AssumeRoleWithWebIdentity"}),
            ),
            TrustPolicyError::Principal("accounts.google.com".into()),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": web, "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {"StringEqualsIgnoreCase": {format!("{PROVIDER}:sub"): "x"}}}),
            ),
            condition("StringEqualsIgnoreCase", ""),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": web, "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {"StringEquals": {"other:sub": "x"}}}),
            ),
            condition("StringEquals", "other:sub"),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:PrincipalTag/team": "${aws:username}"}}}),
            ),
            condition("StringEquals", "aws:PrincipalTag/team"),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:TagKeys": "team"}}}),
            ),
            condition("StringEquals", "aws:TagKeys"),
        ),
        (
            base(
                json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
                        "Condition": {"Null": {"sts:ExternalId": "maybe"}}}),
            ),
            condition("Null", "sts:ExternalId"),
        ),
    ] {
        assert_eq!(
            TrustPolicy::from_json(&document),
            Err(expected),
            "{document}"
        );
    }
}

#[test]
fn legacy_fields_become_equivalent_statements() {
    let issuer = format!("https://{PROVIDER}");
    let entry = format!("arn:aws:iam::{ACCOUNT}:role/entry");
    let user = format!("arn:aws:iam::{ACCOUNT}:user/alice");
    let saml = format!("arn:aws:iam::{ACCOUNT}:saml-provider/p");
    let role = Role {
        arn: format!("arn:aws:iam::{ACCOUNT}:role/r"),
        subjects: vec!["system:serviceaccount:ns:*".into()],
        saml_providers: vec![saml.clone()],
        trusted_roles: vec![entry.clone()],
        trusted_users: vec![user.clone()],
        external_id: Some("ext-1".into()),
        allow_tag_session: true,
        ..Role::default()
    };
    let registered = register(role, &issuer, Dialect::Aws).expect("valid");
    let expected = policy(json!([
        {"Effect": "Allow", "Principal": {"Federated": oidc_provider()},
         "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
         "Condition": {"StringLike": {format!("{PROVIDER}:sub"): "system:serviceaccount:ns:*"},
                       "StringEquals": {format!("{PROVIDER}:aud"): "sts.amazonaws.com"}}},
        {"Effect": "Allow", "Principal": {"Federated": saml},
         "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
         "Condition": {"StringLike": {"SAML:sub": "system:serviceaccount:ns:*"}}},
        {"Effect": "Allow", "Principal": {"AWS": [entry, user]},
         "Action": ["sts:AssumeRole", "sts:TagSession"],
         "Condition": {"StringEquals": {"sts:ExternalId": "ext-1"}}},
    ]));
    assert_eq!(registered.policy.to_json(), expected.to_json());
    assert_eq!(registered.audiences, ["sts.amazonaws.com"]);
    assert_eq!(registered.max_session_duration(), 3600);
    // Without subjects, no token or assertion is trusted at all.
    let bare = Role {
        arn: format!("arn:aws:iam::{ACCOUNT}:role/bare"),
        saml_providers: vec![format!("arn:aws:iam::{ACCOUNT}:saml-provider/p")],
        ..Role::default()
    };
    assert!(
        register(bare, &issuer, Dialect::Aws)
            .expect("valid")
            .policy
            .statements
            .is_empty()
    );
}

#[test]
fn registration_refuses_what_iam_refuses() {
    let issuer = format!("https://{PROVIDER}");
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/r");
    let wildcard = Role {
        arn: arn.clone(),
        trusted_roles: vec![format!("arn:aws:iam::{ACCOUNT}:role/entry-*")],
        ..Role::default()
    };
    assert!(matches!(
        register(wildcard, &issuer, Dialect::Aws),
        Err(RoleError::TrustPolicy {
            error: TrustPolicyError::WildcardPrincipal(_),
            ..
        })
    ));
    for seconds in [3599, 43201] {
        let role = Role {
            arn: arn.clone(),
            max_session_duration: Some(seconds),
            ..Role::default()
        };
        assert_eq!(
            register(role, &issuer, Dialect::Aws).err(),
            Some(RoleError::MaxSessionDuration {
                arn: arn.clone(),
                seconds
            })
        );
    }
    let long = Role {
        arn: arn.clone(),
        max_session_duration: Some(43200),
        ..Role::default()
    };
    assert_eq!(
        register(long, &issuer, Dialect::Aws)
            .expect("valid")
            .max_session_duration(),
        43200
    );
    let bad_arn = Role {
        arn: "arn:aws:iam::123:role/r".into(),
        ..Role::default()
    };
    assert!(matches!(
        register(bad_arn, &issuer, Dialect::Aws),
        Err(RoleError::Arn(_))
    ));
    // Audiences a trust policy names become the accepted ones.
    let audiences = Role {
        arn: arn.clone(),
        trust_policy: Some(policy(json!([{
            "Effect": "Allow", "Principal": {"Federated": oidc_provider()},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{PROVIDER}:aud"): ["minio", "sts.amazonaws.com"]}}
        }]))),
        ..Role::default()
    };
    assert_eq!(
        register(audiences, &issuer, Dialect::Aws)
            .expect("valid")
            .audiences,
        ["minio", "sts.amazonaws.com"]
    );
}

#[test]
fn the_calling_session_is_told_apart_by_its_user_id() {
    let s = role_session("entry", "ns.app");
    let caller = Caller::Aws(&s);
    let pinned = policy(json!([{
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/entry")},
        "Action": "sts:AssumeRole",
        "Condition": {"StringLike": {"aws:userid": "*:ns.app"}},
    }]));
    let mut mine = RequestContext::default();
    mine.set("aws:userid", "AROAENTRY:ns.app");
    let mut another = RequestContext::default();
    another.set("aws:userid", "AROAENTRY:other.app");
    assert_eq!(
        pinned.decide("sts:AssumeRole", &caller, &mine),
        Decision::Allowed
    );
    assert_ne!(
        pinned.decide("sts:AssumeRole", &caller, &another),
        Decision::Allowed
    );
}

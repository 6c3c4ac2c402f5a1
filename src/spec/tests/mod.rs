//! Unit tests of the validate step: one file per section with many cases.

mod image_pull;
mod invalid_specs;
mod role_chains;
mod roles_anywhere;
mod saml;
use std::time::Duration;

use super::rules::{
    DNS_SUBDOMAIN, ROLE_ARN, SESSION_NAME, same_tag_key, starts_with_ignoring_case,
};
use super::*;
use crate::api::{AWSRoleBindingSpec, RoleChainHop};
use crate::patterns::{AWS_TAG_PREFIX, MAX_SESSION_TAGS, RESERVED_TAG_PREFIX};

fn spec() -> AWSRoleBindingSpec {
    serde_json::from_value(serde_json::json!({
        "serviceAccountName": "app",
        "roleArn": "arn:aws:iam::123456789012:role/app-reader",
    }))
    .expect("minimal spec")
}

fn resolve_ok(s: &AWSRoleBindingSpec) -> ResolvedSpec {
    resolve(s, "team-a", "reader", &StsPolicy::default()).expect("valid spec")
}

#[test]
fn defaults_are_applied() {
    let r = resolve_ok(&spec());
    assert_eq!(r.secret_name, "reader");
    assert_eq!(r.audience, "sts.amazonaws.com");
    assert_eq!(r.duration_seconds, 3600);
    assert_eq!(r.session_name, "team-a.reader");
    assert_eq!(r.region, "us-east-1");
    assert_eq!(r.endpoint, None);
    assert_eq!(r.mount_path, "/var/run/secrets/podcreds");
    assert_eq!(r.renew_before, None);
}

/// The shared role ARN table (also run against the apiserver's CEL rule by the e2e suite):
/// (provider, accepted, ARN).
fn role_arn_table() -> Vec<(StsProvider, bool, String)> {
    include_str!("../../../tests/role_arns.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let provider: StsProvider =
                serde_json::from_value(serde_json::json!(parts.next().unwrap_or_default()))
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
            let accepted = match parts.next() {
                Some("accept") => true,
                Some("refuse") => false,
                other => panic!("{line}: {other:?}"),
            };
            (
                provider,
                accepted,
                parts.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn role_arns_follow_the_providers_form() {
    let table = role_arn_table();
    for provider in [StsProvider::Aws, StsProvider::MinIo, StsProvider::CephRgw] {
        for accepted in [true, false] {
            assert!(
                table.iter().any(|c| c.0 == provider && c.1 == accepted),
                "the table lacks {provider:?} accepted={accepted}"
            );
        }
    }
    let policy = StsPolicy {
        allowed_endpoints: vec!["https://127.0.0.1:9000".into()],
        allowed_audiences: vec!["local".into()],
        ..StsPolicy::default()
    };
    for (provider, accepted, arn) in &table {
        let mut s = spec();
        s.role_arn = Some(arn.clone());
        s.audience = Some("local".into());
        s.sts = Some(Box::new(crate::api::StsSettings {
            provider: Some(*provider),
            endpoint: Some("https://127.0.0.1:9000".into()),
            ..Default::default()
        }));
        let result = resolve(&s, "ns", "n", &policy);
        if *accepted {
            let resolved = result.unwrap_or_else(|e| panic!("{provider:?} {arn}: {e}"));
            assert_eq!(resolved.role_arn.as_ref(), Some(arn));
        } else {
            let err = result.expect_err(arn);
            assert_eq!(err.category(), "InvalidSpec", "{arn}");
            assert!(err.to_string().contains("spec.roleArn"), "{err}");
        }
    }
}

#[test]
fn a_binding_without_provider_is_held_to_aws_arns() {
    let mut s = spec();
    s.role_arn = Some("arn:minio:iam:::role/MHR2BeH2-q1dHO2yx5U9Mf-tP9Q".into());
    let err = resolve(&s, "ns", "n", &StsPolicy::default()).expect_err("MinIO ARN");
    assert!(err.to_string().contains("an IAM role ARN"), "{err}");
}

#[test]
fn compatible_providers_need_an_endpoint_that_is_not_aws() {
    let mut s = spec();
    s.role_arn = Some("arn:aws:iam:::role/ceph".into());
    let ceph = |endpoint: Option<&str>| crate::api::StsSettings {
        provider: Some(StsProvider::CephRgw),
        endpoint: endpoint.map(str::to_string),
        ..Default::default()
    };
    // No endpoint at all: the AWS regional endpoint would receive the token.
    s.sts = Some(Box::new(ceph(None)));
    let err = resolve(&s, "ns", "n", &StsPolicy::default()).expect_err("no endpoint");
    assert!(err.to_string().contains("spec.sts.provider"), "{err}");
    // The operator's default endpoint counts.
    let rgw = StsPolicy {
        default_endpoints: vec!["https://rgw.storage.svc:8443".into()],
        ..StsPolicy::default()
    };
    assert!(resolve(&s, "ns", "n", &rgw).is_ok());
    // An allowed AWS endpoint is still AWS.
    let aws = "https://sts.eu-west-1.amazonaws.com";
    let allowing_aws = StsPolicy {
        allowed_endpoints: vec![aws.into()],
        ..StsPolicy::default()
    };
    s.sts = Some(Box::new(ceph(Some(aws))));
    let err = resolve(&s, "ns", "n", &allowing_aws).expect_err("AWS endpoint");
    assert!(
        err.to_string().contains("cannot name an AWS endpoint"),
        "{err}"
    );
}

#[test]
fn aws_endpoints_are_recognised_by_host() {
    for (endpoint, aws) in [
        ("https://sts.amazonaws.com", true),
        ("https://sts.eu-west-1.amazonaws.com/", true),
        ("https://STS.cn-north-1.AmazonAWS.com.cn:443/x", true),
        ("https://user@sts.us-gov-west-1.amazonaws.com", true),
        ("http://127.0.0.1:9000", false),
        ("https://minio.storage.svc:9000", false),
        ("https://amazonaws.com.evil.example", false),
        ("https://sts.amazonaws.com.evil.example/", false),
        ("http://[::1]:9000", false),
    ] {
        assert_eq!(is_aws_endpoint(endpoint), aws, "{endpoint}");
    }
}

#[test]
fn session_names_follow_sts_rules() {
    let long_ns = "n".repeat(63);
    let long_name = "b".repeat(200);
    let s = default_session_name(&long_ns, &long_name);
    assert_eq!(s.len(), 64);
    assert!(SESSION_NAME.is_match(s.as_bytes()), "{s}");
    // Two long names with the same prefix get different session names.
    assert_ne!(s, default_session_name(&long_ns, &format!("{long_name}x")));
    assert_eq!(default_session_name("a", "b"), "a.b");
    let odd = default_session_name("ns", "ná me");
    assert!(SESSION_NAME.is_match(odd.as_bytes()), "{odd}");
}

#[test]
fn cut_default_session_names_keep_the_namespace_and_cannot_be_forged() {
    let ns = "shop";
    let long = format!("reader-{}", "x".repeat(80));
    let cut = default_session_name(ns, &long);
    assert_eq!(cut.len(), 64);
    assert!(cut.starts_with("shop.reader-xxx"), "{cut}");
    assert_eq!(cut.as_bytes()[46], b'_', "{cut}");
    // A binding named after the cut session name would need a `_`, which Kubernetes names
    // cannot hold: no uncut default can equal a cut one.
    let forged = &cut["shop.".len()..];
    assert!(!DNS_SUBDOMAIN.is_match(forged.as_bytes()), "{forged}");
    // 64 characters exactly are kept whole.
    let exact = "y".repeat(64 - "shop.".len());
    assert_eq!(default_session_name(ns, &exact), format!("shop.{exact}"));
    // The namespace prefix stays whole up to 45 characters.
    let ns45 = "n".repeat(45);
    assert!(default_session_name(&ns45, &long).starts_with(&format!("{ns45}.")));
}

#[test]
fn explicit_session_names_must_name_the_namespace() {
    let mut s = spec();
    for (name, ok) in [
        ("team-a.reports", true),
        ("team-a.", true),
        ("prod.payments", false),
        ("team-a", false),
        ("team-ab.x", false),
        ("team-a-x.y", false),
        ("x.team-a.y", false),
    ] {
        s.session_name = Some(name.into());
        match resolve(&s, "team-a", "reader", &StsPolicy::default()) {
            Ok(r) => assert!(ok && r.session_name == name, "{name} accepted"),
            Err(e) => {
                assert!(!ok, "{name} refused: {e}");
                assert_eq!(e.category(), "SessionNameNotAllowed");
                assert_eq!(
                    e.to_string(),
                    format!(
                        "spec.sessionName {name:?} must start with \"team-a.\" (the binding's namespace and a dot), so that CloudTrail shows which namespace acted; ask the cluster admin to allow other session names"
                    )
                );
            }
        }
    }
    let relaxed = StsPolicy {
        allow_unprefixed_session_names: true,
        ..StsPolicy::default()
    };
    s.session_name = Some("prod.payments".into());
    let r = resolve(&s, "team-a", "reader", &relaxed).expect("relaxed");
    assert_eq!(r.session_name, "prod.payments");
    // The STS rules hold either way.
    s.session_name = Some("team-a.has space".into());
    assert_eq!(
        resolve(&s, "team-a", "reader", &relaxed)
            .expect_err("space")
            .category(),
        "InvalidSpec"
    );
}

#[test]
fn explicit_session_names_are_checked() {
    let mut s = spec();
    s.session_name = Some("x".into());
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
    s.session_name = Some("a".repeat(65));
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
    s.session_name = Some("team-a.ok_name@x".into());
    assert_eq!(resolve_ok(&s).session_name, "team-a.ok_name@x");
}

#[test]
fn durations_and_renew_before_are_checked() {
    let mut s = spec();
    s.duration_seconds = 899;
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
    s.duration_seconds = 43201;
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
    s.duration_seconds = 3600;
    s.renew_before = Some("1h".into());
    let err = resolve(&s, "ns", "n", &StsPolicy::default()).expect_err("renewBefore >= duration");
    assert!(err.to_string().contains("shorter than durationSeconds"));
    s.renew_before = Some("30s".into());
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
    s.renew_before = Some("1.5h".into());
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
    s.renew_before = Some("20m30s".into());
    assert_eq!(resolve_ok(&s).renew_before, Some(Duration::from_secs(1230)));
}

#[test]
fn session_policies_must_be_json_objects() {
    let mut s = spec();
    for bad in [
        "[]",
        "{",
        "not json",
        &format!("{{\"a\":\"{}\"}}", "x".repeat(2048)),
    ] {
        s.session_policy = Some(bad.into());
        assert!(
            resolve(&s, "ns", "n", &StsPolicy::default()).is_err(),
            "{bad}"
        );
    }
    s.session_policy = Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into());
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_ok());
}

#[test]
fn policy_arns_are_checked() {
    let mut s = spec();
    s.policy_arns = Some(vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()]);
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_ok());
    s.policy_arns = Some(vec!["arn:aws:iam::123456789012:role/not-a-policy".into()]);
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
    s.policy_arns = Some(vec!["arn:aws:iam::aws:policy/P".into(); 11]);
    assert!(resolve(&s, "ns", "n", &StsPolicy::default()).is_err());
}

#[test]
fn audiences_and_endpoints_need_the_admins_allowlist() {
    let mut s = spec();
    s.audience = Some("https://kubernetes.default.svc".into());
    assert_eq!(
        resolve(&s, "ns", "n", &StsPolicy::default())
            .expect_err("audience")
            .category(),
        "AudienceNotAllowed"
    );
    s.audience = None;
    s.sts = Some(Box::new(crate::api::StsSettings {
        region: Some("eu-west-1".into()),
        endpoint: Some("https://evil.example".into()),
        ..Default::default()
    }));
    assert_eq!(
        resolve(&s, "ns", "n", &StsPolicy::default())
            .expect_err("endpoint")
            .category(),
        "EndpointNotAllowed"
    );
    let policy = StsPolicy {
        allowed_endpoints: vec!["https://evil.example".into()],
        allowed_audiences: vec!["minio".into()],
        ..StsPolicy::default()
    };
    s.audience = Some("minio".into());
    let r = resolve(&s, "ns", "n", &policy).expect("allowed");
    assert_eq!(r.endpoint.as_deref(), Some("https://evil.example"));
    assert_eq!(r.region, "eu-west-1");
    assert_eq!(r.audience, "minio");
}

#[test]
fn plain_http_endpoints_need_the_admins_consent() {
    let mut s = spec();
    // Endpoints that are not AWS get tokens of their own audience only.
    s.audience = Some("minio".into());
    s.sts = Some(Box::new(crate::api::StsSettings {
        provider: None,
        region: None,
        endpoint: Some("http://minio.storage:9000".into()),
        endpoints: None,
    }));
    let mut policy = StsPolicy {
        allowed_endpoints: vec![
            "http://minio.storage:9000".into(),
            "https://sts.example".into(),
        ],
        allowed_audiences: vec!["minio".into()],
        ..StsPolicy::default()
    };
    let err = resolve(&s, "ns", "n", &policy).expect_err("plain http");
    assert_eq!(err.category(), "InsecureEndpoint");
    assert!(
        err.to_string()
            .contains("\"http://minio.storage:9000\" is plain HTTP"),
        "{err}"
    );
    assert_eq!(
        policy.unusable_allowed_endpoints(),
        ["http://minio.storage:9000"]
    );
    // An endpoint outside the allowlist is refused for that first, whatever its scheme.
    s.sts = Some(Box::new(crate::api::StsSettings {
        provider: None,
        region: None,
        endpoint: Some("http://elsewhere".into()),
        endpoints: None,
    }));
    assert_eq!(
        resolve(&s, "ns", "n", &policy)
            .expect_err("not allowed")
            .category(),
        "EndpointNotAllowed"
    );
    // https is fine; plain HTTP with the admin's consent too.
    s.sts = Some(Box::new(crate::api::StsSettings {
        provider: None,
        region: None,
        endpoint: Some("https://sts.example".into()),
        endpoints: None,
    }));
    assert!(resolve(&s, "ns", "n", &policy).is_ok());
    policy.allow_insecure_endpoints = true;
    s.sts = Some(Box::new(crate::api::StsSettings {
        provider: None,
        region: None,
        endpoint: Some("http://minio.storage:9000".into()),
        endpoints: None,
    }));
    assert!(resolve(&s, "ns", "n", &policy).is_ok());
    assert!(policy.unusable_allowed_endpoints().is_empty());
}

#[test]
fn a_plain_http_default_endpoint_is_refused_at_start() {
    let mut policy = StsPolicy {
        default_endpoints: vec!["HTTP://127.0.0.1:9000".into()],
        ..StsPolicy::default()
    };
    let err = policy.check().expect_err("plain http default");
    assert!(
        err.to_string().contains("--allow-insecure-sts-endpoints"),
        "{err}"
    );
    // Bindings relying on it are refused as well, should the start check be bypassed.
    assert_eq!(
        resolve(&spec(), "ns", "n", &policy)
            .expect_err("default endpoint")
            .category(),
        "InsecureEndpoint"
    );
    policy.allow_insecure_endpoints = true;
    assert!(policy.check().is_ok());
    policy.allow_insecure_endpoints = false;
    policy.default_endpoints = vec!["https://sts.example".into()];
    assert!(policy.check().is_ok());
    policy.default_endpoints.clear();
    assert!(policy.check().is_ok());
    assert!(!is_plain_http("https://x") && !is_plain_http("http:/") && is_plain_http("http://x"));
}

#[test]
fn mount_paths_cannot_inject_commands() {
    let mut s = spec();
    for bad in ["relative", "/a b", "/a;rm -rf /", "/a/../b", "/$(id)"] {
        s.mount_path = bad.into();
        assert!(
            resolve(&s, "ns", "n", &StsPolicy::default()).is_err(),
            "{bad}"
        );
    }
    s.mount_path = "/etc/aws/".into();
    assert_eq!(resolve_ok(&s).mount_path, "/etc/aws");
}

proptest::proptest! {
    /// Whatever the apiserver lets through (or an old CRD without validation), resolving
    /// never panics, and whatever it accepts obeys the STS rules.
    #[test]
    fn resolve_is_total_and_sound(
        sa in ".{0,80}",
        arn in "(arn:aws(-[a-z]{1,5})?:iam::[0-9]{10,13}:(role|user)/)?.{0,80}",
        session in proptest::option::of(".{0,80}"),
        policy in proptest::option::of(".{0,300}"),
        renew in proptest::option::of("[0-9a-z. ]{0,12}"),
        duration in -10i32..100_000,
        mount in ".{0,40}",
    ) {
        let mut s = spec();
        s.service_account_name = sa;
        s.role_arn = Some(arn);
        s.session_name = session;
        s.session_policy = policy;
        s.renew_before = renew;
        s.duration_seconds = duration;
        s.mount_path = mount;
        if let Ok(r) = resolve(&s, "ns", "n", &StsPolicy::default()) {
            proptest::prop_assert!(SESSION_NAME.is_match(r.session_name.as_bytes()));
            proptest::prop_assert!((900..=43200).contains(&r.duration_seconds));
            proptest::prop_assert!(r.mount_path.starts_with('/') && !r.mount_path.contains(".."));
            proptest::prop_assert!(ROLE_ARN.is_match(r.role_arn.as_deref().unwrap_or_default().as_bytes()));
        }
    }

    #[test]
    fn default_session_names_are_always_valid(ns in "[a-z0-9-]{1,63}", name in "[a-z0-9.-]{1,253}") {
        let s = default_session_name(&ns, &name);
        proptest::prop_assert!(SESSION_NAME.is_match(s.as_bytes()), "{}", s);
    }

    /// Two bindings of one namespace, even with long names that differ only at the end,
    /// never share a default session name.
    #[test]
    fn default_session_names_of_one_namespace_differ(
        ns in "[a-z0-9-]{1,63}",
        stem in "[a-z0-9.-]{0,240}",
        a in "[a-z0-9.-]{1,12}",
        b in "[a-z0-9.-]{1,12}",
    ) {
        proptest::prop_assume!(a != b);
        proptest::prop_assert_ne!(
            default_session_name(&ns, &format!("{stem}{a}")),
            default_session_name(&ns, &format!("{stem}{b}"))
        );
    }
}

#[test]
fn fingerprint_tracks_credential_shaping_fields() {
    let base = resolve_ok(&spec());
    let mut s = spec();
    s.role_arn = Some("arn:aws:iam::123456789012:role/other".into());
    assert_ne!(base.fingerprint(), resolve_ok(&s).fingerprint());
    let mut s = spec();
    s.duration_seconds = 7200;
    assert_ne!(base.fingerprint(), resolve_ok(&s).fingerprint());
    assert_eq!(base.fingerprint(), resolve_ok(&spec()).fingerprint());
}

/// The fingerprint's input for each kind of first exchange, byte for byte as it was before the
/// first exchange was one enum: a change here refreshes every existing binding on upgrade.
#[test]
fn fingerprint_input_is_stable() {
    let json = |fields: serde_json::Value, policy: &StsPolicy| {
        let mut spec = serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app-reader",
        });
        if let (Some(spec), Some(fields)) = (spec.as_object_mut(), fields.as_object()) {
            for (k, v) in fields {
                spec.insert(k.clone(), v.clone());
            }
        }
        let spec: AWSRoleBindingSpec = serde_json::from_value(spec).expect("spec");
        let r = resolve(&spec, "team-a", "reader", policy).expect("valid");
        serde_json::to_string(&r).expect("json")
    };
    let common = r#""serviceAccountName":"app","roleArn":"arn:aws:iam::123456789012:role/app-reader","secretName":"reader","audience":"sts.amazonaws.com","durationSeconds":3600,"renewBefore":null,"sessionName":"team-a.reader","sessionPolicy":null,"policyArns":[],"region":"us-east-1","endpoint":null,"mountPath":"/var/run/secrets/podcreds""#;
    assert_eq!(
        json(serde_json::json!({}), &StsPolicy::default()),
        format!("{{{common}}}")
    );
    let saml_policy = StsPolicy {
        default_saml_provider_arn: Some("arn:aws:iam::123456789012:saml-provider/p".into()),
        ..StsPolicy::default()
    };
    assert_eq!(
        json(
            serde_json::json!({"saml": {"tags": [{"key": "team", "value": "a"}], "transitiveTagKeys": ["team"]}}),
            &saml_policy
        ),
        format!(
            r#"{{{common},"saml":{{"providerArn":"arn:aws:iam::123456789012:saml-provider/p","sourceIdentity":null,"tags":[["team","a"]],"transitiveTagKeys":["team"]}}}}"#
        )
    );
    assert_eq!(
        json(
            serde_json::json!({"credentialSource": {"name": "keys"}}),
            &StsPolicy::default()
        ),
        format!(
            r#"{{{common},"credentialSource":{{"name":"keys","mode":"AssumeRole","keyDigest":null}}}}"#
        )
    );
    let chain = json(
        serde_json::json!({"roleChain": [{"roleArn": "arn:aws:iam::123456789012:role/next"}]}),
        &StsPolicy::default(),
    );
    assert_eq!(
        chain,
        format!(
            r#"{{{common},"roleChain":[{{"roleArn":"arn:aws:iam::123456789012:role/next","externalId":null,"sessionName":"team-a.reader","sourceIdentity":null,"tags":[],"transitiveTagKeys":[],"sessionPolicy":null,"policyArns":[],"durationSeconds":3600}}]}}"#
        )
    );
}

#[test]
fn federation_names_fit_sts_and_stay_distinct() {
    let valid = |n: &str| {
        (2..=32).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    };
    assert_eq!(federation_name("team-a", "reader"), "team-a.reader");
    let long = federation_name("a-rather-long-namespace", "and-a-long-binding-name");
    assert!(valid(&long), "{long}");
    assert_eq!(long.len(), 32);
    assert!(long.starts_with("a-rather-long-"), "{long}");
    assert_eq!(long.as_bytes()[14], b'_', "{long}");
    assert_eq!(
        long,
        federation_name("a-rather-long-namespace", "and-a-long-binding-name")
    );
    assert_ne!(
        long,
        federation_name("a-rather-long-namespace", "and-a-long-binding-name2")
    );
    // A cut name (with `_`) can never equal the uncut name of another binding.
    assert!(long.contains('_'));
    assert!(valid(&federation_name("a", "b")));
}

proptest::proptest! {
    #[test]
    fn federation_names_are_always_valid(ns in "[a-z0-9-]{1,63}", name in "[a-z0-9.-]{1,253}") {
        let n = federation_name(&ns, &name);
        proptest::prop_assert!((2..=32).contains(&n.len()), "{}", n);
        proptest::prop_assert!(n.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
    }
}

#[test]
fn tokens_assertions_and_signed_requests_go_only_where_they_belong() {
    let elsewhere = "https://sts.storage.example";
    let policy = StsPolicy {
        allowed_endpoints: vec![elsewhere.into()],
        allowed_audiences: vec!["storage".into()],
        default_saml_provider_arn: Some("arn:aws:iam::123456789012:saml-provider/p".into()),
        ..StsPolicy::default()
    };
    let with = |fields: serde_json::Value| {
        let mut spec = serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app-reader",
            "sts": {"endpoint": elsewhere},
        });
        if let (Some(spec), Some(fields)) = (spec.as_object_mut(), fields.as_object()) {
            for (k, v) in fields {
                spec.insert(k.clone(), v.clone());
            }
        }
        let spec: AWSRoleBindingSpec = serde_json::from_value(spec).expect("spec");
        resolve(&spec, "ns", "b", &policy).map_err(|e| e.category())
    };
    // AWS's audience never goes to an endpoint that is not AWS: it could be replayed there.
    assert_eq!(
        with(serde_json::json!({})).map(|_| ()),
        Err("AudienceEndpointMismatch")
    );
    assert!(with(serde_json::json!({"audience": "storage"})).is_ok());
    // SAML assertions and requests signed with an IAM user's keys go to AWS only.
    assert_eq!(
        with(serde_json::json!({"audience": "storage", "saml": {}})).map(|_| ()),
        Err("EndpointNotAllowed")
    );
    assert_eq!(
        with(serde_json::json!({"audience": "storage", "credentialSource": {"name": "keys"}}))
            .map(|_| ()),
        Err("EndpointNotAllowed")
    );
    // The admin's own default endpoint is trusted like AWS (the test environments' emulator).
    let default = StsPolicy {
        default_endpoints: vec![elsewhere.into()],
        ..policy.clone()
    };
    let spec: AWSRoleBindingSpec = serde_json::from_value(serde_json::json!({
        "serviceAccountName": "app",
        "roleArn": "arn:aws:iam::123456789012:role/app-reader",
        "credentialSource": {"name": "keys"},
    }))
    .expect("spec");
    assert!(resolve(&spec, "ns", "b", &default).is_ok());
}

/// Kubernetes session tags go on the first exchange that can carry them, so ABAC works with
/// sessions longer than the hour a chain allows.
#[test]
fn kubernetes_tags_ride_on_the_first_exchange_that_takes_tags() {
    let policy = StsPolicy {
        cluster_name: Some("prod-eu".into()),
        default_saml_provider_arn: Some("arn:aws:iam::123456789012:saml-provider/p".into()),
        ..StsPolicy::default()
    };
    let resolve_with = |fields: serde_json::Value| {
        let mut spec = serde_json::json!({
            "serviceAccountName": "app",
            "kubernetesSessionTags": true,
        });
        if let (Some(spec), Some(fields)) = (spec.as_object_mut(), fields.as_object()) {
            for (k, v) in fields {
                spec.insert(k.clone(), v.clone());
            }
        }
        let spec: AWSRoleBindingSpec = serde_json::from_value(spec).expect("spec");
        resolve(&spec, "team-a", "reader", &policy)
    };
    let expected: Vec<(String, String)> = KUBERNETES_TAG_KEYS
        .iter()
        .map(|k| k.to_string())
        .zip(["team-a", "app", "reader", "prod-eu"].map(String::from))
        .collect();
    let role = "arn:aws:iam::123456789012:role/app";

    let saml = resolve_with(serde_json::json!({"roleArn": role, "saml": {}})).expect("saml");
    let FirstExchange::Saml(assertion) = &saml.first else {
        panic!("not SAML")
    };
    assert_eq!(assertion.tags, expected);
    assert_eq!(assertion.transitive_tag_keys, KUBERNETES_TAG_KEYS);

    let assume =
        resolve_with(serde_json::json!({"roleArn": role, "credentialSource": {"name": "k"}}))
            .expect("source AssumeRole");
    let FirstExchange::CredentialSource(source) = &assume.first else {
        panic!("not a source")
    };
    assert_eq!(source.tags, expected);
    assert_eq!(source.transitive_tag_keys, KUBERNETES_TAG_KEYS);

    let federation = resolve_with(serde_json::json!({
        "credentialSource": {"name": "k", "mode": "GetFederationToken"},
        "sessionPolicy": "{}",
    }))
    .expect("GetFederationToken");
    let FirstExchange::CredentialSource(source) = &federation.first else {
        panic!("not a source")
    };
    assert_eq!(source.tags, expected);
    assert!(source.transitive_tag_keys.is_empty());

    // Web identity and GetSessionToken take no tags: a chain must carry them.
    for fields in [
        serde_json::json!({"roleArn": role}),
        serde_json::json!({"credentialSource": {"name": "k", "mode": "GetSessionToken"}}),
    ] {
        let err = resolve_with(fields).expect_err("no carrier");
        assert!(err.to_string().contains("kubernetesSessionTags"), "{err}");
    }
    // A chain after SAML inherits the tags and may not set them again.
    let chained = resolve_with(serde_json::json!({
        "roleArn": role,
        "saml": {},
        "roleChain": [{"roleArn": "arn:aws:iam::123456789012:role/next"}],
    }))
    .expect("chain after SAML");
    assert!(chained.role_chain[0].tags.is_empty());
    // And a SAML assertion then takes 46 tags of the binding's own.
    let many: Vec<serde_json::Value> = (0..47)
        .map(|i| serde_json::json!({"key": format!("k{i}"), "value": "v"}))
        .collect();
    let err = resolve_with(serde_json::json!({"roleArn": role, "saml": {"tags": many}}))
        .expect_err("too many");
    assert!(err.to_string().contains("at most 46 tags"), "{err}");
}

/// Every binding under `examples/` is valid as it stands (with an admin policy that allows what
/// the examples name), and every source there deserialises: a README reader copies them.
#[test]
fn every_example_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut bindings = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(document).expect("YAML");
            let kind = value.get("kind").and_then(serde_yaml::Value::as_str);
            match kind {
                Some("AWSRoleBinding") => {
                    let binding: crate::api::AWSRoleBinding = serde_yaml::from_value(value)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let ns = binding.metadata.namespace.clone().expect("namespace");
                    let name = binding.metadata.name.clone().expect("name");
                    let policy = StsPolicy {
                        cluster_name: Some("example".into()),
                        allowed_audiences: binding.spec.audience.iter().cloned().collect(),
                        allowed_endpoints: binding
                            .spec
                            .sts
                            .as_ref()
                            .map(|s| {
                                s.endpoint
                                    .iter()
                                    .chain(s.endpoints.iter().flatten())
                                    .cloned()
                                    .collect()
                            })
                            .unwrap_or_default(),
                        allowed_saml_provider_arns: binding
                            .spec
                            .saml
                            .as_ref()
                            .and_then(|s| s.provider_arn.clone())
                            .into_iter()
                            .collect(),
                        allow_insecure_endpoints: true,
                        ..StsPolicy::default()
                    };
                    resolve(&binding.spec, &ns, &name, &policy)
                        .unwrap_or_else(|e| panic!("{} {ns}/{name}: {e}", path.display()));
                    bindings += 1;
                }
                Some("AWSCredentialSource") => {
                    serde_yaml::from_value::<crate::api::AWSCredentialSource>(value)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                _ => {}
            }
        }
    }
    assert!(bindings >= 9, "only {bindings} example bindings found");
}

/// `sts.endpoints`: an ordered fail-over list, each endpoint held to the rules of one.
#[test]
fn an_endpoint_list_is_checked_endpoint_by_endpoint() {
    const A: &str = "https://sts-a.storage.svc";
    const B: &str = "https://sts-b.storage.svc";
    const C: &str = "https://sts-c.storage.svc";
    let policy = StsPolicy {
        allowed_endpoints: vec![
            A.into(),
            B.into(),
            C.into(),
            "http://plain.storage.svc".into(),
            "https://sts.eu-west-1.amazonaws.com".into(),
        ],
        allowed_audiences: vec!["storage".into()],
        default_saml_provider_arn: Some("arn:aws:iam::123456789012:saml-provider/p".into()),
        ..StsPolicy::default()
    };
    let with = |sts: serde_json::Value, extra: serde_json::Value| {
        let mut spec = serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app-reader",
            "audience": "storage",
            "sts": sts,
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        let spec: AWSRoleBindingSpec = serde_json::from_value(spec).expect("spec");
        resolve(&spec, "ns", "b", &policy)
    };
    let none = serde_json::json!({});
    let listed = with(serde_json::json!({"endpoints": [A, B, C]}), none.clone()).expect("valid");
    assert_eq!(listed.endpoint.as_deref(), Some(A));
    assert_eq!(listed.fallback_endpoints, [B, C]);
    assert_eq!(listed.sts_endpoints().collect::<Vec<_>>(), [A, B, C]);

    // The fingerprint holds the first endpoint only: one endpoint written either way, and any
    // change of the fall-backs, issue nothing new; another first endpoint does.
    let fingerprint = |sts| with(sts, none.clone()).expect("valid").fingerprint();
    let single = fingerprint(serde_json::json!({"endpoint": A}));
    assert_eq!(fingerprint(serde_json::json!({"endpoints": [A]})), single);
    assert_eq!(
        fingerprint(serde_json::json!({"endpoints": [A, B]})),
        single
    );
    assert_eq!(
        fingerprint(serde_json::json!({"endpoints": [A, C, B]})),
        single
    );
    assert_ne!(
        fingerprint(serde_json::json!({"endpoints": [B, A]})),
        single
    );

    let refused = |sts, extra| with(sts, extra).expect_err("refused");
    let e = refused(
        serde_json::json!({"endpoints": [A, "https://evil.example"]}),
        none.clone(),
    );
    assert_eq!(e.category(), "EndpointNotAllowed");
    assert!(
        e.to_string()
            .starts_with("spec.sts.endpoints \"https://evil.example\" is not in"),
        "{e}"
    );
    for (sts, field) in [
        (
            serde_json::json!({"endpoint": A, "endpoints": [B]}),
            "sts.endpoints",
        ),
        (
            serde_json::json!({"endpoints": [A, B, A]}),
            "sts.endpoints[2]",
        ),
        (serde_json::json!({"endpoints": []}), "sts.endpoints"),
        (
            serde_json::json!({"endpoints": [A, B, C, "https://d", "https://e"]}),
            "sts.endpoints",
        ),
        (
            serde_json::json!({"endpoints": [A, "ftp://x"]}),
            "sts.endpoints",
        ),
    ] {
        match refused(sts.clone(), none.clone()) {
            SpecError::Invalid { field: f, .. } => assert_eq!(f, field, "{sts}"),
            other => panic!("{sts}: {other}"),
        }
    }
    // Every endpoint of the list may receive the token: AWS's audience goes to none that is
    // not AWS, a SAML assertion only to AWS, plain HTTP only with the admin's consent.
    assert_eq!(
        refused(
            serde_json::json!({"endpoints": ["https://sts.eu-west-1.amazonaws.com", A]}),
            serde_json::json!({"audience": null}),
        )
        .category(),
        "AudienceEndpointMismatch"
    );
    assert_eq!(
        refused(
            serde_json::json!({"endpoints": ["https://sts.eu-west-1.amazonaws.com", B]}),
            serde_json::json!({"audience": null, "saml": {}}),
        )
        .category(),
        "EndpointNotAllowed"
    );
    assert_eq!(
        refused(
            serde_json::json!({"endpoints": [A, "http://plain.storage.svc"]}),
            none.clone()
        )
        .category(),
        "InsecureEndpoint"
    );
    // An STS-compatible provider never lists AWS.
    let minio = refused(
        serde_json::json!({"provider": "MinIO", "endpoints": [A, "https://sts.eu-west-1.amazonaws.com"]}),
        serde_json::json!({"roleArn": "arn:minio:iam:::role/x"}),
    );
    assert!(
        matches!(&minio, SpecError::Invalid { field, .. } if field == "sts.provider"),
        "{minio}"
    );
}

/// `--sts-endpoints`: the installation's ordered default list, trusted like AWS.
#[test]
fn the_default_endpoint_list_serves_bindings_that_name_none() {
    const A: &str = "https://sts.eu-west-1.amazonaws.com";
    const X: &str = "https://sts.storage.svc";
    let policy = StsPolicy {
        default_endpoints: vec![X.into(), A.into()],
        ..StsPolicy::default()
    };
    assert!(policy.check().is_ok());
    let r = resolve(&spec(), "ns", "b", &policy).expect("valid");
    assert_eq!(r.sts_endpoints().collect::<Vec<_>>(), [X, A]);
    // A binding may name the defaults (in another order) without the allowlist, with AWS's
    // audience: every default endpoint is trusted like AWS.
    let mut listed = spec();
    listed.sts = Some(Box::new(crate::api::StsSettings {
        endpoints: Some(vec![A.into(), X.into()]),
        ..Default::default()
    }));
    let r = resolve(&listed, "ns", "b", &policy).expect("valid");
    assert_eq!(r.sts_endpoints().collect::<Vec<_>>(), [A, X]);
    assert_eq!(r.audience, AWS_STS_AUDIENCE);

    for (endpoints, problem) in [
        (vec![X, X], "twice"),
        (vec![X, "sts.storage.svc"], "not an http(s) URL"),
        (vec!["https://"], "not an http(s) URL"),
    ] {
        let policy = StsPolicy {
            default_endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            ..StsPolicy::default()
        };
        let e = policy.check().expect_err("refused");
        assert!(e.to_string().contains(problem), "{e}");
    }
}

#[test]
fn delivery_defaults_to_a_secret_and_stays_out_of_the_fingerprint() {
    let plain = resolve_ok(&spec());
    assert_eq!(
        plain.delivery,
        Deliveries {
            secret: true,
            endpoint: false
        }
    );
    let both: AWSRoleBindingSpec = serde_json::from_value(serde_json::json!({
        "serviceAccountName": "app",
        "roleArn": "arn:aws:iam::123456789012:role/app-reader",
        "delivery": ["Secret", "Endpoint"],
    }))
    .expect("spec");
    let endpoint: AWSRoleBindingSpec = serde_json::from_value(serde_json::json!({
        "serviceAccountName": "app",
        "roleArn": "arn:aws:iam::123456789012:role/app-reader",
        "delivery": ["Endpoint"],
    }))
    .expect("spec");
    let (both, endpoint) = (resolve_ok(&both), resolve_ok(&endpoint));
    assert!(both.delivery.secret && both.delivery.endpoint);
    assert!(!endpoint.delivery.secret && endpoint.delivery.endpoint);
    // The same credentials serve every delivery: changing it alone costs no exchange.
    assert_eq!(plain.fingerprint(), both.fingerprint());
    assert_eq!(plain.fingerprint(), endpoint.fingerprint());
}

use super::*;

const ANCHOR: &str = "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/6b1c5a52-0f0e-4c44-9a55-3c1f6f3f5d2e";
const PROFILE: &str =
    "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/0b8b6d1c-5d8e-4ab0-a1b7-8c3e7d9f2a41";

fn ra_spec(extra: serde_json::Value) -> AWSRoleBindingSpec {
    let mut spec = serde_json::json!({
        "serviceAccountName": "app",
        "roleArn": "arn:aws:iam::123456789012:role/r",
        "rolesAnywhere": {"trustAnchorArn": ANCHOR, "profileArn": PROFILE},
    });
    if let (Some(base), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
        base.extend(extra);
    }
    serde_json::from_value(spec).expect("spec")
}

fn error(extra: serde_json::Value, policy: &StsPolicy) -> String {
    resolve(&ra_spec(extra), "ns", "b", policy)
        .expect_err("invalid")
        .to_string()
}

#[test]
fn create_session_goes_to_the_trust_anchors_region_with_the_operators_defaults() {
    let r = resolve(
        &ra_spec(serde_json::json!({})),
        "ns",
        "b",
        &StsPolicy::default(),
    )
    .expect("valid");
    let FirstExchange::RolesAnywhere(ra) = &r.first else {
        panic!("not Roles Anywhere")
    };
    assert_eq!(ra.region, "eu-west-1");
    assert_eq!(ra.role_arn, "arn:aws:iam::123456789012:role/r");
    assert_eq!(r.first.name(), "RolesAnywhere");
    assert!(r.first.sets_source_identity());

    // Both ARNs may come from the operator; without them the binding says which flag is missing.
    let bare = ra_spec(serde_json::json!({"rolesAnywhere": {}}));
    let with_defaults = StsPolicy {
        default_trust_anchor_arn: Some(ANCHOR.into()),
        default_profile_arn: Some(PROFILE.into()),
        rolesanywhere_endpoint: Some("https://ra.example".into()),
        ..StsPolicy::default()
    };
    let r = resolve(&bare, "ns", "b", &with_defaults).expect("valid");
    let FirstExchange::RolesAnywhere(ra) = &r.first else {
        panic!("not Roles Anywhere")
    };
    assert_eq!(
        (ra.trust_anchor_arn.as_str(), ra.profile_arn.as_str()),
        (ANCHOR, PROFILE)
    );
    assert_eq!(ra.endpoint.as_deref(), Some("https://ra.example"));
    let err = resolve(&bare, "ns", "b", &StsPolicy::default())
        .expect_err("no trust anchor")
        .to_string();
    assert!(err.contains("--rolesanywhere-trust-anchor-arn"), "{err}");
}

#[test]
fn what_create_session_cannot_do_is_refused() {
    let policy = StsPolicy::default();
    let other_region = PROFILE.replace("eu-west-1", "us-east-1");
    assert!(
        error(
            serde_json::json!({"rolesAnywhere": {"trustAnchorArn": ANCHOR, "profileArn": other_region}}),
            &policy
        )
        .contains("trust anchor's region")
    );
    assert!(
        error(
            serde_json::json!({"sessionPolicy": "{\"Version\":\"2012-10-17\",\"Statement\":[]}"}),
            &policy
        )
        .contains("takes no session policy")
    );
    assert!(
        error(
            serde_json::json!({"saml": {"providerArn": "arn:aws:iam::123456789012:saml-provider/p"}}),
            &policy
        )
        .contains("set one of them")
    );
    // The certificate sets the source identity; STS keeps it for the whole chain.
    let err = error(
        serde_json::json!({"roleChain": [{
            "roleArn": "arn:aws:iam::123456789012:role/hop",
            "sourceIdentity": "ns.someone",
        }]}),
        &policy,
    );
    assert!(
        err.contains("Roles Anywhere sets the source identity"),
        "{err}"
    );
    // Only to AWS: a certificate-signed request is no token for another endpoint.
    let err = error(
        serde_json::json!({"sts": {"endpoint": "https://minio.example"}}),
        &StsPolicy {
            allowed_endpoints: vec!["https://minio.example".into()],
            ..StsPolicy::default()
        },
    );
    assert!(err.contains("workload certificate"), "{err}");
}

#[test]
fn the_fingerprint_names_the_trust_anchor_and_profile() {
    let r = resolve(
        &ra_spec(serde_json::json!({})),
        "ns",
        "b",
        &StsPolicy::default(),
    )
    .expect("valid");
    let other = resolve(
        &ra_spec(serde_json::json!({"rolesAnywhere": {
            "trustAnchorArn": ANCHOR.replace("6b1c", "7b1c"), "profileArn": PROFILE,
        }})),
        "ns",
        "b",
        &StsPolicy::default(),
    )
    .expect("valid");
    assert_ne!(r.fingerprint(), other.fingerprint());
}

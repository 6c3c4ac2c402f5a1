//! `imagePullSecret`: its Secret name, registries and the region of each one's token, and the
//! admin's ECR endpoint.

use super::*;

fn pulling(pull: serde_json::Value) -> AWSRoleBindingSpec {
    let mut s = spec();
    s.image_pull_secret = Some(serde_json::from_value(pull).expect("imagePullSecret"));
    s
}

#[test]
fn registries_take_the_token_of_their_region() {
    let policy = StsPolicy {
        ecr_endpoint: Some("https://ecr.internal.example".into()),
        ..StsPolicy::default()
    };
    let s = pulling(serde_json::json!({"registries": [
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        "210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "registry.test:5000",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example",
    ]}));
    let r = resolve(&s, "team-a", "reader", &policy).expect("valid");
    let pull = r.image_pull_secret.expect("pull secret");
    assert_eq!(pull.secret_name, "reader-ecr");
    assert!(!pull.add_to_service_account);
    assert_eq!(
        pull.endpoint.as_deref(),
        Some("https://ecr.internal.example")
    );
    let regions: Vec<&str> = pull.registries.iter().map(|r| r.region.as_str()).collect();
    assert_eq!(
        regions,
        [
            "eu-west-1",
            "us-gov-west-1",
            "cn-north-1",
            "us-east-1",
            "us-east-1"
        ]
    );
    assert_eq!(
        pull.regions(),
        ["eu-west-1", "us-gov-west-1", "cn-north-1", "us-east-1"]
    );
}

#[test]
fn the_pull_secret_changes_the_fingerprint_only_when_asked_for() {
    let plain = resolve_ok(&spec());
    let pull = resolve_ok(&pulling(
        serde_json::json!({"registries": ["registry.test:5000"]}),
    ));
    assert_ne!(plain.fingerprint(), pull.fingerprint());
    let listed = resolve_ok(&pulling(serde_json::json!({
        "registries": ["registry.test:5000"], "addToServiceAccount": true,
    })));
    assert_ne!(pull.fingerprint(), listed.fingerprint());
    // The admin's endpoint is not the binding's: changing it issues nothing new.
    let policy = StsPolicy {
        ecr_endpoint: Some("https://ecr.internal.example".into()),
        ..StsPolicy::default()
    };
    let s = pulling(serde_json::json!({"registries": ["registry.test:5000"]}));
    let elsewhere = resolve(&s, "team-a", "reader", &policy).expect("valid");
    assert_eq!(pull.fingerprint(), elsewhere.fingerprint());
}

#[test]
fn bad_pull_secrets_are_refused() {
    let refused = |pull: serde_json::Value| {
        resolve(&pulling(pull), "team-a", "reader", &StsPolicy::default())
            .expect_err("refused")
            .to_string()
    };
    assert!(refused(serde_json::json!({"registries": []})).contains("imagePullSecret.registries"));
    assert!(
        refused(serde_json::json!({"registries": ["https://registry.test"]}))
            .contains("imagePullSecret.registries[0]")
    );
    assert!(
        refused(serde_json::json!({"registries": ["a.test", "a.test"]}))
            .contains("imagePullSecret.registries[1]")
    );
    assert!(
        refused(serde_json::json!({"registries": ["a.test"], "secretName": "reader"}))
            .contains("the credentials' Secret")
    );
    assert!(
        refused(serde_json::json!({"registries": ["a.test"], "secretName": "Not_A_Name"}))
            .contains("imagePullSecret.secretName")
    );
    let mut minio = pulling(serde_json::json!({"registries": ["a.test"]}));
    minio.role_arn = Some("arn:minio:iam:::role/abc".into());
    minio.sts = Some(Box::new(crate::api::StsSettings {
        provider: Some(crate::api::StsProvider::MinIo),
        endpoint: Some("https://minio.test".into()),
        ..Default::default()
    }));
    let policy = StsPolicy {
        allowed_endpoints: vec!["https://minio.test".into()],
        ..StsPolicy::default()
    };
    let e = resolve(&minio, "team-a", "reader", &policy).expect_err("refused");
    assert!(e.to_string().contains("sts.provider AWS"), "{e}");
}

#[test]
fn the_ecr_endpoint_is_held_to_the_rules_of_sts_endpoints() {
    let plain = StsPolicy {
        ecr_endpoint: Some("http://127.0.0.1:4566".into()),
        ..StsPolicy::default()
    };
    assert_eq!(
        plain.check(),
        Err(PolicyError::InsecureEcrEndpoint(
            "http://127.0.0.1:4566".into()
        ))
    );
    let allowed = StsPolicy {
        allow_insecure_endpoints: true,
        ..plain
    };
    assert_eq!(allowed.check(), Ok(()));
    let not_url = StsPolicy {
        ecr_endpoint: Some("ecr.example".into()),
        ..StsPolicy::default()
    };
    assert_eq!(
        not_url.check(),
        Err(PolicyError::InvalidEcrEndpoint("ecr.example".into()))
    );
}

#[test]
fn the_example_resolves() {
    let binding: crate::api::AWSRoleBinding =
        serde_yaml::from_str(include_str!("../../../examples/ecr-pull.yaml")).expect("example");
    let r = resolve(&binding.spec, "ci", "builds", &StsPolicy::default()).expect("valid");
    let pull = r.image_pull_secret.expect("pull secret");
    assert_eq!(pull.secret_name, "ecr-pull");
    assert!(pull.add_to_service_account);
    assert_eq!(pull.regions(), ["eu-west-1"]);
}

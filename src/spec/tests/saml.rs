use super::*;

const PROVIDER: &str = "arn:aws:iam::123456789012:saml-provider/podcreds";

fn spec_with(saml: serde_json::Value) -> AWSRoleBindingSpec {
    serde_json::from_value(serde_json::json!({
        "serviceAccountName": "app",
        "roleArn": "arn:aws:iam::123456789012:role/r",
        "saml": saml,
    }))
    .expect("spec")
}

fn with_default() -> StsPolicy {
    StsPolicy {
        default_saml_provider_arn: Some(PROVIDER.into()),
        ..StsPolicy::default()
    }
}

#[test]
fn the_provider_defaults_to_the_operators() {
    let r = resolve(
        &spec_with(serde_json::json!({})),
        "ns",
        "b",
        &with_default(),
    )
    .expect("valid");
    let FirstExchange::Saml(saml) = r.first else {
        panic!("not a SAML exchange")
    };
    assert_eq!(saml.provider_arn, PROVIDER);
    let err = resolve(
        &spec_with(serde_json::json!({})),
        "ns",
        "b",
        &StsPolicy::default(),
    )
    .expect_err("no provider");
    assert!(err.to_string().contains("saml.providerArn"), "{err}");
}

#[test]
fn bindings_without_saml_keep_their_fingerprint() {
    let mut plain = spec_with(serde_json::json!({}));
    plain.saml = None;
    let r = resolve(&plain, "ns", "b", &with_default()).expect("valid");
    assert!(!serde_json::to_string(&r).expect("json").contains("saml"));
    let with = resolve(
        &spec_with(serde_json::json!({})),
        "ns",
        "b",
        &with_default(),
    )
    .expect("valid");
    assert_ne!(r.fingerprint(), with.fingerprint());
}

#[test]
fn hostile_saml_specs_are_refused() {
    for (saml, field) in [
        (
            serde_json::json!({"providerArn": "arn:aws:iam::123456789012:role/r"}),
            "saml.providerArn",
        ),
        (
            serde_json::json!({"sourceIdentity": "aws:me"}),
            "saml.sourceIdentity",
        ),
        (
            serde_json::json!({"sourceIdentity": "a<b>"}),
            "saml.sourceIdentity",
        ),
        (
            serde_json::json!({"tags": [{"key": "Kubernetes-ns", "value": "x"}]}),
            "saml.tags",
        ),
        (
            serde_json::json!({"tags": [{"key": "a", "value": "<&>"}]}),
            "saml.tags",
        ),
        (
            serde_json::json!({"tags": [{"key": "a", "value": "1"}, {"key": "A", "value": "2"}]}),
            "saml.tags",
        ),
        (
            serde_json::json!({"tags": [{"key": "a", "value": "1"}], "transitiveTagKeys": ["b"]}),
            "saml.transitiveTagKeys",
        ),
    ] {
        let err = resolve(&spec_with(saml.clone()), "ns", "b", &with_default())
            .expect_err(&saml.to_string());
        assert!(err.to_string().contains(field), "{saml}: {err}");
    }
    let mut minio = spec_with(serde_json::json!({}));
    minio.role_arn = Some("arn:minio:iam:::role/x".into());
    minio.sts = Some(Box::new(crate::api::StsSettings {
        provider: Some(StsProvider::MinIo),
        endpoint: Some("https://minio.example".into()),
        ..Default::default()
    }));
    let policy = StsPolicy {
        allowed_endpoints: vec!["https://minio.example".into()],
        ..with_default()
    };
    let err = resolve(&minio, "ns", "b", &policy).expect_err("MinIO");
    assert!(err.to_string().contains("sts.provider AWS"), "{err}");
}

#[test]
fn a_chain_cannot_override_what_the_assertion_made_transitive() {
    let mut spec = spec_with(serde_json::json!({
        "tags": [{"key": "team", "value": "a"}],
        "transitiveTagKeys": ["team"],
    }));
    spec.role_chain = vec![RoleChainHop {
        role_arn: "arn:aws:iam::123456789012:role/next".into(),
        tags: vec![crate::api::SessionTag {
            key: "TEAM".into(),
            value: "b".into(),
        }],
        ..RoleChainHop::default()
    }];
    let err = resolve(&spec, "ns", "b", &with_default()).expect_err("override");
    assert!(err.to_string().contains("transitive"), "{err}");
}

#[test]
fn saml_and_a_credential_source_exclude_each_other() {
    let mut spec = spec_with(serde_json::json!({}));
    spec.credential_source =
        serde_json::from_value(serde_json::json!({"name": "ci-user", "mode": "AssumeRole"}))
            .expect("source");
    let err = resolve(&spec, "ns", "b", &with_default()).expect_err("both");
    assert!(err.to_string().contains("set one of them"), "{err}");
}

#[test]
fn the_source_identity_is_set_once() {
    let mut spec = spec_with(serde_json::json!({"sourceIdentity": "ns.alice"}));
    spec.role_chain = vec![RoleChainHop {
        role_arn: "arn:aws:iam::123456789012:role/next".into(),
        source_identity: Some("ns.bob".into()),
        ..RoleChainHop::default()
    }];
    let err = resolve(&spec, "ns", "b", &with_default()).expect_err("twice");
    assert!(
        err.to_string().contains("roleChain[0].sourceIdentity"),
        "{err}"
    );
}

#[test]
fn the_documented_example_resolves() {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../../examples/saml.yaml")).expect("YAML");
    let spec: AWSRoleBindingSpec = serde_yaml::from_value(doc["spec"].clone()).expect("spec");
    let policy = StsPolicy {
        allowed_saml_provider_arns: vec!["arn:aws:iam::123456789012:saml-provider/podcreds".into()],
        ..StsPolicy::default()
    };
    let r = resolve(&spec, "batch", "batch-reader", &policy).expect("valid");
    let FirstExchange::Saml(saml) = r.first else {
        panic!("not a SAML exchange")
    };
    assert_eq!(saml.tags, [("team".to_string(), "reporting".to_string())]);
    assert_eq!(saml.source_identity.as_deref(), Some("batch.reports"));
}

#[test]
fn only_providers_the_admin_allows_are_asserted_to() {
    let other = "arn:aws:iam::999999999999:saml-provider/elsewhere";
    let spec = spec_with(serde_json::json!({"providerArn": other}));
    let err = resolve(&spec, "ns", "b", &with_default()).expect_err("not allowed");
    assert_eq!(err.category(), "SamlProviderNotAllowed");
    assert!(
        err.to_string().contains("--saml-allowed-provider-arns"),
        "{err}"
    );
    let allowed = StsPolicy {
        allowed_saml_provider_arns: vec![other.into()],
        ..with_default()
    };
    assert!(resolve(&spec, "ns", "b", &allowed).is_ok());
}

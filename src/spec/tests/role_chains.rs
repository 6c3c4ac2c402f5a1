use super::*;

include!("../../../tests/data/role_chain_cases.rs");

fn policy() -> StsPolicy {
    StsPolicy {
        cluster_name: Some("prod-eu".into()),
        allowed_endpoints: vec![CHAIN_CASE_ENDPOINT.into()],
        ..StsPolicy::default()
    }
}

fn binding(fields: serde_json::Value) -> AWSRoleBindingSpec {
    let mut spec = chain_case_base();
    if let (Some(base), serde_json::Value::Object(fields)) = (spec.as_object_mut(), fields) {
        base.extend(fields);
    }
    serde_json::from_value(spec).expect("spec")
}

fn resolve_chain_spec(fields: serde_json::Value) -> Result<ResolvedSpec, SpecError> {
    resolve(&binding(fields), "team-a", "reader", &policy())
}

#[test]
fn the_shared_hostile_table_is_refused() {
    let cases = chain_cases();
    assert!(cases.len() >= 25, "the table lost its cases");
    for case in cases {
        // The end-to-end test checks the apiserver's side of every case.
        assert!(!case.apiserver.is_empty(), "{}", case.name);
        let err = resolve_chain_spec(case.fields)
            .map(|_| ())
            .expect_err(case.name);
        assert_eq!(err.category(), "InvalidSpec", "{}: {err}", case.name);
        assert!(
            err.to_string().contains(case.operator),
            "{}: {err} lacks {:?}",
            case.name,
            case.operator
        );
    }
}

#[test]
fn the_documented_example_resolves() {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../../examples/role-chain.yaml")).expect("YAML");
    let spec: AWSRoleBindingSpec = serde_yaml::from_value(doc["spec"].clone()).expect("spec");
    let r = resolve(&spec, "ci", "artifacts-writer", &policy()).expect("valid");
    assert_eq!(r.role_chain.len(), 2);
    // It asks for what a chain can hold, which works with roles left at IAM's defaults.
    assert!(!r.chained_duration_clamped());
    assert_eq!(r.role_chain[0].tags.len(), 4 + 2);
    assert_eq!(r.role_chain[0].transitive_tag_keys.len(), 4 + 1);
    assert_eq!(r.role_chain[1].session_name, "ci.artifacts-writer");
}

#[test]
fn hops_get_defaults_and_durations() {
    let r = resolve_chain_spec(serde_json::json!({
        "durationSeconds": 7200,
        "roleChain": [
            {"roleArn": CHAIN_CASE_HOP_ROLE, "externalId": "ext-1", "sourceIdentity": "team-a.alice"},
            {"roleArn": CHAIN_CASE_HOP_ROLE, "sessionName": "team-a.last"},
        ],
    }))
    .expect("valid chain");
    assert_eq!(r.role_chain.len(), 2);
    let (first, last) = (&r.role_chain[0], &r.role_chain[1]);
    assert_eq!(first.session_name, "team-a.reader");
    assert_eq!(first.external_id.as_deref(), Some("ext-1"));
    assert_eq!(first.source_identity.as_deref(), Some("team-a.alice"));
    // Intermediate credentials only sign the next call; the last one is capped at 1 h.
    assert_eq!(first.duration_seconds, 900);
    assert_eq!(last.duration_seconds, 3600);
    assert_eq!(last.session_name, "team-a.last");
    assert!(r.chained_duration_clamped());
    assert_eq!(
        r.role_arns().collect::<Vec<_>>(),
        [
            CHAIN_CASE_ENTRY_ROLE,
            CHAIN_CASE_HOP_ROLE,
            CHAIN_CASE_HOP_ROLE
        ]
    );
    let short = resolve_chain_spec(serde_json::json!({
        "durationSeconds": 1800, "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}],
    }))
    .expect("valid");
    assert_eq!(short.role_chain[0].duration_seconds, 1800);
    assert!(!short.chained_duration_clamped());
}

#[test]
fn hop_session_names_must_name_the_namespace() {
    let err = resolve_chain_spec(serde_json::json!({
        "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE, "sessionName": "prod.payments"}],
    }))
    .expect_err("another namespace's session name");
    assert_eq!(err.category(), "SessionNameNotAllowed");
    assert!(
        err.to_string()
            .starts_with("spec.roleChain[0].sessionName \"prod.payments\" must start with"),
        "{err}"
    );
}

#[test]
fn kubernetes_tags_are_transitive_on_the_first_hop_only() {
    let r = resolve_chain_spec(serde_json::json!({
        "kubernetesSessionTags": true,
        "roleChain": [
            {"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "team", "value": "a"}]},
            {"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "stage", "value": "b"}]},
        ],
    }))
    .expect("valid");
    let first = &r.role_chain[0];
    let expected = [
        ("kubernetes-namespace", "team-a"),
        ("kubernetes-service-account", "app"),
        ("kubernetes-binding-name", "reader"),
        ("kubernetes-cluster-name", "prod-eu"),
        ("team", "a"),
    ];
    assert_eq!(
        first
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(first.transitive_tag_keys, KUBERNETES_TAG_KEYS);
    assert_eq!(
        r.role_chain[1].tags,
        [("stage".to_string(), "b".to_string())]
    );
    // No cluster name configured: refused with a reason of its own.
    let err = resolve(
        &binding(serde_json::json!({
            "kubernetesSessionTags": true,
            "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}],
        })),
        "team-a",
        "reader",
        &StsPolicy::default(),
    )
    .expect_err("no cluster name");
    assert_eq!(err.category(), "ClusterNameNotConfigured");
    // A later hop cannot override the inherited Kubernetes tags either (reserved prefix).
    let err = resolve_chain_spec(serde_json::json!({
        "kubernetesSessionTags": true,
        "roleChain": [
            {"roleArn": CHAIN_CASE_HOP_ROLE},
            {"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "KUBERNETES-NAMESPACE", "value": "x"}]},
        ],
    }))
    .expect_err("forged");
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[test]
fn limits_are_inclusive() {
    let tags: Vec<_> = (0..50)
        .map(|i| serde_json::json!({"key": format!("k{i}"), "value": "v".repeat(256)}))
        .collect();
    let keys: Vec<_> = (0..50).map(|i| format!("k{i}")).collect();
    let r = resolve_chain_spec(serde_json::json!({
        "roleChain": [{
            "roleArn": CHAIN_CASE_HOP_ROLE,
            "externalId": "e".repeat(1224),
            "sourceIdentity": format!("team-a.{}", "i".repeat(57)),
            "tags": tags,
            "transitiveTagKeys": keys,
            "sessionPolicy": format!("{{\"Sid\":\"{}\"}}", "p".repeat(2048 - 10)),
        }],
    }))
    .expect("every limit reached, none passed");
    assert_eq!(r.role_chain[0].tags.len(), 50);
    // A key of 128 characters, an empty value.
    assert!(
        resolve_chain_spec(serde_json::json!({
            "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "k".repeat(128), "value": ""}]}],
        }))
        .is_ok()
    );
}

#[test]
fn the_fingerprint_covers_the_chain_and_only_a_chain() {
    let plain = resolve_ok(&spec());
    let canonical = serde_json::to_string(&plain).expect("json");
    assert!(!canonical.contains("roleChain"), "{canonical}");
    let one =
        resolve_chain_spec(serde_json::json!({"roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}]}))
            .expect("valid");
    let tagged = resolve_chain_spec(serde_json::json!({
        "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE, "tags": [{"key": "t", "value": "v"}]}],
    }))
    .expect("valid");
    assert_ne!(one.fingerprint(), tagged.fingerprint());
    let with_k8s = resolve_chain_spec(serde_json::json!({
        "kubernetesSessionTags": true, "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}],
    }))
    .expect("valid");
    assert_ne!(one.fingerprint(), with_k8s.fingerprint());
    // Another cluster name is another set of tags.
    let elsewhere = resolve(
        &binding(serde_json::json!({
            "kubernetesSessionTags": true, "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE}],
        })),
        "team-a",
        "reader",
        &StsPolicy {
            cluster_name: Some("prod-us".into()),
            ..policy()
        },
    )
    .expect("valid");
    assert_ne!(with_k8s.fingerprint(), elsewhere.fingerprint());
}

#[test]
fn a_cluster_name_must_be_a_tag_value() {
    for (name, ok) in [("prod-eu", true), ("", false), ("a;b", false)] {
        let policy = StsPolicy {
            cluster_name: Some(name.into()),
            ..StsPolicy::default()
        };
        assert_eq!(policy.check().is_ok(), ok, "{name:?}");
    }
    let long = StsPolicy {
        cluster_name: Some("c".repeat(257)),
        ..StsPolicy::default()
    };
    assert!(long.check().is_err());
}

proptest::proptest! {
    /// Whatever tags a tenant writes, what the operator accepts obeys STS: at most 50 per
    /// call, keys unique regardless of case, no reserved key from the tenant, every
    /// transitive key one of the hop's tags.
    #[test]
    fn accepted_tags_obey_sts(
        keys in proptest::collection::vec("[A-Za-z0-9:_ -]{0,10}", 0..60),
        transitive in proptest::collection::vec(0usize..60, 0..5),
        kubernetes in proptest::bool::ANY,
    ) {
        let tags: Vec<_> = keys
            .iter()
            .map(|k| serde_json::json!({"key": k, "value": "v"}))
            .collect();
        let transitive: Vec<_> = transitive
            .iter()
            .filter_map(|i| keys.get(*i).cloned())
            .collect();
        let result = resolve_chain_spec(serde_json::json!({
            "kubernetesSessionTags": kubernetes,
            "roleChain": [{"roleArn": CHAIN_CASE_HOP_ROLE, "tags": tags, "transitiveTagKeys": transitive}],
        }));
        if let Ok(r) = result {
            let hop = &r.role_chain[0];
            proptest::prop_assert!(hop.tags.len() <= MAX_SESSION_TAGS);
            for (i, (k, _)) in hop.tags.iter().enumerate() {
                proptest::prop_assert!(!k.is_empty() && k.len() <= 128);
                proptest::prop_assert!(!starts_with_ignoring_case(k, AWS_TAG_PREFIX));
                proptest::prop_assert!(
                    hop.tags.iter().skip(i + 1).all(|(other, _)| !same_tag_key(k, other))
                );
            }
            let reserved = hop
                .tags
                .iter()
                .filter(|(k, _)| starts_with_ignoring_case(k, RESERVED_TAG_PREFIX))
                .count();
            proptest::prop_assert_eq!(reserved, if kubernetes { 4 } else { 0 });
            for key in &hop.transitive_tag_keys {
                proptest::prop_assert!(hop.tags.iter().any(|(k, _)| same_tag_key(k, key)));
            }
        }
    }
}

use super::*;
use crate::spec::{StsPolicy, resolve};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
use secrecy::SecretString;

fn creds() -> IssuedCredentials {
    IssuedCredentials {
        access_key_id: "ASIAEXAMPLE0000001".into(),
        secret_access_key: SecretString::from("secret/key+value".to_string()),
        session_token: SecretString::from("token==".to_string()),
        expiration: Timestamp::from_second(1_800_003_600).expect("time"),
        assumed_role_arn: Some("arn:aws:sts::123456789012:assumed-role/app/ns.b".into()),
        chain: None,
        sts_endpoint: None,
    }
}

fn owner() -> Owner {
    Owner {
        api_version: "podcreds.dev/v1alpha1".into(),
        kind: "AWSRoleBinding".into(),
        name: "b".into(),
        uid: "uid-1".into(),
    }
}

fn rendered() -> Secret {
    let spec = resolve(
        &serde_json::from_value(serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app",
            "sts": {"region": "eu-west-1"}
        }))
        .expect("spec"),
        "ns",
        "b",
        &StsPolicy::default(),
    )
    .expect("valid");
    let c = creds();
    let o = owner();
    render(&Rendering {
        namespace: "ns",
        owner: &o,
        spec: &spec,
        fingerprint: "fp",
        credentials: &c,
        issued_at: Timestamp::from_second(1_800_000_000).expect("time"),
        renewal_time: Timestamp::from_second(1_800_002_400).expect("time"),
        writer: "default/test",
    })
}

fn data(secret: &Secret, key: &str) -> String {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .expect(key)
        .0
        .clone();
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn credential_process_output_parses() {
    let s = rendered();
    let doc: serde_json::Value =
        serde_json::from_str(&data(&s, KEY_CREDENTIAL_PROCESS)).expect("json");
    assert_eq!(doc["Version"], 1);
    assert_eq!(doc["AccessKeyId"], "ASIAEXAMPLE0000001");
    assert_eq!(doc["SecretAccessKey"], "secret/key+value");
    assert_eq!(doc["SessionToken"], "token==");
    assert_eq!(doc["Expiration"], "2027-01-15T09:00:00Z");
}

fn ini(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once(" = ") {
            out.insert(format!("{section}.{k}"), v.to_string());
        } else {
            assert!(line.trim().is_empty(), "unparsable line {line:?}");
        }
    }
    out
}

#[test]
fn config_and_credentials_files_parse() {
    let s = rendered();
    let config = ini(&data(&s, KEY_CONFIG));
    assert_eq!(config["default.region"], "eu-west-1");
    assert_eq!(
        config["default.credential_process"],
        "cat /var/run/secrets/podcreds/credential-process.json"
    );
    let creds = ini(&data(&s, KEY_CREDENTIALS));
    assert_eq!(creds["default.aws_access_key_id"], "ASIAEXAMPLE0000001");
    assert_eq!(creds["default.aws_secret_access_key"], "secret/key+value");
    assert_eq!(creds["default.aws_session_token"], "token==");
}

#[test]
fn env_keys_and_metadata_are_set() {
    let s = rendered();
    assert_eq!(data(&s, KEY_REGION), "eu-west-1");
    assert_eq!(data(&s, KEY_EXPIRATION), "2027-01-15T09:00:00Z");
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    let owner = controller_of(&s.metadata).expect("controller ref");
    assert_eq!(owner.uid, "uid-1");
    assert_eq!(owner.block_owner_deletion, Some(true));
    let keys: Vec<&str> = s
        .data
        .as_ref()
        .expect("data")
        .keys()
        .map(String::as_str)
        .collect();
    for k in DATA_KEYS {
        assert!(keys.contains(&k), "{k}");
    }
    let issued = issued_meta(&s.metadata).expect("annotations read back");
    assert_eq!(issued.fingerprint, "fp");
    assert_eq!(issued.expiration, creds().expiration);
}

fn observed_meta(mut meta: ObjectMeta) -> SecretRecord {
    meta.namespace = Some("ns".into());
    SecretRecord::read(&meta)
}

/// What the Secret cache's record of `meta` says about the credentials, for the owner `uid-1`.
fn cached_issued(meta: &ObjectMeta) -> Option<IssuedMeta> {
    match SecretRecord::read(meta).observe("uid-1") {
        ObservedSecret::Owned { issued, .. } => issued,
        _ => None,
    }
}

/// Whether the Secret cache's record of `meta` finds it intact, for the owner `uid-1`.
fn cached_intact(meta: &ObjectMeta) -> bool {
    matches!(
        SecretRecord::read(meta).observe("uid-1"),
        ObservedSecret::Owned { intact: true, .. }
    )
}

fn entry(manager: &str, operation: &str, keys: &[&str]) -> ManagedFieldsEntry {
    let data: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .map(|k| (format!("f:{k}"), serde_json::json!({})))
        .collect();
    ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some(operation.into()),
        fields_v1: Some(FieldsV1(serde_json::json!({ "f:data": data }))),
        ..ManagedFieldsEntry::default()
    }
}

#[test]
fn observation_classifies_ownership() {
    assert_eq!(observe(None, "uid-1"), ObservedSecret::Missing);
    let mine = observed_meta(rendered().metadata);
    match observe(Some(&mine), "uid-1") {
        ObservedSecret::Owned {
            issued: Some(_),
            intact: true,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        observe(Some(&mine), "other-uid"),
        ObservedSecret::Foreign { owner: Some(o) } if o == "AWSRoleBinding/b"
    ));
    let unowned = observed_meta(ObjectMeta {
        name: Some("b".into()),
        ..ObjectMeta::default()
    });
    assert_eq!(
        observe(Some(&unowned), "uid-1"),
        ObservedSecret::Foreign { owner: None }
    );
}

#[test]
fn a_revocation_removes_every_credential_and_what_describes_them() {
    let patch = revocation_patch(Some("42"));
    assert_eq!(patch["metadata"]["resourceVersion"], "42");
    for key in CREDENTIAL_KEYS {
        assert!(
            patch["data"][key].is_null() && patch["data"].get(key).is_some(),
            "{key}"
        );
    }
    // Every key that holds a secret is among them; config and region stay.
    for key in [
        KEY_SECRET_ACCESS_KEY,
        KEY_SESSION_TOKEN,
        KEY_CREDENTIALS,
        KEY_CREDENTIAL_PROCESS,
    ] {
        assert!(CREDENTIAL_KEYS.contains(&key));
    }
    assert!(patch["data"].get(KEY_CONFIG).is_none());
    // Without the annotations the planner sees no credentials there.
    let mut meta = rendered().metadata;
    if let (Some(a), Some(removed)) = (
        meta.annotations.as_mut(),
        patch["metadata"]["annotations"].as_object(),
    ) {
        a.retain(|k, _| !removed.contains_key(k));
    }
    assert_eq!(issued_meta(&meta), None);
}

#[test]
fn only_the_secret_the_binding_created_is_deletable() {
    let mut mine = rendered().metadata;
    mine.uid = Some("secret-uid".into());
    assert_eq!(
        deletable_as_left_behind(&mine, "uid-1", "secret-uid"),
        Ok(())
    );
    // The status names another Secret UID (forged, or a namesake created since).
    assert_eq!(
        deletable_as_left_behind(&mine, "uid-1", "victim-uid"),
        Err(KeptBecause::OtherUid)
    );
    // Another binding's Secret.
    assert_eq!(
        deletable_as_left_behind(&mine, "uid-2", "secret-uid"),
        Err(KeptBecause::NotControlled)
    );
    // Anyone's Secret that podcreds never labelled, whatever the status says about it.
    let victim = ObjectMeta {
        name: Some("victim".into()),
        uid: Some("victim-uid".into()),
        ..ObjectMeta::default()
    };
    assert_eq!(
        deletable_as_left_behind(&victim, "uid-1", "victim-uid"),
        Err(KeptBecause::NotLabelled)
    );
    let mut going = mine.clone();
    going.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::from_second(1_800_000_000).expect("time"),
    ));
    assert_eq!(
        deletable_as_left_behind(&going, "uid-1", "secret-uid"),
        Err(KeptBecause::BeingDeleted)
    );
}

#[test]
fn hand_edits_are_detected_from_managed_fields() {
    let mut meta = rendered().metadata;
    meta.managed_fields = Some(vec![entry(FIELD_MANAGER, "Apply", &DATA_KEYS)]);
    assert!(intact(&meta));
    // Someone added an unrelated key: fine.
    meta.managed_fields = Some(vec![
        entry(FIELD_MANAGER, "Apply", &DATA_KEYS),
        entry("kubectl-edit", "Update", &["extra"]),
    ]);
    assert!(intact(&meta));
    // Someone changed one of ours.
    meta.managed_fields = Some(vec![
        entry(FIELD_MANAGER, "Apply", &DATA_KEYS[1..]),
        entry("kubectl-edit", "Update", &[KEY_CREDENTIAL_PROCESS]),
    ]);
    assert!(!intact(&meta));
    // Someone deleted one of ours.
    meta.managed_fields = Some(vec![entry(FIELD_MANAGER, "Apply", &DATA_KEYS[2..])]);
    assert!(!intact(&meta));
    // Someone pushed the expiration annotation to 2099 (so podcreds would wait while the
    // credentials lapse); an unrelated annotation is fine.
    let annotated = |key: &str| {
        let mut e = entry("kubectl-annotate", "Update", &[]);
        e.fields_v1 = Some(FieldsV1(
            serde_json::json!({"f:metadata": {"f:annotations": {format!("f:{key}"): {}}}}),
        ));
        e
    };
    meta.managed_fields = Some(vec![
        entry(FIELD_MANAGER, "Apply", &DATA_KEYS),
        annotated(ANNOTATION_EXPIRATION),
    ]);
    assert!(!intact(&meta));
    meta.managed_fields = Some(vec![
        entry(FIELD_MANAGER, "Apply", &DATA_KEYS),
        annotated("team"),
    ]);
    assert!(intact(&meta));
}

#[test]
fn the_cache_keeps_nothing_a_tenant_can_inflate() {
    let mut meta = rendered().metadata;
    let big = "x".repeat(200_000);
    if let Some(a) = meta.annotations.as_mut() {
        a.insert("podcreds.dev/junk".into(), big.clone());
        a.insert("example.com/junk".into(), big.clone());
        a.insert(ANNOTATION_ASSUMED_ROLE_ARN.into(), big.clone());
        a.insert(ANNOTATION_WRITTEN_BY.into(), big.clone());
    }
    if let Some(owners) = meta.owner_references.as_mut() {
        for i in 0..100 {
            owners.push(OwnerReference {
                name: format!("o{i}"),
                uid: format!("u{i}"),
                ..OwnerReference::default()
            });
        }
    }
    meta.managed_fields = Some(vec![
        entry(FIELD_MANAGER, "Apply", &DATA_KEYS),
        entry("kubectl-edit", "Update", &[KEY_CREDENTIAL_PROCESS]),
        entry("someone", "Update", &[big.as_str()]),
    ]);
    let record = SecretRecord::read(&meta);
    assert!(
        record.retained_bytes() < 2_000,
        "{} bytes kept",
        record.retained_bytes()
    );
    assert!(!cached_intact(&meta));
    // Oversized values of podcreds' annotations were not written by podcreds and are not read;
    // the record still knows whose Secret it is.
    assert!(matches!(
        record.observe("other-uid"),
        ObservedSecret::Foreign { owner: Some(o) } if o == "AWSRoleBinding/b"
    ));
}

proptest::proptest! {
    /// Arbitrary annotations (someone edited the Secret) never panic the reader, and what it
    /// accepts is ordered issued <= renewal <= expiration.
    #[test]
    fn issued_meta_is_total(
        issued in ".{0,30}", expiration in ".{0,30}", renewal in ".{0,30}",
        fp in proptest::option::of(".{0,20}"),
    ) {
        let mut a = BTreeMap::from([
            (ANNOTATION_ISSUED_AT.to_string(), issued),
            (ANNOTATION_EXPIRATION.to_string(), expiration),
            (ANNOTATION_RENEWAL_TIME.to_string(), renewal),
        ]);
        if let Some(fp) = fp {
            a.insert(ANNOTATION_FINGERPRINT.to_string(), fp);
        }
        let meta = ObjectMeta { annotations: Some(a), ..ObjectMeta::default() };
        if let Some(m) = issued_meta(&meta) {
            proptest::prop_assert!(m.issued_at <= m.renewal_time && m.renewal_time <= m.expiration);
        }
    }
}

#[test]
fn the_cached_record_decides_as_the_metadata_would() {
    let mut meta = rendered().metadata;
    let full_entry = |manager: &str, keys: &[&str]| {
        let mut e = entry(manager, "Apply", keys);
        if let Some(f) = e.fields_v1.as_mut() {
            f.0["f:metadata"] =
                serde_json::json!({"f:annotations": {"f:x": {}}, "f:labels": {"f:y": {}}});
        }
        e
    };
    for entries in [
        vec![full_entry(FIELD_MANAGER, &DATA_KEYS)],
        vec![
            full_entry(FIELD_MANAGER, &DATA_KEYS[1..]),
            full_entry("kubectl-edit", &[KEY_CREDENTIAL_PROCESS]),
        ],
        vec![
            full_entry(FIELD_MANAGER, &DATA_KEYS),
            full_entry("helm", &[]),
        ],
    ] {
        meta.managed_fields = Some(entries);
        assert_eq!(intact(&meta), cached_intact(&meta));
        assert_eq!(issued_meta(&meta), cached_issued(&meta));
    }
}

#[test]
fn unreadable_annotations_read_as_none() {
    let mut meta = rendered().metadata;
    if let Some(a) = meta.annotations.as_mut() {
        a.insert(ANNOTATION_EXPIRATION.into(), "yesterday".into());
    }
    assert_eq!(issued_meta(&meta), None);
}

#[test]
fn a_role_chain_is_recorded_and_read_back_within_the_cache_bound() {
    use crate::credentials::{ChainRecord, HopRecord};
    // The largest record podcreds writes: five hops, each ARN at the stored maximum.
    let widest = ChainRecord {
        clamped_from: Some(43200),
        hops: (0..crate::patterns::MAX_CHAIN_HOPS)
            .map(|_| HopRecord {
                assumed_role_arn: Some(crate::text::identifier(&"a".repeat(5000))),
                expiration: Timestamp::from_second(1_800_003_600).expect("time"),
                packed_policy_size: Some(1000),
            })
            .collect(),
    };
    let value = chain_annotation(&widest).expect("serialises");
    assert!(
        value.len() <= MAX_ANNOTATION_VALUE,
        "{} bytes would be dropped by the Secret cache",
        value.len()
    );
    let mut c = creds();
    c.chain = Some(widest.clone());
    let spec = resolve(
        &serde_json::from_value(serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app",
        }))
        .expect("spec"),
        "ns",
        "b",
        &StsPolicy::default(),
    )
    .expect("valid");
    let mut secret = render(&Rendering {
        namespace: "ns",
        owner: &owner(),
        spec: &spec,
        fingerprint: "fp",
        credentials: &c,
        issued_at: Timestamp::from_second(1_800_000_000).expect("time"),
        renewal_time: Timestamp::from_second(1_800_002_400).expect("time"),
        writer: "default/test",
    });
    let read = cached_issued(&secret.metadata).expect("annotations");
    assert_eq!(read.chain, Some(widest));
    // Without a chain there is no annotation, and an unreadable one only loses the report.
    assert!(
        !rendered()
            .metadata
            .annotations
            .expect("annotations")
            .contains_key(ANNOTATION_ROLE_CHAIN)
    );
    if let Some(a) = secret.metadata.annotations.as_mut() {
        a.insert(ANNOTATION_ROLE_CHAIN.into(), "{not json".into());
    }
    let read = issued_meta(&secret.metadata).expect("still readable");
    assert_eq!(read.chain, None);
    assert_eq!(read.fingerprint, "fp");
}

#[test]
fn the_endpoint_that_issued_the_credentials_is_kept_for_the_status() {
    // None (the AWS regional endpoint, or a version that did not record it): no annotation.
    let plain = rendered();
    assert!(
        !plain
            .metadata
            .annotations
            .as_ref()
            .expect("annotations")
            .contains_key(ANNOTATION_STS_ENDPOINT)
    );
    assert_eq!(
        issued_meta(&plain.metadata)
            .expect("annotations")
            .sts_endpoint,
        None
    );
    let mut c = creds();
    c.sts_endpoint = Some("https://sts.eu-central-1.amazonaws.com".into());
    let spec = resolve(
        &serde_json::from_value(serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app",
        }))
        .expect("spec"),
        "ns",
        "b",
        &StsPolicy::default(),
    )
    .expect("valid");
    let secret = render(&Rendering {
        namespace: "ns",
        owner: &owner(),
        spec: &spec,
        fingerprint: "fp",
        credentials: &c,
        issued_at: Timestamp::from_second(1_800_000_000).expect("time"),
        renewal_time: Timestamp::from_second(1_800_002_400).expect("time"),
        writer: "default/test",
    });
    // The cache keeps it, and a revocation removes it with the credentials.
    assert_eq!(
        cached_issued(&secret.metadata)
            .expect("annotations")
            .sts_endpoint
            .as_deref(),
        Some("https://sts.eu-central-1.amazonaws.com")
    );
    assert!(
        revocation_patch(None)["metadata"]["annotations"]
            .as_object()
            .expect("annotations")
            .contains_key(ANNOTATION_STS_ENDPOINT)
    );
}

use super::*;

fn labelled(installation: Option<&str>) -> AWSRoleBinding {
    let mut b: AWSRoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "podcreds.dev/v1alpha1", "kind": "AWSRoleBinding",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": {"serviceAccountName": "app", "roleArn": "arn:aws:iam::123456789012:role/app"},
    }))
    .expect("binding");
    b.metadata.labels = installation.map(|i| {
        std::collections::BTreeMap::from([(crate::installation::LABEL.to_string(), i.to_string())])
    });
    b
}

#[test]
fn an_oversized_spec_is_not_cached() {
    let mut small = labelled(None);
    bound_spec(&mut small);
    assert_eq!(oversized_spec(&small), None);
    assert_eq!(small.spec, labelled(None).spec);
    // A user's annotation of the same name never survives compaction.
    small.metadata.annotations = Some(std::collections::BTreeMap::from([(
        OVERSIZED_SPEC_ANNOTATION.to_string(),
        "1".to_string(),
    )]));
    compact_binding(&mut small.metadata);
    bound_spec(&mut small);
    assert_eq!(oversized_spec(&small), None);

    // A two-hop chain of maximal tags, transitive keys and ARNs: over the bound.
    let tags: Vec<serde_json::Value> = (0..50)
        .map(|i| serde_json::json!({"key": format!("{i:0>128}"), "value": "v".repeat(256)}))
        .collect();
    let keys: Vec<String> = (0..50).map(|i| format!("{i:0>128}")).collect();
    let hop = serde_json::json!({
        "roleArn": format!("arn:aws:iam::123456789012:role/{}/r", "p".repeat(1900)),
        "externalId": "x".repeat(1224),
        "tags": tags,
        "transitiveTagKeys": keys,
    });
    let mut big = labelled(None);
    big.spec = serde_json::from_value(serde_json::json!({
        "serviceAccountName": "app",
        "secretName": "creds",
        "roleArn": "arn:aws:iam::123456789012:role/app",
        "roleChain": [hop.clone(), hop.clone(), hop],
    }))
    .expect("spec");
    let size = serde_json::to_vec(&big.spec).map(|v| v.len()).unwrap_or(0);
    assert!(size > MAX_SPEC_BYTES, "{size}");
    bound_spec(&mut big);
    assert_eq!(oversized_spec(&big), Some(size));
    assert!(big.spec.role_chain.is_empty());
    assert_eq!(big.spec.secret_name.as_deref(), Some("creds"));
    let cached = serde_json::to_vec(&big)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    assert!(cached < 2_000, "{cached} bytes cached");
}

#[test]
fn the_default_installation_sees_only_its_own_bindings() {
    let default = crate::installation::DEFAULT;
    let mine = labelled(None);
    let theirs = labelled(Some("blue"));
    assert!(matches!(
        own_bindings(default, watcher::Event::InitApply(mine.clone())),
        Some(watcher::Event::InitApply(_))
    ));
    assert!(own_bindings(default, watcher::Event::InitApply(theirs.clone())).is_none());
    assert!(matches!(
        own_bindings(default, watcher::Event::Apply(labelled(Some("default")))),
        Some(watcher::Event::Apply(_))
    ));
    // Relabelled for another installation: gone from this one's cache, as with a selector.
    assert!(matches!(
        own_bindings(default, watcher::Event::Apply(theirs.clone())),
        Some(watcher::Event::Delete(_))
    ));
    assert!(matches!(
        own_bindings(default, watcher::Event::Delete(theirs)),
        Some(watcher::Event::Delete(_))
    ));
    assert!(matches!(
        own_bindings(default, watcher::Event::InitDone),
        Some(watcher::Event::InitDone)
    ));
    // A named installation's selector already did this; what passes is its own.
    assert!(matches!(
        own_bindings("blue", watcher::Event::Apply(mine)),
        Some(watcher::Event::Delete(_))
    ));
}

#[tokio::test]
async fn every_waiter_learns_that_the_initial_list_is_complete() {
    let (listed, synced) = tokio::sync::watch::channel(false);
    let events: Vec<Result<watcher::Event<Secret>, watcher::Error>> = vec![
        Ok(watcher::Event::Init),
        Ok(watcher::Event::InitApply(Secret::default())),
        Ok(watcher::Event::InitDone),
    ];
    // Several reconciliations wait at once, as after a restart next to existing bindings.
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let mut synced = synced.clone();
            tokio::spawn(async move { synced.wait_for(|s| *s).await.is_ok() })
        })
        .collect();
    // Let every waiter start waiting before the list completes.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut stream = std::pin::pin!(tell_when_listed(futures::stream::iter(events), listed));
    // Not complete before InitDone has passed.
    stream.next().await;
    stream.next().await;
    assert!(!*synced.borrow());
    stream.next().await;
    for waiter in waiters {
        let woken = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(woken, Ok(Ok(true))), "a waiter was not woken");
    }
}

#[test]
fn a_secret_change_wakes_only_its_controller() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let owner = |name: &str, controller: Option<bool>| OwnerReference {
        api_version: "podcreds.dev/v1alpha1".into(),
        kind: "AWSRoleBinding".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        controller,
        ..OwnerReference::default()
    };
    let mut owners: Vec<OwnerReference> = (0..100)
        .map(|i| owner(&format!("other-{i}"), None))
        .collect();
    owners.push(owner("b", Some(true)));
    let mut meta = ObjectMeta {
        name: Some("s".into()),
        namespace: Some("ns".into()),
        owner_references: Some(owners),
        annotations: Some(std::collections::BTreeMap::from([(
            "example.com/large".to_string(),
            "x".repeat(10_000),
        )])),
        ..ObjectMeta::default()
    };
    only_controller(&mut meta);
    assert_eq!(
        meta,
        ObjectMeta {
            name: Some("s".into()),
            namespace: Some("ns".into()),
            owner_references: Some(vec![owner("b", Some(true))]),
            ..ObjectMeta::default()
        }
    );
}

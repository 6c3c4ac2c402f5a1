use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::*;
use crate::api::{
    AWSCredentialSource, AWSCredentialSourceSpec, CredentialSourceMode, SecretReference,
};
use secrecy::ExposeSecret;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

fn asking<'a>(namespace: &'a str, labels: &'a BTreeMap<String, String>) -> Requester<'a> {
    Requester { namespace, labels }
}

fn source(allowed: &[&str]) -> AWSCredentialSource {
    AWSCredentialSource::new(
        "keys",
        AWSCredentialSourceSpec {
            secret_ref: SecretReference {
                name: "user-keys".into(),
                namespace: "podcreds-system".into(),
            },
            allowed_namespaces: allowed.iter().map(|s| s.to_string()).collect(),
            ..AWSCredentialSourceSpec::default()
        },
    )
}

#[test]
fn an_installation_serves_only_the_sources_whose_secret_is_in_its_namespace() {
    let sources = |namespace: Option<&str>| Sources {
        operator_namespace: namespace.map(str::to_string),
        sources: kube::runtime::reflector::store::Writer::default().as_reader(),
        secrets: kube::runtime::reflector::store::Writer::default().as_reader(),
        synced: tokio::sync::watch::channel(true).1,
    };
    let src = source(&["team-a"]);
    assert!(sources(Some("podcreds-system")).owned(&src).is_ok());
    let other = sources(Some("podcreds-b")).owned(&src).unwrap_err();
    assert_eq!(other.category(), "CredentialSourceUnavailable");
    assert!(
        other
            .to_string()
            .contains("installation in namespace \"podcreds-system\""),
        "{other}"
    );
    assert!(matches!(
        sources(None).owned(&src),
        Err(SourceError::NoOperatorNamespace)
    ));
}

#[test]
fn namespaces_match_whole_names_prefixes_and_star() {
    let allowed = |list: &[&str], ns| {
        namespace_allowed(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ns)
    };
    assert!(allowed(&["team-a"], "team-a"));
    assert!(!allowed(&["team-a"], "team-ab"));
    assert!(!allowed(&["team-a"], "team"));
    assert!(allowed(&["team-*"], "team-b"));
    assert!(allowed(&["team-*"], "team-"));
    assert!(!allowed(&["team-*"], "tea"));
    assert!(allowed(&["*"], "anything"));
    assert!(!allowed(&[], "team-a"));
}

#[test]
fn keys_must_be_present_and_well_formed() {
    let ok = read_keys(Some(&data(&[
        (ACCESS_KEY_ID_KEY, "AKIAEXAMPLE12345678"),
        (
            SECRET_ACCESS_KEY_KEY,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    ])))
    .expect("well formed");
    assert_eq!(ok.access_key_id, "AKIAEXAMPLE12345678");
    assert_eq!(
        ok.secret_access_key.expose_secret(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    assert!(!format!("{ok:?}").contains("wJalr"));
    assert_eq!(
        read_keys(None).unwrap_err(),
        KeysError::Missing(ACCESS_KEY_ID_KEY)
    );
    assert_eq!(
        read_keys(Some(&data(&[(ACCESS_KEY_ID_KEY, "AKIAEXAMPLE")]))).unwrap_err(),
        KeysError::Missing(SECRET_ACCESS_KEY_KEY)
    );
    for bad_secret in ["short", "has space inside the secret", "trailing-newline\n"] {
        let err = read_keys(Some(&data(&[
            (ACCESS_KEY_ID_KEY, "AKIAEXAMPLE"),
            (SECRET_ACCESS_KEY_KEY, bad_secret),
        ])))
        .unwrap_err();
        assert_eq!(err, KeysError::Malformed(SECRET_ACCESS_KEY_KEY));
        // What is wrong is said without the value.
        assert!(!err.to_string().contains(bad_secret.trim()), "{err}");
    }
}

#[test]
fn sources_are_checked_in_order_and_errors_name_the_fix() {
    let no_labels = BTreeMap::new();
    let secret = Secret {
        data: Some(data(&[
            (ACCESS_KEY_ID_KEY, "AKIAEXAMPLE"),
            (SECRET_ACCESS_KEY_KEY, "secret-value-123"),
        ])),
        ..Secret::default()
    };
    let src = source(&["team-*"]);
    let e = check_source("keys", None, None, Some(asking("team-a", &no_labels))).unwrap_err();
    assert_eq!(e.category(), "CredentialSourceNotFound");
    let e = check_source(
        "keys",
        Some(&src),
        Some(&secret),
        Some(asking("other", &no_labels)),
    )
    .unwrap_err();
    assert_eq!(e.category(), "CredentialSourceNotAllowed");
    assert!(e.to_string().contains("add it"), "{e}");
    let e = check_source("keys", Some(&src), None, Some(asking("team-a", &no_labels))).unwrap_err();
    assert_eq!(e.category(), "CredentialSourceSecretMissing");
    let e = check_source(
        "keys",
        Some(&src),
        Some(&Secret::default()),
        Some(asking("team-a", &no_labels)),
    )
    .unwrap_err();
    assert_eq!(e.category(), "CredentialSourceSecretInvalid");
    assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
    let keys = check_source(
        "keys",
        Some(&src),
        Some(&secret),
        Some(asking("team-a", &no_labels)),
    )
    .expect("ok");
    assert_eq!(keys.access_key_id, "AKIAEXAMPLE");
    // The source's own readiness ignores namespaces.
    assert!(check_source("keys", Some(&src), Some(&secret), None).is_ok());
    assert!(!format!("{e:?}").contains("secret-value-123"));
}

#[test]
fn compacting_keeps_only_the_keys() {
    let mut secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("s".into()),
            annotations: Some(BTreeMap::from([("a".into(), "b".into())])),
            ..Default::default()
        },
        data: Some(data(&[
            (ACCESS_KEY_ID_KEY, "AKIAEXAMPLE"),
            ("release", "a large Helm release"),
        ])),
        ..Secret::default()
    };
    compact_secret(&mut secret);
    assert_eq!(secret.metadata.name.as_deref(), Some("s"));
    assert!(secret.metadata.annotations.is_none());
    let keys: Vec<_> = secret.data.unwrap_or_default().into_keys().collect();
    assert_eq!(keys, [ACCESS_KEY_ID_KEY]);
}

#[test]
fn a_source_grants_only_what_it_says() {
    let assume = |role: &'static str, seconds| Grant {
        mode: CredentialSourceMode::AssumeRole,
        role_arn: Some(role),
        duration_seconds: seconds,
    };
    let session_token = Grant {
        mode: CredentialSourceMode::GetSessionToken,
        role_arn: None,
        duration_seconds: 3600,
    };
    // By default: AssumeRole of any role, up to 12 hours; no mode that assumes no role.
    let plain = source(&["*"]);
    assert_eq!(
        check_grant("keys", &plain, assume("arn:aws:iam::1:role/a", 43200)),
        Ok(())
    );
    assert!(matches!(
        check_grant("keys", &plain, session_token),
        Err(SourceError::ModeNotAllowed { .. })
    ));
    assert!(matches!(
        check_grant("keys", &plain, assume("arn:aws:iam::1:role/a", 43201)),
        Err(SourceError::DurationNotAllowed { max: 43200, .. })
    ));
    // Roles are matched path-aware, as the namespace allowlist does.
    let mut narrow = source(&["*"]);
    narrow.spec.allowed_role_arns = vec!["arn:aws:iam::1:role/team-a-*".into()];
    narrow.spec.allowed_modes = vec![
        CredentialSourceMode::AssumeRole,
        CredentialSourceMode::GetSessionToken,
    ];
    assert_eq!(
        check_grant(
            "keys",
            &narrow,
            assume("arn:aws:iam::1:role/team-a-reader", 900)
        ),
        Ok(())
    );
    let refused = check_grant(
        "keys",
        &narrow,
        assume("arn:aws:iam::1:role/team-a-x/admin", 900),
    );
    assert!(
        matches!(refused, Err(SourceError::RoleNotAllowed { .. })),
        "{refused:?}"
    );
    assert_eq!(check_grant("keys", &narrow, session_token), Ok(()));
    assert_eq!(
        refused.map_err(|e| e.category()),
        Err("CredentialSourceRoleNotAllowed")
    );
    assert_eq!(
        allowlist_entry("keys", CredentialSourceMode::GetSessionToken),
        "podcreds:credential-source/keys/GetSessionToken"
    );
}

#[test]
fn namespaces_are_admitted_by_name_or_by_the_labels_the_admin_set() {
    let mut src = source(&["team-*"]);
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(source_admits(&src, "team-a", &labels(&[])));
    assert!(!source_admits(&src, "other", &labels(&[("tier", "gold")])));
    src.spec.allowed_namespace_selector = Some(
        serde_json::from_value(serde_json::json!({
            "matchLabels": {"tier": "gold"},
            "matchExpressions": [{"key": "quarantined", "operator": "DoesNotExist"}],
        }))
        .expect("selector"),
    );
    assert!(source_admits(&src, "other", &labels(&[("tier", "gold")])));
    assert!(!source_admits(
        &src,
        "other",
        &labels(&[("tier", "gold"), ("quarantined", "yes")])
    ));
    assert!(!source_admits(
        &src,
        "other",
        &labels(&[("tier", "silver")])
    ));
}

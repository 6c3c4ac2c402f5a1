//! `AWSCredentialSource`: an IAM user's long-term keys that bindings may derive temporary
//! credentials from. The pure rules (which namespaces may use a source, whether its Secret holds
//! well-formed keys, the `GetFederationToken` name of a binding) and [`Sources`], the read side
//! of the caches the operator keeps of sources and of their Secrets in its own namespace.
//!
//! The keys are held as [`SecretString`] from the moment they are read from the cache and are
//! only ever exposed to sign an STS call; errors name the Secret and the data key, never a value.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use secrecy::SecretString;

use crate::api::{AWSCredentialSource, CredentialSourceMode};
pub use crate::credentials::LongTermKeys;
use crate::spec::{ResolvedSource, SourceCall};

/// Data key of the access key ID in a source's Secret.
pub const ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// Data key of the secret access key in a source's Secret.
pub const SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// Whether a namespace matches an `allowedNamespaces` list: an entry is a whole name, `*` (every
/// namespace) or a prefix followed by `*`. The chart's admission policy applies the same rule
/// in CEL.
pub fn namespace_allowed(allowed: &[String], namespace: &str) -> bool {
    allowed.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => namespace.starts_with(prefix),
        None => entry == namespace,
    })
}

/// Whether a source admits namespace `namespace` with labels `labels`: by name
/// (`allowedNamespaces`) or by label (`allowedNamespaceSelector`; a selector that cannot be read
/// admits nothing).
pub fn source_admits(
    source: &AWSCredentialSource,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    namespace_allowed(&source.spec.allowed_namespaces, namespace)
        || source
            .spec
            .allowed_namespace_selector
            .clone()
            .and_then(|s| Selector::try_from(s).ok())
            .is_some_and(|s| s.matches(labels))
}

/// What is wrong with a source's Secret (never its contents).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    #[error("has no data key {0}")]
    Missing(&'static str),
    #[error(
        "data key {0} is not a well-formed key: it must be 3 to 128 printable characters without white space (a trailing newline?)"
    )]
    Malformed(&'static str),
}

fn key_text(
    data: &BTreeMap<String, ByteString>,
    key: &'static str,
    min: usize,
) -> Result<String, KeysError> {
    let bytes = &data.get(key).ok_or(KeysError::Missing(key))?.0;
    if bytes.is_empty() {
        return Err(KeysError::Missing(key));
    }
    let well_formed =
        (min..=128).contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic());
    if !well_formed {
        return Err(KeysError::Malformed(key));
    }
    // Printable ASCII, so valid UTF-8.
    String::from_utf8(bytes.clone()).map_err(|_| KeysError::Malformed(key))
}

/// Reads the keys from a source Secret's data.
pub fn read_keys(data: Option<&BTreeMap<String, ByteString>>) -> Result<LongTermKeys, KeysError> {
    let empty = BTreeMap::new();
    let data = data.unwrap_or(&empty);
    let access_key_id = key_text(data, ACCESS_KEY_ID_KEY, 3)?;
    let secret = key_text(data, SECRET_ACCESS_KEY_KEY, 8)?;
    Ok(LongTermKeys {
        access_key_id,
        secret_access_key: SecretString::from(secret),
    })
}

/// Keeps of a cached Secret of the operator's namespace only its name, resourceVersion and the
/// two key entries: whatever else lives there (Helm releases, other keys) stays out of memory.
pub fn compact_secret(secret: &mut Secret) {
    let data = secret.data.take().map(|mut data| {
        [ACCESS_KEY_ID_KEY, SECRET_ACCESS_KEY_KEY]
            .into_iter()
            .filter_map(|k| data.remove_entry(k))
            .collect::<BTreeMap<_, _>>()
    });
    *secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: secret.metadata.name.take(),
            namespace: secret.metadata.namespace.take(),
            resource_version: secret.metadata.resource_version.take(),
            ..Default::default()
        },
        data,
        ..Secret::default()
    };
}

/// Why a binding cannot use its credential source. Each names the fix; none carries key material.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error(
        "AWSCredentialSource {0:?} does not exist; ask the cluster admin to create it, or fix spec.credentialSource.name"
    )]
    NotFound(String),
    #[error(
        "AWSCredentialSource {name:?} does not allow namespace {namespace:?} (spec.allowedNamespaces); ask the cluster admin to add it"
    )]
    NotAllowed { name: String, namespace: String },
    #[error(
        "the Secret {secret:?} of AWSCredentialSource {name:?} does not exist in the operator's namespace; the cluster admin must create it there"
    )]
    SecretMissing { name: String, secret: String },
    #[error(
        "the Secret {secret:?} of AWSCredentialSource {name:?} {problem}; the cluster admin must fix it"
    )]
    SecretInvalid {
        name: String,
        secret: String,
        problem: KeysError,
    },
    #[error(
        "AWSCredentialSource {name:?} belongs to the podcreds installation in namespace {owner:?} (spec.secretRef.namespace), not to this one in {operator:?}"
    )]
    OtherInstallation {
        name: String,
        owner: String,
        operator: String,
    },
    #[error(
        "this operator serves no credential sources: the cluster admin must run it with --namespace (its own, where source Secrets live; the chart sets it) and --credential-sources=true (chart: rbac.scope=cluster)"
    )]
    NoOperatorNamespace,
    #[error(
        "AWSCredentialSource {name:?} does not allow mode {mode} (spec.allowedModes: {allowed}); ask the cluster admin to allow it, or use another mode"
    )]
    ModeNotAllowed {
        name: String,
        mode: &'static str,
        allowed: String,
    },
    #[error(
        "AWSCredentialSource {name:?} does not allow AssumeRole of {role} (spec.allowedRoleArns); ask the cluster admin to add it"
    )]
    RoleNotAllowed { name: String, role: String },
    #[error(
        "AWSCredentialSource {name:?} grants sessions of at most {max} seconds (spec.maxDurationSeconds), and durationSeconds asks for {asked}"
    )]
    DurationNotAllowed { name: String, asked: i32, max: i32 },
}

impl SourceError {
    /// Stable, low-cardinality category (condition reason, Event reason, metric label).
    pub fn category(&self) -> &'static str {
        match self {
            SourceError::NotFound(_) => "CredentialSourceNotFound",
            SourceError::NotAllowed { .. } => "CredentialSourceNotAllowed",
            SourceError::SecretMissing { .. } => "CredentialSourceSecretMissing",
            SourceError::SecretInvalid { .. } => "CredentialSourceSecretInvalid",
            SourceError::NoOperatorNamespace | SourceError::OtherInstallation { .. } => {
                "CredentialSourceUnavailable"
            }
            SourceError::ModeNotAllowed { .. } => "CredentialSourceModeNotAllowed",
            SourceError::RoleNotAllowed { .. } => "CredentialSourceRoleNotAllowed",
            SourceError::DurationNotAllowed { .. } => "CredentialSourceDurationNotAllowed",
        }
    }
}

/// A namespace asking for a source's keys: its name and labels.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Checks a source and the Secret it names (pure): the keys, or why they cannot be used by a
/// binding of `requester`'s namespace (`None`: the source's own readiness, whoever asks).
pub fn check_source(
    name: &str,
    source: Option<&AWSCredentialSource>,
    secret: Option<&Secret>,
    requester: Option<Requester<'_>>,
) -> Result<LongTermKeys, SourceError> {
    let source = source.ok_or_else(|| SourceError::NotFound(name.to_string()))?;
    if let Some(Requester { namespace, labels }) = requester
        && !source_admits(source, namespace, labels)
    {
        return Err(SourceError::NotAllowed {
            name: name.to_string(),
            namespace: namespace.to_string(),
        });
    }
    let secret_name = &source.spec.secret_ref.name;
    let secret = secret.ok_or_else(|| SourceError::SecretMissing {
        name: name.to_string(),
        secret: secret_name.clone(),
    })?;
    read_keys(secret.data.as_ref()).map_err(|problem| SourceError::SecretInvalid {
        name: name.to_string(),
        secret: secret_name.clone(),
        problem,
    })
}

/// What a binding asks of its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant<'a> {
    pub mode: CredentialSourceMode,
    /// The role of an `AssumeRole`.
    pub role_arn: Option<&'a str>,
    pub duration_seconds: i32,
}

impl<'a> Grant<'a> {
    /// What the binding whose first exchange is `source` asks for sessions of `duration_seconds`.
    pub fn of(source: &'a ResolvedSource, duration_seconds: i32) -> Self {
        Self {
            mode: source.call.mode(),
            role_arn: match &source.call {
                SourceCall::AssumeRole { role_arn } => Some(role_arn),
                SourceCall::GetFederationToken { .. } | SourceCall::GetSessionToken => None,
            },
            duration_seconds,
        }
    }
}

/// Whether `source` (named `name`) grants what a binding asks (pure): the mode, the role and the
/// session length. The chart's source admission policy applies the same rules in CEL.
pub fn check_grant(
    name: &str,
    source: &AWSCredentialSource,
    grant: Grant<'_>,
) -> Result<(), SourceError> {
    let spec = &source.spec;
    if !spec.allowed_modes.contains(&grant.mode) {
        return Err(SourceError::ModeNotAllowed {
            name: name.to_string(),
            mode: grant.mode.as_str(),
            allowed: spec
                .allowed_modes
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if let Some(role) = grant.role_arn
        && !spec.allowed_role_arns.is_empty()
        && !spec
            .allowed_role_arns
            .iter()
            .filter_map(|p| crate::allowlist::Pattern::parse(p.trim()))
            .any(|p| p.matches(role))
    {
        return Err(SourceError::RoleNotAllowed {
            name: name.to_string(),
            role: role.to_string(),
        });
    }
    if grant.duration_seconds > spec.max_duration_seconds {
        return Err(SourceError::DurationNotAllowed {
            name: name.to_string(),
            asked: grant.duration_seconds,
            max: spec.max_duration_seconds,
        });
    }
    Ok(())
}

/// The entry a namespace's role allowlist must hold for its bindings to use `mode` of source
/// `name` when the mode assumes no role: nothing else would ever be checked for it, so it is
/// never "no role, so allowed".
pub fn allowlist_entry(name: &str, mode: CredentialSourceMode) -> String {
    format!("podcreds:credential-source/{name}/{}", mode.as_str())
}

/// The caches of sources and of the Secrets in the operator's namespace, as reconciliations and
/// flows read them.
#[derive(Clone)]
pub struct Sources {
    pub operator_namespace: Option<String>,
    pub sources: Store<AWSCredentialSource>,
    pub secrets: Store<Secret>,
    /// True once both caches hold their initial lists.
    pub synced: tokio::sync::watch::Receiver<bool>,
}

impl Sources {
    /// The keys of source `name` for a binding of `requester`'s namespace that asks for `grant`,
    /// from the caches (`None`: the namespace was checked a moment ago, by the validate step).
    pub fn keys_for(
        &self,
        name: &str,
        requester: Option<Requester<'_>>,
        grant: Grant<'_>,
    ) -> Result<LongTermKeys, SourceError> {
        let (source, secret) = self.lookup(name)?;
        if let Some(source) = &source {
            self.owned(source)?;
        }
        let keys = check_source(name, source.as_deref(), secret.as_deref(), requester)?;
        if let Some(source) = &source {
            check_grant(name, source, grant)?;
        }
        Ok(keys)
    }

    /// Whether `source` is this installation's to serve: its Secret is in this operator's
    /// namespace. Another installation in the cluster serves (and reports on) the others.
    pub fn owned(&self, source: &AWSCredentialSource) -> Result<(), SourceError> {
        let operator = self
            .operator_namespace
            .as_deref()
            .ok_or(SourceError::NoOperatorNamespace)?;
        let owner = &source.spec.secret_ref.namespace;
        if owner == operator {
            Ok(())
        } else {
            Err(SourceError::OtherInstallation {
                name: source.metadata.name.clone().unwrap_or_default(),
                owner: owner.clone(),
                operator: operator.to_string(),
            })
        }
    }

    /// Source `name` and the Secret it names, if cached.
    #[allow(clippy::type_complexity)]
    pub fn lookup(
        &self,
        name: &str,
    ) -> Result<
        (
            Option<std::sync::Arc<AWSCredentialSource>>,
            Option<std::sync::Arc<Secret>>,
        ),
        SourceError,
    > {
        let operator_namespace = self
            .operator_namespace
            .as_deref()
            .ok_or(SourceError::NoOperatorNamespace)?;
        let source = self.sources.get(&ObjectRef::new(name));
        let secret = source.as_ref().and_then(|s| {
            self.secrets
                .get(&ObjectRef::new(&s.spec.secret_ref.name).within(operator_namespace))
        });
        Ok((source, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AWSCredentialSourceSpec, SecretReference};
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
        let e =
            check_source("keys", Some(&src), None, Some(asking("team-a", &no_labels))).unwrap_err();
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
}

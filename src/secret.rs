//! Build step (pure): the Secret podcreds writes, and how it reads back what a Secret says about
//! the credentials it holds (annotations and managed fields only; never the data).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ManagedFieldsEntry, ObjectMeta, OwnerReference,
};
use secrecy::ExposeSecret;

use crate::credentials::{ChainRecord, IssuedCredentials};
use crate::spec::ResolvedSpec;
use crate::time::rfc3339;

mod record;

pub use record::SecretRecord;

/// The one server-side apply field manager podcreds writes with.
pub const FIELD_MANAGER: &str = "podcreds";

/// Label on every Secret podcreds manages; the operator's Secret watch selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "podcreds";
/// Label selector for the Secret watch.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=podcreds";

pub const ANNOTATION_EXPIRATION: &str = "podcreds.dev/expiration";
pub const ANNOTATION_RENEWAL_TIME: &str = "podcreds.dev/renewal-time";
pub const ANNOTATION_ISSUED_AT: &str = "podcreds.dev/issued-at";
pub const ANNOTATION_ROLE_ARN: &str = "podcreds.dev/role-arn";
pub const ANNOTATION_ASSUMED_ROLE_ARN: &str = "podcreds.dev/assumed-role-arn";
pub const ANNOTATION_FINGERPRINT: &str = "podcreds.dev/spec-hash";
/// What the hops of a role chain answered (JSON of [`ChainRecord`]), for the status.
pub const ANNOTATION_ROLE_CHAIN: &str = "podcreds.dev/role-chain";
/// The STS endpoint that issued the credentials (absent: the AWS regional endpoint), for the
/// status.
pub const ANNOTATION_STS_ENDPOINT: &str = "podcreds.dev/sts-endpoint";
/// Which operator wrote the credentials: its installation and deployment
/// ([`crate::settings::Settings::writer`]). Reported, never trusted: it only names the other
/// operator when two installations write the same Secret.
pub const ANNOTATION_WRITTEN_BY: &str = "podcreds.dev/written-by";

pub const KEY_CREDENTIAL_PROCESS: &str = "credential-process.json";
pub const KEY_CONFIG: &str = "config";
pub const KEY_CREDENTIALS: &str = "credentials";
pub const KEY_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const KEY_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const KEY_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
pub const KEY_REGION: &str = "AWS_REGION";
pub const KEY_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
pub const KEY_EXPIRATION: &str = "expiration";

/// Every data key podcreds writes.
pub const DATA_KEYS: [&str; 9] = [
    KEY_CREDENTIAL_PROCESS,
    KEY_CONFIG,
    KEY_CREDENTIALS,
    KEY_ACCESS_KEY_ID,
    KEY_SECRET_ACCESS_KEY,
    KEY_SESSION_TOKEN,
    KEY_REGION,
    KEY_DEFAULT_REGION,
    KEY_EXPIRATION,
];

/// The data keys that hold credentials: what a revocation removes. `config` and the region keys
/// stay (they hold none).
pub const CREDENTIAL_KEYS: [&str; 6] = [
    KEY_CREDENTIAL_PROCESS,
    KEY_CREDENTIALS,
    KEY_ACCESS_KEY_ID,
    KEY_SECRET_ACCESS_KEY,
    KEY_SESSION_TOKEN,
    KEY_EXPIRATION,
];

/// The merge patch that removes the credentials from a binding's Secret, and every annotation
/// that describes them (so that the planner sees no credentials there), at `resource_version`
/// (the version observed: a Secret that changed since is not patched). The Secret itself, its
/// label, owner and other keys stay.
pub fn revocation_patch(resource_version: Option<&str>) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> = CREDENTIAL_KEYS
        .iter()
        .map(|k| (k.to_string(), serde_json::Value::Null))
        .collect();
    let annotations: serde_json::Map<String, serde_json::Value> = ANNOTATIONS
        .iter()
        .map(|k| (k.to_string(), serde_json::Value::Null))
        .collect();
    let mut metadata = serde_json::json!({ "annotations": annotations });
    if let Some(version) = resource_version {
        metadata["resourceVersion"] = serde_json::Value::String(version.to_string());
    }
    serde_json::json!({ "metadata": metadata, "data": data })
}

/// What the operator knows about credentials already in the Secret, read from its annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedMeta {
    pub issued_at: Timestamp,
    pub expiration: Timestamp,
    pub renewal_time: Timestamp,
    /// [`crate::spec::ResolvedSpec::fingerprint`] of the spec the credentials were issued for.
    pub fingerprint: String,
    pub assumed_role_arn: Option<String>,
    /// The role chain the credentials came through, if any.
    pub chain: Option<ChainRecord>,
    /// The endpoint that issued them; `None`: the AWS regional endpoint (or not recorded, by
    /// versions before fail-over lists).
    pub sts_endpoint: Option<String>,
}

/// The binding's Secret as observed (metadata only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedSecret {
    /// No Secret of that name exists.
    Missing,
    /// A Secret of that name exists and this binding is not its controller: never touch it.
    Foreign { owner: Option<String> },
    /// The binding's own Secret.
    Owned {
        /// `None` when the annotations are missing or unreadable.
        issued: Option<IssuedMeta>,
        /// False when someone else changed or removed keys podcreds writes.
        intact: bool,
    },
}

/// Identity of the binding that owns the Secret.
#[derive(Clone, Debug)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// Everything that goes into one rendering of the Secret.
pub struct Rendering<'a> {
    pub namespace: &'a str,
    pub owner: &'a Owner,
    pub spec: &'a ResolvedSpec,
    pub fingerprint: &'a str,
    pub credentials: &'a IssuedCredentials,
    pub issued_at: Timestamp,
    pub renewal_time: Timestamp,
    /// Who writes ([`ANNOTATION_WRITTEN_BY`]).
    pub writer: &'a str,
}

/// The `credential_process` output document.
pub fn credential_process_json(creds: &IssuedCredentials) -> String {
    serde_json::json!({
        "Version": 1,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.expose_secret(),
        "SessionToken": creds.session_token.expose_secret(),
        "Expiration": rfc3339(creds.expiration),
    })
    .to_string()
}

/// The AWS config file: SDKs run `credential_process` again before `Expiration`, so pods pick up
/// refreshed credentials without a restart.
pub fn aws_config_file(spec: &ResolvedSpec) -> String {
    format!(
        "[default]\nregion = {region}\ncredential_process = cat {path}/{KEY_CREDENTIAL_PROCESS}\n",
        region = spec.region,
        path = spec.mount_path,
    )
}

/// The shared credentials file (read once at start by most SDKs).
pub fn aws_credentials_file(creds: &IssuedCredentials) -> String {
    format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
        creds.access_key_id,
        creds.secret_access_key.expose_secret(),
        creds.session_token.expose_secret(),
    )
}

/// The Secret exactly as podcreds applies it (server-side apply, fields it owns only).
pub fn render(r: &Rendering<'_>) -> Secret {
    let creds = r.credentials;
    let data: BTreeMap<String, ByteString> = [
        (KEY_CREDENTIAL_PROCESS, credential_process_json(creds)),
        (KEY_CONFIG, aws_config_file(r.spec)),
        (KEY_CREDENTIALS, aws_credentials_file(creds)),
        (KEY_ACCESS_KEY_ID, creds.access_key_id.clone()),
        (
            KEY_SECRET_ACCESS_KEY,
            creds.secret_access_key.expose_secret().to_string(),
        ),
        (
            KEY_SESSION_TOKEN,
            creds.session_token.expose_secret().to_string(),
        ),
        (KEY_REGION, r.spec.region.clone()),
        (KEY_DEFAULT_REGION, r.spec.region.clone()),
        (KEY_EXPIRATION, rfc3339(creds.expiration)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect();

    let mut annotations = BTreeMap::from([
        (ANNOTATION_EXPIRATION.to_string(), rfc3339(creds.expiration)),
        (ANNOTATION_RENEWAL_TIME.to_string(), rfc3339(r.renewal_time)),
        (ANNOTATION_ISSUED_AT.to_string(), rfc3339(r.issued_at)),
        (
            ANNOTATION_FINGERPRINT.to_string(),
            r.fingerprint.to_string(),
        ),
        (ANNOTATION_WRITTEN_BY.to_string(), r.writer.to_string()),
    ]);
    if let Some(role_arn) = &r.spec.role_arn {
        annotations.insert(ANNOTATION_ROLE_ARN.to_string(), role_arn.clone());
    }
    if let Some(arn) = &creds.assumed_role_arn {
        annotations.insert(ANNOTATION_ASSUMED_ROLE_ARN.to_string(), arn.clone());
    }
    if let Some(chain) = creds.chain.as_ref().and_then(chain_annotation) {
        annotations.insert(ANNOTATION_ROLE_CHAIN.to_string(), chain);
    }
    if let Some(endpoint) = &creds.sts_endpoint {
        annotations.insert(ANNOTATION_STS_ENDPOINT.to_string(), endpoint.clone());
    }

    Secret {
        metadata: ObjectMeta {
            name: Some(r.spec.secret_name.clone()),
            namespace: Some(r.namespace.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: r.owner.api_version.clone(),
                kind: r.owner.kind.clone(),
                name: r.owner.name.clone(),
                uid: r.owner.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The type of an image-pull Secret.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// The key of an image-pull Secret's docker config.
pub const KEY_DOCKER_CONFIG_JSON: &str = ".dockerconfigjson";

/// Everything that goes into one rendering of an image-pull Secret.
pub struct PullRendering<'a> {
    pub namespace: &'a str,
    pub owner: &'a Owner,
    pub pull: &'a crate::spec::ResolvedPullSecret,
    /// The token of each region the registries need (`base64("AWS:<password>")`).
    pub tokens: &'a [(String, crate::sts::PullToken)],
    pub issued_at: Timestamp,
    pub writer: &'a str,
}

/// The earliest expiry of `tokens`.
pub fn pull_expiration(tokens: &[(String, crate::sts::PullToken)]) -> Option<Timestamp> {
    tokens.iter().map(|(_, t)| t.expires_at).min()
}

/// The `kubernetes.io/dockerconfigjson` Secret of a binding's `imagePullSecret`: one `auths`
/// entry per registry, with the token of its region; owned by the binding and labelled like
/// the credentials' Secret.
pub fn render_pull_secret(r: &PullRendering<'_>) -> Secret {
    let mut auths = serde_json::Map::new();
    for registry in &r.pull.registries {
        if let Some((_, token)) = r
            .tokens
            .iter()
            .find(|(region, _)| *region == registry.region)
        {
            auths.insert(
                registry.host.clone(),
                serde_json::json!({ "auth": token.authorization.expose_secret() }),
            );
        }
    }
    let config = serde_json::json!({ "auths": auths }).to_string();
    let mut annotations = BTreeMap::from([
        (ANNOTATION_ISSUED_AT.to_string(), rfc3339(r.issued_at)),
        (ANNOTATION_WRITTEN_BY.to_string(), r.writer.to_string()),
    ]);
    if let Some(expiration) = pull_expiration(r.tokens) {
        annotations.insert(ANNOTATION_EXPIRATION.to_string(), rfc3339(expiration));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(r.pull.secret_name.clone()),
            namespace: Some(r.namespace.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: r.owner.api_version.clone(),
                kind: r.owner.kind.clone(),
                name: r.owner.name.clone(),
                uid: r.owner.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        type_: Some(DOCKER_CONFIG_JSON_TYPE.to_string()),
        data: Some(BTreeMap::from([(
            KEY_DOCKER_CONFIG_JSON.to_string(),
            ByteString(config.into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// The role chain annotation's value. Its parts are bounded (at most five hops, printable-ASCII
/// ARNs of at most 256 characters), so it always fits what the Secret cache keeps.
fn chain_annotation(chain: &ChainRecord) -> Option<String> {
    serde_json::to_string(chain).ok()
}

fn parse_time(annotations: &BTreeMap<String, String>, key: &str) -> Option<Timestamp> {
    annotations
        .get(key)
        .and_then(|v| v.parse::<Timestamp>().ok())
}

/// Reads the issued-credentials annotations; `None` if any is missing or unparsable.
pub fn issued_meta(meta: &ObjectMeta) -> Option<IssuedMeta> {
    issued_from(meta.annotations.as_ref()?)
}

fn issued_from(annotations: &BTreeMap<String, String>) -> Option<IssuedMeta> {
    let issued_at = parse_time(annotations, ANNOTATION_ISSUED_AT)?;
    let expiration = parse_time(annotations, ANNOTATION_EXPIRATION)?;
    let renewal_time = parse_time(annotations, ANNOTATION_RENEWAL_TIME)?;
    if !(issued_at <= renewal_time && renewal_time <= expiration) {
        return None;
    }
    Some(IssuedMeta {
        issued_at,
        expiration,
        renewal_time,
        fingerprint: annotations.get(ANNOTATION_FINGERPRINT)?.clone(),
        assumed_role_arn: annotations.get(ANNOTATION_ASSUMED_ROLE_ARN).cloned(),
        // Only reported, never decided on: an unreadable record just leaves the status without it.
        chain: annotations
            .get(ANNOTATION_ROLE_CHAIN)
            .and_then(|v| serde_json::from_str(v).ok()),
        sts_endpoint: annotations.get(ANNOTATION_STS_ENDPOINT).cloned(),
    })
}

/// The controller owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// Every annotation podcreds writes on a Secret.
pub const ANNOTATIONS: [&str; 9] = [
    ANNOTATION_EXPIRATION,
    ANNOTATION_RENEWAL_TIME,
    ANNOTATION_ISSUED_AT,
    ANNOTATION_ROLE_ARN,
    ANNOTATION_ASSUMED_ROLE_ARN,
    ANNOTATION_FINGERPRINT,
    ANNOTATION_ROLE_CHAIN,
    ANNOTATION_STS_ENDPOINT,
    ANNOTATION_WRITTEN_BY,
];

/// Longest annotation value podcreds writes (a role ARN); a longer one was not written by
/// podcreds, and is not kept in memory.
const MAX_ANNOTATION_VALUE: usize = 2048;

/// The keys under `path` (for example `["f:data"]`) that a managed-fields entry claims.
fn claimed_keys<'a>(entry: &'a ManagedFieldsEntry, path: &[&str]) -> Vec<&'a str> {
    let mut node = entry.fields_v1.as_ref().map(|f| &f.0);
    for step in path {
        node = node.and_then(|n| n.get(*step));
    }
    node.and_then(|d| d.as_object())
        .map(|d| d.keys().filter_map(|k| k.strip_prefix("f:")).collect())
        .unwrap_or_default()
}

/// Whether every data key podcreds writes is still owned by podcreds alone, and no other field
/// manager has changed an annotation podcreds writes. Someone editing or deleting a key (or an
/// annotation such as the expiration) takes its ownership in `managedFields`, which the metadata
/// watch sees without ever reading the Secret's data.
pub fn intact(meta: &ObjectMeta) -> bool {
    let Some(entries) = meta.managed_fields.as_ref() else {
        // Without managed fields (they can be stripped) there is nothing to go on: trust the Secret.
        return true;
    };
    let mut ours: Vec<&str> = Vec::new();
    for entry in entries {
        let data = claimed_keys(entry, &["f:data"]);
        // podcreds creates with Update and refreshes with Apply: both entries are its own.
        if entry.manager.as_deref() == Some(FIELD_MANAGER) {
            ours.extend(data);
            continue;
        }
        let annotations = claimed_keys(entry, &["f:metadata", "f:annotations"]);
        if data.iter().any(|k| DATA_KEYS.contains(k))
            || annotations.iter().any(|k| ANNOTATIONS.contains(k))
        {
            return false;
        }
    }
    DATA_KEYS.iter().all(|k| ours.contains(k))
}

/// Why a Secret a binding's status names is not deleted when the binding moved to another
/// `secretName`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeptBecause {
    /// It does not carry podcreds' `managed-by` label.
    NotLabelled,
    /// Its controller owner reference is not this binding.
    NotControlled,
    /// It is not the Secret this binding created (another UID than the one recorded).
    OtherUid,
    /// It is already being deleted.
    BeingDeleted,
}

impl KeptBecause {
    /// Stable, low-cardinality label (log field).
    pub fn as_str(self) -> &'static str {
        match self {
            KeptBecause::NotLabelled => "NotLabelled",
            KeptBecause::NotControlled => "NotControlledByBinding",
            KeptBecause::OtherUid => "NotCreatedByBinding",
            KeptBecause::BeingDeleted => "BeingDeleted",
        }
    }
}

/// Whether the Secret with metadata `meta` may be deleted as the one binding `binding_uid`
/// created under an earlier `secretName` (UID `recorded_uid`). The status that names it is not
/// trusted on its own: the Secret must carry podcreds' label, be controlled by this binding and
/// be exactly the Secret whose UID was recorded, all as read from the apiserver just before.
pub fn deletable_as_left_behind(
    meta: &ObjectMeta,
    binding_uid: &str,
    recorded_uid: &str,
) -> Result<(), KeptBecause> {
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE);
    if !labelled {
        return Err(KeptBecause::NotLabelled);
    }
    if controller_of(meta).is_none_or(|o| o.uid != binding_uid) {
        return Err(KeptBecause::NotControlled);
    }
    if meta.uid.as_deref() != Some(recorded_uid) {
        return Err(KeptBecause::OtherUid);
    }
    if meta.deletion_timestamp.is_some() {
        return Err(KeptBecause::BeingDeleted);
    }
    Ok(())
}

/// Classifies the binding's Secret (`None`: there is none) for the binding `binding_uid`.
pub fn observe(secret: Option<&SecretRecord>, binding_uid: &str) -> ObservedSecret {
    secret.map_or(ObservedSecret::Missing, |s| s.observe(binding_uid))
}

#[cfg(test)]
mod tests;

//! The IAM side of a binding, for administrators: the trust policy every role of a binding needs
//! (`podcreds iam trust-policy`) and the cluster's OIDC documents ready to host
//! (`podcreds oidc export`). Pure: the command line fetches, these functions decide.

use serde_json::{Value, json};

use crate::spec::{FirstExchange, KUBERNETES_TAG_KEYS, ResolvedSpec, workload_common_name};

/// Audience and recipient of every SAML assertion AWS accepts.
pub const AWS_SAML_AUDIENCE: &str = "https://signin.aws.amazon.com/saml";

/// How AWS learns who the binding's first exchange speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstPrincipal {
    /// `AssumeRoleWithWebIdentity` with a ServiceAccount token of this issuer (its URL as the
    /// apiserver's `--service-account-issuer` names it).
    Oidc { issuer: String },
    /// `AssumeRoleWithSAML` with an assertion podcreds signs, through this IAM SAML provider.
    Saml { provider_arn: String },
    /// `AssumeRole` signed with the long-term keys of this IAM user (an `AWSCredentialSource`).
    IamUser { user_arn: String },
    /// IAM Roles Anywhere `CreateSession` with a certificate chaining to this trust anchor.
    RolesAnywhere { trust_anchor_arn: String },
}

/// A role and the trust policy it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct TrustPolicy {
    pub role_arn: String,
    /// Why this role is assumed, for the reader ("first exchange", "roleChain[0]", ...).
    pub assumed_by: String,
    pub document: Value,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IamError {
    #[error("{0} is not an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)")]
    NotARoleArn(String),
    #[error(
        "the binding assumes no role (GetFederationToken or GetSessionToken with the source's keys): no trust policy is involved; the IAM user's own policy decides"
    )]
    NoRole,
    #[error(
        "the binding's first role is assumed with the keys of credential source {0:?}: pass the source's IAM user as --user-arn"
    )]
    UserArnNeeded(String),
    #[error(
        "the OIDC issuer {0:?} is not an https:// URL: AWS IAM only trusts https issuers; start the apiserver with --service-account-issuer=https://<where the exported documents will be hosted>"
    )]
    IssuerNotHttps(String),
    #[error("the discovery document is not a JSON object with an \"issuer\" string")]
    DiscoveryMalformed,
    #[error(
        "the cluster's discovery document names issuer {found:?}, not {expected:?}: tokens carry the cluster's issuer, so IAM must trust that one"
    )]
    IssuerMismatch { expected: String, found: String },
    #[error("the JWKS is not a JSON object with a non-empty \"keys\" list")]
    JwksMalformed,
}

/// The partition and account of an IAM role ARN.
fn partition_and_account(role_arn: &str) -> Result<(&str, &str), IamError> {
    let parts: Vec<&str> = role_arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if !partition.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.starts_with("role/") =>
        {
            Ok((partition, account))
        }
        _ => Err(IamError::NotARoleArn(role_arn.to_string())),
    }
}

/// The issuer as IAM names an OIDC provider: without the scheme and a trailing slash.
pub fn oidc_provider_path(issuer: &str) -> Result<&str, IamError> {
    issuer
        .strip_prefix("https://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| IamError::IssuerNotHttps(issuer.to_string()))
}

/// The subject AWS sees for a ServiceAccount, in tokens and in podcreds' SAML assertions.
pub fn service_account_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

fn document(statement: Value) -> Value {
    json!({ "Version": "2012-10-17", "Statement": [statement] })
}

/// One action, or a list when there are more (as IAM prints them).
fn actions(actions: Vec<&str>) -> Value {
    match actions.as_slice() {
        [one] => json!(one),
        _ => json!(actions),
    }
}

/// What the role must allow a SAML exchange: `sts:AssumeRoleWithSAML`, and `sts:TagSession` /
/// `sts:SetSourceIdentity` when the assertion carries tags / a source identity.
fn saml_actions(spec: &ResolvedSpec) -> Vec<&'static str> {
    let mut list = vec!["sts:AssumeRoleWithSAML"];
    if let FirstExchange::Saml(saml) = &spec.first {
        if !saml.tags.is_empty() {
            list.push("sts:TagSession");
        }
        if saml.source_identity.is_some() {
            list.push("sts:SetSourceIdentity");
        }
    }
    list
}

/// Conditions of one statement, by operator (`StringEquals`, ...): key -> value(s).
type Conditions = serde_json::Map<String, Value>;

fn condition(conditions: &mut Conditions, operator: &str, key: String, value: Value) {
    let entry = conditions
        .entry(operator.to_string())
        .or_insert_with(|| json!({}));
    if let Some(map) = entry.as_object_mut() {
        map.insert(key, value);
    }
}

/// The session name pin of a first exchange: every session name of the binding's namespace
/// (`<namespace>.*`), so a tenant holding a token of another namespace's ServiceAccount, or the
/// IAM user's own session, can never make a session that passes for this namespace's; an
/// unprefixed name (the admin allowed them) is pinned exactly.
fn session_name_pin(conditions: &mut Conditions, spec: &ResolvedSpec, namespace: &str) {
    let prefix = format!("{namespace}.");
    if spec.session_name.starts_with(&prefix) {
        condition(
            conditions,
            "StringLike",
            "sts:RoleSessionName".into(),
            json!(format!("{prefix}*")),
        );
    } else {
        condition(
            conditions,
            "StringEquals",
            "sts:RoleSessionName".into(),
            json!(spec.session_name),
        );
    }
}

/// Pins the tags a call sends: the value of each of podcreds' Kubernetes tags
/// (`aws:RequestTag/kubernetes-*`) and the exact set of keys (`aws:TagKeys`), so whoever else can
/// call `AssumeRole` on the role (a session of the role before it) cannot claim another
/// namespace's identity.
fn pin_request_tags(conditions: &mut Conditions, tags: &[(String, String)]) {
    if tags.is_empty() {
        return;
    }
    for (key, value) in tags.iter().filter(|(k, _)| is_kubernetes_tag(k)) {
        condition(
            conditions,
            "StringEquals",
            format!("aws:RequestTag/{key}"),
            json!(value),
        );
    }
    let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    condition(
        conditions,
        "ForAllValues:StringEquals",
        "aws:TagKeys".into(),
        json!(keys),
    );
}

/// The service principal Roles Anywhere assumes roles as.
pub const ROLES_ANYWHERE_SERVICE: &str = "rolesanywhere.amazonaws.com";

/// Pins the principal tags a Roles Anywhere session gets from podcreds' certificate of the
/// ServiceAccount: `x509Subject/CN` (`<namespace>.<name>`) and `x509Subject/OU` (the namespace).
fn pin_workload_subject(conditions: &mut Conditions, namespace: &str, service_account: &str) {
    condition(
        conditions,
        "StringEquals",
        "aws:PrincipalTag/x509Subject/CN".into(),
        json!(workload_common_name(namespace, service_account)),
    );
    condition(
        conditions,
        "StringEquals",
        "aws:PrincipalTag/x509Subject/OU".into(),
        json!(namespace),
    );
}

fn is_kubernetes_tag(key: &str) -> bool {
    KUBERNETES_TAG_KEYS.contains(&key)
}

/// The trust policy of the binding's own role: it lets exactly this ServiceAccount (and, for web
/// identity, this audience), under a session name of its namespace, assume it.
fn first_exchange_policy(
    spec: &ResolvedSpec,
    role_arn: &str,
    namespace: &str,
    first: &FirstPrincipal,
) -> Result<Value, IamError> {
    let (partition, account) = partition_and_account(role_arn)?;
    let subject = service_account_subject(namespace, &spec.service_account_name);
    let mut conditions = Conditions::new();
    let (principal, action) = match first {
        FirstPrincipal::Oidc { issuer } => {
            let provider = oidc_provider_path(issuer)?;
            condition(
                &mut conditions,
                "StringEquals",
                format!("{provider}:sub"),
                json!(subject),
            );
            condition(
                &mut conditions,
                "StringEquals",
                format!("{provider}:aud"),
                json!(spec.audience),
            );
            (
                json!({ "Federated": format!("arn:{partition}:iam::{account}:oidc-provider/{provider}") }),
                json!("sts:AssumeRoleWithWebIdentity"),
            )
        }
        FirstPrincipal::IamUser { user_arn } => {
            // The IAM user's keys sign for every binding of the source: the tags it sends must
            // be this binding's, whoever else holds a session of the user.
            let tags = match &spec.first {
                FirstExchange::CredentialSource(source) => source.tags.as_slice(),
                FirstExchange::WebIdentity { .. }
                | FirstExchange::Saml(_)
                | FirstExchange::RolesAnywhere(_) => &[],
            };
            pin_request_tags(&mut conditions, tags);
            let mut granted = vec!["sts:AssumeRole"];
            if !tags.is_empty() {
                granted.push("sts:TagSession");
            }
            (json!({ "AWS": user_arn }), actions(granted))
        }
        FirstPrincipal::Saml { provider_arn } => {
            // Tags come signed in the assertion: only podcreds can set them.
            condition(
                &mut conditions,
                "StringEquals",
                "SAML:sub".into(),
                json!(subject),
            );
            condition(
                &mut conditions,
                "StringEquals",
                "SAML:aud".into(),
                json!(AWS_SAML_AUDIENCE),
            );
            (
                json!({ "Federated": provider_arn }),
                actions(saml_actions(spec)),
            )
        }
        FirstPrincipal::RolesAnywhere { trust_anchor_arn } => {
            // The certificate's subject names the ServiceAccount; only the trust anchor's CA
            // (podcreds') issues it. The session name is the certificate's serial: no pin.
            pin_workload_subject(&mut conditions, namespace, &spec.service_account_name);
            condition(
                &mut conditions,
                "ArnEquals",
                "aws:SourceArn".into(),
                json!(trust_anchor_arn),
            );
            (
                json!({ "Service": ROLES_ANYWHERE_SERVICE }),
                actions(vec![
                    "sts:AssumeRole",
                    "sts:TagSession",
                    "sts:SetSourceIdentity",
                ]),
            )
        }
    };
    if !matches!(first, FirstPrincipal::RolesAnywhere { .. }) {
        session_name_pin(&mut conditions, spec, namespace);
    }
    Ok(document(json!({
        "Effect": "Allow",
        "Principal": principal,
        "Action": action,
        "Condition": conditions,
    })))
}

/// Who calls `AssumeRole` on a chain hop's role.
#[derive(Clone, Debug)]
enum Caller<'a> {
    /// A session of `role_arn` named `session_name` (the previous exchange's).
    RoleSession {
        role_arn: &'a str,
        session_name: &'a str,
    },
    /// The IAM user itself (a credential source's `GetSessionToken` session).
    User { user_arn: &'a str },
    /// A Roles Anywhere session of `role_arn`: named by the certificate's serial, so told apart
    /// by the certificate subject's principal tags.
    RolesAnywhereSession {
        role_arn: &'a str,
        namespace: &'a str,
        service_account: &'a str,
    },
}

/// podcreds' Kubernetes tags the sessions before hop `index` carry (transitive, so the caller of
/// the hop holds them as principal tags).
fn inherited_kubernetes_tags(spec: &ResolvedSpec, index: usize) -> Vec<(String, String)> {
    let from_first: &[(String, String)] = match &spec.first {
        FirstExchange::Saml(saml) => &saml.tags,
        FirstExchange::CredentialSource(source) if !source.transitive_tag_keys.is_empty() => {
            &source.tags
        }
        FirstExchange::WebIdentity { .. }
        | FirstExchange::CredentialSource(_)
        | FirstExchange::RolesAnywhere(_) => &[],
    };
    let from_hops = spec.role_chain[..index].iter().flat_map(|h| h.tags.iter());
    from_first
        .iter()
        .chain(from_hops)
        .filter(|(k, _)| is_kubernetes_tag(k))
        .cloned()
        .collect()
}

/// The trust policy of chain hop `index`: exactly the session before it may assume it (the
/// previous role under this binding's session name), with the permissions the chain's tags and
/// source identity need, the external ID the hop sends, and the Kubernetes tags pinned: sent
/// (`aws:RequestTag`) or inherited (`aws:PrincipalTag`).
///
/// What the first exchange set travels too: a SAML assertion's transitive tags and source
/// identity reach every hop, which then needs `sts:TagSession` / `sts:SetSourceIdentity`.
fn hop_policy(spec: &ResolvedSpec, index: usize, caller: &Caller<'_>) -> Value {
    let hops = &spec.role_chain;
    let hop = &hops[index];
    let earlier = &hops[..index];
    let first_transitive = !spec.first.transitive_tag_keys().is_empty();
    let first_identity = spec.first.sets_source_identity();
    let mut granted = vec!["sts:AssumeRole"];
    if !hop.tags.is_empty()
        || first_transitive
        || earlier.iter().any(|h| !h.transitive_tag_keys.is_empty())
    {
        granted.push("sts:TagSession");
    }
    if hop.source_identity.is_some()
        || first_identity
        || earlier.iter().any(|h| h.source_identity.is_some())
    {
        granted.push("sts:SetSourceIdentity");
    }
    let mut conditions = Conditions::new();
    let principal = match caller {
        Caller::RoleSession {
            role_arn,
            session_name,
        } => {
            // A role's sessions are all the same principal to IAM; the session name tells this
            // binding's apart from a tenant's own session of a shared role.
            condition(
                &mut conditions,
                "StringLike",
                "aws:userid".into(),
                json!(format!("*:{session_name}")),
            );
            role_arn
        }
        Caller::User { user_arn } => user_arn,
        Caller::RolesAnywhereSession {
            role_arn,
            namespace,
            service_account,
        } => {
            pin_workload_subject(&mut conditions, namespace, service_account);
            role_arn
        }
    };
    if let Some(external_id) = &hop.external_id {
        condition(
            &mut conditions,
            "StringEquals",
            "sts:ExternalId".into(),
            json!(external_id),
        );
    }
    pin_request_tags(&mut conditions, &hop.tags);
    for (key, value) in inherited_kubernetes_tags(spec, index) {
        condition(
            &mut conditions,
            "StringEquals",
            format!("aws:PrincipalTag/{key}"),
            json!(value),
        );
    }
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": { "AWS": principal },
        "Action": actions(granted),
    });
    if !conditions.is_empty() {
        statement["Condition"] = Value::Object(conditions);
    }
    document(statement)
}

/// Every role `spec` passes through, each with the trust policy that admits exactly this
/// binding's path to it and nothing wider.
pub fn trust_policies(
    spec: &ResolvedSpec,
    namespace: &str,
    first: &FirstPrincipal,
) -> Result<Vec<TrustPolicy>, IamError> {
    let mut policies = Vec::with_capacity(spec.role_chain.len() + 1);
    let mut caller = match (spec.role_arn.as_deref(), first) {
        (Some(role_arn), _) => {
            policies.push(TrustPolicy {
                role_arn: role_arn.to_string(),
                assumed_by: match first {
                    FirstPrincipal::Oidc { .. } => "AssumeRoleWithWebIdentity".to_string(),
                    FirstPrincipal::Saml { .. } => "AssumeRoleWithSAML".to_string(),
                    FirstPrincipal::IamUser { .. } => {
                        "AssumeRole with the source's keys".to_string()
                    }
                    FirstPrincipal::RolesAnywhere { .. } => {
                        "Roles Anywhere CreateSession".to_string()
                    }
                },
                document: first_exchange_policy(spec, role_arn, namespace, first)?,
            });
            match first {
                FirstPrincipal::RolesAnywhere { .. } => Caller::RolesAnywhereSession {
                    role_arn,
                    namespace,
                    service_account: &spec.service_account_name,
                },
                _ => Caller::RoleSession {
                    role_arn,
                    session_name: &spec.session_name,
                },
            }
        }
        // GetSessionToken: the IAM user's own session signs the first hop.
        (None, FirstPrincipal::IamUser { user_arn }) if !spec.role_chain.is_empty() => {
            Caller::User { user_arn }
        }
        (None, _) => return Err(IamError::NoRole),
    };
    for (index, hop) in spec.role_chain.iter().enumerate() {
        partition_and_account(&hop.role_arn)?;
        policies.push(TrustPolicy {
            role_arn: hop.role_arn.clone(),
            assumed_by: format!("roleChain[{index}] (AssumeRole)"),
            document: hop_policy(spec, index, &caller),
        });
        caller = Caller::RoleSession {
            role_arn: &hop.role_arn,
            session_name: &hop.session_name,
        };
    }
    Ok(policies)
}

/// The cluster's OIDC documents as they must be hosted at the issuer URL for IAM to fetch.
#[derive(Clone, Debug, PartialEq)]
pub struct OidcDocuments {
    pub issuer: String,
    /// `/.well-known/openid-configuration`, its `jwks_uri` pointing beside it.
    pub discovery: Value,
    /// Served at [`JWKS_PATH`] under the issuer.
    pub jwks: Value,
}

/// Where the exported JWKS goes, under the issuer URL (the apiserver's own path).
pub const JWKS_PATH: &str = "openid/v1/jwks";
/// Where IAM looks for the discovery document, under the issuer URL.
pub const DISCOVERY_PATH: &str = ".well-known/openid-configuration";

/// Checks what the apiserver serves and points the discovery document's `jwks_uri` at the copy
/// hosted beside it: the apiserver's own `jwks_uri` usually names an address AWS cannot reach.
pub fn prepare_oidc_documents(
    discovery: Value,
    jwks: Value,
    expected_issuer: Option<&str>,
) -> Result<OidcDocuments, IamError> {
    let issuer = discovery
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or(IamError::DiscoveryMalformed)?
        .to_string();
    if let Some(expected) = expected_issuer
        && expected.trim_end_matches('/') != issuer.trim_end_matches('/')
    {
        return Err(IamError::IssuerMismatch {
            expected: expected.to_string(),
            found: issuer,
        });
    }
    oidc_provider_path(&issuer)?;
    let has_keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .is_some_and(|keys| !keys.is_empty());
    if !has_keys {
        return Err(IamError::JwksMalformed);
    }
    let mut discovery = discovery;
    let Some(fields) = discovery.as_object_mut() else {
        return Err(IamError::DiscoveryMalformed);
    };
    fields.insert(
        "jwks_uri".into(),
        json!(format!("{}/{JWKS_PATH}", issuer.trim_end_matches('/'))),
    );
    Ok(OidcDocuments {
        issuer,
        discovery,
        jwks,
    })
}

#[cfg(test)]
mod tests;

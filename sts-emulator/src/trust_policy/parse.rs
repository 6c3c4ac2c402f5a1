//! Trust policies to and from IAM's JSON, and what IAM (and the emulator) accepts in them.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{
    Condition, Effect, Operator, Principal, Statement, Test, TrustPolicy, TrustPolicyError,
};

/// The STS actions a trust policy can allow (lower case, as IAM compares them).
const STS_ACTIONS: [&str; 6] = [
    "sts:assumerole",
    "sts:assumerolewithwebidentity",
    "sts:assumerolewithsaml",
    "sts:tagsession",
    "sts:setsourceidentity",
    "sts:setcontext",
];

/// A string or a list of strings (as IAM accepts in `Action`, principals and condition values;
/// booleans and numbers are read as their text, as IAM does).
fn strings(value: &Value) -> Option<Vec<String>> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|s| vec![s]),
    }
}

pub(super) fn from_json(policy: &Value) -> Result<TrustPolicy, TrustPolicyError> {
    let document = policy.as_object().ok_or(TrustPolicyError::NoStatements)?;
    if let Some(other) = document
        .keys()
        .find(|k| !["Version", "Id", "Statement"].contains(&k.as_str()))
    {
        return Err(TrustPolicyError::Element(other.clone()));
    }
    let statements = match document.get("Statement") {
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect::<Vec<_>>(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return Err(TrustPolicyError::NoStatements),
    };
    let policy = TrustPolicy {
        statements: statements
            .into_iter()
            .map(statement)
            .collect::<Result<_, _>>()?,
    };
    validate(&policy)?;
    Ok(policy)
}

fn statement(value: &Value) -> Result<Statement, TrustPolicyError> {
    let object = value
        .as_object()
        .ok_or_else(|| TrustPolicyError::Element(value.to_string()))?;
    if let Some(other) = object
        .keys()
        .find(|k| !["Sid", "Effect", "Principal", "Action", "Condition"].contains(&k.as_str()))
    {
        return Err(TrustPolicyError::Element(other.clone()));
    }
    let effect = match object.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        other => {
            return Err(TrustPolicyError::Effect(
                other.unwrap_or_default().to_string(),
            ));
        }
    };
    let actions = object
        .get("Action")
        .and_then(strings)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| TrustPolicyError::Action(String::new()))?;
    Ok(Statement {
        sid: object
            .get("Sid")
            .and_then(Value::as_str)
            .map(str::to_string),
        effect,
        principal: principal(object.get("Principal"))?,
        actions,
        conditions: conditions(object.get("Condition"))?,
    })
}

fn principal(value: Option<&Value>) -> Result<Principal, TrustPolicyError> {
    let unsupported =
        || TrustPolicyError::Principal(value.map_or_else(|| "(none)".into(), Value::to_string));
    match value {
        Some(Value::String(s)) if s == "*" => Ok(Principal {
            any: true,
            ..Principal::default()
        }),
        Some(Value::Object(kinds)) if !kinds.is_empty() => {
            let mut principal = Principal::default();
            for (kind, names) in kinds {
                let names = strings(names)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(unsupported)?;
                match kind.as_str() {
                    "AWS" => principal.aws = names,
                    "Federated" => principal.federated = names,
                    "Service" => principal.service = names,
                    _ => return Err(unsupported()),
                }
            }
            Ok(principal)
        }
        _ => Err(unsupported()),
    }
}

fn conditions(value: Option<&Value>) -> Result<Vec<Condition>, TrustPolicyError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let block = value
        .as_object()
        .ok_or_else(|| TrustPolicyError::Condition {
            operator: value.to_string(),
            key: String::new(),
        })?;
    let mut out = Vec::new();
    for (operator_text, tests) in block {
        let unsupported = |key: &str| TrustPolicyError::Condition {
            operator: operator_text.clone(),
            key: key.to_string(),
        };
        let operator = Operator::parse(operator_text).ok_or_else(|| unsupported(""))?;
        let tests = tests.as_object().ok_or_else(|| unsupported(""))?;
        for (key, values) in tests {
            let values = strings(values)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| unsupported(key))?;
            out.push(Condition {
                operator,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

/// The IAM JSON of `policy`: every list written as a list, conditions grouped by operator.
pub(super) fn to_json(policy: &TrustPolicy) -> Value {
    let statements: Vec<Value> = policy
        .statements
        .iter()
        .map(|s| {
            let mut statement = Map::new();
            if let Some(sid) = &s.sid {
                statement.insert("Sid".into(), json!(sid));
            }
            let effect = match s.effect {
                Effect::Allow => "Allow",
                Effect::Deny => "Deny",
            };
            statement.insert("Effect".into(), json!(effect));
            let principal = if s.principal.any {
                json!("*")
            } else {
                let mut kinds = Map::new();
                for (kind, names) in [
                    ("AWS", &s.principal.aws),
                    ("Federated", &s.principal.federated),
                    ("Service", &s.principal.service),
                ] {
                    if !names.is_empty() {
                        kinds.insert(kind.into(), json!(names));
                    }
                }
                Value::Object(kinds)
            };
            statement.insert("Principal".into(), principal);
            statement.insert("Action".into(), json!(s.actions));
            if !s.conditions.is_empty() {
                let mut block: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
                for c in &s.conditions {
                    block
                        .entry(c.operator.to_string())
                        .or_default()
                        .insert(c.key.clone(), json!(c.values));
                }
                statement.insert("Condition".into(), json!(block));
            }
            Value::Object(statement)
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Whether `text` holds one of IAM's wildcards.
fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?'])
}

/// An account as IAM writes it in an ARN: 12 digits, or (Ceph RGW) a tenant, possibly empty.
fn account_ok(account: &str) -> bool {
    account
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `arn:<partition>:<service>::<account>:<resource>` -> (service, account, resource).
fn split_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!partition.is_empty() && account_ok(account)).then_some((service, account, resource))
}

fn aws_principal_ok(name: &str) -> bool {
    if name == "*" || (name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit())) {
        return true;
    }
    match split_arn(name) {
        Some(("iam", _, "root")) => true,
        Some(("iam", _, resource)) => resource
            .strip_prefix("role/")
            .or_else(|| resource.strip_prefix("user/"))
            .is_some_and(|rest| !rest.is_empty() && !rest.ends_with('/')),
        Some(("sts", _, resource)) => resource
            .strip_prefix("assumed-role/")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(role, session)| !role.is_empty() && !session.is_empty()),
        _ => false,
    }
}

fn federated_principal_ok(name: &str) -> bool {
    matches!(split_arn(name), Some(("iam", _, resource))
        if resource.strip_prefix("oidc-provider/").is_some_and(|p| !p.is_empty())
            || resource.strip_prefix("saml-provider/").is_some_and(|p| !p.is_empty() && !p.contains('/')))
}

/// The provider paths (`host/path`) of the OIDC providers `policy` trusts, lower case.
fn oidc_providers(policy: &TrustPolicy) -> Vec<String> {
    policy
        .statements
        .iter()
        .flat_map(|s| &s.principal.federated)
        .filter_map(|p| p.split_once(":oidc-provider/").map(|(_, path)| path))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Whether the emulator knows condition key `key` (any case).
fn key_known(key: &str, providers: &[String]) -> bool {
    let key = key.to_ascii_lowercase();
    let tagged = |prefix: &str| key.strip_prefix(prefix).is_some_and(|k| !k.is_empty());
    if tagged("aws:requesttag/") || tagged("aws:principaltag/") {
        return true;
    }
    if [
        "aws:tagkeys",
        "aws:userid",
        "aws:principalarn",
        "aws:sourcearn",
        "aws:sourceaccount",
        "sts:rolesessionname",
        "sts:sourceidentity",
        "sts:externalid",
        "saml:sub",
        "saml:aud",
        "saml:iss",
    ]
    .contains(&key.as_str())
    {
        return true;
    }
    key.rsplit_once(':').is_some_and(|(provider, claim)| {
        (claim == "sub" || claim == "aud") && providers.iter().any(|p| p == provider)
    })
}

pub(super) fn validate(policy: &TrustPolicy) -> Result<(), TrustPolicyError> {
    if policy.statements.is_empty() {
        return Err(TrustPolicyError::NoStatements);
    }
    let providers = oidc_providers(policy);
    for s in &policy.statements {
        let p = &s.principal;
        if !p.any && p.aws.is_empty() && p.federated.is_empty() && p.service.is_empty() {
            return Err(TrustPolicyError::Principal("(none)".into()));
        }
        for name in &p.aws {
            if name != "*" && has_wildcard(name) {
                return Err(TrustPolicyError::WildcardPrincipal(name.clone()));
            }
            if !aws_principal_ok(name) {
                return Err(TrustPolicyError::Principal(name.clone()));
            }
        }
        for name in p.federated.iter().chain(&p.service) {
            if has_wildcard(name) {
                return Err(TrustPolicyError::WildcardPrincipal(name.clone()));
            }
        }
        if let Some(name) = p.federated.iter().find(|n| !federated_principal_ok(n)) {
            return Err(TrustPolicyError::Principal(name.clone()));
        }
        if let Some(name) = p.service.iter().find(|n| n.is_empty()) {
            return Err(TrustPolicyError::Principal(name.clone()));
        }
        if s.actions.is_empty() {
            return Err(TrustPolicyError::Action(String::new()));
        }
        for action in &s.actions {
            let lower = action.to_ascii_lowercase();
            let known = if has_wildcard(&lower) {
                lower == "*" || lower.starts_with("sts:")
            } else {
                STS_ACTIONS.contains(&lower.as_str())
            };
            if !known {
                return Err(TrustPolicyError::Action(action.clone()));
            }
        }
        for c in &s.conditions {
            let unsupported = || TrustPolicyError::Condition {
                operator: c.operator.to_string(),
                key: c.key.clone(),
            };
            if !key_known(&c.key, &providers) || c.values.is_empty() {
                return Err(unsupported());
            }
            // Policy variables are not substituted here: refused rather than read literally.
            if c.values.iter().any(|v| v.contains("${")) {
                return Err(unsupported());
            }
            if c.operator.test == Test::Null && c.values.iter().any(|v| v != "true" && v != "false")
            {
                return Err(unsupported());
            }
            // aws:TagKeys holds a set: only the set operators (or Null) say what is meant.
            if c.key.eq_ignore_ascii_case("aws:TagKeys")
                && c.operator.set.is_none()
                && c.operator.test != Test::Null
            {
                return Err(unsupported());
            }
        }
    }
    Ok(())
}

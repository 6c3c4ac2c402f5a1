//! The request parameters every action shares, and STS's rules for them: role ARNs, session
//! names, durations, session policies, session tags and source identities. Each rule is written
//! here once; the actions choose the error AWS answers for it in their own context.

use std::collections::HashMap;

use crate::Dialect;
use crate::answer::StsFailure;
use crate::state::SessionTag;

/// The Query API parameters of one call.
pub(crate) type Params = HashMap<String, String>;

/// Most characters of session tags and policies one session may pack, as the emulator counts
/// them (every tag key and value, inherited ones included, the inline policy and the policy ARNs).
/// AWS compresses and does not publish its limit; this one makes tag-heavy sessions overflow as
/// they do there.
pub const PACKED_CAPACITY: usize = 4096;

/// `arn:aws:iam::123456789012:role/path/name` -> (`aws`, `123456789012`, `name`). With the Ceph
/// dialect the account is a tenant (letters, digits, `_`), possibly empty, and the partition is
/// always `aws`.
pub(crate) fn split_role_arn(arn: &str, dialect: Dialect) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(":iam::")?;
    let (account, path) = rest.split_once(":role/")?;
    let name = path.rsplit('/').next()?;
    let account_ok = match dialect {
        Dialect::Aws => account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()),
        Dialect::CephRgw => {
            partition == "aws"
                && account.len() <= 64
                && account
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
    };
    (!name.is_empty() && account_ok).then_some((partition, account, name))
}

/// `[\w+=,.@-]{2,64}`: session names, and source identities.
pub(crate) fn session_name_ok(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// What every `AssumeRole*` call names: the role, the session name and the duration asked for.
#[derive(Debug)]
pub(crate) struct Common {
    pub role_arn: String,
    pub session_name: String,
    pub duration: u64,
}

/// Checks the parameters every `AssumeRole*` call shares: `RoleArn`, `RoleSessionName`,
/// `DurationSeconds` (900 to 43,200, default 3,600), `Policy` and the number of `PolicyArns`.
pub(crate) fn validate_common(params: &Params, dialect: Dialect) -> Result<Common, StsFailure> {
    let role_arn = params.get("RoleArn").cloned().ok_or_else(|| {
        StsFailure::validation("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
    })?;
    if role_arn.len() < 20 || role_arn.len() > 2048 || split_role_arn(&role_arn, dialect).is_none()
    {
        return Err(StsFailure::validation("RoleArn is not a valid role ARN"));
    }
    let session_name = params.get("RoleSessionName").cloned().unwrap_or_default();
    if !session_name_ok(&session_name) {
        return Err(StsFailure::validation(
            "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2..64",
        ));
    }
    let duration = match params.get("DurationSeconds") {
        None => 3600,
        Some(d) => d
            .parse::<u64>()
            .ok()
            .filter(|d| (900..=43200).contains(d))
            .ok_or_else(|| {
                StsFailure::validation(
                    "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200",
                )
            })?,
    };
    if let Some(policy) = params.get("Policy") {
        if policy.len() > 2048 {
            return Err(StsFailure::validation(
                "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048",
            ));
        }
        check_policy_json(policy)?;
    }
    if policy_arns(params).len() > 10 {
        return Err(too_many_policy_arns());
    }
    Ok(Common {
        role_arn,
        session_name,
        duration,
    })
}

/// `DurationSeconds` of `GetFederationToken` / `GetSessionToken`: 900 to 129,600, default 43,200.
pub(crate) fn user_session_duration(params: &Params) -> Result<u64, StsFailure> {
    match params.get("DurationSeconds") {
        None => Ok(43_200),
        Some(d) => d
            .parse::<u64>()
            .ok()
            .filter(|d| (900..=129_600).contains(d))
            .ok_or_else(|| {
                StsFailure::validation(
                    "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 129600",
                )
            }),
    }
}

fn check_policy_json(policy: &str) -> Result<(), StsFailure> {
    if serde_json::from_str::<serde_json::Value>(policy).is_ok_and(|v| v.is_object()) {
        Ok(())
    } else {
        Err(StsFailure::sender(
            "MalformedPolicyDocument",
            "The policy is not valid JSON",
        ))
    }
}

fn too_many_policy_arns() -> StsFailure {
    StsFailure::validation(
        "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10",
    )
}

/// The `PolicyArns.member.N.arn` parameters, in the order of N.
pub(crate) fn policy_arns(params: &Params) -> Vec<String> {
    let mut numbered: Vec<(u32, &String)> = params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("PolicyArns.member.")?.strip_suffix(".arn")?;
            Some((n.parse().ok()?, v))
        })
        .collect();
    numbered.sort();
    numbered.into_iter().map(|(_, v)| v.clone()).collect()
}

/// The session policies of a call: the inline `Policy` and the managed `PolicyArns`.
#[derive(Debug, Default)]
pub(crate) struct SessionPolicies {
    /// Their plaintext length together, which STS holds to 2,048 characters.
    pub chars: usize,
}

/// Checks `Policy` and `PolicyArns` together against STS's 2,048 characters: their length.
pub(crate) fn check_session_policies(params: &Params) -> Result<SessionPolicies, StsFailure> {
    let policy = params.get("Policy").cloned();
    if let Some(policy) = &policy {
        check_policy_json(policy)?;
    }
    let arns = policy_arns(params);
    if arns.len() > 10 {
        return Err(too_many_policy_arns());
    }
    let chars = policy.as_deref().map_or(0, |p| p.chars().count())
        + arns.iter().map(|a| a.chars().count()).sum::<usize>();
    if chars > 2048 {
        return Err(StsFailure::validation(
            "The plaintext of the inline and managed session policies exceeds 2048 characters",
        ));
    }
    Ok(SessionPolicies { chars })
}

/// `PackedPolicySize`: `chars` against [`PACKED_CAPACITY`], in percent (rounded up).
pub(crate) fn packed_percent(chars: usize) -> u32 {
    u32::try_from((chars * 100).div_ceil(PACKED_CAPACITY)).unwrap_or(u32::MAX)
}

/// Tag keys are unique without regard to case.
pub(crate) fn same_key(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

pub(crate) fn tag_text_ok(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+@-".contains(c))
}

/// The `Tags.member.N.Key/Value` and `TransitiveTagKeys.member.N` parameters, in order.
pub(crate) fn sent_tags(params: &Params) -> (Vec<SessionTag>, Vec<String>) {
    let mut tags = Vec::new();
    for n in 1.. {
        let Some(key) = params.get(&format!("Tags.member.{n}.Key")) else {
            break;
        };
        tags.push(SessionTag {
            key: key.clone(),
            value: params
                .get(&format!("Tags.member.{n}.Value"))
                .cloned()
                .unwrap_or_default(),
        });
    }
    let mut transitive = Vec::new();
    for n in 1.. {
        let Some(key) = params.get(&format!("TransitiveTagKeys.member.{n}")) else {
            break;
        };
        transitive.push(key.clone());
    }
    (tags, transitive)
}

/// A session-tag rule a request broke.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TagProblem {
    /// More than 50 tags or 50 transitive keys.
    TooMany,
    /// A key of 0 or over 128 characters, a value over 256, or a character STS does not take.
    Text,
    /// A key starting with `aws:`.
    Reserved,
    /// The same key twice (regardless of case).
    Duplicate,
    /// A key the calling session passes on as a transitive tag.
    Inherited(String),
    /// A transitive key that names none of the tags.
    TransitiveUntagged(String),
}

/// STS's rules for the session tags of one request: at most 50 tags and 50 transitive keys; keys
/// of 1 to 128 characters and values of at most 256, of letters, digits, spaces and `_.:/=+@-`;
/// no `aws:` key; no key twice (regardless of case); no key the calling session passes on as a
/// transitive tag (`inherited`).
pub(crate) fn check_tags(
    tags: &[SessionTag],
    transitive_keys: &[String],
    inherited: &[SessionTag],
) -> Result<(), TagProblem> {
    if tags.len() > 50 || transitive_keys.len() > 50 {
        return Err(TagProblem::TooMany);
    }
    for (i, tag) in tags.iter().enumerate() {
        if !(1..=128).contains(&tag.key.chars().count())
            || tag.value.chars().count() > 256
            || !tag_text_ok(&tag.key)
            || !tag_text_ok(&tag.value)
        {
            return Err(TagProblem::Text);
        }
        if tag.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(TagProblem::Reserved);
        }
        if tags[..i].iter().any(|t| same_key(&t.key, &tag.key)) {
            return Err(TagProblem::Duplicate);
        }
        if inherited.iter().any(|t| same_key(&t.key, &tag.key)) {
            return Err(TagProblem::Inherited(tag.key.clone()));
        }
    }
    Ok(())
}

/// Every transitive key must name one of the request's tags.
pub(crate) fn check_transitive_keys(
    tags: &[SessionTag],
    transitive_keys: &[String],
) -> Result<(), TagProblem> {
    match transitive_keys
        .iter()
        .find(|key| !tags.iter().any(|t| same_key(&t.key, key)))
    {
        Some(key) => Err(TagProblem::TransitiveUntagged(key.clone())),
        None => Ok(()),
    }
}

/// The tags among `tags` that `transitive_keys` name.
pub(crate) fn transitive_of(tags: &[SessionTag], transitive_keys: &[String]) -> Vec<SessionTag> {
    tags.iter()
        .filter(|t| transitive_keys.iter().any(|k| same_key(k, &t.key)))
        .cloned()
        .collect()
}

/// A source-identity rule a request broke.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IdentityProblem {
    /// It starts with `aws:`.
    Reserved,
    /// Not `[\w+=,.@-]{2,64}`.
    Pattern,
}

/// STS's rules for a source identity: 2 to 64 characters of `[\w+=,.@-]`, not starting `aws:`.
pub(crate) fn check_source_identity(identity: &str) -> Result<(), IdentityProblem> {
    if identity.to_ascii_lowercase().starts_with("aws:") {
        Err(IdentityProblem::Reserved)
    } else if !session_name_ok(identity) {
        Err(IdentityProblem::Pattern)
    } else {
        Ok(())
    }
}

/// `ExternalId`: 2 to 1,224 characters of `[\w+=,.@:/-]`.
pub(crate) fn external_id_ok(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;

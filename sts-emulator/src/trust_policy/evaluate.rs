//! Trust policy evaluation, as IAM does it for the STS actions: who calls (the principal), what
//! the request says (its condition keys), and the decision for one action.

use std::collections::HashMap;

use super::{Condition, Effect, Principal, SetOperator, Statement, Test, TrustPolicy};
use crate::state::{Session, SessionKind, SessionTag};

/// Who makes the request, as the trust policy's `Principal` sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Caller<'a> {
    /// A web identity token of the IAM OIDC provider with this ARN.
    WebIdentity { provider: &'a str },
    /// A SAML assertion of the IAM SAML provider with this ARN.
    Saml { provider: &'a str },
    /// An AWS service assuming the role on a caller's behalf (IAM Roles Anywhere:
    /// `rolesanywhere.amazonaws.com`).
    Service { service: &'a str },
    /// The credentials that signed the request: a role session, an IAM user's long-term keys,
    /// or a `GetSessionToken` session of that user.
    Aws(&'a Session),
}

/// The condition keys of one request, by lower-case name; a key absent here is absent from the
/// request.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestContext {
    values: HashMap<String, Vec<String>>,
}

impl RequestContext {
    /// Sets the single-valued key `key`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.values
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
        self
    }

    /// Sets `key` if `value` is there.
    pub fn set_opt(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.set(key, v);
        }
        self
    }

    /// The session tags the request passes: `aws:RequestTag/<key>` each, and `aws:TagKeys`.
    pub fn request_tags(&mut self, tags: &[SessionTag]) -> &mut Self {
        for tag in tags {
            self.set(&format!("aws:RequestTag/{}", tag.key), tag.value.clone());
        }
        if !tags.is_empty() {
            self.values.insert(
                "aws:tagkeys".into(),
                tags.iter().map(|t| t.key.clone()).collect(),
            );
        }
        self
    }

    /// The tags of the calling principal: `aws:PrincipalTag/<key>` each.
    pub fn principal_tags(&mut self, tags: &[SessionTag]) -> &mut Self {
        for tag in tags {
            self.set(&format!("aws:PrincipalTag/{}", tag.key), tag.value.clone());
        }
        self
    }

    fn get(&self, key: &str) -> Option<&[String]> {
        self.values
            .get(&key.to_ascii_lowercase())
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }
}

/// What a policy says of one action of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed,
    /// No statement allows it.
    ImplicitDeny,
    /// A `Deny` statement matches.
    ExplicitDeny,
}

/// IAM's wildcard match: `*` any run of characters (none included), `?` exactly one.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn action_matches(statement: &Statement, action: &str) -> bool {
    let action = action.to_ascii_lowercase();
    statement
        .actions
        .iter()
        .any(|a| glob(&a.to_ascii_lowercase(), &action))
}

/// The partition of an ARN (`aws` when it names none).
fn partition(arn: &str) -> &str {
    arn.strip_prefix("arn:")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("aws")
}

/// Whether an `AWS` principal entry names the credentials `s`.
fn aws_principal_matches(entry: &str, s: &Session) -> bool {
    if entry == "*" {
        return true;
    }
    if entry.len() == 12 && entry.bytes().all(|b| b.is_ascii_digit()) {
        return entry == s.account;
    }
    let mut parts = entry.splitn(6, ':');
    let (Some("arn"), Some(p), Some(service), Some(_), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let user = matches!(s.kind, SessionKind::LongTerm | SessionKind::UserSession);
    match (service, resource) {
        // The account: every principal of it.
        ("iam", "root") => p == partition(&s.assumed_role_arn) && account == s.account,
        // A role: every session of it.
        ("iam", r) if r.starts_with("role/") => s.kind == SessionKind::Role && entry == s.role_arn,
        // An IAM user: its long-term keys and its GetSessionToken sessions.
        ("iam", r) if r.starts_with("user/") => user && entry == s.role_arn,
        // One session of a role.
        ("sts", r) if r.starts_with("assumed-role/") => {
            s.kind == SessionKind::Role && entry == s.assumed_role_arn
        }
        _ => false,
    }
}

fn principal_matches(principal: &Principal, caller: &Caller<'_>) -> bool {
    if principal.any {
        return true;
    }
    match caller {
        Caller::WebIdentity { provider } | Caller::Saml { provider } => {
            principal.federated.iter().any(|f| f == provider)
        }
        Caller::Aws(session) => principal
            .aws
            .iter()
            .any(|entry| aws_principal_matches(entry, session)),
        // `{"AWS": "*"}` is IAM's other spelling of `"*"`.
        Caller::Service { service } => {
            principal.service.iter().any(|s| s == service) || principal.aws.iter().any(|a| a == "*")
        }
    }
}

/// IAM's ARN match: the six `:`-separated parts of `pattern` and `arn` compared one by one,
/// each with `*` / `?` wildcards that never reach into another part.
pub(crate) fn arn_matches(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| glob(p, a))
}

/// One value of the request against the condition's values (any of them).
fn test_one(test: Test, wanted: &[String], value: &str) -> bool {
    match test {
        Test::StringEquals => wanted.iter().any(|w| w == value),
        Test::StringNotEquals => !wanted.iter().any(|w| w == value),
        Test::StringLike => wanted.iter().any(|w| glob(w, value)),
        Test::StringNotLike => !wanted.iter().any(|w| glob(w, value)),
        Test::ArnEquals | Test::ArnLike => wanted.iter().any(|w| arn_matches(w, value)),
        Test::ArnNotEquals | Test::ArnNotLike => !wanted.iter().any(|w| arn_matches(w, value)),
        Test::Null => false,
    }
}

fn condition_holds(condition: &Condition, request: &RequestContext) -> bool {
    let op = condition.operator;
    let present = request.get(&condition.key);
    if op.test == Test::Null {
        // "true": the key must be absent; "false": present (any listed value may hold).
        return condition
            .values
            .iter()
            .any(|v| (v == "true") == present.is_none());
    }
    let Some(present) = present else {
        return match op.set {
            _ if op.if_exists => true,
            // Every value of an empty set passes; no value of it can.
            Some(SetOperator::ForAllValues) => true,
            Some(SetOperator::ForAnyValue) => false,
            // A missing key fails a positive test and passes a negated one.
            None => matches!(
                op.test,
                Test::StringNotEquals | Test::StringNotLike | Test::ArnNotEquals | Test::ArnNotLike
            ),
        };
    };
    let test = |v: &String| test_one(op.test, &condition.values, v);
    match op.set {
        Some(SetOperator::ForAllValues) => present.iter().all(test),
        Some(SetOperator::ForAnyValue) => present.iter().any(test),
        None => present.iter().any(test),
    }
}

fn statement_applies(
    statement: &Statement,
    action: &str,
    caller: &Caller<'_>,
    request: &RequestContext,
) -> bool {
    action_matches(statement, action)
        && principal_matches(&statement.principal, caller)
        && statement
            .conditions
            .iter()
            .all(|c| condition_holds(c, request))
}

impl TrustPolicy {
    /// IAM's decision on `action` for `caller` making `request`: an explicit deny wins, then an
    /// allow; without either, an implicit deny.
    pub(crate) fn decide(
        &self,
        action: &str,
        caller: &Caller<'_>,
        request: &RequestContext,
    ) -> Decision {
        let mut allowed = false;
        for statement in &self.statements {
            if statement_applies(statement, action, caller, request) {
                match statement.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allowed
        } else {
            Decision::ImplicitDeny
        }
    }

    /// The first of `actions` this policy does not allow, and why; `None` when all are.
    pub(crate) fn first_refused<'a>(
        &self,
        actions: &[&'a str],
        caller: &Caller<'_>,
        request: &RequestContext,
    ) -> Option<(&'a str, Decision)> {
        actions
            .iter()
            .find_map(|action| match self.decide(action, caller, request) {
                Decision::Allowed => None,
                refused => Some((*action, refused)),
            })
    }
}

//! Which role ARNs a namespace may bind: the namespace annotation
//! `podcreds.dev/allowed-role-arns` (pure).
//!
//! The chart's admission policy applies exactly these rules in CEL
//! (`charts/podcreds/templates/admissionpolicy.yaml`); one table of cases,
//! `tests/data/allowlist-cases.json`, drives both this module's unit test and an end-to-end test
//! that sends every case through the apiserver, so the two cannot drift apart.
//!
//! The rules:
//!
//! - The value is a comma-separated list of patterns. Each is trimmed of white space; empty
//!   entries are skipped. A namespace with the annotation but no pattern allows no role at all.
//!   (A namespace without the annotation allows every role; that is the caller's check.)
//! - A pattern may contain only `A-Z a-z 0-9 _ + = , . @ : / -` (the characters of role ARNs) and
//!   `*`. A pattern with any other character is invalid and matches nothing.
//! - `*` matches any run of characters, possibly empty, that contains no `/`: it stays within one
//!   path segment, so `role/shop-*` matches `role/shop-reader` but not `role/shop-x/admin`.
//! - `**` matches any run of characters, possibly empty, `/` included: `role/shop/**` matches
//!   every role under the path `/shop/`. Stars pair up from the left, so `***` is `**` then `*`.
//! - Every other character matches itself, case-sensitively; the pattern must match the whole ARN.

/// The namespace annotation holding the allowlist.
pub const ANNOTATION: &str = "podcreds.dev/allowed-role-arns";

/// Whether `role_arn` is allowed by the annotation value `annotation_value` (the annotation is
/// present; a namespace without it allows every role).
pub fn allowed(annotation_value: &str, role_arn: &str) -> bool {
    Allowlist::parse(annotation_value).allows(role_arn)
}

/// Why a binding may not use its role.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoleNotAllowed {
    #[error(
        "role {role} is not allowed in namespace {namespace} (annotation {ANNOTATION}: {allowlist}); no credentials are issued, and those already in its Secret are removed (condition CredentialsRevoked)"
    )]
    NotListed {
        role: String,
        namespace: String,
        allowlist: String,
    },
    #[error(
        "namespace {namespace} has no {ANNOTATION} annotation and this operator requires one (--require-role-allowlist); ask the cluster admin to list the roles the namespace may bind"
    )]
    NoAllowlist { namespace: String },
}

/// Whether a binding in `namespace` may use `role_arn`, given the namespace's annotation (if any)
/// and whether the operator requires one. Checked on every reconciliation, so bindings admitted
/// before the annotation (or without the admission policy) stop being refreshed too.
pub fn check(
    namespace: &str,
    annotation_value: Option<&str>,
    role_arn: &str,
    require_allowlist: bool,
) -> Result<(), RoleNotAllowed> {
    match annotation_value {
        None if require_allowlist => Err(RoleNotAllowed::NoAllowlist {
            namespace: namespace.to_string(),
        }),
        None => Ok(()),
        Some(value) if allowed(value, role_arn) => Ok(()),
        Some(value) => Err(RoleNotAllowed::NotListed {
            role: role_arn.to_string(),
            namespace: namespace.to_string(),
            allowlist: crate::text::remote(value),
        }),
    }
}

/// [`check`] for every role a binding's credentials pass through (its `roleArn`, then each
/// `roleChain` hop's): a namespace may not reach a role through a chain that it could not bind.
pub fn check_all<'a>(
    namespace: &str,
    annotation_value: Option<&str>,
    role_arns: impl IntoIterator<Item = &'a str>,
    require_allowlist: bool,
) -> Result<(), RoleNotAllowed> {
    role_arns
        .into_iter()
        .try_for_each(|arn| check(namespace, annotation_value, arn, require_allowlist))
}

/// A parsed annotation value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

/// One entry of the annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Pattern(Pattern),
    /// The trimmed text of an entry with a character patterns may not contain; it matches nothing.
    Invalid(String),
}

/// A valid pattern: its text and what each part matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// This byte.
    Byte(u8),
    /// `*`: any run without `/`.
    WithinSegment,
    /// `**`: any run. Like RE2's `.`, which the CEL rule uses, it stops at a line break (role
    /// ARNs never contain one).
    AcrossSegments,
}

fn pattern_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@:/-*".contains(c)
}

impl Allowlist {
    /// Parses an annotation value. Never fails: an entry that is not a valid pattern is kept as
    /// [`Entry::Invalid`] and matches nothing.
    pub fn parse(annotation_value: &str) -> Self {
        let entries = annotation_value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| match Pattern::parse(entry) {
                Some(pattern) => Entry::Pattern(pattern),
                None => Entry::Invalid(entry.to_string()),
            })
            .collect();
        Self { entries }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries that match nothing because they are not valid patterns (worth telling the admin).
    pub fn invalid_entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Invalid(text) => Some(text.as_str()),
            Entry::Pattern(_) => None,
        })
    }

    /// Whether some pattern matches the whole of `role_arn`.
    pub fn allows(&self, role_arn: &str) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Pattern(p) => p.matches(role_arn),
            Entry::Invalid(_) => false,
        })
    }
}

impl Pattern {
    /// `None` when `text` is empty or holds a character patterns may not contain.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || !text.chars().all(pattern_char) {
            return None;
        }
        let bytes = text.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'*' {
                if bytes.get(i + 1) == Some(&b'*') {
                    tokens.push(Token::AcrossSegments);
                    i += 2;
                } else {
                    tokens.push(Token::WithinSegment);
                    i += 1;
                }
            } else {
                tokens.push(Token::Byte(bytes[i]));
                i += 1;
            }
        }
        Some(Self {
            text: text.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches the whole of `text`. Tracks every position of `text` the
    /// tokens so far can end at, so the cost is tokens x length, whatever the stars.
    pub fn matches(&self, text: &str) -> bool {
        let text = text.as_bytes();
        // reachable[p]: the tokens so far can match text[..p].
        let mut reachable = vec![false; text.len() + 1];
        reachable[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; text.len() + 1];
            match *token {
                Token::Byte(b) => {
                    for p in 0..text.len() {
                        next[p + 1] = reachable[p] && text[p] == b;
                    }
                }
                Token::WithinSegment => extend_runs(&reachable, &mut next, text, b'/'),
                Token::AcrossSegments => extend_runs(&reachable, &mut next, text, b'\n'),
            }
            reachable = next;
            if !reachable.contains(&true) {
                return false;
            }
        }
        reachable[text.len()]
    }
}

/// Marks in `next` every position a run of bytes other than `stop` can reach from a position
/// marked in `reachable` (a run may be empty). `/` and line-break bytes never occur inside a
/// UTF-8 sequence, so working on bytes is exact.
fn extend_runs(reachable: &[bool], next: &mut [bool], text: &[u8], stop: u8) {
    let mut run = false;
    for p in 0..=text.len() {
        run = reachable[p] || (run && text[p - 1] != stop);
        next[p] = run;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of `tests/data/allowlist-cases.json`, shared with the end-to-end suite.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Case {
        annotation: String,
        role_arn: String,
        allowed: bool,
        why: String,
    }

    fn cases() -> Vec<Case> {
        serde_json::from_str(include_str!("../tests/data/allowlist-cases.json"))
            .expect("tests/data/allowlist-cases.json parses")
    }

    #[test]
    fn the_shared_table_holds() {
        let cases = cases();
        assert!(cases.len() >= 20, "the table lost its cases");
        let wrong: Vec<String> = cases
            .iter()
            .filter(|c| allowed(&c.annotation, &c.role_arn) != c.allowed)
            .map(|c| {
                format!(
                    "{:?} vs {:?}: expected {} ({})",
                    c.annotation, c.role_arn, c.allowed, c.why
                )
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_shared_table_uses_only_valid_role_arns() {
        // The end-to-end test creates a binding per case, so the CRD must accept every ARN.
        let re = regex::bytes::RegexBuilder::new(crate::patterns::ROLE_ARN)
            .unicode(false)
            .build()
            .expect("pattern");
        for c in cases() {
            assert!(re.is_match(c.role_arn.as_bytes()), "{}", c.role_arn);
        }
    }

    #[test]
    fn every_role_of_a_chain_must_be_allowed() {
        let allow = Some("arn:aws:iam::123456789012:role/shop-*");
        let entry = "arn:aws:iam::123456789012:role/shop-entry";
        let hop = "arn:aws:iam::123456789012:role/shop-reader";
        let foreign = "arn:aws:iam::999999999999:role/admin";
        assert_eq!(check_all("shop", allow, [entry, hop], false), Ok(()));
        let refused = check_all("shop", allow, [entry, foreign, hop], false).expect_err("hop");
        assert!(refused.to_string().contains(foreign), "{refused}");
        assert!(check_all("shop", None, [entry, foreign], true).is_err());
        assert_eq!(check_all("shop", None, [entry, foreign], false), Ok(()));
    }

    #[test]
    fn parsing_keeps_invalid_entries_visible() {
        let list = Allowlist::parse(" arn:aws:iam::1:role/a , ,role/(x|y),");
        assert_eq!(list.entries().len(), 2);
        assert_eq!(list.invalid_entries().collect::<Vec<_>>(), ["role/(x|y)"]);
        assert!(Allowlist::parse("").entries().is_empty());
        assert!(!Allowlist::parse(" , ").allows("arn:aws:iam::123456789012:role/a"));
    }

    #[test]
    fn stars_pair_up_from_the_left() {
        let p = Pattern::parse("a***b").expect("valid");
        assert_eq!(
            p.tokens,
            [
                Token::Byte(b'a'),
                Token::AcrossSegments,
                Token::WithinSegment,
                Token::Byte(b'b')
            ]
        );
        assert!(p.matches("a/x/yb"));
    }

    /// A slow but obviously correct reference: the same translation the CEL rule makes, to a
    /// regular expression.
    fn reference(pattern: &str, text: &str) -> bool {
        let translated = pattern
            .replace('.', "\\.")
            .replace('+', "\\+")
            .replace("**", "#")
            .replace('*', "[^/]*")
            .replace('#', ".*");
        regex::bytes::RegexBuilder::new(&format!("^{translated}$"))
            .unicode(false)
            .build()
            .expect("translated pattern compiles")
            .is_match(text.as_bytes())
    }

    proptest::proptest! {
        #[test]
        fn matching_agrees_with_the_cel_translation(
            pattern in "[ab/.+*]{1,12}",
            text in "[ab/.+x\n]{0,16}",
        ) {
            let parsed = Pattern::parse(&pattern).expect("valid characters");
            proptest::prop_assert_eq!(parsed.matches(&text), reference(&pattern, &text));
        }

        #[test]
        fn any_input_is_handled(annotation in ".{0,80}", arn in ".{0,80}") {
            let _ = allowed(&annotation, &arn);
        }
    }

    #[test]
    fn the_operator_checks_the_namespace_on_every_binding() {
        let role = "arn:aws:iam::123456789012:role/shop-reader";
        assert_eq!(check("shop", None, role, false), Ok(()));
        assert!(matches!(
            check("shop", None, role, true),
            Err(RoleNotAllowed::NoAllowlist { .. })
        ));
        let listed = "arn:aws:iam::123456789012:role/shop-*";
        assert_eq!(check("shop", Some(listed), role, true), Ok(()));
        let refused = check(
            "shop",
            Some(listed),
            "arn:aws:iam::123456789012:role/shop-x/admin",
            false,
        )
        .expect_err("another path");
        assert!(
            refused
                .to_string()
                .contains("is not allowed in namespace shop")
        );
        // An annotation that lists nothing allows nothing.
        assert!(check("shop", Some(" , "), role, false).is_err());
    }
}

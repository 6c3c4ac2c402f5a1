//! The emulator's state: roles and their trust rules, issued sessions, injected faults, and a log
//! of every call.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use crate::roles::RegisteredRole;
use crate::roles_anywhere::{Profile, RegisteredTrustAnchor};
use crate::trust_policy::TrustPolicy;

/// A role the emulator knows: its trust policy and its session limits.
///
/// The trust policy is [`Role::trust_policy`] (IAM's statements, as [`role_from_trust_policy`]
/// reads them) together with the statements the legacy fields below stand for. When the role is
/// registered, the legacy fields become these statements (`<provider>` is the emulator's issuer
/// without `https://`, in the role's partition and account):
///
/// - `subjects` (with `audiences`): `Allow` `Federated`
///   `arn:<partition>:iam::<account>:oidc-provider/<provider>` `sts:AssumeRoleWithWebIdentity`
///   if `StringLike` `<provider>:sub` is one of `subjects` and `StringEquals` `<provider>:aud` is
///   one of `audiences` (empty: `sts.amazonaws.com`);
/// - `saml_providers` (with `subjects`): `Allow` `Federated` those providers
///   `sts:AssumeRoleWithSAML` if `StringLike` `SAML:sub` is one of `subjects`;
/// - `trusted_roles` and `trusted_users`: `Allow` `AWS` those ARNs `sts:AssumeRole`, if
///   `external_id` is set only when `StringEquals` `sts:ExternalId` is it;
/// - `allow_tag_session` / `allow_set_source_identity` add `sts:TagSession` /
///   `sts:SetSourceIdentity` to each of those statements.
///
/// Without `subjects`, neither of the first two exists (no token or assertion is trusted).
/// Principal ARNs take no wildcard, as in IAM: a role naming one is refused at registration.
///
/// [`role_from_trust_policy`]: crate::role_from_trust_policy
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub arn: String,
    /// Web identity subjects (`sub` claim), and SAML NameIDs (`SAML:sub`), allowed to assume the
    /// role; IAM's `StringLike` wildcards (`*`, `?`) apply.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Audiences accepted (`aud` claim); empty means `sts.amazonaws.com`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A test device, not IAM's limit: sessions of this role expire after at most this many
    /// seconds whatever was asked, as if the clock ran fast, so tests watch refreshes happen in
    /// seconds. (IAM's limit is [`Role::max_session_duration`].)
    #[serde(default, alias = "maxSessionSeconds")]
    pub lifetime_seconds: Option<u64>,
    /// IAM's `MaxSessionDuration` in seconds (3,600 to 43,200; unset: IAM's default, 3,600). A
    /// request asking more is refused with `ValidationError`, as STS does.
    #[serde(default)]
    pub max_session_duration: Option<u64>,
    /// Roles whose sessions may assume this one with `AssumeRole` (the trust policy's
    /// `"Principal": {"AWS": "<role ARN>"}`).
    #[serde(default)]
    pub trusted_roles: Vec<String>,
    /// The `sts:ExternalId` the trust policy requires of `AssumeRole` calls, if any.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The trust policy allows `sts:TagSession`: without it, a session that would carry tags
    /// (sent, or inherited as transitive tags) is refused.
    #[serde(default)]
    pub allow_tag_session: bool,
    /// The trust policy allows `sts:SetSourceIdentity`: without it, a session that would carry a
    /// source identity (sent, or inherited) is refused.
    #[serde(default)]
    pub allow_set_source_identity: bool,
    /// IAM SAML providers whose assertions may assume this role (the trust policy's
    /// `"Principal": {"Federated": "<provider ARN>"}` with `sts:AssumeRoleWithSAML`); the
    /// assertion's NameID (`SAML:sub`) must match `subjects`.
    #[serde(default)]
    pub saml_providers: Vec<String>,
    /// IAM users whose long-term keys (or `GetSessionToken` sessions) may assume this role with
    /// `AssumeRole` (the trust policy's `"Principal": {"AWS": "<user ARN>"}`). Such an
    /// `AssumeRole` is not role chaining: up to the role's `MaxSessionDuration`.
    #[serde(default)]
    pub trusted_users: Vec<String>,
    /// The role's trust policy document, statement by statement (in JSON, IAM's own document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy: Option<TrustPolicy>,
}

impl Role {
    /// The audiences of web identity tokens the role's legacy fields accept.
    pub fn accepted_audiences(&self) -> Vec<String> {
        if self.audiences.is_empty() {
            vec!["sts.amazonaws.com".to_string()]
        } else {
            self.audiences.clone()
        }
    }
}

/// An IAM user with one pair of long-term access keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A test device, not an AWS limit: sessions `GetFederationToken` / `GetSessionToken` issue
    /// this user expire after at most this many seconds whatever was asked, as if the clock ran
    /// fast, so tests watch refreshes happen in seconds.
    #[serde(default, alias = "maxSessionSeconds")]
    pub lifetime_seconds: Option<u64>,
}

impl User {
    /// The account of the user's ARN.
    pub fn account(&self) -> &str {
        self.arn
            .strip_prefix("arn:")
            .and_then(|rest| rest.split(':').nth(3))
            .unwrap_or_default()
    }
}

/// A registered IAM SAML provider (what `create-saml-provider` keeps of the IdP's metadata).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SamlProvider {
    pub arn: String,
    pub entity_id: String,
    /// Signing certificates from the metadata, PEM.
    pub certificates: Vec<String>,
}

/// Who a session belongs to, which decides what it may call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionKind {
    /// A role session (web identity, or `AssumeRole`): its `AssumeRole` is role chaining.
    #[default]
    Role,
    /// `GetFederationToken`: may call no STS action but `GetCallerIdentity`.
    Federated,
    /// `GetSessionToken`: the user's own identity; its `AssumeRole` is not chaining.
    UserSession,
    /// Not a session: an IAM user's long-term keys.
    LongTerm,
}

/// Temporary credentials the emulator issued.
#[derive(Clone, Debug)]
pub struct Session {
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: Timestamp,
    pub assumed_role_arn: String,
    pub assumed_role_id: String,
    pub account: String,
    /// The IAM role the session belongs to (the IAM user for user sessions and long-term keys).
    pub role_arn: String,
    pub kind: SessionKind,
    /// Every session tag of the session (sent, or inherited): its `aws:PrincipalTag`s.
    pub tags: Vec<SessionTag>,
    /// Tags later sessions of a chain inherit (and may not override).
    pub transitive_tags: Vec<SessionTag>,
    /// Set once in a chain, then carried by every later session.
    pub source_identity: Option<String>,
}

/// A session tag as a call sent or a session carries it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionTag {
    pub key: String,
    pub value: String,
}

/// Faults to inject, set through the control endpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Answer the next N calls with `Throttling`.
    pub throttle_next: u32,
    /// Answer one call in every N with `Throttling` (0: never).
    pub throttle_every: u32,
    /// Answer the next N calls with HTTP 500 `InternalFailure`.
    pub fail_next: u32,
    /// Answer the next N calls with a truncated XML document.
    pub malformed_next: u32,
    /// Answer the next N calls with `IDPCommunicationError`.
    pub idp_error_next: u32,
    /// Answer the next `error_next` calls with this AWS error code (HTTP 400, or 403 for
    /// `AccessDenied`), for example `ExpiredTokenException` or `RegionDisabledException`.
    pub error_code: Option<String>,
    pub error_next: u32,
    /// Delay every answer by this many milliseconds.
    pub latency_ms: u64,
    /// Answer every call with HTTP 503 for this many milliseconds from now.
    pub down_for_ms: u64,
    /// Seconds the emulator's clock is ahead of (positive) or behind (negative) the cluster's
    /// when it checks token times.
    pub clock_skew_seconds: i64,
    /// Inject faults (all of the above but the clock skew) only into calls of this action, for
    /// example `AssumeRole` to fail the hops of role chains but not their first exchange.
    pub only_action: Option<String>,
}

/// One call, as the emulator saw it (never with credentials or tokens).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub at: String,
    pub action: String,
    pub role_arn: Option<String>,
    pub subject: Option<String>,
    pub audience: Option<String>,
    pub session_name: Option<String>,
    pub duration_seconds: Option<u64>,
    pub granted_seconds: Option<u64>,
    /// Access key the call was signed with (signed actions) or issued (AssumeRole*).
    pub access_key_id: Option<String>,
    /// `Ok` or the error code returned.
    pub result: String,
    /// `AssumeRole`: the session tags sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<SessionTag>,
    /// `AssumeRole`: the transitive tag keys sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitive_tag_keys: Vec<String>,
    /// `AssumeRole`: the transitive tags the calling session carried into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherited_tags: Vec<SessionTag>,
    /// `AssumeRole`: the source identity of the new session (sent, or inherited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    /// `AssumeRole`: the external ID sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `AssumeRole`: the access key of the session issued (`access_key_id` is the signing one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_access_key_id: Option<String>,
    /// The inline session policy sent (`Policy`), by every action that takes one
    /// (`AssumeRoleWithWebIdentity`, `AssumeRoleWithSAML`, `AssumeRole`, `GetFederationToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The managed session policies sent (`PolicyArns`), in order, by the same actions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_arns: Vec<String>,
    /// `AssumeRole`, `GetFederationToken`: the `PackedPolicySize` answered, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed_policy_size: Option<u32>,
    /// `AssumeRoleWithSAML`: what `xmlsec1 --verify` said of the signature (`Valid`, `Invalid`),
    /// if it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_signature: Option<String>,
    /// `AssumeRoleWithSAML`: SHA-256 (hex, of the DER) of the certificate that verified it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_certificate_sha256: Option<String>,
    /// `CreateSession`: the trust anchor named (`subject` is the signing certificate's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_anchor_arn: Option<String>,
    /// `CreateSession`: the profile named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_arn: Option<String>,
    /// `CreateSession`: the signing certificate's serial number (hex), once its signature held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_serial: Option<String>,
    /// `CreateSession`: the signing certificate (DER, base64), once its signature held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_der_base64: Option<String>,
}

/// Counters over the call log.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub total: u64,
    pub by_action: BTreeMap<String, u64>,
    pub by_role: BTreeMap<String, u64>,
    pub by_subject: BTreeMap<String, u64>,
    pub by_result: BTreeMap<String, u64>,
    /// SAML Responses whose signature `xmlsec1 --verify` accepted / refused.
    #[serde(default)]
    pub saml_signatures_valid: u64,
    #[serde(default)]
    pub saml_signatures_invalid: u64,
}

#[derive(Default)]
pub struct State {
    pub roles: HashMap<String, RegisteredRole>,
    pub saml_providers: HashMap<String, SamlProvider>,
    /// IAM Roles Anywhere trust anchors and profiles, by ARN.
    pub trust_anchors: HashMap<String, RegisteredTrustAnchor>,
    pub profiles: HashMap<String, Profile>,
    /// IAM users by access key ID.
    pub users: HashMap<String, User>,
    pub sessions: HashMap<String, Session>,
    pub faults: Faults,
    pub down_until: Option<std::time::Instant>,
    pub calls: Vec<CallRecord>,
    pub counters: Counters,
    pub served: u64,
    /// ECR's settings and the `GetAuthorizationToken` tokens issued (expired ones are dropped
    /// as new ones are issued, and never listed).
    pub ecr: crate::actions::ecr::EcrSettings,
    pub ecr_tokens: Vec<crate::actions::ecr::IssuedToken>,
}

/// What the fault injector decided for one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Injected {
    None,
    Down,
    Throttle,
    InternalFailure,
    Malformed,
    IdpError,
    Code(String),
}

impl State {
    /// Consumes the fault budget for one call of `action`.
    pub fn next_fault(&mut self, action: &str) -> (Injected, Duration) {
        if self
            .faults
            .only_action
            .as_deref()
            .is_some_and(|only| only != action)
        {
            return (Injected::None, Duration::ZERO);
        }
        self.served += 1;
        let latency = Duration::from_millis(self.faults.latency_ms);
        if self
            .down_until
            .is_some_and(|t| std::time::Instant::now() < t)
        {
            return (Injected::Down, latency);
        }
        let f = &mut self.faults;
        let injected = if f.throttle_next > 0 {
            f.throttle_next -= 1;
            Injected::Throttle
        } else if f.fail_next > 0 {
            f.fail_next -= 1;
            Injected::InternalFailure
        } else if f.malformed_next > 0 {
            f.malformed_next -= 1;
            Injected::Malformed
        } else if f.idp_error_next > 0 {
            f.idp_error_next -= 1;
            Injected::IdpError
        } else if f.error_next > 0 && f.error_code.is_some() {
            f.error_next -= 1;
            Injected::Code(f.error_code.clone().unwrap_or_default())
        } else if f.throttle_every > 0 && self.served.is_multiple_of(u64::from(f.throttle_every)) {
            Injected::Throttle
        } else {
            Injected::None
        };
        (injected, latency)
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.down_until = (faults.down_for_ms > 0)
            .then(|| std::time::Instant::now() + Duration::from_millis(faults.down_for_ms));
        self.faults = faults;
    }

    pub fn record(&mut self, call: CallRecord) {
        let c = &mut self.counters;
        c.total += 1;
        *c.by_action.entry(call.action.clone()).or_default() += 1;
        *c.by_result.entry(call.result.clone()).or_default() += 1;
        match call.saml_signature.as_deref() {
            Some("Valid") => c.saml_signatures_valid += 1,
            Some("Invalid") => c.saml_signatures_invalid += 1,
            _ => {}
        }
        if let Some(r) = &call.role_arn {
            *c.by_role.entry(r.clone()).or_default() += 1;
        }
        if let Some(s) = &call.subject {
            *c.by_subject.entry(s.clone()).or_default() += 1;
        }
        // Bounded log: a long benchmark must not grow the emulator without limit.
        if self.calls.len() >= 200_000 {
            self.calls.drain(..100_000);
        }
        self.calls.push(call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_budgets_are_consumed_in_order() {
        let mut s = State::default();
        s.set_faults(Faults {
            throttle_next: 1,
            fail_next: 1,
            ..Faults::default()
        });
        assert_eq!(
            s.next_fault("AssumeRoleWithWebIdentity").0,
            Injected::Throttle
        );
        assert_eq!(
            s.next_fault("AssumeRoleWithWebIdentity").0,
            Injected::InternalFailure
        );
        assert_eq!(s.next_fault("AssumeRoleWithWebIdentity").0, Injected::None);
        s.set_faults(Faults {
            down_for_ms: 60_000,
            ..Faults::default()
        });
        assert_eq!(s.next_fault("AssumeRoleWithWebIdentity").0, Injected::Down);
        // Faults limited to one action leave the others alone and keep their budget.
        s.set_faults(Faults {
            fail_next: 1,
            only_action: Some("AssumeRole".into()),
            ..Faults::default()
        });
        assert_eq!(s.next_fault("AssumeRoleWithWebIdentity").0, Injected::None);
        assert_eq!(s.next_fault("AssumeRole").0, Injected::InternalFailure);
        assert_eq!(s.next_fault("AssumeRole").0, Injected::None);
    }
}

//! Status step (pure): the binding's status for an outcome of one reconciliation.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{AWSRoleBindingStatus, ChainHopStatus};
use crate::secret::IssuedMeta;
use crate::time::rfc3339;

pub const CONDITION_READY: &str = "Ready";
/// True while refreshing fails although the credentials in the Secret are still valid.
pub const CONDITION_DEGRADED: &str = "Degraded";

/// Reason of `Ready=True`.
pub const REASON_ISSUED: &str = "CredentialsIssued";
/// Reason of `Ready=False` while the Secret name belongs to something else.
pub const REASON_CONFLICT: &str = "SecretConflict";
/// Reason of `Degraded=False`.
pub const REASON_REFRESHING: &str = "RefreshSucceeded";
/// Role chains only: True while `durationSeconds` asks for more than the hour STS grants a chain.
pub const CONDITION_SESSION_CLAMPED: &str = "SessionDurationClamped";
/// Role chains only: True while a hop's session policies and tags use more than
/// [`PACKED_POLICY_WARNING_PERCENT`] of STS's packed size limit.
pub const CONDITION_PACKED_POLICY: &str = "PackedPolicyNearLimit";
/// True once the credentials of a binding no longer allowed them were removed from its Secret;
/// False while their removal is scheduled (the admin's grace period). Its `lastTransitionTime`
/// says since when. Gone once the binding is allowed again and has credentials.
pub const CONDITION_REVOKED: &str = "CredentialsRevoked";
/// Reason of `CredentialsRevoked=False`.
pub const REASON_REVOCATION_SCHEDULED: &str = "RevocationScheduled";

/// `PackedPolicySize` above which a binding warns.
pub const PACKED_POLICY_WARNING_PERCENT: i32 = 90;

/// What one reconciliation found.
#[derive(Clone, Debug)]
pub enum Outcome<'a> {
    /// The Secret holds valid credentials (just issued, or still fresh).
    Valid {
        issued: &'a IssuedMeta,
        holder: Holder<'a>,
        /// UID of the Secret, when this reconciliation created it.
        created_uid: Option<&'a str>,
        /// This reconciliation issued them (rather than finding them in place).
        just_issued: bool,
    },
    /// A refresh failed; `still_valid` holds the Secret's credentials if they have not expired.
    RefreshFailed {
        category: &'static str,
        message: String,
        still_valid: Option<&'a IssuedMeta>,
        holder: Holder<'a>,
    },
    /// The binding cannot be acted on (invalid spec, conflict, not allowed).
    Blocked {
        category: &'static str,
        message: String,
    },
    /// The binding is no longer allowed credentials (see [`crate::plan::revokes`]), and what
    /// became of those in its Secret.
    NotAllowed {
        category: &'static str,
        message: String,
        revocation: RevocationReport<'a>,
    },
}

/// Where a binding's credentials are kept: its Secret, the node endpoint (the leader's memory),
/// or both. Said in the Ready condition's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub secret: Option<&'a str>,
    pub endpoint: bool,
}

impl std::fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.secret, self.endpoint) {
            (Some(name), false) => write!(f, "Secret {name} holds"),
            (Some(name), true) => write!(f, "Secret {name} and the node endpoint hold"),
            (None, _) => write!(f, "the node endpoint serves"),
        }
    }
}

/// What became of the credentials of a binding no longer allowed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationReport<'a> {
    /// They are removed from Secret `secret_name` at `at`.
    Scheduled { at: Timestamp, secret_name: &'a str },
    /// They were removed from Secret `secret_name` just now.
    Revoked { secret_name: &'a str },
    /// The Secret holds none.
    Nothing,
}

/// The time since which the binding's credentials are revoked, or their removal scheduled.
pub fn revoked_since(status: Option<&AWSRoleBindingStatus>) -> Option<Timestamp> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_REVOKED)
        .map(|c| c.last_transition_time.0)
}

pub fn time(t: Timestamp) -> Time {
    Time(t)
}

/// Sets condition `type_` in `conditions`, keeping its `lastTransitionTime` unless the status flips.
pub(crate) fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// A status this process wrote, and the `resourceVersion` of the binding it was computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusWrite {
    pub based_on: String,
    pub status: AWSRoleBindingStatus,
}

impl StatusWrite {
    /// Whether a cache showing the binding at `cached_version` has not seen this write yet.
    pub fn ahead_of(&self, cached_version: Option<&str>) -> bool {
        cached_version == Some(self.based_on.as_str())
    }
}

/// The binding's status as the apiserver holds it, as far as this process knows. The cache lags
/// behind our own writes: while it still shows the version the last write was computed from,
/// that write is the current status (comparing with the cache would write the same status
/// twice). Once the cache shows any other version, the cache is the truth again.
pub fn known_status<'a>(
    cached_version: Option<&str>,
    cached: Option<&'a AWSRoleBindingStatus>,
    last_write: Option<&'a StatusWrite>,
) -> Option<&'a AWSRoleBindingStatus> {
    match last_write {
        Some(w) if w.ahead_of(cached_version) => Some(&w.status),
        _ => cached,
    }
}

/// Records `secret_name` as the binding's Secret, and the UID of the Secret podcreds created
/// under that name: a new creation's UID, else the one already recorded for the same name,
/// else none (the Secret was there before, so podcreds will never delete it). An Endpoint-only
/// binding (`secret_name` None) records none.
fn track_secret(
    status: &mut AWSRoleBindingStatus,
    secret_name: Option<&str>,
    created_uid: Option<&str>,
) {
    let Some(secret_name) = secret_name else {
        status.secret_name = None;
        status.secret_uid = None;
        return;
    };
    let same_name = status.secret_name.as_deref() == Some(secret_name);
    status.secret_uid = match created_uid {
        Some(uid) => Some(uid.to_string()),
        None if same_name => status.secret_uid.take(),
        None => None,
    };
    status.secret_name = Some(secret_name.to_string());
}

/// Reports the role chain the credentials in the Secret came through: one entry per hop, and
/// the two chain conditions. Without a chain, all of it goes.
fn report_chain(
    status: &mut AWSRoleBindingStatus,
    conditions: &mut Vec<Condition>,
    issued: &IssuedMeta,
    generation: Option<i64>,
    now: Timestamp,
) {
    let Some(chain) = &issued.chain else {
        status.chain.clear();
        conditions
            .retain(|c| c.type_ != CONDITION_SESSION_CLAMPED && c.type_ != CONDITION_PACKED_POLICY);
        return;
    };
    status.chain = chain
        .hops
        .iter()
        .map(|hop| ChainHopStatus {
            assumed_role_arn: hop.assumed_role_arn.clone(),
            expiration: Some(time(hop.expiration)),
            packed_policy_size_percent: hop.packed_policy_size,
        })
        .collect();
    let (clamped, reason, message) = match chain.clamped_from {
        Some(asked) => (
            true,
            "RoleChainingLimit",
            format!(
                "durationSeconds {asked} is longer than the one hour STS allows a role chain: the sessions last at most 3600 seconds"
            ),
        ),
        None => (
            false,
            "WithinLimit",
            "durationSeconds fits the one hour STS allows a role chain".to_string(),
        ),
    };
    set_condition(
        conditions,
        CONDITION_SESSION_CLAMPED,
        clamped,
        reason,
        message,
        generation,
        now,
    );
    let near_limit: Vec<String> = chain
        .hops
        .iter()
        .enumerate()
        .filter_map(|(i, hop)| {
            hop.packed_policy_size
                .filter(|p| *p > PACKED_POLICY_WARNING_PERCENT)
                .map(|p| format!("roleChain[{i}] uses {p}%"))
        })
        .collect();
    let (near, reason, message) = if near_limit.is_empty() {
        (
            false,
            "WithinLimit",
            format!(
                "every hop's session policies and tags use at most {PACKED_POLICY_WARNING_PERCENT}% of STS's packed size limit"
            ),
        )
    } else {
        (
            true,
            "PackedPolicySize",
            format!(
                "{} of STS's packed size limit for session policies and tags; more will fail with PackedPolicyTooLarge",
                near_limit.join(", ")
            ),
        )
    };
    set_condition(
        conditions,
        CONDITION_PACKED_POLICY,
        near,
        reason,
        message,
        generation,
        now,
    );
}

/// What one reconciliation says about the binding's image-pull Secret.
#[derive(Clone, Copy, Debug)]
pub enum PullReport<'a> {
    /// Nothing new: the status keeps what it said.
    Keep,
    /// The binding has no image-pull Secret (any more).
    Clear,
    /// The image-pull Secret was just written.
    Written(&'a crate::api::ImagePullSecretStatus),
}

/// The `imagePullSecret` status after `report`, from the `current` one. A Secret written again
/// under the same name keeps the UID recorded when podcreds created it.
pub fn pull_secret_status(
    current: Option<&crate::api::ImagePullSecretStatus>,
    report: PullReport<'_>,
) -> Option<crate::api::ImagePullSecretStatus> {
    match report {
        PullReport::Keep => current.cloned(),
        PullReport::Clear => None,
        PullReport::Written(written) => {
            let mut status = written.clone();
            if status.secret_uid.is_none() {
                status.secret_uid = current
                    .filter(|c| c.secret_name == status.secret_name)
                    .and_then(|c| c.secret_uid.clone());
            }
            Some(status)
        }
    }
}

/// The status after `outcome`, starting from the `current` one.
pub fn build_status(
    current: Option<&AWSRoleBindingStatus>,
    generation: Option<i64>,
    outcome: &Outcome<'_>,
    now: Timestamp,
) -> AWSRoleBindingStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let mut conditions = std::mem::take(&mut status.conditions);
    match outcome {
        Outcome::Valid {
            issued,
            holder,
            created_uid,
            just_issued,
        } => {
            track_secret(&mut status, holder.secret, *created_uid);
            status.expiration = Some(time(issued.expiration));
            status.renewal_time = Some(time(issued.renewal_time));
            status.last_refresh_time = Some(time(issued.issued_at));
            status.assumed_role_arn = issued.assumed_role_arn.clone();
            status.sts_endpoint = issued.sts_endpoint.clone();
            report_chain(&mut status, &mut conditions, issued, generation, now);
            set_condition(
                &mut conditions,
                CONDITION_READY,
                true,
                REASON_ISSUED,
                format!(
                    "{holder} credentials valid until {}",
                    rfc3339(issued.expiration)
                ),
                generation,
                now,
            );
            // A failed refresh stays reported until credentials newer than the failure are in
            // the Secret: a forced refresh that failed leaves fresh-enough credentials behind,
            // and the next look at them must not read as a success. Both times are kept to the
            // second, so credentials found in place count as newer only from the next second on.
            let failed_since = conditions
                .iter()
                .find(|c| c.type_ == CONDITION_DEGRADED && c.status == "True")
                .map(|c| c.last_transition_time.0);
            if *just_issued || failed_since.is_none_or(|since| issued.issued_at > since) {
                set_condition(
                    &mut conditions,
                    CONDITION_DEGRADED,
                    false,
                    REASON_REFRESHING,
                    "the last refresh succeeded".into(),
                    generation,
                    now,
                );
            }
        }
        Outcome::RefreshFailed {
            category,
            message,
            still_valid,
            holder,
        } => {
            track_secret(&mut status, holder.secret, None);
            match still_valid {
                Some(issued) => {
                    status.expiration = Some(time(issued.expiration));
                    status.renewal_time = Some(time(issued.renewal_time));
                    status.last_refresh_time = Some(time(issued.issued_at));
                    status.assumed_role_arn = issued.assumed_role_arn.clone();
                    status.sts_endpoint = issued.sts_endpoint.clone();
                    report_chain(&mut status, &mut conditions, issued, generation, now);
                    set_condition(
                        &mut conditions,
                        CONDITION_READY,
                        true,
                        REASON_ISSUED,
                        format!(
                            "{holder} credentials valid until {}; refreshing them is failing",
                            rfc3339(issued.expiration)
                        ),
                        generation,
                        now,
                    );
                }
                None => {
                    let expired = status.expiration.as_ref().is_some_and(|e| e.0 <= now);
                    let suffix = if expired {
                        " (the previous credentials have expired)"
                    } else {
                        ""
                    };
                    set_condition(
                        &mut conditions,
                        CONDITION_READY,
                        false,
                        category,
                        format!("{message}{suffix}"),
                        generation,
                        now,
                    );
                }
            }
            set_condition(
                &mut conditions,
                CONDITION_DEGRADED,
                true,
                category,
                message.clone(),
                generation,
                now,
            );
        }
        Outcome::Blocked { category, message } => {
            set_condition(
                &mut conditions,
                CONDITION_READY,
                false,
                category,
                message.clone(),
                generation,
                now,
            );
            conditions.retain(|c| c.type_ != CONDITION_DEGRADED);
        }
        Outcome::NotAllowed {
            category,
            message,
            revocation,
        } => {
            set_condition(
                &mut conditions,
                CONDITION_READY,
                false,
                category,
                message.clone(),
                generation,
                now,
            );
            conditions.retain(|c| c.type_ != CONDITION_DEGRADED);
            match revocation {
                RevocationReport::Scheduled { at, secret_name } => set_condition(
                    &mut conditions,
                    CONDITION_REVOKED,
                    false,
                    REASON_REVOCATION_SCHEDULED,
                    format!(
                        "the credentials in Secret {secret_name} will be removed at {} (the cluster admin's grace period)",
                        rfc3339(*at)
                    ),
                    generation,
                    now,
                ),
                RevocationReport::Revoked { secret_name } => {
                    set_condition(
                        &mut conditions,
                        CONDITION_REVOKED,
                        true,
                        category,
                        format!(
                            "the credentials were removed from Secret {secret_name} ({category}); the Secret is kept"
                        ),
                        generation,
                        now,
                    );
                    status.expiration = None;
                    status.renewal_time = None;
                    status.assumed_role_arn = None;
                    status.sts_endpoint = None;
                    status.chain.clear();
                }
                RevocationReport::Nothing => {}
            }
        }
    }
    if matches!(outcome, Outcome::Valid { .. }) {
        conditions.retain(|c| c.type_ != CONDITION_REVOKED);
    }
    status.conditions = conditions;
    status
}

/// The `Ready` condition of a status, if any.
pub fn ready_condition(status: Option<&AWSRoleBindingStatus>) -> Option<&Condition> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
}

/// Reason of a credential source's `Ready` condition when its keys are usable.
pub const REASON_KEYS_PRESENT: &str = "KeysPresent";

/// The status of a credential source whose check gave `checked` (never the keys: only whether
/// they are usable, or why not).
pub fn source_status(
    current: Option<&crate::api::AWSCredentialSourceStatus>,
    checked: Result<(), &crate::source::SourceError>,
    generation: Option<i64>,
    now: Timestamp,
) -> crate::api::AWSCredentialSourceStatus {
    let mut conditions = current.map(|s| s.conditions.clone()).unwrap_or_default();
    let (ready, reason, message) = match checked {
        Ok(()) => (
            true,
            REASON_KEYS_PRESENT,
            "the Secret holds well-formed AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string(),
        ),
        Err(e) => (false, e.category(), e.to_string()),
    };
    set_condition(
        &mut conditions,
        CONDITION_READY,
        ready,
        reason,
        message,
        generation,
        now,
    );
    crate::api::AWSCredentialSourceStatus {
        conditions,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests;

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
            // and the next look at them must not read as a success.
            let failed_since = conditions
                .iter()
                .find(|c| c.type_ == CONDITION_DEGRADED && c.status == "True")
                .map(|c| c.last_transition_time.0);
            if failed_since.is_none_or(|since| issued.issued_at >= since) {
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
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid")
    }

    fn issued() -> IssuedMeta {
        IssuedMeta {
            issued_at: t(0),
            expiration: t(3600),
            renewal_time: t(2400),
            fingerprint: "f".into(),
            assumed_role_arn: Some("arn:aws:sts::1:assumed-role/r/s".into()),
            chain: None,
            sts_endpoint: None,
        }
    }

    #[test]
    fn own_write_counts_until_the_cache_shows_another_version() {
        let cached = AWSRoleBindingStatus::default();
        let written = AWSRoleBindingStatus {
            observed_generation: Some(1),
            ..AWSRoleBindingStatus::default()
        };
        let write = StatusWrite {
            based_on: "10".into(),
            status: written.clone(),
        };
        // The cache still shows the version the write started from: the write is current.
        assert_eq!(
            known_status(Some("10"), Some(&cached), Some(&write)),
            Some(&written)
        );
        // The cache moved on (our write, or anyone's later one): trust it.
        assert_eq!(
            known_status(Some("11"), Some(&cached), Some(&write)),
            Some(&cached)
        );
        assert_eq!(known_status(Some("10"), None, None), None);
    }

    #[test]
    fn source_status_says_whether_keys_are_usable_and_keeps_transition_times() {
        let ok = source_status(None, Ok(()), Some(1), t(0));
        let ready = &ok.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", REASON_KEYS_PRESENT)
        );
        let again = source_status(Some(&ok), Ok(()), Some(2), t(60));
        assert_eq!(
            again.conditions[0].last_transition_time,
            ready.last_transition_time
        );
        assert_eq!(again.observed_generation, Some(2));
        let missing = crate::source::SourceError::SecretMissing {
            name: "keys".into(),
            secret: "user-keys".into(),
        };
        let broken = source_status(Some(&ok), Err(&missing), Some(2), t(120));
        let c = &broken.conditions[0];
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, "CredentialSourceSecretMissing");
        assert!(c.message.contains("user-keys"), "{}", c.message);
        assert_ne!(c.last_transition_time, ready.last_transition_time);
    }

    fn cond<'a>(s: &'a AWSRoleBindingStatus, type_: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == type_).expect(type_)
    }

    #[test]
    fn valid_credentials_make_the_binding_ready() {
        let i = issued();
        let s = build_status(
            None,
            Some(3),
            &Outcome::Valid {
                issued: &i,
                holder: Holder {
                    secret: Some("s"),
                    endpoint: false,
                },
                created_uid: None,
            },
            t(1),
        );
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Ready").reason, "CredentialsIssued");
        assert_eq!(cond(&s, "Ready").observed_generation, Some(3));
        assert_eq!(cond(&s, "Degraded").status, "False");
        assert_eq!(s.expiration, Some(Time(t(3600))));
        assert_eq!(s.renewal_time, Some(Time(t(2400))));
        assert_eq!(s.secret_name.as_deref(), Some("s"));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn the_endpoint_that_issued_the_credentials_is_reported_until_they_are_gone() {
        let served_by = |endpoint: Option<&str>| IssuedMeta {
            sts_endpoint: endpoint.map(str::to_string),
            ..issued()
        };
        let valid = |i: &IssuedMeta, current: Option<&AWSRoleBindingStatus>| {
            build_status(
                current,
                Some(1),
                &Outcome::Valid {
                    issued: i,
                    holder: Holder {
                        secret: Some("s"),
                        endpoint: false,
                    },
                    created_uid: None,
                },
                t(1),
            )
        };
        let b = served_by(Some("https://sts-b.example"));
        let s = valid(&b, None);
        assert_eq!(s.sts_endpoint.as_deref(), Some("https://sts-b.example"));
        // A failed refresh keeps reporting the credentials still in the Secret.
        let failing = build_status(
            Some(&s),
            Some(1),
            &Outcome::RefreshFailed {
                category: "StsUnavailable",
                message: "down".into(),
                still_valid: Some(&b),
                holder: Holder {
                    secret: Some("s"),
                    endpoint: false,
                },
            },
            t(2),
        );
        assert_eq!(
            failing.sts_endpoint.as_deref(),
            Some("https://sts-b.example")
        );
        // Issued by the AWS regional endpoint: no field.
        assert_eq!(valid(&served_by(None), Some(&s)).sts_endpoint, None);
        let revoked = build_status(
            Some(&s),
            Some(1),
            &Outcome::NotAllowed {
                category: "RoleNotAllowed",
                message: "no".into(),
                revocation: RevocationReport::Revoked { secret_name: "s" },
            },
            t(3),
        );
        assert_eq!(revoked.sts_endpoint, None);
    }

    #[test]
    fn transition_time_only_moves_when_status_flips() {
        let i = issued();
        let first = build_status(
            None,
            Some(1),
            &Outcome::Valid {
                issued: &i,
                holder: Holder {
                    secret: Some("s"),
                    endpoint: false,
                },
                created_uid: None,
            },
            t(1),
        );
        let again = build_status(
            Some(&first),
            Some(1),
            &Outcome::Valid {
                issued: &i,
                holder: Holder {
                    secret: Some("s"),
                    endpoint: false,
                },
                created_uid: None,
            },
            t(50),
        );
        assert_eq!(
            first, again,
            "an unchanged outcome must not change the status"
        );
        let failed = build_status(
            Some(&again),
            Some(1),
            &Outcome::RefreshFailed {
                category: "StsUnavailable",
                message: "down".into(),
                still_valid: Some(&i),
                holder: Holder {
                    secret: Some("s"),
                    endpoint: false,
                },
            },
            t(60),
        );
        assert_eq!(cond(&failed, "Ready").status, "True");
        assert_eq!(cond(&failed, "Ready").last_transition_time, Time(t(1)));
        assert_eq!(cond(&failed, "Degraded").status, "True");
        assert_eq!(cond(&failed, "Degraded").reason, "StsUnavailable");
        assert_eq!(cond(&failed, "Degraded").last_transition_time, Time(t(60)));

        // The same credentials seen again (the failed refresh was forced before they were due):
        // still degraded. Credentials issued after the failure: no longer.
        let looked_again = build_status(
            Some(&failed),
            Some(1),
            &Outcome::Valid {
                issued: &i,
                holder: Holder {
                    secret: Some("s"),
                    endpoint: false,
                },
                created_uid: None,
            },
            t(61),
        );
        assert_eq!(cond(&looked_again, "Degraded").status, "True");
        let newer = IssuedMeta {
            issued_at: t(70),
            ..issued()
        };
        let refreshed = build_status(
            Some(&looked_again),
            Some(1),
            &Outcome::Valid {
                issued: &newer,
                holder: Holder {
                    secret: Some("s"),
                    endpoint: false,
                },
                created_uid: None,
            },
            t(70),
        );
        assert_eq!(cond(&refreshed, "Degraded").status, "False");
    }

    #[test]
    fn failure_without_valid_credentials_is_not_ready() {
        let s = build_status(
            None,
            Some(1),
            &Outcome::RefreshFailed {
                category: "StsAccessDenied",
                message: "not authorized".into(),
                still_valid: None,
                holder: Holder {
                    secret: Some("s"),
                    endpoint: false,
                },
            },
            t(0),
        );
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").reason, "StsAccessDenied");
    }

    #[test]
    fn blocked_bindings_say_why() {
        let s = build_status(
            None,
            Some(2),
            &Outcome::Blocked {
                category: "SecretConflict",
                message: "taken".into(),
            },
            t(0),
        );
        assert_eq!(cond(&s, "Ready").reason, "SecretConflict");
        assert!(s.conditions.iter().all(|c| c.type_ != "Degraded"));
    }

    #[test]
    fn only_a_secret_podcreds_created_is_recorded_as_its_own() {
        let meta = IssuedMeta {
            issued_at: t(0),
            expiration: t(3600),
            renewal_time: t(2400),
            fingerprint: "f".into(),
            assumed_role_arn: None,
            chain: None,
            sts_endpoint: None,
        };
        let valid = |name, created| Outcome::Valid {
            issued: &meta,
            holder: Holder {
                secret: Some(name),
                endpoint: false,
            },
            created_uid: created,
        };
        let created = build_status(None, Some(1), &valid("s", Some("uid-s")), t(0));
        assert_eq!(created.secret_uid.as_deref(), Some("uid-s"));
        // Refreshed in place: the record stays.
        let refreshed = build_status(Some(&created), Some(1), &valid("s", None), t(10));
        assert_eq!(refreshed.secret_uid.as_deref(), Some("uid-s"));
        // Moved to a Secret that already existed: nothing of it is podcreds' to delete.
        let moved = build_status(Some(&refreshed), Some(2), &valid("t", None), t(20));
        assert_eq!(moved.secret_name.as_deref(), Some("t"));
        assert_eq!(moved.secret_uid, None);
        // Endpoint only: no Secret is recorded, and Ready says where the credentials are.
        let endpoint = Outcome::Valid {
            issued: &meta,
            holder: Holder {
                secret: None,
                endpoint: true,
            },
            created_uid: None,
        };
        let served = build_status(Some(&created), Some(3), &endpoint, t(30));
        assert_eq!(served.secret_name, None);
        assert_eq!(served.secret_uid, None);
        let ready = served
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
            .expect("Ready");
        assert!(
            ready
                .message
                .starts_with("the node endpoint serves credentials valid until"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn role_chains_report_every_hop_the_clamp_and_the_packed_size() {
        use crate::credentials::{ChainRecord, HopRecord};
        let mut chained = issued();
        chained.chain = Some(ChainRecord {
            clamped_from: Some(7200),
            hops: vec![
                HopRecord {
                    assumed_role_arn: Some("arn:aws:sts::1:assumed-role/a/s".into()),
                    expiration: t(900),
                    packed_policy_size: Some(95),
                },
                HopRecord {
                    assumed_role_arn: Some("arn:aws:sts::1:assumed-role/b/s".into()),
                    expiration: t(3600),
                    packed_policy_size: Some(12),
                },
            ],
        });
        let valid = |i| Outcome::Valid {
            issued: i,
            holder: Holder {
                secret: Some("s"),
                endpoint: false,
            },
            created_uid: None,
        };
        let s = build_status(None, Some(1), &valid(&chained), t(1));
        assert_eq!(s.chain.len(), 2);
        assert_eq!(s.chain[0].packed_policy_size_percent, Some(95));
        assert_eq!(s.chain[1].expiration, Some(Time(t(3600))));
        let clamped = cond(&s, CONDITION_SESSION_CLAMPED);
        assert_eq!(
            (clamped.status.as_str(), clamped.reason.as_str()),
            ("True", "RoleChainingLimit")
        );
        assert!(clamped.message.contains("7200"), "{}", clamped.message);
        let packed = cond(&s, CONDITION_PACKED_POLICY);
        assert_eq!(packed.status, "True");
        assert!(
            packed.message.contains("roleChain[0] uses 95%"),
            "{}",
            packed.message
        );
        // Within limits: both conditions False; the same outcome changes nothing.
        let mut fits = chained.clone();
        if let Some(c) = fits.chain.as_mut() {
            c.clamped_from = None;
            c.hops[0].packed_policy_size = Some(90);
        }
        let s = build_status(Some(&s), Some(1), &valid(&fits), t(2));
        assert_eq!(cond(&s, CONDITION_SESSION_CLAMPED).status, "False");
        assert_eq!(cond(&s, CONDITION_PACKED_POLICY).status, "False");
        assert_eq!(build_status(Some(&s), Some(1), &valid(&fits), t(3)), s);
        // The chain removed from the spec: its report goes.
        let plain = issued();
        let s = build_status(Some(&s), Some(2), &valid(&plain), t(4));
        assert!(s.chain.is_empty());
        assert_eq!(s.conditions.len(), 2, "{:?}", s.conditions);
    }

    #[test]
    fn a_binding_no_longer_allowed_reports_its_revocation() {
        let i = issued();
        let valid = Outcome::Valid {
            issued: &i,
            holder: Holder {
                secret: Some("b"),
                endpoint: false,
            },
            created_uid: None,
        };
        let ready = build_status(None, Some(1), &valid, t(0));
        let not_allowed = |revocation| Outcome::NotAllowed {
            category: "RoleNotAllowed",
            message: "role r is not allowed".into(),
            revocation,
        };
        // Scheduled: since when is the condition's transition time, kept while it waits.
        let scheduled = not_allowed(RevocationReport::Scheduled {
            at: t(3600),
            secret_name: "b",
        });
        let s = build_status(Some(&ready), Some(1), &scheduled, t(10));
        assert_eq!(cond(&s, CONDITION_READY).reason, "RoleNotAllowed");
        let c = cond(&s, CONDITION_REVOKED);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", REASON_REVOCATION_SCHEDULED)
        );
        assert_eq!(revoked_since(Some(&s)), Some(t(10)));
        let s = build_status(Some(&s), Some(1), &scheduled, t(20));
        assert_eq!(revoked_since(Some(&s)), Some(t(10)));
        // Revoked: the status no longer claims credentials.
        let revoked = not_allowed(RevocationReport::Revoked { secret_name: "b" });
        let s = build_status(Some(&s), Some(1), &revoked, t(3600));
        let c = cond(&s, CONDITION_REVOKED);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "RoleNotAllowed")
        );
        assert_eq!(s.expiration, None);
        assert_eq!(revoked_since(Some(&s)), Some(t(3600)));
        // Still not allowed, nothing left to remove: unchanged.
        let nothing = not_allowed(RevocationReport::Nothing);
        assert_eq!(build_status(Some(&s), Some(1), &nothing, t(4000)), s);
        // Allowed again with fresh credentials: the condition goes.
        let s = build_status(Some(&s), Some(2), &valid, t(5000));
        assert!(s.conditions.iter().all(|c| c.type_ != CONDITION_REVOKED));
        assert_eq!(revoked_since(Some(&s)), None);
    }
}

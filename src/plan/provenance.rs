//! Decide (pure), tamper detection: whether the credentials a Secret shows are the ones this
//! process wrote, someone else's edit, or plausible ones written before it started.

use jiff::{SignedDuration, Timestamp};

use crate::secret::{IssuedMeta, ObservedSecret};

/// The binding's Secret as observed, judged by who wrote it: what this process wrote is intact
/// (and what it wrote wins over a cache that lags behind it), anything written after it by
/// someone else is modified whatever its field manager, and a Secret this process never wrote is
/// intact only if its managed fields say so and its annotations agree with the binding's status.
/// Implausible annotations are never intact.
pub fn judge(
    observed: ObservedSecret,
    provenance: Provenance,
    own: Option<&OwnWrite>,
    status: &StatusTimes,
    now: Timestamp,
) -> ObservedSecret {
    let ObservedSecret::Owned { issued, intact } = observed else {
        return observed;
    };
    let (issued, intact) = match provenance {
        Provenance::Ours => (issued, true),
        Provenance::Lagging => (own.and_then(|o| o.issued.clone()), true),
        Provenance::Foreign => (issued, false),
        Provenance::Unknown => {
            let agrees = issued.as_ref().is_some_and(|i| status.agree_with(i));
            (issued, intact && agrees)
        }
    };
    let intact = intact && issued.as_ref().is_none_or(|i| plausible(i, now));
    ObservedSecret::Owned { issued, intact }
}

/// Who wrote the Secret now at `version`, given this process's own last write.
pub fn provenance(
    version: Option<&str>,
    cached: &ObservedSecret,
    own: Option<&OwnWrite>,
) -> Provenance {
    let Some(own) = own else {
        return Provenance::Unknown;
    };
    if version == Some(own.version.as_str()) {
        return Provenance::Ours;
    }
    // The watch delivers events in order: until it has shown our write, what it shows is older,
    // and can only hold older credentials than the ones we wrote.
    let older = match (cached, &own.issued) {
        (
            ObservedSecret::Owned {
                issued: Some(c), ..
            },
            Some(o),
        ) => c.issued_at < o.issued_at,
        (ObservedSecret::Owned { issued: None, .. }, _) => true,
        _ => false,
    };
    if !own.seen && older {
        Provenance::Lagging
    } else {
        Provenance::Foreign
    }
}

/// Whether what a Secret says about its credentials could be true: issued in the past and living
/// no longer than STS grants anything. Forged annotations (an expiration in 2099) are not.
pub fn plausible(issued: &IssuedMeta, now: Timestamp) -> bool {
    let latest_issue = now.checked_add(ISSUE_TIME_SKEW).unwrap_or(now);
    issued.issued_at <= latest_issue
        && issued.expiration.duration_since(issued.issued_at) <= LONGEST_LIFETIME
}

/// How far in the future an issue time may lie (clock skew between replicas).
pub(crate) const ISSUE_TIME_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// Longest lifetime STS grants (`GetSessionToken`, `GetFederationToken`: 36 hours).
pub(crate) const LONGEST_LIFETIME: SignedDuration = SignedDuration::from_hours(36);

/// What the binding's status says about the credentials in its Secret: the operator writes
/// both, the Secret first, and only the operator may write the status (the chart's status
/// guard), so after a restart a Secret whose annotations disagree with it was changed by
/// someone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusTimes {
    pub issued_at: Option<Timestamp>,
    pub expiration: Option<Timestamp>,
    pub renewal_time: Option<Timestamp>,
}

impl StatusTimes {
    fn agree_with(&self, issued: &IssuedMeta) -> bool {
        self.issued_at == Some(issued.issued_at)
            && self.expiration == Some(issued.expiration)
            && self.renewal_time == Some(issued.renewal_time)
    }
}

/// Who last wrote the binding's Secret, as far as this process can tell. Tamper detection rests
/// on this, not on the field manager's name: anyone who may patch the Secret can write with
/// `--field-manager=podcreds`, but only this process knows the versions it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// The Secret is at the version this process wrote.
    Ours,
    /// The cache has not delivered this process's write yet and shows an older Secret.
    Lagging,
    /// Someone else wrote the Secret after this process did.
    Foreign,
    /// This process has not written the Secret (it started, or became leader, since then):
    /// judged from the Secret's managed fields and the binding's status.
    Unknown,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Ours => "ours",
            Provenance::Lagging => "lagging",
            Provenance::Foreign => "foreign",
            Provenance::Unknown => "unknown",
        }
    }
}

/// This process's last write of a binding's Secret: the `resourceVersion` the apiserver gave it,
/// what it said about the credentials, and whether the Secret cache has shown it yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnWrite {
    pub version: String,
    /// `None` when the write removed the credentials (a revocation).
    pub issued: Option<IssuedMeta>,
    /// The cache has shown this very version.
    pub seen: bool,
}

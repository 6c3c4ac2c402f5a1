//! Pods that consume a binding's Secret, and whether they ever see a refresh (pure).
//!
//! The pod cache keeps a [`PodUses`] per pod: who it is, where it runs and, per container, how
//! it references which Secret and key; nothing else of the pod spec. From it and a Secret's
//! name, [`classify`] says of each container whether it [`Class::Refreshes`] (a volume of the
//! Secret mounted whole: the kubelet updates the files and `credential_process` re-reads them)
//! or [`Class::ReadsOnce`] (environment variables, `envFrom`, a `subPath` mount: copies taken
//! when the container started, which go stale when those credentials expire).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::api::ConsumersStatus;
use crate::secret::IssuedMeta;

/// Stale pods the status lists by name (the count covers all of them).
pub const LISTED_STALE_PODS: usize = 5;

/// How long after a credential set was written a starting container may still have received
/// the set before it (the kubelet's view of the Secret lags the apiserver's a little).
pub const CAPTURE_SKEW: SignedDuration = SignedDuration::from_secs(10);

/// One way a container reads a Secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Use {
    /// A volume of the Secret (or a projected volume with it) mounted whole.
    Mount { secret: String },
    /// One file of such a volume mounted with `subPath` (or `subPathExpr`).
    SubPath { secret: String, path: String },
    /// One key as the environment variable `variable` (`env[].valueFrom.secretKeyRef`).
    EnvKey {
        secret: String,
        key: String,
        variable: String,
    },
    /// Every key as environment variables (`envFrom[].secretRef`).
    EnvFrom { secret: String },
}

impl Use {
    pub fn secret(&self) -> &str {
        match self {
            Use::Mount { secret }
            | Use::SubPath { secret, .. }
            | Use::EnvKey { secret, .. }
            | Use::EnvFrom { secret } => secret,
        }
    }

    /// Whether the container sees the Secret's updates this way.
    pub fn refreshes(&self) -> bool {
        matches!(self, Use::Mount { .. })
    }

    /// What the container captured, for people: `env AWS_ACCESS_KEY_ID (key aws_access_key_id)`.
    pub fn describe(&self) -> String {
        match self {
            Use::Mount { .. } => "volume mount".to_string(),
            Use::SubPath { path, .. } => format!("subPath {path}"),
            Use::EnvKey { key, variable, .. } => format!("env {variable} (key {key})"),
            Use::EnvFrom { .. } => "envFrom (every key)".to_string(),
        }
    }
}

/// What the cache keeps of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerUses {
    pub name: String,
    /// When the running container started (it captured what it reads once then).
    pub started_at: Option<Timestamp>,
    pub uses: Vec<Use>,
}

/// What the cache keeps of one pod that references at least one Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodUses {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    /// Being deleted already.
    pub terminating: bool,
    pub containers: Vec<ContainerUses>,
}

impl PodUses {
    /// The trimmed pod; `None` for a pod that references no Secret or has finished (it
    /// consumes nothing any more).
    pub fn of(pod: &Pod) -> Option<Self> {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        let spec = pod.spec.as_ref()?;
        // Volume name -> Secret names it projects.
        let mut volumes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            let mut secrets = Vec::new();
            if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
                secrets.push(name);
            }
            for source in v
                .projected
                .as_ref()
                .and_then(|p| p.sources.as_ref())
                .into_iter()
                .flatten()
            {
                if let Some(s) = &source.secret {
                    secrets.push(s.name.as_str());
                }
            }
            if !secrets.is_empty() {
                volumes.insert(v.name.as_str(), secrets);
            }
        }
        let started: BTreeMap<&str, Timestamp> = pod
            .status
            .iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
            .filter_map(|c| {
                let at = c.state.as_ref()?.running.as_ref()?.started_at.as_ref()?;
                Some((c.name.as_str(), at.0))
            })
            .collect();
        // Init containers run once and are done, except sidecars (restartPolicy Always).
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let containers: Vec<ContainerUses> = spec
            .containers
            .iter()
            .chain(sidecars)
            .filter_map(|c| {
                let uses = container_uses(c, &volumes);
                (!uses.is_empty()).then(|| ContainerUses {
                    name: c.name.clone(),
                    started_at: started.get(c.name.as_str()).copied(),
                    uses,
                })
            })
            .collect();
        if containers.is_empty() {
            return None;
        }
        Some(Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: spec.node_name.clone(),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            containers,
        })
    }

    /// The Secrets the pod references, each once.
    pub fn secrets(&self) -> BTreeSet<&str> {
        self.containers
            .iter()
            .flat_map(|c| c.uses.iter().map(Use::secret))
            .collect()
    }
}

fn container_uses(c: &Container, volumes: &BTreeMap<&str, Vec<&str>>) -> Vec<Use> {
    let mut uses = BTreeSet::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(secrets) = volumes.get(m.name.as_str()) else {
            continue;
        };
        let sub_path = m
            .sub_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .or(m.sub_path_expr.as_deref().filter(|p| !p.is_empty()));
        for secret in secrets {
            let secret = secret.to_string();
            uses.insert(match sub_path {
                Some(path) => Use::SubPath {
                    secret,
                    path: path.to_string(),
                },
                None => Use::Mount { secret },
            });
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(r) = e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            uses.insert(Use::EnvKey {
                secret: r.name.clone(),
                key: r.key.clone(),
                variable: e.name.clone(),
            });
        }
    }
    for e in c.env_from.iter().flatten() {
        if let Some(r) = &e.secret_ref {
            uses.insert(Use::EnvFrom {
                secret: r.name.clone(),
            });
        }
    }
    uses.into_iter().collect()
}

/// Whether a container sees the refreshes of a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// It reads the Secret only through a volume mounted whole.
    Refreshes,
    /// It captured at least part of the Secret when it started (env, envFrom, subPath): it will
    /// go stale when those credentials expire.
    ReadsOnce,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Refreshes => "Refreshes",
            Class::ReadsOnce => "ReadsOnce",
        }
    }
}

/// One container of a pod that reads the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerVerdict {
    pub container: String,
    pub class: Class,
    /// The uses that capture values at start (empty for [`Class::Refreshes`]).
    pub captured: Vec<Use>,
    pub started_at: Option<Timestamp>,
}

/// How each container of `pod` that reads Secret `secret` consumes it.
pub fn classify(pod: &PodUses, secret: &str) -> Vec<ContainerVerdict> {
    pod.containers
        .iter()
        .filter_map(|c| {
            let mine: Vec<&Use> = c.uses.iter().filter(|u| u.secret() == secret).collect();
            if mine.is_empty() {
                return None;
            }
            let captured: Vec<Use> = mine
                .into_iter()
                .filter(|u| !u.refreshes())
                .cloned()
                .collect();
            Some(ContainerVerdict {
                container: c.name.clone(),
                class: if captured.is_empty() {
                    Class::Refreshes
                } else {
                    Class::ReadsOnce
                },
                captured,
                started_at: c.started_at,
            })
        })
        .collect()
}

/// A credential set the Secret held: when it was written and when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CredentialSet {
    pub issued_at: Timestamp,
    pub expiration: Timestamp,
}

impl From<&IssuedMeta> for CredentialSet {
    fn from(issued: &IssuedMeta) -> Self {
        Self {
            issued_at: issued.issued_at,
            expiration: issued.expiration,
        }
    }
}

/// The credentials a container captured when it started, judged against the sets the Secret
/// held as far as this process knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Captured {
    /// Not running yet: it will capture whatever the Secret holds when it starts.
    NotYet,
    /// The set the Secret holds now: good until this time, and restarting the container would
    /// capture the same set.
    Current { expires: Timestamp },
    /// A set the Secret no longer holds, replaced at `replaced_at`: good until `expires`, or,
    /// when that set is not known (it was written before this process started), assumed to
    /// expire at once.
    Earlier {
        replaced_at: Timestamp,
        expires: Option<Timestamp>,
    },
}

/// What a container that started at `started_at` captured, given the sets the Secret held
/// (`sets`, any order; the latest is the one it holds now). A container that started less than
/// [`CAPTURE_SKEW`] after a set was written may still have received the set before.
pub fn captured(started_at: Option<Timestamp>, sets: &[CredentialSet]) -> Captured {
    let Some(started) = started_at else {
        return Captured::NotYet;
    };
    let mut sets = sets.to_vec();
    sets.sort();
    sets.dedup();
    let Some(current) = sets.last().copied() else {
        return Captured::NotYet;
    };
    let settled = |s: &CredentialSet| s.issued_at.checked_add(CAPTURE_SKEW).unwrap_or(s.issued_at);
    // The latest set surely written before the container started.
    // The latest set surely written before the container started. Within the skew of the
    // earliest set known here, with none known before it, the container is taken to hold that
    // one; before it, nothing is known of what it holds.
    let index = match sets.iter().rposition(|s| settled(s) <= started) {
        Some(index) => index,
        None if started >= sets[0].issued_at => 0,
        None => {
            return Captured::Earlier {
                replaced_at: current.issued_at,
                expires: None,
            };
        }
    };
    let got = sets[index];
    if got == current {
        Captured::Current {
            expires: current.expiration,
        }
    } else {
        Captured::Earlier {
            replaced_at: current.issued_at,
            // The container may hold this set, or (within the skew) the next one: the earlier
            // expiry counts.
            expires: Some(got.expiration),
        }
    }
}

impl Captured {
    /// When what was captured stops working, as far as podcreds can tell; `None` when nothing
    /// was captured yet. An earlier set of unknown expiry counts as expiring when it was
    /// replaced.
    pub fn deadline(self) -> Option<Timestamp> {
        match self {
            Captured::NotYet => None,
            Captured::Current { expires } => Some(expires),
            Captured::Earlier {
                expires: Some(expires),
                ..
            } => Some(expires),
            Captured::Earlier { replaced_at, .. } => Some(replaced_at),
        }
    }

    /// For an Event: when it expires.
    pub fn describe(self) -> String {
        match self {
            Captured::NotYet => "whatever the Secret holds when it starts".to_string(),
            Captured::Current { expires } => {
                format!(
                    "credentials that expire at {}",
                    crate::time::rfc3339(expires)
                )
            }
            Captured::Earlier {
                replaced_at,
                expires: Some(expires),
            } => format!(
                "credentials replaced at {} that expire at {}",
                crate::time::rfc3339(replaced_at),
                crate::time::rfc3339(expires)
            ),
            Captured::Earlier { replaced_at, .. } => format!(
                "credentials replaced at {}, which expire soon if they have not already",
                crate::time::rfc3339(replaced_at)
            ),
        }
    }
}

/// A pod with at least one container that will go stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StalePod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub terminating: bool,
    pub containers: Vec<ContainerVerdict>,
}

impl StalePod {
    /// The earliest time any of its containers' captured credentials stop working; `None`
    /// while none has started.
    pub fn deadline(&self, sets: &[CredentialSet]) -> Option<Timestamp> {
        self.containers
            .iter()
            .filter_map(|c| captured(c.started_at, sets).deadline())
            .min()
    }

    /// Whether every running container of the pod captured the set the Secret holds now (a
    /// restart would capture the same); false while none runs.
    pub fn holds_current(&self, sets: &[CredentialSet]) -> bool {
        let mut running = self
            .containers
            .iter()
            .map(|c| captured(c.started_at, sets))
            .filter(|c| *c != Captured::NotYet)
            .peekable();
        running.peek().is_some() && running.all(|c| matches!(c, Captured::Current { .. }))
    }
}

/// What the pods of a namespace tell about the consumers of Secret `secret`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumers {
    /// Pods whose every container that reads the Secret sees its refreshes.
    pub refreshing: usize,
    /// Pods with a container that will go stale, sorted by name.
    pub stale: Vec<StalePod>,
}

/// Classifies every pod of `pods` that reads Secret `secret` (pods of other namespaces than
/// `namespace` are ignored).
pub fn consumers<'a>(
    pods: impl IntoIterator<Item = &'a PodUses>,
    namespace: &str,
    secret: &str,
) -> Consumers {
    let mut out = Consumers::default();
    for pod in pods.into_iter().filter(|p| p.namespace == namespace) {
        let verdicts = classify(pod, secret);
        if verdicts.is_empty() {
            continue;
        }
        if verdicts.iter().any(|v| v.class == Class::ReadsOnce) {
            out.stale.push(StalePod {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                terminating: pod.terminating,
                containers: verdicts
                    .into_iter()
                    .filter(|v| v.class == Class::ReadsOnce)
                    .collect(),
            });
        } else {
            out.refreshing += 1;
        }
    }
    out.stale.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `status.consumers` for `consumers`.
pub fn status(consumers: &Consumers) -> ConsumersStatus {
    ConsumersStatus {
        refreshing: i32::try_from(consumers.refreshing).unwrap_or(i32::MAX),
        will_go_stale: i32::try_from(consumers.stale.len()).unwrap_or(i32::MAX),
        stale_pods: consumers
            .stale
            .iter()
            .take(LISTED_STALE_PODS)
            .map(|p| p.name.clone())
            .collect(),
        blocked_evictions: Vec::new(),
    }
}

/// The Warning Event's note for `pod`, which captured part of the binding's Secret `secret`.
pub fn stale_note(pod: &StalePod, secret: &str, sets: &[CredentialSet]) -> String {
    let containers: Vec<String> = pod
        .containers
        .iter()
        .map(|c| {
            let what: Vec<String> = c.captured.iter().map(Use::describe).collect();
            format!(
                "container {} read {} of Secret {secret} once at start: {}",
                c.container,
                what.join(", "),
                captured(c.started_at, sets).describe()
            )
        })
        .collect();
    format!(
        "{}; it will not see podcreds' refreshes and fails once they expire. Mount the Secret as a volume without subPath, or set spec.restartStaleConsumers on the binding",
        containers.join("; ")
    )
}

/// Whether `pod` deserves a Warning Event now: it has a running container that captured part
/// of the Secret, and it was not warned about the credential set the Secret holds now
/// (`warned`: the expiration of the set of its last warning).
pub fn warning_due(pod: &StalePod, issued: &IssuedMeta, warned: Option<Timestamp>) -> bool {
    !pod.terminating
        && pod.containers.iter().any(|c| c.started_at.is_some())
        && warned != Some(issued.expiration)
}

/// Default of `spec.restartStaleConsumers.leadTime`.
pub const DEFAULT_LEAD_TIME: SignedDuration = SignedDuration::from_mins(5);

/// What `spec.restartStaleConsumers` does about one stale pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Nothing: it is going away already, none of its containers runs, each holds the set the
    /// Secret holds now (a restart would capture the same), or it was evicted for what it holds
    /// already.
    Nothing,
    /// Evict it at this time (`leadTime` before what it captured expires).
    At(Timestamp),
    /// Evict it now.
    Now,
}

/// What to do about stale pod `pod`, given the credential sets the Secret held (`sets`), the
/// binding's `lead` time, the deadline it was last evicted for (`evicted_for`) and the clock.
/// A pod is evicted only once a newer set than the one it captured is in the Secret, `lead`
/// before that one expires (at once if that time has passed), and once per set.
pub fn restart(
    pod: &StalePod,
    sets: &[CredentialSet],
    lead: SignedDuration,
    evicted_for: Option<Timestamp>,
    now: Timestamp,
) -> Restart {
    if pod.terminating || pod.holds_current(sets) {
        return Restart::Nothing;
    }
    let Some(deadline) = pod.deadline(sets) else {
        return Restart::Nothing;
    };
    if evicted_for == Some(deadline) {
        return Restart::Nothing;
    }
    let at = deadline.checked_sub(lead).unwrap_or(deadline);
    if now >= at {
        Restart::Now
    } else {
        Restart::At(at)
    }
}

#[cfg(test)]
mod tests;

//! What this process remembers between reconciliations, beyond the caches: its own recent
//! writes (the caches lag behind them), failure counts, and which bindings wait for which
//! ServiceAccount. One type, one lock recovery, typed methods: no raw maps elsewhere.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use super::quota::Bound;
use crate::api::{AWSRoleBinding, AWSRoleBindingStatus};
use crate::plan;
use crate::secret::IssuedMeta;
use crate::status::StatusWrite;

/// A binding's UID.
type Uid = String;

/// Bindings waiting for a ServiceAccount, at most [`WAITING`] of them (and a share of that per
/// namespace): beyond that a binding is not registered, and its retries (5 s doubling to
/// 5 minutes) find the account when it comes. Each binding waits for one account at a time.
pub const WAITING: Bound = Bound::shared(65_536, 16);

/// A ServiceAccount: (namespace, name).
type Account = (String, String);

/// Bindings (and their UIDs) by the ServiceAccount they wait for.
#[derive(Default)]
struct WaitingForAccounts {
    by_account: HashMap<Account, Vec<(ObjectRef<AWSRoleBinding>, Uid)>>,
    /// The account each binding waits for, by UID.
    by_binding: HashMap<Uid, Account>,
    /// Bindings waiting, per namespace.
    per_namespace: HashMap<String, usize>,
}

impl WaitingForAccounts {
    /// Registers `binding` as waiting for `account`; false when the bound leaves no room.
    fn add(&mut self, account: Account, binding: ObjectRef<AWSRoleBinding>, uid: &str) -> bool {
        if self.by_binding.get(uid) == Some(&account) {
            return true;
        }
        self.remove_binding(uid);
        let namespace = account.0.clone();
        let mine = self.per_namespace.get(&namespace).copied().unwrap_or(0);
        if !WAITING.admits(self.by_binding.len(), mine) {
            return false;
        }
        *self.per_namespace.entry(namespace).or_default() += 1;
        self.by_binding.insert(uid.to_string(), account.clone());
        self.by_account
            .entry(account)
            .or_default()
            .push((binding, uid.to_string()));
        true
    }

    /// Stops `uid` waiting, whatever it waited for.
    fn remove_binding(&mut self, uid: &str) {
        let Some(account) = self.by_binding.remove(uid) else {
            return;
        };
        if let Some(waiting) = self.by_account.get_mut(&account) {
            waiting.retain(|(_, u)| u != uid);
            if waiting.is_empty() {
                self.by_account.remove(&account);
            }
        }
        self.count_out(&account.0, 1);
    }

    /// The bindings waiting for `account`, which stop waiting.
    fn take(&mut self, account: &Account) -> Vec<(ObjectRef<AWSRoleBinding>, Uid)> {
        let woken = self.by_account.remove(account).unwrap_or_default();
        for (_, uid) in &woken {
            self.by_binding.remove(uid);
        }
        self.count_out(&account.0, woken.len());
        woken
    }

    fn count_out(&mut self, namespace: &str, n: usize) {
        if let Some(count) = self.per_namespace.get_mut(namespace) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.per_namespace.remove(namespace);
            }
        }
    }

    fn len(&self) -> usize {
        self.by_binding.len()
    }
}

/// A run of failed refreshes of one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Failures {
    /// Failed attempts in a row.
    attempts: u32,
    /// No new attempt before this time for the spec with this fingerprint (see
    /// [`plan::backing_off`]).
    hold: Option<plan::Hold>,
}

/// Every map sits behind its own lock, so a reconciliation touching one never waits for another.
#[derive(Default)]
pub struct Memory {
    /// What this process last wrote to each binding's Secret, and at which version (see
    /// [`plan::provenance`]).
    secret_writes: Mutex<Swept<HashMap<Uid, plan::OwnWrite>>>,
    /// Refreshes made because someone else wrote a binding's Secret (see [`plan::repair_wait`]).
    repairs: Mutex<HashMap<Uid, plan::Repairs>>,
    /// Bindings whose Secret another operator was seen writing, reported once each.
    overlaps: Mutex<std::collections::HashSet<Uid>>,
    /// Bindings asking for `restartStaleConsumers` from an operator that does not watch pods,
    /// reported once each.
    unwatched_restarts: Mutex<std::collections::HashSet<Uid>>,
    /// Status writes the binding cache has not shown yet (see [`crate::status::known_status`]).
    status_writes: Mutex<HashMap<Uid, StatusWrite>>,
    /// Failed attempts in a row, and when the next may be made.
    failures: Mutex<HashMap<Uid, Failures>>,
    /// Bindings waiting for a ServiceAccount to appear: the ServiceAccount watch wakes exactly
    /// these instead of scanning every binding on every account event.
    waiting: Mutex<WaitingForAccounts>,
    /// When a refresh request last forced an exchange (see [`plan::refresh_request_wait`]).
    forced_refreshes: Mutex<Swept<HashMap<Uid, Timestamp>>>,
}

/// A map swept of stale entries every [`SWEEP_EVERY`] writes. The writes are counted rather than
/// read off the map's size: a size that stays where it is (every binding refreshed in turn) at
/// one less than a multiple would have swept the whole map on every write.
#[derive(Default)]
struct Swept<M> {
    map: M,
    writes: usize,
}

impl<M> Swept<M> {
    /// Counts a write; true once every [`SWEEP_EVERY`] writes.
    fn sweep_due(&mut self) -> bool {
        self.writes = self.writes.wrapping_add(1);
        self.writes.is_multiple_of(SWEEP_EVERY)
    }
}

impl<M> std::ops::Deref for Swept<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.map
    }
}

impl<M> std::ops::DerefMut for Swept<M> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.map
    }
}

/// A poisoned lock only means another reconciliation panicked while holding it; the maps hold
/// hints that are safe to keep using.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// How often (in writes) expired write records are swept: not on every write, which would make
/// a burst quadratic.
const SWEEP_EVERY: usize = 1024;

impl Memory {
    /// This process's last write of the binding's Secret, once the cache has shown `version`
    /// (which may be that write) noted as seen.
    pub fn own_secret_write(&self, uid: &str, version: Option<&str>) -> Option<plan::OwnWrite> {
        let mut writes = lock(&self.secret_writes);
        let own = writes.get_mut(uid)?;
        if version == Some(own.version.as_str()) {
            own.seen = true;
        }
        Some(own.clone())
    }

    /// Whether this process wrote the binding's Secret and the cache has not shown it yet.
    pub fn wrote_secret(&self, uid: &str) -> bool {
        lock(&self.secret_writes).get(uid).is_some_and(|w| !w.seen)
    }

    /// Remembers a Secret write that left it at `version` (`issued`: what it now says; `None`
    /// when the write removed the credentials); now and then forgets records of credentials that
    /// have expired, so deleted bindings do not accumulate.
    pub fn remember_secret_write(&self, uid: &str, version: String, issued: Option<&IssuedMeta>) {
        let mut writes = lock(&self.secret_writes);
        if writes.sweep_due() {
            let now = Timestamp::now();
            writes.retain(|_, w| w.issued.as_ref().is_some_and(|i| i.expiration > now));
        }
        writes.insert(
            uid.to_string(),
            plan::OwnWrite {
                version,
                issued: issued.cloned(),
                seen: false,
            },
        );
    }

    /// Takes a Secret this process did not write as its own from now on: written at `version`,
    /// saying `issued` (judged intact when first seen, after a restart or a change of leader).
    pub fn adopt_secret(&self, uid: &str, version: &str, issued: Option<&IssuedMeta>) {
        lock(&self.secret_writes)
            .entry(uid.to_string())
            .or_insert_with(|| plan::OwnWrite {
                version: version.to_string(),
                issued: issued.cloned(),
                seen: true,
            });
    }

    /// Records that another operator writes the binding's Secret; true the first time.
    pub fn first_overlap(&self, uid: &str) -> bool {
        lock(&self.overlaps).insert(uid.to_string())
    }

    /// Records that the binding asks for restarts this process cannot make; true the first time.
    pub fn first_unwatched_restart(&self, uid: &str) -> bool {
        lock(&self.unwatched_restarts).insert(uid.to_string())
    }

    /// The refreshes made lately because someone else wrote the binding's Secret.
    pub fn repairs(&self, uid: &str) -> Option<plan::Repairs> {
        lock(&self.repairs).get(uid).copied()
    }

    /// Counts a refresh made at `now` because someone else wrote the binding's Secret.
    pub fn count_repair(&self, uid: &str, now: Timestamp) {
        let mut repairs = lock(&self.repairs);
        let next = plan::count_repair(repairs.get(uid), now);
        repairs.insert(uid.to_string(), next);
    }

    /// The last status this process wrote for the binding, while the cache (at
    /// `cached_version`) has not shown it yet; the record goes once the cache shows another
    /// version.
    pub fn status_write(&self, uid: &str, cached_version: Option<&str>) -> Option<StatusWrite> {
        let mut writes = lock(&self.status_writes);
        if writes.get(uid).is_some_and(|w| !w.ahead_of(cached_version)) {
            writes.remove(uid);
        }
        writes.get(uid).cloned()
    }

    /// Remembers a status written over the binding at version `based_on`.
    pub fn remember_status_write(&self, uid: &str, based_on: &str, status: AWSRoleBindingStatus) {
        lock(&self.status_writes).insert(
            uid.to_string(),
            StatusWrite {
                based_on: based_on.to_string(),
                status,
            },
        );
    }

    /// Counts a failed attempt; returns its number (1 for the first failure in a row).
    pub fn record_failure(&self, uid: &str) -> u32 {
        let mut failures = lock(&self.failures);
        let run = failures.entry(uid.to_string()).or_insert(Failures {
            attempts: 0,
            hold: None,
        });
        run.attempts = run.attempts.saturating_add(1);
        run.attempts
    }

    /// No new attempt for the binding before `hold` (unless its spec changes).
    pub fn hold(&self, uid: &str, hold: plan::Hold) {
        if let Some(run) = lock(&self.failures).get_mut(uid) {
            run.hold = Some(hold);
        }
    }

    /// The hold of a failing binding, if any.
    pub fn held(&self, uid: &str) -> Option<plan::Hold> {
        lock(&self.failures)
            .get(uid)
            .and_then(|run| run.hold.clone())
    }

    /// When a refresh request last forced an exchange of the binding.
    pub fn last_forced_refresh(&self, uid: &str) -> Option<Timestamp> {
        lock(&self.forced_refreshes).get(uid).copied()
    }

    /// Remembers that a refresh request forced an exchange of the binding at `at`; now and then
    /// forgets records too old to delay anything.
    pub fn remember_forced_refresh(&self, uid: &str, at: Timestamp) {
        let mut forced = lock(&self.forced_refreshes);
        if forced.sweep_due() {
            forced.retain(|_, t| plan::refresh_request_wait(Some(*t), at).is_some());
        }
        forced.insert(uid.to_string(), at);
    }

    /// A success ends a run of failures.
    pub fn clear_failures(&self, uid: &str) {
        lock(&self.failures).remove(uid);
    }

    /// Records that `binding` (UID `uid`) waits for ServiceAccount `namespace/name` (and no other
    /// any more); false when the bound on waiting bindings leaves no room for it.
    pub fn wait_for_account(
        &self,
        namespace: &str,
        name: &str,
        binding: ObjectRef<AWSRoleBinding>,
        uid: &str,
    ) -> bool {
        lock(&self.waiting).add((namespace.to_string(), name.to_string()), binding, uid)
    }

    /// Forgets everything about a deleted binding, so that the maps follow the bindings that
    /// exist rather than every binding this process ever saw.
    pub fn forget(&self, uid: &str) {
        lock(&self.secret_writes).remove(uid);
        lock(&self.repairs).remove(uid);
        lock(&self.overlaps).remove(uid);
        lock(&self.unwatched_restarts).remove(uid);
        lock(&self.status_writes).remove(uid);
        lock(&self.failures).remove(uid);
        lock(&self.forced_refreshes).remove(uid);
        lock(&self.waiting).remove_binding(uid);
    }

    /// Entries per map, for tests and diagnostics.
    pub fn sizes(&self) -> [(&'static str, usize); 8] {
        [
            ("overlaps", lock(&self.overlaps).len()),
            ("unwatched_restarts", lock(&self.unwatched_restarts).len()),
            ("forced_refreshes", lock(&self.forced_refreshes).len()),
            ("secret_writes", lock(&self.secret_writes).len()),
            ("repairs", lock(&self.repairs).len()),
            ("status_writes", lock(&self.status_writes).len()),
            ("failures", lock(&self.failures).len()),
            ("waiting", lock(&self.waiting).len()),
        ]
    }

    /// The bindings waiting for ServiceAccount `namespace/name`, which stop waiting: they are
    /// reconciled now (what they waited for may have come, so their hold ends) and, if the
    /// account is still missing, wait again.
    pub fn take_waiting(&self, namespace: &str, name: &str) -> Vec<ObjectRef<AWSRoleBinding>> {
        let woken = lock(&self.waiting).take(&(namespace.to_string(), name.to_string()));
        let mut failures = lock(&self.failures);
        woken
            .into_iter()
            .map(|(binding, uid)| {
                if let Some(run) = failures.get_mut(&uid) {
                    run.hold = None;
                }
                binding
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(at: i64) -> IssuedMeta {
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).expect("time");
        IssuedMeta {
            issued_at: t(at),
            expiration: t(at + 3600),
            renewal_time: t(at + 2400),
            fingerprint: "f".into(),
            assumed_role_arn: None,
            chain: None,
            sts_endpoint: None,
        }
    }

    #[test]
    fn a_map_is_swept_every_so_many_writes_whatever_its_size() {
        let mut map: Swept<HashMap<Uid, Timestamp>> = Swept::default();
        // A size stuck at one less than a multiple of the period (the old trigger) sweeps no
        // more often than any other.
        for i in 0..SWEEP_EVERY - 1 {
            map.insert(i.to_string(), Timestamp::UNIX_EPOCH);
        }
        let sweeps = (0..3 * SWEEP_EVERY).filter(|_| map.sweep_due()).count();
        assert_eq!(map.len(), SWEEP_EVERY - 1);
        assert_eq!(sweeps, 3);
    }

    #[test]
    fn a_write_is_remembered_and_noted_once_the_cache_shows_it() {
        let memory = Memory::default();
        memory.remember_secret_write("u", "8".into(), Some(&issued(100)));
        assert!(memory.wrote_secret("u"));
        // The cache still shows an older version: the write is not seen yet.
        let own = memory.own_secret_write("u", Some("7")).expect("remembered");
        assert!(!own.seen);
        assert!(memory.wrote_secret("u"));
        // The cache caught up: seen, and kept (later versions are someone else's).
        let own = memory.own_secret_write("u", Some("8")).expect("remembered");
        assert!(own.seen);
        assert!(!memory.wrote_secret("u"));
        assert_eq!(own.issued, Some(issued(100)));
        // A Secret first seen after a restart is adopted once, never over a write of ours.
        memory.adopt_secret("v", "3", Some(&issued(0)));
        memory.adopt_secret("u", "9", None);
        assert_eq!(
            memory.own_secret_write("u", None).map(|o| o.version),
            Some("8".to_string())
        );
        assert!(memory.own_secret_write("v", None).is_some_and(|o| o.seen));
    }

    #[test]
    fn repairs_are_counted_per_binding() {
        let memory = Memory::default();
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).expect("time");
        assert_eq!(memory.repairs("u"), None);
        memory.count_repair("u", t(0));
        memory.count_repair("u", t(5));
        assert_eq!(memory.repairs("u").map(|r| r.count), Some(2));
        assert_eq!(memory.repairs("v"), None);
    }

    #[test]
    fn a_status_write_counts_until_the_cache_moves_on() {
        let memory = Memory::default();
        memory.remember_status_write("u", "7", AWSRoleBindingStatus::default());
        assert!(memory.status_write("u", Some("7")).is_some());
        assert!(memory.status_write("u", Some("8")).is_none());
        // Gone for good once the cache moved on.
        assert!(memory.status_write("u", Some("7")).is_none());
    }

    #[test]
    fn failures_count_up_and_reset() {
        let memory = Memory::default();
        assert_eq!(memory.record_failure("u"), 1);
        assert_eq!(memory.record_failure("u"), 2);
        assert_eq!(memory.record_failure("v"), 1);
        memory.clear_failures("u");
        assert_eq!(memory.record_failure("u"), 1);
    }

    #[test]
    fn a_hold_lasts_until_success_or_the_awaited_account_appears() {
        let memory = Memory::default();
        let t = Timestamp::from_second(1_800_000_000).expect("time");
        let hold = plan::Hold {
            until: t,
            fingerprint: "f".into(),
        };
        // No hold without a failure.
        memory.hold("u", hold.clone());
        assert_eq!(memory.held("u"), None);
        memory.record_failure("u");
        memory.hold("u", hold.clone());
        assert_eq!(memory.held("u"), Some(hold.clone()));
        // The awaited ServiceAccount appears: try at once.
        let b = ObjectRef::<AWSRoleBinding>::new("b").within("ns");
        memory.wait_for_account("ns", "app", b.clone(), "u");
        assert_eq!(memory.take_waiting("ns", "app"), vec![b]);
        assert_eq!(memory.held("u"), None);
        // A success ends it all.
        memory.hold("u", hold);
        memory.clear_failures("u");
        assert_eq!(memory.held("u"), None);
    }

    #[test]
    fn waiting_bindings_are_woken_once_per_account() {
        let memory = Memory::default();
        let a = ObjectRef::<AWSRoleBinding>::new("a").within("ns");
        let b = ObjectRef::<AWSRoleBinding>::new("b").within("ns");
        let c = ObjectRef::<AWSRoleBinding>::new("c").within("other");
        memory.wait_for_account("ns", "app", a.clone(), "ua");
        memory.wait_for_account("ns", "app", a.clone(), "ua");
        memory.wait_for_account("ns", "app", b.clone(), "ub");
        memory.wait_for_account("other", "app", c.clone(), "uc");
        assert_eq!(memory.take_waiting("ns", "app"), vec![a.clone(), b.clone()]);
        assert!(memory.take_waiting("ns", "app").is_empty());
        assert_eq!(memory.take_waiting("other", "app"), vec![c]);
        // A binding whose spec now names another account waits for that one only.
        memory.wait_for_account("ns", "app", a.clone(), "ua");
        memory.wait_for_account("ns", "web", a.clone(), "ua");
        assert!(memory.take_waiting("ns", "app").is_empty());
        assert_eq!(memory.take_waiting("ns", "web"), vec![a]);
        assert!(memory.sizes().iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn one_namespace_cannot_fill_the_waiting_index() {
        let memory = Memory::default();
        let registered = (0..WAITING.per_namespace + 100)
            .filter(|i| {
                let binding = ObjectRef::<AWSRoleBinding>::new(&format!("b{i}")).within("greedy");
                memory.wait_for_account("greedy", &format!("sa{i}"), binding, &format!("u{i}"))
            })
            .count();
        assert_eq!(registered, WAITING.per_namespace);
        let quiet = ObjectRef::<AWSRoleBinding>::new("q").within("quiet");
        assert!(memory.wait_for_account("quiet", "app", quiet.clone(), "uq"));
        assert_eq!(memory.take_waiting("quiet", "app"), vec![quiet]);
        // A woken binding makes room for another of its namespace.
        assert_eq!(memory.take_waiting("greedy", "sa0").len(), 1);
        let late = ObjectRef::<AWSRoleBinding>::new("late").within("greedy");
        assert!(memory.wait_for_account("greedy", "sa-late", late, "u-late"));
    }

    #[test]
    fn churn_leaves_nothing_behind() {
        let memory = Memory::default();
        for round in 0..3 {
            let bindings: Vec<(String, ObjectRef<AWSRoleBinding>)> = (0..2_000)
                .map(|i| {
                    let name = format!("b{round}-{i}");
                    (format!("uid-{name}"), ObjectRef::new(&name).within("ns"))
                })
                .collect();
            for (i, (uid, binding)) in bindings.iter().enumerate() {
                memory.remember_secret_write(uid, "1".into(), Some(&issued(i as i64)));
                memory.count_repair(uid, Timestamp::now());
                memory.first_overlap(uid);
                memory.first_unwatched_restart(uid);
                memory.remember_status_write(uid, "1", AWSRoleBindingStatus::default());
                memory.record_failure(uid);
                memory.remember_forced_refresh(uid, Timestamp::now());
                memory.wait_for_account("ns", &format!("sa{}", i % 7), binding.clone(), uid);
            }
            for (uid, _) in &bindings {
                memory.forget(uid);
            }
            assert!(
                memory.sizes().iter().all(|(_, n)| *n == 0),
                "{:?}",
                memory.sizes()
            );
        }
    }
}

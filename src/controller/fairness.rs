//! Fair shares of the exchange slots between namespaces.
//!
//! Reconciliation concurrency is one pool for every namespace. Without shares, one namespace
//! with thousands of failing or slow bindings fills the pool and every other namespace's renewals
//! wait behind it. So a namespace may always run up to `share` exchanges at once, and more only
//! while `share` slots stay free for the others. A binding over its namespace's share is parked
//! (its worker is freed at once, with no I/O) and woken when a slot frees, taking namespaces in
//! turn, so parking costs neither CPU nor apiserver requests. A parked binding is not requeued on
//! a timer: with thousands parked, every recheck came at once and kept the workers from the
//! bindings being woken. Instead [`FairShares::pump`] wakes as many as there are free slots now
//! and then, in case a wake-up was lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::UnboundedSender;

use crate::api::AWSRoleBinding;

#[derive(Default)]
struct Slots {
    in_flight: usize,
    by_namespace: HashMap<String, usize>,
    /// Parked bindings by namespace, and the order in which namespaces are served.
    parked: HashMap<String, VecDeque<ObjectRef<AWSRoleBinding>>>,
    /// Every parked binding, so that parking one already parked costs no scan of the queue.
    parked_set: HashSet<ObjectRef<AWSRoleBinding>>,
    turns: VecDeque<String>,
}

impl Slots {
    fn may_enter(&self, namespace: &str, share: usize, total: usize) -> bool {
        let mine = self.by_namespace.get(namespace).copied().unwrap_or(0);
        mine < share || self.in_flight + share < total
    }

    fn enter(&mut self, namespace: &str) {
        self.in_flight += 1;
        *self.by_namespace.entry(namespace.to_string()).or_default() += 1;
    }

    fn leave(&mut self, namespace: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(n) = self.by_namespace.get_mut(namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_namespace.remove(namespace);
            }
        }
    }

    fn park(&mut self, namespace: &str, binding: ObjectRef<AWSRoleBinding>) {
        if self.parked_set.insert(binding.clone()) {
            self.parked
                .entry(namespace.to_string())
                .or_default()
                .push_back(binding);
        }
        if !self.turns.iter().any(|n| n == namespace) {
            self.turns.push_back(namespace.to_string());
        }
    }

    /// The next parked binding that may enter now, namespaces in turn.
    fn next_to_wake(&mut self, share: usize, total: usize) -> Option<ObjectRef<AWSRoleBinding>> {
        for _ in 0..self.turns.len() {
            let namespace = self.turns.pop_front()?;
            if !self.may_enter(&namespace, share, total) {
                self.turns.push_back(namespace);
                continue;
            }
            let queue = self.parked.get_mut(&namespace)?;
            let next = queue.pop_front();
            if let Some(next) = &next {
                self.parked_set.remove(next);
            }
            if queue.is_empty() {
                self.parked.remove(&namespace);
            } else {
                self.turns.push_back(namespace);
            }
            if next.is_some() {
                return next;
            }
        }
        None
    }
}

/// The exchange slots of one process.
pub struct FairShares {
    /// Slots one namespace may always use.
    share: usize,
    /// All slots (the reconciliation concurrency).
    total: usize,
    slots: Arc<Mutex<Slots>>,
    wake: UnboundedSender<ObjectRef<AWSRoleBinding>>,
}

fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    match slots.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A taken slot; freeing it wakes the next parked binding that may enter.
pub struct Slot {
    namespace: String,
    shares: FairShares,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = lock(&self.shares.slots);
        slots.leave(&self.namespace);
        if let Some(next) = slots.next_to_wake(self.shares.share, self.shares.total) {
            let _ = self.shares.wake.send(next);
        }
    }
}

impl Clone for FairShares {
    fn clone(&self) -> Self {
        Self {
            share: self.share,
            total: self.total,
            slots: self.slots.clone(),
            wake: self.wake.clone(),
        }
    }
}

impl FairShares {
    /// `total` slots, of which each namespace may always use `share`; parked bindings are woken
    /// through `wake`.
    pub fn new(
        total: usize,
        share: usize,
        wake: UnboundedSender<ObjectRef<AWSRoleBinding>>,
    ) -> Self {
        let total = total.max(1);
        Self {
            share: share.clamp(1, total),
            total,
            slots: Arc::default(),
            wake,
        }
    }

    /// A slot for an exchange of `binding` in `namespace`, or `None`: the binding is parked and
    /// will be woken when a slot frees.
    pub fn enter(&self, namespace: &str, binding: ObjectRef<AWSRoleBinding>) -> Option<Slot> {
        let mut slots = lock(&self.slots);
        if slots.may_enter(namespace, self.share, self.total) {
            slots.enter(namespace);
            Some(Slot {
                namespace: namespace.to_string(),
                shares: self.clone(),
            })
        } else {
            slots.park(namespace, binding);
            None
        }
    }

    /// Forgets a parked binding (it was deleted).
    pub fn forget(&self, namespace: &str, binding: &ObjectRef<AWSRoleBinding>) {
        let mut slots = lock(&self.slots);
        if !slots.parked_set.remove(binding) {
            return;
        }
        if let Some(queue) = slots.parked.get_mut(namespace) {
            queue.retain(|b| b != binding);
            if queue.is_empty() {
                slots.parked.remove(namespace);
                slots.turns.retain(|n| n != namespace);
            }
        }
    }

    /// Wakes as many parked bindings as may enter now: what the freeing of those slots
    /// should already have done, should a wake-up have been lost (the woken binding's
    /// reconciliation dropped, say). Returns how many were woken.
    pub fn wake_free_slots(&self) -> usize {
        let mut slots = lock(&self.slots);
        // Each binding woken counts as entered while choosing the next, so that no namespace is
        // woken past what it may take (the extra would only park again, at the back).
        let mut woken: Vec<String> = Vec::new();
        while let Some(next) = slots.next_to_wake(self.share, self.total) {
            let namespace = next.namespace.clone().unwrap_or_default();
            slots.enter(&namespace);
            woken.push(namespace);
            let _ = self.wake.send(next);
        }
        for namespace in &woken {
            slots.leave(namespace);
        }
        woken.len()
    }

    /// Calls [`Self::wake_free_slots`] every `period`, for ever.
    pub async fn pump(self, period: std::time::Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.wake_free_slots();
        }
    }

    /// Exchanges in flight and bindings parked, for tests and diagnostics.
    pub fn load(&self) -> (usize, usize) {
        let slots = lock(&self.slots);
        (
            slots.in_flight,
            slots.parked.values().map(VecDeque::len).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(ns: &str, i: usize) -> ObjectRef<AWSRoleBinding> {
        ObjectRef::new(&format!("b{i}")).within(ns)
    }

    #[test]
    fn a_busy_namespace_leaves_a_share_to_the_others() {
        let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel();
        let shares = FairShares::new(8, 2, wake);
        // Namespace a alone may use all but one share of the slots...
        let mut held: Vec<Slot> = (0..6)
            .map(|i| shares.enter("a", binding("a", i)).expect("slot"))
            .collect();
        // ...and is parked beyond that, while b still gets in at once.
        assert!(shares.enter("a", binding("a", 6)).is_none());
        assert!(shares.enter("a", binding("a", 7)).is_none());
        let b = shares
            .enter("b", binding("b", 0))
            .expect("b is never starved");
        assert_eq!(shares.load(), (7, 2));
        // b's freed slot stays reserved for namespaces under their share.
        drop(b);
        assert!(woken.try_recv().is_err());
        // Each slot a frees wakes a's next parked binding, in order, once.
        held.pop();
        assert_eq!(woken.try_recv().ok(), Some(binding("a", 6)));
        assert!(woken.try_recv().is_err());
        held.pop();
        assert_eq!(woken.try_recv().ok(), Some(binding("a", 7)));
        assert_eq!(shares.load().1, 0);
        drop(held);
        assert_eq!(shares.load(), (0, 0));
    }

    #[test]
    fn lost_wake_ups_are_made_good_into_free_slots_only() {
        let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel();
        let shares = FairShares::new(4, 1, wake);
        let held: Vec<Slot> = (0..3)
            .map(|i| shares.enter("a", binding("a", i)).expect("slot"))
            .collect();
        for i in 3..10 {
            assert!(shares.enter("a", binding("a", i)).is_none());
        }
        // Parking one already parked neither queues it twice nor scans the queue.
        assert!(shares.enter("a", binding("a", 3)).is_none());
        assert_eq!(shares.load(), (3, 7));
        // Three slots free, their wake-ups lost (the receiver drained them).
        drop(held);
        while woken.try_recv().is_ok() {}
        assert_eq!(shares.load(), (0, 4));
        // The pump wakes, in order, as many as the namespace may take now (three of the four
        // slots: one stays for other namespaces), and no more.
        assert_eq!(shares.wake_free_slots(), 3);
        let pumped: Vec<_> = std::iter::from_fn(|| woken.try_recv().ok()).collect();
        assert_eq!(pumped, (6..9).map(|i| binding("a", i)).collect::<Vec<_>>());
        assert_eq!(shares.load(), (0, 1));
        assert_eq!(shares.wake_free_slots(), 1);
        assert_eq!(woken.try_recv().ok(), Some(binding("a", 9)));
        // A deleted binding is forgotten, and parking it again queues it anew.
        let _held: Vec<Slot> = (1..4)
            .map(|i| shares.enter("a", binding("a", i)).expect("slot"))
            .collect();
        assert!(shares.enter("a", binding("a", 4)).is_none());
        shares.forget("a", &binding("a", 4));
        assert_eq!(shares.load().1, 0);
        assert!(shares.enter("a", binding("a", 4)).is_none());
        assert_eq!(shares.load().1, 1);
    }

    #[test]
    fn a_namespace_under_its_share_is_woken_before_one_over_it() {
        let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel();
        let shares = FairShares::new(4, 1, wake);
        let mut a: Vec<Slot> = (0..3)
            .map(|i| shares.enter("a", binding("a", i)).expect("slot"))
            .collect();
        assert!(shares.enter("a", binding("a", 3)).is_none());
        let b = shares.enter("b", binding("b", 0)).expect("slot");
        assert!(shares.enter("b", binding("b", 1)).is_none());
        // b's slot frees: b is under its share again and goes first, although a parked earlier.
        drop(b);
        assert_eq!(woken.try_recv().ok(), Some(binding("b", 1)));
        // One of a's frees: a may use it now.
        a.pop();
        assert_eq!(woken.try_recv().ok(), Some(binding("a", 3)));
        assert!(woken.try_recv().is_err());
    }

    #[test]
    fn a_deleted_parked_binding_is_never_woken() {
        let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel();
        let shares = FairShares::new(1, 1, wake);
        let slot = shares.enter("a", binding("a", 0)).expect("slot");
        assert!(shares.enter("a", binding("a", 1)).is_none());
        shares.forget("a", &binding("a", 1));
        drop(slot);
        assert!(woken.try_recv().is_err());
        assert_eq!(shares.load(), (0, 0));
    }

    #[test]
    fn one_namespace_alone_uses_every_slot_but_one_share() {
        let (wake, _woken) = tokio::sync::mpsc::unbounded_channel();
        let shares = FairShares::new(32, 8, wake);
        let held: Vec<Slot> = (0..40)
            .filter_map(|i| shares.enter("a", binding("a", i)))
            .collect();
        assert_eq!(held.len(), 24);
    }
}

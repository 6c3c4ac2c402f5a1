//! Kubernetes Events, off the reconciliation's critical path: reconciliations hand them to one
//! bounded queue, and one background task publishes them a few at a time at a bounded rate, so
//! a burst costs neither memory nor apiserver capacity that reconciliations need.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use governor::{Quota, RateLimiter};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tracing::{debug, warn};

use super::quota::Bound;
use crate::api::AWSRoleBinding;
use crate::metrics::Metrics;
use crate::text;

/// Events waiting to be published, in all and per namespace; beyond this (a burst of thousands of
/// bindings) they are dropped rather than held in memory: status and metrics carry the same
/// information. One namespace whose bindings all fail at once fills at most an eighth of the
/// queue, so it cannot silence the others.
pub const EVENT_QUEUE: Bound = Bound::shared(1024, 8);

/// Events written per second at most, after a burst of [`EVENT_BURST`]. Far above what steady
/// state needs (5,000 bindings with 1-hour sessions refresh about twice a second), low enough
/// that a burst of new bindings spends the apiserver on credentials first.
const EVENT_RATE: NonZeroU32 = NonZeroU32::new(25).expect("non-zero");
const EVENT_BURST: NonZeroU32 = NonZeroU32::new(100).expect("non-zero");
/// Events published at once.
const PUBLISHERS: usize = 4;

/// One Event about one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// Events waiting: in all, and per namespace.
#[derive(Debug, Default)]
struct Waiting {
    total: usize,
    by_namespace: HashMap<String, usize>,
}

impl Waiting {
    /// Counts one more Event of `namespace` if the bound admits it.
    fn take(&mut self, namespace: &str) -> bool {
        let mine = self.by_namespace.get(namespace).copied().unwrap_or(0);
        if !EVENT_QUEUE.admits(self.total, mine) {
            return false;
        }
        self.total += 1;
        *self.by_namespace.entry(namespace.to_string()).or_default() += 1;
        true
    }

    /// Counts one Event of `namespace` less (it is being published, or was never queued).
    fn give_back(&mut self, namespace: &str) {
        if let Some(mine) = self.by_namespace.get_mut(namespace) {
            *mine = mine.saturating_sub(1);
            self.total = self.total.saturating_sub(1);
            if *mine == 0 {
                self.by_namespace.remove(namespace);
            }
        }
    }
}

type Pending = Arc<Mutex<Waiting>>;

fn lock(pending: &Mutex<Waiting>) -> MutexGuard<'_, Waiting> {
    match pending.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Where reconciliations drop their Events.
#[derive(Clone)]
pub struct Events {
    queue: tokio::sync::mpsc::Sender<(Event, ObjectReference)>,
    pending: Pending,
    metrics: Metrics,
}

impl Events {
    /// Starts the background publisher (as `reporter`) and returns its queue.
    pub fn start(client: Client, reporter: Reporter, metrics: Metrics) -> Self {
        let (queue, rx) = tokio::sync::mpsc::channel(EVENT_QUEUE.total);
        let pending = Pending::default();
        tokio::spawn(publish(
            Recorder::new(client, reporter),
            rx,
            pending.clone(),
        ));
        Self {
            queue,
            pending,
            metrics,
        }
    }

    /// Queues `announcement` about `binding`; drops it (and counts the drop) when the queue is full.
    pub fn announce(&self, binding: &AWSRoleBinding, announcement: Announcement) {
        self.announce_to(binding.object_ref(&()), None, announcement);
    }

    /// Queues `announcement` about the object `reference` names (a binding's pod, say), with
    /// the object it concerns too (`related`). Repeats of one reason about the same pair are
    /// published as one Event with a count (its series).
    pub fn announce_to(
        &self,
        reference: ObjectReference,
        related: Option<ObjectReference>,
        announcement: Announcement,
    ) {
        let event = Event {
            type_: if announcement.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: announcement.reason.into(),
            note: Some(text::bounded(&announcement.note, text::MAX_EVENT_NOTE)),
            action: announcement.action.into(),
            secondary: related,
        };
        // Counted under the namespace the publisher will give it back under.
        let namespace = reference.namespace.clone().unwrap_or_default();
        let name = reference.name.clone().unwrap_or_default();
        let admitted = {
            let mut pending = lock(&self.pending);
            pending.take(&namespace)
                && (self.queue.try_send((event, reference)).is_ok() || {
                    pending.give_back(&namespace);
                    false
                })
        };
        if !admitted {
            self.metrics.events_dropped.inc();
            debug!(namespace = %namespace, object = %name, "Event queue full; dropping an Event");
        }
    }
}

async fn publish(
    recorder: Recorder,
    queue: tokio::sync::mpsc::Receiver<(Event, ObjectReference)>,
    pending: Pending,
) {
    let pace = RateLimiter::direct(Quota::per_second(EVENT_RATE).allow_burst(EVENT_BURST));
    let pace = &pace;
    futures::stream::unfold(queue, |mut q| async move {
        let item = q.recv().await?;
        pace.until_ready().await;
        Some((item, q))
    })
    .for_each_concurrent(PUBLISHERS, |(event, reference)| {
        let recorder = recorder.clone();
        lock(&pending).give_back(reference.namespace.as_deref().unwrap_or_default());
        async move {
            match recorder.publish(&event, &reference).await {
                Ok(()) => {}
                // The binding's namespace is going away: so is the Event's subject.
                Err(kube::Error::Api(s))
                    if s.code == 404 || s.message.contains("being terminated") =>
                {
                    debug!(error = %s, "Event for a namespace that is going away dropped");
                }
                Err(e) => warn!(error = %e, "could not publish Event"),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_namespace_fills_at_most_its_share_of_the_event_queue() {
        let mut waiting = Waiting::default();
        let taken = (0..2_000).filter(|_| waiting.take("greedy")).count();
        assert_eq!(taken, EVENT_QUEUE.per_namespace);
        assert!(waiting.take("quiet"), "another namespace was shut out");
        // Published Events make room again, and nothing is left once all are published.
        waiting.give_back("greedy");
        assert!(waiting.take("greedy"));
        for _ in 0..EVENT_QUEUE.per_namespace {
            waiting.give_back("greedy");
        }
        waiting.give_back("quiet");
        assert_eq!(waiting.total, 0);
        assert!(waiting.by_namespace.is_empty());
        // Giving back what was never taken changes nothing.
        waiting.give_back("never");
        assert_eq!(waiting.total, 0);
    }

    #[test]
    fn the_whole_queue_is_bounded_too() {
        let mut waiting = Waiting::default();
        let taken: usize = (0..100)
            .map(|ns| {
                let namespace = format!("ns{ns}");
                (0..50).filter(|_| waiting.take(&namespace)).count()
            })
            .sum();
        assert_eq!(taken, EVENT_QUEUE.total);
    }
}

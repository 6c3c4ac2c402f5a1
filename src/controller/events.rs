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
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, warn};

use crate::api::AWSRoleBinding;
use crate::metrics::Metrics;
use crate::text;

/// Events waiting to be published; beyond this (a burst of thousands of bindings) they are
/// dropped rather than held in memory: status and metrics carry the same information.
const EVENT_QUEUE: usize = 1024;

/// Events written per second at most, after a burst of [`EVENT_BURST`]. Far above what steady
/// state needs (5,000 bindings with 1-hour sessions refresh about twice a second), low enough
/// that a burst of new bindings spends the apiserver on credentials first.
const EVENT_RATE: NonZeroU32 = NonZeroU32::new(25).expect("non-zero");
const EVENT_BURST: NonZeroU32 = NonZeroU32::new(100).expect("non-zero");
/// Events published at once.
const PUBLISHERS: usize = 4;
/// Events of one namespace waiting at most: a namespace whose bindings all fail at once cannot
/// fill the queue and silence the others.
const QUEUED_PER_NAMESPACE: usize = EVENT_QUEUE / 8;

/// One Event about one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// Events waiting, per namespace.
type Pending = Arc<Mutex<HashMap<String, usize>>>;

fn lock(pending: &Mutex<HashMap<String, usize>>) -> MutexGuard<'_, HashMap<String, usize>> {
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
        let (queue, rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
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
        let event = Event {
            type_: if announcement.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: announcement.reason.into(),
            note: Some(text::bounded(&announcement.note, text::MAX_EVENT_NOTE)),
            action: announcement.action.into(),
            secondary: None,
        };
        let namespace = binding.namespace().unwrap_or_default();
        let admitted = {
            let mut pending = lock(&self.pending);
            let queued = pending.entry(namespace.clone()).or_default();
            let fits = *queued < QUEUED_PER_NAMESPACE
                && self
                    .queue
                    .try_send((event, binding.object_ref(&())))
                    .is_ok();
            if fits {
                *queued += 1;
            } else if *queued == 0 {
                pending.remove(&namespace);
            }
            fits
        };
        if !admitted {
            self.metrics.events_dropped.inc();
            debug!(binding = %binding.name_any(), "Event queue full; dropping an Event");
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
        if let Some(namespace) = reference.namespace.as_deref() {
            let mut pending = lock(&pending);
            if let Some(queued) = pending.get_mut(namespace) {
                *queued = queued.saturating_sub(1);
                if *queued == 0 {
                    pending.remove(namespace);
                }
            }
        }
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

//! The event queue. Events of one session are delivered one after another
//! in the order they happened (a later event waits until the earlier one was
//! delivered or given up); different sessions are delivered concurrently.
//! Two faults act here, per event: *out-of-order* holds an event back until
//! the session's next event has been queued (or the hold time passed), and
//! *duplicate* delivers an event a second time after the first delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::delivery::deliver;
use super::event::{Event, EventRecord};
use crate::state::{App, roll};
use crate::stats::Stats;

/// Where state changes drop their events; also the event log.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Event>,
    log: Mutex<Vec<EventRecord>>,
}

impl Outbox {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                log: Mutex::new(Vec::new()),
            },
            rx,
        )
    }

    /// Queues `event` for delivery.
    pub fn push(&self, event: Event) {
        self.log.lock().expect("event log lock").push(EventRecord {
            id: event.id.clone(),
            type_: event.type_.to_owned(),
            session_id: event.session_id.clone(),
            created: event.created,
            attempts: 0,
            delivered: 0,
            given_up: 0,
        });
        // The dispatcher only stops at shutdown; later events are moot then.
        let _ = self.tx.send(event);
    }

    /// Every event so far, oldest first.
    pub fn records(&self) -> Vec<EventRecord> {
        self.log.lock().expect("event log lock").clone()
    }

    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut EventRecord)) {
        let mut log = self.log.lock().expect("event log lock");
        if let Some(r) = log.iter_mut().rev().find(|r| r.id == id) {
            f(r);
        }
    }
}

/// Runs until the emulator stops.
pub async fn run(app: Arc<App>, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut dispatcher = Dispatcher {
        app: app.clone(),
        chains: HashMap::new(),
        held: HashMap::new(),
    };
    loop {
        let next_release = dispatcher.held.values().map(|(_, at)| *at).min();
        tokio::select! {
            () = app.stopped() => break,
            event = rx.recv() => match event {
                Some(event) => dispatcher.on_event(event),
                None => break,
            },
            () = tokio::time::sleep_until(next_release.unwrap_or_else(Instant::now)), if next_release.is_some() => {
                dispatcher.release_due();
            }
        }
    }
}

struct Dispatcher {
    app: Arc<App>,
    /// Per session: resolves when the session's latest queued delivery is done.
    chains: HashMap<String, oneshot::Receiver<()>>,
    /// Per session: an event held back by the out-of-order fault, and when to let it go anyway.
    held: HashMap<String, (Event, Instant)>,
}

impl Dispatcher {
    fn on_event(&mut self, event: Event) {
        let faults = self.app.faults();
        let session = event.session_id.clone();
        if !self.held.contains_key(&session) && roll(faults.webhook_out_of_order_rate) {
            Stats::inc(&self.app.stats.webhook_reordered);
            let until = Instant::now() + self.app.delivery.out_of_order_hold;
            self.held.insert(session, (event, until));
            return;
        }
        self.start(event);
        if let Some((held, _)) = self.held.remove(&session) {
            self.start(held);
        }
    }

    fn release_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for session in due {
            if let Some((event, _)) = self.held.remove(&session) {
                self.start(event);
            }
        }
    }

    /// Starts the delivery of `event` once the session's previous delivery is done.
    fn start(&mut self, event: Event) {
        if is_lost(&event.session_id, self.app.faults().webhook_lost_rate) {
            Stats::inc(&self.app.stats.webhooks_lost);
            self.app.outbox.update(&event.id, |r| r.given_up += 1);
            tracing::warn!(event_id = %event.id, session_id = %event.session_id, "webhook lost (fault)");
            return;
        }
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let previous = self.chains.insert(event.session_id.clone(), done_rx);
        let duplicate = roll(self.app.faults().webhook_duplicate_rate);
        let app = self.app.clone();
        tokio::spawn(async move {
            if let Some(previous) = previous {
                // Err only means the previous task ended without sending: done either way.
                let _ = previous.await;
            }
            deliver(&app, &event).await;
            if duplicate {
                Stats::inc(&app.stats.webhook_duplicates);
                deliver(&app, &event).await;
            }
            drop(done_tx);
        });
    }
}

/// Are all webhooks of `session_id` lost at `rate`? The same answer for
/// every event of the session: a stable hash of its id against the rate.
pub fn is_lost(session_id: &str, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    // FNV-1a: stable across runs and processes.
    let hash = session_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % 10_000) < (rate * 10_000.0) as u64
}

#[cfg(test)]
mod lost_tests {
    use super::is_lost;

    #[test]
    fn lost_sessions_are_a_stable_share() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("cs_test_{i:024}")).collect();
        let lost = ids.iter().filter(|id| is_lost(id, 0.1)).count();
        assert!((800..1200).contains(&lost), "{lost} of 10000 at 10 %");
        assert!(ids.iter().all(|id| is_lost(id, 0.1) == is_lost(id, 0.1)));
        assert!(ids.iter().all(|id| is_lost(id, 1.0)));
        assert!(!ids.iter().any(|id| is_lost(id, 0.0)));
    }
}

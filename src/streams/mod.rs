//! Booking events pushed to apps as Server-Sent Events.
//!
//! Every committed audit event is announced by PostgreSQL on one channel (`NOTIFY` in the
//! transaction that writes it: nothing is announced that did not commit, and announcements
//! arrive in commit order). Each node keeps one connection that `LISTEN`s ([`Hub::listen`]) and
//! hands every event to the node's streams, whichever node wrote it. A stream that may have
//! missed some (it connected with a `Last-Event-ID`, its node lost the listening connection, or
//! it fell behind) reads them from the audit trail, so the trail is the one source of truth and
//! the announcement only says "look now". docs/architecture.md ("Event streams") says why
//! PostgreSQL and not Redis pub/sub carries them.

mod feed;
pub mod ops;

pub use feed::{events, StreamStart};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::domain::ids::{BookingId, DriverId, RiderId};
use crate::storage::events::{FeedEvent, Scope, CHANNEL};

/// What a stream is told.
#[derive(Debug, Clone)]
pub enum Signal {
    /// An event committed (on any node).
    Event(Arc<FeedEvent>),
    /// Events may have committed unannounced (the listening connection was lost and is back):
    /// every stream reads what it missed from the trail.
    Gap,
    /// A node's lease change, backend switch or figures: for the cluster's streams, live only.
    Ops(Arc<ops::OpsEvent>),
}

/// The node's feed of committed events, shared by all its streams. Each event goes only to the
/// streams of its booking, its rider, its driver and the cluster's, never past every stream
/// open: a thousand riders' streams cost an event four lookups, not a thousand wake-ups.
pub struct Hub {
    routes: Mutex<Routes>,
    /// Signals a stream may have queued before it counts as fallen behind.
    buffer: usize,
}

#[derive(Default)]
struct Routes {
    next: u64,
    by_scope: HashMap<Scope, Vec<(u64, Arc<Inbox>)>>,
    open: usize,
}

/// One stream's end of the feed.
struct Inbox {
    sender: mpsc::Sender<Signal>,
    /// Set when a signal did not fit: the stream reads the trail instead.
    behind: AtomicBool,
}

impl Inbox {
    fn offer(&self, signal: Signal) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.sender.try_send(signal) {
            self.behind.store(true, Ordering::SeqCst);
        }
    }
}

/// A stream's subscription to the feed; leaves it when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    scope: Scope,
    id: u64,
    inbox: Arc<Inbox>,
    receiver: mpsc::Receiver<Signal>,
}

impl Subscription {
    /// The next signal for this stream (`None` never comes while the hub lives).
    pub async fn recv(&mut self) -> Option<Signal> {
        self.receiver.recv().await
    }

    /// Whether signals were lost since last asked (the stream fell behind); clears it.
    pub fn fell_behind(&self) -> bool {
        self.inbox.behind.swap(false, Ordering::SeqCst)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut routes = self.hub.lock();
        if let Some(inboxes) = routes.by_scope.get_mut(&self.scope) {
            inboxes.retain(|(id, _)| *id != self.id);
            if inboxes.is_empty() {
                routes.by_scope.remove(&self.scope);
            }
        }
        routes.open -= 1;
    }
}

impl Hub {
    /// A feed whose streams may each fall `buffer` signals behind before they re-read the trail.
    pub fn new(buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            routes: Mutex::new(Routes::default()),
            buffer: buffer.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // Nothing panics while holding it; a poisoned map is still a consistent map.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes a stream of `scope`.
    pub fn subscribe(self: &Arc<Self>, scope: Scope) -> Subscription {
        let (sender, receiver) = mpsc::channel(self.buffer);
        let inbox = Arc::new(Inbox {
            sender,
            behind: AtomicBool::new(false),
        });
        let mut routes = self.lock();
        routes.next += 1;
        let id = routes.next;
        routes
            .by_scope
            .entry(scope)
            .or_default()
            .push((id, inbox.clone()));
        routes.open += 1;
        Subscription {
            hub: self.clone(),
            scope,
            id,
            inbox,
            receiver,
        }
    }

    /// Streams open on this node now.
    pub fn subscribers(&self) -> usize {
        self.lock().open
    }

    /// Hands a signal to the streams it concerns: an event to its booking's, rider's, driver's
    /// and the cluster's; a gap to all.
    pub fn publish(&self, signal: Signal) {
        let routes = self.lock();
        match &signal {
            Signal::Event(event) => {
                let scopes = [
                    Some(Scope::Booking(BookingId(event.event.booking_id))),
                    Some(Scope::Rider(RiderId(event.rider_id))),
                    event.event.driver_id.map(|d| Scope::Driver(DriverId(d))),
                    Some(Scope::All),
                ];
                for scope in scopes.iter().flatten() {
                    for (_, inbox) in routes.by_scope.get(scope).into_iter().flatten() {
                        inbox.offer(signal.clone());
                    }
                }
            }
            Signal::Gap => {
                for (_, inbox) in routes.by_scope.values().flatten() {
                    inbox.offer(Signal::Gap);
                }
            }
            Signal::Ops(_) => {
                for (_, inbox) in routes.by_scope.get(&Scope::All).into_iter().flatten() {
                    inbox.offer(signal.clone());
                }
            }
        }
    }

    /// Keeps a connection to PostgreSQL that `LISTEN`s for committed events, for as long as the
    /// process runs: connects again after any failure (backing off to `retry_max`), and signals
    /// a [`Signal::Gap`] each time it is listening again.
    pub async fn listen(self: Arc<Self>, database_url: String, retry_max: Duration) {
        const FIRST_RETRY: Duration = Duration::from_millis(100);
        let mut retry = FIRST_RETRY;
        loop {
            let mut listening = false;
            match self.listen_once(&database_url, &mut listening).await {
                Ok(()) => log::warn!("event feed: the listening connection closed"),
                Err(error) => log::warn!("event feed: not listening: {error}"),
            }
            // A connection that got as far as listening starts the backoff afresh.
            if listening {
                retry = FIRST_RETRY;
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(retry_max);
        }
    }

    /// One listening connection, until it fails; `listening` turns true once it listens.
    async fn listen_once(&self, database_url: &str, listening: &mut bool) -> anyhow::Result<()> {
        let mut conn = AsyncPgConnection::establish(database_url).await?;
        for channel in [CHANNEL, ops::OPS_CHANNEL] {
            diesel::sql_query(format!("LISTEN {channel}"))
                .execute(&mut conn)
                .await?;
        }
        *listening = true;
        log::info!(
            "event feed: listening on {CHANNEL} and {}",
            ops::OPS_CHANNEL
        );
        // Whatever committed while nobody listened is in the trail.
        self.publish(Signal::Gap);
        let mut notifications = std::pin::pin!(conn.notifications_stream());
        while let Some(notification) = notifications.next().await {
            let notification = notification?;
            if notification.channel == ops::OPS_CHANNEL {
                self.publish_ops(&notification.payload);
                continue;
            }
            match serde_json::from_str::<Vec<FeedEvent>>(&notification.payload) {
                Ok(events) => {
                    for event in events {
                        self.publish(Signal::Event(Arc::new(event)));
                    }
                }
                // A payload this build cannot read (a newer node's, during an upgrade): the
                // streams that want it read it from the trail.
                Err(error) => {
                    log::warn!("event feed: unreadable announcement ({error}); re-reading");
                    self.publish(Signal::Gap);
                }
            }
        }
        Ok(())
    }

    /// Passes on a node's announced operations; one this build cannot read (a newer node's,
    /// during an upgrade) is skipped: nothing of it is in any trail to be missed.
    fn publish_ops(&self, payload: &str) {
        // Only cluster streams take them: with none open, not even read.
        if !self.lock().by_scope.contains_key(&Scope::All) {
            return;
        }
        match serde_json::from_str::<Vec<ops::OpsEvent>>(payload) {
            Ok(events) => {
                for event in events {
                    self.publish(Signal::Ops(Arc::new(event)));
                }
            }
            Err(error) => log::debug!("ops feed: unreadable announcement skipped: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::status::BookingStatus;
    use crate::storage::models::BookingEvent;

    fn event(booking: i64, rider: i64, driver: Option<i64>) -> Signal {
        Signal::Event(Arc::new(FeedEvent {
            event: BookingEvent {
                id: 1,
                booking_id: booking,
                from_status: None,
                to_status: BookingStatus::Pending,
                driver_id: driver,
                node_id: "n1".into(),
                fencing_token: 1,
                request_id: "r".into(),
                created_at: Utc::now(),
                actor: None,
            },
            rider_id: rider,
        }))
    }

    fn has_signal(subscription: &mut Subscription) -> bool {
        subscription.receiver.try_recv().is_ok()
    }

    #[test]
    fn an_event_reaches_the_streams_of_its_booking_rider_driver_and_the_cluster_only() {
        let hub = Hub::new(8);
        let mut booking = hub.subscribe(Scope::Booking(BookingId(7)));
        let mut other_booking = hub.subscribe(Scope::Booking(BookingId(8)));
        let mut rider = hub.subscribe(Scope::Rider(RiderId(5)));
        let mut driver = hub.subscribe(Scope::Driver(DriverId(3)));
        let mut other_driver = hub.subscribe(Scope::Driver(DriverId(4)));
        let mut all = hub.subscribe(Scope::All);
        hub.publish(event(7, 5, Some(3)));
        for (name, stream) in [
            ("booking", &mut booking),
            ("rider", &mut rider),
            ("driver", &mut driver),
            ("all", &mut all),
        ] {
            assert!(has_signal(stream), "{name}");
        }
        assert!(!has_signal(&mut other_booking));
        assert!(!has_signal(&mut other_driver));
        hub.publish(Signal::Gap);
        assert!(has_signal(&mut other_booking) && has_signal(&mut other_driver));
    }

    #[test]
    fn a_stream_that_falls_behind_is_told_and_a_dropped_one_leaves() {
        let hub = Hub::new(2);
        let slow = hub.subscribe(Scope::All);
        let other = hub.subscribe(Scope::All);
        assert_eq!(hub.subscribers(), 2);
        for _ in 0..3 {
            hub.publish(event(1, 1, None));
        }
        assert!(slow.fell_behind());
        assert!(!slow.fell_behind(), "told once");
        drop(other);
        assert_eq!(hub.subscribers(), 1);
        drop(slow);
        assert_eq!(hub.subscribers(), 0);
        assert!(hub.lock().by_scope.is_empty());
    }
}

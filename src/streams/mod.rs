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

pub use feed::{events, StreamStart};

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::storage::events::{FeedEvent, CHANNEL};

/// What the listening connection tells the node's streams.
#[derive(Debug, Clone)]
pub enum Signal {
    /// An event committed (on any node).
    Event(Arc<FeedEvent>),
    /// Events may have committed unannounced (the listening connection was lost and is back):
    /// every stream reads what it missed from the trail.
    Gap,
}

/// The node's feed of committed events, shared by all its streams.
pub struct Hub {
    sender: broadcast::Sender<Signal>,
}

impl Hub {
    /// A feed whose streams may each fall `buffer` events behind before they re-read the trail.
    pub fn new(buffer: usize) -> Arc<Self> {
        let (sender, _) = broadcast::channel(buffer);
        Arc::new(Self { sender })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.sender.subscribe()
    }

    /// Streams open on this node now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Hands an event to every stream (also how the tests feed a hub without PostgreSQL).
    pub fn publish(&self, signal: Signal) {
        // No stream open: nobody to tell.
        let _ = self.sender.send(signal);
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
        diesel::sql_query(format!("LISTEN {CHANNEL}"))
            .execute(&mut conn)
            .await?;
        *listening = true;
        log::info!("event feed: listening on {CHANNEL}");
        // Whatever committed while nobody listened is in the trail.
        self.publish(Signal::Gap);
        let mut notifications = std::pin::pin!(conn.notifications_stream());
        while let Some(notification) = notifications.next().await {
            let notification = notification?;
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
}

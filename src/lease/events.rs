//! What the lease manager does with leases, told as it happens to whoever watches the cluster
//! (the ops stream, the dashboard). Telling never waits: a full queue drops the event and counts
//! it, so a slow reader cannot slow a grant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

/// What happened to a lease on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseChange {
    /// Granted; nobody else was seen holding it.
    Granted,
    /// Granted after another node was seen holding it, and gave it back before it expired.
    Moved,
    /// Granted after another node was seen holding it until it expired: that node stopped
    /// renewing (it died, or lost Redis or the network), and this one took the booking over.
    TakenOver,
    /// Refused: another node holds it.
    Contended,
    /// Lost: a renewal failed or came too late, or the store said it is no longer ours.
    Lost,
}

/// One lease change on this node.
#[derive(Debug, Clone)]
pub struct LeaseEvent {
    pub change: LeaseChange,
    pub key: Arc<str>,
    /// The other node: the holder for `contended`, the previous holder for `moved` and
    /// `taken_over`.
    pub other: Option<String>,
    pub at: DateTime<Utc>,
}

/// The sending end: cheap to clone.
#[derive(Clone)]
pub struct LeaseEvents {
    sender: mpsc::Sender<LeaseEvent>,
    dropped: Arc<AtomicU64>,
}

impl LeaseEvents {
    /// A queue of `capacity` events, and its reading end.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<LeaseEvent>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let events = Self {
            sender,
            dropped: Arc::default(),
        };
        (events, receiver)
    }

    pub(crate) fn tell(&self, change: LeaseChange, key: &Arc<str>, other: Option<String>) {
        let event = LeaseEvent {
            change,
            key: key.clone(),
            other,
            at: Utc::now(),
        };
        if self.sender.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped so far because the queue was full (or nobody reads it).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Keys this node found held by another node, by whom and until when: a later grant of the key
/// moved it here (given back early) or took it over (it expired). Forgotten past `MOST` keys.
#[derive(Default)]
pub(crate) struct SeenHeld {
    keys: HashMap<Arc<str>, (String, Instant)>,
}

impl SeenHeld {
    const MOST: usize = 4096;
    /// A grant this close to the seen expiry counts as a takeover: the holder's key expired
    /// (Redis's clock and ours agree within it).
    const SLACK: Duration = Duration::from_millis(50);

    pub fn held(&mut self, key: &Arc<str>, node: &str, remaining: Duration, now: Instant) {
        if self.keys.len() >= Self::MOST {
            self.keys.clear();
        }
        self.keys
            .insert(key.clone(), (node.to_owned(), now + remaining));
    }

    /// How a grant of `key` at `now` came about, and from whom.
    pub fn granted(&mut self, key: &str, now: Instant) -> (LeaseChange, Option<String>) {
        match self.keys.remove(key) {
            Some((node, expiry)) if now + Self::SLACK >= expiry => {
                (LeaseChange::TakenOver, Some(node))
            }
            Some((node, _)) => (LeaseChange::Moved, Some(node)),
            None => (LeaseChange::Granted, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_after_a_holder_seen_is_a_move_before_its_expiry_and_a_takeover_after() {
        let mut seen = SeenHeld::default();
        let t0 = Instant::now();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert_eq!(seen.granted(&a, t0), (LeaseChange::Granted, None));
        seen.held(&a, "n2", Duration::from_secs(2), t0);
        seen.held(&b, "n3", Duration::from_secs(2), t0);
        let early = t0 + Duration::from_millis(300);
        assert_eq!(
            seen.granted(&a, early),
            (LeaseChange::Moved, Some("n2".into()))
        );
        assert_eq!(seen.granted(&a, early), (LeaseChange::Granted, None));
        assert_eq!(
            seen.granted(&b, t0 + Duration::from_secs(2)),
            (LeaseChange::TakenOver, Some("n3".into()))
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (events, mut receiver) = LeaseEvents::channel(1);
        let key: Arc<str> = "k".into();
        events.tell(LeaseChange::Granted, &key, None);
        events.tell(LeaseChange::Lost, &key, None);
        assert_eq!(events.dropped(), 1);
        let first = receiver.try_recv().map(|e| e.change);
        assert_eq!(first, Ok(LeaseChange::Granted));
    }
}

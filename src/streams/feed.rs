//! One stream: what the client missed (from the audit trail), then the live events of its scope
//! as the node's feed passes them on, each once and, per booking, in order; a heartbeat comment
//! while idle; the end when the node drains.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::ops::OpsEvent;
use super::{Hub, Signal, Subscription};
use crate::storage::events::{self, FeedEvent, Scope};
use crate::storage::{pool, PgPool, StoreError};

/// Events read from the trail per query.
const PAGE: i64 = 500;
/// Events of the overlap read at most per catch-up.
const OVERLAP_MOST: i64 = 10_000;
/// Ids remembered as sent, so that one read again (overlap, a catch-up racing the feed) is not
/// sent twice.
const REMEMBERED: usize = 16_384;
/// How soon a catch-up that failed (PostgreSQL unavailable) is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// What an `EventSource` waits before it reconnects, ms.
const RECONNECT_MS: u64 = 1000;
/// A comment line: keeps an idle stream open through proxies.
const HEARTBEAT: &str = ": heartbeat\n\n";

/// How a stream starts.
pub struct StreamStart {
    pub scope: Scope,
    /// The last event the client has (`Last-Event-ID`, or `?after=`): the stream first sends
    /// what came after it. `None`: only what commits from now on.
    pub after: Option<i64>,
    pub heartbeat: Duration,
    /// See `streams.replay_overlap_ms`.
    pub overlap: Duration,
    /// Riders and drivers see an operator as `ops`, without the name.
    pub mask_operators: bool,
}

/// The stream's frames, in the `text/event-stream` format. Ends when `closing` turns true (the
/// node drains; the client reconnects elsewhere with its `Last-Event-ID`). Subscribes at once;
/// a stream without a start reads where the trail ends now (after subscribing, so that nothing
/// committing meanwhile falls between the two), and fails if PostgreSQL cannot say.
pub async fn events(
    hub: &Arc<Hub>,
    pool: PgPool,
    start: StreamStart,
    closing: watch::Receiver<bool>,
) -> Result<impl Stream<Item = String> + 'static, StoreError> {
    let feed = hub.subscribe(start.scope);
    let cursor = match start.after {
        Some(after) => after,
        None => {
            let mut conn = pool::conn(&pool).await?;
            events::latest(&mut conn).await?
        }
    };
    let mut heartbeat = tokio::time::interval_at(Instant::now() + start.heartbeat, start.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = Feed {
        feed,
        pool,
        scope: start.scope,
        cursor,
        catch_up: start.after.is_some(),
        sent: Sent::new(matches!(start.scope, Scope::Booking(_))),
        overlap: start.overlap,
        mask_operators: start.mask_operators,
        heartbeat,
        closing,
        out: VecDeque::from([format!("retry: {RECONNECT_MS}\n: connected\n\n")]),
    };
    Ok(futures::stream::unfold(state, |mut feed| async move {
        let frame = feed.next_frame().await?;
        Some((frame, feed))
    }))
}

struct Feed {
    feed: Subscription,
    pool: PgPool,
    scope: Scope,
    /// Events up to here are sent or known to the client; a catch-up reads from here.
    cursor: i64,
    /// Whether the trail must be read before live events are passed on again.
    catch_up: bool,
    sent: Sent,
    overlap: Duration,
    mask_operators: bool,
    heartbeat: Interval,
    closing: watch::Receiver<bool>,
    out: VecDeque<String>,
}

impl Feed {
    /// The next frame, or `None` once the stream is over.
    async fn next_frame(&mut self) -> Option<String> {
        loop {
            if let Some(frame) = self.out.pop_front() {
                return Some(frame);
            }
            if *self.closing.borrow() {
                return None;
            }
            // Signals were lost (the stream fell behind): the trail has them.
            if self.feed.fell_behind() {
                self.catch_up = true;
            }
            if self.catch_up {
                // Boxed: the reads' futures are large, and an idle stream's state would carry
                // their size for as long as it stays open.
                match Box::pin(self.read_missed()).await {
                    Ok(()) => self.catch_up = false,
                    // PostgreSQL unavailable: try again soon, the heartbeat going on meanwhile.
                    Err(error) => {
                        log::warn!("stream: cannot read the trail: {error}");
                        tokio::select! {
                            () = tokio::time::sleep(RETRY) => {}
                            _ = self.heartbeat.tick() => self.out.push_back(HEARTBEAT.to_owned()),
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                signal = self.feed.recv() => match signal {
                    Some(Signal::Event(event)) => self.offer(&event),
                    Some(Signal::Ops(event)) => self.out.push_back(ops_frame(&event)),
                    // The node's feed missed announcements: read the trail.
                    Some(Signal::Gap) => self.catch_up = true,
                    None => return None,
                },
                _ = self.heartbeat.tick() => self.out.push_back(HEARTBEAT.to_owned()),
                changed = self.closing.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads from the trail what came after the cursor; for a stream of several bookings, also
    /// the events written within the overlap before it (an event written earlier on another
    /// node may have committed later).
    async fn read_missed(&mut self) -> Result<(), StoreError> {
        let mut cursor = self.cursor;
        let mut conn = pool::conn(&self.pool).await?;
        if !matches!(self.scope, Scope::Booking(_)) && cursor > 0 {
            if let Some(at) = events::written_at(&mut conn, cursor).await? {
                let from = at - chrono::Duration::from_std(self.overlap).unwrap_or_default();
                for event in
                    events::overlap(&mut conn, self.scope, cursor, from, OVERLAP_MOST).await?
                {
                    self.offer(&event);
                }
            }
        }
        loop {
            let page = events::after(&mut conn, self.scope, cursor, PAGE).await?;
            for event in &page {
                self.offer(event);
                cursor = cursor.max(event.event.id);
            }
            if page.len() < PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Queues `event` if it is in scope and not sent yet.
    fn offer(&mut self, event: &FeedEvent) {
        let id = event.event.id;
        if self.scope.covers(event) && self.sent.admit(id) {
            self.cursor = self.cursor.max(id);
            self.out.push_back(frame(event, self.mask_operators));
        }
    }
}

/// The events a stream has sent, so that none goes twice (one read again from the trail, or by a
/// catch-up racing the feed) and a booking's never goes out of order.
struct Sent {
    /// Ids sent lately (at most [`REMEMBERED`]).
    ids: BTreeSet<i64>,
    /// The highest id sent.
    newest: i64,
    /// One booking's stream: an event older than one sent is not sent after it. (A booking's
    /// events commit in id order: one writer at a time, fenced.)
    in_order: bool,
}

impl Sent {
    fn new(in_order: bool) -> Self {
        Self {
            ids: BTreeSet::new(),
            newest: 0,
            in_order,
        }
    }

    /// Whether event `id` is to be sent now; if so, it counts as sent.
    fn admit(&mut self, id: i64) -> bool {
        if self.ids.contains(&id) || (self.in_order && id < self.newest) {
            return false;
        }
        self.ids.insert(id);
        if self.ids.len() > REMEMBERED {
            self.ids.pop_first();
        }
        self.newest = self.newest.max(id);
        true
    }
}

/// One event in the `text/event-stream` format: its id (what the client sends back as
/// `Last-Event-ID`), the type `booking`, and the event as JSON on one line.
fn frame(event: &FeedEvent, mask_operators: bool) -> String {
    let mut event = event.clone();
    if mask_operators
        && event
            .event
            .actor
            .as_deref()
            .is_some_and(|actor| actor.starts_with("ops:"))
    {
        event.event.actor = Some("ops".to_owned());
    }
    // Plain fields only: serializing cannot fail, and JSON escapes every newline.
    let data = serde_json::to_string(&event).unwrap_or_default();
    format!("id: {}\nevent: booking\ndata: {data}\n\n", event.event.id)
}

/// A lease change, backend switch or node's figures: named by its type, without an id (it is in
/// no trail, so it must not move the client's `Last-Event-ID`).
fn ops_frame(event: &OpsEvent) -> String {
    let data = serde_json::to_string(event).unwrap_or_default();
    format!("event: {}\ndata: {data}\n\n", event.name())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::status::BookingStatus;
    use crate::storage::models::BookingEvent;

    fn event(id: i64, actor: &str) -> FeedEvent {
        FeedEvent {
            event: BookingEvent {
                id,
                booking_id: 7,
                from_status: Some(BookingStatus::Pending),
                to_status: BookingStatus::Assigned,
                driver_id: Some(3),
                node_id: "n1".into(),
                fencing_token: 1,
                request_id: "req-1".into(),
                created_at: Utc::now(),
                actor: Some(actor.into()),
            },
            rider_id: 5,
        }
    }

    #[test]
    fn an_event_goes_once_and_a_booking_s_never_after_a_newer_one() {
        let mut booking = Sent::new(true);
        assert!(booking.admit(10));
        assert!(!booking.admit(10), "twice");
        assert!(booking.admit(12));
        assert!(!booking.admit(11), "older than one sent");
        let mut several = Sent::new(false);
        assert!(several.admit(12));
        assert!(several.admit(11), "another booking's, committed later");
        assert!(!several.admit(11));
    }

    #[test]
    fn the_remembered_ids_are_bounded() {
        let mut sent = Sent::new(false);
        for id in 0..(REMEMBERED as i64 + 10) {
            assert!(sent.admit(id));
        }
        assert_eq!(sent.ids.len(), REMEMBERED);
    }

    #[test]
    fn a_frame_carries_the_id_and_one_line_of_json_and_hides_operators_from_apps() {
        let framed = frame(&event(42, "ops:alice"), true);
        let lines: Vec<&str> = framed.lines().collect();
        assert_eq!(lines[0], "id: 42");
        assert_eq!(lines[1], "event: booking");
        let data: serde_json::Value =
            serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["actor"], "ops");
        assert_eq!(data["rider_id"], 5);
        assert_eq!(data["to_status"], "assigned");
        assert!(framed.ends_with("\n\n"), "{framed:?}");
        assert_eq!(
            framed.matches('\n').count(),
            4,
            "three lines and the blank one"
        );
        let for_ops = frame(&event(42, "ops:alice"), false);
        assert!(for_ops.contains("\"actor\":\"ops:alice\""), "{for_ops}");
    }

    #[test]
    fn feed_events_read_back_from_an_announcement() {
        let original = vec![event(9, "rider:5"), event(10, "driver:3")];
        let announced = serde_json::to_string(&original).unwrap();
        let read: Vec<FeedEvent> = serde_json::from_str(&announced).unwrap();
        assert_eq!(read, original);
    }
}

//! "No driver in two bookings at once", checked where it can fail, shared by the api, cluster and
//! chaos suites. Asking PostgreSQL for a driver in two active bookings never finds one: the
//! partial unique index `bookings_one_active_per_driver` refuses that row, so such a check passes
//! whatever the nodes do. These checks read what the index does not guard: the audit trail
//! (`booking_events`), where every assignment that ever existed stays, and the nodes' logs, where
//! a write the index refused would show. And the single-writer invariants of the trail: per
//! booking, fencing tokens never go back, each token has one writer, each step starts where the
//! previous one ended, and every step is an arrow of the state machine.

use std::collections::HashMap;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::database::{self, Event};

/// An assignment of a driver that began before an earlier one of the same driver ended.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    #[diesel(sql_type = BigInt)]
    pub driver_id: i64,
    #[diesel(sql_type = BigInt)]
    pub booking_id: i64,
    /// The event that assigned `booking_id`, and the one that ended it (none: still active).
    #[diesel(sql_type = BigInt)]
    pub from_event: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub until_event: Option<i64>,
    /// The earlier assignment still running at `from_event`.
    #[diesel(sql_type = BigInt)]
    pub earlier_booking: i64,
    #[diesel(sql_type = BigInt)]
    pub earlier_from_event: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub earlier_until_event: Option<i64>,
}

/// Per booking with a driver, the interval from the event that assigned it to the event that
/// took it to a terminal status (or open, while it is active); per driver, any interval that
/// starts inside an earlier one.
///
/// Intervals are measured in event ids, not `created_at`: `created_at` is the writing
/// transaction's start, and an assignment that waited for the driver's row lock starts before
/// the release it waited for commits. Ids are drawn inside the statement, so a release's event
/// always has a smaller id than the claim that followed it.
const OVERLAPS: &str = "\
WITH spans AS (
    SELECT b.driver_id, e.booking_id,
           min(e.id) FILTER (WHERE e.to_status = 'assigned') AS from_event,
           min(e.id) FILTER (WHERE e.to_status IN ('completed', 'cancelled')) AS until_event
      FROM booking_events e JOIN bookings b ON b.id = e.booking_id
     WHERE b.driver_id IS NOT NULL
     GROUP BY b.driver_id, e.booking_id
), late AS (
    SELECT s.*, max(coalesce(s.until_event, 9223372036854775807)) OVER (
               PARTITION BY s.driver_id ORDER BY s.from_event
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier_until
      FROM spans s
     WHERE s.from_event IS NOT NULL
)
SELECT l.driver_id, l.booking_id, l.from_event, l.until_event,
       p.booking_id AS earlier_booking, p.from_event AS earlier_from_event,
       p.until_event AS earlier_until_event
  FROM late l
  JOIN spans p ON p.driver_id = l.driver_id AND p.from_event < l.from_event
              AND coalesce(p.until_event, 9223372036854775807) > l.from_event
 WHERE l.earlier_until > l.from_event
 ORDER BY l.driver_id, l.from_event, p.from_event";

/// Overlapping assignments of one driver, from the audit trail.
pub async fn overlapping_assignments(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<Vec<Overlap>> {
    diesel::sql_query(OVERLAPS).load(conn).await
}

/// A driver whose row disagrees with the active booking that holds it (busy without one, free
/// with one, or pointing at another booking).
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct OutOfStep {
    #[diesel(sql_type = BigInt)]
    pub driver_id: i64,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub current_booking_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub active_booking_id: Option<i64>,
}

pub async fn drivers_out_of_step(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<Vec<OutOfStep>> {
    diesel::sql_query(
        "SELECT d.id AS driver_id, d.status::text AS status, d.current_booking_id,
                b.id AS active_booking_id
           FROM drivers d
           LEFT JOIN bookings b ON b.driver_id = d.id AND b.status IN ('assigned', 'accepted')
          WHERE (d.status = 'busy') <> (b.id IS NOT NULL)
             OR d.current_booking_id IS DISTINCT FROM b.id",
    )
    .load(conn)
    .await
}

/// Panics if any driver's assignments overlap in the audit trail, or any driver row disagrees
/// with its active booking.
pub async fn assert_no_driver_booked_twice(conn: &mut AsyncPgConnection) {
    let overlaps = overlapping_assignments(conn).await.unwrap();
    assert!(
        overlaps.is_empty(),
        "a driver was in two bookings at once (audit trail): {overlaps:#?}"
    );
    let out_of_step = drivers_out_of_step(conn).await.unwrap();
    assert!(
        out_of_step.is_empty(),
        "driver rows out of step with their bookings: {out_of_step:#?}"
    );
}

/// Lines of a node's log that report a write refused by a unique index: a node tried to give a
/// driver a second booking (or otherwise raced past its own checks).
pub fn unique_violations(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            line.contains("bookings_one_active_per_driver")
                || line.contains("duplicate key value violates unique constraint")
        })
        .collect()
}

/// Checks the single-writer invariants on the whole event trail: per booking, tokens never go
/// back, each token has one writer, and each event starts where the previous one ended. The trail.
pub async fn assert_one_writer_per_token(conn: &mut AsyncPgConnection) -> Vec<Event> {
    let events = database::events(conn).await;
    let mut last: HashMap<i64, &Event> = HashMap::new();
    let mut writers: HashMap<(i64, i64), &str> = HashMap::new();
    for event in &events {
        if let Some(previous) = last.get(&event.booking_id) {
            assert_follows(previous, event);
        }
        if event.fencing_token > 0 {
            let writer = writers
                .entry((event.booking_id, event.fencing_token))
                .or_insert(event.node_id.as_str());
            assert_eq!(
                *writer, event.node_id,
                "two writers under one token: {event:?}"
            );
        }
        last.insert(event.booking_id, event);
    }
    events
}

/// `event`, the next step of `previous`'s booking, starts where `previous` ended, under the same
/// fencing token or a later one.
#[track_caller]
fn assert_follows(previous: &Event, event: &Event) {
    assert!(
        event.fencing_token >= previous.fencing_token,
        "token went back: {previous:?} then {event:?}"
    );
    assert_eq!(
        event.from_status.as_deref(),
        Some(previous.to_status.as_str()),
        "broken chain: {previous:?} then {event:?}"
    );
}

/// The state machine of API.md: a booking's possible steps, `None` being its creation.
const ARROWS: [(Option<&str>, &str); 7] = [
    (None, "pending"),
    (Some("pending"), "assigned"),
    (Some("assigned"), "accepted"),
    (Some("accepted"), "completed"),
    (Some("pending"), "cancelled"),
    (Some("assigned"), "cancelled"),
    (Some("accepted"), "cancelled"),
];

/// Every event follows the state machine of API.md.
pub fn assert_state_machine(events: &[Event]) {
    for event in events {
        let arrow = (event.from_status.as_deref(), event.to_status.as_str());
        assert!(
            ARROWS.contains(&arrow),
            "transition outside the state machine: {event:?}"
        );
    }
}

/// The booking's audit trail, oldest first, as `from→to` steps; asserts the steps chain from its
/// creation, follow the state machine's arrows and never go back in fencing token.
pub async fn legal_trail(conn: &mut AsyncPgConnection, booking: i64) -> Vec<String> {
    let steps = database::events_of(conn, booking).await;
    assert_state_machine(&steps);
    if let [first, ..] = steps.as_slice() {
        assert_eq!(
            first.from_status, None,
            "booking {booking}: a trail that does not start at creation: {steps:?}"
        );
    }
    for pair in steps.windows(2) {
        assert_follows(&pair[0], &pair[1]);
    }
    steps
        .iter()
        .map(|s| {
            format!(
                "{}→{}",
                s.from_status.as_deref().unwrap_or("∅"),
                s.to_status
            )
        })
        .collect()
}

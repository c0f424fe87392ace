//! The audit trail as a feed: what a stream that (re)connects has missed. Live events reach the
//! nodes through PostgreSQL's `NOTIFY` (migration `event_notify`), with the same payload as
//! [`FeedEvent`]; `streams` merges the two.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use super::models::BookingEvent;
use super::schema::{booking_events, bookings};
use crate::domain::ids::{BookingId, DriverId, RiderId};

/// The channel every committed audit event is announced on.
pub const CHANNEL: &str = "ridelock_events";

/// An audit event with the booking's rider: what a stream sends. A `NOTIFY` payload is an array
/// of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEvent {
    #[serde(flatten)]
    pub event: BookingEvent,
    pub rider_id: i64,
}

/// Whose events a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One booking's.
    Booking(BookingId),
    /// Every booking of a rider.
    Rider(RiderId),
    /// Every event that names the driver (offered, accepted, taken back, ended).
    Driver(DriverId),
    /// All of them (ops).
    All,
}

impl Scope {
    pub fn covers(&self, feed: &FeedEvent) -> bool {
        match *self {
            Scope::Booking(id) => feed.event.booking_id == id.0,
            Scope::Rider(rider) => feed.rider_id == rider.0,
            Scope::Driver(driver) => feed.event.driver_id == Some(driver.0),
            Scope::All => true,
        }
    }
}

/// The scope's events with an id above `after`, oldest first, at most `limit`.
pub async fn after(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<FeedEvent>> {
    let query = scoped(scope)
        .filter(booking_events::id.gt(after))
        .order(booking_events::id.asc())
        .limit(limit);
    load(conn, query).await
}

/// The scope's events up to `up_to` written at `from` or later, oldest first, at most `limit`:
/// those a stream that reached `up_to` may yet lack, had they committed after it.
pub async fn overlap(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    up_to: i64,
    from: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<FeedEvent>> {
    let query = scoped(scope)
        .filter(booking_events::id.le(up_to))
        .filter(booking_events::created_at.ge(from))
        .order(booking_events::id.asc())
        .limit(limit);
    load(conn, query).await
}

type Scoped = diesel::dsl::IntoBoxed<
    'static,
    diesel::dsl::Select<
        diesel::dsl::InnerJoin<booking_events::table, bookings::table>,
        (
            diesel::dsl::AsSelect<BookingEvent, diesel::pg::Pg>,
            bookings::rider_id,
        ),
    >,
    diesel::pg::Pg,
>;

/// Events with their rider, of the scope.
fn scoped(scope: Scope) -> Scoped {
    let query = booking_events::table
        .inner_join(bookings::table)
        .select((BookingEvent::as_select(), bookings::rider_id))
        .into_boxed();
    match scope {
        Scope::Booking(id) => query.filter(booking_events::booking_id.eq(id.0)),
        Scope::Rider(rider) => query.filter(bookings::rider_id.eq(rider.0)),
        Scope::Driver(driver) => query.filter(booking_events::driver_id.eq(driver.0)),
        Scope::All => query,
    }
}

async fn load(conn: &mut AsyncPgConnection, query: Scoped) -> QueryResult<Vec<FeedEvent>> {
    let rows: Vec<(BookingEvent, i64)> = query.load(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(event, rider_id)| FeedEvent { event, rider_id })
        .collect())
}

/// When the event `id` was written, if it exists.
pub async fn written_at(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> QueryResult<Option<DateTime<Utc>>> {
    booking_events::table
        .find(id)
        .select(booking_events::created_at)
        .first(conn)
        .await
        .optional()
}

/// The newest event's id (0 before the first): where a stream that asks for no replay starts.
pub async fn latest(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    let newest: Option<i64> = booking_events::table
        .select(diesel::dsl::max(booking_events::id))
        .first(conn)
        .await?;
    Ok(newest.unwrap_or(0))
}

//! Booking rows and their audit trail. Every change after creation is an `UPDATE … WHERE id = $1
//! AND fencing_token = $2 AND status = $from`, written with its `booking_events` row atomically:
//! zero rows updated means the caller's token is stale, and nothing is written.
//!
//! The writes of the lifecycle are each one statement (data-modifying CTEs), so each costs one
//! round trip and one commit; profiling showed the server's and PostgreSQL's time going to round
//! trips and per-statement overhead, not to the work itself (docs/benchmarks-history.md). They are
//! raw SQL because diesel's DSL has no data-modifying CTEs; their rows are read back through the
//! same `QueryableByName` models, and the integration suite exercises every branch.

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Nullable, Numeric, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::models::{fare_to_decimal, Booking, BookingDetail, BookingEvent, Driver};
use super::pool::is_unique_violation;
use super::prepared::prepared;
use super::schema::{booking_events, bookings};
use crate::domain::booking::BookingStatus;
use crate::domain::ids::{BookingId, DriverId, RiderId};
use crate::domain::values::{Fare, GeoPoint};

/// A validated booking request.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub rider_id: RiderId,
    pub pickup: GeoPoint,
    pub dropoff: GeoPoint,
    pub estimated_fare: Fare,
    pub vehicle_type: Option<String>,
}

/// Who wrote a change, and for whom, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub node_id: &'a str,
    pub request_id: &'a str,
    pub fencing_token: i64,
    /// The caller's token subject (`rider:12`, `ops:alice`), or `system:seed`; `None` only for a
    /// call forwarded by a node of an earlier build.
    pub actor: Option<&'a str>,
}

/// Why an assignment attempt wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    #[error("driver is no longer available")]
    DriverTaken,
    #[error("fencing token is stale")]
    Fenced,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// Which side of a booking a listing is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UserRef {
    Rider(RiderId),
    Driver(DriverId),
}

/// The fencing token a booking is inserted with. The creating node's actor owns the booking
/// under it without a bump (the booking registry's `adopt`); any later
/// activation, on any node, bumps it.
pub(crate) const CREATED_TOKEN: i64 = 1;

/// The booking and its creation event in one statement (one round trip, one commit), unless the
/// rider already has its share of active bookings (migration `000009` says how that is atomic).
const CREATE_SQL: &str = "\
SELECT * FROM create_booking_within_limit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Inserts a pending booking and its creation event, if the rider has fewer than `max_active`
/// active bookings (`None`: it has that many, and nothing was written). The rider must exist
/// (foreign key).
pub async fn create(
    conn: &mut AsyncPgConnection,
    new: &NewBooking,
    max_active: u32,
    audit: Audit<'_>,
) -> QueryResult<Option<Booking>> {
    prepared(
        diesel::sql_query(CREATE_SQL)
            .bind::<BigInt, _>(new.rider_id.0)
            .bind::<BigInt, _>(i64::from(max_active))
            .bind::<Double, _>(new.pickup.lat)
            .bind::<Double, _>(new.pickup.lng)
            .bind::<Double, _>(new.dropoff.lat)
            .bind::<Double, _>(new.dropoff.lng)
            .bind::<Numeric, _>(fare_to_decimal(new.estimated_fare))
            .bind::<Nullable<Text>, _>(new.vehicle_type.as_deref())
            .bind::<Text, _>(audit.node_id)
            .bind::<BigInt, _>(audit.fencing_token)
            .bind::<Text, _>(audit.request_id)
            .bind::<Nullable<Text>, _>(audit.actor),
    )
    .get_result(conn)
    .await
    .optional()
}

pub async fn find(conn: &mut AsyncPgConnection, id: BookingId) -> QueryResult<Option<Booking>> {
    bookings::table
        .find(id.0)
        .select(Booking::as_select())
        .first(conn)
        .await
        .optional()
}

pub(crate) async fn find_detail(
    conn: &mut AsyncPgConnection,
    id: BookingId,
) -> QueryResult<Option<BookingDetail>> {
    use super::schema::{drivers, riders};
    let row = bookings::table
        .find(id.0)
        .inner_join(riders::table)
        .left_join(drivers::table.on(bookings::driver_id.eq(drivers::id.nullable())))
        .select((
            Booking::as_select(),
            riders::name,
            riders::phone,
            drivers::name.nullable(),
            drivers::phone.nullable(),
        ))
        .first::<(Booking, String, String, Option<String>, Option<String>)>(conn)
        .await
        .optional()?;
    Ok(row.map(
        |(booking, rider_name, rider_phone, driver_name, driver_phone)| BookingDetail {
            booking,
            rider_name,
            rider_phone,
            driver_name,
            driver_phone,
        },
    ))
}

/// The claim of the drivers of the bookings a statement's CTE `b` just assigned: CTE `c` of
/// [`ASSIGN_SQL`] and of the group-commit writer's claim statement.
macro_rules! claim_assigned_drivers {
    () => {
        "
    UPDATE drivers SET status = 'busy', current_booking_id = b.id, updated_at = now()
    FROM b WHERE drivers.id = b.driver_id
    RETURNING drivers.*"
    };
}
pub(crate) use claim_assigned_drivers;

/// The claimed driver's columns as [`AssignRow`] reads them (`d_*`), from CTE `c`.
macro_rules! assigned_driver_columns {
    () => {
        "c.id AS d_id, c.name AS d_name, c.phone AS d_phone, c.email AS d_email,
       c.lat AS d_lat, c.lng AS d_lng, c.status AS d_status, c.vehicle_type AS d_vehicle_type,
       c.rating AS d_rating, c.current_booking_id AS d_current_booking_id,
       c.created_at AS d_created_at, c.updated_at AS d_updated_at"
    };
}
pub(crate) use assigned_driver_columns;

/// Picks the first free candidate, assigns the booking to it, claims it and writes the event, in
/// one statement: one round trip and one commit, no explicit transaction. `$3` is the candidates
/// in order of preference. The pick locks the driver row, waiting for one another transaction
/// holds (a row is also locked for a moment by a location update or a foreign-key check while
/// the driver stays free, so the search that decides "no drivers available" must not skip it),
/// and checks it is free on its latest version; the booking is updated only if still pending
/// under the caller's token, and the driver is claimed only for the booking so updated, so a
/// fenced booking claims nobody. The claimed driver comes back with the booking (`d_*`
/// columns). No row back: no candidate was free, or the booking is fenced. (Claims that skip
/// locked rows go through the group-commit writer's `CLAIMS_SQL`.)
const ASSIGN_SQL: &str = concat!(
    "WITH pick AS (
    SELECT id FROM drivers
    WHERE id = ANY($3) AND status = 'online' AND current_booking_id IS NULL
      AND ($4::text IS NULL OR vehicle_type = $4)
      AND EXISTS (SELECT 1 FROM bookings WHERE id = $1 AND fencing_token = $2 AND status = 'pending')
    ORDER BY array_position($3, id)
    LIMIT 1
    FOR UPDATE
), b AS (
    UPDATE bookings SET status = 'assigned', driver_id = pick.id, assigned_at = $5, updated_at = $5
    FROM pick
    WHERE bookings.id = $1 AND bookings.fencing_token = $2 AND bookings.status = 'pending'
    RETURNING bookings.*
), c AS (",
    claim_assigned_drivers!(),
    "), e AS (
    INSERT INTO booking_events
        (booking_id, from_status, to_status, driver_id, node_id, fencing_token, request_id, actor)
    SELECT id, 'pending', status, driver_id, $6, $2, $7, $8 FROM b
)
SELECT b.*, ",
    assigned_driver_columns!(),
    "
FROM b JOIN c ON true"
);

/// The assigned booking and its claimed driver, as [`ASSIGN_SQL`] returns them.
#[derive(QueryableByName)]
pub(crate) struct AssignRow {
    #[diesel(embed)]
    booking: Booking,
    #[diesel(sql_type = BigInt)]
    d_id: i64,
    #[diesel(sql_type = Text)]
    d_name: String,
    #[diesel(sql_type = Text)]
    d_phone: String,
    #[diesel(sql_type = Nullable<Text>)]
    d_email: Option<String>,
    #[diesel(sql_type = Nullable<Double>)]
    d_lat: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    d_lng: Option<f64>,
    #[diesel(sql_type = Text)]
    d_status: String,
    #[diesel(sql_type = Text)]
    d_vehicle_type: String,
    #[diesel(sql_type = Numeric)]
    d_rating: bigdecimal::BigDecimal,
    #[diesel(sql_type = Nullable<BigInt>)]
    d_current_booking_id: Option<i64>,
    #[diesel(sql_type = Timestamptz)]
    d_created_at: chrono::DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    d_updated_at: chrono::DateTime<Utc>,
}

impl AssignRow {
    pub fn split(self) -> (Booking, Driver) {
        let driver = Driver {
            id: self.d_id,
            name: self.d_name,
            phone: self.d_phone,
            email: self.d_email,
            lat: self.d_lat,
            lng: self.d_lng,
            status: self.d_status,
            vehicle_type: self.d_vehicle_type,
            rating: self.d_rating,
            current_booking_id: self.d_current_booking_id,
            created_at: self.d_created_at,
            updated_at: self.d_updated_at,
        };
        (self.booking, driver)
    }
}

/// Claims the first free driver among `candidates` (in their order) and assigns the pending
/// `booking` to it, atomically: a driver is taken only if it is online and free, the booking only
/// if it is still pending under `audit.fencing_token`, and the partial unique index refuses a
/// second active booking for the driver in any case. `Ok(None)`: no candidate could be claimed.
/// One statement; inside a caller's transaction (an idempotent request's) it commits with it.
pub async fn assign(
    conn: &mut AsyncPgConnection,
    booking: &Booking,
    candidates: &[DriverId],
    audit: Audit<'_>,
) -> Result<Option<(Booking, Driver)>, AssignError> {
    if candidates.is_empty() {
        return Ok(None);
    }
    let ids: Vec<i64> = candidates.iter().map(|d| d.0).collect();
    let row: Option<AssignRow> = prepared(
        diesel::sql_query(ASSIGN_SQL)
            .bind::<BigInt, _>(booking.id)
            .bind::<BigInt, _>(audit.fencing_token)
            .bind::<Array<BigInt>, _>(&ids)
            .bind::<Nullable<Text>, _>(booking.vehicle_type.as_deref())
            .bind::<Timestamptz, _>(Utc::now())
            .bind::<Text, _>(audit.node_id)
            .bind::<Text, _>(audit.request_id)
            .bind::<Nullable<Text>, _>(audit.actor),
    )
    .get_result(conn)
    .await
    .optional()
    .map_err(
        |e| match is_unique_violation(&e, "bookings_one_active_per_driver") {
            true => {
                // The pick found the driver free while another booking holds it: the rows
                // disagree, which no writer of ours should ever cause. The index refused it (the
                // statement wrote nothing); say so where someone will look (the suites fail on it).
                log::error!(
                    "driver claim refused by bookings_one_active_per_driver \
                 booking={} node={} req={}: {e}",
                    booking.id,
                    audit.node_id,
                    audit.request_id
                );
                AssignError::DriverTaken
            }
            false => AssignError::Db(e),
        },
    )?;
    if let Some(row) = row {
        return Ok(Some(row.split()));
    }
    // Either nobody was free or the booking is fenced: tell them apart with a fresh read (a
    // change committed while the statement ran is not in its snapshot).
    let current = find(conn, BookingId(booking.id)).await?;
    let fenced = current
        .is_none_or(|b| b.fencing_token != audit.fencing_token || b.status != booking.status);
    match fenced {
        true => Err(AssignError::Fenced),
        false => Ok(None),
    }
}

/// The driver a transition handed back, as the geo index needs it.
#[derive(Debug, Clone, Copy)]
pub struct ReleasedDriver {
    pub id: DriverId,
    pub location: Option<GeoPoint>,
}

/// An assignment nobody accepted in time, as the offer sweep finds it.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct StaleOffer {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub driver_id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub assigned_at: chrono::DateTime<Utc>,
    /// Offers of this booking that expired before this one.
    #[diesel(sql_type = BigInt)]
    pub expired_before: i64,
}

/// Bookings assigned at least `timeout_ms` ago by PostgreSQL's clock (one clock for every
/// node's sweep) and still not accepted, oldest first (from the partial index of migration
/// `000010`). `assigned_at` is the assigning node's clock: nodes are assumed NTP-synchronised.
pub(crate) async fn stale_offers(
    conn: &mut AsyncPgConnection,
    timeout_ms: i64,
    limit: i64,
) -> QueryResult<Vec<StaleOffer>> {
    prepared(
        diesel::sql_query(
            "SELECT b.id, b.driver_id, b.assigned_at,
                (SELECT count(*) FROM booking_events e
                 WHERE e.booking_id = b.id AND e.from_status = 'assigned'
                   AND e.to_status = 'pending') AS expired_before
             FROM bookings b
             WHERE b.status = 'assigned'
               AND b.assigned_at <= now() - make_interval(secs => $1 / 1000.0)
             ORDER BY b.assigned_at
             LIMIT $2",
        )
        .bind::<BigInt, _>(timeout_ms)
        .bind::<BigInt, _>(limit),
    )
    .load(conn)
    .await
}

/// Why a booking is cancelled when its offers keep expiring.
pub(crate) const NO_DRIVER_ACCEPTED: &str = "no driver accepted the ride in time";

/// A user's bookings, newest first; `before` is an exclusive booking-id cursor.
pub(crate) async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user: UserRef,
    status: Option<BookingStatus>,
    before: Option<BookingId>,
    limit: i64,
) -> QueryResult<Vec<Booking>> {
    let mut query = bookings::table.select(Booking::as_select()).into_boxed();
    query = match user {
        UserRef::Rider(rider) => query.filter(bookings::rider_id.eq(rider.0)),
        UserRef::Driver(driver) => query.filter(bookings::driver_id.eq(driver.0)),
    };
    if let Some(status) = status {
        query = query.filter(bookings::status.eq(status.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(bookings::id.lt(before.0));
    }
    query
        .order(bookings::id.desc())
        .limit(limit)
        .load(conn)
        .await
}

pub async fn events(conn: &mut AsyncPgConnection, id: BookingId) -> QueryResult<Vec<BookingEvent>> {
    booking_events::table
        .filter(booking_events::booking_id.eq(id.0))
        .order(booking_events::id.asc())
        .select(BookingEvent::as_select())
        .load(conn)
        .await
}

/// The changes `request_id` made to the booking, as (status moved to, node that wrote it): how a
/// request whose first answer was lost finds out that it did take effect, and where.
pub(crate) async fn changes_by(
    conn: &mut AsyncPgConnection,
    id: BookingId,
    request_id: &str,
) -> QueryResult<Vec<(BookingStatus, String)>> {
    booking_events::table
        .filter(booking_events::booking_id.eq(id.0))
        .filter(booking_events::request_id.eq(request_id))
        .select((booking_events::to_status, booking_events::node_id))
        .load(conn)
        .await
}

/// A booking's current fencing token, if it exists.
pub async fn fencing_token(
    conn: &mut AsyncPgConnection,
    id: BookingId,
) -> QueryResult<Option<i64>> {
    bookings::table
        .find(id.0)
        .select(bookings::fencing_token)
        .first(conn)
        .await
        .optional()
}

/// Current fencing tokens of the given bookings, for lock statistics.
pub(crate) async fn fencing_tokens(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, i64>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(i64, i64)> = bookings::table
        .filter(bookings::id.eq_any(ids))
        .select((bookings::id, bookings::fencing_token))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

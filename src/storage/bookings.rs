//! Booking rows and their audit trail. Every change after creation is an `UPDATE … WHERE id = $1 AND
//! fencing_token = $2 AND status = $from`, written with its `booking_events` row in one transaction:
//! zero rows updated means the caller's token is stale, and nothing is written.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::dsl::array_position;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::models::{fare_to_decimal, Booking, BookingDetail, BookingEvent, Driver};
use super::pool::is_unique_violation;
use super::prepared::prepared;
use super::schema::{booking_events, bookings};
use crate::domain::booking::{BookingStatus, Transition};
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

/// Who wrote a change, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub node_id: &'a str,
    pub request_id: &'a str,
    pub fencing_token: i64,
}

/// Details a transition carries besides its target state.
#[derive(Debug, Clone, Default)]
pub struct ChangeDetails {
    pub actual_fare: Option<Fare>,
    pub cancellation_reason: Option<String>,
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
pub enum UserRef {
    Rider(RiderId),
    Driver(DriverId),
}

#[derive(Insertable)]
#[diesel(table_name = bookings)]
struct BookingRow {
    rider_id: i64,
    pickup_lat: f64,
    pickup_lng: f64,
    dropoff_lat: f64,
    dropoff_lng: f64,
    estimated_fare: BigDecimal,
    vehicle_type: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = booking_events)]
struct EventRow<'a> {
    booking_id: i64,
    from_status: Option<&'a str>,
    to_status: &'a str,
    driver_id: Option<i64>,
    node_id: &'a str,
    fencing_token: i64,
    request_id: &'a str,
}

/// `None` fields are left unchanged.
#[derive(AsChangeset)]
#[diesel(table_name = bookings)]
struct BookingChange {
    status: &'static str,
    driver_id: Option<i64>,
    actual_fare: Option<BigDecimal>,
    cancellation_reason: Option<String>,
    assigned_at: Option<DateTime<Utc>>,
    accepted_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl BookingChange {
    fn to(status: BookingStatus) -> Self {
        let now = Utc::now();
        let at = |s: BookingStatus| (s == status).then_some(now);
        Self {
            status: status.as_str(),
            driver_id: None,
            actual_fare: None,
            cancellation_reason: None,
            assigned_at: at(BookingStatus::Assigned),
            accepted_at: at(BookingStatus::Accepted),
            cancelled_at: at(BookingStatus::Cancelled),
            completed_at: at(BookingStatus::Completed),
            updated_at: now,
        }
    }
}

async fn append_event(
    conn: &mut AsyncPgConnection,
    booking: &Booking,
    from: Option<BookingStatus>,
    audit: Audit<'_>,
) -> QueryResult<()> {
    prepared(diesel::insert_into(booking_events::table).values(EventRow {
        booking_id: booking.id,
        from_status: from.map(BookingStatus::as_str),
        to_status: &booking.status,
        driver_id: booking.driver_id,
        node_id: audit.node_id,
        fencing_token: audit.fencing_token,
        request_id: audit.request_id,
    }))
    .execute(conn)
    .await
    .map(drop)
}

/// Inserts a pending booking and its creation event. The rider must exist (foreign key).
pub async fn create(
    conn: &mut AsyncPgConnection,
    new: &NewBooking,
    audit: Audit<'_>,
) -> QueryResult<Booking> {
    let row = BookingRow {
        rider_id: new.rider_id.0,
        pickup_lat: new.pickup.lat,
        pickup_lng: new.pickup.lng,
        dropoff_lat: new.dropoff.lat,
        dropoff_lng: new.dropoff.lng,
        estimated_fare: fare_to_decimal(new.estimated_fare),
        vehicle_type: new.vehicle_type.clone(),
    };
    conn.transaction(async |conn| {
        let booking = prepared(
            diesel::insert_into(bookings::table)
                .values(&row)
                .returning(Booking::as_returning()),
        )
        .get_result(conn)
        .await?;
        append_event(conn, &booking, None, audit).await?;
        Ok(booking)
    })
    .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: BookingId) -> QueryResult<Option<Booking>> {
    bookings::table
        .find(id.0)
        .select(Booking::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_detail(
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

/// Takes ownership of a booking for a new actor activation: bumps its fencing token and returns
/// the row with the new token, `(row, true)`. Every later write of that actor is conditional on
/// this token. A terminal booking is returned untouched, `(row, false)`: it can never change.
pub async fn activate(
    conn: &mut AsyncPgConnection,
    id: BookingId,
) -> QueryResult<Option<(Booking, bool)>> {
    let bumped = prepared(
        diesel::update(bookings::table.find(id.0).filter(bookings::status.ne_all([
            BookingStatus::Completed.as_str(),
            BookingStatus::Cancelled.as_str(),
        ])))
        .set(bookings::fencing_token.eq(bookings::fencing_token + 1))
        .returning(Booking::as_returning()),
    )
    .get_result(conn)
    .await
    .optional()?;
    match bumped {
        Some(row) => Ok(Some((row, true))),
        None => Ok(find(conn, id).await?.map(|row| (row, false))),
    }
}

/// Claims the first free driver among `candidates` (in their order) and assigns the pending
/// `booking` to it, atomically: a driver is taken only if it is online and free, the booking only
/// if it is still pending under `audit.fencing_token`, and the partial unique index refuses a
/// second active booking for the driver in any case. `Ok(None)`: no candidate could be claimed.
///
/// The claim is one statement that skips driver rows another assignment has locked
/// (`FOR UPDATE SKIP LOCKED`): concurrent assignments near the same spot each take the next free
/// driver instead of queueing behind the nearest one only to find it taken.
pub async fn assign(
    conn: &mut AsyncPgConnection,
    booking: &Booking,
    candidates: &[DriverId],
    audit: Audit<'_>,
) -> Result<Option<(Booking, Driver)>, AssignError> {
    use super::schema::drivers;
    if candidates.is_empty() {
        return Ok(None);
    }
    let ids: Vec<i64> = candidates.iter().map(|d| d.0).collect();
    // The candidate search needs its own name for the table it claims from.
    let free = diesel::alias!(drivers as free_driver);
    let first_free = free
        .filter(free.field(drivers::id).eq_any(ids.clone()))
        .filter(free.field(drivers::status).eq("online"))
        .filter(free.field(drivers::current_booking_id).is_null())
        .filter(
            free.field(drivers::vehicle_type)
                .nullable()
                .eq(booking.vehicle_type.as_deref())
                .or(booking.vehicle_type.is_none().into_sql::<Bool>()),
        )
        .order(array_position::<Array<BigInt>, BigInt, _, _>(
            ids,
            free.field(drivers::id),
        ))
        .select(free.field(drivers::id))
        .for_update()
        .skip_locked()
        .single_value();
    let result = conn
        .transaction(async |conn| {
            let Some(claimed) = prepared(
                diesel::update(drivers::table)
                    .filter(drivers::id.nullable().eq(first_free))
                    .set((
                        drivers::status.eq("busy"),
                        drivers::current_booking_id.eq(booking.id),
                        drivers::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(Driver::as_returning()),
            )
            .get_result(conn)
            .await
            .optional()?
            else {
                return Err(AssignError::DriverTaken);
            };
            let change = BookingChange {
                driver_id: Some(claimed.id),
                ..BookingChange::to(BookingStatus::Assigned)
            };
            let assigned = prepared(
                diesel::update(fenced(booking, audit.fencing_token))
                    .set(change)
                    .returning(Booking::as_returning()),
            )
            .get_result(conn)
            .await
            .optional()
            .map_err(
                |e| match is_unique_violation(&e, "bookings_one_active_per_driver") {
                    true => AssignError::DriverTaken,
                    false => AssignError::Db(e),
                },
            )?
            .ok_or(AssignError::Fenced)?;
            append_event(conn, &assigned, Some(booking.status()?), audit).await?;
            Ok((assigned, claimed))
        })
        .await;
    match result {
        Ok(done) => Ok(Some(done)),
        Err(AssignError::DriverTaken) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Applies a legal `transition` (from `apply`). Returns the new row and, when the transition
/// releases the driver, the driver back online; `Ok(None)` means the token was stale.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    booking: &Booking,
    transition: Transition,
    details: ChangeDetails,
    audit: Audit<'_>,
) -> QueryResult<Option<(Booking, Option<Driver>)>> {
    use super::schema::drivers;
    let change = BookingChange {
        actual_fare: details.actual_fare.map(fare_to_decimal),
        cancellation_reason: details.cancellation_reason,
        ..BookingChange::to(transition.to)
    };
    let result = conn
        .transaction(async |conn| {
            let Some(updated) = prepared(
                diesel::update(fenced(booking, audit.fencing_token))
                    .set(change)
                    .returning(Booking::as_returning()),
            )
            .get_result(conn)
            .await
            .optional()?
            else {
                // Roll back nothing-written transaction; the caller steps down.
                return Err(diesel::result::Error::RollbackTransaction);
            };
            let released = match transition.release_driver {
                Some(driver) => prepared(
                    diesel::update(
                        drivers::table
                            .find(driver.0)
                            .filter(drivers::current_booking_id.eq(booking.id)),
                    )
                    .set((
                        drivers::status.eq("online"),
                        drivers::current_booking_id.eq(None::<i64>),
                        drivers::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(Driver::as_returning()),
                )
                .get_result(conn)
                .await
                .optional()?,
                None => None,
            };
            append_event(conn, &updated, Some(transition.from), audit).await?;
            Ok((updated, released))
        })
        .await;
    match result {
        Ok(done) => Ok(Some(done)),
        Err(diesel::result::Error::RollbackTransaction) => Ok(None),
        Err(e) => Err(e),
    }
}

type FencedRow = diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Find<bookings::table, i64>,
        diesel::dsl::Eq<bookings::fencing_token, i64>,
    >,
    diesel::dsl::Eq<bookings::status, String>,
>;

/// The booking row as this writer last saw it: same id, same status, same token.
fn fenced(booking: &Booking, token: i64) -> FencedRow {
    bookings::table
        .find(booking.id)
        .filter(bookings::fencing_token.eq(token))
        .filter(bookings::status.eq(booking.status.clone()))
}

/// A user's bookings, newest first; `before` is an exclusive booking-id cursor.
pub async fn list_for_user(
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

/// Current fencing tokens of the given bookings, for lock statistics.
pub async fn fencing_tokens(
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

//! Driver rows. A driver is claimed for a booking only inside the booking's assignment
//! transaction (see `bookings::assign`); here are the driver's own updates and the searches.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::models::Driver;
use super::prepared::prepared;
use crate::domain::ids::DriverId;
use crate::domain::values::{GeoPoint, EARTH_RADIUS_KM};

/// A validated new driver; drivers start offline and without a location.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = super::schema::drivers)]
pub(crate) struct NewDriver {
    pub name: String,
    pub phone: String,
    pub email: Option<String>,
    pub vehicle_type: String,
}

/// The statuses a driver may set itself; `busy` belongs to the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Online,
    Offline,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// Why a status change was refused.
#[derive(Debug)]
pub(crate) enum StatusRefusal {
    /// The driver holds a booking; its status is the system's until the booking ends.
    Busy(Box<Driver>),
    /// A driver without a location cannot be found by riders, so it cannot go online.
    NoLocation(Box<Driver>),
}

pub async fn insert(conn: &mut AsyncPgConnection, driver: &NewDriver) -> QueryResult<Driver> {
    use super::schema::drivers::dsl::*;
    prepared(
        diesel::insert_into(drivers)
            .values(driver)
            .returning(Driver::as_returning()),
    )
    .get_result(conn)
    .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> QueryResult<Option<Driver>> {
    use super::schema::drivers::dsl::*;
    drivers
        .find(driver_id.0)
        .select(Driver::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Driver>> {
    use super::schema::drivers::dsl::*;
    drivers
        .order(id.asc())
        .select(Driver::as_select())
        .load(conn)
        .await
}

/// Drivers by id, in no particular order.
pub(crate) async fn find_many(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> QueryResult<Vec<Driver>> {
    use super::schema::drivers::dsl::*;
    drivers
        .filter(id.eq_any(ids))
        .select(Driver::as_select())
        .load(conn)
        .await
}

/// Every online driver, for rebuilding the geo index.
pub async fn online(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Driver>> {
    use super::schema::drivers::dsl::*;
    drivers
        .filter(status.eq("online"))
        .select(Driver::as_select())
        .load(conn)
        .await
}

pub(crate) async fn update_location(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    at: GeoPoint,
) -> QueryResult<Option<Driver>> {
    use super::schema::drivers::dsl::*;
    prepared(
        diesel::update(drivers.find(driver_id.0))
            .set((
                lat.eq(at.lat),
                lng.eq(at.lng),
                updated_at.eq(diesel::dsl::now),
            ))
            .returning(Driver::as_returning()),
    )
    .get_result(conn)
    .await
    .optional()
}

/// Sets `online`/`offline` unless the driver is busy (or, to go online, has no location).
/// `Ok(None)`: no such driver.
pub(crate) async fn set_availability(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    to: Availability,
) -> QueryResult<Option<Result<Driver, StatusRefusal>>> {
    use super::schema::drivers::dsl::*;
    let target = drivers
        .find(driver_id.0)
        .filter(current_booking_id.is_null())
        .filter(
            lat.is_not_null()
                .or((to == Availability::Offline).into_sql::<Bool>()),
        );
    let updated = prepared(
        diesel::update(target)
            .set((status.eq(to.as_str()), updated_at.eq(diesel::dsl::now)))
            .returning(Driver::as_returning()),
    )
    .get_result(conn)
    .await
    .optional()?;
    if let Some(driver) = updated {
        return Ok(Some(Ok(driver)));
    }
    Ok(find(conn, driver_id).await?.map(|driver| {
        Err(if driver.current_booking_id.is_some() {
            StatusRefusal::Busy(Box::new(driver))
        } else {
            StatusRefusal::NoLocation(Box::new(driver))
        })
    }))
}

#[derive(QueryableByName)]
struct NearbyRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Double)]
    distance_km: f64,
}

/// Online drivers within `radius_km` of `at`, nearest first, computed in SQL. Used when the Redis
/// geo index cannot answer; the search box ([`GeoPoint::search_box`]) on the partial location
/// index narrows the scan, and holds the whole circle near a pole and across the antimeridian.
pub(crate) async fn nearby_sql(
    conn: &mut AsyncPgConnection,
    at: GeoPoint,
    radius_km: f64,
    vehicle: Option<&str>,
    limit: usize,
) -> QueryResult<Vec<(DriverId, f64)>> {
    let area = at.search_box(radius_km);
    let [east, west] = area.lng;
    let rows: Vec<NearbyRow> = prepared(
        diesel::sql_query(
            "SELECT id, distance_km FROM (
             SELECT id, 2 * $10 * asin(least(1.0, sqrt(
                 power(sin(radians(lat - $1) / 2), 2) +
                 cos(radians($1)) * cos(radians(lat)) * power(sin(radians(lng - $2) / 2), 2)
             ))) AS distance_km
             FROM drivers
             WHERE status = 'online'
               AND lat BETWEEN $3 AND $4
               AND (lng BETWEEN $5 AND $6 OR lng BETWEEN $7 AND $8)
               AND ($11::text IS NULL OR vehicle_type = $11)
         ) d
         WHERE distance_km <= $9
         ORDER BY distance_km, id
         LIMIT $12",
        )
        .bind::<Double, _>(at.lat)
        .bind::<Double, _>(at.lng)
        .bind::<Double, _>(area.lat.0)
        .bind::<Double, _>(area.lat.1)
        .bind::<Double, _>(east.0)
        .bind::<Double, _>(east.1)
        .bind::<Double, _>(west.0)
        .bind::<Double, _>(west.1)
        .bind::<Double, _>(radius_km)
        .bind::<Double, _>(EARTH_RADIUS_KM)
        .bind::<Nullable<Text>, _>(vehicle)
        .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX)),
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (DriverId(r.id), r.distance_km))
        .collect())
}

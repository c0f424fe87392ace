//! Rows as diesel reads them, serialized in the wire shape of API.md (fares as JSON numbers,
//! timestamps RFC 3339 UTC). Storage rows and API views coincide on purpose: the contract *is* the
//! table, so a second set of DTOs would only be a copy.

use bigdecimal::{BigDecimal, ToPrimitive};
use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use super::schema::{booking_events, bookings, drivers, riders};
use crate::domain::booking::{BookingState, BookingStatus};
use crate::domain::ids::{DriverId, RiderId};
use crate::domain::values::{Fare, GeoPoint};

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = riders, check_for_backend(diesel::pg::Pg))]
pub struct Rider {
    pub id: i64,
    pub name: String,
    pub phone: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = drivers, check_for_backend(diesel::pg::Pg))]
pub struct Driver {
    pub id: i64,
    pub name: String,
    pub phone: String,
    pub email: Option<String>,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub status: String,
    pub vehicle_type: String,
    #[serde(serialize_with = "decimal_number")]
    #[schema(value_type = f64)]
    pub rating: BigDecimal,
    pub current_booking_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Driver {
    pub fn location(&self) -> Option<GeoPoint> {
        Some(GeoPoint {
            lat: self.lat?,
            lng: self.lng?,
        })
    }
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Serialize, ToSchema)]
#[diesel(table_name = bookings, check_for_backend(diesel::pg::Pg))]
pub struct Booking {
    pub id: i64,
    pub rider_id: i64,
    pub driver_id: Option<i64>,
    pub pickup_lat: f64,
    pub pickup_lng: f64,
    pub dropoff_lat: f64,
    pub dropoff_lng: f64,
    #[serde(serialize_with = "decimal_number")]
    #[schema(value_type = f64)]
    pub estimated_fare: BigDecimal,
    #[serde(serialize_with = "optional_decimal_number")]
    #[schema(value_type = Option<f64>)]
    pub actual_fare: Option<BigDecimal>,
    pub vehicle_type: Option<String>,
    #[schema(value_type = String)]
    pub status: BookingStatus,
    pub cancellation_reason: Option<String>,
    pub fencing_token: i64,
    pub created_at: DateTime<Utc>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub updated_at: DateTime<Utc>,
}

impl Booking {
    /// The estimate, in whole cents (the column holds two decimals).
    pub fn estimated(&self) -> Fare {
        let cents = (&self.estimated_fare * BigDecimal::from(100)).to_i64();
        Fare::from_cents(cents.unwrap_or(Fare::MAX_CENTS))
    }

    pub fn state(&self) -> BookingState {
        BookingState {
            status: self.status,
            rider_id: RiderId(self.rider_id),
            driver_id: self.driver_id.map(DriverId),
        }
    }

    pub fn pickup(&self) -> GeoPoint {
        GeoPoint {
            lat: self.pickup_lat,
            lng: self.pickup_lng,
        }
    }
}

/// A booking with the names and phones of its parties, for `GET /api/bookings/:id`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct BookingDetail {
    #[serde(flatten)]
    pub booking: Booking,
    pub rider_name: String,
    pub rider_phone: String,
    pub driver_name: Option<String>,
    pub driver_phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ToSchema)]
#[diesel(table_name = booking_events, check_for_backend(diesel::pg::Pg))]
pub struct BookingEvent {
    pub id: i64,
    pub booking_id: i64,
    #[schema(value_type = Option<String>)]
    pub from_status: Option<BookingStatus>,
    #[schema(value_type = String)]
    pub to_status: BookingStatus,
    pub driver_id: Option<i64>,
    pub node_id: String,
    pub fencing_token: i64,
    pub request_id: String,
    pub created_at: DateTime<Utc>,
    /// Who asked for the change: a token subject (`rider:12`, `driver:7`, `ops:alice`), or
    /// `system:seed`; `null` on events written before this was recorded. Riders and drivers see
    /// an operator as `ops`, without the name.
    #[schema(examples("rider:12"))]
    pub actor: Option<String>,
}

/// The status column as the domain's [`BookingStatus`]. A status this build does not know (a newer
/// node's, during a rolling deploy) fails the read, never a guess.
impl FromSql<Text, Pg> for BookingStatus {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Ok(text.parse()?)
    }
}

impl Queryable<Text, Pg> for BookingStatus {
    type Row = Self;

    fn build(row: Self) -> deserialize::Result<Self> {
        Ok(row)
    }
}

pub(crate) fn fare_to_decimal(fare: Fare) -> BigDecimal {
    BigDecimal::new(fare.cents().into(), 2)
}

fn decimal_number<S: Serializer>(value: &BigDecimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(value.to_f64().unwrap_or(f64::NAN))
}

fn optional_decimal_number<S: Serializer>(
    value: &Option<BigDecimal>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => decimal_number(value, s),
        None => s.serialize_none(),
    }
}

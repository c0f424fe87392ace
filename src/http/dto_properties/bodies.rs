//! The request bodies: every body DTO, the fields it has, and how the edge judges a body of it.

use serde::de::DeserializeOwned;

use crate::domain::values::FieldError;
use crate::http::booking_actions::{AcceptBody, CancelBody, CompleteBody};
use crate::http::bookings::CreateBooking;
use crate::http::drivers::{CreateDriver, Location, StatusChange};
use crate::http::extract::parse;
use crate::http::riders::CreateRider;
use crate::storage::bookings::NewBooking;
use crate::storage::drivers::NewDriver;
use crate::storage::riders::NewRider;

/// What the edge made of a body.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Refused by `extract::parse`.
    Unparsed(FieldError),
    /// Parsed, then refused by the DTO's conversion into domain values.
    Invalid(FieldError),
    Accepted,
}

/// What a field holds, so generated bodies are mostly plausible and reach the conversion.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Id,
    Latitude,
    Longitude,
    Amount,
    Name,
    Phone,
    Email,
    VehicleType,
    Choice(&'static [&'static str]),
}

/// A request body type: the fields it has and how the edge judges a body of it.
pub(super) struct Dto {
    pub(super) name: &'static str,
    pub(super) fields: &'static [(&'static str, Kind)],
    pub(super) judge: fn(&[u8]) -> Verdict,
    /// A body the documentation calls valid, with every field present.
    pub(super) sample: &'static str,
}

impl Dto {
    pub(super) fn has(&self, field: &str) -> bool {
        self.fields.iter().any(|(name, _)| *name == field)
    }
}

fn parsed<T: DeserializeOwned>(body: &[u8]) -> Verdict {
    match parse::<T>(body) {
        Ok(_) => Verdict::Accepted,
        Err(e) => Verdict::Unparsed(e),
    }
}

fn converted<T: DeserializeOwned, D: TryFrom<T, Error = FieldError>>(body: &[u8]) -> Verdict {
    match parse::<T>(body).map(D::try_from) {
        Ok(Ok(_)) => Verdict::Accepted,
        Ok(Err(e)) => Verdict::Invalid(e),
        Err(e) => Verdict::Unparsed(e),
    }
}

/// Every body DTO. Those without a `TryFrom` are validated inside their handler, from fields
/// this module cannot read, so only their parsing is judged here.
pub(super) static DTOS: [Dto; 8] = [
    Dto {
        name: "CreateBooking",
        fields: &[
            ("rider_id", Kind::Id),
            ("pickup_lat", Kind::Latitude),
            ("pickup_lng", Kind::Longitude),
            ("dropoff_lat", Kind::Latitude),
            ("dropoff_lng", Kind::Longitude),
            ("estimated_fare", Kind::Amount),
            ("vehicle_type", Kind::VehicleType),
        ],
        judge: converted::<CreateBooking, NewBooking>,
        sample: r#"{"rider_id": 7, "pickup_lat": 40.7, "pickup_lng": -74.0, "dropoff_lat": 40.8, "dropoff_lng": -73.9, "estimated_fare": 15.5, "vehicle_type": "xl"}"#,
    },
    Dto {
        name: "CreateRider",
        fields: &[
            ("name", Kind::Name),
            ("phone", Kind::Phone),
            ("email", Kind::Email),
        ],
        judge: converted::<CreateRider, NewRider>,
        sample: r#"{"name": "Ann", "phone": "+1 (212) 555-0100", "email": "ann@example.com"}"#,
    },
    Dto {
        name: "CreateDriver",
        fields: &[
            ("name", Kind::Name),
            ("phone", Kind::Phone),
            ("email", Kind::Email),
            ("vehicle_type", Kind::VehicleType),
        ],
        judge: converted::<CreateDriver, NewDriver>,
        sample: r#"{"name": " Bo ", "phone": "212.555.0101", "email": null, "vehicle_type": "premium"}"#,
    },
    Dto {
        name: "Location",
        fields: &[("lat", Kind::Latitude), ("lng", Kind::Longitude)],
        judge: parsed::<Location>,
        sample: r#"{"lat": 90, "lng": -180.0}"#,
    },
    Dto {
        name: "StatusChange",
        fields: &[("status", Kind::Choice(&["online", "offline"]))],
        judge: parsed::<StatusChange>,
        sample: r#"{"status": "online"}"#,
    },
    Dto {
        name: "AcceptBody",
        fields: &[("driver_id", Kind::Id)],
        judge: parsed::<AcceptBody>,
        sample: r#"{"driver_id": 7.0}"#,
    },
    Dto {
        name: "CancelBody",
        fields: &[
            ("reason", Kind::Name),
            ("user_id", Kind::Id),
            ("user_type", Kind::Choice(&["rider", "driver"])),
        ],
        judge: parsed::<CancelBody>,
        sample: r#"{"reason": "late", "user_id": 3, "user_type": "rider"}"#,
    },
    Dto {
        name: "CompleteBody",
        fields: &[("driver_id", Kind::Id), ("actual_fare", Kind::Amount)],
        judge: parsed::<CompleteBody>,
        sample: r#"{"driver_id": 9, "actual_fare": 0.01}"#,
    },
];

pub(super) fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

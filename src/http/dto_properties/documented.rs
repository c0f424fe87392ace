//! 3. Documented bodies: every body the OpenAPI document calls valid is accepted as sent.

use proptest::prelude::*;
use proptest::sample::select;

use super::bodies::quoted;
use super::check;
use super::json::{coordinate, fare, id, layout, near, optional, refused, step};
use super::strings::{email, name, phone, vehicle_type};
use crate::domain::values::{self, Fare, GeoPoint};
use crate::http::booking_actions::{AcceptBody, CancelBody, CompleteBody};
use crate::http::bookings::CreateBooking;
use crate::http::drivers::{CreateDriver, Location, StatusChange};
use crate::http::extract::{self, parse};
use crate::http::riders::CreateRider;
use crate::storage::bookings::NewBooking;
use crate::storage::drivers::NewDriver;
use crate::storage::riders::NewRider;

#[test]
fn documented_bookings_are_accepted_as_sent() {
    let booking = (
        id(),
        (coordinate(90.0), coordinate(180.0)),
        (coordinate(90.0), coordinate(180.0)),
        fare(),
        optional(vehicle_type()),
    );
    let case = booking.prop_flat_map(|(id, pickup, dropoff, fare, vehicle)| {
        let body = layout(vec![
            ("rider_id", Some(id.1)),
            ("pickup_lat", Some(pickup.0 .1)),
            ("pickup_lng", Some(pickup.1 .1)),
            ("dropoff_lat", Some(dropoff.0 .1)),
            ("dropoff_lng", Some(dropoff.1 .1)),
            ("estimated_fare", Some(fare.1)),
            ("vehicle_type", vehicle.0),
        ]);
        let sent = (
            id.0,
            (pickup.0 .0, pickup.1 .0),
            (dropoff.0 .0, dropoff.1 .0),
            fare.0,
            vehicle.1,
        );
        (Just(sent), body)
    });
    check("CreateBooking", 2_000, case, |(sent, body)| {
        let (rider_id, pickup, dropoff, fare, vehicle_type) = sent;
        let new = parse::<CreateBooking>(body.as_bytes())
            .and_then(NewBooking::try_from)
            .map_err(|e| refused(&e))?;
        prop_assert_eq!(new.rider_id.0, rider_id);
        prop_assert!(near(new.pickup.lat, pickup.0) && near(new.pickup.lng, pickup.1));
        prop_assert!(near(new.dropoff.lat, dropoff.0) && near(new.dropoff.lng, dropoff.1));
        let cents =
            [fare, step(fare, -1), step(fare, 1)].map(|amount| Fare::from_amount(amount, "").ok());
        prop_assert!(
            cents.contains(&Some(new.estimated_fare)),
            "{fare} read as {}",
            new.estimated_fare
        );
        prop_assert_eq!(new.vehicle_type, vehicle_type);
        Ok(())
    });
}

#[test]
fn documented_riders_and_drivers_are_accepted_trimmed() {
    let person = (
        name(200),
        phone(),
        optional(email()),
        optional(vehicle_type()),
    );
    let case = person.prop_flat_map(|(name, phone, email, vehicle)| {
        let contact = vec![
            ("name", Some(quoted(&name))),
            ("phone", Some(quoted(&phone))),
            ("email", email.0),
        ];
        let mut driver = contact.clone();
        driver.push(("vehicle_type", vehicle.0));
        let sent = (name, phone, email.1, vehicle.1);
        (Just(sent), layout(contact), layout(driver))
    });
    check(
        "CreateRider/CreateDriver",
        2_000,
        case,
        |((name, phone, email, vehicle_type), rider, driver)| {
            let rider = parse::<CreateRider>(rider.as_bytes())
                .and_then(NewRider::try_from)
                .map_err(|e| refused(&e))?;
            prop_assert_eq!(rider.name.as_str(), name.trim());
            prop_assert_eq!(rider.phone.as_str(), phone.trim());
            prop_assert_eq!(&rider.email, &email);
            let driver = parse::<CreateDriver>(driver.as_bytes())
                .and_then(NewDriver::try_from)
                .map_err(|e| refused(&e))?;
            prop_assert_eq!(driver.name.as_str(), name.trim());
            prop_assert_eq!(driver.phone.as_str(), phone.trim());
            prop_assert_eq!(&driver.email, &email);
            let vehicle_type = vehicle_type.as_deref().unwrap_or("standard");
            prop_assert_eq!(driver.vehicle_type.as_str(), vehicle_type);
            Ok(())
        },
    );
}

/// The handlers of these bodies validate fields this module cannot read; what is checked is
/// that they parse, and that the validators the handler then runs accept the values sent.
#[test]
fn documented_location_status_and_action_bodies_are_accepted() {
    let reason = prop_oneof![
        1 => Just((None, None)),
        1 => Just((Some("null".to_owned()), None)),
        1 => select(&["", " ", "  \u{3000}"][..]).prop_map(|blank| (Some(quoted(blank)), None)),
        3 => name(500).prop_map(|text| (Some(quoted(&text)), Some(text))),
    ];
    let values = (
        (coordinate(90.0), coordinate(180.0)),
        select(&["online", "offline"][..]),
        id(),
        (reason, id(), select(&["rider", "driver"][..])),
        (id(), fare()),
    );
    let case = values.prop_flat_map(|(at, status, accept, cancel, complete)| {
        let (reason, user_id, user_type) = cancel;
        let bodies = (
            layout(vec![("lat", Some(at.0 .1)), ("lng", Some(at.1 .1))]),
            layout(vec![("status", Some(quoted(status)))]),
            layout(vec![("driver_id", Some(accept.1))]),
            layout(vec![
                ("reason", reason.0),
                ("user_id", Some(user_id.1)),
                ("user_type", Some(quoted(user_type))),
            ]),
            layout(vec![
                ("driver_id", Some(complete.0 .1)),
                ("actual_fare", Some(complete.1 .1)),
            ]),
        );
        let sent = (
            (at.0 .0, at.1 .0),
            accept.0,
            (reason.1, user_id.0),
            (complete.0 .0, complete.1 .0),
        );
        (Just(sent), bodies)
    });
    check("actions", 2_000, case, |(sent, bodies)| {
        let (at, accept_id, (reason, user_id), (complete_id, fare)) = sent;
        let (location, status, accept, cancel, complete) = bodies;
        parse::<Location>(location.as_bytes()).map_err(|e| refused(&e))?;
        GeoPoint::new(at.0, at.1, "lat", "lng")?;
        parse::<StatusChange>(status.as_bytes()).map_err(|e| refused(&e))?;
        parse::<AcceptBody>(accept.as_bytes()).map_err(|e| refused(&e))?;
        extract::body_id(accept_id, "driver_id")?;
        parse::<CancelBody>(cancel.as_bytes()).map_err(|e| refused(&e))?;
        extract::body_id(user_id, "user_id")?;
        if let Some(reason) = reason {
            values::text(&reason, "reason", 500)?;
        }
        parse::<CompleteBody>(complete.as_bytes()).map_err(|e| refused(&e))?;
        extract::body_id(complete_id, "driver_id")?;
        Fare::from_amount(fare, "actual_fare")?;
        Ok(())
    });
}

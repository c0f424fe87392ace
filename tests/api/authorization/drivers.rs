//! A driver acts only on itself and on the bookings assigned to it.

use reqwest::Method;
use serde_json::json;

use super::{assert_refused, refused, world};
use crate::support::fixtures::{booking_body, PICKUP};

#[actix_web::test]
async fn a_driver_acts_only_on_itself_and_its_assigned_bookings() {
    // Arrange
    let w = world().await;
    let (d1, d2, booking) = (w.driver_1, w.driver_2, w.booking);
    let other = format!("driver:{d2}");
    let cases = vec![
        refused(
            other.clone(),
            Method::POST,
            format!("/api/drivers/{d1}/location"),
            Some(json!({ "lat": 40.7, "lng": -74.0 })),
            "subject_mismatch",
        ),
        refused(
            other.clone(),
            Method::PATCH,
            format!("/api/drivers/{d1}/status"),
            Some(json!({ "status": "offline" })),
            "subject_mismatch",
        ),
        refused(
            other.clone(),
            Method::GET,
            format!("/api/drivers/{d1}"),
            None,
            "subject_mismatch",
        ),
        // Body ids must match the token ...
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(json!({ "driver_id": d1 })),
            "subject_mismatch",
        ),
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/complete"),
            Some(json!({ "driver_id": d1, "actual_fare": 10.0 })),
            "subject_mismatch",
        ),
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": d1, "user_type": "driver" })),
            "subject_mismatch",
        ),
        // ... and then only the assigned driver may act.
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(json!({ "driver_id": d2 })),
            "not_assigned_driver",
        ),
        // A booking with no driver yet is not theirs either, and tells them nothing.
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{}/accept", w.pending),
            Some(json!({ "driver_id": d2 })),
            "not_assigned_driver",
        ),
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{}/complete", w.pending),
            Some(json!({ "driver_id": d2, "actual_fare": 10.0 })),
            "not_assigned_driver",
        ),
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": d2, "user_type": "driver" })),
            "not_booking_party",
        ),
        // Drivers do not assign, and read only the bookings assigned to them.
        refused(
            format!("driver:{d1}"),
            Method::POST,
            format!("/api/bookings/{booking}/assign"),
            None,
            "not_booking_party",
        ),
        refused(
            other.clone(),
            Method::GET,
            format!("/api/bookings/{booking}"),
            None,
            "not_booking_party",
        ),
        refused(
            other.clone(),
            Method::GET,
            format!("/api/bookings/{booking}/events"),
            None,
            "not_booking_party",
        ),
        refused(
            other.clone(),
            Method::GET,
            format!("/api/users/{d1}/bookings?user_type=driver"),
            None,
            "subject_mismatch",
        ),
        refused(
            other,
            Method::POST,
            "/api/bookings".into(),
            Some(booking_body(w.rider_a, PICKUP.0, PICKUP.1)),
            "subject_mismatch",
        ),
    ];

    // Act + Assert
    assert_refused(&w.app, cases).await;
    let me = format!("driver:{d1}");
    for path in [
        format!("/api/bookings/{booking}"),
        format!("/api/users/{d1}/bookings?user_type=driver"),
        format!("/api/drivers/{d1}"),
    ] {
        w.app
            .as_subject(&me, Method::GET, &path, None)
            .await
            .expect(200, None);
    }
    w.app
        .as_subject(
            &me,
            Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(json!({ "driver_id": d1 })),
        )
        .await
        .expect(200, None);
    w.app
        .as_subject(
            &me,
            Method::POST,
            format!("/api/bookings/{booking}/complete"),
            Some(json!({ "driver_id": d1, "actual_fare": 12.0 })),
        )
        .await
        .expect(200, None);
    w.app
        .as_subject(
            &me,
            Method::POST,
            format!("/api/drivers/{d1}/location"),
            Some(json!({ "lat": 40.71, "lng": -74.0 })),
        )
        .await
        .expect(200, None);
}

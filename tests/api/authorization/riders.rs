//! A rider acts only for itself and reads only its own.

use reqwest::Method;
use serde_json::json;

use super::{assert_refused, refused, world};
use crate::support::fixtures::{booking_body, PICKUP};

#[actix_web::test]
async fn a_rider_acts_only_for_itself_and_reads_only_its_own() {
    // Arrange
    let w = world().await;
    let (a, b, booking) = (w.rider_a, w.rider_b, w.booking);
    let stranger = format!("rider:{b}");
    let cases = vec![
        // Body ids must match the token.
        refused(
            stranger.clone(),
            Method::POST,
            "/api/bookings".into(),
            Some(booking_body(a, PICKUP.0, PICKUP.1)),
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": a, "user_type": "rider" })),
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": w.driver_1, "user_type": "driver" })),
            "subject_mismatch",
        ),
        // A body naming itself is checked against the booking's parties.
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": b, "user_type": "rider" })),
            "not_booking_party",
        ),
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/assign"),
            None,
            "not_booking_party",
        ),
        // Reads.
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/bookings/{booking}"),
            None,
            "not_booking_party",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/bookings/{booking}/events"),
            None,
            "not_booking_party",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/users/{a}/bookings"),
            None,
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/users/{b}/bookings?user_type=driver"),
            None,
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/riders/{a}"),
            None,
            "subject_mismatch",
        ),
        // Riders are not drivers.
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(json!({ "driver_id": w.driver_1 })),
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/drivers/{}", w.driver_1),
            None,
            "subject_mismatch",
        ),
        refused(
            stranger,
            Method::PATCH,
            format!("/api/drivers/{}/status", w.driver_1),
            Some(json!({ "status": "offline" })),
            "subject_mismatch",
        ),
    ];

    // Act + Assert: every refusal, then the owner may do the same things.
    assert_refused(&w.app, cases).await;
    let owner = format!("rider:{a}");
    for path in [
        format!("/api/bookings/{booking}"),
        format!("/api/bookings/{booking}/events"),
        format!("/api/users/{a}/bookings"),
        format!("/api/riders/{a}"),
    ] {
        w.app
            .as_subject(&owner, Method::GET, &path, None)
            .await
            .expect(200, None);
    }
    let mine = w
        .app
        .as_subject(
            &owner,
            Method::POST,
            "/api/bookings",
            Some(booking_body(a, PICKUP.0, PICKUP.1)),
        )
        .await;
    mine.expect(201, None);
    let mine = mine.data()["id"].as_i64().unwrap();
    w.app
        .as_subject(
            &owner,
            Method::POST,
            format!("/api/bookings/{mine}/assign"),
            None,
        )
        .await
        .expect(200, None);
    let cancel = json!({ "reason": "changed plans", "user_id": a, "user_type": "rider" });
    w.app
        .as_subject(
            &owner,
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(cancel),
        )
        .await
        .expect(200, None);
}

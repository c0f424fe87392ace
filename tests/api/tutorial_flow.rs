//! The tutorial's quick-start concurrency test, with the requests really in flight together.

use futures::future::join_all;
use serde_json::json;

use crate::support::app::spawn_app;
use crate::support::fixtures::{booking_body, Api, PICKUP};

#[actix_web::test]
async fn tutorial_flow_creates_ten_bookings_and_exactly_one_of_five_assigns_wins() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    for i in 0..5 {
        app.online_driver(PICKUP.0 + 0.001 * f64::from(i), PICKUP.1)
            .await;
    }

    // Act: ten concurrent creates, then five concurrent assigns of one booking.
    let creates = join_all(
        (0..10).map(|_| app.post("/api/bookings", booking_body(rider, PICKUP.0, PICKUP.1))),
    )
    .await;
    let ids: Vec<i64> = creates
        .iter()
        .map(|reply| {
            reply.expect(201, None);
            assert_eq!(reply.data()["status"], json!("pending"));
            reply.data()["id"].as_i64().unwrap()
        })
        .collect();
    let target = ids[3];
    let assigns =
        join_all((0..5).map(|_| app.post(format!("/api/bookings/{target}/assign"), json!(null))))
            .await;
    let stats = app.get("/api/locks/stats").await;

    // Assert
    let won: Vec<_> = assigns.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 1, "exactly one assign wins: {assigns:#?}");
    for lost in assigns.iter().filter(|r| r.status != 200) {
        lost.expect(409, Some("booking_not_pending"));
        assert_eq!(lost.data()["booking"]["status"], json!("assigned"));
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 10, "ten distinct bookings");
    stats.expect(200, None);
    assert!(stats.data()["totalLocks"].as_u64().is_some());
    assert!(stats.data()["locks"].is_array());
}

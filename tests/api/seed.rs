//! `ridelock seed`: the demo data the tutorial's curl commands expect, idempotent, and usable by a
//! server that is already running.

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::support::app::spawn_app;

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    riders: i64,
    #[diesel(sql_type = BigInt)]
    online: i64,
    #[diesel(sql_type = BigInt)]
    pending: i64,
}

#[actix_web::test]
async fn seeding_twice_gives_the_demo_data_once_and_the_running_server_can_assign_it() {
    // Arrange: a running server whose geo index was built before any driver existed.
    let app = spawn_app().await;

    // Act
    let first = ridelock::seed::seed(&app.settings()).await.unwrap();
    let second = ridelock::seed::seed(&app.settings()).await.unwrap();
    let assigned = app.post("/api/bookings/1/assign", json!(null)).await;

    // Assert
    assert_eq!((first.riders, first.drivers, first.bookings), (10, 20, 3));
    assert_eq!((second.riders, second.drivers, second.bookings), (0, 0, 0));
    let mut conn = app.db().await;
    let counts: Counts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM riders) AS riders,
                (SELECT count(*) FROM drivers WHERE status = 'online') AS online,
                (SELECT count(*) FROM bookings WHERE status = 'pending') AS pending",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!((counts.riders, counts.online, counts.pending), (10, 19, 2));
    assigned.expect(200, None);
    assert_eq!(assigned.data()["booking"]["rider_id"], json!(1));
}

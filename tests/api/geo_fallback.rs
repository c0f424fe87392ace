//! The Redis geo index is a search aid: when it cannot answer, assignment and `nearby` search in
//! SQL and still find the nearest online driver.

use serde_json::json;

use crate::support::app::spawn_app;
use crate::support::fixtures::{geo_index_key, geo_marker_key, Api, PICKUP};
use crate::support::poll::eventually;

#[actix_web::test]
async fn assignment_and_nearby_fall_back_to_sql_when_the_geo_index_fails() {
    // Arrange: two drivers, then break the index on purpose (a string where the geo set was,
    // so every GEOSEARCH answers WRONGTYPE).
    let app = spawn_app().await;
    let rider = app.rider().await;
    let far = app.online_driver(PICKUP.0 + 0.01, PICKUP.1).await;
    let near = app.online_driver(PICKUP.0 + 0.001, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let mut redis = app.redis();
    let index = geo_index_key(&app.redis_prefix);
    let _: () = redis::cmd("SET")
        .arg(&index)
        .arg("not a geo set")
        .query(&mut redis)
        .unwrap();

    // Act
    let nearby = app
        .get(format!(
            "/api/drivers/nearby?lat={}&lng={}&radius=5",
            PICKUP.0, PICKUP.1
        ))
        .await;
    let assigned = app
        .post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await;

    // Assert: both answered from PostgreSQL, nearest first.
    nearby.expect(200, None);
    let ids: Vec<i64> = nearby
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [near, far]);
    assigned.expect(200, None);
    assert_eq!(assigned.data()["driver"]["id"], json!(near));
}

#[actix_web::test]
async fn a_free_driver_missing_from_a_lagging_index_is_still_assigned() {
    // Arrange: two online drivers, but the index has lost the farther one (as it does for a
    // moment after a release, before the driver is re-added).
    let app = spawn_app().await;
    let rider = app.rider().await;
    let near = app.online_driver(PICKUP.0 + 0.001, PICKUP.1).await;
    let far = app.online_driver(PICKUP.0 + 0.01, PICKUP.1).await;
    let mut redis = app.redis();
    let index = geo_index_key(&app.redis_prefix);
    let _: i64 = redis::cmd("ZREM")
        .arg(&index)
        .arg(far)
        .query(&mut redis)
        .unwrap();
    let first = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let second = app.booking(rider, PICKUP.0, PICKUP.1).await;

    // Act
    let a = app
        .post(format!("/api/bookings/{first}/assign"), json!(null))
        .await;
    let b = app
        .post(format!("/api/bookings/{second}/assign"), json!(null))
        .await;

    // Assert: the index offered nobody for the second booking; PostgreSQL did.
    a.expect(200, None);
    assert_eq!(a.data()["driver"]["id"], json!(near));
    b.expect(200, None);
    assert_eq!(b.data()["driver"]["id"], json!(far));
}

#[actix_web::test]
async fn the_index_is_rebuilt_from_postgresql_when_redis_comes_back_empty() {
    // Arrange: two online drivers in the index; then the index and its marker vanish, as when
    // Redis restarts without persistence.
    let app = spawn_app().await;
    let near = app.online_driver(PICKUP.0 + 0.001, PICKUP.1).await;
    let far = app.online_driver(PICKUP.0 + 0.01, PICKUP.1).await;
    let mut redis = app.redis();
    let index = geo_index_key(&app.redis_prefix);
    let marker = geo_marker_key(&app.redis_prefix);
    let _: i64 = redis::cmd("DEL")
        .arg(&index)
        .arg(&marker)
        .query(&mut redis)
        .unwrap();

    // Act: wait for the node's heartbeat (every lease renewal period).
    let rebuilt = eventually(std::time::Duration::from_secs(3), || {
        let members: Vec<i64> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query(&mut redis)
            .unwrap();
        async move { members.len() == 2 }
    })
    .await;

    // Assert: both drivers are back, from PostgreSQL.
    assert!(rebuilt, "the index was not rebuilt");
    let mut members: Vec<i64> = redis::cmd("ZRANGE")
        .arg(&index)
        .arg(0)
        .arg(-1)
        .query(&mut redis)
        .unwrap();
    members.sort_unstable();
    let mut expected = [near, far];
    expected.sort_unstable();
    assert_eq!(members, expected);
}

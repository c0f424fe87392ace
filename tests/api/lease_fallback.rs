//! Redis silent for one node: leases move to PostgreSQL's `leases` table and back. Each node here
//! reaches Redis through a TCP proxy the test can cut (tests/support/proxy.rs), so the node is
//! cut off while the test, and any other node, still reach Redis.

use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::support::app::{spawn_app_with, spawn_node, use_own_redis, TestApp};
use crate::support::database::Count;
use crate::support::fixtures::{lease_key, Api, PICKUP, TTL};
use crate::support::poll::eventually;
use crate::support::proxy::{host_port, Proxy};
use crate::support::redis_server::RedisServer;

/// A node whose Redis connection goes through a proxy to a Redis of the test's own (one server
/// in every mode the suite runs in, so that one proxy cuts it all); the test reaches that Redis
/// directly. Its actors do not stop when idle, so a booking stays held until the test says
/// otherwise.
async fn node_behind_proxy() -> (TestApp, Proxy, RedisServer) {
    node_behind_proxy_with(|_| {}).await
}

async fn node_behind_proxy_with(
    customize: impl FnOnce(&mut ridelock::config::Settings),
) -> (TestApp, Proxy, RedisServer) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&host_port(&redis.url())).await;
    let through = proxy.url(&redis.url());
    let mut app = spawn_app_with(|s| {
        use_own_redis(s, &through);
        s.booking.idle_stop_ms = 60_000;
        customize(s);
    })
    .await;
    // The test's own reads reach Redis directly, not through the proxy it cuts.
    app.redis_url = redis.url();
    app.redis_at.url = redis.url();
    (app, proxy, redis)
}

#[derive(QueryableByName, Debug)]
struct LeaseRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = Text)]
    owner_address: String,
}

async fn pg_leases(app: &TestApp) -> Vec<LeaseRow> {
    diesel::sql_query(
        "SELECT key, value, owner_address FROM leases WHERE expires_at > clock_timestamp()",
    )
    .load(&mut app.db().await)
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_node_cut_off_from_redis_keeps_serving_on_postgres_leases_and_returns_to_redis() {
    // Arrange: booking A is held (in Redis) before the cut; B and C are pending.
    let (app, proxy, _redis) = node_behind_proxy().await;
    let rider = app.rider().await;
    let driver_a = app.online_driver(PICKUP.0, PICKUP.1).await;
    let a = app.booking(rider, PICKUP.0, PICKUP.1).await;
    app.post(format!("/api/bookings/{a}/assign"), json!({}))
        .await
        .expect(200, None);
    app.online_driver(PICKUP.0 + 0.001, PICKUP.1).await;
    app.online_driver(PICKUP.0 + 0.002, PICKUP.1).await;
    let b = app.unowned_booking(rider, PICKUP.0, PICKUP.1).await;
    let c = app.unowned_booking(rider, PICKUP.0, PICKUP.1).await;
    let key_a = lease_key(&app.redis_prefix, a);

    // Act 1: cut the node off from Redis.
    let cut_at = Instant::now();
    proxy.cut();

    // Assert 1: the held lease is carried over to PostgreSQL within a heartbeat or two, and
    // booking A is served on without a pause.
    let carried = eventually(TTL, || async {
        pg_leases(&app).await.iter().any(|row| row.key == key_a)
    })
    .await;
    assert!(carried, "booking A's lease was not carried over");
    let accepted = app
        .post(
            format!("/api/bookings/{a}/accept"),
            json!({ "driver_id": driver_a }),
        )
        .await;
    accepted.expect(200, None);
    assert_eq!(
        accepted.data()["fencing_token"],
        json!(1),
        "same activation"
    );
    let health = app.get("/api/health").await;
    health.expect(200, None);
    assert_eq!(health.body["services"]["redis"], json!("down"));
    assert_eq!(health.body["services"]["lease_backend"], json!("postgres"));

    // Act 2: a booking nobody holds, while Redis is silent.
    let assigned = app
        .post(format!("/api/bookings/{b}/assign"), json!({}))
        .await;

    // Assert 2: granted from PostgreSQL, no sooner than a TTL after the cut (every Redis lease
    // anyone held has expired by then), within the request's deadline.
    assigned.expect(200, None);
    assert!(
        cut_at.elapsed() >= TTL,
        "granted {:?} after the cut",
        cut_at.elapsed()
    );
    let rows = pg_leases(&app).await;
    let row_b = rows
        .iter()
        .find(|row| row.key.ends_with(&format!("lock:booking:{b}")))
        .expect("booking B's lease is in PostgreSQL");
    assert!(row_b.value.starts_with("n1:"), "{row_b:?}");
    assert_eq!(row_b.owner_address, app.address);
    let stats = app.get("/api/locks/stats").await;
    assert_eq!(stats.data()["backend"], json!("postgres"));
    assert_eq!(stats.data()["totalLocks"], json!(2), "{:#}", stats.body);

    // Act 3: Redis is reachable again.
    proxy.heal();
    let back = eventually(Duration::from_secs(5), || async {
        app.get("/api/health").await.body["services"]["lease_backend"] == json!("redis")
    })
    .await;

    // Assert 3: new leases come from Redis again; the ones taken in PostgreSQL stay there.
    assert!(back, "the node did not return to Redis");
    app.post(format!("/api/bookings/{c}/assign"), json!({}))
        .await
        .expect(200, None);
    let in_redis = app.lease_in_redis(c);
    assert!(in_redis.is_some_and(|v| v.starts_with("n1:")));
    assert!(pg_leases(&app)
        .await
        .iter()
        .any(|row| row.key.ends_with(&format!("lock:booking:{b}"))));
}

#[actix_web::test]
async fn a_node_that_reaches_redis_defers_to_a_booking_held_in_postgres() {
    // Arrange: n1 is cut off from Redis and holds the booking in PostgreSQL; n2 reaches Redis.
    let (n1, proxy, redis) = node_behind_proxy().await;
    let n2 = spawn_node(&n1.db_name, &n1.db_url, &n1.redis_prefix, "n2", |s| {
        use_own_redis(s, &redis.url())
    })
    .await;
    let rider = n1.rider().await;
    let driver = n1.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = n1.unowned_booking(rider, PICKUP.0, PICKUP.1).await;
    proxy.cut();
    let assigned = n1
        .post(format!("/api/bookings/{booking}/assign"), json!({}))
        .await;
    assigned.expect(200, None);
    assert_eq!(assigned.served_by.as_deref(), Some("n1"));

    // Act: the accept reaches n2, which takes the free Redis key first.
    let accepted = n2
        .post(
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;

    // Assert: n2 found n1's PostgreSQL lease, gave the Redis key back and forwarded to n1 (at
    // the address in the lease row: n1's member key in Redis has expired by now).
    accepted.expect(200, None);
    assert_eq!(accepted.served_by.as_deref(), Some("n1"));
    assert_eq!(accepted.data()["fencing_token"], json!(1));
    assert_eq!(n1.lease_in_redis(booking), None);
    let writers: Count = diesel::sql_query(
        "SELECT count(DISTINCT node_id) AS n FROM booking_events \
         WHERE booking_id = $1 AND from_status IS NOT NULL",
    )
    .bind::<BigInt, _>(booking)
    .get_result(&mut n1.db().await)
    .await
    .unwrap();
    assert_eq!(writers.n, 1, "one writer");
}

#[actix_web::test]
async fn a_request_that_cannot_wait_out_the_switch_gets_503_with_retry_after_and_changes_nothing() {
    // Arrange: a request timeout shorter than the TTL the switch waits; a pending booking
    // nobody holds.
    let (app, proxy, _redis) = node_behind_proxy_with(|s| s.server.request_timeout_ms = 500).await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.unowned_booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;
    proxy.cut();

    // Act
    let assigned = app
        .post(format!("/api/bookings/{booking}/assign"), json!({}))
        .await;

    // Assert: told when to come back, and nothing was written.
    assigned.expect(503, Some("lease_unavailable"));
    let retry_after: u64 = assigned
        .retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(app.fingerprint().await, before);
    let now = app.get(format!("/api/bookings/{booking}")).await;
    assert_eq!(now.data()["fencing_token"], json!(0), "not even activated");
    assert!(pg_leases(&app).await.is_empty());
}

#[actix_web::test]
async fn releasing_a_lease_carried_over_during_a_blip_deletes_its_redis_key_too() {
    // Arrange: a lease TTL long enough that the Redis key, not renewed since the cut, would
    // outlive the whole test; the actor stops 4 s after its last message.
    let (app, proxy, _redis) = node_behind_proxy_with(|s| {
        s.lease.ttl_ms = 20_000;
        s.booking.idle_stop_ms = 4_000;
    })
    .await;
    let rider = app.rider().await;
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    app.post(format!("/api/bookings/{booking}/assign"), json!({}))
        .await
        .expect(200, None);
    let key = lease_key(&app.redis_prefix, booking);
    let held = app.lease_in_redis(booking).expect("held in Redis");

    // Act: a blip. The lease is carried over to PostgreSQL, Redis answers again, and the idle
    // actor releases its lease.
    proxy.cut();
    let carried = eventually(Duration::from_secs(3), || async {
        pg_leases(&app).await.iter().any(|row| row.key == key)
    })
    .await;
    assert!(carried, "the lease was not carried over");
    proxy.heal();
    let back = eventually(Duration::from_secs(2), || async {
        app.get("/api/health").await.body["services"]["lease_backend"] == json!("redis")
    })
    .await;
    assert!(
        back,
        "the node did not return to Redis before the actor's idle stop"
    );
    assert_eq!(app.lease_in_redis(booking).as_deref(), Some(held.as_str()));
    let released = eventually(Duration::from_secs(8), || async {
        pg_leases(&app).await.is_empty()
    })
    .await;
    assert!(released, "the idle actor did not release its lease");

    // Assert: the Redis key went with it, so the next activation on this node is served at once
    // instead of waiting for its own old key to expire.
    assert_eq!(app.lease_in_redis(booking), None);
    app.post(
        format!("/api/bookings/{booking}/accept"),
        json!({ "driver_id": driver }),
    )
    .await
    .expect(200, None);
}

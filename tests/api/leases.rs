//! Ownership: a booking actor that loses its lease, or whose fencing token went stale, writes
//! nothing and steps down; a restarted node clears the leases its previous run left behind.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::support::app::{spawn_app, spawn_app_with, spawn_node, use_own_redis, TestApp};
use crate::support::fixtures::{lease_key, Api, PICKUP};
use crate::support::poll::eventually;
use crate::support::redis_server::RedisServer;

async fn active_actors(app: &TestApp) -> u64 {
    app.get("/api/locks/stats").await.data()["active_actors"]
        .as_u64()
        .unwrap()
}

#[actix_web::test]
async fn a_stolen_lease_stops_the_actor_and_nobody_writes_until_it_is_free() {
    // Arrange: an assigned booking whose actor holds the lease.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let key = lease_key(&app.redis_prefix, booking);

    // Act: another holder takes the key; the next heartbeat finds the lease is no longer ours.
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("intruder:1")
        .arg("PX")
        .arg(60_000)
        .query(&mut app.redis())
        .unwrap();
    let stopped = eventually(Duration::from_secs(5), || async {
        active_actors(&app).await == 0
    })
    .await;
    let before = app.fingerprint().await;
    let refused = app
        .post(
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;

    // Assert: the actor stopped, the request was refused with 503 + Retry-After, nothing written.
    assert!(stopped, "the actor should stop when its lease is lost");
    refused.expect(503, Some("lease_unavailable"));
    assert!(refused.retry_after.is_some(), "Retry-After missing");
    assert_eq!(app.fingerprint().await, before);
    let stats = app.get("/api/locks/stats").await;
    assert!(
        stats.data()["counters"]["lost"].as_u64().unwrap() >= 1,
        "{:#}",
        stats.body
    );
    let intruder: String = redis::cmd("GET").arg(&key).query(&mut app.redis()).unwrap();
    assert_eq!(
        intruder, "intruder:1",
        "the intruder's lease must not be deleted by us"
    );

    // Once the key is free, the booking is served again under a higher fencing token.
    let _: () = redis::cmd("DEL").arg(&key).query(&mut app.redis()).unwrap();
    let accepted = app
        .post(
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;
    accepted.expect(200, None);
    assert!(
        accepted.data()["fencing_token"].as_i64().unwrap() >= 2,
        "{:#}",
        accepted.body
    );
}

#[actix_web::test]
async fn a_stale_actor_does_not_answer_no_drivers_available_from_its_old_copy() {
    // Arrange: a pending booking with no driver anywhere near, whose actor is live (the first
    // assign activated it and was refused); then another activation cancels the booking behind
    // its back, as a node that took it over from a PostgreSQL lease would.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    app.post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await
        .expect(409, Some("no_drivers_available"));
    let mut conn = app.db().await;
    diesel::sql_query(
        "UPDATE bookings SET fencing_token = fencing_token + 1, status = 'cancelled',
                cancelled_at = now() WHERE id = $1",
    )
    .bind::<BigInt, _>(booking)
    .execute(&mut conn)
    .await
    .unwrap();

    // Act: the live actor still holds the pending copy and still finds no driver.
    let assigned = app
        .post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await;

    // Assert: it checked its token before refusing, stepped down, and the request was answered
    // from the booking as it is: cancelled, so not pending.
    assigned.expect(409, Some("booking_not_pending"));
    assert_eq!(
        assigned.data()["booking"]["status"],
        json!("cancelled"),
        "{:#}",
        assigned.body
    );
}

#[actix_web::test]
async fn a_write_under_a_stale_fencing_token_is_refused_and_the_request_routed_again() {
    // Arrange: a live actor for an assigned booking, then another activation elsewhere bumps the
    // token behind its back (as a node that took over after a pause would).
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let mut conn = app.db().await;
    diesel::sql_query("UPDATE bookings SET fencing_token = fencing_token + 1 WHERE id = $1")
        .bind::<BigInt, _>(booking)
        .execute(&mut conn)
        .await
        .unwrap();

    // Act
    let accepted = app
        .post(
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;

    // Assert: the stale actor's write touched nothing and it stepped down; the request was routed
    // again, to a fresh activation (token 3), which accepted. The trail has one writer per token:
    // the creating node's actor created and assigned the booking under the creation token 1.
    accepted.expect(200, None);
    assert_eq!(accepted.data()["fencing_token"], json!(3));
    let events = app.get(format!("/api/bookings/{booking}/events")).await;
    let trail: Vec<(String, i64)> = events
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["to_status"].as_str().unwrap().to_owned(),
                e["fencing_token"].as_i64().unwrap(),
            )
        })
        .collect();
    let tokens: Vec<i64> = trail.iter().map(|(_, token)| *token).collect();
    assert_eq!(
        tokens,
        [1, 1, 3],
        "one writer per token, tokens increasing: {trail:?}"
    );
    let stats = app.get("/api/locks/stats").await;
    assert_eq!(
        stats.data()["locks"][0]["fencing_token"],
        json!(3),
        "{:#}",
        stats.body
    );
}

#[actix_web::test]
async fn a_restarted_node_clears_the_leases_its_previous_run_left_behind() {
    // Arrange: a lease left in Redis by a crashed run of node "n1".
    let first = spawn_app().await;
    let rider = first.rider().await;
    first.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = first.booking(rider, PICKUP.0, PICKUP.1).await;
    let key = lease_key(&first.redis_prefix, booking);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("n1:crashed")
        .arg("PX")
        .arg(60_000)
        .query(&mut first.redis())
        .unwrap();

    // Act: n1 starts again on the same database and prefix.
    let restarted = first.restarted(|_| {}).await;
    let assigned = restarted
        .post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await;

    // Assert: no TTL wait; the booking is served at once.
    assigned.expect(200, None);
    let holder: String = redis::cmd("GET")
        .arg(&key)
        .query(&mut first.redis())
        .unwrap();
    assert!(
        holder.starts_with("n1:") && holder != "n1:crashed",
        "{holder}"
    );
    drop(restarted);
}

#[actix_web::test]
async fn a_live_actor_keeps_its_lease_past_the_ttl_through_heartbeat_renewals() {
    // Arrange: actors idle for longer than the lease TTL (2 s in the test profile).
    let base = spawn_app().await;
    let app = spawn_node(&base.db_name, &base.db_url, &base.redis_prefix, "n2", |s| {
        s.booking.idle_stop_ms = 3 * s.lease.ttl_ms;
    })
    .await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let key = lease_key(&app.redis_prefix, booking);
    let granted: String = redis::cmd("GET").arg(&key).query(&mut app.redis()).unwrap();

    // Act: wait until more than a TTL's worth of heartbeats has renewed the lease.
    let renewed_past_ttl = eventually(Duration::from_secs(6), || async {
        let stats = app.get("/api/locks/stats").await;
        stats.data()["counters"]["renewed"].as_u64().unwrap() >= 5
    })
    .await;

    // Assert: same lease value, same fencing token, nothing lost.
    assert!(renewed_past_ttl, "the heartbeat should renew held leases");
    let holder: Option<String> = redis::cmd("GET").arg(&key).query(&mut app.redis()).unwrap();
    assert_eq!(holder.as_deref(), Some(granted.as_str()));
    let stats = app.get("/api/locks/stats").await;
    assert_eq!(stats.data()["counters"]["lost"], json!(0));
    let lock = &stats.data()["locks"][0];
    assert_eq!(lock["fencing_token"], json!(1), "{:#}", stats.body);
    assert_eq!(lock["owner_node"], json!("n2"));
}

#[actix_web::test]
async fn refusing_a_command_on_a_finished_booking_touches_neither_token_nor_lease() {
    // Arrange: a completed booking whose actor has gone.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;
    app.post(
        format!("/api/bookings/{booking}/complete"),
        json!({ "driver_id": driver, "actual_fare": 12.0 }),
    )
    .await
    .expect(200, None);
    assert!(
        eventually(Duration::from_secs(5), || async {
            active_actors(&app).await == 0
        })
        .await
    );
    let token = app.get(format!("/api/bookings/{booking}")).await.data()["fencing_token"].clone();

    // Act
    let refused = app
        .post(
            format!("/api/bookings/{booking}/cancel"),
            json!({ "user_id": rider, "user_type": "rider" }),
        )
        .await;

    // Assert: 409, same token, and no lease left behind in Redis.
    refused.expect(409, Some("booking_already_terminal"));
    let after = app.get(format!("/api/bookings/{booking}")).await.data()["fencing_token"].clone();
    assert_eq!(
        after, token,
        "a refusal on a finished booking must not bump its token"
    );
    let key: Option<String> = redis::cmd("GET")
        .arg(lease_key(&app.redis_prefix, booking))
        .query(&mut app.redis())
        .unwrap();
    assert_eq!(key, None);
}

#[actix_web::test]
async fn a_graceful_stop_gives_back_every_lease_without_waiting_for_the_ttl() {
    // Arrange: a long lease TTL, and actors that would idle far longer than the test.
    let app = spawn_app_with(|s| {
        s.lease.ttl_ms = 60_000;
        s.lease.renew_every_ms = 5_000;
        s.booking.idle_stop_ms = 60_000;
    })
    .await;
    let rider = app.rider().await;
    for i in 0..3 {
        app.online_driver(PICKUP.0 + 0.001 * f64::from(i), PICKUP.1)
            .await;
    }
    let mut keys = Vec::new();
    for _ in 0..3 {
        let (booking, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
        keys.push(lease_key(&app.redis_prefix, booking));
    }
    let held: usize = redis::cmd("EXISTS")
        .arg(&keys)
        .query(&mut app.redis())
        .unwrap();
    assert_eq!(held, 3);

    // Act: what SIGTERM does.
    app.stop().await;

    // Assert: the leases are gone within seconds, not a 60 s TTL.
    let released = eventually(Duration::from_secs(5), || async {
        let left: usize = redis::cmd("EXISTS")
            .arg(&keys)
            .query(&mut app.redis())
            .unwrap();
        left == 0
    })
    .await;
    assert!(released, "a stopping node must release its leases");
}

#[actix_web::test]
async fn with_wait_replicas_a_granted_lease_is_on_the_replica_before_the_answer() {
    // Arrange: a primary and its replica of the test's own; the node waits for one replica.
    let primary = RedisServer::start();
    let replica = RedisServer::start();
    replica.replicate(&primary);
    let url = primary.url();
    let app = spawn_app_with(|s| {
        use_own_redis(s, &url);
        s.lease.wait_replicas = 1;
        s.lease.wait_timeout_ms = 100;
    })
    .await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let first = app.unowned_booking(rider, PICKUP.0, PICKUP.1).await;

    // Act: the assignment takes the booking's lease.
    app.post(format!("/api/bookings/{first}/assign"), json!(null))
        .await
        .expect(200, None);

    // Assert: the grant waited for the replica (WAIT ran on the primary), and the replica has the
    // lease the moment the answer arrives.
    let stats: String = primary.cmd(&["INFO", "commandstats"]);
    assert!(
        stats.contains("cmdstat_wait:calls="),
        "no WAIT ran: {stats}"
    );
    let key = lease_key(&app.redis_prefix, first);
    let on_replica: Option<String> = replica.cmd(&["GET", &key]);
    assert!(
        on_replica.is_some_and(|v| v.starts_with("n1:")),
        "the replica does not have {key}"
    );

    // Act: the replica freezes; a second booking is assigned.
    replica.signal(libc::SIGSTOP);
    let second = app.unowned_booking(rider, PICKUP.0, PICKUP.1).await;
    let assigned = app
        .post(format!("/api/bookings/{second}/assign"), json!(null))
        .await;
    replica.signal(libc::SIGCONT);

    // Assert: a replica that does not answer costs the wait, not the grant: the lease is used.
    assigned.expect(200, None);
    let on_primary: Option<String> = primary.cmd(&["GET", &lease_key(&app.redis_prefix, second)]);
    assert!(on_primary.is_some_and(|v| v.starts_with("n1:")));
}

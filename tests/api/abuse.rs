//! Abuse (docs/security.md): what a caller without a token, a token holder or a stranger to a
//! booking can make a node do. Each test drives a real server and checks what it kept or wrote.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use reqwest::Method;
use serde_json::json;

use crate::support::app::{spawn_app, spawn_app_with, spawn_node, use_own_redis, TestApp};
use crate::support::database::Count;
use crate::support::fixtures::{booking_body, Api, PICKUP};
use crate::support::poll::eventually;
use crate::support::redis_server::RedisServer;
use crate::support::reply::Reply;

#[actix_web::test]
async fn unknown_methods_add_no_metrics_series() {
    // Arrange
    let app = spawn_app().await;
    let anonymous = reqwest::Client::new();

    // Act: 50 made-up methods, no token, on a known and an unknown path.
    for n in 0..50 {
        let method = Method::from_bytes(format!("FOO{n}").as_bytes()).unwrap();
        let path = if n % 2 == 0 { "/api/health" } else { "/x" };
        let status = anonymous
            .request(method, format!("{}{path}", app.address))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_client_error(), "FOO{n} {path}: {status}");
    }

    // Assert: one OTHER series per route, no caller-chosen text.
    let text = app.get_text("/metrics").await;
    assert!(!text.contains("FOO"), "{text}");
    let other: f64 = text
        .lines()
        .filter(|l| l.starts_with("ridelock_http_requests_total{method=\"OTHER\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(other, 50.0, "{text}");
}

#[derive(QueryableByName)]
struct Token {
    #[diesel(sql_type = BigInt)]
    fencing_token: i64,
}

async fn fencing_token(app: &TestApp, booking: i64) -> i64 {
    let mut conn = app.db().await;
    diesel::sql_query("SELECT fencing_token FROM bookings WHERE id = $1")
        .bind::<BigInt, _>(booking)
        .get_result::<Token>(&mut conn)
        .await
        .unwrap()
        .fencing_token
}

/// Booking actors alive and leases acquired on this node, from `/metrics`.
async fn actors_and_acquisitions(app: &TestApp) -> (f64, f64) {
    let text = app.get_text("/metrics").await;
    let node = &app.node_id;
    let value = |name: String| crate::support::metrics::value(&text, &name).unwrap();
    (
        value(format!("ridelock_booking_actors{{node=\"{node}\"}}")),
        value(format!("ridelock_lease_acquired_total{{node=\"{node}\"}}")),
    )
}

#[actix_web::test]
async fn strangers_sweeping_booking_ids_start_no_actor_take_no_lease_and_write_nothing() {
    // Arrange: rider A's pending booking, and one assigned to driver 1 whose actor has idled out.
    let app = spawn_app().await;
    let (rider_a, rider_b) = (app.rider().await, app.rider().await);
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let stranger_driver = app.online_driver(PICKUP.0 + 1.0, PICKUP.1).await;
    let (assigned, driver_1) = app
        .assigned_booking(rider_a, PICKUP.0, PICKUP.1, false)
        .await;
    let pending = app.booking(rider_a, PICKUP.0, PICKUP.1).await;
    let idle = eventually(Duration::from_secs(10), || async {
        actors_and_acquisitions(&app).await.0 == 0.0
    })
    .await;
    assert!(idle, "the assigned booking's actor idles out");
    let tokens_before = (
        fencing_token(&app, assigned).await,
        fencing_token(&app, pending).await,
    );
    let acquired_before = actors_and_acquisitions(&app).await.1;
    let fingerprint = app.fingerprint().await;

    // Act: rider B and a stranger driver try every action on both bookings and on ids nobody has.
    let (rider, driver) = (
        format!("rider:{rider_b}"),
        format!("driver:{stranger_driver}"),
    );
    let as_rider = json!({ "user_id": rider_b, "user_type": "rider" });
    let as_driver = json!({ "user_id": stranger_driver, "user_type": "driver" });
    let accept = json!({ "driver_id": stranger_driver });
    let complete = json!({ "driver_id": stranger_driver, "actual_fare": 20.0 });
    for booking in [assigned, pending] {
        for (subject, action, body, code) in [
            (&rider, "assign", None, "not_booking_party"),
            (&rider, "cancel", Some(&as_rider), "not_booking_party"),
            (&driver, "cancel", Some(&as_driver), "not_booking_party"),
            (&driver, "accept", Some(&accept), "not_assigned_driver"),
            (&driver, "complete", Some(&complete), "not_assigned_driver"),
        ] {
            let path = format!("/api/bookings/{booking}/{action}");
            app.as_subject(subject, Method::POST, &path, body.cloned())
                .await
                .expect(403, Some(code));
        }
    }
    for missing in [assigned + 1000, assigned + 1001] {
        let path = format!("/api/bookings/{missing}/cancel");
        app.as_subject(&rider, Method::POST, &path, Some(as_rider.clone()))
            .await
            .expect(404, Some("booking_not_found"));
    }

    // Assert: no actor, no lease, no token bumped, nothing written.
    assert_eq!(actors_and_acquisitions(&app).await, (0.0, acquired_before));
    assert_eq!(app.lease_in_redis(assigned), None);
    assert_eq!(app.lease_in_redis(pending), None);
    assert_eq!(
        (
            fencing_token(&app, assigned).await,
            fencing_token(&app, pending).await
        ),
        tokens_before
    );
    assert_eq!(app.fingerprint().await, fingerprint);

    // And the parties still can: driver 1 accepts, rider A cancels the pending one.
    let accept = json!({ "driver_id": driver_1 });
    app.as_subject(
        &format!("driver:{driver_1}"),
        Method::POST,
        format!("/api/bookings/{assigned}/accept"),
        Some(accept),
    )
    .await
    .expect(200, None);
    let mine = json!({ "user_id": rider_a, "user_type": "rider" });
    app.as_subject(
        &format!("rider:{rider_a}"),
        Method::POST,
        format!("/api/bookings/{pending}/cancel"),
        Some(mine),
    )
    .await
    .expect(200, None);
}

/// Calls of `command` the server has answered, from `INFO commandstats`.
fn redis_calls(redis: &RedisServer, command: &str) -> u64 {
    let info: String = redis.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[derive(QueryableByName)]
struct Commits {
    #[diesel(sql_type = BigInt)]
    commits: i64,
}

/// Transactions committed in the app's database so far.
async fn commits(app: &TestApp) -> i64 {
    let mut conn = app.db().await;
    diesel::sql_query("SELECT pg_stat_force_next_flush()")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(
        "SELECT xact_commit AS commits FROM pg_stat_database WHERE datname = current_database()",
    )
    .get_result::<Commits>(&mut conn)
    .await
    .unwrap()
    .commits
}

#[actix_web::test]
async fn health_checks_without_a_token_cost_redis_nothing_and_postgres_one_probe_a_second() {
    // Arrange: a Redis of the test's own, so its command counts are this node's alone.
    let redis = RedisServer::start();
    let app = spawn_app_with(|s| use_own_redis(s, &redis.url())).await;
    let anonymous = reqwest::Client::new();
    let url = format!("{}/api/health", app.address);
    let (pings, transactions) = (redis_calls(&redis, "ping"), commits(&app).await);

    // Act: 300 health checks, 30 at a time.
    for _ in 0..10 {
        let batch = (0..30).map(|_| anonymous.get(&url).send());
        for reply in futures::future::join_all(batch).await {
            assert_eq!(reply.unwrap().status().as_u16(), 200);
        }
    }

    // Assert: no PING; a few PostgreSQL transactions (one probe a second, the heartbeat's and
    // the statistics queries' own), not 300.
    assert_eq!(redis_calls(&redis, "ping"), pings);
    let spent = commits(&app).await - transactions;
    assert!(spent < 30, "{spent} transactions for 300 health checks");
    let health = app.get("/api/health").await;
    assert_eq!(health.body["services"]["redis"], "up", "{:#}", health.body);
}

#[actix_web::test]
async fn a_driver_cannot_charge_far_above_the_estimate_but_an_operator_can() {
    // Arrange: an accepted ride estimated at 15.50; the test profile allows 3 times that.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;
    let me = format!("driver:{driver}");
    let path = format!("/api/bookings/{booking}/complete");
    let fingerprint = app.fingerprint().await;

    // Act + Assert: 46.51 is a cent above 3 × 15.50; nothing is written.
    let greedy = json!({ "driver_id": driver, "actual_fare": 46.51 });
    app.as_subject(&me, Method::POST, &path, Some(greedy.clone()))
        .await
        .expect_invalid("actual_fare");
    assert_eq!(app.fingerprint().await, fingerprint);

    // An operator may set it (a toll, a long detour), and the driver goes back online.
    let done = app.post(&path, greedy).await;
    done.expect(200, None);
    assert_eq!(done.data()["actual_fare"], json!(46.51));
}

#[actix_web::test]
async fn a_driver_may_charge_up_to_the_bound() {
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;
    let fare = json!({ "driver_id": driver, "actual_fare": 46.50 });
    app.as_subject(
        &format!("driver:{driver}"),
        Method::POST,
        format!("/api/bookings/{booking}/complete"),
        Some(fare),
    )
    .await
    .expect(200, None);
}

/// The rider's bookings pending, assigned or accepted, as PostgreSQL holds them.
async fn active_bookings(app: &TestApp, rider: i64) -> i64 {
    let mut conn = app.db().await;
    diesel::sql_query(
        "SELECT count(*) AS n FROM bookings \
         WHERE rider_id = $1 AND status IN ('pending', 'assigned', 'accepted')",
    )
    .bind::<BigInt, _>(rider)
    .get_result::<Count>(&mut conn)
    .await
    .unwrap()
    .n
}

#[actix_web::test]
async fn a_rider_holds_at_most_its_share_of_active_bookings_however_many_creates_race() {
    // Arrange: two nodes with the production limit of 3; one booking already assigned.
    let n1 = spawn_app_with(|s| s.booking.max_active_per_rider = 3).await;
    let n2 = spawn_node(&n1.db_name, &n1.db_url, &n1.redis_prefix, "n2", |s| {
        s.booking.max_active_per_rider = 3
    })
    .await;
    let rider = n1.rider().await;
    n1.online_driver(PICKUP.0, PICKUP.1).await;
    n1.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let me = format!("rider:{rider}");

    // Act: 40 creates at once, half on each node, half with an Idempotency-Key.
    let creates = (0..40).map(|i| {
        let node = if i % 2 == 0 { &n1 } else { &n2 };
        let client = reqwest::Client::new();
        let mut request = client
            .post(format!("{}/api/bookings", node.address))
            .bearer_auth(crate::support::auth::token(&me))
            .json(&booking_body(rider, PICKUP.0, PICKUP.1));
        if i % 4 < 2 {
            request = request.header("Idempotency-Key", format!("race-{i}"));
        }
        async move {
            let reply = Reply::send(request).await.unwrap();
            (reply.status.as_u16(), reply.error().to_owned())
        }
    });
    let replies = futures::future::join_all(creates).await;

    // Assert: exactly two more were created; every other create was refused, by name.
    let created = replies.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 2, "{replies:?}");
    for (status, error) in replies.iter().filter(|(status, _)| *status != 201) {
        assert_eq!((*status, error.as_str()), (409, "too_many_active_bookings"));
    }
    assert_eq!(active_bookings(&n1, rider).await, 3);

    // Once one ends, the rider may book again.
    let pending = n1
        .get(format!(
            "/api/users/{rider}/bookings?user_type=rider&status=pending"
        ))
        .await;
    let one = pending.data()[0]["id"].as_i64().unwrap();
    let cancel = json!({ "user_id": rider, "user_type": "rider" });
    n1.as_subject(
        &me,
        Method::POST,
        format!("/api/bookings/{one}/cancel"),
        Some(cancel),
    )
    .await
    .expect(200, None);
    let again = booking_body(rider, PICKUP.0, PICKUP.1);
    n2.as_subject(&me, Method::POST, "/api/bookings", Some(again))
        .await
        .expect(201, None);
}

/// Three requests at once, then one a second, for every kind of caller.
fn tight(s: &mut ridelock::config::Settings) {
    let rates = &mut s.rate_limit;
    (rates.per_second, rates.burst) = (1.0, 3);
    (rates.ops_per_second, rates.ops_burst) = (1.0, 3);
    (rates.address_per_second, rates.address_burst) = (1.0, 3);
}

#[actix_web::test]
async fn each_caller_gets_its_share_then_429_with_retry_after_and_nothing_written() {
    // Arrange: two riders made before the limits matter (on a node without them).
    let setup = spawn_app().await;
    let (a, b) = (setup.rider().await, setup.rider().await);
    let app = spawn_node(
        &setup.db_name,
        &setup.db_url,
        &setup.redis_prefix,
        "n2",
        tight,
    )
    .await;
    let (rider_a, rider_b) = (format!("rider:{a}"), format!("rider:{b}"));
    let book = |rider: i64| Some(booking_body(rider, PICKUP.0, PICKUP.1));

    // Act + Assert: rider A's three go through, the fourth is refused before it writes.
    for _ in 0..3 {
        app.as_subject(&rider_a, Method::GET, format!("/api/riders/{a}"), None)
            .await
            .expect(200, None);
    }
    let fingerprint = app.fingerprint().await;
    let refused = app
        .as_subject(&rider_a, Method::POST, "/api/bookings", book(a))
        .await;
    refused.expect(429, Some("rate_limited"));
    let after: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=2).contains(&after), "Retry-After {after}");
    assert_eq!(app.fingerprint().await, fingerprint);

    // Rider B has a share of its own.
    app.as_subject(&rider_b, Method::POST, "/api/bookings", book(b))
        .await
        .expect(201, None);

    // A token that does not verify counts against the address, not the subject it names.
    let forged = format!("Bearer {}", forged_token(&rider_b));
    for _ in 0..3 {
        app.as_caller(Some(&forged), Method::GET, "/api/health", None)
            .await
            .expect(200, None);
    }
    app.as_caller(None, Method::GET, "/api/health", None)
        .await
        .expect(429, Some("rate_limited"));
    app.as_subject(&rider_b, Method::GET, format!("/api/riders/{b}"), None)
        .await
        .expect(200, None);

    // After Retry-After, rider A may go on.
    actix_web::rt::time::sleep(Duration::from_secs(after)).await;
    app.as_subject(&rider_a, Method::GET, format!("/api/riders/{a}"), None)
        .await
        .expect(200, None);
}

/// A well-formed token for `subject` signed with a key nobody configured.
fn forged_token(subject: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "sub": subject, "iss": "ridelock", "aud": "ridelock-api", "exp": now + 600, "iat": now,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-configured-secret-at-all!!"),
    )
    .unwrap()
}

#[actix_web::test]
async fn copies_of_a_keyed_create_at_the_riders_last_slot_all_get_the_one_booking() {
    // Arrange: the limit is 1, so the first copy fills it; the others wait for the rider's lock.
    let app = spawn_app_with(|s| s.booking.max_active_per_rider = 1).await;
    let rider = app.rider().await;
    let body = booking_body(rider, PICKUP.0, PICKUP.1);

    // Act: eight copies at once, one Idempotency-Key.
    let copies = (0..8).map(|_| {
        let request = app
            .client
            .post(format!("{}/api/bookings", app.address))
            .header("Idempotency-Key", "last-slot")
            .json(&body);
        async move {
            let reply = Reply::send(request).await.unwrap();
            (reply.status.as_u16(), reply.data()["id"].as_i64())
        }
    });
    let replies = futures::future::join_all(copies).await;

    // Assert: one booking, and every copy answered with it.
    let first = replies[0].1;
    assert!(first.is_some(), "{replies:?}");
    for reply in &replies {
        assert_eq!(*reply, (201, first), "{replies:?}");
    }
    assert_eq!(active_bookings(&app, rider).await, 1);
}

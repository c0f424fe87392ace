//! Event streams (API.md, "Event streams"): a booking's, a rider's or driver's, and the cluster's
//! for ops, pushed as they commit, in order per booking, resumed without loss from a
//! `Last-Event-ID`, under the REST API's authorization rules.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use ridelock::config::Secret;

use crate::support::app::{spawn_app, spawn_app_with, TestApp};
use crate::support::fixtures::{Api, PICKUP};
use crate::support::poll;
use crate::support::proxy::{host_port, Proxy};
use crate::support::sse::{Event, EventStream};

/// How long an event may take to arrive here; far above what it takes (milliseconds), so that
/// only a missing event fails.
const ARRIVES: Duration = Duration::from_secs(5);

fn booking_stream(app: &TestApp, booking: i64) -> String {
    format!("{}/api/bookings/{booking}/stream", app.address)
}

/// Steps a booking assigned to `driver` through accept and complete, through the API.
async fn accept_and_complete(app: &TestApp, booking: i64, driver: i64) {
    app.post(
        format!("/api/bookings/{booking}/accept"),
        json!({ "driver_id": driver }),
    )
    .await
    .expect(200, None);
    app.post(
        format!("/api/bookings/{booking}/complete"),
        json!({ "driver_id": driver, "actual_fare": 21.5 }),
    )
    .await
    .expect(200, None);
}

/// The booking's trail as `GET /api/bookings/{id}/events` answers it to `subject`.
async fn trail(app: &TestApp, booking: i64, subject: &str) -> Vec<Value> {
    let path = format!("/api/bookings/{booking}/events");
    let reply = app.as_subject(subject, Method::GET, path, None).await;
    reply.expect(200, None);
    reply.data().as_array().cloned().unwrap_or_default()
}

fn statuses(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.data["to_status"].as_str().unwrap_or_default())
        .collect()
}

#[actix_web::test]
async fn a_booking_s_stream_carries_each_committed_transition_in_order_as_its_trail_has_it() {
    // Arrange: a booking, and its rider's stream on it.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let mut stream = EventStream::open(
        &booking_stream(&app, booking),
        &format!("rider:{rider}"),
        None,
    )
    .await;

    // Act
    let assigned = app
        .post(format!("/api/bookings/{booking}/assign"), json!({}))
        .await;
    assigned.expect(200, None);
    let driver = assigned.data()["driver"]["id"].as_i64().unwrap();
    accept_and_complete(&app, booking, driver).await;

    // Assert: the three transitions, in order, each the very event of the trail (with the
    // booking's rider), and nothing from before the stream opened.
    let events = stream.take(3, ARRIVES).await;
    assert_eq!(statuses(&events), ["assigned", "accepted", "completed"]);
    assert!(events.iter().all(|e| e.kind == "booking"));
    let trail = trail(&app, booking, &format!("rider:{rider}")).await;
    for event in &events {
        let mut data = event.data.clone();
        assert_eq!(data["rider_id"], json!(rider));
        data.as_object_mut().unwrap().remove("rider_id");
        let written = trail
            .iter()
            .find(|t| t["id"] == json!(event.id))
            .unwrap_or_else(|| panic!("event {} not in the trail {trail:#?}", event.id));
        assert_eq!(&data, written);
    }
    assert!(stream.next(Duration::from_millis(300)).await.is_none());
    assert_eq!(stream.retry_ms, Some(1000));
    let header = |name: &str| stream.headers.get(name).and_then(|v| v.to_str().ok());
    // nginx reads (and drops) the first: it passes the frames on at once.
    assert_eq!(header("x-accel-buffering"), Some("no"));
    assert_eq!(header("cache-control"), Some("no-cache"));
}

#[actix_web::test]
async fn a_stream_resumed_with_last_event_id_gets_exactly_what_it_missed() {
    // Arrange: a stream that saw the assignment, then went away.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let first = trail(&app, booking, "ops:tests").await;
    let assigned_id = first[1]["id"].as_i64().unwrap();
    let subject = format!("rider:{rider}");
    let url = booking_stream(&app, booking);

    // Act: the booking moves on while nobody listens; the client comes back with the id of the
    // last event it had.
    accept_and_complete(&app, booking, driver).await;
    let mut resumed = EventStream::open(&url, &subject, Some(assigned_id)).await;
    let mut whole = EventStream::open(&format!("{url}?after=0"), &subject, None).await;

    // Assert: what it missed and nothing else; `?after=0` gives the whole trail.
    let missed = resumed.take(2, ARRIVES).await;
    assert_eq!(statuses(&missed), ["accepted", "completed"]);
    assert!(missed.iter().all(|e| e.id > assigned_id));
    assert!(resumed.next(Duration::from_millis(300)).await.is_none());
    let all = whole.take(4, ARRIVES).await;
    assert_eq!(
        statuses(&all),
        ["pending", "assigned", "accepted", "completed"]
    );
}

#[actix_web::test]
async fn a_driver_learns_of_its_offer_and_a_rider_of_its_bookings_without_polling() {
    // Arrange: the driver's stream and the rider's, and another rider's booking.
    let app = spawn_app().await;
    let (rider, other) = (app.rider().await, app.rider().await);
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let base = format!("{}/api/users", app.address);
    let mut driver_stream = EventStream::open(
        &format!("{base}/{driver}/stream?user_type=driver"),
        &format!("driver:{driver}"),
        None,
    )
    .await;
    let mut rider_stream = EventStream::open(
        &format!("{base}/{rider}/stream"),
        &format!("rider:{rider}"),
        None,
    )
    .await;

    // Act
    app.booking(other, PICKUP.0, PICKUP.1).await;
    let (booking, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Assert: the driver hears of the offer (not of bookings that do not name it); the rider of
    // its own booking's creation and assignment, not of the other rider's.
    let offer = driver_stream.next(ARRIVES).await.expect("the offer");
    assert_eq!(offer.data["booking_id"], json!(booking));
    assert_eq!(offer.data["to_status"], "assigned");
    assert_eq!(offer.data["driver_id"], json!(driver));
    let own = rider_stream.take(2, ARRIVES).await;
    assert_eq!(statuses(&own), ["pending", "assigned"]);
    assert!(own.iter().all(|e| e.data["booking_id"] == json!(booking)));
    assert!(driver_stream
        .next(Duration::from_millis(300))
        .await
        .is_none());
    assert!(rider_stream
        .next(Duration::from_millis(300))
        .await
        .is_none());
}

#[actix_web::test]
async fn the_cluster_stream_carries_every_booking_and_names_operators_only_to_ops() {
    let app = spawn_app().await;
    let (first, second) = (app.rider().await, app.rider().await);
    let url = format!("{}/api/cluster/stream", app.address);
    let mut ops = EventStream::open(&url, "ops:alice", None).await;
    let one = app.booking(first, PICKUP.0, PICKUP.1).await;
    let two = app.booking(second, PICKUP.0, PICKUP.1).await;
    // The suite's client is an operator: a cancel as ops, seen by ops and by the rider.
    let mut rider =
        EventStream::open(&booking_stream(&app, two), &format!("rider:{second}"), None).await;
    app.post(
        format!("/api/bookings/{two}/cancel"),
        json!({ "reason": "duplicate", "user_id": second, "user_type": "rider" }),
    )
    .await
    .expect(200, None);

    let events = ops.take(3, ARRIVES).await;
    let bookings: Vec<Value> = events
        .iter()
        .map(|e| e.data["booking_id"].clone())
        .collect();
    assert_eq!(bookings, [json!(one), json!(two), json!(two)]);
    let cancelled = &events[2].data;
    assert!(
        cancelled["actor"].as_str().unwrap().starts_with("ops:"),
        "{cancelled}"
    );
    let seen_by_rider = rider.next(ARRIVES).await.expect("the cancel");
    assert_eq!(seen_by_rider.data["to_status"], "cancelled");
    assert_eq!(seen_by_rider.data["actor"], "ops");
}

#[actix_web::test]
async fn an_event_committed_through_another_node_reaches_this_node_s_streams() {
    // Arrange: two nodes on one database; the stream is on the first.
    let app = spawn_app().await;
    let other = app.second_node().await;
    let rider = app.rider().await;
    let mut stream = EventStream::open(
        &format!("{}/api/users/{rider}/stream", app.address),
        &format!("rider:{rider}"),
        None,
    )
    .await;

    // Act: the booking is made on the second node (whose actor owns it).
    let booking = other.booking(rider, PICKUP.0, PICKUP.1).await;

    // Assert
    let created = stream.next(ARRIVES).await.expect("the creation");
    assert_eq!(created.data["booking_id"], json!(booking));
    assert_eq!(created.data["node_id"], "n2");
}

#[actix_web::test]
async fn a_stream_ends_when_its_node_drains_and_resumes_on_another_without_loss() {
    // Arrange: a stream on the first of two nodes, which has seen the creation.
    let app = spawn_app().await;
    let other = app.second_node().await;
    let rider = app.rider().await;
    let driver = other.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = other.booking(rider, PICKUP.0, PICKUP.1).await;
    let subject = format!("rider:{rider}");
    let mut stream = EventStream::open(&booking_stream(&app, booking), &subject, Some(0)).await;
    let created = stream.next(ARRIVES).await.expect("the creation");

    // Act: the first node stops (SIGTERM); the booking is assigned meanwhile; the client
    // reconnects to the second with its last event id.
    app.stop().await;
    let ended = stream.ends_within(Duration::from_secs(5)).await;
    other
        .post(format!("/api/bookings/{booking}/assign"), json!({}))
        .await
        .expect(200, None);
    let mut resumed =
        EventStream::open(&booking_stream(&other, booking), &subject, Some(created.id)).await;

    // Assert
    assert!(ended, "the stream ends with the drain");
    let assigned = resumed.next(ARRIVES).await.expect("the assignment");
    assert_eq!(assigned.data["to_status"], "assigned");
    assert_eq!(assigned.data["driver_id"], json!(driver));
}

#[actix_web::test]
async fn an_idle_stream_gets_heartbeats() {
    let app = spawn_app_with(|s| s.streams.heartbeat_ms = 100).await;
    let url = format!("{}/api/cluster/stream", app.address);
    let mut stream = EventStream::open(&url, "ops:alice", None).await;
    assert!(stream.next(Duration::from_millis(450)).await.is_none());
    let beats = stream.comments.iter().filter(|c| *c == "heartbeat").count();
    assert!(beats >= 2, "{:?}", stream.comments);
    assert_eq!(
        stream.comments.first().map(String::as_str),
        Some("connected")
    );
}

#[actix_web::test]
async fn a_stream_survives_its_node_losing_the_listening_connection() {
    // Arrange: a rider's stream, and the node's LISTEN session ended by PostgreSQL.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let mut stream = EventStream::open(
        &format!("{}/api/users/{rider}/stream", app.address),
        &format!("rider:{rider}"),
        None,
    )
    .await;
    // The node listens from its start on; wait for its session to be there, then end it.
    let ended = poll::until(ARRIVES, || end_listening_sessions(&app), |n| *n > 0).await;

    // Act: a booking is made while the node listens again (or before).
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;

    // Assert: the creation arrives all the same, once.
    assert_eq!(ended, Ok(1), "the node had one listening session");
    let created = stream.next(ARRIVES).await.expect("the creation");
    assert_eq!(created.data["booking_id"], json!(booking));
    assert!(stream.next(Duration::from_millis(300)).await.is_none());
}

#[actix_web::test]
async fn a_stream_outlives_its_node_s_postgres_outage_and_then_gets_what_committed_meanwhile() {
    // Arrange: the first node reaches PostgreSQL through a proxy the test can cut, the second
    // directly. A booking made through the second, streamed from the first from its creation.
    let server = std::env::var("DATABASE_URL").unwrap();
    let proxy = Proxy::start(&host_port(&server)).await;
    let app = spawn_app_with(|s| {
        s.database.url = Secret::new(proxy.url(s.database.url.expose()));
        s.streams.heartbeat_ms = 200;
    })
    .await;
    let other = app.second_node().await;
    let rider = app.rider().await;
    let booking = other.booking(rider, PICKUP.0, PICKUP.1).await;
    let url = format!("{}?after=0", booking_stream(&app, booking));
    let mut stream = EventStream::open(&url, &format!("rider:{rider}"), None).await;
    let created = stream.next(ARRIVES).await.expect("the creation");
    assert_eq!(created.data["to_status"], "pending");

    // Act: the first node loses PostgreSQL (its listening session too); the booking is
    // cancelled through the second meanwhile.
    proxy.cut();
    other
        .post(
            format!("/api/bookings/{booking}/cancel"),
            json!({ "reason": "test", "user_id": rider, "user_type": "rider" }),
        )
        .await
        .expect(200, None);

    // Assert: while PostgreSQL is gone the stream stays open, heartbeats going on; once it is
    // back, the cancel arrives, once.
    let heartbeats = stream.comments.len();
    assert!(
        !stream.ends_within(Duration::from_secs(2)).await,
        "the stream stays open through the outage"
    );
    assert!(
        stream.next(Duration::from_millis(1)).await.is_none(),
        "nothing to read it from"
    );
    assert!(stream.comments.len() > heartbeats, "{:?}", stream.comments);
    proxy.heal();
    let cancelled = stream
        .next(ARRIVES * 2)
        .await
        .expect("the cancel, after the outage");
    assert_eq!(cancelled.data["to_status"], "cancelled");
    assert_eq!(cancelled.data["node_id"], other.node_id.as_str());
    assert!(
        stream.next(Duration::from_millis(500)).await.is_none(),
        "once"
    );
}

/// Ends the sessions listening for events on this test's database; how many there were.
async fn end_listening_sessions(app: &TestApp) -> i64 {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Ended {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let ended: Ended = diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .get_result(&mut app.db().await)
    .await
    .unwrap();
    ended.n
}

#[actix_web::test]
async fn streams_are_refused_as_the_matching_reads_are_each_naming_the_reason() {
    // Arrange: a booking of one rider; a second rider and a driver with no part in it.
    let app = spawn_app().await;
    let (rider, stranger) = (app.rider().await, app.rider().await);
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let cases: [(&str, Option<&str>, String, u16, &str); 9] = [
        (
            "no token",
            None,
            format!("/api/bookings/{booking}/stream"),
            401,
            "missing_token",
        ),
        (
            "a stranger's booking",
            Some("rider"),
            format!("/api/bookings/{booking}/stream"),
            403,
            "not_booking_party",
        ),
        (
            "unknown booking",
            Some("ops"),
            "/api/bookings/999999/stream".into(),
            404,
            "booking_not_found",
        ),
        (
            "bad booking id",
            Some("ops"),
            "/api/bookings/x/stream".into(),
            400,
            "id",
        ),
        (
            "another rider's stream",
            Some("rider"),
            format!("/api/users/{rider}/stream"),
            403,
            "subject_mismatch",
        ),
        (
            "a driver's stream as a rider",
            Some("rider"),
            format!("/api/users/{driver}/stream?user_type=driver"),
            403,
            "subject_mismatch",
        ),
        (
            "bad user type",
            Some("ops"),
            format!("/api/users/{rider}/stream?user_type=bus"),
            400,
            "user_type",
        ),
        (
            "the cluster stream as a driver",
            Some("driver"),
            "/api/cluster/stream".into(),
            403,
            "ops_required",
        ),
        (
            "a negative after",
            Some("ops"),
            "/api/cluster/stream?after=-1".into(),
            400,
            "after",
        ),
    ];
    for (case, who, path, status, reason) in cases {
        let subject = match who {
            Some("rider") => Some(format!("rider:{stranger}")),
            Some("driver") => Some(format!("driver:{driver}")),
            Some(_) => Some("ops:alice".to_owned()),
            None => None,
        };
        let reply = match &subject {
            Some(subject) => app.as_subject(subject, Method::GET, &path, None).await,
            None => app.as_caller(None, Method::GET, &path, None).await,
        };
        assert_eq!(reply.status.as_u16(), status, "{case}: {:#}", reply.body);
        refused_for(&reply.body, reason, case);
    }
    // A bad Last-Event-ID names the header; a bad `after` is refused even when a good
    // Last-Event-ID would win over it.
    for (query, header, reason) in [
        ("", "yesterday", "Last-Event-ID"),
        ("?after=x", "0", "after"),
    ] {
        let reply = app
            .client
            .get(format!("{}/api/cluster/stream{query}", app.address))
            .header("Last-Event-ID", header)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 400, "{reason}");
        let body: Value = reply.json().await.unwrap();
        refused_for(&body, reason, reason);
    }
}

/// The refusal names `reason`: its error code, or the field at fault.
fn refused_for(body: &Value, reason: &str, case: &str) {
    let text = body.to_string();
    assert!(
        body["error"] == reason || text.contains(&format!("\"{reason}\"")),
        "{case}: {body:#}"
    );
}

#[actix_web::test]
async fn a_statement_writing_many_events_announces_them_all_in_payloads_postgres_accepts() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use futures::StreamExt;

    // Arrange: a booking, and a session listening on the events' channel.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let mut listener = AsyncPgConnection::establish(&app.db_url).await.unwrap();
    diesel::sql_query("LISTEN ridelock_events")
        .execute(&mut listener)
        .await
        .unwrap();

    // Act: one statement writes 300 events with long request ids (about 90 KB of JSON).
    diesel::sql_query(format!(
        "INSERT INTO booking_events \
           (booking_id, from_status, to_status, node_id, fencing_token, request_id, actor) \
         SELECT {booking}, 'pending', 'pending', 'n1', 1, \
                repeat('r', 100) || n, 'ops:test' FROM generate_series(1, 300) AS n"
    ))
    .execute(&mut app.db().await)
    .await
    .unwrap();

    // Assert: every event announced once, in id order, in payloads under PostgreSQL's limit.
    let mut ids = Vec::new();
    let mut payloads = 0;
    let mut notifications = std::pin::pin!(listener.notifications_stream());
    while ids.len() < 300 {
        let next = tokio::time::timeout(ARRIVES, notifications.next()).await;
        let notification = next.expect("announced").unwrap().unwrap();
        assert!(
            notification.payload.len() <= 7000,
            "{}",
            notification.payload.len()
        );
        let events: Vec<Value> = serde_json::from_str(&notification.payload).unwrap();
        ids.extend(events.iter().map(|e| e["id"].as_i64().unwrap()));
        payloads += 1;
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
    assert!(payloads > 10, "split: {payloads} payloads");
}

#[actix_web::test]
async fn a_stream_that_falls_behind_reads_the_rest_from_the_trail_each_event_once() {
    use diesel_async::RunQueryDsl;

    // Arrange: streams that may queue one event only, and one open on a booking, from its
    // creation on.
    let app = spawn_app_with(|s| s.streams.buffer = 1).await;
    let rider = app.rider().await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let created = trail(&app, booking, "ops:tests").await[0]["id"]
        .as_i64()
        .unwrap();
    let url = booking_stream(&app, booking);
    let mut stream = EventStream::open(&url, "ops:alice", Some(created)).await;

    // Act: 50 events in one statement, far more than the stream may queue.
    diesel::sql_query(format!(
        "INSERT INTO booking_events \
           (booking_id, from_status, to_status, node_id, fencing_token, request_id, actor) \
         SELECT {booking}, 'pending', 'pending', 'n1', 1, 'burst-' || n, 'ops:test' \
         FROM generate_series(1, 50) AS n"
    ))
    .execute(&mut app.db().await)
    .await
    .unwrap();

    // Assert: all 50, in order, none twice.
    let events = stream.take(50, ARRIVES).await;
    let requests: Vec<String> = events
        .iter()
        .map(|e| e.data["request_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (1..=50).map(|n| format!("burst-{n}")).collect();
    assert_eq!(requests, expected);
    assert!(stream.next(Duration::from_millis(300)).await.is_none());
}

#[actix_web::test]
async fn an_event_too_large_to_announce_still_commits_and_reaches_its_streams_from_the_trail() {
    use diesel_async::RunQueryDsl;

    // Arrange: a booking and its stream from its creation on.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let created = trail(&app, booking, "ops:tests").await[0]["id"]
        .as_i64()
        .unwrap();
    let mut stream =
        EventStream::open(&booking_stream(&app, booking), "ops:alice", Some(created)).await;

    // Act: an event whose JSON passes PostgreSQL's 8,000-byte payload limit on its own (the
    // table bounds no request id's length; the API does, at 128).
    let written = diesel::sql_query(format!(
        "INSERT INTO booking_events \
           (booking_id, from_status, to_status, node_id, fencing_token, request_id, actor) \
         VALUES ({booking}, 'pending', 'pending', 'n1', 1, 'large-' || repeat('a', 8000), NULL)"
    ))
    .execute(&mut app.db().await)
    .await;

    // Assert: written all the same, and on the stream.
    assert_eq!(written, Ok(1));
    let event = stream.next(ARRIVES).await.expect("the large event");
    assert!(event.data["request_id"]
        .as_str()
        .is_some_and(|r| r.starts_with("large-") && r.len() == 8006));
}

#[actix_web::test]
async fn the_cluster_stream_tells_every_node_s_lease_changes_and_figures() {
    // Arrange: two nodes on one database; the ops stream is on the first, the booking is
    // created (and its lease taken) through the second.
    let app = spawn_app().await;
    let other = app.second_node().await;
    let mut ops = EventStream::open(
        &format!("{}/api/cluster/stream", app.address),
        "ops:alice",
        None,
    )
    .await;
    let rider = app.rider().await;
    let booking = other.booking(rider, PICKUP.0, PICKUP.1).await;
    let key_suffix = format!(":{booking}");
    let of_booking = |data: &Value| data["key"].as_str().unwrap().ends_with(&key_suffix);

    // Act: a cancel through the first node, which finds the lease held by the second.
    app.post(
        format!("/api/bookings/{booking}/cancel"),
        json!({ "reason": "test", "user_id": rider, "user_type": "rider" }),
    )
    .await
    .expect(200, None);

    // Assert: the grant on the second node, the refusal on the first naming the holder, and
    // each node's figures, all on the first node's stream.
    let granted = ops
        .live_event("lease", ARRIVES, |d| {
            of_booking(d) && d["change"] == "granted"
        })
        .await
        .expect("the grant");
    assert_eq!(granted["node"], other.node_id.as_str());
    let contended = ops
        .live_event("lease", ARRIVES, |d| {
            of_booking(d) && d["change"] == "contended"
        })
        .await
        .expect("the refusal");
    assert_eq!(contended["node"], app.node_id.as_str());
    assert_eq!(contended["other"], other.node_id.as_str());
    for node in [&app, &other] {
        let figures = ops
            .live_event("node", ARRIVES, |d| d["node"] == node.node_id.as_str())
            .await
            .unwrap_or_else(|| panic!("{}'s figures", node.node_id));
        assert_eq!(figures["address"], node.address.as_str(), "{figures}");
        assert_eq!(figures["backend"], "redis", "{figures}");
        assert!(figures["requests_per_s"].as_f64().is_some(), "{figures}");
        assert!(figures["open_bookings"].is_object(), "{figures}");
    }
    let streams = ops
        .live_event("node", ARRIVES, |d| d["node"] == app.node_id.as_str())
        .await
        .expect("figures again a second later");
    assert_eq!(streams["streams"], 1, "this stream: {streams}");
}

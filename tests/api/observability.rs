//! What operators look at: health, liveness and readiness, lock statistics and the Redis lease
//! keys, request ids on every response, each booking's audit trail, and the 404 envelope of
//! unknown routes.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use serde_json::{json, Value};

use crate::support::app::{spawn_app, spawn_app_with, spawn_node, TestApp};
use crate::support::fixtures::{booking_body, lease_key, Api, PICKUP};
use crate::support::metrics;
use crate::support::poll::{self, eventually};
use crate::support::proxy::{host_port, Proxy};
use crate::support::reply::Reply;
use reqwest::Method;
use ridelock::config::Secret;

/// Sends a request with an `X-Request-ID` header.
async fn send_with_request_id(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    request_id: &str,
) -> Reply {
    let body = body.map(|b| b.to_string());
    app.request_with_id(method, path, body.as_deref(), Some(request_id))
        .await
}

/// The lock-stats entry for the booking, if listed.
async fn listed_lock(app: &TestApp, booking: i64) -> Option<Value> {
    let stats = app.get("/api/locks/stats").await;
    stats.expect(200, None);
    let resource = json!(format!("booking:{booking}"));
    stats.data()["locks"]
        .as_array()
        .expect("locks list")
        .iter()
        .find(|lock| lock["resource"] == resource)
        .cloned()
}

#[actix_web::test]
async fn health_reports_every_service_up() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let reply = app.get("/api/health").await;

    // Assert
    assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
    assert_eq!(reply.body["success"], json!(true));
    assert!(reply.body["timestamp"].is_string(), "{:#}", reply.body);
    assert!(reply.body["version"].is_string(), "{:#}", reply.body);
    assert_eq!(reply.body["node_id"], json!(app.node_id));
    assert_eq!(
        reply.body["services"],
        json!({ "postgres": "up", "redis": "up", "lease_backend": "redis" })
    );
}

#[actix_web::test]
async fn a_sane_request_id_is_echoed_on_success_and_on_errors() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let ok = send_with_request_id(&app, reqwest::Method::GET, "/api/health", None, "abc-123").await;
    let not_found = send_with_request_id(
        &app,
        reqwest::Method::GET,
        "/api/riders/999999",
        None,
        "err-456",
    )
    .await;
    let invalid = send_with_request_id(
        &app,
        reqwest::Method::POST,
        "/api/bookings",
        Some(json!([])),
        "bad.body:789",
    )
    .await;

    // Assert
    assert_eq!(ok.request_id.as_deref(), Some("abc-123"));
    not_found.expect(404, Some("rider_not_found"));
    assert_eq!(not_found.request_id.as_deref(), Some("err-456"));
    invalid.expect_invalid("body");
    assert_eq!(invalid.request_id.as_deref(), Some("bad.body:789"));
}

#[actix_web::test]
async fn a_request_id_is_generated_when_none_or_an_insane_one_is_sent() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let without = app.get("/api/health").await;
    let other = app.get("/api/health").await;
    let insane = send_with_request_id(
        &app,
        reqwest::Method::GET,
        "/api/health",
        None,
        "has spaces/and slashes",
    )
    .await;
    let unknown_route = app.get("/api/nowhere").await;

    // Assert
    let generated = without.request_id.clone().expect("generated request id");
    assert!(!generated.is_empty());
    assert_ne!(
        Some(generated),
        other.request_id,
        "each request gets its own id"
    );
    let replaced = insane
        .request_id
        .expect("a request id replaces the insane one");
    assert!(!replaced.is_empty());
    assert_ne!(replaced, "has spaces/and slashes");
    assert!(
        unknown_route.request_id.is_some(),
        "even an unknown route carries a request id"
    );
}

#[actix_web::test]
async fn an_unknown_route_is_a_404_envelope() {
    // Arrange
    let app = spawn_app().await;
    let before = app.fingerprint().await;

    // Act
    let under_api = app.get("/api/nowhere").await;
    let outside_api = app.post("/nowhere", json!({})).await;

    // Assert
    under_api.expect(404, None);
    assert!(!under_api.error().is_empty(), "{:#}", under_api.body);
    outside_api.expect(404, None);
    assert!(!outside_api.error().is_empty(), "{:#}", outside_api.body);
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn lock_stats_list_the_lease_of_a_booking_just_assigned() {
    // Arrange: an actor that stays alive (and keeps its lease) for the whole test.
    let app = spawn_app_with(|s| s.booking.idle_stop_ms = 60_000).await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act
    let stats = app.get("/api/locks/stats").await;
    let key_value = app.lease_in_redis(booking);

    // Assert
    stats.expect(200, None);
    let data = stats.data();
    let locks = data["locks"].as_array().expect("locks list");
    assert_eq!(data["totalLocks"], json!(locks.len()));
    let resource = json!(format!("booking:{booking}"));
    let lock = locks
        .iter()
        .find(|lock| lock["resource"] == resource)
        .unwrap_or_else(|| panic!("booking:{booking} listed: {data:#}"));
    let token = app.get(format!("/api/bookings/{booking}")).await.data()["fencing_token"].clone();
    assert!(token.as_i64().expect("token") >= 1);
    assert_eq!(lock["fencing_token"], token, "lock: {lock:#}");
    assert_eq!(lock["owner_node"], json!(app.node_id));
    let lock_id = lock["lockId"].as_str().expect("lockId");
    assert!(
        lock_id.starts_with(&format!("{}:", app.node_id)),
        "lockId names its node: {lock_id}"
    );
    let ttl = lock["ttl"].as_u64().expect("ttl in seconds");
    assert!(
        (1..=2).contains(&ttl),
        "ttl {ttl} s within the test profile's 2 s lease"
    );
    assert_eq!(
        key_value.as_deref(),
        Some(lock_id),
        "GET <prefix>lock:booking:{booking} holds the lockId"
    );
    for counter in [
        "acquired",
        "released",
        "expired",
        "contested",
        "renewed",
        "renewal_failures",
        "lost",
    ] {
        assert!(
            data["counters"][counter].is_u64(),
            "counter {counter}: {data:#}"
        );
    }
    assert!(data["counters"]["acquired"].as_u64() >= Some(1));
    for quantile in ["p50", "p99", "max"] {
        assert!(
            data["acquisition_ms"][quantile].is_number(),
            "acquisition_ms.{quantile}: {data:#}"
        );
    }
    assert!(data["timeout_rate"].is_number(), "{data:#}");
    assert_eq!(data["backend"], json!("redis"));
    assert_eq!(data["node_id"], json!(app.node_id));
}

#[actix_web::test]
async fn an_idle_booking_actor_releases_its_lease() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act: wait, boundedly, for the 1 s idle stop of the test profile.
    let app_ref = &app;
    let key_gone = eventually(Duration::from_secs(5), move || async move {
        app_ref.lease_in_redis(booking).is_none()
    })
    .await;

    // Assert
    assert!(key_gone, "lease key of booking {booking} still in Redis");
    assert_eq!(
        listed_lock(&app, booking).await,
        None,
        "no longer in lock stats"
    );
    let stats = app.get("/api/locks/stats").await;
    assert!(
        stats.data()["counters"]["released"].as_u64() >= Some(1),
        "{:#}",
        stats.body
    );
}

#[actix_web::test]
async fn the_event_trail_records_every_transition_with_its_request_id() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let app_ref = &app;
    let post = move |path: String, body: Value, id: &'static str| async move {
        send_with_request_id(app_ref, reqwest::Method::POST, &path, Some(body), id).await
    };
    let created = post(
        "/api/bookings".to_owned(),
        booking_body(rider, PICKUP.0, PICKUP.1),
        "req-create",
    )
    .await;
    created.expect(201, None);
    let booking = created.data()["id"].as_i64().expect("booking id");
    let b = format!("/api/bookings/{booking}");
    post(format!("{b}/assign"), Value::Null, "req-assign")
        .await
        .expect(200, None);
    post(
        format!("{b}/accept"),
        json!({ "driver_id": driver }),
        "req-accept",
    )
    .await
    .expect(200, None);
    post(
        format!("{b}/complete"),
        json!({ "driver_id": driver, "actual_fare": 17.0 }),
        "req-complete",
    )
    .await
    .expect(200, None);

    // Act
    let reply = app.get(format!("{b}/events")).await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.body["count"], json!(4), "{:#}", reply.body);
    let events = reply.data().as_array().expect("events list");
    let trail: Vec<(Value, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["from_status"].clone(),
                e["to_status"].clone(),
                e["request_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        vec![
            (Value::Null, json!("pending"), json!("req-create")),
            (json!("pending"), json!("assigned"), json!("req-assign")),
            (json!("assigned"), json!("accepted"), json!("req-accept")),
            (json!("accepted"), json!("completed"), json!("req-complete")),
        ]
    );
    assert_eq!(
        events[0]["fencing_token"],
        json!(1),
        "created under the creation token, which its creating node's actor owns"
    );
    let mut last_token = 0;
    for event in events {
        assert_eq!(event["node_id"], json!(app.node_id), "{event:#}");
        assert!(event["created_at"].is_string(), "{event:#}");
        let token = event["fencing_token"].as_i64().expect("fencing token");
        assert!(token >= last_token, "tokens never go back: {events:#?}");
        last_token = token;
    }
    for event in &events[1..] {
        assert!(
            event["fencing_token"].as_i64() >= Some(1),
            "written by an owner: {event:#}"
        );
    }
}

#[actix_web::test]
async fn events_of_an_unknown_booking_are_404() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let unknown = app.get("/api/bookings/999999/events").await;
    let not_an_id = app.get("/api/bookings/abc/events").await;

    // Assert
    unknown.expect(404, Some("booking_not_found"));
    not_an_id.expect_invalid("id");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn metrics_count_requests_by_route_pattern_and_status_in_prometheus_text() {
    // Arrange: a 201, a 404 on a matched route, a 404 on no route, and an assignment (a lease,
    // kept: the actor must not idle out before the metrics are read).
    let app = spawn_app_with(|s| s.booking.idle_stop_ms = 60_000).await;
    let rider = app.rider().await;
    app.get("/api/riders/999999999").await.expect(404, None);
    app.get("/api/no/such/route").await.expect(404, None);
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    assert!(booking > 0);

    // Act
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let node = app.node_id.as_str();
    let assign = "/api/bookings/{id}/assign";
    for (name, labels, expected) in [
        (
            "ridelock_http_requests_total",
            vec![
                ("method", "POST"),
                ("route", "/api/riders"),
                ("status", "201"),
            ],
            1.0,
        ),
        (
            "ridelock_http_requests_total",
            vec![
                ("method", "GET"),
                ("route", "/api/riders/{id}"),
                ("status", "404"),
            ],
            1.0,
        ),
        (
            "ridelock_http_requests_total",
            vec![("method", "GET"), ("route", "unmatched"), ("status", "404")],
            1.0,
        ),
        (
            "ridelock_http_requests_total",
            vec![("method", "POST"), ("route", assign), ("status", "200")],
            1.0,
        ),
        (
            "ridelock_http_request_duration_seconds_count",
            vec![("method", "POST"), ("route", assign)],
            1.0,
        ),
        ("ridelock_lease_acquired_total", vec![("node", node)], 1.0),
        // Acquisition latency is a histogram now, not a gauge with a quantile label.
        (
            "ridelock_lease_acquisition_seconds_count",
            vec![("node", node)],
            1.0,
        ),
        (
            "ridelock_lease_acquisition_seconds_bucket",
            vec![("node", node), ("le", "+Inf")],
            1.0,
        ),
        ("ridelock_leases_held", vec![("node", node)], 1.0),
        ("ridelock_booking_actors", vec![("node", node)], 1.0),
        (
            "ridelock_lease_backend",
            vec![("node", node), ("backend", "redis")],
            1.0,
        ),
        (
            "ridelock_lease_backend",
            vec![("node", node), ("backend", "postgres")],
            0.0,
        ),
        (
            "ridelock_build_info",
            vec![("node", node), ("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        ),
        ("ridelock_stream_subscribers", vec![("node", node)], 0.0),
        ("ridelock_db_pool_waiting", vec![("node", node)], 0.0),
    ] {
        assert_eq!(
            metrics::series(&text, name, &labels),
            Some(expected),
            "{name} {labels:?} in\n{text}"
        );
    }
    let in_use = metrics::series(
        &text,
        "ridelock_db_pool_connections",
        &[("state", "in_use")],
    );
    let most = metrics::series(&text, "ridelock_db_pool_connections", &[("state", "max")]);
    assert!(
        in_use.unwrap() >= 1.0 && most.unwrap() >= in_use.unwrap(),
        "{text}"
    );
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            metrics::series(&text, process, &[("node", node)]).is_some(),
            "{process} in\n{text}"
        );
    }
    assert!(!text.contains("quantile="), "{text}");
    // Every sample line is `name{labels} number`; every family has HELP and TYPE.
    for sample in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = sample.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{sample}");
        let name = series.split('{').next().unwrap();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(text.contains(&format!("# TYPE {family} ")), "{sample}");
        assert!(text.contains(&format!("# HELP {family} ")), "{sample}");
    }
}

#[actix_web::test]
async fn cluster_nodes_lists_every_live_node_and_a_stopped_one_leaves_at_once() {
    // Arrange: two nodes on one database and key prefix. The second announces itself with a
    // 10 s TTL, so its key leaving within 3 s shows a withdrawal, not an expiry.
    let a = spawn_app_with(|s| s.booking.idle_stop_ms = 60_000).await;
    let b = spawn_node(&a.db_name, &a.db_url, &a.redis_prefix, "n2", |s| {
        s.lease.ttl_ms = 10_000;
        s.lease.renew_every_ms = 3_000;
    })
    .await;
    let rider = a.rider().await;
    a.online_driver(PICKUP.0, PICKUP.1).await;
    a.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act / Assert: both listed, each with its own address; n1's next announcement counts the
    // actor and the lease it holds.
    let listed = a.get("/api/cluster/nodes").await;
    listed.expect(200, None);
    let nodes = listed.data().as_array().unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["n1", "n2"]);
    assert_eq!(nodes[0]["address"], a.address.as_str());
    assert_eq!(nodes[1]["address"], b.address.as_str());
    assert_eq!(listed.body["count"], 2);
    let counted = eventually(Duration::from_secs(3), || async {
        let n1 = a.get("/api/cluster/nodes").await.data()[0].clone();
        n1["active_actors"] == 1 && n1["held_leases"] == 1
    })
    .await;
    assert!(counted, "n1 announces its actor and lease");

    b.stop().await;
    let left = eventually(Duration::from_secs(3), || async {
        let listed = a.get("/api/cluster/nodes").await;
        listed.data().as_array().is_some_and(|n| n.len() == 1)
    })
    .await;
    assert!(left, "a stopped node withdraws its membership");
}

#[actix_web::test]
async fn lock_stats_come_in_pages_with_complete_counts() {
    // Arrange: 245 leases in Redis and 5 in PostgreSQL (as while Redis was silent), none of them
    // this node's actors'.
    let app = spawn_app().await;
    let mut redis = app.redis();
    for id in 1..=245 {
        let _: () = redis::cmd("SET")
            .arg(lease_key(&app.redis_prefix, id))
            .arg(format!("n9:{id}"))
            .arg("PX")
            .arg(60_000)
            .query(&mut redis)
            .unwrap();
    }
    diesel::sql_query(format!(
        "INSERT INTO leases (key, value, owner_address, expires_at)
         SELECT '{}lock:booking:' || i, 'n8:' || i, 'http://127.0.0.1:1',
                clock_timestamp() + interval '1 minute'
         FROM generate_series(1001, 1005) i",
        app.redis_prefix
    ))
    .execute(&mut app.db().await)
    .await
    .unwrap();

    // Act: page through 100 at a time.
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/api/locks/stats?limit=100".to_owned(),
            Some(next) => format!("/api/locks/stats?limit=100&after={next}"),
        };
        let page = app.get(path).await;
        page.expect(200, None);
        pages.push(page.data().clone());
        after = page.data()["next"].as_str().map(str::to_owned);
        if after.is_none() || pages.len() > 5 {
            break;
        }
    }

    // Assert: three pages of 100, 100 and 50, each counting all 250; every lease listed once, in
    // key order, with its own value, from either store.
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["locks"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert!(pages.iter().all(|p| p["totalLocks"] == json!(250)));
    let listed: Vec<String> = pages
        .iter()
        .flat_map(|p| p["locks"].as_array().unwrap().clone())
        .map(|lock| {
            let resource = lock["resource"].as_str().unwrap().to_owned();
            let id = resource.trim_start_matches("booking:");
            let owner = if id.parse::<i64>().unwrap() > 1000 {
                "n8"
            } else {
                "n9"
            };
            assert_eq!(lock["lockId"], json!(format!("{owner}:{id}")), "{lock:#}");
            resource
        })
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(listed, sorted, "in key order, each once");
    assert_eq!(listed.len(), 250);

    // And the page parameters are checked like any input.
    app.get("/api/locks/stats?limit=0")
        .await
        .expect_invalid("limit");
    app.get("/api/locks/stats?limit=1001")
        .await
        .expect_invalid("limit");
    app.get("/api/locks/stats?after=")
        .await
        .expect_invalid("after");
    let default = app.get("/api/locks/stats").await;
    assert_eq!(default.data()["locks"].as_array().map(Vec::len), Some(100));
}

#[actix_web::test]
async fn a_key_of_another_type_under_the_lock_pattern_stops_neither_stats_nor_a_restart() {
    // Arrange: another application's hash where lease keys live, and one real lease.
    let app = spawn_app_with(|s| s.booking.idle_stop_ms = 60_000).await;
    let _: () = redis::cmd("HSET")
        .arg(lease_key(&app.redis_prefix, 900000))
        .arg("field")
        .arg("value")
        .query(&mut app.redis())
        .unwrap();
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act
    let stats = app.get("/api/locks/stats").await;
    app.stop().await;
    let restarted = app.restarted(|_| {}).await;

    // Assert: the lease is listed, the foreign key left out of the list, and the node restarted
    // (its start-up clean-up reads the same keys) and serves.
    stats.expect(200, None);
    let resources: Vec<&str> = stats.data()["locks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["resource"].as_str())
        .collect();
    assert_eq!(resources, [format!("booking:{booking}")]);
    restarted
        .get(format!("/api/bookings/{booking}"))
        .await
        .expect(200, None);
}

#[actix_web::test]
async fn a_node_without_postgres_is_alive_but_not_ready_and_ready_again_when_it_is_back() {
    // Arrange: a node whose PostgreSQL connections go through a proxy the test can cut.
    let server = std::env::var("DATABASE_URL").unwrap();
    let proxy = Proxy::start(&host_port(&server)).await;
    let app = spawn_app_with(|s| {
        let through = proxy.url(s.database.url.expose());
        s.database.url = Secret::new(&through);
    })
    .await;
    let probe = |path: &'static str| {
        let app = &app;
        async move { app.as_caller(None, Method::GET, path, None).await }
    };
    assert_eq!(probe("/readyz").await.body["message"], "ready");

    // Act: PostgreSQL goes away.
    proxy.cut();

    // Assert: not ready (once the once-a-second probe looks again), still alive, no token asked.
    let not_ready = poll::until(
        Duration::from_secs(5),
        || probe("/readyz"),
        |reply| reply.status == 503,
    )
    .await
    .expect("/readyz turns 503");
    assert_eq!(not_ready.body["success"], false);
    assert!(not_ready.retry_after.is_some());
    let alive = probe("/livez").await;
    assert_eq!(alive.status, 200);
    assert_eq!(alive.body["message"], "alive");
    assert_eq!(alive.body["node_id"], "n1");
    proxy.heal();
    let ready = poll::until(
        Duration::from_secs(5),
        || probe("/readyz"),
        |reply| reply.status == 200,
    )
    .await;
    assert!(ready.is_ok(), "ready again: {ready:?}");
}

#[actix_web::test]
async fn a_scrape_token_opens_metrics_and_nothing_else() {
    // Arrange: a node with a scrape-only token; a client with no other credential.
    let token = "scrape-".to_owned() + &"s".repeat(40);
    let app = spawn_app_with(|s| s.auth.scrape_token = Secret::new(token.clone())).await;
    let bare = reqwest::Client::new();
    let ask = |path: &str, bearer: Option<&str>| {
        let mut request = bare.get(format!("{}{path}", app.address));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };

    // Act
    let scraped = ask("/metrics", Some(&token)).await.unwrap();
    let elsewhere = ask("/api/locks/stats", Some(&token)).await.unwrap();
    let wrong = ask("/metrics", Some(&format!("{token}x"))).await.unwrap();
    let none = ask("/metrics", None).await.unwrap();

    // Assert: the token scrapes; it is no token anywhere else, and nothing else scrapes.
    assert_eq!(scraped.status().as_u16(), 200);
    assert!(scraped
        .text()
        .await
        .unwrap()
        .contains("ridelock_build_info"));
    for (what, answer) in [("elsewhere", elsewhere), ("wrong", wrong), ("none", none)] {
        assert_eq!(answer.status().as_u16(), 401, "{what}");
    }
}

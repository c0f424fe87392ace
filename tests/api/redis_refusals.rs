//! A Redis that answers but cannot take lease writes (a replica after a failover, full under
//! `noeviction`) is treated exactly like a silent one: leases move to PostgreSQL and back. And a
//! node starts while Redis is down, serves, and takes Redis up when it answers. Each test runs
//! its own `redis-server` (tests/support/redis_server.rs), since it turns that server into
//! something the shared one must never become.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::app::{spawn_app_with, use_own_redis, TestApp};
use crate::support::fixtures::{
    booking_body, geo_index_key, geo_marker_key, lease_key, Api, PICKUP,
};
use crate::support::poll::eventually;
use crate::support::redis_server::RedisServer;
use crate::support::reply::Reply;

/// One answer of the traffic: the step, its status and body.
type Step = (&'static str, u16, Value);

/// Closed-loop lifecycles (create, assign, accept, complete) by `riders` concurrent riders until
/// stopped; every answer's status and step, in order per rider.
struct Traffic {
    stop: Arc<AtomicBool>,
    riders: Vec<tokio::task::JoinHandle<Vec<Step>>>,
}

impl Traffic {
    async fn start(app: &TestApp, riders: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..riders {
            let rider = app.rider().await;
            let (client, base, stop) = (app.client.clone(), app.address.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                let post = |path: String, body: Value| {
                    let request = client.post(format!("{base}{path}")).json(&body);
                    async move {
                        let reply = Reply::send(request).await.unwrap_or_else(|e| panic!("{e}"));
                        (reply.status.as_u16(), reply.body)
                    }
                };
                while !stop.load(Ordering::SeqCst) {
                    let (status, body) = post(
                        "/api/bookings".into(),
                        booking_body(rider, PICKUP.0, PICKUP.1),
                    )
                    .await;
                    seen.push(("create", status, body.clone()));
                    let Some(id) = body["data"]["id"].as_i64() else {
                        continue;
                    };
                    let (status, body) =
                        post(format!("/api/bookings/{id}/assign"), json!(null)).await;
                    seen.push(("assign", status, body.clone()));
                    let Some(driver) = body["data"]["driver"]["id"].as_i64() else {
                        continue;
                    };
                    let step = json!({ "driver_id": driver });
                    let (status, body) = post(format!("/api/bookings/{id}/accept"), step).await;
                    seen.push(("accept", status, body));
                    let done = json!({ "driver_id": driver, "actual_fare": 12.5 });
                    let (status, body) = post(format!("/api/bookings/{id}/complete"), done).await;
                    seen.push(("complete", status, body));
                }
                seen
            }));
        }
        Self {
            stop,
            riders: tasks,
        }
    }

    /// Stops the riders and asserts every step of every lifecycle was answered 2xx.
    async fn stop_and_check(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let mut steps = 0;
        for rider in self.riders {
            for (step, status, body) in rider.await.expect("rider task") {
                assert!(
                    (200..300).contains(&status),
                    "{step} answered {status}: {body:#}"
                );
                steps += 1;
            }
        }
        steps
    }
}

async fn lease_backend(app: &TestApp) -> (Value, Value) {
    let health = app.get("/api/health").await;
    health.expect(200, None);
    let services = &health.body["services"];
    (services["lease_backend"].clone(), services["redis"].clone())
}

/// Waits until health says leases come from `backend`.
async fn wait_for_backend(app: &TestApp, backend: &str, within: Duration) {
    let switched = eventually(within, || async {
        lease_backend(app).await.0 == json!(backend)
    })
    .await;
    assert!(
        switched,
        "lease backend still {:?}",
        lease_backend(app).await
    );
}

/// A node on its own Redis, with drivers around the pickup.
async fn node_on(redis: &RedisServer, drivers: usize) -> TestApp {
    let url = redis.url();
    let app = spawn_app_with(|s| use_own_redis(s, &url)).await;
    for i in 0..drivers {
        app.online_driver(PICKUP.0 + 0.0005 * i as f64, PICKUP.1)
            .await;
    }
    app
}

fn held_in_redis(redis: &RedisServer, app: &TestApp, booking: i64) -> Option<String> {
    redis.cmd(&["GET", &lease_key(&app.redis_prefix, booking)])
}

#[actix_web::test]
async fn a_redis_demoted_to_replica_under_traffic_moves_leases_to_postgres_and_back() {
    // Arrange: a node on its own Redis, with lifecycle traffic; a second, empty Redis to follow.
    let redis = RedisServer::start();
    let primary = RedisServer::start();
    let app = node_on(&redis, 6).await;
    let traffic = Traffic::start(&app, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Act: the node's Redis becomes a replica (as after a failover elsewhere): it answers reads
    // and refuses every write with READONLY.
    let _: String = redis.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);

    // Assert: the node switched to PostgreSQL leases and says so, and traffic went on.
    wait_for_backend(&app, "postgres", Duration::from_secs(3)).await;
    assert_eq!(lease_backend(&app).await.1, json!("down"));
    let rider = app.rider().await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    app.post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await
        .expect(200, None);
    assert_eq!(held_in_redis(&redis, &app, booking), None);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act: it is promoted again.
    let _: String = redis.cmd(&["REPLICAOF", "NO", "ONE"]);

    // Assert: new leases come from Redis again, and no step of the traffic failed.
    wait_for_backend(&app, "redis", Duration::from_secs(3)).await;
    let later = app.booking(rider, PICKUP.0, PICKUP.1).await;
    app.post(format!("/api/bookings/{later}/assign"), json!(null))
        .await
        .expect(200, None);
    assert!(held_in_redis(&redis, &app, later).is_some_and(|v| v.starts_with("n1:")));
    let steps = traffic.stop_and_check().await;
    assert!(steps > 12, "only {steps} steps of traffic ran");
}

#[actix_web::test]
async fn a_redis_full_under_noeviction_moves_leases_to_postgres_and_back() {
    // Arrange: a node on its own Redis.
    let redis = RedisServer::start();
    let app = node_on(&redis, 2).await;
    let rider = app.rider().await;

    // Act: Redis fills up to its maxmemory, with noeviction: every write that needs memory is
    // refused with OOM (deletes and renewals still pass).
    let _: () = redis.cmd(&["SET", "ballast", &"x".repeat(2 << 20)]);
    let info: String = redis.cmd(&["INFO", "memory"]);
    let used: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("used_memory");
    let _: String = redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let _: String = redis.cmd(&[
        "CONFIG",
        "SET",
        "maxmemory",
        &(used - (1 << 20)).to_string(),
    ]);
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let assigned = app
        .post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await;

    // Assert: the assignment was served from a PostgreSQL lease, and health says so.
    assigned.expect(200, None);
    assert_eq!(held_in_redis(&redis, &app, booking), None);
    assert_eq!(
        lease_backend(&app).await,
        (json!("postgres"), json!("down"))
    );

    // Act: memory is freed.
    let _: i64 = redis.cmd(&["DEL", "ballast"]);

    // Assert: leases come from Redis again.
    wait_for_backend(&app, "redis", Duration::from_secs(3)).await;
    let later = app.booking(rider, PICKUP.0, PICKUP.1).await;
    app.post(format!("/api/bookings/{later}/assign"), json!(null))
        .await
        .expect(200, None);
    assert!(held_in_redis(&redis, &app, later).is_some());
}

#[actix_web::test]
async fn a_node_starts_without_redis_serves_from_postgres_and_takes_redis_up_when_it_answers() {
    // Arrange: a previous run of n1 left a lease on a booking in a Redis that saved it to disk
    // and then went down.
    let mut redis = RedisServer::start();
    let first = node_on(&redis, 2).await;
    let rider = first.rider().await;
    let left = first.booking(rider, PICKUP.0, PICKUP.1).await;
    first.stop().await;
    let stale_key = lease_key(&first.redis_prefix, left);
    let _: () = redis.cmd(&["SET", &stale_key, "n1:crashed", "PX", "600000"]);
    let (index, marker) = (
        geo_index_key(&first.redis_prefix),
        geo_marker_key(&first.redis_prefix),
    );
    let _: i64 = redis.cmd(&["DEL", &index, &marker]);
    let _: String = redis.cmd(&["SAVE"]);
    redis.kill();

    // Act: n1 starts again while Redis is down.
    let url = redis.url();
    let app = first.restarted(|s| use_own_redis(s, &url)).await;

    // Assert: it serves: health says Redis is down, search runs in SQL, and a booking is
    // assigned from a PostgreSQL lease (after the TTL wait, within the request's deadline).
    assert_eq!(
        lease_backend(&app).await,
        (json!("postgres"), json!("down"))
    );
    let nearby = app
        .get(format!(
            "/api/drivers/nearby?lat={}&lng={}&radius=1",
            PICKUP.0, PICKUP.1
        ))
        .await;
    nearby.expect(200, None);
    assert_eq!(nearby.data().as_array().map(Vec::len), Some(2));
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    app.post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await
        .expect(200, None);

    // Act: Redis comes back, with the old run's lease in its snapshot.
    redis.restart();

    // Assert: the node takes Redis up: the old lease is cleared, the geo index rebuilt, and the
    // booking the old run held is granted from Redis.
    wait_for_backend(&app, "redis", Duration::from_secs(3)).await;
    assert_eq!(held_in_redis(&redis, &app, left), None);
    let indexed = eventually(Duration::from_secs(3), || async {
        // The driver still online: the other one took the booking assigned above.
        redis.cmd::<i64>(&["ZCARD", &index]) == 1
    })
    .await;
    assert!(indexed, "the geo index was not rebuilt");
    app.post(format!("/api/bookings/{left}/assign"), json!(null))
        .await
        .expect(200, None);
    assert!(held_in_redis(&redis, &app, left).is_some_and(|v| v != "n1:crashed"));
}

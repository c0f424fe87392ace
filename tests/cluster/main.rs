//! The cluster suite: three real `ridelock` processes on the real PostgreSQL and Redis, requests
//! spread over them, and nodes killed, paused and stopped under traffic. Every claim is checked
//! from PostgreSQL afterwards: one writer per fencing token, tokens never going back, no driver
//! in two bookings at once (from the audit trail, and no unique violation in any node's log),
//! every acknowledged write present.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dashboard;
mod privacy;
mod streams;
#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;

use support::audit::assert_one_writer_per_token;
use support::cluster::{Cluster, Setup};
use support::database::{self, a_backend_waits_on_a_lock, Event, RowLock};
use support::faults::Fault;
use support::fixtures::{Api, TTL};
use support::poll::eventually;
use support::reply::Reply;

/// An acknowledged (2xx) transition, as the client saw it.
#[derive(Debug, Clone)]
struct Ack {
    booking: i64,
    status: &'static str,
    token: i64,
    node: String,
    /// When the step's first attempt was sent, and when the 2xx arrived.
    first_sent: Instant,
    at: Instant,
}

/// Per booking, accept then complete, sent round-robin over `via` and retried on 503 or a lost
/// connection until acknowledged, or until a 409 shows an earlier attempt (whose answer was
/// lost) did it. Booking `i` starts after `i × stagger`, so the steps are spread over time.
async fn drive(
    cluster: &Cluster,
    pairs: &[(i64, i64)],
    via: &[usize],
    stagger: Duration,
) -> Vec<Ack> {
    let tasks = pairs
        .iter()
        .enumerate()
        .map(|(i, &(booking, driver))| async move {
            tokio::time::sleep(stagger * i as u32).await;
            let steps = [
                ("accept", "accepted", json!({ "driver_id": driver })),
                (
                    "complete",
                    "completed",
                    json!({ "driver_id": driver, "actual_fare": 21.5 }),
                ),
            ];
            let mut acks = Vec::new();
            let mut attempt = i;
            for (action, status, body) in steps {
                let first_sent = Instant::now();
                loop {
                    assert!(
                        first_sent.elapsed() < Duration::from_secs(20),
                        "booking {booking} never got its {action} through"
                    );
                    let node = via[attempt % via.len()];
                    attempt += 1;
                    let path = format!("/api/bookings/{booking}/{action}");
                    match cluster.post(node, &path, body.clone()).await {
                        Ok(reply) if reply.status == 200 => {
                            acks.push(Ack {
                                booking,
                                status,
                                token: reply.data()["fencing_token"].as_i64().unwrap(),
                                node: reply.served_by.clone().unwrap(),
                                first_sent,
                                at: Instant::now(),
                            });
                            break;
                        }
                        // An earlier attempt landed but its answer was lost with its node.
                        Ok(reply) if reply.status == 409 && reached(&reply, status) => break,
                        Ok(reply) if reply.status == 503 => {}
                        Err(_) => {}
                        Ok(reply) => panic!("{action} of {booking}: {:#}", reply.body),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            acks
        });
    join_all(tasks).await.into_iter().flatten().collect()
}

/// The booking in a 409 is already at `status` or past it.
fn reached(reply: &Reply, status: &str) -> bool {
    let now = reply.data()["booking"]["status"].as_str().unwrap_or("");
    now == status || (status == "accepted" && now == "completed")
}

/// Every acknowledged transition is in the trail, under the token the client was told.
fn assert_acks_recorded(acks: &[Ack], events: &[Event]) {
    for ack in acks {
        assert!(
            events.iter().any(|e| e.booking_id == ack.booking
                && e.to_status == ack.status
                && e.fencing_token == ack.token
                && e.node_id == ack.node),
            "acknowledged but not in the trail: {ack:?}"
        );
    }
}

/// How long each step acknowledged after `fault` waited past the later of its first attempt and
/// the fault, longest first.
fn recoveries(acks: &[Ack], fault: Instant) -> Vec<Duration> {
    let mut waits: Vec<Duration> = acks
        .iter()
        .filter(|a| a.at > fault)
        .map(|a| a.at.duration_since(a.first_sent.max(fault)))
        .collect();
    waits.sort_unstable_by(|a, b| b.cmp(a));
    waits
}

/// n1 owns 30 assigned bookings; accepts and completes for them flow through n2 and n3 (so they
/// are forwarded to n1), and 300 ms in, `fault` hits n1. The acknowledgements, the fault's
/// time, and the bookings.
async fn traffic_with_fault_on_n1(
    cluster: &Cluster,
    fault: Fault,
) -> (Vec<Ack>, Instant, Vec<(i64, i64)>) {
    let pairs = cluster.owned_by(0, 30).await;
    let traffic = drive(cluster, &pairs, &[1, 2], Duration::from_millis(20));
    let fault = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        fault.apply(cluster).await;
        Instant::now()
    };
    let (acks, at) = tokio::join!(traffic, fault);
    (acks, at, pairs)
}

/// After [`traffic_with_fault_on_n1`]: every step landed, and the trail and drivers are sound.
async fn assert_traffic_landed(cluster: &Cluster, acks: &[Ack], pairs: &[(i64, i64)]) {
    let events = assert_one_writer_per_token(&mut cluster.db().await).await;
    assert_acks_recorded(acks, &events);
    let statuses = database::statuses(&mut cluster.db().await).await;
    for (booking, _) in pairs {
        assert_eq!(statuses[booking], "completed", "booking {booking}");
    }
    cluster.assert_no_driver_booked_twice().await;
}

/// Prints the longest waits after a fault, for the record.
fn report(fault: &str, waits: &[Duration]) {
    println!(
        "{fault}: {} steps acknowledged after it; longest waits {:?}",
        waits.len(),
        &waits[..waits.len().min(5)]
    );
}

/// `driver` accepts `booking` through node `node`, with an idempotency key of its own.
pub(crate) async fn accept_through(
    cluster: &Cluster,
    node: usize,
    booking: i64,
    driver: i64,
) -> Reply {
    let accept = cluster
        .client
        .post(format!(
            "{}/api/bookings/{booking}/accept",
            cluster.nodes[node].address
        ))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "driver_id": driver }));
    Reply::send(accept).await.unwrap()
}

async fn stat(cluster: &Cluster, node: usize, field: &str) -> i64 {
    let stats = cluster.get(node, "/api/locks/stats").await.unwrap();
    stats.data()[field].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_booking_requested_round_robin_has_one_owner_and_fifty_assigns_one_winner() {
    // Arrange
    let cluster = Cluster::start(3).await;
    let rider = cluster.rider().await;
    cluster.drivers(3).await;
    let booking = cluster.bookings(rider, 1).await[0];
    let path = format!("/api/bookings/{booking}/assign");

    // Act: 50 concurrent assigns, request i to node i mod 3.
    let replies: Vec<Reply> = join_all((0..50).map(|i| cluster.post(i % 3, &path, json!({}))))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // Assert: one winner, 49 refusals, all decided by one node's actor, which holds the lease.
    let won: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 1, "{replies:#?}");
    for reply in &replies {
        if reply.status != 200 {
            reply.expect_status(409);
            assert_eq!(
                reply.body["error"], "booking_not_pending",
                "{:#}",
                reply.body
            );
        }
    }
    let owner = won[0].served_by.clone().unwrap();
    assert!(
        replies
            .iter()
            .all(|r| r.served_by.as_deref() == Some(owner.as_str())),
        "every request ran on the owner's actor"
    );
    let lease = cluster
        .lease(booking)
        .expect("the owner still holds the lease");
    assert!(
        lease.starts_with(&format!("{owner}:")),
        "lease {lease} vs owner {owner}"
    );
    for (i, node) in cluster.nodes.iter().enumerate() {
        let (actors, held) = (
            stat(&cluster, i, "active_actors").await,
            stat(&cluster, i, "held_leases").await,
        );
        if node.id == owner {
            assert_eq!((actors, held), (1, 1), "{}", node.id);
        } else {
            assert_eq!((actors, held), (0, 0), "{}", node.id);
            assert!(cluster.metric(i, "ridelock_forwards_sent_total").await >= 1.0);
        }
    }
    let events = assert_one_writer_per_token(&mut cluster.db().await).await;
    let assigned: Vec<_> = events
        .iter()
        .filter(|e| e.to_status == "assigned")
        .collect();
    assert_eq!(assigned.len(), 1, "{events:#?}");
    assert_eq!(assigned[0].node_id, owner);
    cluster.assert_no_driver_booked_twice().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_bookings_against_twenty_drivers_across_nodes_book_no_driver_twice() {
    // Arrange
    let cluster = Cluster::start(3).await;
    let rider = cluster.rider().await;
    cluster.drivers(20).await;
    let bookings = cluster.bookings(rider, 200).await;

    // Act: every booking assigned twice at once, through two different nodes.
    let requests = bookings.iter().enumerate().flat_map(|(i, booking)| {
        let path = format!("/api/bookings/{booking}/assign");
        [(i % 3, path.clone()), ((i + 1) % 3, path)]
    });
    // A 503 (a pool or deadline exhausted under this burst on two cores) is retried: it means
    // "not done", and the invariants below must hold whatever the retries do.
    let replies: Vec<Reply> = join_all(requests.map(|(node, path)| {
        let cluster = &cluster;
        async move {
            let give_up = Instant::now() + Duration::from_secs(30);
            loop {
                let reply = cluster.post(node, &path, json!({})).await.unwrap();
                if reply.status != 503 || Instant::now() > give_up {
                    return reply;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }))
    .await;

    // Assert: twenty winners (one per driver), every other answer a 409, and PostgreSQL agrees.
    let won: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 20, "one assignment per driver");
    for reply in &replies {
        if reply.status != 200 {
            reply.expect_status(409);
        }
    }
    let drivers: std::collections::HashSet<i64> = won
        .iter()
        .map(|r| r.data()["driver"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(drivers.len(), 20, "no driver won twice");
    let statuses = database::statuses(&mut cluster.db().await).await;
    for reply in &won {
        let id = reply.data()["booking"]["id"].as_i64().unwrap();
        assert_eq!(statuses[&id], "assigned");
    }
    assert_eq!(statuses.values().filter(|s| *s == "assigned").count(), 20);
    cluster.assert_no_driver_booked_twice().await;
    assert_one_writer_per_token(&mut cluster.db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_s_bookings_are_served_elsewhere_within_the_ttl_with_higher_tokens() {
    // Arrange
    let mut cluster = Cluster::start(3).await;

    // Act: n1, owner of 30 busy bookings (token 1), is killed -9 in the middle of the traffic.
    let (acks, killed_at, pairs) = traffic_with_fault_on_n1(&cluster, Fault::Kill(0)).await;
    assert!(cluster
        .exit_status(0, Duration::from_secs(5))
        .await
        .is_some());

    // Assert
    let waits = recoveries(&acks, killed_at);
    report("kill -9", &waits);
    assert!(!waits.is_empty(), "traffic went on after the kill");
    assert!(
        waits[0] <= TTL + Duration::from_secs(1),
        "served again within TTL + 1 s: {waits:?}"
    );
    // A step first sent after the kill can only have been served by a new owner. (One sent
    // before may carry n1's answer, relayed after the kill.)
    for ack in acks.iter().filter(|a| a.first_sent > killed_at) {
        assert_ne!(ack.node, "n1", "{ack:?}");
        assert!(ack.token >= 2, "a new owner, a higher token: {ack:?}");
    }
    assert_traffic_landed(&cluster, &acks, &pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owner_s_booking_whose_lease_outlasts_the_deadline_is_refused_at_once() {
    // Arrange: a lease longer than a request's 5 s deadline, on a booking n1 owns.
    let mut setup = Setup::from_env(3);
    setup
        .env
        .push(("RIDELOCK_LEASE__TTL_MS".into(), "20000".into()));
    setup
        .env
        .push(("RIDELOCK_LEASE__RENEW_EVERY_MS".into(), "2000".into()));
    let cluster = Cluster::start_on(setup).await;
    let (booking, driver) = cluster.owned_by(0, 1).await[0];
    let lease = cluster.lease(booking);
    Fault::Kill(0).apply(&cluster).await;
    Fault::Kill(0).prove(&cluster).await;

    // Act: the next step, asked of n2, whose connection to n1 is refused.
    let accept = accept_through(&cluster, 1, booking, driver).await;

    // Assert: refused as out of reach, without waiting for a lease that outlasts the request;
    // nothing moved or written.
    assert_eq!(accept.status, 503, "{:#}", accept.body);
    assert_eq!(accept.error(), "lease_unavailable");
    assert!(accept.retry_after.is_some());
    assert_eq!(
        cluster
            .metric(1, "ridelock_forwards_unreachable_total")
            .await,
        1.0
    );
    assert_eq!(cluster.lease(booking), lease, "the lease stays n1's");
    let stored = database::stored(&mut cluster.db().await).await;
    assert_eq!(stored[&booking].fencing_token, 1);
    assert_eq!(
        database::statuses(&mut cluster.db().await).await[&booking],
        "assigned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_for_two_ttls_is_taken_over_and_fenced_off_when_it_wakes() {
    // Arrange: n1 owns 10 assigned bookings.
    let cluster = Cluster::start(3).await;
    let pairs = cluster.owned_by(0, 10).await;

    // Act: pause n1. Each booking is accepted through n2 meanwhile, and a complete for it is
    // queued at the paused n1 itself; after 2 × TTL, n1 wakes and handles what it queued.
    Fault::Pause(0).apply(&cluster).await;
    let paused_at = Instant::now();
    let accepts = join_all(pairs.iter().map(|&(booking, driver)| {
        let cluster = &cluster;
        async move {
            let path = format!("/api/bookings/{booking}/accept");
            let reply = cluster
                .post(1, &path, json!({ "driver_id": driver }))
                .await
                .unwrap();
            (reply, paused_at.elapsed())
        }
    }));
    let completes_at_the_sleeper = join_all(pairs.iter().map(|&(booking, driver)| {
        let cluster = &cluster;
        async move {
            let path = format!("/api/bookings/{booking}/complete");
            let body = json!({ "driver_id": driver, "actual_fare": 19.0 });
            cluster.post(0, &path, body).await.unwrap()
        }
    }));
    let wake = async {
        tokio::time::sleep(TTL * 2).await;
        Fault::Pause(0).undo(&cluster).await;
        Instant::now()
    };
    let (accepted, completed, woke_at) = tokio::join!(accepts, completes_at_the_sleeper, wake);

    // Assert: n2 took every booking over within TTL + 1 s, under token 2.
    let longest = accepted.iter().map(|(_, took)| *took).max().unwrap();
    println!("SIGSTOP 2×TTL: takeover of 10 bookings took at most {longest:?}");
    for (reply, _) in &accepted {
        reply.expect_status(200);
        assert_eq!(reply.served_by.as_deref(), Some("n2"));
        assert_eq!(reply.data()["fencing_token"], json!(2), "{:#}", reply.body);
    }
    assert!(longest <= TTL + Duration::from_secs(1), "{longest:?}");
    // What n1 found queued on waking did not run on its stale actors (token 1): they stepped
    // down, and the completes ran on the new owner.
    for reply in &completed {
        reply.expect_status(200);
        assert_eq!(reply.served_by.as_deref(), Some("n2"), "{:#}", reply.body);
        assert_eq!(reply.data()["fencing_token"], json!(2));
    }
    // The trail: token 1 (n1's) wrote nothing after the pause; one writer per token throughout.
    let events = assert_one_writer_per_token(&mut cluster.db().await).await;
    let paused_wall = chrono::Utc::now() - chrono::Duration::from_std(paused_at.elapsed()).unwrap();
    for event in events.iter().filter(|e| e.fencing_token == 1) {
        assert_eq!(event.node_id, "n1");
        assert!(
            event.created_at < paused_wall,
            "a stale write landed: {event:?}"
        );
    }
    assert!(woke_at > paused_at);
    cluster.assert_no_driver_booked_twice().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_for_half_a_ttl_keeps_its_bookings() {
    // Arrange: n1 owns 5 assigned bookings; note its lease values.
    let cluster = Cluster::start(3).await;
    let pairs = cluster.owned_by(0, 5).await;
    let leases: HashMap<i64, String> = pairs
        .iter()
        .map(|(booking, _)| (*booking, cluster.lease(*booking).unwrap()))
        .collect();

    // Act: pause n1 for TTL / 2, just after one of its renewals (so the pause, not the time
    // since the last heartbeat, is what is measured), while accepts arrive through n2.
    let renewed = cluster.metric(0, "ridelock_lease_renewed_total").await;
    let synced = eventually(Duration::from_secs(2), || async {
        cluster.metric(0, "ridelock_lease_renewed_total").await > renewed
    })
    .await;
    assert!(synced, "n1 renews its leases");
    Fault::Pause(0).apply(&cluster).await;
    let accepts = join_all(pairs.iter().map(|&(booking, driver)| {
        let cluster = &cluster;
        async move {
            let path = format!("/api/bookings/{booking}/accept");
            cluster
                .post(1, &path, json!({ "driver_id": driver }))
                .await
                .unwrap()
        }
    }));
    let wake = async {
        tokio::time::sleep(TTL / 2).await;
        Fault::Pause(0).undo(&cluster).await;
    };
    let (accepted, ()) = tokio::join!(accepts, wake);

    // Assert: no takeover. n1 answered every accept under its token 1 and kept its leases.
    for reply in &accepted {
        reply.expect_status(200);
        assert_eq!(reply.served_by.as_deref(), Some("n1"), "{:#}", reply.body);
        assert_eq!(reply.data()["fencing_token"], json!(1));
    }
    for (booking, value) in &leases {
        assert_eq!(
            cluster.lease(*booking).as_ref(),
            Some(value),
            "booking {booking}"
        );
    }
    assert_eq!(stat(&cluster, 1, "held_leases").await, 0);
    let events = assert_one_writer_per_token(&mut cluster.db().await).await;
    assert!(events
        .iter()
        .filter(|e| e.fencing_token > 0)
        .all(|e| e.node_id == "n1" && e.fencing_token == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_with_sigterm_under_load_hands_its_bookings_over_without_a_ttl_wait() {
    // Arrange
    let mut cluster = Cluster::start(3).await;

    // Act: n1, owner of 30 busy bookings, gets SIGTERM in the middle of the traffic.
    let (acks, termed_at, pairs) = traffic_with_fault_on_n1(&cluster, Fault::Terminate(0)).await;

    // Assert: n1 drained and exited cleanly; no step waited anywhere near a TTL.
    let exit = cluster.exit_status(0, Duration::from_secs(10)).await;
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    let waits = recoveries(&acks, termed_at);
    report("SIGTERM", &waits);
    assert!(!waits.is_empty());
    assert!(
        waits[0] < TTL / 2,
        "handed over without waiting for the TTL: {waits:?}"
    );
    // n1 gave its leases back itself rather than letting them expire.
    assert_eq!(cluster.leases_of("n1"), 0, "n1 left leases behind");
    let log = cluster.log(0);
    let released = log
        .lines()
        .find_map(|line| line.split("leases_released=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    assert!(
        released.is_some_and(|n| n > 0),
        "n1's shutdown line:\n{log}"
    );
    assert_traffic_landed(&cluster, &acks, &pairs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_internal_call_is_refused_and_writes_nothing() {
    // Arrange: a pending booking with a driver available, so a call that got through would write.
    let cluster = Cluster::start(3).await;
    let rider = cluster.rider().await;
    cluster.drivers(1).await;
    let booking = cluster.bookings(rider, 1).await[0];
    let before = database::events(&mut cluster.db().await).await.len();

    // Act: an outsider calls the internal endpoint with a signature it made up.
    let forged = cluster
        .client
        .post(format!(
            "{}/internal/bookings/{booking}",
            cluster.nodes[1].address
        ))
        .header("x-ridelock-node", "n1")
        .header("x-ridelock-hops", "1")
        .header("x-ridelock-budget-ms", "5000")
        .header(
            "x-ridelock-timestamp",
            ridelock::cluster::auth::now_ms().to_string(),
        )
        .header("x-ridelock-signature", "00".repeat(32))
        .body(r#"{"action":{"op":"assign"},"actor":"ops:test"}"#);
    let forged = Reply::send(forged).await.unwrap();

    // Assert
    assert_eq!(forged.status, 401);
    assert_eq!(forged.body["error"], "cluster_auth_failed");
    assert_eq!(
        database::events(&mut cluster.db().await).await.len(),
        before,
        "nothing written"
    );
    assert_eq!(
        database::statuses(&mut cluster.db().await).await[&booking],
        "pending"
    );
    assert_eq!(
        cluster.metric(1, "ridelock_forwards_refused_total").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_round_robin_over_three_nodes_keep_every_invariant() {
    // Arrange
    let cluster = Cluster::start(3).await;
    let cfg = ridelock_loadtest::LoadConfig {
        urls: cluster.nodes.iter().map(|n| n.address.clone()).collect(),
        scenario: ridelock_loadtest::Scenario::Lifecycle,
        concurrency: 1,
        drivers: 0,
        bookings: 0,
        riders: 16,
        duration: Duration::from_secs(3),
        lifecycles: None,
        rate: None,
        request_timeout: Duration::from_secs(10),
        token: Some(support::auth::token("ops:loadtest")),
        progress: ridelock_loadtest::progress::Progress::Off,
        // The riders' own streams and as many idle ones, spread over the three nodes.
        streams: 32,
    };

    // Act: closed-loop riders, each request of a lifecycle to the next node in turn, so two of
    // every three booking actions are forwarded.
    let report = ridelock_loadtest::run(&cfg).await.unwrap();

    // Assert: every request got its intended answer (the loadtest's own checks, through the
    // API), and PostgreSQL agrees.
    assert!(report.passed(), "{:#?}", report.violations);
    assert!(report.lifecycles > 0);
    let forwarded: f64 =
        join_all((0..3).map(|i| cluster.metric(i, "ridelock_forwards_sent_total")))
            .await
            .into_iter()
            .sum();
    assert!(forwarded > 0.0);
    // Each rider's stream got at least the four steps of every ride it completed, from the
    // node it is connected to and from the others.
    let streams = report.streams.as_ref().unwrap();
    assert_eq!((streams.open, streams.refused), (32, 0));
    assert!(streams.events >= 4 * report.lifecycles, "{streams:?}");
    assert!(
        streams.same_node.count > 0 && streams.other_node.count > 0,
        "{streams:?}"
    );
    assert_one_writer_per_token(&mut cluster.db().await).await;
    cluster.assert_no_driver_booked_twice().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_answer_died_with_its_node_is_answered_as_done_not_refused() {
    // Arrange: n1 owns an assigned booking. The test holds the booking's row lock, so n1's
    // accept will wait inside PostgreSQL.
    let cluster = Cluster::start(3).await;
    let (booking, driver) = cluster.owned_by(0, 1).await[0];
    let locker = RowLock::take(&cluster.db_url, "bookings", booking).await;

    // Act: the accept reaches n2, which forwards it to n1; n1's write queues behind our lock.
    // Then n1 is paused, and the lock released: PostgreSQL commits n1's write on its own, but
    // n1 cannot answer. n2 waits out n1's lease, takes over, and finds the booking accepted.
    let path = format!("/api/bookings/{booking}/accept");
    let accept = cluster.post(1, &path, json!({ "driver_id": driver }));
    let fault = async {
        let watcher = tokio::sync::Mutex::new(cluster.db().await);
        let blocked = eventually(Duration::from_secs(5), || async {
            a_backend_waits_on_a_lock(&mut *watcher.lock().await).await
        })
        .await;
        assert!(blocked, "n1's write should be waiting for the row lock");
        Fault::Pause(0).apply(&cluster).await;
        locker.release().await;
    };
    let (reply, ()) = tokio::join!(accept, fault);
    Fault::Pause(0).undo(&cluster).await;

    // Assert: the client hears that its accept was done (by n1, under token 1), not a 409; the
    // trail has exactly one accept.
    let reply = reply.unwrap();
    reply.expect_status(200);
    assert_eq!(reply.data()["status"], "accepted");
    assert_eq!(reply.served_by.as_deref(), Some("n1"), "{:#}", reply.body);
    let events = assert_one_writer_per_token(&mut cluster.db().await).await;
    let accepts: Vec<_> = events
        .iter()
        .filter(|e| e.to_status == "accepted")
        .collect();
    assert_eq!(accepts.len(), 1, "{events:#?}");
    assert_eq!(
        (accepts[0].node_id.as_str(), accepts[0].fencing_token),
        ("n1", 1)
    );
}

//! A partition between the nodes: n1 cut off from n2 and n3, both ways, while every node still
//! reaches PostgreSQL and Redis and the clients still reach every node, as when the link between
//! two racks fails but the load balancer and the databases are on both sides of it.
//!
//! Each node runs in a network namespace of its own (`support/netns.rs`), and the cut is
//! iptables DROP rules in n1's namespace, committed at once: the nodes call each other at their
//! announced addresses as deployed, and the kernel loses the packets (a connection attempt times
//! out, an open one goes silent), which a proxy between the nodes could only imitate. PostgreSQL
//! and Redis listen on the host's loopback; the nodes reach them through proxies on the host's
//! bridge address, which the cut leaves alone ([`Fault::Partition`]'s proof checks both).
//!
//! What must happen: forwarding across the cut fails, so each side serves what it owns and answers
//! 503 `lease_unavailable` with `Retry-After` for what the other side owns, as soon as it sees the
//! owner it cannot reach renew its lease (not at the request's deadline); the client retries
//! elsewhere with the same key and gets through where the owner is.
//! n1 is alive and keeps renewing its leases in Redis, so the majority must not take its bookings
//! over: a lease held by a live node that others cannot reach is never taken while it is renewed,
//! and no fencing token moves. A booking changes hands only if n1 lets it go: an actor that gets
//! no message for `booking.idle_stop_ms` stops and releases its lease, and the majority, watching
//! the lease, takes it under a new token (the second scenario; the first runs with the suite's
//! 60 s idle stop, so nothing is let go). Once healed, forwarding works again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::support::database;
use crate::support::faults::Fault;
use crate::support::fixtures::{booking_body, Api, PICKUP, TTL};
use crate::support::reply::{ReadError, Reply};
use crate::traffic::server_deadline;
use crate::world::{traffic_for, Chaos};

/// How long the first scenario keeps the nodes apart: three TTLs, so a lease nobody renewed
/// would have expired by then, and longer than a request's deadline, so every probe is
/// answered within it.
const PARTITION: Duration = Duration::from_millis(TTL.as_millis() as u64 * 3);

/// The second scenario's `booking.idle_stop_ms`: longer than it takes to set up the victims,
/// cut and prove the cut, so they are still n1's when the partition starts.
const IDLE_STOP: Duration = Duration::from_secs(3);

/// One request across the partition, and what came back.
#[derive(Debug)]
struct Probe {
    /// The booking and the node asked, for the failure message.
    #[allow(dead_code)]
    asked: (i64, usize),
    took: Duration,
    answer: Result<Reply, String>,
}

/// Each booking's accept, asked once of each node in `via`, with a key of its own, all at once.
async fn probe(chaos: &Chaos, bookings: &[(i64, i64)], via: &[usize]) -> Vec<Probe> {
    let asks = bookings.iter().flat_map(|&(booking, driver)| {
        via.iter().map(move |&node| async move {
            let path = format!("/api/bookings/{booking}/accept");
            let request = chaos
                .cluster
                .client
                .post(format!("{}{path}", chaos.cluster.nodes[node].address))
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&json!({ "driver_id": driver }))
                .timeout(chaos.client.attempt_timeout);
            let sent = Instant::now();
            let answer = Reply::send(request).await.map_err(|e| match e {
                ReadError::Send(error) if error.is_timeout() => format!("hung: {error}"),
                other => other.to_string(),
            });
            Probe {
                asked: (booking, node),
                took: sent.elapsed(),
                answer,
            }
        })
    });
    join_all(asks).await
}

/// Every probe refused in time, the contract's way: 503 `lease_unavailable` with `Retry-After`,
/// within the nodes' own deadline.
fn assert_refused_in_time(probes: &[Probe]) {
    for probe in probes {
        let answer = probe.answer.as_ref().unwrap_or_else(|e| {
            panic!("{probe:?}: no JSON answer across the partition: {e}");
        });
        assert_eq!(answer.status, 503, "served across the partition: {probe:?}");
        assert_eq!(answer.error(), "lease_unavailable", "{probe:?}");
        assert!(answer.retry_after.is_some(), "no Retry-After: {probe:?}");
        assert!(probe.took <= server_deadline(), "answered late: {probe:?}");
    }
}

/// A booking created and assigned through `node` alone: its assign's answer, and how long
/// creating and assigning took. Neither needs another node.
async fn book_through(chaos: &Chaos, node: usize, rider: i64) -> (Reply, Duration) {
    let started = Instant::now();
    let body = booking_body(rider, PICKUP.0, PICKUP.1);
    let created = chaos
        .cluster
        .post(node, "/api/bookings", body)
        .await
        .unwrap();
    created.expect(201, None);
    let booking = created.data()["id"].as_i64().unwrap();
    let path = format!("/api/bookings/{booking}/assign");
    let assigned = chaos.cluster.post(node, &path, json!({})).await.unwrap();
    (assigned, started.elapsed())
}

/// Which side of the cut node `node` is on.
fn side(node: usize) -> &'static str {
    if node == 0 {
        "isolated"
    } else {
        "majority"
    }
}

/// What the traffic's clients saw from each side between `from` and `to`, as figures: 503s by
/// `error` code, acknowledgements and the slowest of them. (Figures only: how many steps of six
/// riders land on either side in a few seconds is luck, not a property.)
fn figures_per_side(chaos: &Chaos, from: Instant, to: Instant) {
    let mut unavailable: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for u in chaos.client.seen.unavailable.lock().unwrap().iter() {
        if u.at >= from && u.at <= to {
            let code = u.what.trim_matches('"').to_owned();
            *unavailable.entry((side(u.via), code)).or_default() += 1;
        }
    }
    let mut acks: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
    for ack in chaos.client.seen.acks.lock().unwrap().iter() {
        if ack.at >= from && ack.at <= to {
            let (n, slowest) = acks.entry(side(ack.via)).or_default();
            *n += 1;
            *slowest = (*slowest).max(ack.took);
        }
    }
    for ((side, code), n) in &unavailable {
        chaos.figure(&format!("503_{side}_{code}"), n);
    }
    for (side, (n, slowest)) in &acks {
        chaos.figure(&format!("acks_{side}"), n);
        chaos.figure(&format!("slowest_2xx_{side}_ms"), slowest.as_millis());
    }
}

/// One of the nodes' forwarding counters (`ridelock_forwards_{name}_total`), summed per side.
async fn forwards(chaos: &Chaos, name: &str) -> BTreeMap<&'static str, f64> {
    let mut per_side = BTreeMap::new();
    for node in 0..chaos.cluster.nodes.len() {
        let n = chaos
            .cluster
            .metric(node, &format!("ridelock_forwards_{name}_total"))
            .await;
        *per_side.entry(side(node)).or_default() += n;
    }
    for (side, n) in &per_side {
        chaos.figure(&format!("forwards_{name}_{side}"), n);
    }
    per_side
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_one_node_from_the_others() {
    let chaos = Chaos::start_in_namespaces("partition", &[]).await;
    // Bookings each side owns: created and assigned through n1 (to be cut off), and through n2.
    let isolated = chaos.victims(0).await;
    let majority = chaos.cluster.owned_by(1, 3).await;
    // A rider and two drivers for the bookings each side makes on its own during the cut.
    let rider = chaos.cluster.rider().await;
    chaos.cluster.drivers(2).await;
    traffic_for(Duration::from_secs(1)).await;
    // Before the cut the namespaces reach each other: it is the cut that stops them.
    let network = chaos.cluster.network();
    for (from, to) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
        let to = network.node_address(to);
        let crossed = network
            .exchange_from(from, to, b"", Duration::from_secs(1))
            .await;
        assert!(
            crossed.is_ok(),
            "from n{}'s namespace to {to} before the cut: {crossed:?}",
            from + 1
        );
    }
    let leases: Vec<_> = isolated
        .iter()
        .map(|&(b, _)| chaos.cluster.lease(b))
        .collect();

    Fault::Partition(0).apply(&chaos.cluster).await;
    let cut = Instant::now();
    Fault::Partition(0).prove(&chaos.cluster).await;
    // Each side asked for the other side's bookings, and to make and serve one of its own,
    // while the traffic goes on.
    let (via_majority, via_isolated, alone_isolated, alone_majority) = tokio::join!(
        probe(&chaos, &isolated, &[1, 2]),
        probe(&chaos, &majority, &[0]),
        book_through(&chaos, 0, rider),
        book_through(&chaos, 2, rider),
    );
    tokio::time::sleep(PARTITION.saturating_sub(cut.elapsed())).await;
    let held: Vec<_> = isolated
        .iter()
        .map(|&(b, _)| chaos.cluster.lease(b))
        .collect();
    let stored = database::stored(&mut chaos.cluster.db().await).await;
    Fault::Partition(0).undo(&chaos.cluster).await;
    let healed = Instant::now();
    // Every booking served again through every side.
    let (isolated_back, majority_back) = tokio::join!(
        chaos.recover(&isolated, &[1, 2], healed),
        chaos.recover(&majority, &[0], healed),
    );
    let full_service = healed.elapsed();
    traffic_for(Duration::from_secs(2)).await;

    figures_per_side(&chaos, cut, healed);
    // The whole traffic's pace: a third of the attempts for a booking land on the side that
    // does not own it, and are refused there for the client to try another node.
    let before = chaos.acks_between(cut - Duration::from_secs(1), cut);
    let during = chaos.acks_between(cut, healed) as f64 / (healed - cut).as_secs_f64();
    chaos.figure("acks_per_s_before_cut", before);
    chaos.figure("acks_per_s_during_cut", format!("{during:.1}"));
    chaos.figure("booked_alone_isolated_ms", alone_isolated.1.as_millis());
    chaos.figure("booked_alone_majority_ms", alone_majority.1.as_millis());
    let unanswered = forwards(&chaos, "unanswered").await;
    let unreachable = forwards(&chaos, "unreachable").await;
    let slowest = |probes: &[Probe]| probes.iter().map(|p| p.took).max().unwrap_or_default();
    chaos.figure(
        "probe_503_via_majority_ms",
        slowest(&via_majority).as_millis(),
    );
    chaos.figure(
        "probe_503_via_isolated_ms",
        slowest(&via_isolated).as_millis(),
    );
    chaos.figure("isolated_served_via_majority", "never_during_partition");
    chaos.figure("isolated_served_after_heal_ms", isolated_back.0.as_millis());
    chaos.figure(
        "majority_served_via_isolated_after_heal_ms",
        majority_back.0.as_millis(),
    );
    chaos.figure("full_service_after_heal_ms", full_service.as_millis());
    let late_503 = chaos
        .client
        .seen
        .unavailable
        .lock()
        .unwrap()
        .iter()
        .filter(|u| u.at > healed)
        .map(|u| u.at - healed)
        .max();
    chaos.figure(
        "last_503_after_heal_ms",
        late_503.map_or("none".to_owned(), |d| d.as_millis().to_string()),
    );

    // Across the cut: refused in time, the contract's way, on both sides; each node saw its
    // forwards go unanswered, and refused them because the owner it could not reach went on
    // renewing its lease (not because the deadline ran out); each side kept serving what it owns.
    assert_refused_in_time(&via_majority);
    assert_refused_in_time(&via_isolated);
    for per_side in [&unanswered, &unreachable] {
        assert!(
            per_side["isolated"] > 0.0 && per_side["majority"] > 0.0,
            "unanswered {unanswered:?}, unreachable {unreachable:?}"
        );
    }
    for ((assigned, took), node) in [(&alone_isolated, "n1"), (&alone_majority, "n3")] {
        assigned.expect(200, None);
        assert_eq!(
            assigned.served_by.as_deref(),
            Some(node),
            "{:#}",
            assigned.body
        );
        assert!(
            *took < Duration::from_secs(1),
            "{node} booked alone in {took:?}"
        );
    }
    // No takeover: n1 kept each lease (the same value: renewed, never taken again) for three
    // TTLs, and each booking its first token.
    assert_eq!(held, leases, "n1's leases during the partition");
    for &(booking, _) in &isolated {
        assert_eq!(stored[&booking].fencing_token, 1, "{:?}", stored[&booking]);
    }
    // Healed: n1's bookings served by n1 itself through the majority, under their first token;
    // the majority's through n1.
    for reply in &isolated_back.1 {
        assert_eq!(reply.served_by.as_deref(), Some("n1"), "{:#}", reply.body);
        assert_eq!(reply.data()["fencing_token"], json!(1));
    }
    for reply in &majority_back.1 {
        assert_eq!(reply.served_by.as_deref(), Some("n2"), "{:#}", reply.body);
    }
    chaos.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_nodes_idle_bookings_move_to_the_majority() {
    let idle_stop = IDLE_STOP.as_millis().to_string();
    let env = [("RIDELOCK_BOOKING__IDLE_STOP_MS", idle_stop.as_str())];
    let chaos = Chaos::start_in_namespaces("partition_idle_stop", &env).await;
    let isolated = chaos.victims(0).await;

    Fault::Partition(0).apply(&chaos.cluster).await;
    let cut = Instant::now();
    Fault::Partition(0).prove(&chaos.cluster).await;
    // Still n1's when the partition started.
    for &(booking, _) in &isolated {
        let lease = chaos.cluster.lease(booking);
        assert!(
            lease.as_deref().is_some_and(|v| v.starts_with("n1:")),
            "booking {booking}'s lease at the cut: {lease:?}"
        );
    }
    // Asked only of the majority, n1's actors get no message, stop when their idle time is up
    // and give their leases back; the majority takes them.
    let (moved, replies) = chaos.recover(&isolated, &[1, 2], cut).await;
    Fault::Partition(0).undo(&chaos.cluster).await;
    traffic_for(Duration::from_secs(1)).await;

    chaos.figure("idle_stop_ms", IDLE_STOP.as_millis());
    chaos.figure("isolated_served_via_majority_ms", moved.as_millis());
    assert!(
        moved < server_deadline() + IDLE_STOP,
        "served after {moved:?}"
    );
    for reply in &replies {
        assert_ne!(reply.served_by.as_deref(), Some("n1"), "{:#}", reply.body);
        assert_eq!(reply.data()["fencing_token"], json!(2), "{:#}", reply.body);
    }
    chaos.finish().await;
}

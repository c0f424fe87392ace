//! PostgreSQL fails: stopped for five seconds or two TTLs, frozen past a request's deadline.
//! Requests fail fast with 503 and the pools recover by themselves.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::faults::Fault;
use crate::support::fixtures::TTL;
use crate::support::poll::eventually;
use crate::traffic;
use crate::world::{traffic_for, Chaos};

/// Takes PostgreSQL away (`fault`: stopped or frozen) for `outage` under traffic: requests fail
/// fast with 503 and `Retry-After`, and the nodes' pools recover by themselves when it is back.
pub async fn postgres_outage(name: &'static str, fault: Fault, outage: Duration) {
    assert!(
        matches!(fault, Fault::StopPostgres | Fault::FreezePostgres),
        "{fault:?} is no PostgreSQL outage"
    );
    let chaos = Chaos::start(name).await;
    traffic_for(Duration::from_secs(1)).await;

    let fault_at = Instant::now();
    fault.apply(&chaos.cluster).await;
    let stopped = Instant::now();
    // It is gone: a connection of our own is refused (stopped) or never answered (frozen).
    fault.prove(&chaos.cluster).await;
    tokio::time::sleep(outage.saturating_sub(fault_at.elapsed())).await;
    let refusals_until = Instant::now();
    fault.undo(&chaos.cluster).await;
    let back = Instant::now();
    chaos.watch.postgres_stopped(fault_at, back);
    // The first lifecycle step answered 2xx after PostgreSQL came back.
    let recovered = eventually(Duration::from_secs(10), || async {
        let acks = chaos.client.seen.acks.lock().unwrap();
        acks.iter().any(|a| a.at > back)
    })
    .await;
    let recovery = {
        let acks = chaos.client.seen.acks.lock().unwrap();
        let first = acks.iter().map(|a| a.at).filter(|at| *at > back).min();
        first.map_or(Duration::MAX, |at| at.duration_since(back))
    };
    traffic_for(Duration::from_secs(2)).await;

    assert!(recovered, "nothing succeeded after PostgreSQL came back");
    // Clients were told: 503s (every one with Retry-After, as `finish` checks) while it was down.
    let told = {
        let unavailable = chaos.client.seen.unavailable.lock().unwrap();
        let during = |u: &&traffic::Unavailable| u.at >= stopped && u.at <= refusals_until;
        unavailable.iter().filter(during).count()
    };
    assert!(told > 0, "no 503 while PostgreSQL was down");
    chaos.figure("outage_ms", back.duration_since(fault_at).as_millis());
    chaos.figure("503_while_down", told);
    chaos.figure("first_2xx_after_back_ms", recovery.as_millis());
    let slowest = chaos.client.counts.slowest_503_ms.load(Ordering::Relaxed);
    // Stopped, a refused connection answers at once; frozen, nothing answers, and every request
    // must still be answered by its deadline (the pool's connection limit, the statement limit
    // or the request deadline itself), never held until the client gives up.
    let bound = if fault == Fault::FreezePostgres {
        traffic::server_deadline() + Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    assert!(
        u128::from(slowest) < bound.as_millis(),
        "a 503 took {slowest} ms: requests hung past {bound:?}"
    );
    if fault == Fault::FreezePostgres {
        let slowest = chaos.client.counts.slowest_2xx_ms.load(Ordering::Relaxed);
        assert!(
            u128::from(slowest) < bound.as_millis(),
            "a 2xx took {slowest} ms: a request was held past its deadline"
        );
    }
    chaos.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_postgres_for_five_seconds() {
    postgres_outage(
        "postgres_stopped_5s",
        Fault::StopPostgres,
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_postgres_for_two_ttls() {
    postgres_outage("postgres_stopped_2ttl", Fault::StopPostgres, TTL * 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_postgres_for_two_ttls() {
    // Two TTLs of the test profile (4 s) are less than a request's deadline (6 s): requests
    // would simply wait the freeze out. It lasts past the deadline too, so that requests caught
    // in it must be answered 503 by their deadline while PostgreSQL still says nothing.
    let outage = (TTL * 2).max(traffic::server_deadline() + Duration::from_secs(1));
    postgres_outage("postgres_frozen_2ttl", Fault::FreezePostgres, outage).await;
}

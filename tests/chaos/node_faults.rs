//! A node fails: killed, paused for two TTLs or half of one, terminated. Its bookings are served
//! again, taken over or waited out as the fault deserves.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::database;
use crate::support::faults::Fault;
use crate::support::fixtures::TTL;
use crate::world::{traffic_for, Chaos, TAKEOVER_BOUND};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_a_node() {
    let chaos = Chaos::start("kill_9").await;
    let victims = chaos.victims(0).await;
    traffic_for(Duration::from_secs(1)).await;

    let fault = Instant::now();
    Fault::Kill(0).apply(&chaos.cluster).await;
    let (recovery, replies) = chaos.recover(&victims, &[1, 2], fault).await;
    traffic_for(Duration::from_secs(2)).await;

    chaos.figure("recovery_ms", recovery.as_millis());
    assert!(
        recovery <= TAKEOVER_BOUND,
        "served again after {recovery:?}"
    );
    for reply in &replies {
        assert!(reply.data()["fencing_token"].as_i64().unwrap() > 1);
    }
    chaos.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_a_node_for_two_ttls_then_sigcont() {
    let chaos = Chaos::start("sigstop_2ttl").await;
    let victims = chaos.victims(0).await;
    traffic_for(Duration::from_secs(1)).await;

    let fault = Instant::now();
    Fault::Pause(0).apply(&chaos.cluster).await;
    let (recovery, replies) = chaos.recover(&victims, &[1, 2], fault).await;
    tokio::time::sleep((TTL * 2).saturating_sub(fault.elapsed())).await;
    Fault::Pause(0).undo(&chaos.cluster).await;
    traffic_for(Duration::from_secs(3)).await;

    chaos.figure("recovery_ms", recovery.as_millis());
    assert!(
        recovery <= TAKEOVER_BOUND,
        "served again after {recovery:?}"
    );
    // Taken over, not waited out: another node served each victim under a newer token.
    for reply in &replies {
        assert_ne!(reply.served_by.as_deref(), Some("n1"), "{:#}", reply.body);
        assert!(reply.data()["fencing_token"].as_i64().unwrap() > 1);
    }
    chaos.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_a_node_for_half_a_ttl() {
    let chaos = Chaos::start("sigstop_half_ttl").await;
    let victims = chaos.victims(0).await;
    traffic_for(Duration::from_secs(1)).await;

    Fault::Pause(0).apply(&chaos.cluster).await;
    tokio::time::sleep(TTL / 2).await;
    // Still asleep: nobody took its leases or wrote its bookings under a new token.
    let stored = database::stored(&mut chaos.cluster.db().await).await;
    for &(booking, _) in &victims {
        let lease = chaos.cluster.lease(booking);
        assert!(
            lease.as_deref().is_some_and(|v| v.starts_with("n1:")),
            "booking {booking}'s lease during the pause: {lease:?}"
        );
        assert_eq!(stored[&booking].fencing_token, 1, "{:?}", stored[&booking]);
    }
    Fault::Pause(0).undo(&chaos.cluster).await;
    let woke = Instant::now();
    let (served_in, replies) = chaos.recover(&victims, &[1, 2], woke).await;
    traffic_for(Duration::from_secs(1)).await;

    // No takeover: the paused owner kept every lease, and its first activation.
    chaos.figure("served_after_wake_ms", served_in.as_millis());
    for reply in &replies {
        assert_eq!(reply.served_by.as_deref(), Some("n1"), "{:#}", reply.body);
        assert_eq!(reply.data()["fencing_token"], json!(1));
    }
    chaos.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_a_node_under_load() {
    let mut chaos = Chaos::start("sigterm").await;
    let victims = chaos.victims(0).await;
    traffic_for(Duration::from_secs(1)).await;

    let fault = Instant::now();
    Fault::Terminate(0).apply(&chaos.cluster).await;
    let (recovery, _) = chaos.recover(&victims, &[1, 2], fault).await;
    traffic_for(Duration::from_secs(2)).await;

    let exit = chaos.cluster.exit_status(0, Duration::from_secs(10)).await;
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    chaos.figure("recovery_ms", recovery.as_millis());
    assert!(recovery < TTL / 2, "handed over after {recovery:?}");
    chaos.finish().await;
}

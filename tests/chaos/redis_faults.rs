//! Redis fails: one node cut off from it, a restart that forgets every lease, thirty seconds
//! gone. The nodes fall back to PostgreSQL's leases and keep serving.

use std::time::{Duration, Instant};

use crate::support::faults::Fault;
use crate::support::fixtures::{geo_marker_key, TTL};
use crate::world::{traffic_for, Chaos};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_one_node_off_from_redis() {
    let chaos = Chaos::start("cut_from_redis").await;
    let victims = chaos.victims(0).await;
    traffic_for(Duration::from_secs(1)).await;

    let fault = Instant::now();
    Fault::CutFromRedis(0).apply(&chaos.cluster).await;
    traffic_for(TTL * 3).await;
    // The cut node's bookings, asked of the others: forwarded to it, or taken over in Redis and
    // then refused by its PostgreSQL lease; served either way.
    let asked = Instant::now();
    let (served, _) = chaos.recover(&victims, &[1, 2], asked).await;
    let healed = Instant::now();
    Fault::CutFromRedis(0).undo(&chaos.cluster).await;
    traffic_for(Duration::from_secs(2)).await;

    let log = chaos.cluster.log(0);
    assert!(log.contains("lease backend switched node=n1 backend=postgres"));
    assert!(log.contains("lease backend switched node=n1 backend=redis"));
    chaos.figure("acks_during_cut", chaos.acks_between(fault, healed));
    chaos.figure("victims_served_ms", served.as_millis());
    chaos.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_redis_without_persistence_while_leases_are_held() {
    let chaos = Chaos::start("redis_restart").await;
    let victims = chaos.victims(0).await;
    traffic_for(Duration::from_secs(1)).await;

    let fault = Instant::now();
    Fault::StopRedis.apply(&chaos.cluster).await;
    Fault::StopRedis.prove(&chaos.cluster).await;
    Fault::StopRedis.undo(&chaos.cluster).await;
    let restarted = fault.elapsed();
    let (recovery, _) = chaos.recover(&victims, &[1, 2], fault).await;
    traffic_for(Duration::from_secs(3)).await;

    // The geo index came back from PostgreSQL.
    let mut redis = redis::Client::open(chaos.cluster.redis_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let marker: bool = redis::cmd("EXISTS")
        .arg(geo_marker_key(&chaos.cluster.prefix))
        .query(&mut redis)
        .unwrap();
    assert!(marker, "the geo index was not rebuilt");
    chaos.figure("redis_down_ms", restarted.as_millis());
    chaos.figure("recovery_ms", recovery.as_millis());
    chaos.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_redis_for_thirty_seconds() {
    let chaos = Chaos::start("redis_stopped_30s").await;
    traffic_for(Duration::from_secs(1)).await;

    let fault = Instant::now();
    Fault::StopRedis.apply(&chaos.cluster).await;
    Fault::StopRedis.prove(&chaos.cluster).await;
    traffic_for(Duration::from_secs(30)).await;
    Fault::StopRedis.prove(&chaos.cluster).await;
    let back = Instant::now();
    Fault::StopRedis.undo(&chaos.cluster).await;
    traffic_for(Duration::from_secs(3)).await;

    // Requests kept succeeding throughout, from the switch on.
    let during = chaos.acks_between(fault, back);
    let late = chaos.acks_between(fault + Duration::from_secs(20), back);
    chaos.figure("acks_while_down", during);
    chaos.figure("acks_last_10s_of_outage", late);
    assert!(late > 0, "no request succeeded late in the outage");
    for node in 0..3 {
        let log = chaos.cluster.log(node);
        assert!(
            log.contains("backend=postgres"),
            "node {node} never switched"
        );
    }
    chaos.finish().await;
}

//! The Redis primary fails under lifecycle traffic, in the two deployments of several servers:
//! Sentinel (a primary, two replicas, three sentinels; the `sentinel` profile) and Redis Cluster
//! (three primaries with a replica each; the `rcluster` profile). Killed with `kill -9`, or
//! frozen with SIGSTOP past the failover and woken as a stale primary. Replication is
//! asynchronous, so a lease granted just before the failure may be lost and granted again to
//! another node: the fencing token must keep that from giving a booking two writers, which
//! `Chaos::finish` checks from PostgreSQL along with every other invariant.
//!
//! Each scenario prints, besides the usual figures: how long no new lease was granted (the
//! longest gap between two `assigned` acknowledgements from the fault on: every assignment of a
//! new booking takes a new lease), the 503s answered in that time, and how long until the
//! acknowledgements came at 80 % of their rate before the fault.

use std::time::{Duration, Instant};

use crate::support::poll;
use crate::support::services::Deployment;
use crate::world::{traffic_for, Chaos};

/// Sentinel's `down-after-milliseconds` and Redis Cluster's `cluster-node-timeout` in the
/// profiles (scripts/services/topologies.sh): how long before a dead primary is noticed.
const SENTINEL_DETECTION: Duration = Duration::from_millis(1500);
const CLUSTER_DETECTION: Duration = Duration::from_millis(2000);

/// The target: new leases again within the detection time + 2 s of a primary's death.
const RECOVERY_MARGIN: Duration = Duration::from_secs(2);

fn detection(deployment: &Deployment) -> Duration {
    if deployment.is_cluster() {
        CLUSTER_DETECTION
    } else {
        SENTINEL_DETECTION
    }
}

/// Nothing listens on the killed primary's port any more. `kill -9` returns before the kernel has
/// closed the dead process's sockets, so the port is watched until it refuses, for at most 2 s.
async fn assert_refused(port: u16) {
    let refused = poll::until(
        Duration::from_secs(2),
        || async {
            std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(500),
            )
            .is_err()
        },
        |refused| *refused,
    )
    .await;
    assert!(refused.is_ok(), "Redis on :{port} still answers");
}

/// What the server on `port` says it is (`master`, `slave`).
fn role_of(deployment: &Deployment, port: u16) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query(&mut deployment.connect_to(port))
        .unwrap();
    redis::from_redis_value(role[0].clone()).unwrap()
}

/// The figures of a failure at `fault`, over the `window` after it.
struct Outage {
    no_new_leases: Duration,
    unavailable: usize,
    full_throughput: Duration,
}

fn outage(chaos: &Chaos, fault: Instant, window: Duration) -> Outage {
    let acks = chaos.client.seen.acks.lock().unwrap().clone();
    let end = fault + window;
    let mut assigned: Vec<Instant> = acks
        .iter()
        .filter(|a| a.status == "assigned" && a.at >= fault && a.at <= end)
        .map(|a| a.at)
        .collect();
    assigned.sort();
    let mut last = fault;
    let mut no_new_leases = Duration::ZERO;
    for at in assigned.iter().chain(std::iter::once(&end)) {
        no_new_leases = no_new_leases.max(at.saturating_duration_since(last));
        last = *at;
    }
    let unavailable = chaos
        .client
        .seen
        .unavailable
        .lock()
        .unwrap()
        .iter()
        .filter(|u| u.at >= fault && u.at <= end)
        .count();
    // Acknowledgements per 500 ms before the fault, and the first 500 ms after it at 80 % of it.
    let step = Duration::from_millis(500);
    let count =
        |from: Instant, to: Instant| acks.iter().filter(|a| a.at >= from && a.at < to).count();
    let before = count(fault - Duration::from_secs(2), fault) as f64 / 4.0;
    let mut full_throughput = window;
    let mut from = fault;
    while from + step <= end {
        if count(from, from + step) as f64 >= 0.8 * before {
            full_throughput = from + step - fault;
            break;
        }
        from += Duration::from_millis(100);
    }
    Outage {
        no_new_leases,
        unavailable,
        full_throughput,
    }
}

impl Outage {
    fn report(&self, chaos: &Chaos) {
        chaos.figure("no_new_leases_ms", self.no_new_leases.as_millis());
        chaos.figure("503_during_failover", self.unavailable);
        chaos.figure("full_throughput_after_ms", self.full_throughput.as_millis());
        chaos.figure("leases_lost", leases_lost(chaos));
    }
}

/// Leases whose holder found them gone or taken at a renewal (not merely unconfirmed): granted
/// by the old primary and lost with it, or taken meanwhile. What `lease.wait_replicas` is for.
fn leases_lost(chaos: &Chaos) -> usize {
    (0..chaos.cluster.nodes.len())
        .map(|node| {
            chaos
                .cluster
                .log(node)
                .lines()
                .filter(|line| line.contains("lease_lost") && line.contains("err:not_ours"))
                .count()
        })
        .sum()
}

async fn kill_the_primary(name: &'static str, profile: &'static str) {
    let deployment = Deployment::up(profile).await;
    let chaos = Chaos::start_on(name, &deployment).await;
    traffic_for(Duration::from_secs(3)).await;

    let fault = Instant::now();
    let port = deployment.kill_primary().await;
    assert_refused(port).await;
    let window = detection(&deployment) + Duration::from_secs(6);
    traffic_for(window).await;
    deployment.restore().await;
    traffic_for(Duration::from_secs(1)).await;

    let outage = outage(&chaos, fault, window);
    outage.report(&chaos);
    assert!(
        outage.no_new_leases <= detection(&deployment) + RECOVERY_MARGIN,
        "no new lease for {:?} after the primary on :{port} died",
        outage.no_new_leases
    );
    chaos.finish().await;
}

async fn freeze_the_primary_past_the_failover(name: &'static str, profile: &'static str) {
    let deployment = Deployment::up(profile).await;
    let chaos = Chaos::start_on(name, &deployment).await;
    traffic_for(Duration::from_secs(3)).await;

    let fault = Instant::now();
    let port = deployment.freeze_primary().await;
    // Past detection and the promotion of a replica: the frozen server is a stale primary.
    let window = detection(&deployment) + Duration::from_secs(4);
    traffic_for(window).await;
    deployment.thaw().await;
    let woken = Instant::now();
    // Woken, it believes it is the primary until the sentinels (or the cluster) demote it, which
    // takes them seconds: lease writes that reach it meanwhile must not give any booking a
    // second writer. The traffic runs on until it is a replica, and a while after.
    let demoted = poll::until(
        Duration::from_secs(20),
        || async { role_of(&deployment, port) },
        |role| role == "slave",
    )
    .await;
    assert!(
        demoted.is_ok(),
        "the woken primary on :{port} was never demoted: {demoted:?}"
    );
    chaos.figure("stale_primary_ms", woken.elapsed().as_millis());
    // Nodes that were still talking to it when it refused a write as a replica (and so asked
    // the sentinels again): in Redis Cluster the client follows the redirect instead.
    let told_readonly = (0..3)
        .filter(|&node| {
            chaos
                .cluster
                .log(node)
                .lines()
                .any(|line| line.contains("primary forgotten") && line.contains("READONLY"))
        })
        .count();
    chaos.figure("nodes_told_readonly", told_readonly);
    traffic_for(Duration::from_secs(2)).await;

    let outage = outage(&chaos, fault, window);
    outage.report(&chaos);
    chaos.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_the_sentinel_primary() {
    kill_the_primary("sentinel_kill_primary", "sentinel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_a_redis_cluster_primary() {
    kill_the_primary("rcluster_kill_primary", "rcluster").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_the_sentinel_primary_past_the_failover_then_wake_it() {
    freeze_the_primary_past_the_failover("sentinel_freeze_primary", "sentinel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_a_redis_cluster_primary_past_the_failover_then_wake_it() {
    freeze_the_primary_past_the_failover("rcluster_freeze_primary", "rcluster").await;
}

//! Behind the load balancer: nginx with the project's own configuration
//! (`config/nginx-cluster.conf`) in front of the three nodes, and the traffic sent to nginx only,
//! as `make cluster`'s clients would. A rolling upgrade (each node stopped with SIGTERM, waited
//! for and started again, one at a time) must be invisible to the clients; a `kill -9` must be
//! answered in the API's JSON, never with an HTML page.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::support::faults::Fault;
use crate::support::fixtures::TTL;
use crate::support::nginx::Logged;
use crate::support::poll;
use crate::world::{traffic_for, Chaos};

/// n1, n2 and n3 replaced one at a time under the traffic: SIGTERM, wait for the exit, start it
/// again on the same port, wait until it serves and nginx sends it requests again, then the next.
/// The client retries with its key and no step may fail; on top of that, every failed attempt is
/// counted against the SIGTERM whose window it fell in (a client that does not retry would have
/// failed it), and there must be none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_under_traffic() {
    replace_every_node(Chaos::start_behind_nginx("rolling_upgrade").await).await;
}

/// The same upgrade with clients that send no `Idempotency-Key`, which nginx does not pass on
/// after a 503: what reaches a draining node is relayed to another node, so these clients see
/// no failure either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_with_clients_that_send_no_key() {
    replace_every_node(Chaos::start_behind_nginx_without_keys("rolling_upgrade_unkeyed").await)
        .await;
}

async fn replace_every_node(mut chaos: Chaos) {
    traffic_for(Duration::from_secs(1)).await;

    let mut windows = Vec::new();
    let (mut drained, mut replaced, mut in_rotation) = (Vec::new(), Vec::new(), Vec::new());
    for node in 0..chaos.cluster.nodes.len() {
        let stop = Instant::now();
        Fault::Terminate(node).apply(&chaos.cluster).await;
        let exit = chaos
            .cluster
            .exit_status(node, Duration::from_secs(10))
            .await;
        assert!(exit.is_some_and(|s| s.success()), "n{}: {exit:?}", node + 1);
        drained.push(stop.elapsed().as_millis());
        let back = SystemTime::now();
        chaos.cluster.restart(node).await;
        replaced.push(stop.elapsed().as_millis());
        let nginx = chaos.nginx.as_ref().unwrap();
        let address = &chaos.cluster.nodes[node].address;
        let routed = poll::eventually(Duration::from_secs(15), || async {
            nginx.sends_to(address, back)
        })
        .await;
        assert!(routed, "nginx sent n{} nothing after its restart", node + 1);
        // nginx leaves a node that failed a try out for fail_timeout (1 s, counted in whole
        // seconds), then tries it again: back in the rotation within a few seconds, not 10.
        assert!(
            stop.elapsed() < Duration::from_secs(4),
            "nginx took n{} back only {:?} after its SIGTERM",
            node + 1,
            stop.elapsed()
        );
        in_rotation.push(stop.elapsed().as_millis());
        windows.push(stop);
    }
    traffic_for(Duration::from_secs(1)).await;
    windows.push(Instant::now());

    let per_stop: Vec<_> = windows
        .windows(2)
        .map(|w| chaos.client.failures_between(w[0], w[1]))
        .collect();
    let visible: Vec<usize> = per_stop.iter().map(|f| f.values().sum()).collect();
    let nginx = chaos.nginx.as_ref().unwrap();
    let passed_on = nginx.passed_on();
    chaos.figure("drained_ms", join(&drained));
    chaos.figure("serving_again_ms", join(&replaced));
    chaos.figure("through_nginx_again_ms", join(&in_rotation));
    chaos.figure("errors_per_sigterm", join(&visible));
    report_retries(&chaos, &passed_on);
    for (i, failures) in per_stop.iter().enumerate() {
        for (what, n) in failures {
            chaos.figure(&format!("sigterm_n{}_{what}", i + 1), n);
        }
    }
    assert_eq!(
        visible.iter().sum::<usize>(),
        0,
        "a planned stop was visible through nginx: {per_stop:?}; nginx passed on {passed_on:#?}\n{}",
        nginx.error_log()
    );
    chaos.finish().await;
}

/// `kill -9` of a node behind nginx: what the clients see (every answer JSON), and how many
/// attempts failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_a_node_behind_nginx() {
    let chaos = Chaos::start_behind_nginx("kill_9_behind_nginx").await;
    traffic_for(Duration::from_secs(1)).await;

    let fault = Instant::now();
    Fault::Kill(0).apply(&chaos.cluster).await;
    traffic_for(TTL + Duration::from_secs(2)).await;

    let failures = chaos.client.failures_between(fault, Instant::now());
    let nginx = chaos.nginx.as_ref().unwrap();
    chaos.figure("errors", failures.values().sum::<usize>());
    for (what, n) in &failures {
        chaos.figure(&format!("error_{what}"), n);
    }
    report_retries(&chaos, &nginx.passed_on());
    chaos.finish().await;
}

/// Who retried what: the client (its attempts that got a 503 or no answer) and nginx (requests it
/// passed on to another node, by what the first node answered: 503, or 502 for a failed
/// connection). Of those, only a failed connection is passed on for a POST without a key.
fn report_retries(chaos: &Chaos, passed_on: &[Logged]) {
    let c = &chaos.client.counts;
    let retried = c.unavailable.load(Ordering::Relaxed) + c.no_answer.load(Ordering::Relaxed);
    chaos.figure("client_retried", retried);
    chaos.figure("nginx_passed_on", passed_on.len());
    let mut first = std::collections::BTreeMap::<&str, usize>::new();
    for request in passed_on {
        *first.entry(request.tries[0].1.as_str()).or_default() += 1;
    }
    for (status, n) in first {
        chaos.figure(&format!("nginx_passed_on_after_{status}"), n);
    }
}

fn join(values: &[impl std::fmt::Display]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

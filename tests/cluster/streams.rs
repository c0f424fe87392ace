//! Event streams on the cluster, through the project's nginx (`config/nginx-cluster.conf`): a
//! client connected through the load balancer, to whichever node it picked, gets each step of a
//! booking made through every node, one at a time as each commits (nginx passes the frames on
//! unbuffered), in order.

use std::time::Duration;

use serde_json::json;

use crate::support::cluster::Cluster;
use crate::support::faults::Fault;
use crate::support::fixtures::{Api, PICKUP};
use crate::support::nginx::Nginx;
use crate::support::sse::EventStream;

#[actix_web::test]
async fn a_stream_through_nginx_gets_each_step_made_through_every_node_as_it_commits() {
    // Arrange: three nodes behind nginx; a rider's stream through nginx.
    let cluster = Cluster::start(3).await;
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let nginx = Nginx::start(&nodes).await;
    let rider = cluster.rider().await;
    cluster.drivers(1).await;
    let url = format!("{}/api/users/{rider}/stream", nginx.address);
    let mut stream = EventStream::open(&url, &format!("rider:{rider}"), None).await;
    let next = Duration::from_secs(5);

    // Act and assert: each step through another node; its event arrives before the next step.
    let created = cluster
        .post(
            0,
            "/api/bookings",
            crate::support::fixtures::booking_body(rider, PICKUP.0, PICKUP.1),
        )
        .await
        .unwrap();
    created.expect(201, None);
    let booking = created.data()["id"].as_i64().unwrap();
    let pending = stream.next(next).await.expect("the creation");
    let path = format!("/api/bookings/{booking}/assign");
    let assigned = cluster.post(1, &path, json!({})).await.unwrap();
    assigned.expect(200, None);
    let driver = assigned.data()["driver"]["id"].as_i64().unwrap();
    let offered = stream.next(next).await.expect("the assignment");
    let path = format!("/api/bookings/{booking}/accept");
    let accepted = cluster
        .post(2, &path, json!({ "driver_id": driver }))
        .await
        .unwrap();
    accepted.expect(200, None);
    let taken = stream.next(next).await.expect("the acceptance");

    let seen: Vec<(&str, i64)> = [&pending, &offered, &taken]
        .iter()
        .map(|e| {
            (
                e.data["to_status"].as_str().unwrap(),
                e.data["booking_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("pending", booking),
            ("assigned", booking),
            ("accepted", booking)
        ]
    );
    assert!(pending.id < offered.id && offered.id < taken.id);
    // Each was written by the booking's owner (the node it was created on), wherever the
    // request went in.
    assert!(
        [&pending, &offered, &taken]
            .iter()
            .all(|e| e.data["node_id"] == "n1"),
        "{:?}",
        [&pending, &offered, &taken]
    );
}

#[actix_web::test]
async fn the_ops_stream_tells_a_takeover_from_a_dead_owner() {
    // Arrange: n1 owns an assigned booking; the ops stream is open on n3.
    let cluster = Cluster::start(3).await;
    let (booking, driver) = cluster.owned_by(0, 1).await[0];
    let url = format!("{}/api/cluster/stream", cluster.nodes[2].address);
    let mut ops = EventStream::open(&url, "ops:tests", None).await;
    Fault::Kill(0).apply(&cluster).await;
    Fault::Kill(0).prove(&cluster).await;

    // Act: the next step, asked of n2, which finds n1's lease and waits out its expiry.
    let accept = crate::accept_through(&cluster, 1, booking, driver).await;

    // Assert: served by n2, and n3's stream names the takeover: n2 took it from n1.
    assert_eq!(accept.status, 200, "{:#}", accept.body);
    let suffix = format!(":{booking}");
    let taken = ops
        .live_event("lease", Duration::from_secs(5), |d| {
            d["key"].as_str().unwrap().ends_with(&suffix) && d["change"] == "taken_over"
        })
        .await
        .expect("the takeover");
    assert_eq!(taken["node"], cluster.nodes[1].id.as_str());
    assert_eq!(taken["other"], cluster.nodes[0].id.as_str());
}

//! No fault but contention: a storm of assigns of one booking, and bookings racing for the
//! drivers the traffic leaves free, under the same invariants.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::support::fixtures::Api;
use crate::traffic::{Client, Outcome};
use crate::world::{traffic_for, Chaos};

/// One keyed assign of `booking` (retried on 503 like any client step): its final status, or 0
/// if it was never answered.
async fn assign_status(client: &Client, booking: i64) -> u16 {
    let key = Uuid::new_v4().to_string();
    let path = format!("/api/bookings/{booking}/assign");
    match client.post(&path, &json!({}), &key).await {
        Outcome::Answered(answer) => answer.status.as_u16(),
        Outcome::GaveUp => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_storm() {
    let mut chaos = Chaos::start("contention_storm").await;
    // The storm's losers, and the race's bookings (and the traffic's) finding no driver free.
    chaos.allowed_conflicts = vec!["booking_not_pending", "no_drivers_available"];
    traffic_for(Duration::from_secs(1)).await;
    let rider = chaos.client.rider().await;
    let bookings = chaos.cluster.bookings(rider, 41).await;

    // 50 assigns of one booking, round-robin over the nodes, all at once; and 40 bookings
    // assigned at once against the drivers the traffic leaves free.
    let one = bookings[0];
    let storm = (0..50).map(|_| assign_status(&chaos.client, one));
    let race = bookings[1..]
        .iter()
        .map(|&booking| assign_status(&chaos.client, booking));
    let (storm, race) = tokio::join!(join_all(storm), join_all(race));
    traffic_for(Duration::from_secs(1)).await;

    let count = |answers: &[u16], status: u16| answers.iter().filter(|s| **s == status).count();
    assert_eq!(count(&storm, 200), 1, "{storm:?}");
    assert_eq!(count(&storm, 409), 49, "{storm:?}");
    assert_eq!(
        count(&race, 200) + count(&race, 409),
        race.len(),
        "{race:?}"
    );
    chaos.figure("storm_200", count(&storm, 200));
    chaos.figure("race_assigned", count(&race, 200));
    chaos.figure("race_no_driver", count(&race, 409));
    chaos.finish().await;
}

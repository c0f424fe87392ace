//! The long soak (ignored by default): the faults of the other scenarios, one after another at
//! random.

use std::time::{Duration, Instant};

use crate::postgres_faults::postgres_outage;
use crate::support::faults::Fault;
use crate::support::fixtures::TTL;
use crate::world::{traffic_for, Chaos};

/// The soak's rounds: a name, the fault (none: a quiet round), and how long the traffic runs
/// before it, while it lasts, and after it is undone. (PostgreSQL's outage is a round of its own:
/// [`postgres_outage`], with its checks.)
const SOAK_ROUNDS: [(&str, Option<Fault>, Duration, Duration, Duration); 5] = [
    (
        "soak_kill_9",
        Some(Fault::Kill(0)),
        Duration::from_secs(5),
        Duration::from_secs(10),
        Duration::ZERO,
    ),
    (
        "soak_cut",
        Some(Fault::CutFromRedis(1)),
        Duration::ZERO,
        TTL.saturating_mul(3),
        Duration::from_secs(5),
    ),
    (
        "soak_redis_restart",
        Some(Fault::StopRedis),
        Duration::from_secs(5),
        Duration::ZERO,
        Duration::from_secs(10),
    ),
    (
        "soak_sigstop",
        Some(Fault::Pause(2)),
        Duration::from_secs(5),
        TTL.saturating_mul(2),
        Duration::from_secs(10),
    ),
    (
        "soak_quiet",
        None,
        Duration::from_secs(30),
        Duration::ZERO,
        Duration::ZERO,
    ),
];

/// The faults above, one after another at random, under one long run of traffic per fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long soak: RIDELOCK_CHAOS_SOAK_SECS=600 cargo test --test chaos -- --ignored soak"]
async fn soak() {
    let seconds: u64 = std::env::var("RIDELOCK_CHAOS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        let pick = rand::random_range(0..=SOAK_ROUNDS.len());
        println!("soak round={round} fault={pick}");
        let Some(&(name, fault, before, lasting, after)) = SOAK_ROUNDS.get(pick) else {
            postgres_outage("soak_postgres", Fault::StopPostgres, Duration::from_secs(5)).await;
            continue;
        };
        let chaos = Chaos::start(name).await;
        traffic_for(before).await;
        if let Some(fault) = fault {
            fault.apply(&chaos.cluster).await;
            fault.prove(&chaos.cluster).await;
            traffic_for(lasting).await;
            if fault.can_be_undone() {
                fault.undo(&chaos.cluster).await;
            }
        }
        traffic_for(after).await;
        chaos.finish().await;
    }
}

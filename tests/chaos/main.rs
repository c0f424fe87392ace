//! The chaos suite: three real nodes on their own PostgreSQL and Redis (the `chaos` profile of
//! scripts/services.sh, which these tests stop and restart), each node reaching Redis through a
//! TCP proxy the test can cut, and riders and drivers living whole booking lifecycles over the
//! nodes round-robin while one fault at a time hits. During each fault, PostgreSQL's audit trail
//! is polled every 100 ms for a driver in two bookings at once; afterwards every invariant is
//! checked from PostgreSQL and the nodes' logs, and the scenario prints its figures
//! (`chaos scenario=...`). Each scenario also proves its fault happened: a stopped server
//! refuses a direct connection, a paused node's leases stay put while it sleeps.
//!
//! `RIDELOCK_CHAOS_SOAK_SECS=600 cargo test --test chaos -- --ignored soak` runs the faults one
//! after another, at random, for that long.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;
mod traffic;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use support::audit::{self, assert_one_writer_per_token, assert_state_machine};
use support::cluster::{Cluster, Setup};
use support::database::{self, Count, Event, Stored};
use support::faults::Fault;
use support::fixtures::{Api, TTL};
use support::poll::eventually;
use support::reply::{ReadError, Reply};
use support::services;
use traffic::{Client, Outcome};

/// Riders living lifecycles at once, and online drivers for them.
const RIDERS: usize = 6;
const DRIVERS: usize = 12;
/// Bookings each node-fault scenario has the victim own before the fault.
const VICTIMS: usize = 5;
/// A booking whose owner failed must be served again within this.
const TAKEOVER_BOUND: Duration = Duration::from_millis(TTL.as_millis() as u64 + 1000);

/// Every 100 ms, from the audit trail: has any driver been in two bookings at once, or is any
/// driver row out of step with its booking? A poll that fails (no connection, a query error, no
/// answer in 2 s) fails the scenario, unless PostgreSQL was stopped on purpose at the time
/// ([`DriverWatch::postgres_stopped`]): a broken query must not pass as an outage.
struct DriverWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Polls>,
    /// When the scenario had PostgreSQL stopped: from just before the stop until it was back.
    outages: Mutex<Vec<(Instant, Instant)>>,
}

#[derive(Default)]
struct Polls {
    count: u64,
    /// Failed polls: when each started and ended, and why.
    failed: Vec<(Instant, Instant, String)>,
    broken: Vec<String>,
}

const POLL_TIMEOUT: Duration = Duration::from_secs(2);

impl DriverWatch {
    fn start(db_url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut polls = Polls::default();
            let mut conn: Option<AsyncPgConnection> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                polls.count += 1;
                let started = Instant::now();
                let poll = tokio::time::timeout(POLL_TIMEOUT, async {
                    if conn.is_none() {
                        let c = AsyncPgConnection::establish(&db_url).await;
                        conn = Some(c.map_err(|e| format!("connect: {e}"))?);
                    }
                    let c = conn.as_mut().expect("connected above");
                    let overlaps = audit::overlapping_assignments(c).await;
                    let overlaps = overlaps.map_err(|e| format!("overlaps query: {e}"))?;
                    let out_of_step = audit::drivers_out_of_step(c).await;
                    let out_of_step = out_of_step.map_err(|e| format!("drivers query: {e}"))?;
                    Ok::<_, String>((overlaps, out_of_step))
                })
                .await
                .unwrap_or_else(|_| Err(format!("no answer in {POLL_TIMEOUT:?}")));
                match poll {
                    Ok((overlaps, out_of_step)) => {
                        polls
                            .broken
                            .extend(overlaps.iter().map(|o| format!("{o:?}")));
                        polls
                            .broken
                            .extend(out_of_step.iter().map(|o| format!("{o:?}")));
                    }
                    Err(why) => {
                        polls.failed.push((started, Instant::now(), why));
                        conn = None;
                    }
                }
            }
            polls
        });
        Self {
            stop,
            task,
            outages: Mutex::new(Vec::new()),
        }
    }

    /// PostgreSQL was stopped on purpose from `from` until `until`: polls failing then are
    /// expected.
    fn postgres_stopped(&self, from: Instant, until: Instant) {
        self.outages.lock().unwrap().push((from, until));
    }

    /// Stops polling; `(polls, polls that failed while PostgreSQL was stopped)`. Panics on any
    /// violation, and on any poll that failed while PostgreSQL was meant to be up.
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let polls = self.task.await.unwrap();
        assert!(
            polls.broken.is_empty(),
            "driver invariant broken: {:?}",
            polls.broken
        );
        let outages = self.outages.into_inner().unwrap();
        let (expected, unexpected): (Vec<_>, Vec<_>) =
            polls.failed.iter().partition(|(started, ended, _)| {
                outages
                    .iter()
                    .any(|(from, until)| ended >= from && started <= until)
            });
        let unexpected: Vec<&String> = unexpected.iter().map(|(_, _, why)| why).collect();
        assert!(
            unexpected.is_empty(),
            "driver watch polls failed while PostgreSQL was up: {unexpected:#?}"
        );
        (polls.count, expected.len() as u64)
    }
}

/// One scenario's world: services, proxies, nodes, traffic and the watch.
struct Chaos {
    name: &'static str,
    cluster: Cluster,
    client: Client,
    stop: Arc<AtomicBool>,
    riders: Vec<tokio::task::JoinHandle<()>>,
    /// The traffic's riders: every booking of theirs was created by a lifecycle.
    rider_ids: Vec<i64>,
    watch: DriverWatch,
    started: Instant,
    /// Figures the scenario adds to its report line.
    figures: Mutex<Vec<(String, String)>>,
    /// 409 codes this scenario provokes on purpose. Any other 409 is a failure: each lifecycle
    /// is driven by one rider alone and drivers are plenty, so a refusal means a node answered
    /// from a stale copy of the booking, or a driver was left busy.
    allowed_conflicts: Vec<&'static str>,
}

impl Chaos {
    async fn start(name: &'static str) -> Self {
        let services = services::up().await;
        let cluster = Cluster::start_on(Setup {
            count: 3,
            database_server: services.pg_url.clone(),
            redis: services.redis_url.clone(),
            redis_proxies: true,
            log_filter: "info".to_owned(),
        })
        .await;
        let client = Client::new(cluster.nodes.iter().map(|n| n.address.clone()).collect());
        client.drivers(DRIVERS).await;
        let stop = Arc::new(AtomicBool::new(false));
        let (mut riders, mut rider_ids) = (Vec::new(), Vec::new());
        for _ in 0..RIDERS {
            let rider = client.rider().await;
            rider_ids.push(rider);
            let (client, stop) = (client.clone(), stop.clone());
            riders.push(tokio::spawn(
                async move { client.lifecycles(rider, stop).await },
            ));
        }
        let watch = DriverWatch::start(cluster.db_url.clone());
        Self {
            name,
            cluster,
            client,
            stop,
            riders,
            rider_ids,
            watch,
            started: Instant::now(),
            figures: Mutex::new(Vec::new()),
            allowed_conflicts: Vec::new(),
        }
    }

    fn figure(&self, name: &str, value: impl std::fmt::Display) {
        self.figures
            .lock()
            .unwrap()
            .push((name.to_owned(), value.to_string()));
    }

    /// 2xx answers the client got between `from` and `to`.
    fn acks_between(&self, from: Instant, to: Instant) -> usize {
        let acks = self.client.seen.acks.lock().unwrap();
        acks.iter().filter(|a| a.at >= from && a.at <= to).count()
    }

    /// Bookings the node `owner` holds (assigned through it) before a fault.
    async fn victims(&self, owner: usize) -> Vec<(i64, i64)> {
        self.cluster.owned_by(owner, VICTIMS).await
    }

    /// After a fault at `fault`: each victim booking accepted through `via`, retried (same key)
    /// until served. The longest time from the fault, and who served them.
    async fn recover(
        &self,
        victims: &[(i64, i64)],
        via: &[usize],
        fault: Instant,
    ) -> (Duration, Vec<Reply>) {
        let tasks = victims.iter().enumerate().map(|(i, &(booking, driver))| {
            let cluster = &self.cluster;
            async move {
                let path = format!("/api/bookings/{booking}/accept");
                let body = json!({ "driver_id": driver });
                let key = Uuid::new_v4().to_string();
                let mut attempt = i;
                loop {
                    assert!(
                        fault.elapsed() < Duration::from_secs(30),
                        "{path} never served"
                    );
                    let node = via[attempt % via.len()];
                    attempt += 1;
                    let request = cluster
                        .client
                        .post(format!("{}{path}", cluster.nodes[node].address))
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .timeout(self.client.attempt_timeout);
                    match Reply::send(request).await {
                        Ok(reply) if reply.status == 200 => return (fault.elapsed(), reply),
                        Ok(reply) => assert_eq!(reply.status, 503, "{path}: {}", reply.body),
                        Err(ReadError::Send(error))
                            if error.is_timeout() && !error.is_connect() =>
                        {
                            panic!("{path} on node {node} hung: {error}")
                        }
                        Err(ReadError::Send(_)) => {}
                        Err(ReadError::Body(status, _)) => {
                            panic!("{path}: {status}, not JSON: \"\"")
                        }
                        Err(ReadError::NotJson(status, text)) => {
                            panic!("{path}: {status}, not JSON: {text:?}")
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        let done = join_all(tasks).await;
        let longest = done.iter().map(|(took, _)| *took).max().unwrap_or_default();
        (longest, done.into_iter().map(|(_, reply)| reply).collect())
    }

    /// Stops the traffic, prints the figures, and checks what the client saw and every invariant
    /// from PostgreSQL and the nodes' logs.
    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for rider in self.riders {
            rider.await.unwrap();
        }
        let (polls, polls_down) = self.watch.finish().await;
        let acks = self.client.seen.acks.lock().unwrap().clone();
        let c = &self.client.counts;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        let mut line = format!(
            "chaos scenario={} seconds={:.1} requests={} 2xx={} 409={} 503={} no_answer={} \
             hung={} other={} abandoned={} ok_after_no_answer={} acked_transitions={} \
             slowest_2xx_ms={} slowest_503_ms={} polls={polls} polls_db_down={polls_down}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            load(&c.requests),
            load(&c.ok),
            load(&c.conflict),
            load(&c.unavailable),
            load(&c.no_answer),
            load(&c.hung),
            load(&c.other),
            load(&c.abandoned),
            load(&c.ok_after_no_answer),
            acks.len(),
            load(&c.slowest_2xx_ms),
            load(&c.slowest_503_ms),
        );
        let slowest_503 = self.client.seen.slowest_503.lock().unwrap().clone();
        if !slowest_503.is_empty() {
            line.push_str(&format!(" slowest_503={slowest_503}"));
        }
        for (code, n) in self.client.seen.conflicts.lock().unwrap().iter() {
            line.push_str(&format!(" 409_{code}={n}"));
        }
        for (name, value) in self.figures.lock().unwrap().iter() {
            line.push_str(&format!(" {name}={value}"));
        }
        // Straight to the process's stderr, past the test harness's capture: `make test` shows
        // every scenario's figures, not only a failing one's.
        let _ = writeln!(std::io::stderr().lock(), "{line}");

        // What the client saw: no hang, no text reply, no status outside the contract, every
        // 503 telling when to retry, no step left unanswered.
        let odd = self.client.seen.odd.lock().unwrap().clone();
        assert!(odd.is_empty(), "unexpected answers: {odd:#?}");
        let conflicts = self.client.seen.conflicts.lock().unwrap().clone();
        let unexpected: Vec<_> = conflicts
            .iter()
            .filter(|(code, _)| !self.allowed_conflicts.contains(&code.as_str()))
            .collect();
        assert!(unexpected.is_empty(), "unexpected 409s: {unexpected:?}");
        let unavailable = self.client.seen.unavailable.lock().unwrap().clone();
        let no_retry_after: Vec<_> = unavailable
            .iter()
            .filter(|u| u.retry_after.is_none())
            .collect();
        assert!(
            no_retry_after.is_empty(),
            "503 without Retry-After: {no_retry_after:#?}"
        );
        assert_eq!(load(&c.abandoned), 0, "steps never answered");
        assert!(acks.len() > 20, "too little traffic got through");

        // PostgreSQL and the logs.
        self.cluster.assert_no_driver_booked_twice().await;
        let events = assert_one_writer_per_token(&mut self.cluster.db().await).await;
        assert_state_machine(&events);
        let stored = database::stored(&mut self.cluster.db().await).await;
        assert_acks_stored(&acks, &events, &stored);
        // Retries never double-applied: one booking per acknowledged create (and, with nothing
        // abandoned, every create was acknowledged once, however often it was sent).
        let created: Count = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query("SELECT count(*) AS n FROM bookings WHERE rider_id = ANY($1)")
                .bind::<diesel::sql_types::Array<BigInt>, _>(&self.rider_ids),
            &mut self.cluster.db().await,
        )
        .await
        .unwrap();
        let acked_creates = acks.iter().filter(|a| a.status == "pending").count();
        assert_eq!(created.n as usize, acked_creates, "bookings created twice");
    }
}

/// Every 2xx is in PostgreSQL as it was acknowledged: the trail holds the step under the request
/// id it was sent with, with the token (and node, when the reply named one) the reply gave; and
/// each booking stayed where its last acknowledged step took it, under that step's token or a
/// later one.
fn assert_acks_stored(
    acks: &[traffic::Ack],
    events: &[Event],
    stored: &std::collections::HashMap<i64, Stored>,
) {
    let by_request: std::collections::HashMap<(i64, &str), &Event> = events
        .iter()
        .map(|e| ((e.booking_id, e.request_id.as_str()), e))
        .collect();
    let mut last: std::collections::HashMap<i64, &traffic::Ack> = Default::default();
    for ack in acks {
        let event = by_request.get(&(ack.booking, ack.request_id.as_str()));
        let recorded = event.is_some_and(|e| {
            e.to_status == ack.status
                && e.fencing_token == ack.token
                && ack.node.as_ref().is_none_or(|node| *node == e.node_id)
        });
        assert!(
            recorded,
            "acknowledged but not in the trail as acknowledged: {ack:?}, trail has {event:?}"
        );
        last.insert(ack.booking, ack);
    }
    for (booking, ack) in last {
        let row = &stored[&booking];
        assert!(
            row.status == ack.status && row.fencing_token >= ack.token,
            "booking {booking} is stored as {row:?}, but its last acknowledged step was {ack:?}"
        );
    }
}

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

/// Lets the traffic run.
async fn traffic_for(d: Duration) {
    tokio::time::sleep(d).await;
}

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
        .arg(format!("{}drivers:indexed", chaos.cluster.prefix))
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

/// Takes PostgreSQL away (`fault`: stopped or frozen) for `outage` under traffic: requests fail
/// fast with 503 and `Retry-After`, and the nodes' pools recover by themselves when it is back.
async fn postgres_outage(name: &'static str, fault: Fault, outage: Duration) {
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

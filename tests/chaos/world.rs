//! One scenario's world ([`Chaos`]): what every scenario starts, runs its fault in, and
//! finishes with the checks of every invariant.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::support::audit::{assert_one_writer_per_token, assert_state_machine};
use crate::support::cluster::{Cluster, Setup};
use crate::support::database::{self, Count, Event, Stored};
use crate::support::fixtures::{Api, TTL};
use crate::support::nginx::Nginx;
use crate::support::redis_client::RedisAt;
use crate::support::reply::{ReadError, Reply};
use crate::support::services::{self, Deployment};
use crate::traffic::{self, Client};
use crate::watch::DriverWatch;

/// Riders living lifecycles at once, and online drivers for them.
const RIDERS: usize = 6;
const DRIVERS: usize = 12;
/// Bookings each node-fault scenario has the victim own before the fault.
const VICTIMS: usize = 5;
/// A booking whose owner failed must be served again within this.
pub const TAKEOVER_BOUND: Duration = Duration::from_millis(TTL.as_millis() as u64 + 1000);

/// One scenario's world: services, proxies, nodes, traffic and the watch.
pub struct Chaos {
    name: &'static str,
    pub cluster: Cluster,
    /// The load balancer the traffic goes through, if any ([`Chaos::start_behind_nginx`]).
    pub nginx: Option<Nginx>,
    pub client: Client,
    stop: Arc<AtomicBool>,
    riders: Vec<tokio::task::JoinHandle<()>>,
    /// The traffic's riders: every booking of theirs was created by a lifecycle.
    rider_ids: Vec<i64>,
    pub watch: DriverWatch,
    started: Instant,
    /// Figures the scenario adds to its report line.
    figures: Mutex<Vec<(String, String)>>,
    /// 409 codes this scenario provokes on purpose. Any other 409 is a failure: each lifecycle
    /// is driven by one rider alone and drivers are plenty, so a refusal means a node answered
    /// from a stale copy of the booking, or a driver was left busy.
    pub allowed_conflicts: Vec<&'static str>,
}

impl Chaos {
    pub async fn start(name: &'static str) -> Self {
        Self::start_with(name, Self::on_chaos_services(false).await, false, true).await
    }

    /// A scenario whose traffic goes through nginx, with the project's configuration
    /// (`config/nginx-cluster.conf`), in front of the nodes: the client knows one address.
    pub async fn start_behind_nginx(name: &'static str) -> Self {
        Self::start_with(name, Self::on_chaos_services(false).await, true, true).await
    }

    /// [`Chaos::start_behind_nginx`] with clients that send no `Idempotency-Key`
    /// ([`Client::without_keys`]).
    pub async fn start_behind_nginx_without_keys(name: &'static str) -> Self {
        Self::start_with(name, Self::on_chaos_services(false).await, true, false).await
    }

    /// [`Chaos::start`] with each node in a network namespace of its own, so that the nodes can
    /// be partitioned from each other ([`Fault::Partition`](crate::support::faults::Fault)),
    /// and `env` for the nodes on top of the suite's.
    pub async fn start_in_namespaces(name: &'static str, env: &[(&str, &str)]) -> Self {
        let mut setup = Self::on_chaos_services(true).await;
        setup
            .env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self::start_with(name, setup, false, true).await
    }

    /// Three nodes on the chaos profile's services, each reaching Redis through a proxy of its
    /// own; in namespaces of their own if `network`.
    async fn on_chaos_services(network: bool) -> Setup {
        let services = services::up().await;
        Setup {
            count: 3,
            database_server: services.pg_url.clone(),
            redis: services.redis_url.clone(),
            redis_at: RedisAt {
                url: services.redis_url.clone(),
                cluster_nodes: None,
                sentinels: None,
            },
            redis_proxies: true,
            log_filter: "info".to_owned(),
            // The proxies front one server: the chaos profile's, whatever the suite's mode.
            env: vec![("RIDELOCK_REDIS__MODE".into(), "single".into())],
            network,
        }
    }

    /// A scenario on a Redis deployment of several servers (Sentinel or Redis Cluster), which
    /// the nodes reach directly.
    pub async fn start_on(name: &'static str, deployment: &Deployment) -> Self {
        let nodes = deployment
            .env
            .iter()
            .find(|(name, _)| name == "RIDELOCK_REDIS__NODES")
            .map(|(_, nodes)| nodes.clone());
        Self::start_with(
            name,
            Setup {
                count: 3,
                database_server: deployment.pg_url.clone(),
                redis: deployment.redis_url.clone(),
                redis_at: RedisAt {
                    url: deployment.redis_url.clone(),
                    cluster_nodes: nodes.clone().filter(|_| deployment.is_cluster()),
                    sentinels: nodes
                        .filter(|_| !deployment.is_cluster())
                        .map(|nodes| (nodes, "ridelock".to_owned())),
                },
                redis_proxies: false,
                log_filter: "info".to_owned(),
                env: deployment.env.clone(),
                network: false,
            },
            false,
            true,
        )
        .await
    }

    async fn start_with(name: &'static str, setup: Setup, behind_nginx: bool, keyed: bool) -> Self {
        let cluster = Cluster::start_on(setup).await;
        let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
        let nginx = if behind_nginx {
            Some(Nginx::start(&nodes).await)
        } else {
            None
        };
        let client = Client::new(
            match &nginx {
                Some(nginx) => vec![nginx.address.clone()],
                None => nodes,
            },
            cluster.ops_headers(),
        );
        let client = if keyed { client } else { client.without_keys() };
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
            nginx,
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

    pub fn figure(&self, name: &str, value: impl std::fmt::Display) {
        self.figures
            .lock()
            .unwrap()
            .push((name.to_owned(), value.to_string()));
    }

    /// 2xx answers the client got between `from` and `to`.
    pub fn acks_between(&self, from: Instant, to: Instant) -> usize {
        let acks = self.client.seen.acks.lock().unwrap();
        acks.iter().filter(|a| a.at >= from && a.at <= to).count()
    }

    /// Bookings the node `owner` holds (assigned through it) before a fault.
    pub async fn victims(&self, owner: usize) -> Vec<(i64, i64)> {
        self.cluster.owned_by(owner, VICTIMS).await
    }

    /// After a fault at `fault`: each victim booking accepted through `via`, retried (same key)
    /// until served. The longest time from the fault, and who served them.
    pub async fn recover(
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
    pub async fn finish(self) {
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

/// Lets the traffic run.
pub async fn traffic_for(d: Duration) {
    tokio::time::sleep(d).await;
}

//! Three (or more) real `ridelock serve` processes on one test database and key prefix, with
//! random ports, and the tools to hurt them: signals (kill -9, STOP/CONT, TERM), and reads of
//! PostgreSQL to check what they wrote. Cluster tests run one at a time: they measure takeover
//! times, which a second cluster competing for the two cores would distort. Shared with the
//! chaos suite (tests/chaos), which starts the nodes on services it can stop.
#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::database;

/// `config/test.toml`'s lease TTL: what takeover times are measured against.
pub const TTL: Duration = Duration::from_millis(2000);

/// Where test bookings are picked up; drivers wait nearby.
pub const PICKUP: (f64, f64) = (40.7128, -74.0060);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Node {
    pub id: String,
    pub address: String,
    child: Child,
    log: PathBuf,
}

impl Node {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub db_url: String,
    db_name: String,
    pub redis_url: String,
    pub prefix: String,
    pub client: reqwest::Client,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

/// A JSON reply: status, body, and which node's actor handled it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub served_by: Option<String>,
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected reply: {:#}", self.body);
        self
    }
}

/// The port a node logged it listens on (`listening node=<id> port=<port>`), once it has.
fn logged_port(log: &std::path::Path, id: &str) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let marker = format!("listening node={id} port=");
    let line = text.lines().find(|line| line.contains(&marker))?;
    line.split(&marker)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Where a cluster's nodes find their services.
pub struct Setup {
    pub count: usize,
    /// A PostgreSQL server URL: the cluster gets its own database there.
    pub database_server: String,
    /// Redis, as the test reaches it.
    pub redis: String,
    /// Redis as each node reaches it (through a proxy, say); empty: every node uses `redis`.
    pub node_redis: Vec<String>,
    /// The nodes' `RUST_LOG`.
    pub log_filter: String,
}

impl Setup {
    /// `count` nodes on the services `make test` started (DATABASE_URL, REDIS_URL).
    pub fn from_env(count: usize) -> Self {
        Self {
            count,
            database_server: std::env::var("DATABASE_URL")
                .expect("DATABASE_URL (run through `make test`, which starts the services)"),
            redis: std::env::var("REDIS_URL").expect("REDIS_URL"),
            node_redis: Vec::new(),
            log_filter: "info".to_owned(),
        }
    }
}

impl Cluster {
    /// Starts `count` nodes, `n1`…, and waits until every one serves and sees the others.
    pub async fn start(count: usize) -> Self {
        Self::start_on(Setup::from_env(count)).await
    }

    /// Like [`Cluster::start`], on the given services.
    pub async fn start_on(setup: Setup) -> Self {
        let serial = SERIAL.lock().await;
        let count = setup.count;
        let redis_url = setup.redis.clone();
        let (db_name, db_url) = database::create_database(&setup.database_server);
        let run = Uuid::new_v4().simple().to_string();
        let prefix = format!("test:{run}:");
        let logs = std::env::temp_dir().join(format!("ridelock-cluster-{run}"));
        std::fs::create_dir_all(&logs).unwrap();
        // Each node binds port 0 and logs the port it got: no window in which another process
        // could take a port picked for it.
        let mut nodes: Vec<Node> = (1..=count)
            .map(|i| {
                let id = format!("n{i}");
                let log = logs.join(format!("{id}.log"));
                let out = File::create(&log).unwrap();
                let child = Command::new(env!("CARGO_BIN_EXE_ridelock"))
                    .arg("serve")
                    .env("RIDELOCK_ENV", "test")
                    .env("DATABASE_URL", &db_url)
                    .env(
                        "REDIS_URL",
                        setup.node_redis.get(i - 1).unwrap_or(&redis_url),
                    )
                    .env("RIDELOCK_SERVER__PORT", "0")
                    .env("RIDELOCK_NODE__ID", &id)
                    .env("RIDELOCK_REDIS__KEY_PREFIX", &prefix)
                    // Actors stay for the whole test, so who owns a booking is decided by the
                    // faults under test, not by an idle stop.
                    .env("RIDELOCK_BOOKING__IDLE_STOP_MS", "60000")
                    .env("RUST_LOG", &setup.log_filter)
                    .stdout(Stdio::from(out.try_clone().unwrap()))
                    .stderr(Stdio::from(out))
                    .spawn()
                    .expect("start a ridelock node");
                Node {
                    id,
                    address: String::new(),
                    child,
                    log,
                }
            })
            .collect();
        let until = Instant::now() + Duration::from_secs(60);
        for node in &mut nodes {
            loop {
                if let Some(port) = logged_port(&node.log, &node.id) {
                    node.address = format!("http://127.0.0.1:{port}");
                    break;
                }
                let exited = node.child.try_wait().unwrap();
                assert!(
                    exited.is_none() && Instant::now() < until,
                    "node {} did not start ({exited:?}):\n{}",
                    node.id,
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let cluster = Self {
            nodes,
            db_url,
            db_name,
            redis_url,
            prefix,
            client: reqwest::Client::builder()
                .default_headers(crate::auth::ops())
                .pool_max_idle_per_host(64)
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            _serial: serial,
        };
        let ready = cluster
            .eventually(Duration::from_secs(60), || async {
                for i in 0..count {
                    let Ok(nodes) = cluster.get(i, "/api/cluster/nodes").await else {
                        return false;
                    };
                    if nodes.status != 200 || nodes.body["count"] != json!(count) {
                        return false;
                    }
                }
                true
            })
            .await;
        assert!(ready, "the cluster did not come up");
        cluster
    }

    pub fn signal(&self, node: usize, signal: libc::c_int) {
        // SAFETY: kill(2) on a child process we started and have not reaped.
        let rc = unsafe { libc::kill(self.nodes[node].pid(), signal) };
        assert_eq!(rc, 0, "kill({signal}) node {node}");
    }

    /// Waits for a node to exit (after SIGTERM or SIGKILL).
    pub async fn exit_status(&mut self, node: usize, within: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(status) = self.nodes[node].child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub async fn request(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.nodes[node].address));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let served_by = header(&response, "x-ridelock-served-by");
        let body = response.json().await?;
        Ok(Reply {
            status,
            body,
            served_by,
        })
    }

    pub async fn get(&self, node: usize, path: &str) -> Result<Reply, reqwest::Error> {
        self.request(node, reqwest::Method::GET, path, None).await
    }

    pub async fn post(
        &self,
        node: usize,
        path: &str,
        body: Value,
    ) -> Result<Reply, reqwest::Error> {
        self.request(node, reqwest::Method::POST, path, Some(body))
            .await
    }

    pub async fn eventually<F, Fut>(&self, within: Duration, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let until = Instant::now() + within;
        loop {
            if check().await {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db_url).await.unwrap()
    }

    /// A rider, created through node 0.
    pub async fn rider(&self) -> i64 {
        let phone = format!("+1 555 {}", &Uuid::new_v4().as_u128().to_string()[..10]);
        let reply = self
            .post(0, "/api/riders", json!({ "name": "Rider", "phone": phone }))
            .await
            .unwrap();
        reply.expect(201);
        reply.data()["id"].as_i64().unwrap()
    }

    /// `count` online drivers near the pickup, created through node 0.
    pub async fn drivers(&self, count: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let phone = format!("+1 666 {}", &Uuid::new_v4().as_u128().to_string()[..10]);
            let reply = self
                .post(
                    0,
                    "/api/drivers",
                    json!({ "name": "Driver", "phone": phone }),
                )
                .await
                .unwrap();
            reply.expect(201);
            let id = reply.data()["id"].as_i64().unwrap();
            let at = json!({ "lat": PICKUP.0 + 0.0001 * i as f64, "lng": PICKUP.1 });
            self.post(0, &format!("/api/drivers/{id}/location"), at)
                .await
                .unwrap()
                .expect(200);
            self.request(
                0,
                reqwest::Method::PATCH,
                &format!("/api/drivers/{id}/status"),
                Some(json!({ "status": "online" })),
            )
            .await
            .unwrap()
            .expect(200);
            ids.push(id);
        }
        ids
    }

    /// `count` pending bookings of `rider`, created through node 0.
    pub async fn bookings(&self, rider: i64, count: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let body = json!({
                "rider_id": rider,
                "pickup_lat": PICKUP.0, "pickup_lng": PICKUP.1,
                "dropoff_lat": PICKUP.0 + 0.05, "dropoff_lng": PICKUP.1 + 0.05,
                "estimated_fare": 20.0,
            });
            let reply = self.post(0, "/api/bookings", body).await.unwrap();
            reply.expect(201);
            ids.push(reply.data()["id"].as_i64().unwrap());
        }
        ids
    }

    /// `count` bookings assigned through `owner`, whose actors (and leases) therefore live there:
    /// `(booking, driver)` pairs, each with fencing token 1.
    pub async fn owned_by(&self, owner: usize, count: usize) -> Vec<(i64, i64)> {
        let rider = self.rider().await;
        self.drivers(count).await;
        let mut pairs = Vec::with_capacity(count);
        for booking in self.bookings(rider, count).await {
            let reply = self
                .post(owner, &format!("/api/bookings/{booking}/assign"), json!({}))
                .await
                .unwrap();
            reply.expect(200);
            assert_eq!(
                reply.served_by.as_deref(),
                Some(self.nodes[owner].id.as_str())
            );
            assert_eq!(reply.data()["booking"]["fencing_token"], json!(1));
            pairs.push((booking, reply.data()["driver"]["id"].as_i64().unwrap()));
        }
        pairs
    }

    /// A counter from a node's `/metrics`, e.g. `ridelock_lease_renewed_total`.
    pub async fn metric(&self, node: usize, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.nodes[node].address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        crate::metrics::value(&text, name).unwrap_or_else(|| panic!("{name} missing from /metrics"))
    }

    /// The node's log so far.
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(&self.nodes[node].log).unwrap_or_default()
    }

    /// Lease keys under this cluster's prefix whose value names `node_id`.
    pub fn leases_of(&self, node_id: &str) -> usize {
        let mut redis = redis::Client::open(self.redis_url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}lock:booking:*", self.prefix))
            .query(&mut redis)
            .unwrap();
        keys.iter()
            .filter_map(|key| {
                redis::cmd("GET")
                    .arg(key)
                    .query::<Option<String>>(&mut redis)
                    .ok()?
            })
            .filter(|value| value.starts_with(&format!("{node_id}:")))
            .count()
    }

    /// The value of a booking's lease key, if any.
    pub fn lease(&self, booking: i64) -> Option<String> {
        let mut redis = redis::Client::open(self.redis_url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap();
        redis::cmd("GET")
            .arg(format!("{}lock:booking:{booking}", self.prefix))
            .query(&mut redis)
            .unwrap()
    }

    /// Every audit event, oldest first.
    pub async fn events(&self) -> Vec<Event> {
        diesel::sql_query(
            "SELECT id, booking_id, from_status, to_status, node_id, fencing_token, request_id, \
             created_at FROM booking_events ORDER BY id",
        )
        .load(&mut self.db().await)
        .await
        .unwrap()
    }

    /// Checks the single-writer invariants on the whole event trail: per booking, tokens never
    /// go back, each token has one writer, and each event starts where the previous one ended.
    pub async fn assert_one_writer_per_token(&self) -> Vec<Event> {
        let events = self.events().await;
        let mut last: std::collections::HashMap<i64, &Event> = Default::default();
        let mut writers: std::collections::HashMap<(i64, i64), &str> = Default::default();
        for event in &events {
            if let Some(previous) = last.get(&event.booking_id) {
                assert!(
                    event.fencing_token >= previous.fencing_token,
                    "token went back: {previous:?} then {event:?}"
                );
                assert_eq!(
                    event.from_status.as_deref(),
                    Some(previous.to_status.as_str()),
                    "broken chain: {previous:?} then {event:?}"
                );
            }
            if event.fencing_token > 0 {
                let writer = writers
                    .entry((event.booking_id, event.fencing_token))
                    .or_insert(event.node_id.as_str());
                assert_eq!(
                    *writer, event.node_id,
                    "two writers under one token: {event:?}"
                );
            }
            last.insert(event.booking_id, event);
        }
        events
    }

    /// No driver was ever in two bookings at once (from the audit trail: the unique index makes
    /// the bookings table itself unable to show it), every driver row agrees with its active
    /// booking, and no node logged a write that a unique index refused.
    pub async fn assert_no_driver_booked_twice(&self) {
        crate::audit::assert_no_driver_booked_twice(&mut self.db().await).await;
        for (i, node) in self.nodes.iter().enumerate() {
            let log = self.log(i);
            let refused = crate::audit::unique_violations(&log);
            assert!(
                refused.is_empty(),
                "{} ({}) logged unique violations: {refused:#?}",
                node.id,
                node.log.display()
            );
        }
    }

    /// Statuses of `bookings`, by id.
    pub async fn statuses(&self) -> std::collections::HashMap<i64, String> {
        let stored = self.stored().await;
        stored.into_iter().map(|(id, b)| (id, b.status)).collect()
    }

    /// Every booking's stored status and fencing token, by id.
    pub async fn stored(&self) -> std::collections::HashMap<i64, Stored> {
        let rows: Vec<Stored> =
            diesel::sql_query("SELECT id, status::text AS status, fencing_token FROM bookings")
                .load(&mut self.db().await)
                .await
                .unwrap();
        rows.into_iter().map(|r| (r.id, r)).collect()
    }
}

/// A booking as PostgreSQL holds it.
#[derive(QueryableByName, Debug, Clone)]
pub struct Stored {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub fencing_token: i64,
}

#[derive(QueryableByName, Debug, Clone)]
pub struct Event {
    /// Shown in failure messages (through Debug): the trail's order.
    #[allow(dead_code)]
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub booking_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub from_status: Option<String>,
    #[diesel(sql_type = Text)]
    pub to_status: String,
    #[diesel(sql_type = Text)]
    pub node_id: String,
    #[diesel(sql_type = BigInt)]
    pub fencing_token: i64,
    #[diesel(sql_type = Text)]
    pub request_id: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            // A stopped process must be woken to die promptly.
            // SAFETY: signals to our own children.
            unsafe {
                libc::kill(node.pid(), libc::SIGCONT);
                libc::kill(node.pid(), libc::SIGKILL);
            }
            let _ = node.child.wait();
            if std::thread::panicking() {
                let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!(
                    "---- last lines of {} ({}) ----",
                    node.id,
                    node.log.display()
                );
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        if std::thread::panicking() {
            // Keep the database and the logs for a post-mortem.
            return;
        }
        if let Some(dir) = <[Node]>::first(&self.nodes).and_then(|n| n.log.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
        database::drop_test_data(
            database::with_database(&self.db_url, "postgres"),
            self.db_name.clone(),
            self.redis_url.clone(),
            self.prefix.clone(),
        );
    }
}

/// A response header's value, when it is there and readable.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

//! Three (or more) real `ridelock serve` processes on one test database and key prefix, with
//! random ports, for the cluster and chaos suites; `faults.rs` hurts them. Cluster tests run one
//! at a time: they measure takeover times, which a second cluster competing for the two cores
//! would distort. The chaos suite starts the nodes on services it can stop, each node reaching
//! Redis through a proxy it can cut, and, for a partition between nodes, each node in a network
//! namespace of its own (`netns.rs`).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use diesel_async::AsyncPgConnection;
use serde_json::{json, Value};
use uuid::Uuid;

use super::database;
use super::fixtures::{booking_body, lease_key, Api, PICKUP};
use super::netns::Network;
use super::poll;
use super::proxy::{host_port, Proxy};
use super::redis_client::RedisAt;
use super::reply::{ReadError, Reply};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Node {
    pub id: String,
    pub address: String,
    child: Child,
    log: PathBuf,
    /// The environment it was started with, to start it again ([`Cluster::restart`]).
    env: Vec<(String, String)>,
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
    /// Where the nodes' keys live, as the test reaches them.
    pub redis_at: RedisAt,
    pub prefix: String,
    pub client: reqwest::Client,
    /// Per node, the proxy it reaches Redis through ([`Setup::redis_proxies`]); else empty.
    pub proxies: Vec<Proxy>,
    /// With [`Setup::network`]: the proxy on the host's bridge address the nodes reach
    /// PostgreSQL through.
    pub db_proxy: Option<Proxy>,
    /// The nodes' namespaces ([`Setup::network`]); dropped after the nodes are killed and the
    /// proxies closed.
    pub network: Option<Network>,
    /// The HS256 secret the nodes verify tokens with, when not the test profile's (nodes off
    /// loopback refuse the public development secret).
    auth_secret: Option<String>,
    _serial: tokio::sync::MutexGuard<'static, ()>,
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
    /// Redis, as the test reaches it (the nodes too, unless `env` names a Sentinel or cluster
    /// deployment).
    pub redis: String,
    /// Where the nodes' keys live, for the test's own reads and the clean-up.
    pub redis_at: RedisAt,
    /// Whether each node reaches Redis through a proxy of its own, which a test can cut
    /// ([`Cluster::proxies`]); else directly.
    pub redis_proxies: bool,
    /// The nodes' `RUST_LOG`.
    pub log_filter: String,
    /// Further environment for the nodes, e.g. `RIDELOCK_REDIS__MODE` and `RIDELOCK_REDIS__NODES`
    /// of a Sentinel or Redis Cluster deployment (without them, the nodes inherit the test's).
    pub env: Vec<(String, String)>,
    /// Whether each node runs in a network namespace of its own ([`Network`]), listening on its
    /// own address, so a test can partition the nodes; else all on the host's loopback. The
    /// nodes then reach PostgreSQL and Redis through proxies on the host's bridge address, and
    /// get private cluster and auth secrets (the public development ones are refused off
    /// loopback).
    pub network: bool,
}

impl Setup {
    /// `count` nodes on the services `make test` started (DATABASE_URL, REDIS_URL).
    pub fn from_env(count: usize) -> Self {
        Self {
            count,
            database_server: std::env::var("DATABASE_URL")
                .expect("DATABASE_URL (run through `make test`, which starts the services)"),
            redis: std::env::var("REDIS_URL").expect("REDIS_URL"),
            redis_at: RedisAt::from_env(),
            redis_proxies: false,
            log_filter: "info".to_owned(),
            env: Vec::new(),
            network: false,
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
        let network = setup.network.then(|| Network::create(count));
        // Where the nodes find the host's services: its loopback, or its address on their bridge.
        let host_ip = network
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, Network::host_ip);
        let mut proxies = Vec::new();
        if setup.redis_proxies {
            for _ in 0..count {
                proxies.push(Proxy::start_on(host_ip.into(), &host_port(&redis_url)).await);
            }
        }
        let db_proxy = match &network {
            Some(_) => Some(Proxy::start_on(host_ip.into(), &host_port(&db_url)).await),
            None => None,
        };
        let nodes_db_url = db_proxy.as_ref().map_or(db_url.clone(), |p| p.url(&db_url));
        // Per run, and not `dev-…`: what a node listening off loopback requires.
        let secrets = network.as_ref().map(|_| {
            let secret = |what| format!("{what}-{}", Uuid::new_v4().simple());
            (secret("partition-cluster"), secret("partition-auth"))
        });
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
                let redis = proxies
                    .get(i - 1)
                    .map_or(redis_url.clone(), |proxy| proxy.url(&redis_url));
                let mut env: Vec<(String, String)> = [
                    ("RIDELOCK_ENV", "test"),
                    ("DATABASE_URL", &nodes_db_url),
                    ("REDIS_URL", &redis),
                    ("RIDELOCK_SERVER__PORT", "0"),
                    ("RIDELOCK_NODE__ID", &id),
                    ("RIDELOCK_REDIS__KEY_PREFIX", &prefix),
                    // Actors stay for the whole test, so who owns a booking is decided by the
                    // faults under test, not by an idle stop.
                    ("RIDELOCK_BOOKING__IDLE_STOP_MS", "60000"),
                    ("RUST_LOG", &setup.log_filter),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .chain(setup.env.iter().cloned())
                .collect();
                if let (Some(network), Some((cluster_secret, auth_secret))) = (&network, &secrets) {
                    let address = network.node_address(i - 1);
                    env.extend(
                        [
                            ("RIDELOCK_SERVER__HOST", address.ip().to_string()),
                            ("RIDELOCK_SERVER__PORT", address.port().to_string()),
                            ("RIDELOCK_NODE__ADVERTISE_URL", format!("http://{address}")),
                            ("RIDELOCK_CLUSTER__SECRET", cluster_secret.clone()),
                            ("RIDELOCK_AUTH__SECRET", auth_secret.clone()),
                        ]
                        .map(|(k, v)| (k.to_owned(), v)),
                    );
                }
                let child = spawn_node(network.as_ref(), i - 1, &env, File::create(&log).unwrap());
                Node {
                    id,
                    address: String::new(),
                    child,
                    log,
                    env,
                }
            })
            .collect();
        let until = Instant::now() + Duration::from_secs(60);
        for (i, node) in nodes.iter_mut().enumerate() {
            let started = poll::until(
                until.saturating_duration_since(Instant::now()),
                || {
                    let seen = (
                        logged_port(&node.log, &node.id),
                        node.child.try_wait().unwrap(),
                    );
                    async move { seen }
                },
                |(port, exited)| port.is_some() || exited.is_some(),
            )
            .await;
            let Ok((Some(port), _)) = started else {
                let (_, exited) = started.unwrap_or_else(|seen| seen);
                panic!(
                    "node {} did not start ({exited:?}):\n{}",
                    node.id,
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                );
            };
            let host = network
                .as_ref()
                .map_or(std::net::Ipv4Addr::LOCALHOST, |network| network.node_ip(i));
            node.address = format!("http://{host}:{port}");
        }
        let auth_secret = secrets.map(|(_, auth)| auth);
        let cluster = Self {
            nodes,
            db_url,
            db_name,
            redis_url,
            redis_at: setup.redis_at.clone(),
            prefix,
            client: reqwest::Client::builder()
                .default_headers(super::auth::ops_signed_with(auth_secret.as_deref()))
                .pool_max_idle_per_host(64)
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            proxies,
            db_proxy,
            network,
            auth_secret,
            _serial: serial,
        };
        cluster.wait_ready(Duration::from_secs(60)).await;
        cluster
    }

    /// Waits until every node serves and counts them all; fails with the last answer of each.
    async fn wait_ready(&self, within: Duration) {
        let count = self.nodes.len();
        let ready = poll::until(
            within,
            || async {
                let mut seen = Vec::with_capacity(count);
                for i in 0..count {
                    let answer = self.get(i, "/api/cluster/nodes").await;
                    seen.push(
                        answer.map(|nodes| (nodes.status.as_u16(), nodes.body["count"].clone())),
                    );
                }
                seen
            },
            |seen| {
                seen.iter()
                    .all(|nodes| matches!(nodes, Ok((200, n)) if *n == json!(count)))
            },
        )
        .await;
        assert!(ready.is_ok(), "the cluster did not come up: {ready:?}");
    }

    /// Starts node `node` again once it has exited: a new process under the same id, on the same
    /// port (a load balancer in front keeps its address), database, prefix and environment, as a
    /// replaced node of a rolling upgrade. Its log goes on in the same file. Returns once every
    /// node serves and counts them all.
    ///
    /// The port was free for a moment: if something took it meanwhile (an outgoing connection
    /// given it as its local port), the node fails to bind and is started again, for up to 5 s.
    pub async fn restart(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let old = node.child.try_wait().unwrap();
        assert!(old.is_some(), "{} is still running", node.id);
        let port = node.address.rsplit(':').next().unwrap().to_owned();
        let env: Vec<(String, String)> = node
            .env
            .iter()
            .map(|(k, v)| match k.as_str() {
                "RIDELOCK_SERVER__PORT" => (k.clone(), port.clone()),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let marker = format!("listening node={} port={port}", node.id);
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let from = std::fs::metadata(&node.log).map_or(0, |m| m.len());
            let out = File::options().append(true).open(&node.log).unwrap();
            node.child = spawn_node(self.network.as_ref(), index, &env, out);
            let (log, child) = (&node.log, &mut node.child);
            let started = poll::until(
                Duration::from_secs(30),
                || {
                    let seen = (
                        log_since(log, from).contains(&marker),
                        child.try_wait().unwrap(),
                    );
                    async move { seen }
                },
                |(listening, exited)| *listening || exited.is_some(),
            )
            .await;
            let since = log_since(&node.log, from);
            match started {
                Ok((true, _)) => break,
                Ok((false, Some(_))) if since.contains("in use") && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => panic!("{} did not start again ({started:?}):\n{since}", node.id),
            }
        }
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// Waits for a node to exit (after SIGTERM or SIGKILL).
    pub async fn exit_status(&mut self, node: usize, within: Duration) -> Option<ExitStatus> {
        let child = &mut self.nodes[node].child;
        let exited = poll::until(
            within,
            || {
                let status = child.try_wait().unwrap();
                async move { status }
            },
            Option::is_some,
        )
        .await;
        exited.unwrap_or_else(|last| last)
    }

    pub async fn request(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, ReadError> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.nodes[node].address));
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::send(request).await
    }

    pub async fn get(&self, node: usize, path: &str) -> Result<Reply, ReadError> {
        self.request(node, reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, node: usize, path: &str, body: Value) -> Result<Reply, ReadError> {
        self.request(node, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// Sends a request to node `node` as `subject` (a fresh token for it, instead of the
    /// operator's every other request carries).
    pub async fn as_subject(
        &self,
        node: usize,
        subject: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, ReadError> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.nodes[node].address))
            .bearer_auth(super::auth::token_signed_with(
                subject,
                self.auth_secret.as_deref(),
            ));
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::send(request).await
    }

    /// The headers of a client acting as an operator on these nodes.
    pub fn ops_headers(&self) -> reqwest::header::HeaderMap {
        super::auth::ops_signed_with(self.auth_secret.as_deref())
    }

    /// The nodes' namespaces; panics unless the cluster was started with [`Setup::network`].
    pub fn network(&self) -> &Network {
        self.network
            .as_ref()
            .expect("a cluster whose nodes run in namespaces (Setup::network)")
    }

    pub async fn db(&self) -> AsyncPgConnection {
        database::connect(&self.db_url).await
    }

    /// `count` bookings created and assigned through `owner`, whose actors (and leases) therefore
    /// live there: `(booking, driver)` pairs, each with fencing token 1. (Created through the
    /// owner: the node that creates a booking holds it from then on.)
    pub async fn owned_by(&self, owner: usize, count: usize) -> Vec<(i64, i64)> {
        let rider = self.rider().await;
        self.drivers(count).await;
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            let body = booking_body(rider, PICKUP.0, PICKUP.1);
            let created = self.post(owner, "/api/bookings", body).await.unwrap();
            created.expect(201, None);
            let booking = created.data()["id"].as_i64().unwrap();
            let reply = self
                .post(owner, &format!("/api/bookings/{booking}/assign"), json!({}))
                .await
                .unwrap();
            reply.expect_status(200);
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
        super::metrics::scrape(&self.client, &self.nodes[node].address, name).await
    }

    /// The node's log so far.
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(&self.nodes[node].log).unwrap_or_default()
    }

    /// Lease keys under this cluster's prefix whose value names `node_id`.
    pub fn leases_of(&self, node_id: &str) -> usize {
        let mut redis = self.redis_at.connect().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(lease_key(&self.prefix, "*"))
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
        let mut redis = self.redis_at.connect().unwrap();
        redis::cmd("GET")
            .arg(lease_key(&self.prefix, booking))
            .query(&mut redis)
            .unwrap()
    }

    /// No driver was ever in two bookings at once (from the audit trail: the unique index makes
    /// the bookings table itself unable to show it), every driver row agrees with its active
    /// booking, and no node logged a write that a unique index refused.
    pub async fn assert_no_driver_booked_twice(&self) {
        super::audit::assert_no_driver_booked_twice(&mut self.db().await).await;
        for (i, node) in self.nodes.iter().enumerate() {
            let log = self.log(i);
            let refused = super::audit::unique_violations(&log);
            assert!(
                refused.is_empty(),
                "{} ({}) logged unique violations: {refused:#?}",
                node.id,
                node.log.display()
            );
        }
    }
}

/// Starts `ridelock serve` as node `index` (in its namespace, if there is a network) with `env`, its
/// output to `log`.
fn spawn_node(
    network: Option<&Network>,
    index: usize,
    env: &[(String, String)],
    log: File,
) -> Child {
    let binary = env!("CARGO_BIN_EXE_ridelock");
    match network {
        Some(network) => network.command(index, binary),
        None => Command::new(binary),
    }
    .arg("serve")
    .envs(env.iter().map(|(k, v)| (k, v)))
    .stdout(Stdio::from(log.try_clone().unwrap()))
    .stderr(Stdio::from(log))
    .spawn()
    .expect("start a ridelock node")
}

/// What a log holds past byte `from` (a restarted node's lines).
fn log_since(log: &std::path::Path, from: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default()).into_owned()
}

/// A cluster, to the fixtures, is its first node: riders, drivers and bookings are made there.
impl Api for Cluster {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        self.request(0, method, path, body).await.unwrap()
    }
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
            if std::env::var_os("RIDELOCK_TEST_KEEP_LOGS").is_none() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        database::drop_test_data(
            database::with_database(&self.db_url, "postgres"),
            self.db_name.clone(),
            self.redis_at.clone(),
            self.prefix.clone(),
        );
    }
}

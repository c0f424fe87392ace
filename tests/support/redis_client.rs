//! The tests' own view of Redis, in whichever mode the app under test runs
//! (`RIDELOCK_REDIS__MODE`, written by `scripts/services.sh` into the profile's env file): one
//! server at the app's `redis.url`, or in mode `cluster` the cluster named by `redis.nodes`
//! (through the crate's cluster client, so every key reaches the node holding its slot, and
//! `KEYS` asks every primary). In mode `sentinel` the URL names the primary `services.sh up`
//! found, which the api and cluster suites never fail over.

use redis::{Cmd, ConnectionLike, RedisResult, Value};

pub enum TestRedis {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

/// Where an app's keys live: one server, or a Redis Cluster (some of its nodes' URLs).
#[derive(Clone, Debug)]
pub struct RedisAt {
    pub url: String,
    pub cluster_nodes: Option<String>,
    /// In mode `sentinel`: the sentinels' URLs and the service name. The primary is asked of
    /// them at each connection, since a failover (the chaos suite's) may have moved it.
    pub sentinels: Option<(String, String)>,
}

impl RedisAt {
    /// The Redis of an app with these settings.
    pub fn of(settings: &ridelock::config::Settings) -> Self {
        let mode = settings.redis.mode;
        let nodes = settings.redis.nodes.expose().to_owned();
        Self {
            url: settings.redis.url.expose().to_owned(),
            cluster_nodes: (mode == ridelock::config::RedisMode::Cluster).then(|| nodes.clone()),
            sentinels: (mode == ridelock::config::RedisMode::Sentinel)
                .then(|| (nodes, settings.redis.service_name.clone())),
        }
    }

    /// The Redis of the services `make test` started (`REDIS_URL`, and `RIDELOCK_REDIS__MODE` /
    /// `RIDELOCK_REDIS__NODES` when they name a cluster).
    pub fn from_env() -> Self {
        let mode = std::env::var("RIDELOCK_REDIS__MODE").unwrap_or_default();
        let nodes = std::env::var("RIDELOCK_REDIS__NODES").unwrap_or_default();
        let service =
            std::env::var("RIDELOCK_REDIS__SERVICE_NAME").unwrap_or_else(|_| "ridelock".into());
        Self {
            url: std::env::var("REDIS_URL").expect("REDIS_URL (make test sets it)"),
            cluster_nodes: (mode == "cluster").then(|| nodes.clone()),
            sentinels: (mode == "sentinel").then_some((nodes, service)),
        }
    }

    pub fn connect(&self) -> RedisResult<TestRedis> {
        if let Some(nodes) = &self.cluster_nodes {
            let nodes: Vec<&str> = nodes.split(',').filter(|n| !n.trim().is_empty()).collect();
            return redis::cluster::ClusterClient::new(nodes)?
                .get_connection()
                .map(|conn| TestRedis::Cluster(Box::new(conn)));
        }
        redis::Client::open(self.primary_url()?)?
            .get_connection()
            .map(TestRedis::Single)
    }

    /// `url`, or in mode `sentinel` the same URL at the address the first sentinel that
    /// answers gives for the primary.
    fn primary_url(&self) -> RedisResult<String> {
        let Some((sentinels, service)) = &self.sentinels else {
            return Ok(self.url.clone());
        };
        let mut last = None;
        for sentinel in sentinels.split(',').filter(|s| !s.trim().is_empty()) {
            let asked = redis::Client::open(sentinel.trim()).and_then(|client| {
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(service)
                    .query::<(String, u16)>(&mut client.get_connection()?)
            });
            match asked {
                Ok((host, port)) => {
                    // redis://default:<password>@<host>:<port>/, as services.sh writes it.
                    let (credentials, _) = self.url.rsplit_once('@').unwrap_or(("redis:/", ""));
                    return Ok(format!("{credentials}@{host}:{port}/"));
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| (redis::ErrorKind::Io, "no sentinel listed").into()))
    }
}

impl ConnectionLike for TestRedis {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Self::Single(conn) => conn.req_command(cmd),
            Self::Cluster(conn) => conn.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Self::Single(conn) => conn.check_connection(),
            Self::Cluster(conn) => conn.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Single(conn) => conn.is_open(),
            Self::Cluster(conn) => conn.is_open(),
        }
    }
}

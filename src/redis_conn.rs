//! The one Redis connection every Redis user holds, in the deployment `redis.mode` names:
//!
//! - `single`: one server at `redis.url`, through the crate's self-reconnecting
//!   `ConnectionManager`.
//! - `sentinel`: the primary of `redis.service_name`, found by asking the sentinels in
//!   `redis.nodes` (the crate's `SentinelClient`), and asked for again after any answer that says
//!   the primary may have moved. The crate's client never asks again on its own.
//! - `cluster`: Redis Cluster through the crate's cluster client, which follows slot redirects
//!   and learns the new primaries after a failover.
//!
//! Every command names one key, so it runs the same in each mode, with two exceptions handled
//! here: a pipeline must keep to one slot in a cluster ([`RedisConn::pipelines_span_slots`] tells
//! callers to send commands one by one instead, concurrently), and SCAN must visit every primary
//! ([`RedisConn::scan_match`]). What an error means (this Redis cannot take writes now, or the
//! command was wrong) is decided here too: [`means_unavailable`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Value};

use crate::config::{RedisMode, RedisSettings};

/// SCAN's page size: a hint to Redis, which may answer with more or fewer keys.
const SCAN_COUNT: usize = 1000;

/// A connection to Redis in one of the three modes; cheap to clone, every clone shares it.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Sentinel(SentinelConn),
    Cluster(ClusterConnection),
}

/// A lazily made connection for `settings`: nothing is dialled here, so a node starts while Redis
/// (or every sentinel) is down, and takes Redis up when it answers.
pub fn connect(settings: &RedisSettings) -> anyhow::Result<RedisConn> {
    let timeout = settings.response_timeout();
    match settings.mode {
        RedisMode::Single => {
            let client = redis::Client::open(settings.url.expose()).context("parsing redis.url")?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(timeout))
                .set_number_of_retries(2);
            let manager = ConnectionManager::new_lazy_with_config(client, config)
                .context("configuring the Redis connection")?;
            Ok(RedisConn::Single(manager))
        }
        RedisMode::Sentinel => Ok(RedisConn::Sentinel(SentinelConn::new(settings)?)),
        RedisMode::Cluster => {
            let client = redis::cluster::ClusterClientBuilder::new(node_infos(settings)?)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // A failover takes the cluster's node timeout (seconds): retrying a few times
                // within the response timeout follows a redirect or a reconnect, and past it the
                // command fails like any silent Redis, so leases move to PostgreSQL meanwhile.
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()
                .context("configuring the Redis Cluster client")?;
            let config = redis::cluster::ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            Ok(RedisConn::Cluster(
                client.get_pending_async_connection_with_config(config),
            ))
        }
    }
}

fn node_infos(settings: &RedisSettings) -> anyhow::Result<Vec<redis::ConnectionInfo>> {
    let urls = settings.node_urls();
    if urls.is_empty() {
        bail!(
            "redis.nodes is empty: mode {:?} needs its nodes",
            settings.mode
        );
    }
    urls.iter()
        .map(|url| url.into_connection_info().context("parsing redis.nodes"))
        .collect()
}

impl RedisConn {
    /// True when a pipeline may not mix keys of different slots (Redis Cluster): callers send
    /// such commands one by one, concurrently, which the multiplexed connections pipeline on the
    /// wire anyway.
    fn pipelines_span_slots(&self) -> bool {
        !self.is_sharded()
    }

    /// True for Redis Cluster: keys live on several primaries, which fail one at a time.
    pub fn is_sharded(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs `commands` as one batch and answers their replies in order: one pipeline, or in a
    /// cluster each command on its own, all at once. A command's own refusal fails the batch,
    /// unless `keep_going`: then its reply is left an error (in a pipeline) or nil (in a
    /// cluster) and the others are read. Redis being unreachable fails the batch either way.
    pub async fn batch(
        &self,
        commands: Vec<Cmd>,
        keep_going: bool,
    ) -> Result<Vec<Value>, RedisError> {
        let mut conn = self.clone();
        if self.pipelines_span_slots() {
            let mut pipe = redis::pipe();
            if keep_going {
                pipe.ignore_errors();
            }
            for command in commands {
                pipe.add_command(command);
            }
            return pipe.query_async(&mut conn).await;
        }
        let replies = futures::future::join_all(commands.iter().map(|command| {
            let mut conn = conn.clone();
            async move { command.query_async::<Value>(&mut conn).await }
        }))
        .await;
        replies
            .into_iter()
            .map(|reply| match reply {
                Err(error) if keep_going && !means_unavailable(&error) => Ok(Value::Nil),
                other => other,
            })
            .collect()
    }

    /// Every key matching `pattern`, by SCAN (never KEYS, which blocks Redis); in a cluster, on
    /// every primary, each with its own cursor.
    pub async fn scan_match(&self, pattern: &str) -> Result<Vec<String>, RedisError> {
        let mut keys = Vec::new();
        match self {
            Self::Cluster(conn) => {
                for (host, port) in cluster_primaries(conn).await? {
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port,
                    });
                    let mut cursor = 0_u64;
                    loop {
                        let reply = conn
                            .clone()
                            .route_command(scan_page(cursor, pattern), route.clone())
                            .await?;
                        let (next, page): (u64, Vec<String>) = redis::from_redis_value(reply)?;
                        keys.extend(page);
                        cursor = next;
                        if cursor == 0 {
                            break;
                        }
                    }
                }
            }
            _ => {
                let mut conn = self.clone();
                let mut cursor = 0_u64;
                loop {
                    let (next, page): (u64, Vec<String>) =
                        scan_page(cursor, pattern).query_async(&mut conn).await?;
                    keys.extend(page);
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
        Ok(keys)
    }
}

fn scan_page(cursor: u64, pattern: &str) -> Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    cmd
}

/// The address of every primary, from `CLUSTER SHARDS` asked of any node.
async fn cluster_primaries(conn: &ClusterConnection) -> Result<Vec<(String, u16)>, RedisError> {
    let reply = conn
        .clone()
        .route_command(
            redis::cmd("CLUSTER").arg("SHARDS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    let shards: Vec<std::collections::HashMap<String, Value>> = redis::from_redis_value(reply)?;
    let mut primaries = Vec::new();
    for shard in shards {
        let Some(nodes) = shard.get("nodes") else {
            continue;
        };
        let nodes: Vec<std::collections::HashMap<String, Value>> =
            redis::from_redis_value(nodes.clone())?;
        for node in nodes {
            let field = |name: &str| {
                node.get(name)
                    .cloned()
                    .map(redis::from_redis_value::<String>)
            };
            let role = field("role").transpose()?;
            let health = field("health").transpose()?;
            if role.as_deref() != Some("master") || health.as_deref() != Some("online") {
                continue;
            }
            let host = field("ip").transpose()?.unwrap_or_default();
            let port = node
                .get("port")
                .cloned()
                .map(redis::from_redis_value::<u16>)
                .transpose()?;
            if let Some(port) = port {
                primaries.push((host, port));
            }
        }
    }
    Ok(primaries)
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Sentinel(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Sentinel(_) | Self::Cluster(_) => 0,
        }
    }
}

/// The primary of a Sentinel-managed Redis. The connection is made on first use and forgotten
/// after any error that says the primary may have moved ([`means_unavailable`]): the next
/// command asks the sentinels again. Until they have promoted a replica, that command fails like
/// any silent Redis (and leases move to PostgreSQL meanwhile).
#[derive(Clone)]
pub struct SentinelConn {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    /// One discovery at a time; the others wait for its connection.
    client: tokio::sync::Mutex<SentinelClient>,
    primary: Mutex<Option<Primary>>,
    config: redis::AsyncConnectionConfig,
    /// Bounds a whole discovery: sentinels asked one by one, then the primary dialled.
    discovery_timeout: Duration,
}

#[derive(Clone)]
struct Primary {
    /// Which discovery made this connection, so a late error does not forget a newer one.
    generation: u64,
    conn: MultiplexedConnection,
}

impl SentinelConn {
    fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let sentinels = node_infos(settings)?;
        // The primary is reached with the sentinels' credentials (one password for the whole
        // deployment, as `scripts/services.sh` sets it up).
        let redis = sentinels
            .first()
            .map(|info| info.redis_settings().clone())
            .unwrap_or_default();
        let node_info = SentinelNodeConnectionInfo::default().set_redis_connection_info(redis);
        let client = SentinelClient::build(
            sentinels,
            settings.service_name.clone(),
            Some(node_info),
            SentinelServerType::Master,
        )
        .context("configuring the Redis Sentinel client")?;
        let timeout = settings.response_timeout();
        Ok(Self {
            shared: Arc::new(SentinelShared {
                client: tokio::sync::Mutex::new(client),
                primary: Mutex::new(None),
                config: redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(timeout)),
                discovery_timeout: timeout * 2,
            }),
        })
    }

    fn current(&self) -> Option<Primary> {
        self.shared
            .primary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The primary's connection, asking the sentinels for it if there is none.
    async fn primary(&self) -> Result<Primary, RedisError> {
        if let Some(primary) = self.current() {
            return Ok(primary);
        }
        let mut client = self.shared.client.lock().await;
        // Another caller may have found it while this one waited.
        if let Some(primary) = self.current() {
            return Ok(primary);
        }
        let config = self.shared.config.clone();
        let found = tokio::time::timeout(self.shared.discovery_timeout, async {
            client
                .async_get_client()
                .await?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        })
        .await
        .map_err(|_| {
            RedisError::from((
                redis::ErrorKind::Io,
                "no answer from the sentinels or their primary in time",
            ))
        })??;
        let mut slot = self
            .shared
            .primary
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let generation = slot.as_ref().map_or(0, |p| p.generation) + 1;
        let primary = Primary {
            generation,
            conn: found,
        };
        *slot = Some(primary.clone());
        Ok(primary)
    }

    /// Forgets the connection of `generation` if `error` says the primary may have moved.
    fn judge<T>(&self, generation: u64, outcome: Result<T, RedisError>) -> Result<T, RedisError> {
        if let Err(error) = &outcome {
            if means_unavailable(error) {
                let mut slot = self
                    .shared
                    .primary
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_some_and(|p| p.generation == generation) {
                    log::warn!(
                        "redis primary forgotten, sentinels asked again on next use error={error}"
                    );
                    *slot = None;
                }
            }
        }
        outcome
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let Primary {
                generation,
                mut conn,
            } = self.primary().await?;
            let outcome = conn.req_packed_command(cmd).await;
            self.judge(generation, outcome)
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let Primary {
                generation,
                mut conn,
            } = self.primary().await?;
            let outcome = conn.req_packed_commands(pipeline, offset, count).await;
            self.judge(generation, outcome)
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// True for the errors that mean this Redis cannot take lease writes now, which the node treats
/// exactly as silence: it could not be reached or did not answer in time, or it refused for
/// reasons of its own state rather than the command's: a replica after a failover (`READONLY`),
/// still loading its data (`LOADING`), a replica cut off from its primary (`MASTERDOWN`), full
/// under `noeviction` (`OOM`), a cluster without its slots (`CLUSTERDOWN`, `TRYAGAIN`), unable
/// to persist (`MISCONF`) or short of replicas (`NOREPLICAS`), or sentinels that know no primary
/// for the service (in the middle of a failover). A refusal of the command itself (a wrong type,
/// a script error) is not about Redis and is not counted.
pub(crate) fn means_unavailable(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    if error.is_timeout()
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        return true;
    }
    let refusal = |code: &str| {
        matches!(
            code,
            "READONLY"
                | "LOADING"
                | "MASTERDOWN"
                | "CLUSTERDOWN"
                | "TRYAGAIN"
                | "OOM"
                | "MISCONF"
                | "NOREPLICAS"
        )
    };
    if matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::ReadOnly
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::TryAgain,
        )
    ) || error.code().is_some_and(refusal)
    {
        return true;
    }
    // No sentinel names a primary that says it is one (mid-failover): Redis is unreachable, not
    // the command wrong.
    if error.kind() == ErrorKind::MasterNameNotFoundBySentinel {
        return true;
    }
    // A pipeline's error names only its first item's kind: any item's refusal counts.
    error
        .clone()
        .into_server_errors()
        .is_some_and(|items| items.iter().any(|(_, item)| refusal(item.code())))
}

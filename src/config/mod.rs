//! Typed settings, layered as `config/base.toml` → `config/$RIDELOCK_ENV.toml` → `RIDELOCK_*` env
//! vars (plus the conventional `DATABASE_URL` / `REDIS_URL`). `validate()` refuses a configuration
//! that would break the lease invariants (e.g. a heartbeat too slow for the TTL) before anything
//! starts.
//!
//! Here: the settings, section by section, and what each section builds (durations, the
//! PostgreSQL pool, the Redis connection). Loading is in `loading.rs`, the checks in
//! `validation.rs`; `config::{load, load_profile, profile, is_development}` are re-exported.

mod loading;
#[cfg(test)]
mod tests;
mod validation;

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

pub use loading::{load, load_profile, profile};

/// A value that must not appear in logs (URLs may carry passwords).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub node: NodeSettings,
    pub cluster: ClusterSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub lease: LeaseSettings,
    pub booking: BookingSettings,
    pub assign: AssignSettings,
    pub offer: OfferSettings,
    pub idempotency: IdempotencySettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub streams: StreamSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeSettings {
    pub id: String,
    /// The URL other nodes use to reach this one; empty means `http://127.0.0.1:<port>`.
    pub advertise_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClusterSettings {
    /// Shared by every node; signs and verifies forwarded calls.
    pub secret: Secret,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub pool_size: usize,
    pub acquire_timeout_ms: u64,
    /// PostgreSQL ends a session whose transaction sat idle this long, releasing its locks.
    pub idle_transaction_timeout_ms: u64,
    /// PostgreSQL cancels a statement that ran this long (a lock wait included); background work
    /// gives up on a statement unanswered this long (a server that stopped answering).
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// How Redis is deployed: one server, Sentinel-managed, or a Redis Cluster.
    pub mode: RedisMode,
    /// The server in mode `single`.
    pub url: Secret,
    /// Comma-separated `redis://` URLs: the sentinels in mode `sentinel`, some of the cluster's
    /// nodes in mode `cluster` (the rest are learned from them). Unused in mode `single`.
    pub nodes: Secret,
    /// The name the sentinels monitor the primary under (mode `sentinel`).
    pub service_name: String,
    pub key_prefix: String,
    pub response_timeout_ms: u64,
}

/// `redis.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    Single,
    Sentinel,
    Cluster,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LeaseSettings {
    pub ttl_ms: u64,
    pub renew_every_ms: u64,
    pub drift_ms: u64,
    /// Replicas a new Redis lease must reach (`WAIT`) before it is used; 0: none waited for.
    pub wait_replicas: u32,
    /// How long a grant waits for them.
    pub wait_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BookingSettings {
    pub idle_stop_ms: u64,
    pub mailbox_capacity: usize,
    /// A driver's `actual_fare` may be at most this many times the booking's estimate.
    pub max_fare_ratio: f64,
    /// Bookings one rider may have pending, assigned or accepted at once.
    pub max_active_per_rider: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AssignSettings {
    pub radius_km: f64,
    pub max_candidates: usize,
}

/// Per-caller request rates, per node (see `http::rate_limit`).
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// A rider's or driver's token: requests per second, and the burst it may send at once.
    pub per_second: f64,
    pub burst: u32,
    /// An operator's token.
    pub ops_per_second: f64,
    pub ops_burst: u32,
    /// A client address, for requests without a valid token (all requests with auth off).
    pub address_per_second: f64,
    pub address_burst: u32,
    /// Callers tracked at most; idle ones are forgotten first.
    pub max_callers: usize,
}

/// How long an assigned driver has to accept, and what happens when it does not.
#[derive(Debug, Clone, Deserialize)]
pub struct OfferSettings {
    /// An assignment not accepted this long after it was made is taken back.
    pub timeout_ms: u64,
    /// After this many offers of one booking expired, the booking is cancelled instead.
    pub max_offers: u32,
    /// How often each node looks for expired offers.
    pub sweep_every_ms: u64,
    /// Expired offers taken back per sweep; the rest wait for the next one.
    pub sweep_batch: u32,
}

impl OfferSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub(crate) fn sweep_every(&self) -> Duration {
        Duration::from_millis(self.sweep_every_ms)
    }
}

/// How long stored answers to `Idempotency-Key` requests are kept, and how they are purged.
#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencySettings {
    /// A key is kept at least this long after its change committed.
    pub retention_secs: u64,
    /// How often each node purges expired keys.
    pub purge_every_ms: u64,
    /// Keys deleted per statement, so a purge never holds many row locks for long.
    pub purge_batch: u32,
}

/// Server-Sent Event streams of booking events (`streams`).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamSettings {
    /// A comment line this often keeps an idle stream open through proxies.
    pub heartbeat_ms: u64,
    /// A user or ops stream that reconnects is sent again the events written this long before
    /// its last one: one written earlier may have committed later.
    pub replay_overlap_ms: u64,
    /// Events a stream may fall behind the node's feed before it re-reads them from PostgreSQL.
    pub buffer: usize,
}

impl StreamSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn replay_overlap(&self) -> Duration {
        Duration::from_millis(self.replay_overlap_ms)
    }
}

impl IdempotencySettings {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    pub(crate) fn purge_every(&self) -> Duration {
        Duration::from_millis(self.purge_every_ms)
    }
}

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Jwt,
    Off,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// `HS256` (with `secret`) or `RS256` (with `public_key_path`).
    pub algorithm: String,
    pub secret: Secret,
    pub public_key_path: String,
    /// RS256 only, and only for `ridelock token`: the server never needs it.
    pub private_key_path: String,
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
    /// Lifetime of a token minted by `ridelock token`.
    pub token_ttl_secs: u64,
    /// A second key tokens may also be signed with, for rotating keys without downtime: HS256
    /// `secondary_secret`, RS256 `secondary_public_key_path`. Empty: none.
    pub secondary_secret: Secret,
    pub secondary_public_key_path: String,
    /// A bearer token that opens `/metrics` and nothing else, for a Prometheus scraper; empty:
    /// only operators' tokens open it.
    pub scrape_token: Secret,
    /// The longest lifetime (`exp` − `iat`, or what is left of it when `iat` is absent) a token
    /// may have, per role.
    pub rider_max_ttl_secs: u64,
    pub driver_max_ttl_secs: u64,
    pub ops_max_ttl_secs: u64,
}

impl AuthSettings {
    pub fn algorithm(&self) -> anyhow::Result<Algorithm> {
        match self.algorithm.as_str() {
            "HS256" => Ok(Algorithm::HS256),
            "RS256" => Ok(Algorithm::RS256),
            other => bail!("auth.algorithm must be HS256 or RS256, not {other:?}"),
        }
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl LeaseSettings {
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    pub(crate) fn renew_every(&self) -> Duration {
        Duration::from_millis(self.renew_every_ms)
    }

    pub(crate) fn drift(&self) -> Duration {
        Duration::from_millis(self.drift_ms)
    }

    /// The replicas a grant waits for and how long, if any.
    pub fn replica_wait(&self) -> Option<(u32, Duration)> {
        (self.wait_replicas > 0).then(|| {
            (
                self.wait_replicas,
                Duration::from_millis(self.wait_timeout_ms),
            )
        })
    }
}

impl DatabaseSettings {
    /// A connection pool for this database; connections are opened lazily. Checked-out
    /// connections are not pinged first (`RecyclingMethod::Fast`): that would cost a round trip
    /// per request, and a dead connection already surfaces as a 503 on its first query.
    pub(crate) fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn pool(&self) -> anyhow::Result<Pool<AsyncPgConnection>> {
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        // A request dropped at its deadline inside a transaction returns its connection to the
        // pool still in that transaction; the pool discards it only at its next checkout. Until
        // then PostgreSQL would keep the transaction's locks (an idempotency key's row among
        // them, which a retry waits on): this bounds how long.
        // Every statement is bounded by PostgreSQL too: one stuck on a lock is cancelled (and
        // answered 503) instead of holding its request and connection until the deadline.
        let (idle, statement) = (self.idle_transaction_timeout_ms, self.statement_timeout_ms);
        config.custom_setup = Box::new(move |url| {
            Box::pin(async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                for setting in [
                    format!("SET idle_in_transaction_session_timeout = {idle}"),
                    format!("SET statement_timeout = {statement}"),
                ] {
                    diesel::sql_query(setting)
                        .execute(&mut conn)
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                }
                Ok(conn)
            })
        });
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            self.url.expose(),
            config,
        );
        let wait = Duration::from_millis(self.acquire_timeout_ms);
        Pool::builder(manager)
            .max_size(self.pool_size)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .recycle_timeout(Some(wait))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .context("building the PostgreSQL pool")
    }
}

impl RedisSettings {
    /// `nodes`, split at commas, blanks dropped.
    pub fn node_urls(&self) -> Vec<&str> {
        self.nodes
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect()
    }

    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }
}

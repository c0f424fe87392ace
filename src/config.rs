//! Typed settings, layered as `config/base.toml` → `config/$RIDELOCK_ENV.toml` → `RIDELOCK_*` env
//! vars (plus the conventional `DATABASE_URL` / `REDIS_URL`). `validate()` refuses a configuration
//! that would break the lease invariants (e.g. a heartbeat too slow for the TTL) before anything starts.

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
    pub url: Secret,
    pub key_prefix: String,
    pub response_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LeaseSettings {
    pub ttl_ms: u64,
    pub renew_every_ms: u64,
    pub drift_ms: u64,
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

    pub fn sweep_every(&self) -> Duration {
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

impl IdempotencySettings {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    pub fn purge_every(&self) -> Duration {
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

    /// `loopback`: the server listens on loopback only, so nobody else can reach it.
    fn validate(&self, profile: &str, loopback: bool) -> anyhow::Result<()> {
        if self.mode == AuthMode::Off {
            if profile != "local" {
                bail!("auth.mode = \"off\" is accepted only in the local profile, not {profile}");
            }
            if !loopback {
                bail!("auth.mode = \"off\" is accepted only on a loopback server.host");
            }
            return Ok(());
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            bail!("auth.issuer and auth.audience must be set");
        }
        let most = self
            .rider_max_ttl_secs
            .min(self.driver_max_ttl_secs)
            .min(self.ops_max_ttl_secs);
        if most == 0 || self.token_ttl_secs == 0 {
            bail!("auth.token_ttl_secs and auth.*_max_ttl_secs must be positive");
        }
        let secondary = self.secondary_secret.expose();
        if !secondary.is_empty() && !is_development(profile) && !private_enough(secondary) {
            bail!(
                "auth.secondary_secret must be a private value of at least 32 characters \
                 outside the local and test profiles (profile {profile})"
            );
        }
        match self.algorithm()? {
            Algorithm::HS256 => {
                let secret = self.secret.expose();
                if secret.is_empty() {
                    bail!("auth.secret must be set for HS256 (RIDELOCK_AUTH__SECRET)");
                }
                if !is_development(profile) && !private_enough(secret) {
                    bail!(
                        "auth.secret must be a private value of at least 32 characters \
                         outside the local and test profiles (profile {profile})"
                    );
                }
                // The development secrets are in this repository: anyone could mint ops tokens.
                if secret.starts_with("dev-") && !loopback {
                    bail!(
                        "auth.secret is a development value; set a private one \
                         (RIDELOCK_AUTH__SECRET) to listen on a non-loopback address"
                    );
                }
            }
            _ => {
                if self.public_key_path.is_empty() {
                    bail!("auth.public_key_path must be set for RS256 (RIDELOCK_AUTH__PUBLIC_KEY_PATH)");
                }
            }
        }
        Ok(())
    }
}

/// The profile named by `RIDELOCK_ENV`. Unset means `production`: a deployment that names no
/// profile gets the strict rules, never the local profile's open doors (`make run`, `make
/// cluster` and the scripts name `local` or `test` themselves).
pub fn profile() -> String {
    std::env::var("RIDELOCK_ENV").unwrap_or_else(|_| "production".to_owned())
}

/// The profiles whose public development secrets and (local only) `auth.mode = "off"` are
/// accepted. Every other profile, named or not, must bring private secrets.
pub fn is_development(profile: &str) -> bool {
    matches!(profile, "local" | "test")
}

/// A secret fit for a profile that is not a development one: 32+ characters, and not one of
/// this repository's public `dev-…` values.
fn private_enough(secret: &str) -> bool {
    secret.len() >= 32 && !secret.starts_with("dev-")
}

/// The configuration files built into the binary: `config/base.toml` and one file per profile.
/// A binary copied anywhere runs with these; files on disk only override them.
const BUILT_IN: &[(&str, &str)] = &[
    ("base", include_str!("../config/base.toml")),
    ("local", include_str!("../config/local.toml")),
    ("test", include_str!("../config/test.toml")),
    ("production", include_str!("../config/production.toml")),
];

/// Reads the layered configuration: the built-in `base` and profile files, then the same files
/// from `RIDELOCK_CONFIG_DIR` (which must exist when set) or from `config/` under the current
/// directory (when there is one), then `RIDELOCK_*` environment variables.
pub fn load() -> anyhow::Result<Settings> {
    let loaded = load_profile(&profile());
    if std::env::var_os("RIDELOCK_ENV").is_none() {
        return loaded.context(
            "RIDELOCK_ENV is not set, so the production profile's rules apply; \
             set RIDELOCK_ENV=local to develop (make run does)",
        );
    }
    loaded
}

/// [`load`] for a named profile, whatever `RIDELOCK_ENV` says.
pub fn load_profile(profile: &str) -> anyhow::Result<Settings> {
    let dir = match std::env::var("RIDELOCK_CONFIG_DIR") {
        Ok(dir) if std::path::Path::new(&dir).is_dir() => dir,
        Ok(dir) => bail!("RIDELOCK_CONFIG_DIR={dir} is not a directory"),
        Err(_) => "config".to_owned(),
    };
    let mut builder = config::Config::builder();
    for name in ["base", profile] {
        if let Some((_, text)) = BUILT_IN.iter().find(|(built_in, _)| *built_in == name) {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        builder =
            builder.add_source(config::File::with_name(&format!("{dir}/{name}")).required(false));
    }
    let mut builder = builder.add_source(
        config::Environment::with_prefix("RIDELOCK")
            .prefix_separator("_")
            .separator("__"),
    );
    if let Ok(url) = std::env::var("DATABASE_URL") {
        builder = builder.set_override("database.url", url)?;
    }
    if let Ok(url) = std::env::var("REDIS_URL") {
        builder = builder.set_override("redis.url", url)?;
    }
    let mut settings: Settings = builder
        .build()?
        .try_deserialize()
        .with_context(|| format!("reading configuration from {dir} (profile {profile})"))?;
    if settings.node.id.is_empty() && is_development(profile) {
        settings.node.id = default_node_id(settings.server.port);
    }
    settings.validate(profile)?;
    Ok(settings)
}

fn default_node_id(port: u16) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".to_owned());
    format!("{host}-{port}")
}

impl Settings {
    /// Fails on settings that would make the service unsafe or unusable.
    pub fn validate(&self, profile: &str) -> anyhow::Result<()> {
        if self.node.id.is_empty() {
            bail!("node.id must be set (RIDELOCK_NODE__ID) in the {profile} profile");
        }
        if self.node.id.contains(':') || self.node.id.contains(char::is_whitespace) {
            bail!("node.id must not contain ':' or whitespace");
        }
        let secret = self.cluster.secret.expose();
        if secret.is_empty() {
            bail!("cluster.secret must be set (RIDELOCK_CLUSTER__SECRET)");
        }
        if !is_development(profile) && !private_enough(secret) {
            bail!(
                "cluster.secret must be a private value of at least 32 characters \
                 outside the local and test profiles (profile {profile})"
            );
        }
        // The development secrets are public (they are in this repository): fine for nodes that
        // only listen on loopback, never for one other machines can reach.
        let loopback = matches!(self.server.host.as_str(), "127.0.0.1" | "::1" | "localhost");
        if secret.starts_with("dev-") && !loopback {
            bail!(
                "cluster.secret is a development value; set a private one \
                 (RIDELOCK_CLUSTER__SECRET) to listen on {}",
                self.server.host
            );
        }
        self.node.check_advertise_url(&self.server.host, loopback)?;
        if self.database.url.expose().is_empty() || self.redis.url.expose().is_empty() {
            bail!("database.url and redis.url must be set (DATABASE_URL, REDIS_URL)");
        }
        if self.lease.renew_every_ms == 0 || self.lease.renew_every_ms * 3 > self.lease.ttl_ms {
            bail!("lease.renew_every_ms must be positive and at most lease.ttl_ms / 3");
        }
        if self.lease.drift_ms >= self.lease.ttl_ms / 3 {
            bail!("lease.drift_ms must be below lease.ttl_ms / 3");
        }
        if self.redis.response_timeout_ms == 0
            || self.redis.response_timeout_ms >= self.lease.renew_every_ms
        {
            bail!("redis.response_timeout_ms must be positive and below lease.renew_every_ms");
        }
        if self.server.request_timeout_ms == 0 {
            bail!("server.request_timeout_ms must be positive");
        }
        if self.database.idle_transaction_timeout_ms <= self.server.request_timeout_ms + 1000 {
            bail!(
                "database.idle_transaction_timeout_ms must be above server.request_timeout_ms + 1000 \
                 (a live request's transaction must never be ended under it)"
            );
        }
        if self.database.statement_timeout_ms == 0
            || self.database.statement_timeout_ms > self.server.request_timeout_ms
        {
            bail!(
                "database.statement_timeout_ms must be positive and at most \
                 server.request_timeout_ms (a statement must end within its request)"
            );
        }
        if self.database.pool_size == 0 || self.booking.mailbox_capacity == 0 {
            bail!("database.pool_size and booking.mailbox_capacity must be positive");
        }
        if !(self.assign.radius_km > 0.0 && self.assign.radius_km <= 500.0) {
            bail!("assign.radius_km must be in (0, 500]");
        }
        if self.booking.max_active_per_rider == 0 {
            bail!("booking.max_active_per_rider must be positive");
        }
        if !(self.booking.max_fare_ratio >= 1.0 && self.booking.max_fare_ratio <= 100.0) {
            bail!("booking.max_fare_ratio must be between 1 and 100");
        }
        if self.assign.max_candidates == 0 {
            bail!("assign.max_candidates must be positive");
        }
        let rates = &self.rate_limit;
        let positive = |rate: f64| rate.is_finite() && rate > 0.0;
        if !(positive(rates.per_second)
            && positive(rates.ops_per_second)
            && positive(rates.address_per_second))
            || rates.burst == 0
            || rates.ops_burst == 0
            || rates.address_burst == 0
            || rates.max_callers == 0
        {
            bail!("rate_limit: every rate, burst and max_callers must be positive");
        }
        let offer = &self.offer;
        if offer.timeout_ms == 0
            || offer.max_offers == 0
            || offer.sweep_every_ms == 0
            || offer.sweep_batch == 0
        {
            bail!("offer.timeout_ms, max_offers, sweep_every_ms and sweep_batch must be positive");
        }
        let idempotency = &self.idempotency;
        // A key must outlive every retry of its request: the client's, and a forwarded copy's.
        if idempotency.retention_secs * 1000 <= self.server.request_timeout_ms * 2 {
            bail!("idempotency.retention_secs must be well above server.request_timeout_ms");
        }
        if idempotency.purge_every_ms == 0 || idempotency.purge_batch == 0 {
            bail!("idempotency.purge_every_ms and idempotency.purge_batch must be positive");
        }
        self.auth.validate(profile, loopback)
    }
}

impl NodeSettings {
    /// Other nodes forward requests to `node.advertise_url`. Its default,
    /// `http://127.0.0.1:<port>`, reaches this node only from its own machine: a node listening
    /// on another address (so serving other machines) must name a URL they can reach, or every
    /// other node would forward this node's bookings to itself.
    fn check_advertise_url(&self, host: &str, loopback: bool) -> anyhow::Result<()> {
        let url = self.advertise_url.trim();
        if url.is_empty() {
            if loopback {
                return Ok(());
            }
            bail!(
                "node.advertise_url must be set (RIDELOCK_NODE__ADVERTISE_URL) to the URL other \
                 nodes reach this one at, e.g. http://10.0.0.5:3000: it listens on {host}, and \
                 the default http://127.0.0.1:<port> reaches only its own machine"
            );
        }
        if url.starts_with("https://") {
            bail!(
                "node.advertise_url {url}: nodes call each other over plain HTTP (the calls are \
                 signed); to encrypt between hosts use a service mesh or a VPN and advertise the \
                 http:// address (docs/security.md)"
            );
        }
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or_default())
            .unwrap_or_default();
        let host_part = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        if host_part.is_empty() {
            bail!("node.advertise_url must be an http:// URL with a host, not {url}");
        }
        if matches!(host_part, "0.0.0.0" | "::") {
            bail!("node.advertise_url {url} names no machine: give an address other nodes reach");
        }
        let loopback_url =
            host_part == "localhost" || host_part == "::1" || host_part.starts_with("127.");
        if loopback_url && !loopback {
            bail!(
                "node.advertise_url {url} reaches only this machine, but the node listens on \
                 {host} to serve others: give an address other nodes reach"
            );
        }
        Ok(())
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

    pub fn renew_every(&self) -> Duration {
        Duration::from_millis(self.renew_every_ms)
    }

    pub fn drift(&self) -> Duration {
        Duration::from_millis(self.drift_ms)
    }
}

impl DatabaseSettings {
    /// A connection pool for this database; connections are opened lazily. Checked-out
    /// connections are not pinged first (`RecyclingMethod::Fast`): that would cost a round trip
    /// per request, and a dead connection already surfaces as a 503 on its first query.
    pub fn statement_timeout(&self) -> Duration {
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
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        redis::Client::open(self.url.expose()).context("parsing redis.url")
    }

    /// A multiplexed, self-reconnecting connection with this section's timeouts. It connects on
    /// first use, not here, so a node starts while Redis is down and takes it up when it answers.
    pub fn connect(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout()))
            .set_connection_timeout(Some(self.response_timeout()))
            .set_number_of_retries(2);
        redis::aio::ConnectionManager::new_lazy_with_config(self.client()?, config)
            .context("configuring the Redis connection")
    }

    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(mode: AuthMode, secret: &str) -> AuthSettings {
        AuthSettings {
            mode,
            algorithm: "HS256".into(),
            secret: Secret::new(secret),
            public_key_path: String::new(),
            private_key_path: String::new(),
            issuer: "ridelock".into(),
            audience: "ridelock-api".into(),
            leeway_secs: 30,
            token_ttl_secs: 3600,
            secondary_secret: Secret::new(""),
            secondary_public_key_path: String::new(),
            rider_max_ttl_secs: 86_400,
            driver_max_ttl_secs: 86_400,
            ops_max_ttl_secs: 3600,
        }
    }

    #[test]
    fn auth_off_is_accepted_in_the_local_profile_only() {
        let off = auth(AuthMode::Off, "");
        assert!(off.validate("local", true).is_ok());
        assert!(
            off.validate("local", false).is_err(),
            "off on a public address"
        );
        assert!(auth(AuthMode::Jwt, "dev-local-auth-secret")
            .validate("local", false)
            .is_err());
        for profile in ["test", "production", "staging"] {
            assert!(off.validate(profile, true).is_err(), "{profile}");
        }
    }

    #[test]
    fn a_node_serving_other_machines_must_say_where_they_reach_it() {
        let node = |url: &str| NodeSettings {
            id: "n1".into(),
            advertise_url: url.into(),
        };
        assert!(node("").check_advertise_url("127.0.0.1", true).is_ok());
        let refused = node("").check_advertise_url("0.0.0.0", false);
        assert!(
            refused.is_err_and(|e| e.to_string().contains("node.advertise_url must be set")),
            "an empty advertise URL on 0.0.0.0"
        );
        assert!(node("https://n1.ridelock.internal/")
            .check_advertise_url("0.0.0.0", false)
            .is_err_and(|e| e.to_string().contains("plain HTTP")));
        for good in [
            "http://10.0.0.5:3000",
            "http://n1.ridelock.internal/",
            "http://[fd00::5]:3000",
        ] {
            assert!(
                node(good).check_advertise_url("0.0.0.0", false).is_ok(),
                "{good}"
            );
        }
        assert!(node("http://127.0.0.1:3001")
            .check_advertise_url("127.0.0.1", true)
            .is_ok());
        for bad in [
            "http://127.0.0.1:3000",
            "http://localhost:3000",
            "10.0.0.5:3000",
            "http://",
            "http://0.0.0.0:3000",
            "http://[::]:3000",
        ] {
            assert!(
                node(bad).check_advertise_url("0.0.0.0", false).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_profile_but_local_and_test_needs_private_secrets() {
        for profile in ["production", "staging", "prod", "dev", ""] {
            for secret in ["dev-test-auth-secret", "dev-local-auth-secret", "short"] {
                assert!(
                    auth(AuthMode::Jwt, secret).validate(profile, true).is_err(),
                    "{profile:?} {secret}"
                );
            }
        }
        for profile in ["local", "test"] {
            assert!(auth(AuthMode::Jwt, "dev-test-auth-secret")
                .validate(profile, true)
                .is_ok());
        }
    }

    #[test]
    fn production_needs_a_private_auth_secret() {
        assert!(auth(AuthMode::Jwt, "").validate("test", true).is_err());
        assert!(auth(AuthMode::Jwt, "dev-test-auth-secret")
            .validate("test", true)
            .is_ok());
        assert!(auth(AuthMode::Jwt, "dev-test-auth-secret")
            .validate("production", true)
            .is_err());
        assert!(auth(AuthMode::Jwt, "short")
            .validate("production", true)
            .is_err());
        let private = "k7Qw9zX2mN4pR8tV1yB6cF3hJ5lS0dGa";
        assert!(auth(AuthMode::Jwt, private)
            .validate("production", true)
            .is_ok());
        let mut rs = auth(AuthMode::Jwt, "");
        rs.algorithm = "RS256".into();
        assert!(
            rs.validate("production", true).is_err(),
            "RS256 needs a public key"
        );
        rs.public_key_path = "/etc/ridelock/issuer.pem".into();
        assert!(rs.validate("production", true).is_ok());
        rs.algorithm = "none".into();
        assert!(rs.validate("test", true).is_err());
    }
}

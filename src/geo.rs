//! The Redis geo index of available drivers: a search aid for assignment and `nearby`, never the
//! source of truth. A driver found here is claimed only by a conditional update in PostgreSQL, so a
//! stale entry costs one failed claim, not a double booking. Rebuilt from PostgreSQL at start-up,
//! and again whenever its marker key is missing (Redis restarted empty). While Redis is silent it
//! is not asked at all: callers search in SQL at once instead of waiting for a timeout.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::RedisError;

use crate::domain::ids::DriverId;
use crate::domain::values::GeoPoint;
use crate::lease::failover::RedisHealth;
use crate::storage::models::Driver;

#[derive(Clone)]
pub struct DriverIndex {
    conn: ConnectionManager,
    key: String,
    /// Set with every rebuild: its absence means the index is gone.
    marker: String,
    health: Arc<RedisHealth>,
}

impl DriverIndex {
    pub fn new(conn: ConnectionManager, key_prefix: &str, health: Arc<RedisHealth>) -> Self {
        Self {
            conn,
            key: format!("{key_prefix}drivers:available"),
            marker: format!("{key_prefix}drivers:indexed"),
            health,
        }
    }

    /// A connection, unless Redis is known to be silent.
    fn conn(&self) -> Result<ConnectionManager, RedisError> {
        match self.health.is_silent() {
            true => Err(RedisError::from((
                redis::ErrorKind::Io,
                "redis is silent, not asked",
            ))),
            false => Ok(self.conn.clone()),
        }
    }

    /// An answer means Redis answers. A failure is not taken to mean it is silent: a wide search
    /// or a big rebuild can outlast the response timeout on a busy Redis, and that alone must
    /// not move every lease to PostgreSQL. The lease protocol and the heartbeat decide that.
    fn answered<T>(&self, outcome: &Result<T, RedisError>) {
        if outcome.is_ok() {
            self.health.observe(outcome);
        }
    }

    /// Runs `cmd`; see [`Self::answered`].
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut conn = self.conn()?;
        let outcome = cmd.query_async(&mut conn).await;
        self.answered(&outcome);
        outcome
    }

    pub async fn put(&self, driver: DriverId, at: GeoPoint) -> Result<(), RedisError> {
        self.query::<i64>(
            redis::cmd("GEOADD")
                .arg(&self.key)
                .arg(at.lng)
                .arg(at.lat)
                .arg(driver.0),
        )
        .await
        .map(drop)
    }

    pub async fn remove(&self, driver: DriverId) -> Result<(), RedisError> {
        self.query::<i64>(redis::cmd("ZREM").arg(&self.key).arg(driver.0))
            .await
            .map(drop)
    }

    /// False when the index is gone (Redis restarted without its data) and must be rebuilt.
    pub async fn is_built(&self) -> Result<bool, RedisError> {
        self.query(redis::cmd("EXISTS").arg(&self.marker)).await
    }

    /// Up to `count` indexed drivers within `radius_km` of `at`, nearest first, with distances in km.
    pub async fn search(
        &self,
        at: GeoPoint,
        radius_km: f64,
        count: usize,
    ) -> Result<Vec<(DriverId, f64)>, RedisError> {
        let hits: Vec<(String, f64)> = self
            .query(
                redis::cmd("GEOSEARCH")
                    .arg(&self.key)
                    .arg("FROMLONLAT")
                    .arg(at.lng)
                    .arg(at.lat)
                    .arg("BYRADIUS")
                    .arg(radius_km)
                    .arg("km")
                    .arg("ASC")
                    .arg("COUNT")
                    .arg(count)
                    .arg("WITHDIST"),
            )
            .await?;
        Ok(hits
            .into_iter()
            .filter_map(|(member, km)| Some((DriverId(member.parse().ok()?), km)))
            .collect())
    }

    /// Replaces the index with exactly the given online drivers (atomically, via MULTI).
    pub async fn rebuild(&self, online: &[Driver]) -> Result<usize, RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.key).set(&self.marker, 1).ignore();
        let mut indexed = 0;
        for driver in online {
            if let Some(at) = driver.location() {
                pipe.cmd("GEOADD")
                    .arg(&self.key)
                    .arg(at.lng)
                    .arg(at.lat)
                    .arg(driver.id)
                    .ignore();
                indexed += 1;
            }
        }
        let mut conn = self.conn()?;
        let outcome = pipe.query_async::<()>(&mut conn).await;
        self.answered(&outcome);
        outcome.map(|()| indexed)
    }
}

//! The Redis geo index of available drivers: a search aid for assignment and `nearby`, never the
//! source of truth. A driver found here is claimed only by a conditional update in PostgreSQL, so a
//! stale entry costs one failed claim, not a double booking. Rebuilt from PostgreSQL at start-up,
//! and again whenever its marker key is missing (Redis restarted empty). While Redis is silent it
//! is not asked at all: callers search in SQL at once instead of waiting for a timeout.
//!
//! Redis geo sets hold latitudes only within ±85.05112878° (the Web Mercator square). Every valid
//! coordinate is accepted and stored in PostgreSQL; a driver beyond that band is simply not
//! indexed (and dropped from the index if it moves there), and a search whose circle reaches
//! beyond it is answered by SQL ([`DriverIndex::search`] answers `None`). So no single row can
//! make a rebuild, a location update or a search fail. Longitudes up to ±180° are indexed, but a
//! search whose circle reaches the antimeridian is answered by SQL too: Redis's geohash cells do
//! not find a point at 180° from one at -180° (seen in `tests/api/geo_edges.rs`).

use std::sync::Arc;

use redis::RedisError;

use crate::domain::ids::DriverId;
use crate::domain::values::GeoPoint;
use crate::redis_conn::RedisConn;
use crate::redis_health::RedisHealth;
use crate::storage::models::Driver;

/// The largest latitude, north or south, a Redis geo set can hold.
pub(crate) const INDEXED_LAT_MAX: f64 = 85.051_128_78;

/// True when a Redis geo set can hold `at`.
pub(crate) fn indexable(at: GeoPoint) -> bool {
    at.lat.abs() <= INDEXED_LAT_MAX
}

#[derive(Clone)]
pub(crate) struct DriverIndex {
    conn: RedisConn,
    key: String,
    /// Set with every rebuild: its absence means the index is gone. Both keys carry the hash tag
    /// `{drivers}`, so a Redis Cluster keeps them in one slot: the rebuild's MULTI spans both,
    /// and a failover cannot lose one without the other.
    marker: String,
    health: Arc<RedisHealth>,
}

impl DriverIndex {
    pub fn new(conn: RedisConn, key_prefix: &str, health: Arc<RedisHealth>) -> Self {
        Self {
            conn,
            key: format!("{key_prefix}{{drivers}}:available"),
            marker: format!("{key_prefix}{{drivers}}:indexed"),
            health,
        }
    }

    /// A connection, unless Redis is known to be silent.
    fn conn(&self) -> Result<RedisConn, RedisError> {
        match self.health.is_silent() {
            true => Err(RedisError::from((
                redis::ErrorKind::Io,
                "redis is silent, not asked",
            ))),
            false => Ok(self.conn.clone()),
        }
    }

    /// Runs `cmd`. Its outcome is not taken to say whether Redis can hold leases: a wide search
    /// or a big rebuild can outlast the response timeout on a busy Redis, and that alone must not
    /// move every lease to PostgreSQL. The lease protocol and the heartbeat decide that.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        cmd.query_async(&mut self.conn()?).await
    }

    /// Indexes `driver` at `at`; a position the index cannot hold removes the driver from it
    /// instead (it may have been indexed at its previous position).
    pub async fn put(&self, driver: DriverId, at: GeoPoint) -> Result<(), RedisError> {
        if !indexable(at) {
            return self.remove(driver).await;
        }
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
    pub(crate) async fn is_built(&self) -> Result<bool, RedisError> {
        self.query(redis::cmd("EXISTS").arg(&self.marker)).await
    }

    /// Up to `count` indexed drivers within `radius_km` of `at`, nearest first, with distances in
    /// km; `None` when the circle reaches latitudes the index cannot hold, or the antimeridian
    /// (ask SQL instead).
    pub async fn search(
        &self,
        at: GeoPoint,
        radius_km: f64,
        count: usize,
    ) -> Result<Option<Vec<(DriverId, f64)>>, RedisError> {
        let area = at.search_box(radius_km);
        let (south, north) = area.lat;
        let (west, east) = area.lng[0];
        if south < -INDEXED_LAT_MAX || north > INDEXED_LAT_MAX || west <= -180.0 || east >= 180.0 {
            return Ok(None);
        }
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
        Ok(Some(
            hits.into_iter()
                .filter_map(|(member, km)| Some((DriverId(member.parse().ok()?), km)))
                .collect(),
        ))
    }

    /// Replaces the index with exactly the given online drivers that it can hold (atomically, via
    /// MULTI); how many were indexed.
    pub async fn rebuild(&self, online: &[Driver]) -> Result<usize, RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.key).set(&self.marker, 1).ignore();
        let mut indexed = 0;
        for driver in online {
            if let Some(at) = driver.location().filter(|at| indexable(*at)) {
                pipe.cmd("GEOADD")
                    .arg(&self.key)
                    .arg(at.lng)
                    .arg(at.lat)
                    .arg(driver.id)
                    .ignore();
                indexed += 1;
            }
        }
        pipe.query_async::<()>(&mut self.conn()?)
            .await
            .map(|()| indexed)
    }
}

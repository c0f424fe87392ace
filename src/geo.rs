//! The Redis geo index of available drivers: a search aid for assignment and `nearby`, never the
//! source of truth. A driver found here is claimed only by a conditional update in PostgreSQL, so a
//! stale entry costs one failed claim, not a double booking. Rebuilt from PostgreSQL at start-up.

use redis::aio::ConnectionManager;
use redis::RedisError;

use crate::domain::ids::DriverId;
use crate::domain::values::GeoPoint;
use crate::storage::models::Driver;

#[derive(Clone)]
pub struct DriverIndex {
    conn: ConnectionManager,
    key: String,
}

impl DriverIndex {
    pub fn new(conn: ConnectionManager, key_prefix: &str) -> Self {
        Self {
            conn,
            key: format!("{key_prefix}drivers:available"),
        }
    }

    pub async fn put(&self, driver: DriverId, at: GeoPoint) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("GEOADD")
            .arg(&self.key)
            .arg(at.lng)
            .arg(at.lat)
            .arg(driver.0)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
    }

    pub async fn remove(&self, driver: DriverId) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(&self.key)
            .arg(driver.0)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
    }

    /// Up to `count` indexed drivers within `radius_km` of `at`, nearest first, with distances in km.
    pub async fn search(
        &self,
        at: GeoPoint,
        radius_km: f64,
        count: usize,
    ) -> Result<Vec<(DriverId, f64)>, RedisError> {
        let mut conn = self.conn.clone();
        let hits: Vec<(String, f64)> = redis::cmd("GEOSEARCH")
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
            .arg("WITHDIST")
            .query_async(&mut conn)
            .await?;
        Ok(hits
            .into_iter()
            .filter_map(|(member, km)| Some((DriverId(member.parse().ok()?), km)))
            .collect())
    }

    /// Replaces the index with exactly the given online drivers (atomically, via MULTI).
    pub async fn rebuild(&self, online: &[Driver]) -> Result<usize, RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.key);
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
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(indexed)
    }
}

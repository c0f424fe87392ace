//! The lease protocol on PostgreSQL's `leases` table, used while Redis is silent. The semantics
//! are the Redis ones: a lease is taken only if it is free, expired or already ours; renewed only
//! while it is live and still ours; deleted only by its holder. Expiry is judged on PostgreSQL's
//! clock (`clock_timestamp()`), the one clock every node shares.

use std::collections::HashSet;
use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::redis::LeaseRecord;
use super::{LeaseError, LeaseOwner};
use diesel::prelude::*;

use crate::domain::booking::BookingStatus;
use crate::domain::ids::BookingId;
use crate::storage::models::Booking;
use crate::storage::prepared::prepared;
use crate::storage::schema::{bookings as booking_rows, leases};
use crate::storage::{bookings, pool, PgPool};

/// Leases per statement, as for Redis pipelines.
const CHUNK: usize = 1000;

/// Takes each `(key, value)` that is free, expired or already carries `value`; answers the keys
/// taken. One statement per chunk, so a holder of thousands of leases moves them in a few.
const TAKE: &str = "\
INSERT INTO leases AS l (key, value, owner_address, expires_at)
SELECT r.key, r.value, $4, clock_timestamp() + $3 * interval '1 millisecond'
  FROM unnest($1::text[], $2::text[]) AS r(key, value)
ON CONFLICT (key) DO UPDATE
   SET value = EXCLUDED.value, owner_address = EXCLUDED.owner_address, expires_at = EXCLUDED.expires_at
 WHERE l.expires_at <= clock_timestamp() OR l.value = EXCLUDED.value
RETURNING l.key";

const RENEW: &str = "\
UPDATE leases AS l SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
  FROM unnest($1::text[], $2::text[]) AS r(key, value)
 WHERE l.key = r.key AND l.value = r.value AND l.expires_at > clock_timestamp()
RETURNING l.key";

const RELEASE: &str = "\
DELETE FROM leases AS l USING unnest($1::text[], $2::text[]) AS r(key, value)
 WHERE l.key = r.key AND l.value = r.value
RETURNING l.key";

const LIVE: &str = "\
SELECT key, value, owner_address,
       ceil(extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint AS remaining_ms
  FROM leases";

#[derive(QueryableByName)]
struct Key {
    #[diesel(sql_type = Text)]
    key: String,
}

#[derive(QueryableByName)]
struct Live {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = Text)]
    owner_address: String,
    #[diesel(sql_type = BigInt)]
    remaining_ms: i64,
}

impl Live {
    fn remaining(&self) -> Duration {
        Duration::from_millis(self.remaining_ms.max(0).unsigned_abs())
    }
}

/// Who holds `key` in the table now, if anyone, on a connection the caller has.
pub(crate) async fn holder_on(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> diesel::QueryResult<Option<LeaseOwner>> {
    let rows: Vec<Live> = diesel::sql_query(format!(
        "{LIVE} WHERE key = $1 AND expires_at > clock_timestamp()"
    ))
    .bind::<Text, _>(key)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|row| {
        let remaining = row.remaining();
        LeaseOwner {
            address: Some(row.owner_address),
            ..LeaseOwner::from_value(row.value, remaining)
        }
    }))
}

/// What an activation found.
pub(crate) enum Activation {
    /// The booking, with its fencing token bumped for the new owner.
    Owned(Booking),
    /// A completed or cancelled booking, untouched: it can never change.
    Terminal(Booking),
    NotFound,
    /// Another node holds the booking's lease in PostgreSQL (it could not reach Redis when it
    /// took it): that node is the owner, whatever Redis said.
    LeasedElsewhere(LeaseOwner),
}

/// Takes ownership of a booking for a new actor activation holding the lease `key` with
/// `value`: bumps its fencing token, unless another holder has the booking's lease in
/// PostgreSQL's `leases` table. That check is part of the same statement, so a node that got
/// the lease from Redis pays nothing for deferring to one that got it from PostgreSQL. Every
/// later write of the actor is conditional on the new token.
pub(crate) async fn activate(
    conn: &mut AsyncPgConnection,
    id: BookingId,
    key: &str,
    value: &str,
) -> QueryResult<Activation> {
    let leased_elsewhere = leases::table
        .filter(leases::key.eq(key))
        .filter(leases::value.ne(value))
        .filter(leases::expires_at.gt(diesel::dsl::now));
    let bumped = prepared(
        diesel::update(
            booking_rows::table
                .find(id.0)
                .filter(booking_rows::status.ne_all([
                    BookingStatus::Completed.as_str(),
                    BookingStatus::Cancelled.as_str(),
                ]))
                .filter(diesel::dsl::not(diesel::dsl::exists(leased_elsewhere))),
        )
        .set(booking_rows::fencing_token.eq(booking_rows::fencing_token + 1))
        .returning(Booking::as_returning()),
    )
    .get_result(conn)
    .await
    .optional()?;
    if let Some(row) = bumped {
        return Ok(Activation::Owned(row));
    }
    let Some(row) = bookings::find(conn, id).await? else {
        return Ok(Activation::NotFound);
    };
    if row.status.is_terminal() {
        return Ok(Activation::Terminal(row));
    }
    // Gone since the update looked: an empty holder, and the caller tries again.
    let owner = holder_on(conn, key)
        .await?
        .unwrap_or_else(|| LeaseOwner::from_value(String::new(), std::time::Duration::ZERO));
    Ok(Activation::LeasedElsewhere(owner))
}

/// The parameters after `$1` (keys) and `$2` (values).
#[derive(Clone, Copy)]
enum Extra {
    Nothing,
    /// `$3`: the lease TTL.
    Ttl(Duration),
    /// `$3`: the lease TTL; `$4`: this node's address.
    TtlAndAddress(Duration),
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Lease commands on the node's PostgreSQL pool (cheap to clone).
#[derive(Clone)]
pub(crate) struct PgLeases {
    pool: PgPool,
    /// Where this node serves, written with every lease it takes.
    address: String,
    /// An operation unanswered this long fails as `Unavailable`: PostgreSQL's own
    /// `statement_timeout` cannot fire in a server that stopped answering, and the lease manager
    /// and the heartbeat must not wait on one.
    limit: Duration,
}

impl PgLeases {
    pub fn new(pool: PgPool, address: String, limit: Duration) -> Self {
        Self {
            pool,
            address,
            limit,
        }
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, LeaseError>>,
    ) -> Result<T, LeaseError> {
        tokio::time::timeout(self.limit, work)
            .await
            .unwrap_or_else(|_| {
                Err(LeaseError::unavailable(anyhow::anyhow!(
                    "PostgreSQL did not answer within {} ms",
                    self.limit.as_millis()
                )))
            })
    }

    /// Runs one of the statements above over `leases` (`$1` keys, `$2` values, then `extra`);
    /// answers the keys it touched.
    async fn keys(
        &self,
        sql: &'static str,
        leases: &[(String, String)],
        extra: Extra,
    ) -> Result<HashSet<String>, LeaseError> {
        self.bounded(self.keys_unbounded(sql, leases, extra)).await
    }

    async fn keys_unbounded(
        &self,
        sql: &'static str,
        leases: &[(String, String)],
        extra: Extra,
    ) -> Result<HashSet<String>, LeaseError> {
        let mut conn = pool::conn(&self.pool)
            .await
            .map_err(LeaseError::unavailable)?;
        let mut done = HashSet::with_capacity(leases.len());
        for chunk in leases.chunks(CHUNK) {
            let (keys, values): (Vec<String>, Vec<String>) = chunk.iter().cloned().unzip();
            let query = diesel::sql_query(sql)
                .bind::<Array<Text>, _>(keys)
                .bind::<Array<Text>, _>(values);
            let rows: Vec<Key> = match extra {
                Extra::Nothing => query.load(&mut conn).await,
                Extra::Ttl(ttl) => query.bind::<BigInt, _>(millis(ttl)).load(&mut conn).await,
                Extra::TtlAndAddress(ttl) => {
                    query
                        .bind::<BigInt, _>(millis(ttl))
                        .bind::<Text, _>(&self.address)
                        .load(&mut conn)
                        .await
                }
            }
            .map_err(LeaseError::unavailable)?;
            done.extend(rows.into_iter().map(|row| row.key));
        }
        Ok(done)
    }

    /// Takes each lease that is free, expired or already ours, for `ttl`: `true` where taken.
    /// Used to acquire, and to carry leases held in Redis over when Redis goes silent.
    pub async fn take(
        &self,
        leases: &[(String, String)],
        ttl: Duration,
    ) -> Result<Vec<bool>, LeaseError> {
        let taken = self.keys(TAKE, leases, Extra::TtlAndAddress(ttl)).await?;
        Ok(leases.iter().map(|(key, _)| taken.contains(key)).collect())
    }

    /// Takes `key` for `value`; on contention, says who holds it, where it serves and for how long.
    pub async fn acquire(&self, key: &str, value: &str, ttl: Duration) -> Result<(), LeaseError> {
        let lease = [(key.to_owned(), value.to_owned())];
        if self.take(&lease, ttl).await? == [true] {
            return Ok(());
        }
        // Released between the two statements: an empty holder, and the caller tries again.
        let holder = self.holder(key).await?;
        Err(LeaseError::Held(holder.unwrap_or_else(|| {
            LeaseOwner::from_value(String::new(), Duration::ZERO)
        })))
    }

    /// Extends each lease still live and ours; `true` where it was.
    pub async fn renew_all(
        &self,
        leases: &[(String, String)],
        ttl: Duration,
    ) -> Result<Vec<bool>, LeaseError> {
        let renewed = self.keys(RENEW, leases, Extra::Ttl(ttl)).await?;
        Ok(leases
            .iter()
            .map(|(key, _)| renewed.contains(key))
            .collect())
    }

    /// Check-and-delete of each lease; how many were still ours.
    pub(crate) async fn release_all(
        &self,
        leases: &[(String, String)],
    ) -> Result<usize, LeaseError> {
        Ok(self.keys(RELEASE, leases, Extra::Nothing).await?.len())
    }

    pub async fn release(&self, key: &str, value: &str) -> Result<bool, LeaseError> {
        let lease = [(key.to_owned(), value.to_owned())];
        Ok(self.release_all(&lease).await? == 1)
    }

    /// Who holds `key` now, if anyone.
    pub async fn holder(&self, key: &str) -> Result<Option<LeaseOwner>, LeaseError> {
        self.bounded(async {
            let mut conn = pool::conn(&self.pool)
                .await
                .map_err(LeaseError::unavailable)?;
            holder_on(&mut conn, key)
                .await
                .map_err(LeaseError::unavailable)
        })
        .await
    }

    /// Every live lease under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<LeaseRecord>, LeaseError> {
        let rows: Vec<Live> = self
            .bounded(async {
                let mut conn = pool::conn(&self.pool)
                    .await
                    .map_err(LeaseError::unavailable)?;
                diesel::sql_query(format!(
                    "{LIVE} WHERE starts_with(key, $1) AND expires_at > clock_timestamp() \
                     ORDER BY key"
                ))
                .bind::<Text, _>(format!("{prefix}lock:"))
                .load(&mut conn)
                .await
                .map_err(LeaseError::unavailable)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| LeaseRecord {
                remaining: row.remaining(),
                key: row.key,
                value: row.value,
            })
            .collect())
    }

    /// Deletes rows expired for a minute (left by holders that crashed); how many.
    pub async fn sweep(&self) -> Result<usize, LeaseError> {
        self.bounded(async {
            let mut conn = pool::conn(&self.pool)
                .await
                .map_err(LeaseError::unavailable)?;
            diesel::sql_query(
                "DELETE FROM leases WHERE expires_at < clock_timestamp() - interval '1 minute'",
            )
            .execute(&mut conn)
            .await
            .map_err(LeaseError::unavailable)
        })
        .await
    }
}

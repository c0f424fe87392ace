//! Idempotency keys: the answer to a request sent with an `Idempotency-Key` header is stored in
//! the transaction of the change it describes, so it exists exactly when the change does. A
//! repeat with the same key and the same request gets that answer back and changes nothing; the
//! same key on a different request is refused. Only successful changes are stored: a refusal
//! wrote nothing, and a repeat of it is simply decided again.
//!
//! Keys are kept for `idempotency.retention_secs` and then purged ([`purge_expired`], run by every
//! node's housekeeping), so the table does not grow without bound. Until its row is purged an
//! expired key is still recognised: a retry is answered from the store for at least the
//! retention, and at most one purge period longer.

use diesel::sql_types::{BigInt, Integer, SmallInt, Text};
use diesel::{OptionalExtension, QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::prepared::prepared;

/// A client's key, scoped to the caller, with the fingerprint of the request that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// The caller's token subject (`rider:12`): keys of different callers never meet.
    pub scope: String,
    pub key: String,
    /// Hex SHA-256 of the method, path and body.
    pub fingerprint: String,
}

impl IdempotencyKey {
    /// Longest key accepted.
    pub(crate) const MAX_LEN: usize = 255;

    /// `None` when `key` is empty, too long or not printable ASCII.
    pub fn new(scope: &str, key: &str, method: &str, path: &str, body: &[u8]) -> Option<Self> {
        let valid = !key.is_empty()
            && key.len() <= Self::MAX_LEN
            && key.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return None;
        }
        let mut hash = Sha256::new();
        hash.update(method.as_bytes());
        hash.update(b"\n");
        hash.update(path.as_bytes());
        hash.update(b"\n");
        hash.update(body);
        let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Some(Self {
            scope: scope.to_owned(),
            key: key.to_owned(),
            fingerprint,
        })
    }
}

/// A stored answer.
#[derive(Debug, Clone, QueryableByName)]
pub struct Stored {
    #[diesel(sql_type = Text)]
    pub fingerprint: String,
    #[diesel(sql_type = SmallInt)]
    pub status: i16,
    #[diesel(sql_type = Text)]
    pub body: String,
}

/// What a key says about a request, before it is handled.
pub enum Seen {
    /// Never stored: handle the request (and store its answer with its change).
    New,
    /// The same request was answered before: send this again.
    Repeat(Stored),
    /// The key was used for a different request.
    Reused,
}

pub(crate) async fn lookup(
    conn: &mut AsyncPgConnection,
    key: &IdempotencyKey,
) -> QueryResult<Seen> {
    let stored: Option<Stored> = prepared(
        diesel::sql_query(
            "SELECT fingerprint, status, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind::<Text, _>(&key.scope)
        .bind::<Text, _>(&key.key),
    )
    .get_result(conn)
    .await
    .optional()?;
    Ok(match stored {
        None => Seen::New,
        Some(stored) if stored.fingerprint == key.fingerprint => Seen::Repeat(stored),
        Some(_) => Seen::Reused,
    })
}

/// Stores the answer to `key`'s request. Call inside the transaction of the change. `false` when
/// the key was already taken: a concurrent copy of the request committed first (this call waits
/// for it), and the caller must roll its own change back.
pub async fn store(
    conn: &mut AsyncPgConnection,
    key: &IdempotencyKey,
    status: u16,
    body: &str,
) -> QueryResult<bool> {
    let inserted = prepared(
        diesel::sql_query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind::<Text, _>(&key.scope)
        .bind::<Text, _>(&key.key)
        .bind::<Text, _>(&key.fingerprint)
        .bind::<SmallInt, _>(i16::try_from(status).unwrap_or(200))
        .bind::<Text, _>(body),
    )
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// Deletes up to `batch` keys stored more than `retention_secs` ago, oldest first; how many. Rows
/// another node is deleting at the same moment are skipped, not waited for.
pub(crate) async fn purge_expired(
    conn: &mut AsyncPgConnection,
    retention_secs: u64,
    batch: u32,
) -> QueryResult<usize> {
    prepared(
        diesel::sql_query(
            "DELETE FROM idempotency_keys WHERE (scope, key) IN (
                 SELECT scope, key FROM idempotency_keys
                 WHERE created_at < now() - make_interval(secs => $1)
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind::<BigInt, _>(i64::try_from(retention_secs).unwrap_or(i64::MAX))
        .bind::<Integer, _>(i32::try_from(batch).unwrap_or(i32::MAX)),
    )
    .execute(conn)
    .await
}

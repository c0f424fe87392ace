//! What the lease manager needs from a lease store: the commands of the lease protocol.
//! [`Leases`](super::failover::Leases) is the real one (Redis, or PostgreSQL while Redis is
//! silent); unit tests drive the manager with an in-memory store that can be told to fail.

use std::time::Duration;

use futures::future::BoxFuture;

use super::LeaseError;

pub(crate) trait LeaseStore: Send + Sync + 'static {
    /// Takes `key` for `value` for `ttl` if nobody holds it (or `value` already does).
    fn acquire(
        &self,
        key: String,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), LeaseError>>;

    /// Extends each `(key, value)` still carrying its value: `Some(true)` where it did,
    /// `Some(false)` where it did not (the lease is lost), `None` where the store could not say.
    /// `Err` when it could say for none of them.
    fn renew_all(
        &self,
        leases: Vec<(String, String)>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Vec<Option<bool>>, LeaseError>>;

    /// Deletes `key` if it still carries `value`; `true` if it did.
    fn release(&self, key: String, value: String) -> BoxFuture<'static, Result<bool, LeaseError>>;

    /// Releases many leases in few round trips (shutdown); how many were still ours.
    fn release_all(
        &self,
        leases: Vec<(String, String)>,
    ) -> BoxFuture<'static, Result<usize, LeaseError>>;
}

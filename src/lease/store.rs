//! What the lease manager needs from a lease store: the three commands of the lease protocol.
//! [`RedisLeases`](super::redis::RedisLeases) is the real one; unit tests drive the manager with an
//! in-memory store that can be told to fail.

use std::time::Duration;

use futures::future::BoxFuture;

use super::LeaseError;

pub trait LeaseStore: Send + Sync + 'static {
    /// Takes `key` for `value` for `ttl` if nobody holds it (or `value` already does).
    fn acquire(
        &self,
        key: String,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), LeaseError>>;

    /// Extends each `(key, value)` still carrying its value; `true` where it did.
    fn renew_all(
        &self,
        leases: Vec<(String, String)>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Vec<bool>, LeaseError>>;

    /// Deletes `key` if it still carries `value`; `true` if it did.
    fn release(&self, key: String, value: String) -> BoxFuture<'static, Result<bool, LeaseError>>;

    /// Releases many leases in few round trips (shutdown); how many were still ours.
    fn release_all(
        &self,
        leases: Vec<(String, String)>,
    ) -> BoxFuture<'static, Result<usize, LeaseError>>;
}

impl LeaseStore for super::redis::RedisLeases {
    fn acquire(
        &self,
        key: String,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), LeaseError>> {
        let store = self.clone();
        Box::pin(async move { store.acquire(&key, &value, ttl).await })
    }

    fn renew_all(
        &self,
        leases: Vec<(String, String)>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Vec<bool>, LeaseError>> {
        let store = self.clone();
        Box::pin(async move { store.renew_all(&leases, ttl).await })
    }

    fn release(&self, key: String, value: String) -> BoxFuture<'static, Result<bool, LeaseError>> {
        let store = self.clone();
        Box::pin(async move { store.release(&key, &value).await })
    }

    fn release_all(
        &self,
        leases: Vec<(String, String)>,
    ) -> BoxFuture<'static, Result<usize, LeaseError>> {
        let store = self.clone();
        Box::pin(async move { store.release_all(&leases).await })
    }
}

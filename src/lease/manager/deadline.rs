//! A lease's local deadline: the one piece of a lease's state the manager and its holder share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A lease's local deadline, shared by the manager, which extends it on every confirmed renewal,
/// and the holder, which checks it before every write. The check matters after a process pause:
/// a woken holder can be handed a message before the manager's heartbeat has run and found the
/// lease expired; the holder then steps down on its own instead of acting on stale ownership.
#[derive(Debug, Clone)]
pub(crate) struct Deadline(Arc<AtomicU64>);

impl Deadline {
    fn base() -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    pub(super) fn new(at: Instant) -> Self {
        let deadline = Self(Arc::new(AtomicU64::new(0)));
        deadline.set(at);
        deadline
    }

    pub(super) fn set(&self, at: Instant) {
        let micros = at.saturating_duration_since(Self::base()).as_micros();
        self.0
            .store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::Release);
    }

    pub fn get(&self) -> Instant {
        Self::base() + Duration::from_micros(self.0.load(Ordering::Acquire))
    }

    /// True once the lease may have expired in the store.
    pub fn passed(&self) -> bool {
        self.get() <= Instant::now()
    }

    /// The lease is gone (lost or given back): any check from now on fails, even one made by a
    /// holder that has not yet read its `LeaseLost`.
    pub(super) fn expire(&self) {
        self.0.store(0, Ordering::Release);
    }
}

//! Which booking actors are live on this node, and their idle clock. The registry starts actors
//! and adds their entries; an actor that stops removes its own entry, never a successor's (each
//! entry carries a generation). A std `Mutex` is enough: the critical section is a lookup,
//! insert or removal, never held across an await. Generic over the actor type, so the actor and
//! the registry both use it without knowing each other.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use actix::{Actor, Addr};

use crate::domain::ids::BookingId;

/// An actor's entry: its generation, its address, and its idle clock (shared with it).
pub(crate) struct Entry<A: Actor> {
    pub generation: u64,
    pub addr: Addr<A>,
    pub kept: Arc<AtomicU64>,
}

pub(crate) type Entries<A> = HashMap<BookingId, Entry<A>>;

pub(crate) struct Roster<A: Actor> {
    /// The origin of the actors' idle clocks ([`Self::now_ms`]).
    epoch: Instant,
    entries: Mutex<Entries<A>>,
}

impl<A: Actor> Default for Roster<A> {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<A: Actor> Roster<A> {
    /// Milliseconds since the roster was made: the clock of the actors' idle stops.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn lock(&self) -> MutexGuard<'_, Entries<A>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes `id`'s entry if it still belongs to `generation`.
    pub(crate) fn forget(&self, id: BookingId, generation: u64) {
        let mut entries = self.lock();
        if entries
            .get(&id)
            .is_some_and(|entry| entry.generation == generation)
        {
            entries.remove(&id);
        }
    }
}

//! `BookingRegistry`: finds the live actor of a booking on this node, or starts one.
//!
//! Booking actors run on the registry's own arbiters (threads), not on the HTTP workers, so an
//! HTTP worker shutting down can never drop an actor mid-write; at shutdown the registry stops
//! them itself, after their queued messages. Which actors are live is the [`Roster`], shared with
//! the actors so a stopping one can remove its own entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, MailboxError, Message};
use actix_rt::Arbiter;

use super::booking::BookingActor;
use super::messages::{IdleStop, Passivate};
use super::roster::{Entries, Entry, Roster};
use super::{BookingError, SharedDeps};
use crate::domain::ids::BookingId;
use crate::storage::models::Booking;

pub(crate) struct BookingRegistry {
    deps: SharedDeps,
    /// The live actors, shared with them.
    roster: Arc<Roster<BookingActor>>,
    next_generation: AtomicU64,
    /// The threads booking actors run on; a booking always lands on `id % len`.
    arbiters: Vec<Arbiter>,
}

impl BookingRegistry {
    /// How often a message is re-sent after finding its actor's mailbox closed. Actors stop only
    /// between messages (idle, terminal state, lost lease) and never on an HTTP worker, so a
    /// closed mailbox means the message was never handled and re-sending it is safe.
    const CLOSED_RETRIES: usize = 3;

    /// Must be called inside an actix system; starts `threads` arbiters and the idle sweep.
    pub fn new(deps: SharedDeps, threads: usize) -> Arc<Self> {
        let registry = Arc::new(Self {
            deps,
            roster: Arc::default(),
            next_generation: AtomicU64::new(1),
            arbiters: (0..threads.max(1)).map(|_| Arbiter::new()).collect(),
        });
        actix_rt::spawn(sweep_idle(Arc::downgrade(&registry)));
        registry
    }

    /// Actors whose idle clock ran out: told to stop (each checks its clock again first).
    fn stop_idle(&self) {
        let now = self.roster.now_ms();
        let idle_stop = self.deps.booking.idle_stop_ms;
        let idle: Vec<Addr<BookingActor>> = self
            .lock()
            .values()
            .filter(|entry| now.saturating_sub(entry.kept.load(Ordering::Relaxed)) >= idle_stop)
            .map(|entry| entry.addr.clone())
            .collect();
        for addr in idle {
            addr.do_send(IdleStop);
        }
    }

    /// Booking actors alive on this node.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether `id` has a running actor on this node.
    pub(crate) fn is_live(&self, id: BookingId) -> bool {
        self.lock()
            .get(&id)
            .is_some_and(|entry| entry.addr.connected())
    }

    fn lock(&self) -> MutexGuard<'_, Entries<BookingActor>> {
        self.roster.lock()
    }

    fn actor(self: &Arc<Self>, id: BookingId) -> (u64, Addr<BookingActor>) {
        let mut actors = self.lock();
        if let Some(entry) = actors.get(&id) {
            if entry.addr.connected() {
                return (entry.generation, entry.addr.clone());
            }
        }
        self.start(&mut actors, id, None)
    }

    /// Starts the actor of a booking this node has just inserted with its token, so the
    /// booking's first action finds its owner ready: it takes the lease in the background and
    /// needs no token bump (one commit fewer per booking). Nothing happens when the booking
    /// already has a live actor here.
    pub(crate) fn adopt(self: &Arc<Self>, created: Booking) {
        let id = BookingId(created.id);
        let mut actors = self.lock();
        if !actors.get(&id).is_some_and(|entry| entry.addr.connected()) {
            self.start(&mut actors, id, Some(created));
        }
    }

    fn start(
        self: &Arc<Self>,
        actors: &mut Entries<BookingActor>,
        id: BookingId,
        created: Option<Booking>,
    ) -> (u64, Addr<BookingActor>) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let slot = id.0.unsigned_abs() as usize % self.arbiters.len();
        let kept = Arc::new(AtomicU64::new(self.roster.now_ms()));
        let (deps, roster, clock) = (self.deps.clone(), self.roster.clone(), kept.clone());
        let addr =
            BookingActor::start_in_arbiter(&self.arbiters[slot].handle(), move |_| match created {
                Some(row) => BookingActor::created(row, deps, roster, generation, clock),
                None => BookingActor::new(id, deps, roster, generation, clock),
            });
        let entry = Entry {
            generation,
            addr: addr.clone(),
            kept,
        };
        actors.insert(id, entry);
        (generation, addr)
    }

    /// Removes `id`'s entry if it still belongs to `generation`.
    fn forget(&self, id: BookingId, generation: u64) {
        self.roster.forget(id, generation);
    }

    /// Sends `msg` to the booking's actor and waits for its reply until `deadline` (re-sends
    /// after a closed mailbox share it).
    pub async fn send<M, T>(
        self: &Arc<Self>,
        id: BookingId,
        msg: M,
        deadline: Instant,
    ) -> Result<T, BookingError>
    where
        M: Message<Result = Result<T, BookingError>> + Clone + Send + 'static,
        T: Send + 'static,
        BookingActor: Handler<M>,
        <BookingActor as Actor>::Context: ToEnvelope<BookingActor, M>,
    {
        let mut attempt = 0;
        loop {
            let (generation, addr) = self.actor(id);
            let left = deadline.saturating_duration_since(Instant::now());
            match addr.send(msg.clone()).timeout(left).await {
                Ok(reply) => return reply,
                Err(MailboxError::Closed) if attempt < Self::CLOSED_RETRIES => {
                    self.forget(id, generation);
                    attempt += 1;
                }
                Err(error) => return Err(BookingError::Mailbox(error)),
            }
        }
    }

    /// Shutdown: every actor finishes the messages already queued, releases its lease and stops;
    /// then the arbiters end. Waits at most `within`.
    pub(crate) async fn stop_all(&self, within: Duration) {
        let actors: Vec<Addr<BookingActor>> = self
            .lock()
            .values()
            .map(|entry| entry.addr.clone())
            .collect();
        let stops = actors
            .iter()
            .map(|addr| addr.send(Passivate).timeout(within));
        futures::future::join_all(stops).await;
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// The registry's one idle sweep: four times per `booking.idle_stop_ms` (so an idle actor stops
/// at most a quarter of that late), until the registry is gone.
async fn sweep_idle(registry: std::sync::Weak<BookingRegistry>) {
    loop {
        let Some(period) = registry
            .upgrade()
            .map(|r| Duration::from_millis((r.deps.booking.idle_stop_ms / 4).max(10)))
        else {
            return;
        };
        tokio::time::sleep(period).await;
        match registry.upgrade() {
            Some(registry) => registry.stop_idle(),
            None => return,
        }
    }
}

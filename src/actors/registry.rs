//! `BookingRegistry`: finds the live actor of a booking on this node, or starts one.
//!
//! A std `Mutex` is enough here: the critical section is a map lookup or insert, never held
//! across an await. Each entry carries a generation so a stopping actor can only remove itself,
//! never the successor that replaced it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, MailboxError, Message};

use super::booking::BookingActor;
use super::{BookingError, SharedDeps};
use crate::domain::ids::BookingId;

pub struct BookingRegistry {
    deps: SharedDeps,
    actors: Mutex<HashMap<BookingId, (u64, Addr<BookingActor>)>>,
    next_generation: AtomicU64,
}

impl BookingRegistry {
    /// How often a message is re-sent after finding its actor's mailbox closed (the actor was
    /// stopping). A closed mailbox means the message was never handled, so re-sending is safe.
    const CLOSED_RETRIES: usize = 3;

    pub fn new(deps: SharedDeps) -> Arc<Self> {
        Arc::new(Self {
            deps,
            actors: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
        })
    }

    /// Booking actors alive on this node.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BookingId, (u64, Addr<BookingActor>)>> {
        self.actors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn actor(self: &Arc<Self>, id: BookingId) -> (u64, Addr<BookingActor>) {
        let mut actors = self.lock();
        if let Some((generation, addr)) = actors.get(&id) {
            if addr.connected() {
                return (*generation, addr.clone());
            }
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let addr = BookingActor::new(id, self.deps.clone(), self.clone(), generation).start();
        actors.insert(id, (generation, addr.clone()));
        (generation, addr)
    }

    /// Removes `id`'s entry if it still belongs to `generation`.
    pub fn forget(&self, id: BookingId, generation: u64) {
        let mut actors = self.lock();
        if actors.get(&id).is_some_and(|(g, _)| *g == generation) {
            actors.remove(&id);
        }
    }

    /// Sends `msg` to the booking's actor and waits for its reply, at most the request timeout.
    pub async fn send<M, T>(self: &Arc<Self>, id: BookingId, msg: M) -> Result<T, BookingError>
    where
        M: Message<Result = Result<T, BookingError>> + Clone + Send + 'static,
        T: Send + 'static,
        BookingActor: Handler<M>,
        <BookingActor as Actor>::Context: ToEnvelope<BookingActor, M>,
    {
        let mut attempt = 0;
        loop {
            let (generation, addr) = self.actor(id);
            match addr
                .send(msg.clone())
                .timeout(self.deps.request_timeout)
                .await
            {
                Ok(reply) => return reply,
                Err(MailboxError::Closed) if attempt < Self::CLOSED_RETRIES => {
                    self.forget(id, generation);
                    attempt += 1;
                }
                Err(error) => return Err(BookingError::Mailbox(error)),
            }
        }
    }
}

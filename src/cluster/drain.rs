//! Draining on shutdown. actix-web's own graceful stop keeps serving on connections that are
//! already open and only checks once a second whether they are gone, all while this node still
//! holds its leases; and it closes idle keep-alive connections at once, cutting a request a load
//! balancer may be sending on one. Instead, shutdown closes the listener and marks the node
//! draining: every request that arrives from then on is relayed to another node or refused at
//! once, before any work (`http::relay`; 503 `draining`, `Retry-After`), and its connection
//! closed after the answer; shutdown waits for the requests already in flight. Then the leases go
//! back, and the node waits for its connections to close, or to bring nothing for a while. A
//! forwarding node that gets the draining answer knows its call was never handled, and waits for
//! the lease to move instead.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Requests in flight, and whether new ones are still taken.
pub(crate) struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// HTTP connections open (see [`Drain::connection`]).
    connections: AtomicUsize,
    /// When the last request arrived while draining, in ms since `since`.
    last_arrival_ms: AtomicU64,
    since: Instant,
    /// Turns true when draining starts: event streams (which are not requests in flight once
    /// their answer has begun) end then, and their clients reconnect elsewhere.
    closing: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            last_arrival_ms: AtomicU64::new(0),
            since: Instant::now(),
            closing: watch::channel(false).0,
        }
    }
}

/// Counts one request in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Drain);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long no request may have arrived before the connections left open are closed (see
/// [`Drain::connections_quiet`]): longer than the gap between two requests of a busy balancer,
/// shorter than the second nginx leaves a node out after a refused connection.
const QUIET: Duration = Duration::from_millis(250);

/// Counts one open connection until dropped.
pub(crate) struct Connection(Arc<Drain>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drain {
    /// Counts a connection open for as long as the guard lives (the server keeps it with the
    /// connection's data).
    pub fn connection(self: &Arc<Self>) -> Connection {
        self.connections.fetch_add(1, Ordering::SeqCst);
        Connection(self.clone())
    }

    /// Waits (at most `within`) until no connection is open, or none has brought a request for
    /// [`QUIET`]. While the node drains, each connection closes after its next answer. Closing
    /// an idle one could cut a request a load balancer is sending on it at that moment, which it
    /// may not pass on (a `POST`); once none came for a while, the balancer has stopped sending
    /// here (nginx leaves a node out for `fail_timeout`, 1 s, after a refused connection), and
    /// the rest can be closed. True if no connection is left or the node was quiet.
    pub(crate) async fn connections_quiet(&self, within: Duration) -> bool {
        wait_until(within, || {
            let quiet_for = self
                .now_ms()
                .saturating_sub(self.last_arrival_ms.load(Ordering::SeqCst));
            self.connections.load(Ordering::SeqCst) == 0 || quiet_for >= QUIET.as_millis() as u64
        })
        .await
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a request in, unless the node is draining. Counted before the check (both
    /// `SeqCst`), so a request is either seen by [`Drain::settle`] or refused: never neither.
    pub fn enter(&self) -> Option<InFlight<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self);
        if self.draining.load(Ordering::SeqCst) {
            self.last_arrival_ms.store(self.now_ms(), Ordering::SeqCst);
            return None;
        }
        Some(guard)
    }

    /// Turns true once the node drains.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Refuses new requests from now on, then waits (at most `within`) until none is in flight.
    /// True if it got there.
    pub(crate) async fn settle(&self, within: Duration) -> bool {
        self.last_arrival_ms.store(self.now_ms(), Ordering::SeqCst);
        self.draining.store(true, Ordering::SeqCst);
        self.closing.send_replace(true);
        wait_until(within, || self.in_flight.load(Ordering::SeqCst) == 0).await
    }
}

/// Polls `done` every 2 ms until true (then true) or `within` is over (then false).
async fn wait_until(within: Duration, done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + within;
    while !done() {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settling_waits_for_requests_in_flight_and_refuses_new_ones() {
        let drain = Drain::default();
        let closing = drain.closing();
        let first = drain.enter().unwrap();
        let settled = {
            let settle = drain.settle(Duration::from_secs(1));
            tokio::pin!(settle);
            // Draining now: a new request is refused, the one in flight is waited for.
            assert!(futures::poll!(settle.as_mut()).is_pending());
            assert!(drain.enter().is_none());
            drop(first);
            settle.await
        };
        assert!(settled);
        assert!(drain.enter().is_none());
        assert!(*closing.borrow(), "streams are told to end");
    }
}

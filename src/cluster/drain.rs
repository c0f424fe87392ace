//! Draining on shutdown. actix-web's own graceful stop keeps serving on connections that are
//! already open and only checks once a second whether they are gone, all while this node still
//! holds its leases. Instead, shutdown marks the node draining: every request that arrives from
//! then on is refused at once, before any work (503 `draining`, `Retry-After`, the connection
//! closed), and shutdown waits only for the requests already in flight. Then the leases go back
//! and the connections are closed. A forwarding node that gets the draining answer knows its
//! call was never handled, and waits for the lease to move instead.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Requests in flight, and whether new ones are still taken.
pub(crate) struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// Turns true when draining starts: event streams (which are not requests in flight once
    /// their answer has begun) end then, and their clients reconnect elsewhere.
    closing: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
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

impl Drain {
    /// Counts a request in, unless the node is draining. Counted before the check (both
    /// `SeqCst`), so a request is either seen by [`Drain::settle`] or refused: never neither.
    pub fn enter(&self) -> Option<InFlight<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self);
        (!self.draining.load(Ordering::SeqCst)).then_some(guard)
    }

    /// Turns true once the node drains.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Refuses new requests from now on, then waits (at most `within`) until none is in flight.
    /// True if it got there.
    pub(crate) async fn settle(&self, within: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        self.closing.send_replace(true);
        let until = Instant::now() + within;
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
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

//! Draining on shutdown. actix-web's own graceful stop keeps serving on connections that are
//! already open and only checks once a second whether they are gone, all while this node still
//! holds its leases. Instead, shutdown marks the node draining: every request that arrives from
//! then on is refused at once, before any work (503 `draining`, `Retry-After`, the connection
//! closed), and shutdown waits only for the requests already in flight. Then the leases go back
//! and the connections are closed. A forwarding node that gets the draining answer knows its
//! call was never handled, and waits for the lease to move instead.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};
use serde_json::json;

use super::State;

/// Set on a refusal from a draining node: the request was not handled at all.
pub const DRAINING_HEADER: &str = "x-ridelock-draining";

/// Requests in flight, and whether new ones are still taken.
#[derive(Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
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
    pub(crate) fn enter(&self) -> Option<InFlight<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self);
        (!self.draining.load(Ordering::SeqCst)).then_some(guard)
    }

    /// Refuses new requests from now on, then waits (at most `within`) until none is in flight.
    /// True if it got there.
    pub async fn settle(&self, within: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
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

/// Middleware: counts requests in flight; refuses them once the node is draining.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(state) = req.app_data::<State>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let Some(_in_flight) = state.drain.enter() else {
        let refusal = HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .insert_header((DRAINING_HEADER, "true"))
            .insert_header(("Connection", "close"))
            .json(json!({
                "success": false,
                "message": "This node is shutting down; retry",
                "error": "draining",
            }));
        return Ok(req.into_response(refusal).map_into_right_body());
    };
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settling_waits_for_requests_in_flight_and_refuses_new_ones() {
        let drain = Drain::default();
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
    }
}

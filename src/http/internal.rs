//! `POST /internal/bookings/{id}`: a booking action forwarded by another node. `cluster::inbound`
//! admits the call (401 otherwise, before the body is even parsed); the action is then routed
//! like any other, with the hops and what is left of the deadline the caller passed on.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, HttpRequest, HttpResponse};

use super::booking_actions::render;
use super::bookings::booking_id;
use super::State;
use crate::cluster::auth;
use crate::cluster::headers;
use crate::cluster::inbound::{self, Presented};
use crate::domain::ids::RequestId;
use crate::error::ApiError;

pub async fn booking(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    request_id: RequestId,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let presented = Presented {
        node: header(auth::NODE_HEADER),
        to: header(auth::TO_HEADER),
        hops: header(auth::HOPS_HEADER),
        budget_ms: header(auth::BUDGET_HEADER),
        timestamp_ms: header(auth::TIMESTAMP_HEADER),
        signature: header(auth::SIGNATURE_HEADER),
        request_id: header(headers::REQUEST_ID),
        path: req.path(),
    };
    let metrics = &state.router.forwarder().metrics;
    let call = match state.inbound.admit(&presented, &body).await {
        Ok(call) => call,
        Err(refusal) => {
            metrics.refused.inc();
            if let Some(suppressed) = REFUSAL_LOG.admit() {
                // The sender's node header is the caller's text: quoted, escaped and cut short.
                log::warn!(
                    "internal call refused node={} from={:?} req={} reason={refusal} \
                     (refusals not logged since the last line: {suppressed})",
                    state.deps.node_id,
                    cut(presented.node.unwrap_or("-"), 64),
                    request_id.as_str()
                );
            }
            return Err(ApiError::Unauthorized {
                code: "cluster_auth_failed",
                message: "Internal calls need a valid cluster signature".to_owned(),
            });
        }
    };
    metrics.received.inc();
    let id = booking_id(&path)?;
    let forwarded = inbound::parse_call(&body)?;
    let budget = call.budget.min(state.deps.request_timeout);
    render(
        state
            .router
            .route(id, forwarded, request_id, call.hops, budget)
            .await,
    )
}

/// Refused internal calls are logged at most once a second: anyone can send them.
static REFUSAL_LOG: Throttle = Throttle::new(1000);

/// Lets a log line through at most once per `every_ms`, counting the ones held back.
struct Throttle {
    every_ms: u64,
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    const fn new(every_ms: u64) -> Self {
        Self {
            every_ms,
            last_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` if a line may be logged now.
    fn admit(&self) -> Option<u64> {
        let now = auth::now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= self.every_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// At most `chars` characters of `text`.
fn cut(text: &str, chars: usize) -> &str {
    text.char_indices()
        .nth(chars)
        .map_or(text, |(end, _)| &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_admits_one_line_per_period_and_counts_the_rest() {
        let throttle = Throttle::new(60_000);
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        throttle.last_ms.store(0, Ordering::Relaxed);
        assert_eq!(throttle.admit(), Some(2));
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abcdef", 3), "abc");
        assert_eq!(cut("ab", 3), "ab");
        assert_eq!(cut("ééé", 2), "éé");
    }
}

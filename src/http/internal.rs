//! `POST /internal/bookings/{id}`: a booking action forwarded by another node. Only calls signed
//! with the cluster secret, meant for this node, recent, within their deadline and never seen
//! before are accepted (401 otherwise, before the body is even parsed); the action is then
//! routed like any other, with the hops and what is left of the deadline the caller passed on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use actix_web::{web, HttpRequest, HttpResponse};

use super::bookings::booking_id;
use super::routing::{self, ForwardedCall, MAX_HOPS};
use super::State;
use crate::cluster::auth::{self, Refusal, Signature, Signed};
use crate::cluster::forward::ForwardMetrics;
use crate::domain::ids::RequestId;
use crate::domain::values::FieldError;
use crate::error::ApiError;

/// What a verified call carries besides the action.
struct Call {
    hops: u8,
    budget: Duration,
}

pub async fn booking(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    request_id: RequestId,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let call = match verify(&state, &req, &body).await {
        Ok(call) => call,
        Err(refusal) => {
            ForwardMetrics::bump(&state.forwarder.metrics.refused);
            if let Some(suppressed) = REFUSAL_LOG.admit() {
                // The sender's node header is the caller's text: quoted, escaped and cut short.
                log::warn!(
                    "internal call refused node={} from={:?} req={} reason={refusal} \
                     (refusals not logged since the last line: {suppressed})",
                    state.deps.node_id,
                    cut(header(&req, auth::NODE_HEADER).unwrap_or("-"), 64),
                    request_id.as_str()
                );
            }
            return Err(ApiError::Unauthorized {
                code: "cluster_auth_failed",
                message: "Internal calls need a valid cluster signature".to_owned(),
            });
        }
    };
    ForwardMetrics::bump(&state.forwarder.metrics.received);
    let id = booking_id(&path)?;
    let forwarded: ForwardedCall = serde_json::from_slice(&body)
        .map_err(|e| FieldError::new("body", format!("is not a booking operation: {e}")))?;
    let subject = forwarded.actor.as_deref();
    // A token subject, or the offer sweep of the node that sent the call.
    let known = |s: &str| {
        s == super::offers::SYSTEM_ACTOR || crate::auth::Principal::from_subject(s).is_some()
    };
    if subject.is_some_and(|s| !known(s)) {
        return Err(FieldError::new("actor", "must be a token subject").into());
    }
    let budget = call.budget.min(state.deps.request_timeout);
    routing::route(&state, id, forwarded, request_id, call.hops, budget).await
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

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn verify(state: &State, req: &HttpRequest, body: &[u8]) -> Result<Call, Refusal> {
    let number = |name: &str| header(req, name).and_then(auth::parse_number);
    let (Some(node), Some(to), Some(hops), Some(budget_ms), Some(timestamp_ms), Some(signature)) = (
        header(req, auth::NODE_HEADER),
        header(req, auth::TO_HEADER),
        number(auth::HOPS_HEADER),
        number(auth::BUDGET_HEADER),
        number(auth::TIMESTAMP_HEADER),
        header(req, auth::SIGNATURE_HEADER).and_then(Signature::parse),
    ) else {
        return Err(Refusal::Missing);
    };
    let hops = u8::try_from(hops)
        .ok()
        .filter(|h| *h <= MAX_HOPS)
        .ok_or(Refusal::Missing)?;
    let signed = Signed {
        timestamp_ms,
        node,
        to,
        hops,
        budget_ms,
        request_id: header(req, super::request_id::HEADER).unwrap_or(""),
        path: req.path(),
        body,
    };
    let now = SystemTime::now();
    signed.verify(
        &state.cluster_secret,
        &signature,
        &state.deps.node_id.0,
        now,
    )?;
    first_sighting(state, &signature).await?;
    Ok(Call {
        hops,
        budget: signed.budget_left(now),
    })
}

/// Remembers a verified signature for twice the accepted clock skew (after which its timestamp
/// is refused anyway); a second call with it is a replay. If Redis cannot answer (or is known to
/// be silent, and is not asked), the call is let through: it is signed, recent and meant for us.
/// That trade is written down in the README.
async fn first_sighting(state: &State, signature: &Signature) -> Result<(), Refusal> {
    let health = state.leases.health();
    if health.is_silent() {
        return Ok(());
    }
    let key = format!("{}seen:{}", state.deps.key_prefix, signature.to_hex());
    let ttl_ms = u64::try_from((auth::MAX_SKEW * 2).as_millis()).unwrap_or(u64::MAX);
    let mut conn = state.redis.clone();
    let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
        .arg(&key)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query_async(&mut conn)
        .await;
    health.observe(&set);
    match set {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Refusal::Replayed),
        Err(error) => {
            log::warn!(
                "replay check skipped node={} error={error}",
                state.deps.node_id
            );
            Ok(())
        }
    }
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

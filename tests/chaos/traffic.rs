//! The chaos suite's client: riders and drivers living whole booking lifecycles, round-robin over
//! the nodes as a load balancer would send them, every POST with an `Idempotency-Key` and retried
//! with the same key on 503, a refused or reset connection. It counts what it saw and keeps every
//! 2xx, with the token and node that answered it, to be found in PostgreSQL afterwards. A reply
//! that is not JSON, or none within [`Client::attempt_timeout`], is a failure, never retried.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::fixtures::{booking_body, Api, PICKUP, TTL};
use crate::support::reply::{ReadError, Reply};

/// How long one step is retried before the client gives up on it (its outcome then unknown).
const GIVE_UP: Duration = Duration::from_secs(45);

/// The nodes' own limit on a request: `server.request_timeout_ms` of the test profile plus the
/// grace after which the deadline middleware answers 503 itself.
pub fn server_deadline() -> Duration {
    let settings = ridelock::config::load_profile("test").expect("test profile");
    settings.server.request_timeout() + ridelock::http::deadline::GRACE
}

/// What the client saw, attempt by attempt.
#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub ok: AtomicU64,
    pub conflict: AtomicU64,
    pub unavailable: AtomicU64,
    /// 4xx other than 409 (a bug in this client or the server) and 5xx other than 503 (a bug).
    pub other: AtomicU64,
    /// No answer: refused or reset (a node killed, stopped or draining).
    pub no_answer: AtomicU64,
    /// No answer within [`Client::attempt_timeout`]: a node hung past its own deadline.
    pub hung: AtomicU64,
    /// Steps abandoned after [`GIVE_UP`].
    pub abandoned: AtomicU64,
    /// Longest wait for a 503, in ms: how fast a failure is told.
    pub slowest_503_ms: AtomicU64,
    /// Longest wait for a 2xx, in ms: how much slower a fault makes a request that succeeds.
    pub slowest_2xx_ms: AtomicU64,
    /// Steps answered 2xx after an attempt that got no answer (its node died or hung
    /// mid-request, and the retry with the same key went elsewhere).
    pub ok_after_no_answer: AtomicU64,
}

/// A 2xx the client saw: the booking, its status, token and node according to the answer, and
/// the request id every attempt of the step carried (the audit event's `request_id`).
#[derive(Debug, Clone)]
pub struct Ack {
    pub booking: i64,
    pub status: String,
    pub token: i64,
    /// `X-RideLock-Served-By`: none on a create (no actor) and on a stored answer replayed to a
    /// retry (the node that wrote it is in the stored body's trail, not in the replay).
    pub node: Option<String>,
    pub request_id: String,
    pub at: Instant,
    /// The node the client asked (0-based), which may have relayed another's answer.
    pub via: usize,
    /// How long the attempt that got this answer took.
    pub took: Duration,
}

/// The attempt that got a step's last answer: the node asked, and how long it took.
#[derive(Clone, Copy)]
struct Last {
    via: usize,
    took: Duration,
}

/// A 503 the client saw, and its `Retry-After`.
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub at: Instant,
    /// The `error` code, as JSON (quoted).
    pub what: String,
    pub retry_after: Option<String>,
    /// The node that answered it (0-based).
    pub via: usize,
}

/// An attempt that a client without retries would have failed: a 503, no answer, or an answer
/// outside the contract; when, and what (the `error` code, `no_answer`, `not_json`, the status).
#[derive(Debug, Clone)]
pub struct Failure {
    pub at: Instant,
    pub what: String,
}

/// The request log: 2xx answers and the other replies worth reporting.
#[derive(Default)]
pub struct Seen {
    pub acks: Mutex<Vec<Ack>>,
    /// Every attempt that failed, retried or not.
    pub failures: Mutex<Vec<Failure>>,
    /// Answers that fail the scenario: unexpected statuses, bodies that are not JSON, hangs.
    pub odd: Mutex<Vec<String>>,
    /// 409s by `error` code.
    pub conflicts: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Every 503.
    pub unavailable: Mutex<Vec<Unavailable>>,
    /// The slowest 503: what was asked, of which node, and the `error` code.
    pub slowest_503: Mutex<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    nodes: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    pub counts: Arc<Counts>,
    pub seen: Arc<Seen>,
    /// Per attempt: the nodes' deadline, plus the longest a scenario freezes a node (2 × TTL: a
    /// request queued at a frozen node starts its deadline when the node wakes), plus 2 s.
    /// Longer than any answer can legitimately take, so an attempt that outlives it hung.
    pub attempt_timeout: Duration,
    /// Whether POSTs carry an `Idempotency-Key` (see [`Client::without_keys`]).
    keyed: bool,
}

pub enum Outcome {
    /// A final answer (its body null if it was not JSON).
    Answered(Reply),
    /// Retried until [`GIVE_UP`] without a final answer, or hung (see [`Seen::odd`]).
    GaveUp,
}

/// What one attempt got.
enum Attempt {
    Json(Reply),
    NotJson(reqwest::StatusCode, String),
    NoAnswer,
    Hung(Duration),
}

impl Client {
    /// A client of `nodes`, sending `headers` (an operator's token) with every request.
    pub fn new(nodes: Vec<String>, headers: reqwest::header::HeaderMap) -> Self {
        let attempt_timeout = server_deadline() + TTL * 2 + Duration::from_secs(2);
        Self {
            http: reqwest::Client::builder()
                .default_headers(headers)
                .pool_max_idle_per_host(32)
                .timeout(attempt_timeout)
                .connect_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
            nodes: Arc::new(nodes),
            next: Arc::new(AtomicUsize::new(0)),
            counts: Arc::default(),
            seen: Arc::default(),
            attempt_timeout,
            keyed: true,
        }
    }

    /// This client sending its POSTs without an `Idempotency-Key`, as clients of the tutorial's
    /// API do. It still retries a failed attempt, which only a scenario that allows no failure
    /// may use: a retry without a key can do a step twice.
    pub fn without_keys(mut self) -> Self {
        self.keyed = false;
        self
    }

    /// Sends `body` to `path` on the next node in turn, with `key` as its Idempotency-Key,
    /// retrying with backoff on 503 or no answer until a final answer or [`GIVE_UP`].
    pub async fn post(&self, path: &str, body: &Value, key: &str) -> Outcome {
        self.send(reqwest::Method::POST, path, Some(body), Some(key))
            .await
    }

    /// One attempt; a timeout while connecting is no answer (a node frozen with a full backlog),
    /// one after the request went out is a hang.
    async fn attempt(&self, request: reqwest::RequestBuilder, node: usize) -> Attempt {
        let sent = Instant::now();
        let attempt = match Reply::send(request).await {
            Ok(reply) => {
                if reply.status == 503 {
                    self.seen.unavailable.lock().unwrap().push(Unavailable {
                        at: Instant::now(),
                        what: format!("{}", reply.body["error"]),
                        retry_after: reply.retry_after.clone(),
                        via: node,
                    });
                }
                Attempt::Json(reply)
            }
            Err(ReadError::NotJson(status, text)) => Attempt::NotJson(status, text),
            Err(ReadError::Send(error) | ReadError::Body(_, error))
                if error.is_timeout() && !error.is_connect() =>
            {
                Attempt::Hung(sent.elapsed())
            }
            Err(ReadError::Send(_) | ReadError::Body(..)) => Attempt::NoAnswer,
        };
        let failed = match &attempt {
            Attempt::Json(reply) if reply.status.is_server_error() => match reply.error() {
                "" => Some(reply.status.as_str().to_owned()),
                code => Some(code.to_owned()),
            },
            Attempt::Json(_) => None,
            Attempt::NotJson(status, _) => Some(format!("not_json_{}", status.as_u16())),
            Attempt::NoAnswer => Some("no_answer".to_owned()),
            Attempt::Hung(_) => Some("hung".to_owned()),
        };
        if let Some(what) = failed {
            self.seen.failures.lock().unwrap().push(Failure {
                at: Instant::now(),
                what,
            });
        }
        attempt
    }

    /// Failed attempts between `from` and `to`, by what they got (see [`Failure`]).
    pub fn failures_between(
        &self,
        from: Instant,
        to: Instant,
    ) -> std::collections::BTreeMap<String, usize> {
        let mut by_what = std::collections::BTreeMap::new();
        for failure in self.seen.failures.lock().unwrap().iter() {
            if failure.at >= from && failure.at < to {
                *by_what.entry(failure.what.clone()).or_default() += 1;
            }
        }
        by_what
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Outcome {
        self.send_as(method, path, body, key, &request_id()).await.0
    }

    /// [`Client::send`] with `request_id` as the `X-Request-ID` of every attempt, so whichever
    /// attempt took effect, its audit event carries that id; and its last attempt.
    async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
        request_id: &str,
    ) -> (Outcome, Last) {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(25);
        let mut unanswered = false;
        loop {
            let node = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.nodes[node]))
                .header("x-request-id", request_id);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = key.filter(|_| self.keyed) {
                request = request.header("Idempotency-Key", key);
            }
            let c = &self.counts;
            c.requests.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            let asked = format!("{method} {path} of n{} (request {request_id})", node + 1);
            let attempt = self.attempt(request, node).await;
            let last = Last {
                via: node,
                took: sent.elapsed(),
            };
            match attempt {
                Attempt::Json(answer) if answer.status == 503 => {
                    c.unavailable.fetch_add(1, Ordering::Relaxed);
                    let ms = sent.elapsed().as_millis() as u64;
                    if c.slowest_503_ms.fetch_max(ms, Ordering::Relaxed) < ms {
                        *self.seen.slowest_503.lock().unwrap() =
                            format!("{method}:{path}@n{}:{}", node + 1, answer.body["error"]);
                    }
                }
                Attempt::Json(answer) => {
                    let status = answer.status.as_u16();
                    if (200..300).contains(&status) {
                        let ms = sent.elapsed().as_millis() as u64;
                        c.slowest_2xx_ms.fetch_max(ms, Ordering::Relaxed);
                        if unanswered {
                            c.ok_after_no_answer.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let counter = match status {
                        200..=299 => &c.ok,
                        409 => {
                            let code = answer.body["error"].as_str().unwrap_or("?").to_owned();
                            *self.seen.conflicts.lock().unwrap().entry(code).or_default() += 1;
                            &c.conflict
                        }
                        _ => {
                            self.seen
                                .odd
                                .lock()
                                .unwrap()
                                .push(format!("{asked} -> {status} {}", answer.body));
                            &c.other
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return (Outcome::Answered(answer), last);
                }
                // A text 500 (a panic page, a proxy's error) is an answer, and a wrong one.
                Attempt::NotJson(status, text) => {
                    c.other.fetch_add(1, Ordering::Relaxed);
                    self.seen
                        .odd
                        .lock()
                        .unwrap()
                        .push(format!("{asked} -> {status}, not JSON: {text:?}"));
                    return (Outcome::Answered(Reply::bare(status, Value::Null)), last);
                }
                Attempt::Hung(waited) => {
                    c.hung.fetch_add(1, Ordering::Relaxed);
                    self.seen.odd.lock().unwrap().push(format!(
                        "{asked}: no answer after {waited:?}, past the nodes' deadline"
                    ));
                    return (Outcome::GaveUp, last);
                }
                Attempt::NoAnswer => {
                    c.no_answer.fetch_add(1, Ordering::Relaxed);
                    unanswered = true;
                }
            }
            if started.elapsed() >= GIVE_UP {
                c.abandoned.fetch_add(1, Ordering::Relaxed);
                return (Outcome::GaveUp, last);
            }
            let jitter = rand::rng().random_range(Duration::ZERO..=backoff);
            tokio::time::sleep(backoff / 2 + jitter / 2).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn ack(&self, booking: i64, answer: &Reply, request_id: String, last: Last) {
        let data = &answer.body["data"];
        let booking_row = match data.get("booking") {
            Some(row) => row,
            None => data,
        };
        self.seen.acks.lock().unwrap().push(Ack {
            booking,
            status: booking_row["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            token: booking_row["fencing_token"].as_i64().unwrap_or(-1),
            node: answer.served_by.clone(),
            request_id,
            at: Instant::now(),
            via: last.via,
            took: last.took,
        });
    }

    /// One step of a lifecycle: its 2xx body, or `None` (refused, or outcome unknown).
    async fn step(&self, booking: i64, action: &str, body: Value) -> Option<Value> {
        let key = Uuid::new_v4().to_string();
        let path = format!("/api/bookings/{booking}/{action}");
        let id = request_id();
        match self
            .send_as(reqwest::Method::POST, &path, Some(&body), Some(&key), &id)
            .await
        {
            (Outcome::Answered(answer), last) if answer.status == 200 => {
                self.ack(booking, &answer, id, last);
                Some(answer.body)
            }
            _ => None,
        }
    }

    /// Lifecycles for `rider` until `stop`: create, assign, accept, then complete or a cancel
    /// by either party; a booking nobody could be assigned to is cancelled by its rider.
    pub async fn lifecycles(&self, rider: i64, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let create = booking_body(rider, PICKUP.0, PICKUP.1);
            let key = Uuid::new_v4().to_string();
            let id = request_id();
            let method = reqwest::Method::POST;
            let booking = match self
                .send_as(method, "/api/bookings", Some(&create), Some(&key), &id)
                .await
            {
                (Outcome::Answered(answer), last) if answer.status == 201 => {
                    let booking = answer.body["data"]["id"].as_i64().unwrap();
                    self.ack(booking, &answer, id, last);
                    booking
                }
                _ => continue,
            };
            let rider_cancel = json!({ "user_id": rider, "user_type": "rider", "reason": "chaos" });
            let Some(assigned) = self.step(booking, "assign", json!({})).await else {
                self.step(booking, "cancel", rider_cancel).await;
                continue;
            };
            let driver = assigned["data"]["driver"]["id"].as_i64().unwrap();
            if self
                .step(booking, "accept", json!({ "driver_id": driver }))
                .await
                .is_none()
            {
                self.step(booking, "cancel", rider_cancel).await;
                continue;
            }
            let roll = rand::rng().random_range(0..4);
            let (action, body) = match roll {
                0 => ("cancel", rider_cancel),
                1 => (
                    "cancel",
                    json!({ "user_id": driver, "user_type": "driver", "reason": "chaos" }),
                ),
                _ => (
                    "complete",
                    json!({ "driver_id": driver, "actual_fare": 19.5 }),
                ),
            };
            self.step(booking, action, body).await;
        }
    }
}

/// The fixtures' riders and drivers, made through the nodes in turn like any traffic, each POST
/// with a key of its own.
impl Api for Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let key = (method == reqwest::Method::POST).then(|| Uuid::new_v4().to_string());
        let asked = format!("{method} {path}");
        match self.send(method, path, body.as_ref(), key.as_deref()).await {
            Outcome::Answered(reply) => reply,
            Outcome::GaveUp => panic!("{asked}: no answer"),
        }
    }
}

/// A fresh `X-Request-ID`, sent with every attempt of one step.
fn request_id() -> String {
    format!("chaos-{}", Uuid::new_v4().simple())
}

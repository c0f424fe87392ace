//! The chaos suite's client: riders and drivers living whole booking lifecycles, round-robin over
//! the nodes as a load balancer would send them, every POST with an `Idempotency-Key` and retried
//! with the same key on 503, a refused connection or a timeout. It counts what it saw and keeps
//! every 2xx, to be found in PostgreSQL afterwards.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::PICKUP;

/// How long one step is retried before the client gives up on it (its outcome then unknown).
const GIVE_UP: Duration = Duration::from_secs(45);
/// Per attempt: a little over the server's request timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(6);

/// What the client saw, attempt by attempt.
#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub ok: AtomicU64,
    pub conflict: AtomicU64,
    pub unavailable: AtomicU64,
    /// 4xx other than 409 (a bug in this client or the server) and 5xx other than 503 (a bug).
    pub other: AtomicU64,
    /// No answer: refused, reset or timed out.
    pub no_answer: AtomicU64,
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

/// A 2xx the client saw: the booking, and its status according to the answer.
#[derive(Debug, Clone)]
pub struct Ack {
    pub booking: i64,
    pub status: String,
    pub at: Instant,
}

/// The request log: 2xx answers and the other replies worth reporting.
#[derive(Default)]
pub struct Seen {
    pub acks: Mutex<Vec<Ack>>,
    pub odd: Mutex<Vec<String>>,
    /// 409s by `error` code.
    pub conflicts: Mutex<std::collections::BTreeMap<String, u64>>,
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
}

pub enum Outcome {
    Answered(u16, Value),
    GaveUp,
}

impl Client {
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .default_headers(crate::auth::ops())
                .pool_max_idle_per_host(32)
                .timeout(ATTEMPT_TIMEOUT)
                .connect_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
            nodes: Arc::new(nodes),
            next: Arc::new(AtomicUsize::new(0)),
            counts: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// Sends `body` to `path` on the next node in turn, with `key` as its Idempotency-Key,
    /// retrying with backoff on 503 or no answer until a final answer or [`GIVE_UP`].
    pub async fn post(&self, path: &str, body: &Value, key: &str) -> Outcome {
        self.send(reqwest::Method::POST, path, Some(body), Some(key))
            .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Outcome {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(25);
        let mut unanswered = false;
        loop {
            let node = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.nodes[node]));
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            let c = &self.counts;
            c.requests.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            let reply = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.json::<Value>().await.map(|body| (status, body))
                }
                Err(error) => Err(error),
            };
            match reply {
                Ok((503, body)) => {
                    c.unavailable.fetch_add(1, Ordering::Relaxed);
                    let ms = sent.elapsed().as_millis() as u64;
                    if c.slowest_503_ms.fetch_max(ms, Ordering::Relaxed) < ms {
                        *self.seen.slowest_503.lock().unwrap() =
                            format!("{method}:{path}@n{}:{}", node + 1, body["error"]);
                    }
                }
                Ok((status, body)) => {
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
                            let code = body["error"].as_str().unwrap_or("?").to_owned();
                            *self.seen.conflicts.lock().unwrap().entry(code).or_default() += 1;
                            &c.conflict
                        }
                        _ => {
                            self.seen
                                .odd
                                .lock()
                                .unwrap()
                                .push(format!("{method} {path} -> {status} {body}"));
                            &c.other
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Answered(status, body);
                }
                Err(_) => {
                    c.no_answer.fetch_add(1, Ordering::Relaxed);
                    unanswered = true;
                }
            }
            if started.elapsed() >= GIVE_UP {
                c.abandoned.fetch_add(1, Ordering::Relaxed);
                return Outcome::GaveUp;
            }
            let jitter = rand::rng().random_range(Duration::ZERO..=backoff);
            tokio::time::sleep(backoff / 2 + jitter / 2).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn ack(&self, booking: i64, body: &Value) {
        let data = &body["data"];
        let status = data["status"]
            .as_str()
            .or_else(|| data["booking"]["status"].as_str())
            .unwrap_or_default()
            .to_owned();
        self.seen.acks.lock().unwrap().push(Ack {
            booking,
            status,
            at: Instant::now(),
        });
    }

    /// One step of a lifecycle: its 2xx body, or `None` (refused, or outcome unknown).
    async fn step(&self, booking: i64, action: &str, body: Value) -> Option<Value> {
        let key = Uuid::new_v4().to_string();
        let path = format!("/api/bookings/{booking}/{action}");
        match self.post(&path, &body, &key).await {
            Outcome::Answered(200, reply) => {
                self.ack(booking, &reply);
                Some(reply)
            }
            _ => None,
        }
    }

    /// Lifecycles for `rider` until `stop`: create, assign, accept, then complete or a cancel
    /// by either party; a booking nobody could be assigned to is cancelled by its rider.
    pub async fn lifecycles(&self, rider: i64, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let create = json!({
                "rider_id": rider,
                "pickup_lat": PICKUP.0, "pickup_lng": PICKUP.1,
                "dropoff_lat": PICKUP.0 + 0.05, "dropoff_lng": PICKUP.1 + 0.05,
                "estimated_fare": 20.0,
            });
            let key = Uuid::new_v4().to_string();
            let booking = match self.post("/api/bookings", &create, &key).await {
                Outcome::Answered(201, reply) => reply["data"]["id"].as_i64().unwrap(),
                _ => continue,
            };
            self.ack(booking, &json!({ "data": { "status": "pending" } }));
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

    /// Creates an online driver near the pickup.
    pub async fn driver(&self, i: usize) -> i64 {
        let phone = format!("+1 666 {}", &Uuid::new_v4().as_u128().to_string()[..10]);
        let key = Uuid::new_v4().to_string();
        let Outcome::Answered(201, reply) = self
            .post(
                "/api/drivers",
                &json!({ "name": "Driver", "phone": phone }),
                &key,
            )
            .await
        else {
            panic!("driver not created");
        };
        let id = reply["data"]["id"].as_i64().unwrap();
        let at = json!({ "lat": PICKUP.0 + 0.0001 * i as f64, "lng": PICKUP.1 });
        let key = Uuid::new_v4().to_string();
        self.post(&format!("/api/drivers/{id}/location"), &at, &key)
            .await;
        let online = json!({ "status": "online" });
        self.send(
            reqwest::Method::PATCH,
            &format!("/api/drivers/{id}/status"),
            Some(&online),
            None,
        )
        .await;
        id
    }

    pub async fn rider(&self) -> i64 {
        let phone = format!("+1 555 {}", &Uuid::new_v4().as_u128().to_string()[..10]);
        let key = Uuid::new_v4().to_string();
        let Outcome::Answered(201, reply) = self
            .post(
                "/api/riders",
                &json!({ "name": "Rider", "phone": phone }),
                &key,
            )
            .await
        else {
            panic!("rider not created");
        };
        reply["data"]["id"].as_i64().unwrap()
    }
}

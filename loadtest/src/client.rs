//! The load tool's HTTP side: requests spread round-robin over the `--url` targets (a load
//! balancer without stickiness), each timed into a per-endpoint HDR histogram with its status.
//! It speaks only the public API of API.md, so it works against any compatible server.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

/// One reply: status and JSON body (`Null` when the body was not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

struct EndpointStats {
    /// Microseconds.
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    /// One histogram per second of the run, by when each request finished.
    per_second: Vec<Histogram<u64>>,
    /// Errors (no answer, or 5xx) per second of the run.
    errors_per_second: Vec<u64>,
}

/// One second of one endpoint, for latency-over-time charts.
#[derive(Debug, Clone, Serialize)]
pub struct SecondPoint {
    /// Seconds since the client was created; requests are counted in the second they finished.
    pub second: usize,
    pub count: u64,
    /// Of them, answered 5xx or not answered at all.
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A point of the latency distribution: `percentile` of requests took at most `ms`.
#[derive(Debug, Clone, Serialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub ms: f64,
}

/// Live totals, read by the progress display while the run goes on.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Requests without an HTTP answer or answered 5xx.
    pub errors: AtomicU64,
    /// Lifecycles completed as intended (lifecycle scenario).
    pub lifecycles: AtomicU64,
}

/// Per-endpoint figures for the report.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: String,
    pub count: u64,
    pub success_rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Status code → count; 0 counts transport failures (no HTTP answer).
    pub statuses: BTreeMap<u16, u64>,
    pub timeline: Vec<SecondPoint>,
    pub distribution: Vec<PercentilePoint>,
}

/// Where the latency distribution is sampled: denser towards the tail, which is what a
/// percentile chart on a "nines" axis shows.
const DISTRIBUTION_PERCENTILES: [f64; 14] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// 1 µs to 60 s at 3 significant figures.
#[expect(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts"
)]
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub struct LoadClient {
    http: reqwest::Client,
    urls: Vec<String>,
    next: AtomicUsize,
    stats: Mutex<HashMap<&'static str, EndpointStats>>,
    started: Instant,
    pub counters: Counters,
}

impl LoadClient {
    /// `token`: a bearer token sent with every request (an ops token, which may act for every
    /// rider and driver the scenarios create); `None` against a server with auth off.
    pub fn new(urls: Vec<String>, timeout: Duration, token: Option<&str>) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.is_empty(), "at least one --url is needed");
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| anyhow::anyhow!("--token is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .pool_max_idle_per_host(1024)
            .build()?;
        Ok(Self {
            http,
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            next: AtomicUsize::new(0),
            stats: Mutex::new(HashMap::new()),
            started: Instant::now(),
            counters: Counters::default(),
        })
    }

    fn base(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len();
        &self.urls[i]
    }

    /// Sends one request to the next target and records it under `endpoint` (a route pattern
    /// such as `POST /api/bookings/:id/assign`). A transport failure is recorded as status 0.
    pub async fn call(
        &self,
        endpoint: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base()));
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let reply = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                Reply { status, body }
            }
            Err(error) => Reply {
                status: 0,
                body: serde_json::json!({ "error": "transport", "message": error.to_string() }),
            },
        };
        self.record(endpoint, reply.status, started.elapsed());
        reply
    }

    /// Seconds since this client was created.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn record(&self, endpoint: &'static str, status: u16, took: Duration) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if status == 0 || status >= 500 {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        let second = usize::try_from(self.started.elapsed().as_secs()).unwrap_or(usize::MAX);
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let entry = stats.entry(endpoint).or_insert_with(|| EndpointStats {
            latency: latency_histogram(),
            statuses: BTreeMap::new(),
            per_second: Vec::new(),
            errors_per_second: Vec::new(),
        });
        let micros = u64::try_from(took.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 60_000_000);
        let _ = entry.latency.record(micros);
        *entry.statuses.entry(status).or_default() += 1;
        // A run lasts minutes at most, so one small histogram per second is cheap.
        if second < 24 * 3600 {
            while entry.per_second.len() <= second {
                entry.per_second.push(latency_histogram());
            }
            let _ = entry.per_second[second].record(micros);
            if status == 0 || status >= 500 {
                if entry.errors_per_second.len() <= second {
                    entry.errors_per_second.resize(second + 1, 0);
                }
                entry.errors_per_second[second] += 1;
            }
        }
    }

    /// Every endpoint's figures, sorted by endpoint.
    pub fn report(&self) -> Vec<EndpointReport> {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |us: u64| us as f64 / 1000.0;
        let mut rows: Vec<EndpointReport> = stats
            .iter()
            .map(|(endpoint, s)| {
                let count: u64 = s.statuses.values().sum();
                let ok: u64 = s
                    .statuses
                    .iter()
                    .filter(|(code, _)| (200..300).contains(*code))
                    .map(|(_, n)| n)
                    .sum();
                EndpointReport {
                    endpoint: (*endpoint).to_owned(),
                    count,
                    success_rate: if count == 0 {
                        0.0
                    } else {
                        ok as f64 / count as f64
                    },
                    p50_ms: ms(s.latency.value_at_quantile(0.5)),
                    p90_ms: ms(s.latency.value_at_quantile(0.9)),
                    p99_ms: ms(s.latency.value_at_quantile(0.99)),
                    max_ms: ms(s.latency.max()),
                    statuses: s.statuses.clone(),
                    timeline: s
                        .per_second
                        .iter()
                        .enumerate()
                        .filter(|(_, h)| !h.is_empty())
                        .map(|(second, h)| SecondPoint {
                            second,
                            count: h.len(),
                            errors: s.errors_per_second.get(second).copied().unwrap_or(0),
                            p50_ms: ms(h.value_at_quantile(0.5)),
                            p99_ms: ms(h.value_at_quantile(0.99)),
                            max_ms: ms(h.max()),
                        })
                        .collect(),
                    distribution: DISTRIBUTION_PERCENTILES
                        .iter()
                        .map(|&percentile| PercentilePoint {
                            percentile,
                            ms: ms(s.latency.value_at_percentile(percentile)),
                        })
                        .collect(),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_in_the_second_they_happened() {
        let client = LoadClient::new(
            vec!["http://127.0.0.1:1".into()],
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        for status in [200, 409, 0, 503] {
            client.record("GET /x", status, Duration::from_millis(1));
        }
        let report = client.report();
        let point = &report[0].timeline[0];
        assert_eq!((point.count, point.errors), (4, 2));
    }
}

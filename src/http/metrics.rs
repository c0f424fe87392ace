//! `GET /metrics`: Prometheus text format. HTTP requests by route pattern and status, request
//! latency histograms by route, the lease counters of `/api/locks/stats`, forwarding between
//! nodes, held leases and live booking actors.
//!
//! Every label value comes from a closed set, so no caller can add a series: routes are labelled
//! by their pattern (`/api/bookings/{id}`), never by the raw path, and unmatched paths share one
//! label; methods outside [`METHODS`] (`FOO1`, `FOO2`, … are all valid HTTP) count as `OTHER`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};

use super::State;
use crate::auth::{rules, Principal};
use crate::error::ApiError;
use crate::storage::writer::{self, BatchSizes};
use crate::streams::ops::Answered;

/// The methods counted under their own name; any other is `OTHER`.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// `method` if it is one of [`METHODS`], else `OTHER`: the label never holds caller-chosen text.
fn method_label(method: &str) -> &'static str {
    METHODS
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("OTHER")
}

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct RouteStats {
    statuses: BTreeMap<u16, u64>,
    /// Non-cumulative counts per bucket; the last one is above every bound.
    buckets: [u64; BUCKETS.len() + 1],
    sum_seconds: f64,
}

impl RouteStats {
    fn add(&mut self, status: u16, bucket: usize, seconds: f64) {
        *self.statuses.entry(status).or_default() += 1;
        self.buckets[bucket] += 1;
        self.sum_seconds += seconds;
    }

    fn merge(&mut self, other: &Self) {
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_seconds += other.sum_seconds;
    }
}

type Routes = BTreeMap<&'static str, BTreeMap<String, RouteStats>>;

/// How many independent tables requests are counted in. Each thread keeps to one, so a request
/// takes a lock no other thread is likely to hold (no global lock per request); `/metrics` adds
/// them up.
const SHARDS: usize = 16;

/// Request counts and latencies, per method and route pattern.
pub(crate) struct HttpMetrics {
    /// Per shard: method label → route pattern → figures. Both keys come from closed sets (see
    /// [`method_label`] and the route table), so a table cannot grow past their product.
    shards: [Mutex<Routes>; SHARDS],
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

/// This thread's shard, handed out round-robin on a thread's first request.
fn shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        let mut routes = self.shards[shard()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let by_route = routes.entry(method_label(method)).or_default();
        if !by_route.contains_key(route) {
            by_route.insert(route.to_owned(), RouteStats::default());
        }
        let Some(stats) = by_route.get_mut(route) else {
            return;
        };
        stats.add(status, bucket, seconds);
    }

    /// Every shard's figures added up.
    fn merged(&self) -> Routes {
        let mut all = Routes::new();
        for shard in &self.shards {
            let routes = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (method, by_route) in routes.iter() {
                let merged = all.entry(method).or_default();
                for (route, stats) in by_route {
                    merged.entry(route.clone()).or_default().merge(stats);
                }
            }
        }
        all
    }

    /// Requests answered so far by latency bucket, over every route: the ops feed's request
    /// rate and p99.
    pub(crate) fn answered(&self) -> Answered {
        let mut counts = vec![0; BUCKETS.len() + 1];
        for by_route in self.merged().values() {
            for stats in by_route.values() {
                for (total, n) in counts.iter_mut().zip(&stats.buckets) {
                    *total += n;
                }
            }
        }
        Answered {
            bounds: BUCKETS.to_vec(),
            counts,
        }
    }

    fn render(&self, out: &mut String) {
        let routes = self.merged();
        out.push_str(
            "# HELP ridelock_http_requests_total HTTP requests answered, by route pattern and status.\n\
             # TYPE ridelock_http_requests_total counter\n",
        );
        let all = || {
            routes.iter().flat_map(|(method, by_route)| {
                by_route.iter().map(move |(route, s)| (method, route, s))
            })
        };
        for (method, route, stats) in all() {
            for (status, n) in &stats.statuses {
                let _ = writeln!(
                    out,
                    "ridelock_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                    label(method),
                    label(route)
                );
            }
        }
        out.push_str(
            "# HELP ridelock_http_request_duration_seconds Time from request to response, by route pattern.\n\
             # TYPE ridelock_http_request_duration_seconds histogram\n",
        );
        for (method, route, stats) in all() {
            let labels = format!("method=\"{}\",route=\"{}\"", label(method), label(route));
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "ridelock_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let count: u64 = stats.buckets.iter().sum();
            let _ = writeln!(
                out,
                "ridelock_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}\n\
                 ridelock_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 ridelock_http_request_duration_seconds_count{{{labels}}} {count}",
                stats.sum_seconds
            );
        }
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: times every request and counts it under its route pattern and status.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let response = next.call(req).await?;
    let request = response.request();
    if let Some(state) = request.app_data::<State>() {
        state.http_metrics.record(
            request.method().as_str(),
            request.match_pattern().as_deref().unwrap_or("unmatched"),
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    Ok(response)
}

/// `GET /metrics`.
/// Prometheus text format (ops).
#[utoipa::path(
    get,
    operation_id = "metrics_render",
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")),
    security(("bearer" = [])),
)]
pub async fn render(state: State, caller: Principal) -> Result<HttpResponse, ApiError> {
    rules::ops_only(&caller)?;
    let node = label(&state.deps.node_id.0);
    let m = state.lease_metrics.snapshot();
    let mut out = String::with_capacity(8192);
    state.http_metrics.render(&mut out);
    let counters = [
        ("acquired", m.acquired, "Leases acquired."),
        ("released", m.released, "Leases given back and deleted."),
        (
            "expired",
            m.expired,
            "Leases whose local deadline passed unconfirmed.",
        ),
        (
            "contested",
            m.contested,
            "Acquisitions refused: another holder had the lease.",
        ),
        ("renewed", m.renewed, "Lease renewals confirmed."),
        (
            "renewal_failures",
            m.renewal_failures,
            "Lease renewals refused or unanswered.",
        ),
        (
            "lost",
            m.lost,
            "Leases lost while held; their actors were stopped.",
        ),
        (
            "timeouts",
            m.timeouts,
            "Acquisitions the lease store did not answer.",
        ),
    ];
    for (name, value, help) in counters {
        let _ = writeln!(
            out,
            "# HELP ridelock_lease_{name}_total {help}\n# TYPE ridelock_lease_{name}_total counter\n\
             ridelock_lease_{name}_total{{node=\"{node}\"}} {value}"
        );
    }
    let f = &state.router.forwarder().metrics;
    let forwards = [
        (
            "sent",
            &f.sent,
            "Booking actions sent on to the node holding the lease.",
        ),
        (
            "answered",
            &f.answered,
            "Forwarded actions the owner answered (any status).",
        ),
        (
            "unanswered",
            &f.unanswered,
            "Forwarded actions the owner did not answer; the lease was then waited out.",
        ),
        (
            "unreachable",
            &f.unreachable,
            "Requests refused at once (503): no new connection reached the owner, and its lease would outlast them.",
        ),
        (
            "received",
            &f.received,
            "Actions other nodes forwarded here.",
        ),
        (
            "refused",
            &f.refused,
            "Internal calls refused for a missing or wrong signature.",
        ),
    ];
    for (name, value, help) in forwards {
        let _ = writeln!(
            out,
            "# HELP ridelock_forwards_{name}_total {help}\n# TYPE ridelock_forwards_{name}_total counter\n\
             ridelock_forwards_{name}_total{{node=\"{node}\"}} {}",
            value.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ridelock_leases_held Leases this node holds now.\n# TYPE ridelock_leases_held gauge\n\
         ridelock_leases_held{{node=\"{node}\"}} {}\n\
         # HELP ridelock_booking_actors Booking actors alive on this node.\n# TYPE ridelock_booking_actors gauge\n\
         ridelock_booking_actors{{node=\"{node}\"}} {}",
        m.held,
        state.registry.len()
    );
    out.push_str(
        "# HELP ridelock_lease_acquisition_seconds Lease acquisition latency over the latest acquisitions.\n\
         # TYPE ridelock_lease_acquisition_seconds gauge\n",
    );
    for (quantile, ms) in [
        ("0.5", m.acquisition_ms.p50),
        ("0.99", m.acquisition_ms.p99),
        ("1", m.acquisition_ms.max),
    ] {
        let _ = writeln!(
            out,
            "ridelock_lease_acquisition_seconds{{node=\"{node}\",quantile=\"{quantile}\"}} {}",
            ms / 1000.0
        );
    }
    render_batch_sizes(&mut out, &node, state.deps.writer.batch_sizes());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}

/// The group-commit writer's batch sizes, as a histogram of changes per batch.
fn render_batch_sizes(out: &mut String, node: &str, sizes: &BatchSizes) {
    let (cumulative, changes) = sizes.snapshot();
    out.push_str(
        "# HELP ridelock_write_batch_size Booking changes written per group commit.\n\
         # TYPE ridelock_write_batch_size histogram\n",
    );
    let bounds = writer::BUCKETS
        .iter()
        .map(|b| b.to_string())
        .chain(["+Inf".to_owned()]);
    for (bound, count) in bounds.zip(cumulative) {
        let _ = writeln!(
            out,
            "ridelock_write_batch_size_bucket{{node=\"{node}\",le=\"{bound}\"}} {count}"
        );
    }
    let batches = cumulative[writer::BUCKETS.len()];
    let _ = writeln!(
        out,
        "ridelock_write_batch_size_sum{{node=\"{node}\"}} {changes}\n\
         ridelock_write_batch_size_count{{node=\"{node}\"}} {batches}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_cumulative_buckets() {
        let metrics = HttpMetrics::default();
        metrics.record("GET", "/api/x/{id}", 200, Duration::from_micros(800));
        metrics.record("GET", "/api/x/{id}", 404, Duration::from_millis(30));
        metrics.record("GET", "/api/x/{id}", 200, Duration::from_secs(9));
        let mut out = String::new();
        metrics.render(&mut out);
        let labels = "method=\"GET\",route=\"/api/x/{id}\"";
        for line in [
            format!("ridelock_http_requests_total{{{labels},status=\"200\"}} 2"),
            format!("ridelock_http_requests_total{{{labels},status=\"404\"}} 1"),
            format!("ridelock_http_request_duration_seconds_bucket{{{labels},le=\"0.001\"}} 1"),
            format!("ridelock_http_request_duration_seconds_bucket{{{labels},le=\"0.025\"}} 1"),
            format!("ridelock_http_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2"),
            format!("ridelock_http_request_duration_seconds_bucket{{{labels},le=\"5\"}} 2"),
            format!("ridelock_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"),
            format!("ridelock_http_request_duration_seconds_count{{{labels}}} 3"),
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
    }

    #[test]
    fn methods_outside_the_known_set_share_one_label() {
        let metrics = HttpMetrics::default();
        for n in 0..100 {
            metrics.record(&format!("FOO{n}"), "unmatched", 404, Duration::ZERO);
        }
        metrics.record("PATCH", "unmatched", 404, Duration::ZERO);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(!out.contains("FOO"), "{out}");
        let other = "method=\"OTHER\",route=\"unmatched\",status=\"404\"";
        assert!(out.contains(&format!("{{{other}}} 100")), "{out}");
        assert!(out.contains("method=\"PATCH\""), "{out}");
    }

    #[test]
    fn requests_counted_on_many_threads_add_up_in_one_series() {
        let metrics = std::sync::Arc::new(HttpMetrics::default());
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        metrics.record("POST", "/api/bookings", 201, Duration::from_millis(2));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("recording thread");
        }
        let mut out = String::new();
        metrics.render(&mut out);
        let labels = "method=\"POST\",route=\"/api/bookings\"";
        let total = (SHARDS + 3) * 100;
        for line in [
            format!("ridelock_http_requests_total{{{labels},status=\"201\"}} {total}"),
            format!("ridelock_http_request_duration_seconds_count{{{labels}}} {total}"),
        ] {
            assert_eq!(
                out.lines().filter(|l| *l == line).count(),
                1,
                "{line} in\n{out}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

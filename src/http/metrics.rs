//! `GET /metrics`: Prometheus text format, through the `prometheus` crate. One registry per node
//! (every series carries `node`) holds: HTTP requests by route pattern and status, and their
//! latency histograms by route; the lease manager's counters and acquisition-latency histogram;
//! forwarding between nodes; the group-commit writer's batch sizes; the process's CPU, memory,
//! file descriptors and start time; build info; and, read at each scrape, leases held, booking
//! actors, the lease backend in use, PostgreSQL pool connections (in use, idle, waited for) and
//! open event streams.
//!
//! Every label value comes from a closed set, so no caller can add a series: routes are labelled
//! by their pattern (`/api/bookings/{id}`), never by the raw path, and unmatched paths share one
//! label; methods outside [`METHODS`] (`FOO1`, `FOO2`, … are all valid HTTP) count as `OTHER`.
//!
//! Scraped with an operator's token, or with `auth.scrape_token`, which opens nothing else.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpRequest, HttpResponse};
use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::State;
use crate::auth::{rules, Principal};
use crate::cluster::forward::ForwardMetrics;
use crate::error::ApiError;
use crate::lease::manager::LeaseMetrics;
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

/// The node's registry, and the metrics this module updates itself.
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    actors: IntGauge,
    backend: IntGaugeVec,
    pool: IntGaugeVec,
    pool_waiting: IntGauge,
    streams: IntGauge,
}

/// The metrics other parts of the node keep, registered alongside.
pub(crate) struct Kept<'a> {
    pub lease: &'a LeaseMetrics,
    pub forwards: &'a ForwardMetrics,
    pub batch_sizes: &'a Histogram,
}

impl Metrics {
    pub fn new(node_id: &str, kept: Kept<'_>) -> prometheus::Result<Self> {
        let labels = HashMap::from([("node".to_owned(), node_id.to_owned())]);
        let registry = Registry::new_custom(None, Some(labels))?;
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "ridelock_http_requests_total",
                    "HTTP requests answered, by route pattern and status.",
                ),
                &["method", "route", "status"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "ridelock_http_request_duration_seconds",
                    "Time from request to response, by route pattern.",
                )
                .buckets(BUCKETS.to_vec()),
                &["method", "route"],
            )?,
            actors: IntGauge::new(
                "ridelock_booking_actors",
                "Booking actors alive on this node.",
            )?,
            backend: IntGaugeVec::new(
                Opts::new(
                    "ridelock_lease_backend",
                    "1 for the store new leases come from now, 0 for the other.",
                ),
                &["backend"],
            )?,
            pool: IntGaugeVec::new(
                Opts::new(
                    "ridelock_db_pool_connections",
                    "PostgreSQL pool connections: in use, idle, and the most it opens (max).",
                ),
                &["state"],
            )?,
            pool_waiting: IntGauge::new(
                "ridelock_db_pool_waiting",
                "Callers waiting for a PostgreSQL connection from the pool now.",
            )?,
            streams: IntGauge::new(
                "ridelock_stream_subscribers",
                "Event streams open on this node.",
            )?,
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "ridelock_build_info",
                "1, labelled with the build's version.",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let mut collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(metrics.requests.clone()),
            Box::new(metrics.duration.clone()),
            Box::new(metrics.actors.clone()),
            Box::new(metrics.backend.clone()),
            Box::new(metrics.pool.clone()),
            Box::new(metrics.pool_waiting.clone()),
            Box::new(metrics.streams.clone()),
            Box::new(build),
            Box::new(kept.batch_sizes.clone()),
            Box::new(ProcessCollector::for_self()),
        ];
        collectors.extend(kept.lease.collectors());
        collectors.extend(kept.forwards.collectors());
        for collector in collectors {
            metrics.registry.register(collector)?;
        }
        Ok(metrics)
    }

    fn record(&self, method: &str, route: &str, status: u16, took: Duration) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    /// Requests answered so far by latency bucket, over every route: the ops feed's request
    /// rate and p99.
    pub(crate) fn answered(&self) -> Answered {
        let mut counts = vec![0u64; BUCKETS.len() + 1];
        for family in self.duration.collect() {
            for metric in family.get_metric() {
                let histogram = metric.get_histogram();
                let mut below = 0;
                for (slot, bucket) in histogram.get_bucket().iter().enumerate() {
                    let cumulative = bucket.cumulative_count();
                    if let Some(count) = counts.get_mut(slot) {
                        *count += cumulative - below;
                    }
                    below = cumulative;
                }
                counts[BUCKETS.len()] += histogram.get_sample_count() - below;
            }
        }
        Answered {
            bounds: BUCKETS.to_vec(),
            counts,
        }
    }

    /// The text exposition, with the gauges read now.
    fn render(&self, state: &super::AppState) -> Result<Vec<u8>, prometheus::Error> {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.actors.set(gauge(state.registry.len()));
        let backend = state.leases.health().backend();
        for store in ["redis", "postgres"] {
            self.backend
                .with_label_values(&[store])
                .set(i64::from(store == backend));
        }
        let pool = state.deps.pool.status();
        let in_use = pool.size.saturating_sub(pool.available);
        self.pool.with_label_values(&["in_use"]).set(gauge(in_use));
        self.pool
            .with_label_values(&["idle"])
            .set(gauge(pool.available));
        self.pool
            .with_label_values(&["max"])
            .set(gauge(pool.max_size));
        self.pool_waiting.set(gauge(pool.waiting));
        self.streams.set(gauge(state.hub.subscribers()));
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
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
        state.metrics.record(
            request.method().as_str(),
            request.match_pattern().as_deref().unwrap_or("unmatched"),
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    Ok(response)
}

/// Whether `request` carries the scrape-only token (`auth.scrape_token`, when set).
fn has_scrape_token(state: &State, request: &HttpRequest) -> bool {
    let wanted = state.scrape_token.expose();
    if wanted.is_empty() {
        return false;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    crate::auth::constant_time_eq(given.as_bytes(), wanted.as_bytes())
}

/// `GET /metrics`.
/// Prometheus text format: an operator's token, or the scrape-only `auth.scrape_token`.
#[utoipa::path(
    get,
    operation_id = "metrics_render",
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")),
    security(("bearer" = [])),
)]
pub async fn render(state: State, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    if !has_scrape_token(&state, &request) {
        let caller = Principal::extract(&request).await?;
        rules::ops_only(&caller)?;
    }
    let body = state
        .metrics
        .render(&state)
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("rendering metrics: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type(TextEncoder::new().format_type())
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::writer;

    fn metrics() -> Metrics {
        let lease = LeaseMetrics::new().unwrap();
        let forwards = ForwardMetrics::new().unwrap();
        let batch_sizes = writer::batch_sizes().unwrap();
        Metrics::new(
            "n1",
            Kept {
                lease: &lease,
                forwards: &forwards,
                batch_sizes: &batch_sizes,
            },
        )
        .unwrap()
    }

    fn text(metrics: &Metrics) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The value of the one series `name` whose labels include every one of `labels`.
    fn value(out: &str, name: &str, labels: &[&str]) -> f64 {
        let found: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?} in\n{out}");
        found[0].rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn latencies_land_in_cumulative_buckets_and_every_series_names_the_node() {
        let metrics = metrics();
        metrics.record("GET", "/api/x/{id}", 200, Duration::from_micros(800));
        metrics.record("GET", "/api/x/{id}", 404, Duration::from_millis(30));
        metrics.record("GET", "/api/x/{id}", 200, Duration::from_secs(9));
        let out = text(&metrics);
        let route = ["method=\"GET\"", "route=\"/api/x/{id}\"", "node=\"n1\""];
        let with = |extra: &'static str| [route[0], route[1], route[2], extra];
        assert_eq!(
            value(
                &out,
                "ridelock_http_requests_total",
                &with("status=\"200\"")
            ),
            2.0
        );
        assert_eq!(
            value(
                &out,
                "ridelock_http_requests_total",
                &with("status=\"404\"")
            ),
            1.0
        );
        let bucket = "ridelock_http_request_duration_seconds_bucket";
        assert_eq!(value(&out, bucket, &with("le=\"0.001\"")), 1.0);
        assert_eq!(value(&out, bucket, &with("le=\"0.025\"")), 1.0);
        assert_eq!(value(&out, bucket, &with("le=\"0.05\"")), 2.0);
        assert_eq!(value(&out, bucket, &with("le=\"+Inf\"")), 3.0);
        assert_eq!(
            value(&out, "ridelock_http_request_duration_seconds_count", &route),
            3.0
        );
        let answered = metrics.answered();
        assert_eq!(answered.counts.iter().sum::<u64>(), 3);
        assert_eq!((answered.counts[0], answered.counts[5]), (1, 1));
        assert_eq!(answered.counts[BUCKETS.len()], 1, "above every bound");
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("node=\"n1\""), "{line}");
        }
    }

    #[test]
    fn methods_outside_the_known_set_share_one_label() {
        let metrics = metrics();
        for n in 0..100 {
            metrics.record(&format!("FOO{n}"), "unmatched", 404, Duration::ZERO);
        }
        metrics.record("PATCH", "unmatched", 404, Duration::ZERO);
        let out = text(&metrics);
        assert!(!out.contains("FOO"), "{out}");
        let other = ["method=\"OTHER\"", "route=\"unmatched\"", "status=\"404\""];
        assert_eq!(value(&out, "ridelock_http_requests_total", &other), 100.0);
        assert!(out.contains("method=\"PATCH\""), "{out}");
    }

    #[test]
    fn requests_counted_on_many_threads_add_up_in_one_series() {
        let metrics = std::sync::Arc::new(metrics());
        let threads: Vec<_> = (0..8)
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
        let out = text(&metrics);
        let labels = ["method=\"POST\"", "route=\"/api/bookings\""];
        assert_eq!(value(&out, "ridelock_http_requests_total", &labels), 800.0);
        assert_eq!(
            value(
                &out,
                "ridelock_http_request_duration_seconds_count",
                &labels
            ),
            800.0
        );
    }
}

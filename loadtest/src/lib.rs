//! `ridelock loadtest`: the tutorial's "concurrent test", done for real. It drives any server that
//! speaks API.md, spreading requests round-robin over one or more `--url`s, releases concurrent
//! requests together, checks each scenario's invariants through the API afterwards, and reports
//! per-endpoint latency (HDR histograms) and status codes. A broken invariant is a failed run.
//!
//! A crate of its own that knows the server only through HTTP: the `ridelock` binary runs it as
//! its `loadtest` subcommand; the server library never imports it.

pub mod client;
pub mod html;
pub mod progress;
pub mod scenarios;
pub mod streams;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use client::{EndpointReport, LoadClient};
use progress::{Goal, Progress};

/// Which scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// 10 concurrent creates, 5 concurrent assigns of one booking, lock stats.
    Tutorial,
    /// `--concurrency` assigns of one booking: exactly one wins.
    SameBooking,
    /// `--bookings` bookings racing for `--drivers` drivers: exactly that many win.
    DriverContention,
    /// Cancel racing complete on `--bookings` accepted bookings: one winner each.
    Conflict,
    /// `--riders` closed-loop riders doing whole lifecycles for `--duration-s` (or `--lifecycles`);
    /// with `--rate`, lifecycles start at that rate instead (open loop).
    Lifecycle,
    /// `--bookings` bookings created and each sent one refused command, leaving that many live
    /// actors on the server (for the memory benchmark).
    Actors,
}

/// What to run and how hard.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub urls: Vec<String>,
    pub scenario: Scenario,
    pub concurrency: usize,
    pub drivers: usize,
    pub bookings: usize,
    pub riders: usize,
    pub duration: Duration,
    pub lifecycles: Option<u64>,
    /// Open-loop arrivals for `lifecycle`: lifecycles started per second.
    pub rate: Option<f64>,
    pub request_timeout: Duration,
    /// Bearer token for every request: an ops token (`ridelock token ops loadtest`), or `None`
    /// against a server with auth off.
    pub token: Option<String>,
    /// Live progress on stderr while the run goes on.
    pub progress: Progress,
    /// User streams held open during a lifecycle run (`--streams`).
    pub streams: usize,
}

/// What a run was asked to do, as the report names it.
#[derive(Debug, Serialize)]
pub struct Parameters {
    pub concurrency: usize,
    pub drivers: usize,
    pub bookings: usize,
    pub riders: usize,
    pub duration_s: f64,
    pub lifecycles: Option<u64>,
    pub rate: Option<f64>,
    pub request_timeout_ms: u128,
    pub streams: usize,
    /// Whether requests carried a token (never the token itself).
    pub token: bool,
}

impl Parameters {
    fn of(cfg: &LoadConfig) -> Self {
        Self {
            concurrency: cfg.concurrency,
            drivers: cfg.drivers,
            bookings: cfg.bookings,
            riders: cfg.riders,
            duration_s: cfg.duration.as_secs_f64(),
            lifecycles: cfg.lifecycles,
            rate: cfg.rate,
            request_timeout_ms: cfg.request_timeout.as_millis(),
            streams: cfg.streams,
            token: cfg.token.is_some(),
        }
    }
}

/// Everything a run found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub urls: Vec<String>,
    pub parameters: Parameters,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    /// This load client's version, and each server's as its `/api/health` said.
    pub client_version: String,
    pub server_versions: Vec<String>,
    pub elapsed_s: f64,
    pub lifecycles: u64,
    /// Over the traffic's own time (lifecycle: set-up excluded), else over `elapsed_s`.
    pub lifecycles_per_s: f64,
    pub violations: Vec<String>,
    pub endpoints: Vec<EndpointReport>,
    pub lock_counters_before: Value,
    pub lock_counters_after: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<streams::StreamsReport>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

async fn lock_counters(c: &LoadClient) -> Value {
    let stats = c
        .call(
            "GET /api/locks/stats",
            reqwest::Method::GET,
            "/api/locks/stats",
            None,
        )
        .await;
    stats.data()["counters"].clone()
}

/// Runs one scenario to the end.
pub async fn run(cfg: &LoadConfig) -> anyhow::Result<Report> {
    if let Some(rate) = cfg.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number of lifecycles per second"
        );
    }
    anyhow::ensure!(cfg.riders > 0, "--riders must be positive");
    let c = Arc::new(LoadClient::new(
        cfg.urls.clone(),
        cfg.request_timeout,
        cfg.token.as_deref(),
    )?);
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut server_versions = Vec::with_capacity(cfg.urls.len());
    for _ in &cfg.urls {
        // Round-robin: one health check per server.
        let health = c
            .call("GET /api/health", reqwest::Method::GET, "/api/health", None)
            .await;
        server_versions.push(health.body["version"].as_str().unwrap_or("?").to_owned());
    }
    let before = lock_counters(&c).await;
    let goal = match (cfg.scenario, cfg.lifecycles) {
        (Scenario::Lifecycle, Some(n)) => Goal::Lifecycles(n),
        (Scenario::Lifecycle, None) => Goal::Duration(cfg.duration),
        _ => Goal::Unknown,
    };
    let shown = progress::spawn(c.clone(), cfg.progress, goal);
    let started = Instant::now();
    let outcome = match cfg.scenario {
        Scenario::Tutorial => scenarios::tutorial(c.clone()).await?,
        Scenario::SameBooking => scenarios::same_booking(c.clone(), cfg.concurrency).await?,
        Scenario::DriverContention => {
            scenarios::driver_contention(c.clone(), cfg.drivers, cfg.bookings).await?
        }
        Scenario::Conflict => scenarios::conflict(c.clone(), cfg.bookings).await?,
        Scenario::Actors => scenarios::actors(c.clone(), cfg.bookings).await?,
        Scenario::Lifecycle => {
            let setup = (cfg.streams > 0).then(|| streams::StreamSetup {
                count: cfg.streams,
                urls: cfg
                    .urls
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect(),
                token: cfg.token.clone(),
            });
            scenarios::lifecycle(
                c.clone(),
                cfg.riders,
                cfg.duration,
                cfg.lifecycles,
                cfg.rate,
                setup.as_ref(),
            )
            .await?
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(shown) = shown {
        shown.finish();
    }
    let after = lock_counters(&c).await;
    Ok(Report {
        scenario: cfg.scenario,
        urls: cfg.urls.clone(),
        parameters: Parameters::of(cfg),
        started_at,
        client_version: env!("CARGO_PKG_VERSION").to_owned(),
        server_versions,
        elapsed_s: elapsed,
        lifecycles: outcome.lifecycles,
        lifecycles_per_s: {
            let window = outcome.traffic.map_or(elapsed, |t| t.as_secs_f64());
            if window > 0.0 {
                outcome.lifecycles as f64 / window
            } else {
                0.0
            }
        },
        violations: outcome.violations,
        endpoints: c.report(),
        lock_counters_before: before,
        lock_counters_after: after,
        streams: outcome.streams,
    })
}

/// The human-readable report.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "scenario {:?}: {:.2} s, {} lifecycles ({:.1}/s)\n\n{:<34} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}  statuses\n",
        report.scenario, report.elapsed_s, report.lifecycles, report.lifecycles_per_s,
        "endpoint", "count", "ok %", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for e in &report.endpoints {
        let statuses: Vec<String> = e
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}:{n}"))
            .collect();
        out.push_str(&format!(
            "{:<34} {:>7} {:>7.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}\n",
            e.endpoint,
            e.count,
            e.success_rate * 100.0,
            e.p50_ms,
            e.p90_ms,
            e.p99_ms,
            e.max_ms,
            statuses.join(" ")
        ));
    }
    out.push_str(&format!(
        "\nlock counters before: {}\nlock counters after:  {}\n",
        report.lock_counters_before, report.lock_counters_after
    ));
    if let Some(s) = &report.streams {
        out.push_str(&format!(
            "\nstreams: {} open, {} refused, {} events; delay after the write began, same node: \
             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({}); other node: p50 {:.1} ms, p99 {:.1} ms, \
             max {:.1} ms ({})\n",
            s.open,
            s.refused,
            s.events,
            s.same_node.p50_ms,
            s.same_node.p99_ms,
            s.same_node.max_ms,
            s.same_node.count,
            s.other_node.p50_ms,
            s.other_node.p99_ms,
            s.other_node.max_ms,
            s.other_node.count,
        ));
    }
    if report.passed() {
        out.push_str("\ninvariants: all held\n");
    } else {
        out.push_str(&format!(
            "\ninvariants: {} BROKEN\n",
            report.violations.len()
        ));
        for v in report.violations.iter().take(20) {
            out.push_str(&format!("  - {v}\n"));
        }
    }
    out
}

//! The manager's counters and acquisition latencies: Prometheus metrics (`/metrics` registers
//! them), read back by the stats endpoint.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};

/// Upper bounds of the acquisition latency buckets, seconds: from a fast Redis round trip to a
/// request's whole deadline.
const ACQUISITION_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Lease counters and acquisition latencies, shared with the stats endpoint and `/metrics`.
pub(crate) struct LeaseMetrics {
    pub acquired: IntCounter,
    pub released: IntCounter,
    pub expired: IntCounter,
    pub contested: IntCounter,
    pub renewed: IntCounter,
    pub renewal_failures: IntCounter,
    pub lost: IntCounter,
    pub timeouts: IntCounter,
    /// Every acquisition's latency, for `/metrics`.
    acquisition: Histogram,
    /// The latest acquisitions' latencies, for the stats endpoint's percentiles.
    acquisition_us: Mutex<VecDeque<u64>>,
    /// Leases held now; set by the manager (`publish_held`).
    pub(super) held: IntGauge,
}

/// A point-in-time copy of [`LeaseMetrics`].
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct MetricsSnapshot {
    pub acquired: u64,
    pub released: u64,
    pub expired: u64,
    pub contested: u64,
    pub renewed: u64,
    pub renewal_failures: u64,
    pub lost: u64,
    pub timeouts: u64,
    pub held: u64,
    pub acquisition_ms: Percentiles,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl LeaseMetrics {
    /// Latest acquisition latencies kept for the percentiles.
    const WINDOW: usize = 4096;

    pub fn new() -> prometheus::Result<Self> {
        let counter =
            |name: &str, help: &str| IntCounter::new(format!("ridelock_lease_{name}_total"), help);
        Ok(Self {
            acquired: counter("acquired", "Leases acquired.")?,
            released: counter("released", "Leases given back and deleted.")?,
            expired: counter("expired", "Leases whose local deadline passed unconfirmed.")?,
            contested: counter(
                "contested",
                "Acquisitions refused: another holder had the lease.",
            )?,
            renewed: counter("renewed", "Lease renewals confirmed.")?,
            renewal_failures: counter("renewal_failures", "Lease renewals refused or unanswered.")?,
            lost: counter("lost", "Leases lost while held; their actors were stopped.")?,
            timeouts: counter("timeouts", "Acquisitions the lease store did not answer.")?,
            acquisition: Histogram::with_opts(
                HistogramOpts::new(
                    "ridelock_lease_acquisition_seconds",
                    "Time from asking the lease store for a lease to its grant.",
                )
                .buckets(ACQUISITION_BUCKETS.to_vec()),
            )?,
            acquisition_us: Mutex::new(VecDeque::new()),
            held: IntGauge::new("ridelock_leases_held", "Leases this node holds now.")?,
        })
    }

    /// Every metric, for a registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        let mut all: Vec<Box<dyn Collector>> = [
            &self.acquired,
            &self.released,
            &self.expired,
            &self.contested,
            &self.renewed,
            &self.renewal_failures,
            &self.lost,
            &self.timeouts,
        ]
        .into_iter()
        .map(|c| Box::new(c.clone()) as Box<dyn Collector>)
        .collect();
        all.push(Box::new(self.acquisition.clone()));
        all.push(Box::new(self.held.clone()));
        all
    }

    pub(super) fn record_acquisition(&self, took: Duration) {
        self.acquisition.observe(took.as_secs_f64());
        let mut samples = self
            .acquisition_us
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if samples.len() == Self::WINDOW {
            samples.pop_front();
        }
        samples.push_back(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut samples: Vec<u64> = self
            .acquisition_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let load = |c: &IntCounter| c.get();
        MetricsSnapshot {
            acquired: load(&self.acquired),
            released: load(&self.released),
            expired: load(&self.expired),
            contested: load(&self.contested),
            renewed: load(&self.renewed),
            renewal_failures: load(&self.renewal_failures),
            lost: load(&self.lost),
            timeouts: load(&self.timeouts),
            held: u64::try_from(self.held.get()).unwrap_or(0),
            acquisition_ms: Percentiles {
                p50: at(0.5),
                p99: at(0.99),
                max: at(1.0),
            },
        }
    }
}

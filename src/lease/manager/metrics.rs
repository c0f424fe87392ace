//! The manager's counters and acquisition latencies, as the stats endpoint reads them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Lease counters and acquisition latencies, shared with the stats endpoint.
#[derive(Default)]
pub(crate) struct LeaseMetrics {
    pub acquired: AtomicU64,
    pub released: AtomicU64,
    pub expired: AtomicU64,
    pub contested: AtomicU64,
    pub renewed: AtomicU64,
    pub renewal_failures: AtomicU64,
    pub lost: AtomicU64,
    pub timeouts: AtomicU64,
    acquisition_us: Mutex<VecDeque<u64>>,
    /// Leases held now; set by the manager (`publish_held`).
    pub(super) held: AtomicU64,
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

    pub(super) fn record_acquisition(&self, took: Duration) {
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
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            acquired: load(&self.acquired),
            released: load(&self.released),
            expired: load(&self.expired),
            contested: load(&self.contested),
            renewed: load(&self.renewed),
            renewal_failures: load(&self.renewal_failures),
            lost: load(&self.lost),
            timeouts: load(&self.timeouts),
            held: load(&self.held),
            acquisition_ms: Percentiles {
                p50: at(0.5),
                p99: at(0.99),
                max: at(1.0),
            },
        }
    }
}

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

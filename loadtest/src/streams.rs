//! Event streams under load (`--streams N`): N user streams held open on the servers while the
//! scenario runs; the first ones are the lifecycle riders' own (they receive every step of their
//! rides), the rest belong to users with no rides (open, idle). For every event received: how
//! long after its transaction began (`created_at`, a bound on the time since its commit) it
//! arrived, split by whether the node that wrote it is the node the stream is connected to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

/// Where and how to open the streams.
#[derive(Debug, Clone)]
pub struct StreamSetup {
    pub count: usize,
    pub urls: Vec<String>,
    pub token: Option<String>,
}

/// Ids of users no ride names: their streams stay idle.
const IDLE_USERS_FROM: i64 = 900_000_000_000;

/// What the streams received.
#[derive(Debug, Serialize)]
pub struct StreamsReport {
    pub open: u64,
    pub refused: u64,
    pub events: u64,
    /// Events written by the node the stream is connected to.
    pub same_node: Delays,
    /// Events written by another node (announced through PostgreSQL).
    pub other_node: Delays,
}

/// Arrival delays, ms, from the event's `created_at`.
#[derive(Debug, Serialize)]
pub struct Delays {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The open streams.
pub struct Streams {
    readers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

struct Shared {
    same: Mutex<Histogram<u64>>,
    other: Mutex<Histogram<u64>>,
    open: AtomicU64,
    refused: AtomicU64,
    events: AtomicU64,
}

impl Streams {
    /// Opens `count` streams spread over `urls`: those of `riders` first, then idle ones; returns
    /// once each is open or refused.
    pub async fn open(
        urls: &[String],
        token: Option<&str>,
        riders: &[i64],
        count: usize,
    ) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
        }
        // No overall timeout: a stream lasts the run.
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            let health: Value = http
                .get(format!("{url}/api/health"))
                .timeout(Duration::from_secs(10))
                .send()
                .await?
                .json()
                .await?;
            nodes.push(health["node_id"].as_str().unwrap_or_default().to_owned());
        }
        let histogram =
            || -> anyhow::Result<Mutex<Histogram<u64>>> { Ok(Mutex::new(Histogram::new(3)?)) };
        let shared = Arc::new(Shared {
            same: histogram()?,
            other: histogram()?,
            open: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            events: AtomicU64::new(0),
        });
        let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<()>(count.max(1));
        let mut readers = Vec::with_capacity(count);
        for i in 0..count {
            let user = riders.get(i).copied().unwrap_or(IDLE_USERS_FROM + i as i64);
            let at = i % urls.len();
            let url = format!("{}/api/users/{user}/stream", urls[at]);
            let (http, shared, node, opened) = (
                http.clone(),
                shared.clone(),
                nodes[at].clone(),
                opened_tx.clone(),
            );
            readers.push(tokio::spawn(async move {
                read(http, url, node, shared, opened).await;
            }));
        }
        drop(opened_tx);
        let mut settled = 0;
        while settled < count && opened_rx.recv().await.is_some() {
            settled += 1;
        }
        Ok(Self { readers, shared })
    }

    /// Closes the streams and reports what they received.
    pub fn finish(self) -> StreamsReport {
        for reader in &self.readers {
            reader.abort();
        }
        let delays = |h: &Mutex<Histogram<u64>>| {
            let h = h.lock().unwrap_or_else(|p| p.into_inner());
            Delays {
                count: h.len(),
                p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
                max_ms: h.max() as f64 / 1000.0,
            }
        };
        StreamsReport {
            open: self.shared.open.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            events: self.shared.events.load(Ordering::Relaxed),
            same_node: delays(&self.shared.same),
            other_node: delays(&self.shared.other),
        }
    }
}

/// One stream: opens it, says so, then records each event's delay until aborted.
async fn read(
    http: reqwest::Client,
    url: String,
    node: String,
    shared: Arc<Shared>,
    opened: tokio::sync::mpsc::Sender<()>,
) {
    let response = http
        .get(&url)
        .header("Accept", "text/event-stream")
        .send()
        .await;
    let mut response = match response {
        Ok(response) if response.status().is_success() => {
            shared.open.fetch_add(1, Ordering::Relaxed);
            let _ = opened.send(()).await;
            response
        }
        _ => {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            let _ = opened.send(()).await;
            return;
        }
    };
    drop(opened);
    let mut pending = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            for data in block.lines().filter_map(|l| l.strip_prefix("data: ")) {
                record(&shared, &node, data);
            }
        }
    }
}

fn record(shared: &Shared, node: &str, data: &str) {
    let Ok(event) = serde_json::from_str::<Value>(data) else {
        return;
    };
    let Some(written) = event["created_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return;
    };
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let delay_us = (now_us - written.timestamp_micros()).max(0) as u64;
    shared.events.fetch_add(1, Ordering::Relaxed);
    let histogram = if event["node_id"] == node {
        &shared.same
    } else {
        &shared.other
    };
    let _ = histogram
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record(delay_us);
}

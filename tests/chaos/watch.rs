//! The driver watch that runs through every scenario.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::support::audit;

/// Every 100 ms, from the audit trail: has any driver been in two bookings at once, or is any
/// driver row out of step with its booking? A poll that fails (no connection, a query error, no
/// answer in 2 s) fails the scenario, unless PostgreSQL was stopped on purpose at the time
/// ([`DriverWatch::postgres_stopped`]): a broken query must not pass as an outage.
pub struct DriverWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Polls>,
    /// When the scenario had PostgreSQL stopped: from just before the stop until it was back.
    outages: Mutex<Vec<(Instant, Instant)>>,
}

#[derive(Default)]
struct Polls {
    count: u64,
    /// Failed polls: when each started and ended, and why.
    failed: Vec<(Instant, Instant, String)>,
    broken: Vec<String>,
}

const POLL_TIMEOUT: Duration = Duration::from_secs(2);

impl DriverWatch {
    pub fn start(db_url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut polls = Polls::default();
            let mut conn: Option<AsyncPgConnection> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                polls.count += 1;
                let started = Instant::now();
                let poll = tokio::time::timeout(POLL_TIMEOUT, async {
                    if conn.is_none() {
                        let c = AsyncPgConnection::establish(&db_url).await;
                        conn = Some(c.map_err(|e| format!("connect: {e}"))?);
                    }
                    let c = conn.as_mut().expect("connected above");
                    let overlaps = audit::overlapping_assignments(c).await;
                    let overlaps = overlaps.map_err(|e| format!("overlaps query: {e}"))?;
                    let out_of_step = audit::drivers_out_of_step(c).await;
                    let out_of_step = out_of_step.map_err(|e| format!("drivers query: {e}"))?;
                    Ok::<_, String>((overlaps, out_of_step))
                })
                .await
                .unwrap_or_else(|_| Err(format!("no answer in {POLL_TIMEOUT:?}")));
                match poll {
                    Ok((overlaps, out_of_step)) => {
                        polls
                            .broken
                            .extend(overlaps.iter().map(|o| format!("{o:?}")));
                        polls
                            .broken
                            .extend(out_of_step.iter().map(|o| format!("{o:?}")));
                    }
                    Err(why) => {
                        polls.failed.push((started, Instant::now(), why));
                        conn = None;
                    }
                }
            }
            polls
        });
        Self {
            stop,
            task,
            outages: Mutex::new(Vec::new()),
        }
    }

    /// PostgreSQL was stopped on purpose from `from` until `until`: polls failing then are
    /// expected.
    pub fn postgres_stopped(&self, from: Instant, until: Instant) {
        self.outages.lock().unwrap().push((from, until));
    }

    /// Stops polling; `(polls, polls that failed while PostgreSQL was stopped)`. Panics on any
    /// violation, and on any poll that failed while PostgreSQL was meant to be up.
    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let polls = self.task.await.unwrap();
        assert!(
            polls.broken.is_empty(),
            "driver invariant broken: {:?}",
            polls.broken
        );
        let outages = self.outages.into_inner().unwrap();
        let (expected, unexpected): (Vec<_>, Vec<_>) =
            polls.failed.iter().partition(|(started, ended, _)| {
                outages
                    .iter()
                    .any(|(from, until)| ended >= from && started <= until)
            });
        let unexpected: Vec<&String> = unexpected.iter().map(|(_, _, why)| why).collect();
        assert!(
            unexpected.is_empty(),
            "driver watch polls failed while PostgreSQL was up: {unexpected:#?}"
        );
        (polls.count, expected.len() as u64)
    }
}

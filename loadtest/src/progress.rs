//! The live progress display on stderr: elapsed time (a bar when the run's length is known),
//! requests, current throughput, errors and lifecycles. Redrawn in place on a terminal; a plain
//! line every few seconds otherwise, so logs of a long run still show its pace.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::client::LoadClient;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Off,
    /// Redrawn every second on one line (stderr is a terminal).
    Bar,
    /// A new line every five seconds (stderr is a file or a pipe).
    Lines,
}

/// How far a run is, when its end is known in advance.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    Unknown,
    Duration(Duration),
    Lifecycles(u64),
}

const BAR_WIDTH: usize = 24;

/// One progress line from the totals now and one second ago.
fn line(
    elapsed: Duration,
    goal: Goal,
    requests: u64,
    per_s: u64,
    errors: u64,
    lifecycles: u64,
) -> String {
    let fraction = match goal {
        Goal::Unknown => None,
        Goal::Duration(total) => Some(elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9)),
        Goal::Lifecycles(total) => Some(lifecycles as f64 / (total.max(1)) as f64),
    };
    let bar = match fraction {
        Some(f) => {
            let filled = ((f.clamp(0.0, 1.0) * BAR_WIDTH as f64).round()) as usize;
            format!(
                "[{}{}] {:>3.0}% ",
                "#".repeat(filled),
                ".".repeat(BAR_WIDTH - filled),
                f.clamp(0.0, 1.0) * 100.0
            )
        }
        None => String::new(),
    };
    let mut out = format!(
        "{bar}{:>6.1} s  {requests} req  {per_s} req/s  {errors} errors",
        elapsed.as_secs_f64()
    );
    if lifecycles > 0 {
        out.push_str(&format!("  {lifecycles} lifecycles"));
    }
    out
}

/// Shows progress until the returned handle is aborted (or dropped with the runtime).
pub fn spawn(client: Arc<LoadClient>, mode: Progress, goal: Goal) -> Option<ProgressTask> {
    if mode == Progress::Off {
        return None;
    }
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = 0_u64;
        let mut ticks = 0_u64;
        loop {
            tick.tick().await;
            ticks += 1;
            let c = &client.counters;
            let requests = c.requests.load(Ordering::Relaxed);
            let text = line(
                client.elapsed(),
                goal,
                requests,
                requests.saturating_sub(last),
                c.errors.load(Ordering::Relaxed),
                c.lifecycles.load(Ordering::Relaxed),
            );
            last = requests;
            let mut err = std::io::stderr().lock();
            let _ = match mode {
                Progress::Bar => write!(err, "\r\x1b[2K{text}"),
                Progress::Lines if ticks % 5 == 0 => writeln!(err, "{text}"),
                _ => Ok(()),
            };
            let _ = err.flush();
        }
    });
    Some(ProgressTask { task, mode })
}

/// The running display; [`ProgressTask::finish`] clears the bar before the report is printed.
pub struct ProgressTask {
    task: tokio::task::JoinHandle<()>,
    mode: Progress,
}

impl ProgressTask {
    pub fn finish(self) {
        self.task.abort();
        if self.mode == Progress::Bar {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_goal_draws_a_bar_and_an_unknown_one_does_not() {
        let half = line(
            Duration::from_secs(5),
            Goal::Duration(Duration::from_secs(10)),
            1000,
            200,
            3,
            40,
        );
        assert!(
            half.starts_with("[############............]  50% "),
            "{half}"
        );
        assert!(
            half.contains("1000 req  200 req/s  3 errors  40 lifecycles"),
            "{half}"
        );

        let open = line(Duration::from_secs(2), Goal::Unknown, 10, 5, 0, 0);
        assert_eq!(open, "   2.0 s  10 req  5 req/s  0 errors");

        let over = line(Duration::ZERO, Goal::Lifecycles(10), 80, 80, 0, 25);
        assert!(
            over.starts_with(&format!("[{}] 100% ", "#".repeat(BAR_WIDTH))),
            "{over}"
        );
    }
}

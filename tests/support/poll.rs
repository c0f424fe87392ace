//! Waiting for something to happen: one poll loop, with a deadline, for every suite.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at again.
pub const EVERY: Duration = Duration::from_millis(20);

/// Calls `probe` every [`EVERY`] until `done` holds for what it returned, or `within` has passed
/// (it is called at least once): `Ok` with the value that satisfied `done`, or `Err` with the last
/// value seen, for the failure message.
pub async fn until<T, F, Fut>(
    within: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> Result<T, T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = probe().await;
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(value);
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// [`until`] for a yes-or-no `check`: whether it held within `within`.
pub async fn eventually<F, Fut>(within: Duration, check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until(within, check, |held| *held).await.is_ok()
}

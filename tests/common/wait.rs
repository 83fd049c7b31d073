//! Waiting until something is true, one way for every test: ask, and ask again after an interval, until the answer
//! is ready or a timeout has passed since the first ask.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often `eventually` asks.
pub const EVERY: Duration = Duration::from_millis(100);

/// A probe's answer: `Some(value)` or `Ok(value)` ends the wait with `value`; `None` or `Err(what it saw)` means
/// "not yet" (and what it saw goes into the failure message).
pub trait Probe {
    type Ready;

    fn ready(self) -> Result<Self::Ready, Option<String>>;
}

impl<T> Probe for Option<T> {
    type Ready = T;

    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Probe for Result<T, E> {
    type Ready = T;

    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Asks `probe` every 100 ms until it is ready, and returns its value; fails the test after `timeout`.
pub async fn eventually<P: Probe, F: Future<Output = P>>(
    what: &str,
    timeout: Duration,
    probe: impl FnMut() -> F,
) -> P::Ready {
    eventually_every(what, timeout, EVERY, probe).await
}

/// Like `eventually`, asking every `interval`.
pub async fn eventually_every<P: Probe, F: Future<Output = P>>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    probe: impl FnMut() -> F,
) -> P::Ready {
    match poll(timeout, interval, probe).await {
        Ok(ready) => ready,
        Err(Some(seen)) => panic!("timed out waiting until {what}; last seen: {seen}"),
        Err(None) => panic!("timed out waiting until {what}"),
    }
}

/// Asks `probe`, then again every `interval`, until it is ready or `timeout` has passed since the first ask: its
/// value, or what it last saw. For the rare wait whose timeout is not a failure; the others use `eventually`.
pub async fn poll<P: Probe, F: Future<Output = P>>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> F,
) -> Result<P::Ready, Option<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match probe().await.ready() {
            Ok(ready) => return Ok(ready),
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(seen);
        }
        tokio::time::sleep(interval).await;
    }
}

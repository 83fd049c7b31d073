//! The load driver every measured phase shares: `concurrency` workers take tickets from one atomic counter until
//! the phase's limit, each sends its workload's request for the ticket on a connection of its own, and each keeps a
//! private tally (latency histogram, outcome counts, acknowledged orders, timeline) so the hot loop takes no lock;
//! tallies merge when all are done.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::{Counter, Histogram};
use hyper::StatusCode;
use indicatif::ProgressBar;
use serde::{Serialize, Serializer};

use super::audit::Accepted;
use super::connection::{Connection, Endpoint};
use super::timeline::{Class, Series, Timeline};

/// How many connections are opened at once before a phase starts.
const CONNECTING_PARALLELISM: usize = 32;

/// Latency resolution: values are kept to three significant digits.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The longest latency a histogram has room for from the start, in microseconds; longer ones still fit, by a
/// resize in the measured path.
const EXPECTED_MAX_LATENCY_US: u64 = 60_000_000;

/// The request a phase sends, once per ticket.
pub(super) trait Workload: Send + Sync + 'static {
    /// Where the requests go.
    fn endpoint(&self) -> &Endpoint;

    /// Sends the request for `ticket` (0, 1, 2, …) on `connection` and says how it went; failures are outcomes,
    /// not errors.
    fn send(&self, connection: &mut Connection, ticket: usize) -> impl Future<Output = Outcome> + Send;
}

/// How one request went: a label such as `202`, `409 SOLD_OUT` or `error: timeout`, its class, and the order it
/// won, if any.
pub(super) struct Outcome {
    pub label: String,
    pub class: Class,
    pub accepted: Option<Accepted>,
}

impl Outcome {
    /// An answer with `status` that won no order.
    pub fn answered(status: StatusCode, label: String) -> Self {
        Self { label, class: Class::of(status), accepted: None }
    }

    /// A request that got no answer.
    pub fn failed(label: String) -> Self {
        Self { label, class: Class::Failed, accepted: None }
    }
}

/// When a phase stops handing out tickets.
#[derive(Debug, Clone, Copy)]
pub(super) enum Until {
    /// After tickets `0..n`.
    Tickets(usize),
    /// Once this long has passed since the phase started; requests in flight then still finish.
    Elapsed(Duration),
}

/// A phase's figures, as reported.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PhaseStats {
    #[serde(rename = "duration_secs", serialize_with = "as_secs")]
    pub duration: Duration,
    pub requests: u64,
    pub throughput_rps: f64,
    pub latency_ms: LatencySummary,
    pub outcomes: BTreeMap<String, u64>,
    pub timeline: Series,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// What a finished phase measured, and every order it won.
pub(super) struct Phase {
    pub stats: PhaseStats,
    pub accepted: Vec<Accepted>,
}

/// Runs `workload` with `concurrency` workers until `until`, showing progress under `message`.
pub(super) async fn drive<W: Workload>(
    workload: W,
    concurrency: usize,
    until: Until,
    message: &'static str,
) -> Result<Phase> {
    // Connections are opened and tallies allocated before the clock starts, so the measured path neither connects
    // nor grows a histogram.
    let connections: Vec<Connection> = futures::stream::iter(0..concurrency)
        .map(|_| Connection::open(workload.endpoint()))
        .buffer_unordered(CONNECTING_PARALLELISM)
        .try_collect()
        .await?;
    let tallies = (0..concurrency).map(|_| Tally::new()).collect::<Result<Vec<_>>>()?;
    let progress = super::progress_bar(until.tickets(), message)?;
    let workload = Arc::new(workload);
    let tickets = Arc::new(Tickets::new(until));
    let workers: Vec<_> = connections
        .into_iter()
        .zip(tallies)
        .map(|(connection, tally)| {
            let worker = Worker { workload: Arc::clone(&workload), connection, tickets: Arc::clone(&tickets) };
            tokio::spawn(worker.run(progress.clone(), tally))
        })
        .collect();
    let finished = futures::future::join_all(workers).await;
    let elapsed = tickets.started.elapsed();
    progress.finish_and_clear();
    let mut total = Tally::new()?;
    for tally in finished {
        total.merge(tally.context("a load worker panicked")??)?;
    }
    total.into_phase(elapsed)
}

/// Latency percentiles of a histogram of microseconds; all zero if it is empty.
pub(super) fn summarize<T: Counter>(latency_us: &Histogram<T>) -> LatencySummary {
    let ms = |micros: u64| micros as f64 / 1000.0;
    let at = |quantile: f64| ms(latency_us.value_at_quantile(quantile));
    LatencySummary { p50: at(0.50), p90: at(0.90), p99: at(0.99), p99_9: at(0.999), max: ms(latency_us.max()) }
}

impl Until {
    fn tickets(self) -> Option<usize> {
        match self {
            Until::Tickets(count) => Some(count),
            Until::Elapsed(_) => None,
        }
    }
}

/// The shared ticket counter.
struct Tickets {
    next: AtomicUsize,
    until: Until,
    started: Instant,
}

impl Tickets {
    fn new(until: Until) -> Self {
        Self { next: AtomicUsize::new(0), until, started: Instant::now() }
    }

    fn take(&self) -> Option<usize> {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let open = match self.until {
            Until::Tickets(count) => ticket < count,
            Until::Elapsed(duration) => self.started.elapsed() < duration,
        };
        open.then_some(ticket)
    }
}

/// One worker: its connection, and where it takes its tickets.
struct Worker<W> {
    workload: Arc<W>,
    connection: Connection,
    tickets: Arc<Tickets>,
}

impl<W: Workload> Worker<W> {
    /// Takes tickets until there are none left, timing each request from send to the end of its body.
    async fn run(mut self, progress: ProgressBar, mut tally: Tally) -> Result<Tally> {
        while let Some(ticket) = self.tickets.take() {
            let sent = Instant::now();
            let outcome = self.workload.send(&mut self.connection, ticket).await;
            let answered = Instant::now();
            tally.record(answered - self.tickets.started, answered - sent, outcome)?;
            progress.inc(1);
        }
        Ok(tally)
    }
}

/// What one worker (or, merged, a whole phase) saw.
struct Tally {
    latency_us: Histogram<u64>,
    outcomes: HashMap<String, u64>,
    accepted: Vec<Accepted>,
    timeline: Timeline,
}

impl Tally {
    fn new() -> Result<Self> {
        let mut latency_us = Histogram::new_with_bounds(1, EXPECTED_MAX_LATENCY_US, SIGNIFICANT_DIGITS)
            .context("creating a latency histogram")?;
        latency_us.auto(true);
        Ok(Self { latency_us, outcomes: HashMap::new(), accepted: Vec::new(), timeline: Timeline::new()? })
    }

    /// Counts a request answered `at` after the phase started, which took `latency`.
    fn record(&mut self, at: Duration, latency: Duration, outcome: Outcome) -> Result<()> {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.record(micros).context("recording a latency")?;
        self.timeline.record(at, latency, outcome.class)?;
        *self.outcomes.entry(outcome.label).or_default() += 1;
        self.accepted.extend(outcome.accepted);
        Ok(())
    }

    fn merge(&mut self, other: Tally) -> Result<()> {
        self.latency_us.add(&other.latency_us).context("merging latency histograms")?;
        self.timeline.merge(other.timeline)?;
        for (label, count) in other.outcomes {
            *self.outcomes.entry(label).or_default() += count;
        }
        self.accepted.extend(other.accepted);
        Ok(())
    }

    fn into_phase(self, duration: Duration) -> Result<Phase> {
        let requests = self.latency_us.len();
        let seconds = duration.as_secs_f64();
        let stats = PhaseStats {
            duration,
            requests,
            throughput_rps: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
            latency_ms: summarize(&self.latency_us),
            outcomes: self.outcomes.into_iter().collect(),
            timeline: self.timeline.into_series(duration)?,
        };
        Ok(Phase { stats, accepted: self.accepted })
    }
}

fn as_secs<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_in_milliseconds() -> Result<()> {
        let mut latency_us = Histogram::<u64>::new(SIGNIFICANT_DIGITS)?;
        for millis in 1..=1000 {
            latency_us.record(millis * 1000)?;
        }
        let summary = summarize(&latency_us);
        let close = |actual: f64, expected: f64| (actual - expected).abs() <= expected * 0.001;
        assert!(close(summary.p50, 500.0), "p50 {}", summary.p50);
        assert!(close(summary.p90, 900.0), "p90 {}", summary.p90);
        assert!(close(summary.p99, 990.0), "p99 {}", summary.p99);
        assert!(close(summary.p99_9, 999.0), "p99.9 {}", summary.p99_9);
        assert!(close(summary.max, 1000.0), "max {}", summary.max);
        Ok(())
    }

    #[test]
    fn an_empty_summary_is_all_zero() -> Result<()> {
        let summary = summarize(&Histogram::<u64>::new(SIGNIFICANT_DIGITS)?);
        assert_eq!(summary, LatencySummary { p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, max: 0.0 });
        Ok(())
    }

    #[test]
    fn merged_tallies_add_up() -> Result<()> {
        let sold_out = || Outcome::answered(StatusCode::CONFLICT, "409 SOLD_OUT".into());
        let (early, late) = (Duration::from_millis(10), Duration::from_millis(1900));
        let mut first = Tally::new()?;
        first.record(early, Duration::from_millis(2), sold_out())?;
        let mut second = Tally::new()?;
        let order = Accepted { order_id: "o".into(), user_id: 7 };
        let reserved = Outcome { label: "202".into(), class: Class::Succeeded, accepted: Some(order.clone()) };
        second.record(early, Duration::from_millis(4), reserved)?;
        second.record(late, Duration::from_millis(6), sold_out())?;
        first.merge(second)?;
        let phase = first.into_phase(Duration::from_secs(2))?;
        assert_eq!(phase.stats.requests, 3);
        assert_eq!(phase.stats.throughput_rps, 1.5);
        assert_eq!(phase.stats.outcomes, BTreeMap::from([("202".to_owned(), 1), ("409 SOLD_OUT".to_owned(), 2)]));
        assert_eq!(phase.accepted, [order]);
        let points = &phase.stats.timeline.points;
        let (first_interval, last_interval) = (&points[0], &points[points.len() - 1]);
        assert_eq!((first_interval.succeeded, first_interval.refused), (1, 1));
        assert_eq!((last_interval.succeeded, last_interval.refused), (0, 1));
        Ok(())
    }

    #[test]
    fn ticket_limits_stop_the_counter() {
        let tickets = Tickets::new(Until::Tickets(2));
        assert_eq!((tickets.take(), tickets.take(), tickets.take()), (Some(0), Some(1), None));
        assert_eq!(Tickets::new(Until::Elapsed(Duration::ZERO)).take(), None);
    }
}

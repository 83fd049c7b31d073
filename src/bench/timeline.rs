//! A phase over time: requests, the kind of answer they got and their latency, interval by interval, for the
//! report's charts.
//!
//! It is recorded the way the rest of a phase is, so as not to distort it: each worker fills a timeline of its own
//! (no lock, no shared counter) and the timelines merge once the phase is over. A request counts in the interval in
//! which its answer arrived. How long a phase will last is not known when it starts (a purchase phase ends when the
//! buyers run out), so intervals start at `BASE_INTERVAL` and double whenever a worker would need more than
//! `MAX_INTERVALS` of them, pairs merging into one; every worker doubles at the same instants of the phase, so
//! their intervals line up when merged. The memory is bounded whatever the length of the run, and the measured path
//! allocates only when it enters a new interval (one small histogram), never per request. Latency within an
//! interval is kept to about 6% (one significant digit of HdrHistogram: 16 sub-buckets per power of two), enough
//! for a chart; the phase's summary keeps its own exact histogram.

use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use hyper::StatusCode;
use serde::Serialize;

use super::load::{summarize, LatencySummary};

/// The finest interval: 20 points a second, for a short run.
const BASE_INTERVAL: Duration = Duration::from_millis(50);
/// Most intervals a timeline keeps; past this, they double in length. Between half and all of it are drawn.
const MAX_INTERVALS: usize = 64;
/// Latencies above this many microseconds are counted at it (requests time out well before).
const HIGHEST_LATENCY_US: u64 = 60_000_000;
/// One significant digit: a bucket is at most 1/16 of its value wide.
const SIGNIFICANT_DIGITS: u8 = 1;

/// The kind of answer a request got, which the throughput chart stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// A 2xx: a purchase reserved, a healthz answered.
    Succeeded,
    /// A 4xx: the service said no (sold out, over the limit, …), as it should to most of a crowd.
    Refused,
    /// Anything else: a 5xx, or no answer at all (timeout, connection lost).
    Failed,
}

impl Class {
    pub fn of(status: StatusCode) -> Self {
        if status.is_success() {
            Class::Succeeded
        } else if status.is_client_error() {
            Class::Refused
        } else {
            Class::Failed
        }
    }
}

/// One worker's (or, merged, a phase's) requests, interval by interval.
pub(super) struct Timeline {
    /// Intervals are `BASE_INTERVAL << shift` long.
    shift: u32,
    intervals: Vec<Interval>,
    /// An empty histogram to clone for each new interval, so that entering one cannot fail.
    empty: Histogram<u32>,
}

#[derive(Clone)]
struct Interval {
    latency_us: Histogram<u32>,
    succeeded: u64,
    refused: u64,
    failed: u64,
}

impl Timeline {
    pub fn new() -> Result<Self> {
        let empty = Histogram::new_with_bounds(1, HIGHEST_LATENCY_US, SIGNIFICANT_DIGITS)
            .context("creating an interval's latency histogram")?;
        Ok(Self { shift: 0, intervals: Vec::with_capacity(MAX_INTERVALS), empty })
    }

    /// Counts a request answered `at` after the phase started, which took `latency`.
    pub fn record(&mut self, at: Duration, latency: Duration, class: Class) -> Result<()> {
        let mut index = self.index(at);
        while index >= MAX_INTERVALS {
            self.coarsen()?;
            index = self.index(at);
        }
        if index >= self.intervals.len() {
            let empty = Interval { latency_us: self.empty.clone(), succeeded: 0, refused: 0, failed: 0 };
            self.intervals.resize(index + 1, empty);
        }
        let interval = &mut self.intervals[index];
        interval.latency_us.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        match class {
            Class::Succeeded => interval.succeeded += 1,
            Class::Refused => interval.refused += 1,
            Class::Failed => interval.failed += 1,
        }
        Ok(())
    }

    /// Adds `other`'s requests, at the coarser of the two interval lengths.
    pub fn merge(&mut self, mut other: Timeline) -> Result<()> {
        while self.shift < other.shift {
            self.coarsen()?;
        }
        while other.shift < self.shift {
            other.coarsen()?;
        }
        for (index, interval) in other.intervals.into_iter().enumerate() {
            match self.intervals.get_mut(index) {
                Some(mine) => mine.absorb(&interval)?,
                None => self.intervals.push(interval),
            }
        }
        Ok(())
    }

    /// The intervals as reported, for a phase that lasted `duration`. The last one ends with the phase: if that
    /// leaves less than half of it, it joins the one before, so that no point is drawn from a few milliseconds.
    pub fn into_series(mut self, duration: Duration) -> Result<Series> {
        let width = self.width();
        let start_of = |index: usize| width * u32::try_from(index).unwrap_or(u32::MAX);
        if self.intervals.len() >= 2 && duration.saturating_sub(start_of(self.intervals.len() - 1)) < width / 2 {
            if let Some(sliver) = self.intervals.pop() {
                let last = self.intervals.len() - 1;
                self.intervals[last].absorb(&sliver)?;
            }
        }
        let last = self.intervals.len().saturating_sub(1);
        let points = self
            .intervals
            .iter()
            .enumerate()
            .map(|(index, interval)| {
                let start = start_of(index);
                let end = if index == last { duration } else { (start + width).min(duration) };
                let covered = end.saturating_sub(start);
                let requests = interval.latency_us.len();
                Point {
                    start_secs: start.as_secs_f64(),
                    secs: covered.as_secs_f64(),
                    requests,
                    throughput_rps: if covered.is_zero() { 0.0 } else { requests as f64 / covered.as_secs_f64() },
                    succeeded: interval.succeeded,
                    refused: interval.refused,
                    failed: interval.failed,
                    latency_ms: (requests > 0).then(|| summarize(&interval.latency_us)),
                }
            })
            .collect();
        Ok(Series { interval_secs: width.as_secs_f64(), duration_secs: duration.as_secs_f64(), points })
    }

    fn width(&self) -> Duration {
        BASE_INTERVAL * (1 << self.shift)
    }

    fn index(&self, at: Duration) -> usize {
        usize::try_from(at.as_nanos() / self.width().as_nanos()).unwrap_or(usize::MAX)
    }

    /// Doubles the intervals' length, merging each pair into one.
    fn coarsen(&mut self) -> Result<()> {
        let mut pairs = std::mem::replace(&mut self.intervals, Vec::with_capacity(MAX_INTERVALS)).into_iter();
        while let Some(mut first) = pairs.next() {
            if let Some(second) = pairs.next() {
                first.absorb(&second)?;
            }
            self.intervals.push(first);
        }
        self.shift += 1;
        Ok(())
    }
}

impl Interval {
    fn absorb(&mut self, other: &Interval) -> Result<()> {
        self.latency_us.add(&other.latency_us).context("merging interval histograms")?;
        self.succeeded += other.succeeded;
        self.refused += other.refused;
        self.failed += other.failed;
        Ok(())
    }
}

/// A phase over time, as reported.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Series {
    /// The length of every interval but perhaps the last.
    pub interval_secs: f64,
    /// How long the phase lasted.
    pub duration_secs: f64,
    pub points: Vec<Point>,
}

/// One interval of a phase.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Point {
    /// From the start of the phase.
    pub start_secs: f64,
    /// How much of the interval the phase lasted.
    pub secs: f64,
    /// Requests whose answer (or failure) arrived in the interval.
    pub requests: u64,
    pub throughput_rps: f64,
    pub succeeded: u64,
    pub refused: u64,
    pub failed: u64,
    /// Absent when no request ended in the interval.
    pub latency_ms: Option<LatencySummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn statuses_fall_into_their_classes() {
        assert_eq!(Class::of(StatusCode::ACCEPTED), Class::Succeeded);
        assert_eq!(Class::of(StatusCode::CONFLICT), Class::Refused);
        assert_eq!(Class::of(StatusCode::SERVICE_UNAVAILABLE), Class::Failed);
        assert_eq!(Class::of(StatusCode::FOUND), Class::Failed);
    }

    #[test]
    fn requests_land_in_the_interval_of_their_answer() -> Result<()> {
        let mut timeline = Timeline::new()?;
        timeline.record(ms(10), ms(2), Class::Succeeded)?;
        timeline.record(ms(49), ms(4), Class::Refused)?;
        timeline.record(ms(120), ms(8), Class::Failed)?;
        let series = timeline.into_series(ms(125))?;
        assert_eq!(series.interval_secs, 0.05);
        let counts: Vec<_> =
            series.points.iter().map(|point| (point.requests, point.succeeded, point.refused, point.failed)).collect();
        assert_eq!(counts, [(2, 1, 1, 0), (0, 0, 0, 0), (1, 0, 0, 1)]);
        assert!(series.points[1].latency_ms.is_none(), "an empty interval has no latency");
        assert_eq!(series.points[0].throughput_rps, 40.0);
        // The last interval is 25 ms of the phase: one request in it is 40 a second, not 20.
        assert_eq!((series.points[2].start_secs, series.points[2].secs), (0.1, 0.025));
        assert_eq!(series.points[2].throughput_rps, 40.0);
        Ok(())
    }

    #[test]
    fn a_last_sliver_of_an_interval_joins_the_one_before() -> Result<()> {
        let mut timeline = Timeline::new()?;
        timeline.record(ms(10), ms(1), Class::Succeeded)?;
        timeline.record(ms(60), ms(1), Class::Succeeded)?;
        timeline.record(ms(101), ms(1), Class::Refused)?;
        let series = timeline.into_series(ms(105))?;
        let spans: Vec<_> = series.points.iter().map(|point| (point.start_secs, point.secs, point.requests)).collect();
        assert_eq!(spans, [(0.0, 0.05, 1), (0.05, 0.055, 2)]);
        Ok(())
    }

    #[test]
    fn interval_latencies_are_kept_to_about_six_percent() -> Result<()> {
        let mut timeline = Timeline::new()?;
        for millis in 1..=100 {
            timeline.record(ms(1), ms(millis), Class::Succeeded)?;
        }
        let latency = timeline.into_series(ms(50))?.points[0].latency_ms.expect("a latency");
        for (actual, expected) in [(latency.p50, 50.0), (latency.p90, 90.0), (latency.p99, 99.0), (latency.max, 100.0)]
        {
            assert!((actual - expected).abs() <= expected * 0.0625, "{actual} for {expected}");
        }
        Ok(())
    }

    #[test]
    fn a_long_phase_doubles_its_intervals_and_loses_no_request() -> Result<()> {
        let mut timeline = Timeline::new()?;
        let phase = BASE_INTERVAL * (MAX_INTERVALS as u32) * 3;
        let step = ms(10);
        let mut at = Duration::ZERO;
        let mut sent = 0;
        while at < phase {
            timeline.record(at, ms(1), Class::Succeeded)?;
            sent += 1;
            at += step;
        }
        let series = timeline.into_series(phase)?;
        assert_eq!(series.interval_secs, BASE_INTERVAL.as_secs_f64() * 4.0);
        assert!(series.points.len() <= MAX_INTERVALS && series.points.len() > MAX_INTERVALS / 2);
        assert_eq!(series.points.iter().map(|point| point.requests).sum::<u64>(), sent);
        assert!(series.points.iter().all(|point| point.requests == 20), "200 ms of one request per 10 ms each");
        Ok(())
    }

    #[test]
    fn timelines_of_different_lengths_merge_at_the_coarser_one() -> Result<()> {
        let mut short = Timeline::new()?;
        short.record(ms(10), ms(1), Class::Succeeded)?;
        short.record(ms(60), ms(3), Class::Refused)?;
        let mut long = Timeline::new()?;
        let late = BASE_INTERVAL * (MAX_INTERVALS as u32) + ms(10);
        long.record(ms(70), ms(2), Class::Failed)?;
        long.record(late, ms(2), Class::Succeeded)?;
        short.merge(long)?;
        let series = short.into_series(late + ms(90))?;
        assert_eq!(series.interval_secs, 0.1);
        let first = &series.points[0];
        assert_eq!((first.requests, first.succeeded, first.refused, first.failed), (3, 1, 1, 1));
        assert_eq!(series.points.iter().map(|point| point.requests).sum::<u64>(), 4);
        assert_eq!(series.points.len(), MAX_INTERVALS / 2 + 1);
        Ok(())
    }
}

//! When the OrderProjector runs. SQLite admits one writer, and every row the projector writes is CPU the purchase
//! path does not get, so while the journal is busy — a flash crowd — projection waits: buyers read their fresh
//! orders from the shards meanwhile, and the journal keeps everything durable. It runs once the journal has been
//! quiet for a moment, or when the backlog reaches a bound, so `orders` is never further behind than that.

use std::time::{Duration, Instant};

/// The projector's pacing decisions, apart from the actor so they can be tested without a runtime.
#[derive(Debug)]
pub struct Pacing {
    quiet: Duration,
    max_lag: u64,
    last_commit: Option<Instant>,
    /// Events committed and not yet projected, as far as this process has seen.
    unprojected: u64,
}

impl Pacing {
    pub fn new(quiet: Duration, max_lag: u64) -> Self {
        Self { quiet, max_lag: max_lag.max(1), last_commit: None, unprojected: 0 }
    }

    /// The journal writer committed `events` at `now`.
    pub fn committed(&mut self, events: u64, now: Instant) {
        self.last_commit = Some(now);
        self.unprojected = self.unprojected.saturating_add(events);
    }

    /// A projection step read `events` of the backlog; a step that found none has caught up, whatever was counted.
    pub fn projected(&mut self, events: u64) {
        self.unprojected = if events == 0 { 0 } else { self.unprojected.saturating_sub(events) };
    }

    /// Whether to project now: the journal has been quiet long enough, or the backlog reached its bound. With no
    /// commit seen yet (a fresh start), it is due, so a backlog left by an earlier process is projected at once.
    pub fn is_due(&self, now: Instant) -> bool {
        self.unprojected >= self.max_lag || self.quiet_for(now).is_none_or(|quiet| quiet >= self.quiet)
    }

    /// How long until the journal will have been quiet long enough, if no further commit comes.
    pub fn wait(&self, now: Instant) -> Duration {
        self.quiet_for(now).map_or(Duration::ZERO, |quiet| self.quiet.saturating_sub(quiet))
    }

    fn quiet_for(&self, now: Instant) -> Option<Duration> {
        self.last_commit.map(|last| now.saturating_duration_since(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(200);

    #[test]
    fn a_fresh_projector_is_due_at_once() {
        let pacing = Pacing::new(QUIET, 1_000);
        assert!(pacing.is_due(Instant::now()));
        assert_eq!(pacing.wait(Instant::now()), Duration::ZERO);
    }

    #[test]
    fn projection_waits_while_the_journal_is_busy_and_runs_once_it_is_quiet() {
        let start = Instant::now();
        let mut pacing = Pacing::new(QUIET, 1_000);
        for ms in 0..100 {
            pacing.committed(5, start + Duration::from_millis(ms));
            assert!(!pacing.is_due(start + Duration::from_millis(ms)), "deferred during the burst");
        }
        let last = start + Duration::from_millis(99);
        assert_eq!(pacing.wait(last + Duration::from_millis(50)), Duration::from_millis(150));
        assert!(!pacing.is_due(last + QUIET - Duration::from_millis(1)));
        assert!(pacing.is_due(last + QUIET));
    }

    #[test]
    fn a_backlog_at_its_bound_is_projected_even_while_the_journal_is_busy() {
        let now = Instant::now();
        let mut pacing = Pacing::new(QUIET, 1_000);
        pacing.committed(999, now);
        assert!(!pacing.is_due(now));
        pacing.committed(1, now);
        assert!(pacing.is_due(now), "the bound forces a run");
        pacing.projected(600);
        assert!(!pacing.is_due(now), "back under the bound, it waits for quiet again");
        pacing.projected(10_000);
        pacing.committed(999, now);
        assert!(!pacing.is_due(now), "a step that read more than was counted does not go negative");
        pacing.committed(5, now);
        pacing.projected(0);
        pacing.committed(995, now);
        assert!(!pacing.is_due(now), "a step that found nothing has caught up");
    }
}

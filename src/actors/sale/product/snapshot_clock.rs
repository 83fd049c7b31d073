//! When a product snapshots. A snapshot holds every reservation of the sale, so taking one costs as much as the
//! sale so far, and taken at the peak of a flash crowd that CPU (and, on SQLite, the one writer) comes out of the
//! buyers' share. So a snapshot that is due by units waits for the first pause in the product's sales — a whole
//! tick in which no unit changed hands — unless so many changed hands since the last one (`busy_max_units`) that
//! the replay after a crash would grow long. The time trigger, for sales that trickle, never waits.

use std::time::{Duration, Instant};

/// How often a product snapshots (see `[snapshots]` in `config/default.toml`).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    /// Units changed hands since the last snapshot that make the next one due at the first pause.
    pub every_units: u64,
    /// Age of the last snapshot that makes the next one due if anything changed at all.
    pub every: Duration,
    /// Units changed hands since the last snapshot that make the next one due even while sales go on.
    pub busy_max_units: u64,
}

/// The last snapshot, and what the product's ticks have seen since.
#[derive(Debug)]
pub struct SnapshotClock {
    at: Instant,
    /// Units taken when the last snapshot was.
    taken: u64,
    /// The journal position the last snapshot covers.
    position: i64,
    saving: bool,
    /// Units taken at the previous tick: unchanged since means the product's sales have paused.
    seen: u64,
}

impl SnapshotClock {
    /// The clock of a product recovered with `taken` units taken, up to `position`.
    pub fn new(taken: u64, position: i64, now: Instant) -> Self {
        Self { at: now, taken, position, saving: false, seen: taken }
    }

    /// The product's periodic tick, with `taken` units taken now: whether to take a snapshot.
    pub fn tick(&mut self, taken: u64, now: Instant, policy: &SnapshotPolicy) -> bool {
        let paused = taken == self.seen;
        self.seen = taken;
        let since = taken.abs_diff(self.taken);
        let by_units = since >= policy.every_units && (paused || since >= policy.busy_max_units);
        let by_time = since > 0 && self.age(now) >= policy.every;
        !self.saving && (by_units || by_time)
    }

    /// A snapshot is being saved, or one is due by units and waits for the first pause in sales: the product has
    /// not yet saved what changed hands, and will without being asked.
    pub fn pending(&self, taken: u64, policy: &SnapshotPolicy) -> bool {
        self.saving || taken.abs_diff(self.taken) >= policy.every_units
    }

    /// A snapshot is being saved; no other starts until it ends.
    pub fn saving(&mut self) {
        self.saving = true;
    }

    /// The snapshot being saved ended: saved with `taken` units up to `position`, or (`None`) not saved, in which
    /// case the next tick decides again as if it had never been tried.
    pub fn saved(&mut self, saved: Option<(u64, i64)>, now: Instant) {
        self.saving = false;
        if let Some((taken, position)) = saved {
            (self.at, self.taken, self.position) = (now, taken, position);
        }
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: SnapshotPolicy =
        SnapshotPolicy { every_units: 100, every: Duration::from_secs(60), busy_max_units: 1_000 };

    fn secs(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_snapshot_due_by_units_waits_for_the_first_pause_in_sales() {
        let start = Instant::now();
        let mut clock = SnapshotClock::new(0, 0, start);
        assert!(!clock.tick(400, secs(start, 1), &POLICY), "sales are under way");
        assert!(!clock.tick(800, secs(start, 2), &POLICY), "still under way");
        assert!(clock.tick(800, secs(start, 3), &POLICY), "a tick without sales: due");
    }

    #[test]
    fn a_snapshot_is_pending_from_the_units_that_make_it_due_until_it_is_saved() {
        let start = Instant::now();
        let mut clock = SnapshotClock::new(0, 0, start);
        assert!(!clock.pending(99, &POLICY), "fewer units than every_units wait for the time trigger, not a pause");
        assert!(clock.pending(100, &POLICY));
        assert!(!clock.tick(100, secs(start, 1), &POLICY), "still selling");
        assert!(clock.tick(100, secs(start, 2), &POLICY), "the pause");
        clock.saving();
        assert!(clock.pending(100, &POLICY));
        clock.saved(Some((100, 7)), secs(start, 3));
        assert!(!clock.pending(100, &POLICY));
    }

    #[test]
    fn sales_that_never_pause_still_snapshot_at_the_busy_bound() {
        let start = Instant::now();
        let mut clock = SnapshotClock::new(0, 0, start);
        assert!(!clock.tick(999, secs(start, 1), &POLICY));
        assert!(clock.tick(1_000, secs(start, 2), &POLICY), "the bound forces it while sales go on");
        clock.saving();
        assert!(!clock.tick(2_500, secs(start, 3), &POLICY), "one snapshot at a time");
        clock.saved(Some((1_000, 7)), secs(start, 3));
        assert_eq!(clock.position(), 7);
        assert!(clock.tick(2_500, secs(start, 4), &POLICY), "1,500 since the last one, and sales paused");
    }

    #[test]
    fn a_trickle_snapshots_by_time_even_without_a_pause() {
        let start = Instant::now();
        let mut clock = SnapshotClock::new(10, 3, start);
        for second in 1..60 {
            assert!(!clock.tick(10 + second, secs(start, second), &POLICY), "second {second}");
        }
        assert!(clock.tick(70, secs(start, 60), &POLICY), "a minute old and something changed");
    }

    #[test]
    fn nothing_changed_means_nothing_to_snapshot_however_old() {
        let start = Instant::now();
        let mut clock = SnapshotClock::new(10, 3, start);
        assert!(!clock.tick(10, secs(start, 3_600), &POLICY));
    }

    #[test]
    fn a_failed_save_is_tried_again_at_the_next_tick() {
        let start = Instant::now();
        let mut clock = SnapshotClock::new(0, 0, start);
        assert!(!clock.tick(100, secs(start, 1), &POLICY));
        assert!(clock.tick(100, secs(start, 2), &POLICY));
        clock.saving();
        clock.saved(None, secs(start, 2));
        assert_eq!(clock.position(), 0, "nothing was saved");
        assert!(clock.tick(100, secs(start, 3), &POLICY));
    }
}

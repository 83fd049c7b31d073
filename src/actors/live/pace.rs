//! When a product tells its subscribers of a new stock level. Every update is one write to every subscriber's
//! socket, and on a 2-core machine a thousand subscribers at ten updates a second cost the server more than a
//! tenth of the CPU that sells (perf: the send syscall is most of it, so no encoding trick saves it). So the feed
//! has a budget for the whole server, `messages_per_second`: the more people watch, the further apart the updates
//! of a product (never closer than `min_gap`).
//!
//! Each product spends its share from a bucket of two updates, refilled at one per gap. A sale in full swing
//! publishes when the bucket is full, so one update stays in hand; when the stock stops moving (a level that held
//! for a tick) that spare goes out at once, so the final stock of a sale reaches everyone within a few ticks of the
//! last purchase however crowded the feed, and a sale that sells by fits and starts still never exceeds the budget.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crate::domain::LiveStock;

/// Updates a product holds in hand: one for its cadence, one for the level a burst ends on.
const BUCKET: f64 = 2.0;

/// The feed's pace, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct StockPace {
    /// Shortest time between two updates of one product.
    pub min_gap: Duration,
    /// Stock messages per second the whole server may send, spread over everyone who watches.
    pub messages_per_second: NonZeroU32,
}

impl StockPace {
    /// How often a product looks at its stock: four times per `min_gap`, so that a level that held is seen soon.
    pub fn tick(&self) -> Duration {
        (self.min_gap / 4).max(Duration::from_millis(1))
    }

    /// Time between two updates of a product when `audience` subscriptions share the budget.
    fn gap(&self, audience: usize) -> Duration {
        let spread = Duration::from_secs(1).saturating_mul(u32::try_from(audience).unwrap_or(u32::MAX));
        (spread / self.messages_per_second.get()).max(self.min_gap)
    }
}

/// One product's publishing decisions, fed a reading of its stock every tick.
#[derive(Debug)]
pub struct Pace {
    settings: StockPace,
    /// Updates in hand, up to [`BUCKET`].
    tokens: f64,
    refilled: Option<Instant>,
    last_sent: Option<Instant>,
    /// The level read at the previous tick.
    previous: Option<LiveStock>,
}

impl Pace {
    pub fn new(settings: StockPace) -> Self {
        Self { settings, tokens: BUCKET, refilled: None, last_sent: None, previous: None }
    }

    /// Whether `level`, read at `now`, goes out to the `audience` now, given the `published` one.
    pub fn publish(&mut self, level: LiveStock, published: LiveStock, audience: usize, now: Instant) -> bool {
        if let Some(at) = self.refilled {
            let gap = self.settings.gap(audience).as_secs_f64();
            self.tokens = (self.tokens + now.saturating_duration_since(at).as_secs_f64() / gap).min(BUCKET);
        }
        self.refilled = Some(now);
        let held = self.previous.replace(level) == Some(level);
        if level == published {
            return false;
        }
        let spaced = self.last_sent.is_none_or(|at| now.saturating_duration_since(at) >= self.settings.min_gap);
        let due = spaced && (self.tokens >= BUCKET || (held && self.tokens >= 1.0));
        if due {
            self.tokens -= 1.0;
            self.last_sent = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{SaleState, SaleWindow, Timestamp};

    fn level(available: u64) -> LiveStock {
        let window = SaleWindow::new(Timestamp::from_millis(0), Timestamp::from_millis(1)).unwrap();
        LiveStock { available, stock: 100, sold_out: available == 0, sale: SaleState::Open, window }
    }

    fn pace(min_gap_ms: u64, per_second: u32) -> Pace {
        Pace::new(StockPace {
            min_gap: Duration::from_millis(min_gap_ms),
            messages_per_second: NonZeroU32::new(per_second).unwrap(),
        })
    }

    #[test]
    fn the_gap_widens_with_the_audience_and_never_narrows_below_the_minimum() {
        let settings = pace(100, 2_000).settings;
        assert_eq!(settings.gap(10), Duration::from_millis(100));
        assert_eq!(settings.gap(1_000), Duration::from_millis(500));
        assert_eq!(settings.gap(20_000), Duration::from_secs(10));
        assert_eq!(settings.tick(), Duration::from_millis(25));
    }

    #[test]
    fn a_level_that_held_goes_out_with_the_update_kept_in_hand_and_then_the_budget_holds() {
        let (mut pace, start) = (pace(100, 2_000), Instant::now());
        let at = |ms| start + Duration::from_millis(ms);
        assert!(pace.publish(level(100), level(0), 1_000, at(0)), "the first reading goes out");
        assert!(!pace.publish(level(90), level(100), 1_000, at(50)), "a sale in full swing waits its gap (500 ms)");
        assert!(!pace.publish(level(80), level(100), 1_000, at(100)));
        assert!(pace.publish(level(80), level(100), 1_000, at(150)), "80 held for a tick: the spare goes out");
        assert!(!pace.publish(level(80), level(80), 1_000, at(200)), "nothing new");
        assert!(!pace.publish(level(70), level(80), 1_000, at(200)));
        assert!(!pace.publish(level(70), level(80), 1_000, at(250)), "held, but the spare is spent");
        assert!(pace.publish(level(70), level(80), 1_000, at(500)), "a whole update has come back");
    }

    #[test]
    fn two_updates_are_never_closer_than_the_minimum_gap() {
        let (mut pace, start) = (pace(100, 2_000), Instant::now());
        let at = |ms| start + Duration::from_millis(ms);
        assert!(pace.publish(level(100), level(0), 1, at(0)));
        assert!(!pace.publish(level(90), level(100), 1, at(25)));
        assert!(!pace.publish(level(90), level(100), 1, at(50)), "held, with updates in hand, but too soon");
        assert!(pace.publish(level(90), level(100), 1, at(100)));
    }

    /// Feeds `readings` one tick apart, then the last one until it is published; the times of the updates.
    fn run(pace: &mut Pace, readings: &[u64], audience: usize) -> (Vec<Instant>, Instant) {
        let (tick, start) = (pace.settings.tick(), Instant::now());
        let (mut published, mut sent, mut now) = (level(u64::MAX), Vec::new(), start);
        let mut feed = |reading: u64, now: Instant, published: &mut LiveStock, sent: &mut Vec<Instant>| {
            if pace.publish(level(reading), *published, audience, now) {
                *published = level(reading);
                sent.push(now);
            }
        };
        for &reading in readings {
            now += tick;
            feed(reading, now, &mut published, &mut sent);
        }
        let last = now;
        let final_level = level(*readings.last().unwrap());
        while published != final_level {
            now += tick;
            feed(final_level.available, now, &mut published, &mut sent);
        }
        (sent, last)
    }

    proptest! {
        /// Whatever the readings: updates are at least the minimum gap apart, no more of them than the budget
        /// allows (two in hand, then one per gap), and the level they end on goes out within a gap.
        #[test]
        fn updates_keep_to_the_budget_and_the_end_is_never_held_back_longer_than_a_gap(
            readings in proptest::collection::vec(0u64..5, 1..400),
            audience in 0usize..50_000,
        ) {
            let mut pace = pace(100, 2_000);
            let (tick, gap) = (pace.settings.tick(), pace.settings.gap(audience));
            let (sent, last) = run(&mut pace, &readings, audience);
            prop_assert!(sent.windows(2).all(|pair| pair[1] - pair[0] >= Duration::from_millis(100)));
            let span = sent.last().unwrap().saturating_duration_since(sent[0]);
            prop_assert!(sent.len() as f64 <= 2.0 + span.as_secs_f64() / gap.as_secs_f64());
            prop_assert!(*sent.last().unwrap() - last <= gap + 2 * tick);
        }

        /// A sale in full swing (a new level every tick) ends with its last level out within the minimum gap
        /// and two ticks, however large the audience.
        #[test]
        fn the_end_of_a_busy_sale_goes_out_at_once(ticks in 1u64..400, audience in 0usize..50_000) {
            let mut pace = pace(100, 2_000);
            let tick = pace.settings.tick();
            let readings: Vec<u64> = (0..ticks).rev().collect();
            let (sent, last) = run(&mut pace, &readings, audience);
            prop_assert!(*sent.last().unwrap() - last <= Duration::from_millis(100) + 2 * tick);
        }
    }
}

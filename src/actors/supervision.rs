//! How supervisors retry: exponential backoff with jitter, and a restart budget after which a supervisor stops
//! trying and escalates, so a child that fails at once every time does not spin forever.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

/// Delays of `base · factor^attempt`, capped at `cap`, each shortened by up to a quarter at random so that
/// children failing together do not retry together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub factor: u32,
    pub cap: Duration,
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.base.saturating_mul(self.factor.saturating_pow(attempt.min(20))).min(self.cap);
        let jitter = rand::rng().random_range(0.0..0.25);
        full.mul_f64(1.0 - jitter)
    }
}

/// At most `max` restarts within any `window`.
#[derive(Debug)]
pub struct RestartBudget {
    max: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max: usize, window: Duration) -> Self {
        Self { max, window, recent: VecDeque::new() }
    }

    /// Records a restart at `now`; false when the budget is spent and the supervisor should give up.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|at| now.duration_since(*at) > self.window) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() <= self.max
    }

    /// Restarts counted in the current window.
    pub fn attempts(&self) -> u32 {
        self.recent.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_at_the_cap() {
        let backoff = Backoff { base: Duration::from_millis(100), factor: 2, cap: Duration::from_secs(1) };
        let first = backoff.delay(0);
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(75));
        let third = backoff.delay(2);
        assert!(third <= Duration::from_millis(400) && third >= Duration::from_millis(300));
        assert!(backoff.delay(30) <= Duration::from_secs(1));
    }

    #[test]
    fn budget_refuses_past_its_maximum_then_recovers() {
        let mut budget = RestartBudget::new(2, Duration::from_secs(10));
        let start = Instant::now();
        assert!(budget.allow(start));
        assert!(budget.allow(start));
        assert!(!budget.allow(start));
        assert!(budget.allow(start + Duration::from_secs(11)));
    }
}

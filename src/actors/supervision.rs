//! How every supervisor restarts a failed child: exponential backoff with jitter, within a restart budget, after
//! which the supervisor stops trying and escalates (fails itself), so a child that fails at once every time does not
//! spin forever and the failure shows (readiness goes red). One `BackoffPolicy` serves every supervisor; failed
//! projection runs are retried on the same delays.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use rand::Rng;

/// Delays of `base · factor^attempt`, capped at `cap`, each shortened by up to a quarter at random so that
/// children failing together do not retry together; at most `max_restarts` restarts of one child within `window`.
#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub factor: u32,
    pub cap: Duration,
    pub max_restarts: usize,
    pub window: Duration,
}

impl BackoffPolicy {
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.base.saturating_mul(self.factor.saturating_pow(attempt.min(20))).min(self.cap);
        let jitter = rand::rng().random_range(0.0..0.25);
        full.mul_f64(1.0 - jitter)
    }
}

/// At most `max` restarts within any `window`.
#[derive(Debug)]
struct RestartBudget {
    max: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// Records a restart at `now`; false when the budget is spent.
    fn allow(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|at| now.duration_since(*at) > self.window) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() <= self.max
    }

    /// Restarts counted in the current window.
    fn attempts(&self) -> u32 {
        self.recent.len() as u32
    }
}

/// One supervisor's restart bookkeeping: a budget per child, and how many restarts it made.
#[derive(Debug)]
pub struct Restarts<K> {
    policy: BackoffPolicy,
    budgets: HashMap<K, RestartBudget>,
    total: u64,
}

impl<K: Hash + Eq> Restarts<K> {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self { policy, budgets: HashMap::new(), total: 0 }
    }

    /// `child` failed at `now`: how long to wait before restarting it, or `Err` with the failures counted when its
    /// budget is spent and the supervisor must give up.
    pub fn after_failure(&mut self, child: K, now: Instant) -> Result<Duration, u32> {
        let (max, window) = (self.policy.max_restarts, self.policy.window);
        let budget =
            self.budgets.entry(child).or_insert_with(|| RestartBudget { max, window, recent: VecDeque::new() });
        if !budget.allow(now) {
            return Err(budget.attempts());
        }
        self.total += 1;
        Ok(self.policy.delay(budget.attempts().saturating_sub(1)))
    }

    /// Restarts made since start.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_restarts: usize) -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_millis(100),
            factor: 2,
            cap: Duration::from_secs(1),
            max_restarts,
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn delays_grow_and_stop_at_the_cap() {
        let backoff = policy(5);
        let first = backoff.delay(0);
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(75));
        let third = backoff.delay(2);
        assert!(third <= Duration::from_millis(400) && third >= Duration::from_millis(300));
        assert!(backoff.delay(30) <= Duration::from_secs(1));
    }

    #[test]
    fn each_child_has_its_own_budget_which_refuses_past_its_maximum_then_recovers() {
        let mut restarts = Restarts::new(policy(2));
        let start = Instant::now();
        let first = restarts.after_failure("a", start).unwrap();
        let second = restarts.after_failure("a", start).unwrap();
        assert!(first <= Duration::from_millis(100) && second >= Duration::from_millis(150), "delays grow");
        assert_eq!(restarts.after_failure("a", start), Err(3), "the budget is spent");
        assert!(restarts.after_failure("b", start).is_ok(), "another child's budget is its own");
        assert!(restarts.after_failure("a", start + Duration::from_secs(11)).is_ok(), "the window moved on");
        assert_eq!(restarts.total(), 4);
    }
}

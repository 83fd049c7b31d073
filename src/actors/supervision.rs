//! How every supervisor restarts a failed child: exponential backoff with jitter, within a restart budget, after
//! which the supervisor stops trying and escalates (fails itself), so a child that fails at once every time does not
//! spin forever and the failure shows (readiness goes red). A child that then runs quietly for `reset_after` starts
//! again from the first delay with its whole budget, as Akka's BackoffSupervisor resets. One `BackoffPolicy` serves
//! every supervisor; failed projection runs are retried on the same delays.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::hash::Hash;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use super::inspect::ChildRestarts;

/// Delays of `min(cap, base · factor^attempt) · (1 + r · jitter)` for a random `r` in `[0, 1)`, so that children
/// failing together do not retry together; at most `max_restarts` restarts of one child within `window`, and a clean
/// slate for a child that has run `reset_after` without failing.
#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub factor: u32,
    pub cap: Duration,
    pub jitter: f64,
    pub max_restarts: usize,
    pub window: Duration,
    pub reset_after: Duration,
}

impl BackoffPolicy {
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.base.saturating_mul(self.factor.saturating_pow(attempt.min(20))).min(self.cap);
        let spread = rand::rng().random_range(0.0..1.0) * self.jitter.max(0.0);
        full.mul_f64(1.0 + spread)
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

/// One child's record.
#[derive(Debug)]
struct ChildRecord {
    budget: RestartBudget,
    restarts: u64,
    gave_up: bool,
    last_failure: Instant,
    last_delay: Duration,
}

/// One supervisor's restart bookkeeping: a budget per child, and how many restarts it made.
#[derive(Debug)]
pub struct Restarts<K> {
    policy: BackoffPolicy,
    children: HashMap<K, ChildRecord>,
    total: u64,
    gave_up: u64,
}

/// What an admin sees of one supervisor's restarts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SupervisorView {
    /// Restarts made since start.
    pub restarts: u64,
    /// Children given up on since start (their budget spent).
    pub gave_up: u64,
    /// Restarts of one child within `restart_window_secs` after which the supervisor gives up and escalates.
    pub max_restarts: usize,
    /// Every child that has failed, most recent failure first.
    pub children: Vec<ChildView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChildView {
    pub child: String,
    pub restarts: u64,
    /// Its budget was spent and the supervisor gave up on it.
    pub gave_up: bool,
    /// Failures counted against the budget now (0 once the child has run quietly for `reset_after`).
    pub failures_in_window: u32,
    /// The delay before its latest restart.
    pub last_delay_ms: u64,
    pub quiet_for_secs: f64,
}

impl<K: Hash + Eq + Display> Restarts<K> {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self { policy, children: HashMap::new(), total: 0, gave_up: 0 }
    }

    /// `child` failed at `now`: how long to wait before restarting it, or `Err` with the failures counted when its
    /// budget is spent and the supervisor must give up.
    pub fn after_failure(&mut self, child: K, now: Instant) -> Result<Duration, u32> {
        let policy = self.policy;
        let record = self.children.entry(child).or_insert_with(|| ChildRecord {
            budget: RestartBudget { max: policy.max_restarts, window: policy.window, recent: VecDeque::new() },
            restarts: 0,
            gave_up: false,
            last_failure: now,
            last_delay: Duration::ZERO,
        });
        if now.saturating_duration_since(record.last_failure) >= policy.reset_after {
            record.budget.recent.clear();
        }
        record.last_failure = now;
        if !record.budget.allow(now) {
            if !record.gave_up {
                record.gave_up = true;
                self.gave_up += 1;
            }
            return Err(record.budget.attempts());
        }
        record.gave_up = false;
        self.total += 1;
        record.restarts += 1;
        record.last_delay = policy.delay(record.budget.attempts().saturating_sub(1));
        Ok(record.last_delay)
    }

    /// `child`'s restarts and the delay before the latest, for the live tree.
    pub fn of(&self, child: &K) -> ChildRestarts {
        self.children.get(child).map_or_else(ChildRestarts::default, |record| ChildRestarts {
            restarts: record.restarts,
            backoff_ms: Some(record.last_delay.as_millis() as u64),
        })
    }

    /// Restarts made since start.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn view(&self, now: Instant) -> SupervisorView {
        let mut children: Vec<(Instant, ChildView)> = self
            .children
            .iter()
            .map(|(child, record)| {
                let quiet = now.saturating_duration_since(record.last_failure);
                let counted = if quiet >= self.policy.reset_after { 0 } else { record.budget.attempts() };
                let view = ChildView {
                    child: child.to_string(),
                    restarts: record.restarts,
                    gave_up: record.gave_up,
                    failures_in_window: counted,
                    last_delay_ms: record.last_delay.as_millis() as u64,
                    quiet_for_secs: quiet.as_secs_f64(),
                };
                (record.last_failure, view)
            })
            .collect();
        children.sort_by_key(|(last, _)| std::cmp::Reverse(*last));
        SupervisorView {
            restarts: self.total,
            gave_up: self.gave_up,
            max_restarts: self.policy.max_restarts,
            children: children.into_iter().map(|(_, view)| view).collect(),
        }
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
            jitter: 0.2,
            max_restarts,
            window: Duration::from_secs(10),
            reset_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn delays_grow_and_stop_at_the_cap_give_or_take_the_jitter() {
        let backoff = policy(5);
        for _ in 0..100 {
            let first = backoff.delay(0);
            assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(120), "{first:?}");
            let third = backoff.delay(2);
            assert!(third >= Duration::from_millis(400) && third < Duration::from_millis(480), "{third:?}");
            assert!(backoff.delay(30) < Duration::from_millis(1_200));
        }
        let spread: std::collections::HashSet<Duration> = (0..20).map(|_| backoff.delay(0)).collect();
        assert!(spread.len() > 1, "jitter spreads the delays");
        assert_eq!(BackoffPolicy { jitter: 0.0, ..backoff }.delay(1), Duration::from_millis(200));
    }

    #[test]
    fn each_child_has_its_own_budget_which_refuses_past_its_maximum_then_recovers() {
        let mut restarts = Restarts::new(policy(2));
        let start = Instant::now();
        let first = restarts.after_failure("a", start).unwrap();
        let second = restarts.after_failure("a", start).unwrap();
        assert!(first < Duration::from_millis(120) && second >= Duration::from_millis(200), "delays grow");
        assert_eq!(restarts.after_failure("a", start), Err(3), "the budget is spent");
        let view = restarts.view(start);
        assert_eq!((view.gave_up, view.children[0].gave_up), (1, true), "the give-up shows");
        assert!(restarts.after_failure("b", start).is_ok(), "another child's budget is its own");
        assert!(restarts.after_failure("a", start + Duration::from_secs(11)).is_ok(), "the window moved on");
        assert_eq!(restarts.total(), 4);
    }

    #[test]
    fn a_child_that_ran_quietly_long_enough_starts_again_from_the_first_delay() {
        let mut restarts = Restarts::new(BackoffPolicy { window: Duration::from_secs(3600), ..policy(3) });
        let start = Instant::now();
        for _ in 0..3 {
            restarts.after_failure("a", start).unwrap();
        }
        let view = restarts.view(start + Duration::from_secs(1));
        assert_eq!((view.restarts, view.children[0].failures_in_window), (3, 3));
        assert!(view.children[0].last_delay_ms >= 400, "{view:?}");
        let quiet = start + Duration::from_secs(31);
        assert_eq!(restarts.view(quiet).children[0].failures_in_window, 0, "the quiet child's slate is clean");
        let again = restarts.after_failure("a", quiet).expect("a clean slate, so a whole budget");
        assert!(again < Duration::from_millis(120), "back to the first delay: {again:?}");
        assert_eq!(restarts.view(quiet).children[0].restarts, 4);
    }
}

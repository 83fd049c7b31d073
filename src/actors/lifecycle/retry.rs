//! When a job that must happen eventually (a payment, a refund) tries again, and when it gives up: a plain state
//! machine the job's actor drives and its supervisor keeps, so a restarted actor goes on counting where the failed
//! one stopped. Payments retry on the one backoff policy; compensations on a tiered schedule (10 s, 30 s, 60 s by
//! default, as the seeds' compensation does). Every attempt is recorded with how it ended and the wait that
//! followed, which is what an admin sees and what a dead letter keeps.

use std::time::Duration;

use serde::Serialize;

use crate::actors::supervision::BackoffPolicy;
use crate::domain::{Attempt, Timestamp};

/// The waits between attempts.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// At most `attempts` tries, waiting the policy's growing delays between them.
    Backoff { policy: BackoffPolicy, attempts: u32 },
    /// One try, then one more after each of these waits.
    Tiers(Vec<Duration>),
}

impl Schedule {
    /// The wait after the `failures`-th failed attempt, or `None` when no attempt is left.
    fn wait_after(&self, failures: u32) -> Option<Duration> {
        match self {
            Schedule::Backoff { policy, attempts } => (failures < *attempts).then(|| policy.delay(failures - 1)),
            Schedule::Tiers(waits) => waits.get(failures as usize - 1).copied(),
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// An attempt runs (or awaits its answer).
    Trying,
    /// The last attempt failed; the next starts after its wait.
    Waiting,
    Succeeded,
    /// Every attempt failed; a dead letter holds the job.
    DeadLettered,
    /// There was nothing left to do (an order that ended before it was paid).
    Abandoned,
}

/// What follows a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    TryAgainAfter(Duration),
    GiveUp,
}

#[derive(Debug, Clone)]
pub struct Retries {
    schedule: Schedule,
    attempts: Vec<Attempt>,
    state: JobState,
}

impl JobState {
    /// The state as the admin's job list and the metrics name it.
    pub fn label(self) -> &'static str {
        match self {
            JobState::Trying => "trying",
            JobState::Waiting => "waiting",
            JobState::Succeeded => "succeeded",
            JobState::DeadLettered => "dead_lettered",
            JobState::Abandoned => "abandoned",
        }
    }
}

impl Retries {
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule, attempts: Vec::new(), state: JobState::Waiting }
    }

    /// Starts an attempt at `now`; returns its number.
    pub fn begin(&mut self, now: Timestamp) -> u32 {
        let number = self.attempts.len() as u32 + 1;
        self.attempts.push(Attempt { number, started_at: now, failure: None, retry_after_ms: None });
        self.state = JobState::Trying;
        number
    }

    /// The running attempt, if one runs.
    pub fn current(&self) -> Option<u32> {
        (self.state == JobState::Trying).then_some(self.attempts.len() as u32)
    }

    /// The running attempt failed for `reason`.
    pub fn failed(&mut self, reason: String) -> Next {
        let failures = self.attempts.len() as u32;
        let next = match self.schedule.wait_after(failures.max(1)) {
            Some(wait) => Next::TryAgainAfter(wait),
            None => Next::GiveUp,
        };
        if let Some(last) = self.attempts.last_mut() {
            last.failure = Some(reason);
            if let Next::TryAgainAfter(wait) = next {
                last.retry_after_ms = Some(wait.as_millis() as u64);
            }
        }
        self.state = match next {
            Next::TryAgainAfter(_) => JobState::Waiting,
            Next::GiveUp => JobState::DeadLettered,
        };
        next
    }

    pub fn succeeded(&mut self) {
        self.state = JobState::Succeeded;
    }

    /// The job stops trying though attempts are left (its actor cannot be kept running).
    pub fn give_up(&mut self) {
        self.state = JobState::DeadLettered;
    }

    /// The job has nothing left to do, for `why`.
    pub fn abandon(&mut self, why: String) {
        if let Some(last) = self.attempts.last_mut() {
            last.failure = Some(why);
        }
        self.state = JobState::Abandoned;
    }

    /// The job is over, one way or another.
    pub fn is_over(&self) -> bool {
        matches!(self.state, JobState::Succeeded | JobState::DeadLettered | JobState::Abandoned)
    }

    pub fn state(&self) -> JobState {
        self.state
    }

    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// Why the job gave up: its last failure.
    pub fn last_failure(&self) -> Option<&str> {
        self.attempts.last().and_then(|attempt| attempt.failure.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn backoff(attempts: u32) -> Schedule {
        let policy = BackoffPolicy {
            base: Duration::from_millis(10),
            factor: 2,
            cap: Duration::from_secs(1),
            jitter: 0.0,
            max_restarts: 5,
            window: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
        };
        Schedule::Backoff { policy, attempts }
    }

    #[test]
    fn backoff_waits_grow_until_the_attempts_are_spent() {
        let mut retries = Retries::new(backoff(4));
        let mut waits = Vec::new();
        loop {
            retries.begin(Timestamp::from_millis(0));
            match retries.failed("declined".into()) {
                Next::TryAgainAfter(wait) => waits.push(wait.as_millis()),
                Next::GiveUp => break,
            }
        }
        assert_eq!(waits, [10, 20, 40]);
        assert_eq!((retries.attempts().len(), retries.state()), (4, JobState::DeadLettered));
        assert_eq!(retries.last_failure(), Some("declined"));
        assert_eq!(retries.attempts()[1].retry_after_ms, Some(20));
        assert_eq!(retries.attempts()[3].retry_after_ms, None, "no wait follows the last attempt");
    }

    #[test]
    fn tiers_wait_each_tier_in_turn_then_give_up() {
        let tiers = Schedule::Tiers(vec![Duration::from_secs(10), Duration::from_secs(30), Duration::from_secs(60)]);
        let mut retries = Retries::new(tiers);
        let mut nexts = Vec::new();
        for _ in 0..4 {
            retries.begin(Timestamp::from_millis(0));
            nexts.push(retries.failed("refund failed".into()));
        }
        let secs = |s| Next::TryAgainAfter(Duration::from_secs(s));
        assert_eq!(nexts, [secs(10), secs(30), secs(60), Next::GiveUp]);
    }

    proptest! {
        #[test]
        fn a_job_succeeds_or_gives_up_after_exactly_its_attempts(attempts in 1u32..8, succeed_at in 1u32..10) {
            let mut retries = Retries::new(backoff(attempts));
            loop {
                let number = retries.begin(Timestamp::from_millis(0));
                prop_assert_eq!(retries.current(), Some(number));
                if number == succeed_at {
                    retries.succeeded();
                    break;
                }
                if retries.failed(format!("failure {number}")) == Next::GiveUp {
                    break;
                }
                prop_assert_eq!(retries.state(), JobState::Waiting);
            }
            let tried = retries.attempts().len() as u32;
            if succeed_at <= attempts {
                prop_assert_eq!((retries.state(), tried), (JobState::Succeeded, succeed_at));
            } else {
                prop_assert_eq!((retries.state(), tried), (JobState::DeadLettered, attempts));
            }
            prop_assert!(retries.current().is_none());
        }
    }
}

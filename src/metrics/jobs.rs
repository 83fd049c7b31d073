//! What the actors record as it happens: each journal commit, and each payment or refund attempt and how its job
//! ended. Recorded off the purchase path — a commit carries a whole batch of purchases — with handles resolved up
//! front.

use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec};

use super::{MetricsError, Registrar};

/// The journal writer's commits.
#[derive(Clone)]
pub struct JournalMetrics {
    batch_size: Histogram,
    commit_duration: Histogram,
    events: IntCounter,
    failures: IntCounter,
}

impl JournalMetrics {
    pub(super) fn new(add: &Registrar) -> Result<Self, MetricsError> {
        Ok(Self {
            batch_size: add.histogram(
                "seckill_journal_batch_size",
                "Events per journal commit (group commit: a busy sale fills bigger batches).",
                prometheus::exponential_buckets(1.0, 2.0, 12)?,
            )?,
            commit_duration: add.histogram(
                "seckill_journal_commit_duration_seconds",
                "How long one journal commit took, failed ones included.",
                vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0],
            )?,
            events: add.counter("seckill_journal_events_total", "Events the journal made durable.")?,
            failures: add.counter(
                "seckill_journal_commit_failures_total",
                "Journal commits that failed (their purchases were answered 503 and rolled back).",
            )?,
        })
    }

    /// A commit of `events` events made them durable in `took`.
    pub fn committed(&self, events: usize, took: Duration) {
        self.batch_size.observe(events as f64);
        self.commit_duration.observe(took.as_secs_f64());
        self.events.inc_by(events as u64);
    }

    /// A commit of `events` events failed after `took`.
    pub fn failed(&self, events: usize, took: Duration) {
        self.batch_size.observe(events as f64);
        self.commit_duration.observe(took.as_secs_f64());
        self.failures.inc();
    }
}

/// Payments and refunds: the jobs that must happen eventually.
#[derive(Clone)]
pub struct LifecycleMetrics {
    payment_attempts: IntCounter,
    compensation_attempts: IntCounter,
    compensation_successes: IntCounter,
    archived: IntCounter,
    finished: IntCounterVec,
}

impl LifecycleMetrics {
    pub(super) fn new(add: &Registrar) -> Result<Self, MetricsError> {
        let finished = add.counter_vec(
            "seckill_jobs_finished_total",
            "Payment and refund jobs that ended, by job (payment, refund) and how (succeeded, dead_lettered, abandoned).",
            &["job", "state"],
        )?;
        for job in ["payment", "refund"] {
            for state in ["succeeded", "dead_lettered", "abandoned"] {
                finished.with_label_values(&[job, state]);
            }
        }
        Ok(Self {
            payment_attempts: add.counter("seckill_payment_attempts_total", "Attempts to charge a buyer.")?,
            compensation_attempts: add.counter(
                "compensation_attempt_total",
                "Attempts to refund a payment that came for an order that had already ended.",
            )?,
            compensation_successes: add
                .counter("compensation_success_total", "Refunds the payment provider confirmed.")?,
            archived: add.counter(
                "failed_order_archived_total",
                "Jobs that spent their attempts and were written as dead letters for an operator.",
            )?,
            finished,
        })
    }

    pub fn payment_attempt(&self) {
        self.payment_attempts.inc();
    }

    pub fn compensation_attempt(&self) {
        self.compensation_attempts.inc();
    }

    /// A `job` ("payment" or "refund") ended in `state`.
    pub fn finished(&self, job: &str, state: &str) {
        self.finished.with_label_values(&[job, state]).inc();
        if job == "refund" && state == "succeeded" {
            self.compensation_successes.inc();
        }
    }

    /// A dead letter was written.
    pub fn archived(&self) {
        self.archived.inc();
    }
}

//! The OrderProjector actor: turns the journal into the `orders` table. Each run asks the journal to project its
//! next events; the journal records how far the projection got no earlier than the rows are committed (a position
//! in the same transaction for the SQL journal, committed consumer-group offsets for Kafka), so after a crash it
//! resumes where it stopped, and a stretch projected twice changes nothing. It is woken by the journal writer
//! after each commit and by a slow timer; a failed run is retried with backoff.
//!
//! A run that fills its batch is followed at once: there is a backlog. One that does not — the projector is keeping
//! pace with a sale — rests for `linger` first, so a busy sale is projected in a few large transactions instead of
//! one per journal commit, each of which would compete with the journal writer for the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

use super::supervision::Backoff;
use crate::persistence::{Database, Journal, Projected};

pub struct OrderProjector;

pub struct ProjectorArgs {
    pub journal: Arc<dyn Journal>,
    pub db: Database,
    pub batch: usize,
    pub poll: Duration,
    pub linger: Duration,
    pub retry: Backoff,
}

/// What an admin (and the bench) sees of the projector.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProjectorStatus {
    /// Orders written since this process started.
    pub projected: u64,
    /// Time spent in runs that wrote at least one order.
    pub busy_seconds: f64,
    /// `projected / busy_seconds`: how fast it catches up when there is a backlog.
    pub orders_per_second: f64,
    /// Runs that failed since start (each retried with backoff).
    pub failures: u64,
}

/// When the next run starts: the projector's scheduling, apart from the actor so it can be tested alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Idle,
    /// A run is under way; `woken` if news arrived meanwhile.
    Running {
        woken: bool,
    },
    /// A timer ends the rest; wake-ups meanwhile change nothing.
    Resting,
}

/// What the actor does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Run,
    Rest,
    Wait,
}

impl Pace {
    pub fn woken(&mut self) -> Next {
        match self {
            Pace::Idle => {
                *self = Pace::Running { woken: false };
                Next::Run
            }
            Pace::Running { woken } => {
                *woken = true;
                Next::Wait
            }
            Pace::Resting => Next::Wait,
        }
    }

    /// A run ended having found `found` events, of at most `batch`.
    pub fn ran(&mut self, found: usize, batch: usize) -> Next {
        let woken = matches!(self, Pace::Running { woken: true });
        if found >= batch {
            *self = Pace::Running { woken: false };
            Next::Run
        } else if found > 0 || woken {
            *self = Pace::Resting;
            Next::Rest
        } else {
            *self = Pace::Idle;
            Next::Wait
        }
    }

    /// A run failed: rest for the backoff, then run again.
    pub fn failed(&mut self) {
        *self = Pace::Resting;
    }

    pub fn rested(&mut self) -> Next {
        *self = Pace::Running { woken: false };
        Next::Run
    }
}

pub struct ProjectorState {
    journal: Arc<dyn Journal>,
    db: Database,
    batch: usize,
    linger: Duration,
    retry: Backoff,
    pace: Pace,
    failures_in_a_row: u32,
    status: ProjectorStatus,
}

pub enum ProjectorMsg {
    Wake,
    Rested,
    Ran { result: Result<Projected, String>, took: Duration },
    Status(RpcReplyPort<ProjectorStatus>),
}

impl Actor for OrderProjector {
    type Msg = ProjectorMsg;
    type State = ProjectorState;
    type Arguments = ProjectorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProjectorMsg>,
        args: ProjectorArgs,
    ) -> Result<ProjectorState, ActorProcessingErr> {
        myself.send_interval(args.poll, || ProjectorMsg::Wake);
        let _ = myself.cast(ProjectorMsg::Wake);
        Ok(ProjectorState {
            journal: args.journal,
            db: args.db,
            batch: args.batch.max(1),
            linger: args.linger,
            retry: args.retry,
            pace: Pace::Idle,
            failures_in_a_row: 0,
            status: ProjectorStatus::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ProjectorMsg>,
        message: ProjectorMsg,
        state: &mut ProjectorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ProjectorMsg::Wake => {
                let next = state.pace.woken();
                state.follow(&myself, next);
            }
            ProjectorMsg::Rested => {
                let next = state.pace.rested();
                state.follow(&myself, next);
            }
            ProjectorMsg::Ran { result: Ok(run), took } => {
                state.failures_in_a_row = 0;
                if run.orders > 0 {
                    state.status.projected += run.orders as u64;
                    state.status.busy_seconds += took.as_secs_f64();
                    state.status.orders_per_second = state.status.projected as f64 / state.status.busy_seconds;
                }
                let next = state.pace.ran(run.events, state.batch);
                state.follow(&myself, next);
            }
            ProjectorMsg::Ran { result: Err(err), .. } => {
                state.status.failures += 1;
                let delay = state.retry.delay(state.failures_in_a_row);
                state.failures_in_a_row += 1;
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "order projection failed");
                state.pace.failed();
                myself.send_after(delay, || ProjectorMsg::Rested);
            }
            ProjectorMsg::Status(reply) => {
                let _ = reply.send(state.status);
            }
        }
        Ok(())
    }
}

impl ProjectorState {
    fn follow(&mut self, myself: &ActorRef<ProjectorMsg>, next: Next) {
        match next {
            Next::Run => self.start_run(myself),
            Next::Rest => {
                myself.send_after(self.linger, || ProjectorMsg::Rested);
            }
            Next::Wait => {}
        }
    }

    fn start_run(&mut self, myself: &ActorRef<ProjectorMsg>) {
        let (journal, db, batch) = (Arc::clone(&self.journal), self.db.clone(), self.batch);
        let myself = myself.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = journal.project_next(&db, batch).await.map_err(|err| err.to_string());
            let _ = myself.cast(ProjectorMsg::Ran { result, took: started.elapsed() });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_is_drained_run_after_run() {
        let mut pace = Pace::Idle;
        assert_eq!(pace.woken(), Next::Run);
        assert_eq!(pace.ran(100, 100), Next::Run, "a full batch means more is waiting");
        assert_eq!(pace.ran(100, 100), Next::Run);
        assert_eq!(pace.ran(0, 100), Next::Wait, "nothing found and nothing new: idle");
        assert_eq!(pace, Pace::Idle);
    }

    #[test]
    fn keeping_pace_with_a_sale_rests_between_runs_and_coalesces_wake_ups() {
        let mut pace = Pace::Idle;
        assert_eq!(pace.woken(), Next::Run);
        assert_eq!(pace.woken(), Next::Wait, "one run at a time");
        assert_eq!(pace.ran(7, 100), Next::Rest, "a part batch: rest, then look again");
        for _ in 0..50 {
            assert_eq!(pace.woken(), Next::Wait, "commits during the rest wait for its end");
        }
        assert_eq!(pace.rested(), Next::Run);
        assert_eq!(pace.ran(0, 100), Next::Wait);
    }

    #[test]
    fn news_during_an_empty_run_is_looked_at_after_a_rest() {
        let mut pace = Pace::Idle;
        pace.woken();
        pace.woken();
        assert_eq!(pace.ran(0, 100), Next::Rest, "the wake-up during the run is not lost");
        assert_eq!(pace.rested(), Next::Run);
    }

    #[test]
    fn a_failed_run_is_retried_after_its_rest() {
        let mut pace = Pace::Idle;
        pace.woken();
        pace.failed();
        assert_eq!(pace.woken(), Next::Wait, "wake-ups do not cut the backoff short");
        assert_eq!(pace.rested(), Next::Run);
    }
}

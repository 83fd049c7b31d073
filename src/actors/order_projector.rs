//! The OrderProjector actor: turns the journal into the `orders` table. Each run asks the journal to project its
//! next events; the journal records how far the projection got no earlier than the rows are committed (a position
//! in the same transaction for the SQL journal, committed consumer-group offsets for Kafka), so after a crash it
//! resumes where it stopped, and a stretch projected twice changes nothing. It is woken by the journal writer
//! after each commit and by a slow timer; a failed run is retried with backoff.

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

pub struct ProjectorState {
    journal: Arc<dyn Journal>,
    db: Database,
    batch: usize,
    retry: Backoff,
    running: bool,
    wake_again: bool,
    failures_in_a_row: u32,
    status: ProjectorStatus,
}

pub enum ProjectorMsg {
    Wake,
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
            retry: args.retry,
            running: false,
            wake_again: false,
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
            ProjectorMsg::Wake if state.running => state.wake_again = true,
            ProjectorMsg::Wake => state.start_run(&myself),
            ProjectorMsg::Ran { result: Ok(run), took } => {
                state.running = false;
                state.failures_in_a_row = 0;
                if run.orders > 0 {
                    state.status.projected += run.orders as u64;
                    state.status.busy_seconds += took.as_secs_f64();
                    state.status.orders_per_second = state.status.projected as f64 / state.status.busy_seconds;
                }
                // A step that found events goes straight on: a Kafka poll may end a batch early while fetching.
                if run.events > 0 || std::mem::take(&mut state.wake_again) {
                    state.start_run(&myself);
                }
            }
            ProjectorMsg::Ran { result: Err(err), .. } => {
                state.running = false;
                state.status.failures += 1;
                let delay = state.retry.delay(state.failures_in_a_row);
                state.failures_in_a_row += 1;
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "order projection failed");
                myself.send_after(delay, || ProjectorMsg::Wake);
            }
            ProjectorMsg::Status(reply) => {
                let _ = reply.send(state.status);
            }
        }
        Ok(())
    }
}

impl ProjectorState {
    fn start_run(&mut self, myself: &ActorRef<ProjectorMsg>) {
        self.running = true;
        let (journal, db, batch) = (Arc::clone(&self.journal), self.db.clone(), self.batch);
        let myself = myself.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = journal.project_next(&db, batch).await.map_err(|err| err.to_string());
            let _ = myself.cast(ProjectorMsg::Ran { result, took: started.elapsed() });
        });
    }
}

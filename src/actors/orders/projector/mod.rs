//! The OrderProjector actor: turns the journal into the `orders` table. Each run asks the journal to project its
//! next events; the journal records how far the projection got no earlier than the rows are committed (a position
//! in the same transaction for the SQL journal, committed consumer-group offsets for Kafka), so after a crash — or a
//! restart by its supervisor — it resumes where it stopped, and a stretch projected twice changes nothing. The
//! journal writer reports each commit through a `ProjectorLink`, which always reaches the projector running now;
//! `Pacing` decides when to run (see there), a slow timer is the safety net, and a failed run is retried with
//! backoff. The same link carries traced purchases on to their projection (`traces`).

mod pacing;
mod traces;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

use self::pacing::Pacing;
use self::traces::{RunSpans, Traces};
use crate::actors::inspect::{ActorKind, InspectReply, Meter, Report};
use crate::actors::journal::CommitListener;
use crate::actors::supervision::BackoffPolicy;
use crate::domain::OrderId;
use crate::persistence::{Database, JournalProjection, OrderSpans, Projected};

pub struct OrderProjector;

/// The journal writer's way to the projector, whichever incarnation of it runs now.
#[derive(Default)]
pub struct ProjectorLink {
    current: ArcSwapOption<ActorRef<ProjectorMsg>>,
    traces: Traces,
}

impl CommitListener for ProjectorLink {
    fn committed(&self, events: u64) {
        if let Some(projector) = self.current.load().as_ref() {
            let _ = projector.cast(ProjectorMsg::Committed { events });
        }
    }

    fn traced(&self, events: Vec<(OrderId, tracing::Span)>) {
        self.traces.committed(events);
    }
}

pub struct ProjectorArgs {
    pub link: Arc<ProjectorLink>,
    pub journal: Arc<dyn JournalProjection>,
    pub db: Database,
    pub batch: usize,
    pub poll: Duration,
    /// Projection waits until the journal has had no commit for this long…
    pub quiet: Duration,
    /// …unless this many events wait to be projected.
    pub max_lag: u64,
    pub retry: BackoffPolicy,
}

/// What an admin (and the bench) sees of the projector.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
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
    link: Arc<ProjectorLink>,
    journal: Arc<dyn JournalProjection>,
    db: Database,
    batch: usize,
    retry: BackoffPolicy,
    pacing: Pacing,
    running: bool,
    /// A check for quiet is scheduled.
    check_armed: bool,
    failures_in_a_row: u32,
    status: ProjectorStatus,
    meter: Arc<Meter>,
}

pub enum ProjectorMsg {
    /// The journal writer committed this many events.
    Committed {
        events: u64,
    },
    /// Run if due (timers and retries).
    Wake,
    Ran {
        result: Result<Projected, String>,
        took: Duration,
    },
    Status(RpcReplyPort<ProjectorStatus>),
    Inspect(InspectReply),
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
        args.link.current.store(Some(Arc::new(myself)));
        Ok(ProjectorState {
            link: args.link,
            journal: args.journal,
            db: args.db,
            batch: args.batch.max(1),
            retry: args.retry,
            pacing: Pacing::new(args.quiet, args.max_lag),
            running: false,
            check_armed: false,
            failures_in_a_row: 0,
            status: ProjectorStatus::default(),
            meter: Arc::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ProjectorMsg>,
        message: ProjectorMsg,
        state: &mut ProjectorState,
    ) -> Result<(), ActorProcessingErr> {
        state.meter.handled();
        match message {
            ProjectorMsg::Committed { events } => {
                state.pacing.committed(events, Instant::now());
                state.run_when_due(&myself);
            }
            ProjectorMsg::Wake => {
                state.check_armed = false;
                state.run_when_due(&myself);
            }
            ProjectorMsg::Ran { result: Ok(run), took } => {
                state.running = false;
                state.failures_in_a_row = 0;
                state.pacing.projected(run.events as u64);
                if run.orders > 0 {
                    state.status.projected += run.orders as u64;
                    state.status.busy_seconds += took.as_secs_f64();
                    state.status.orders_per_second = state.status.projected as f64 / state.status.busy_seconds;
                }
                // A step that found events goes straight on while projection is due: a Kafka poll may end a
                // batch early while fetching.
                if run.events > 0 {
                    state.run_when_due(&myself);
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
            ProjectorMsg::Inspect(reply) => {
                let mut details = serde_json::to_value(state.status).unwrap_or_default();
                details["running"] = state.running.into();
                let _ = reply.send(Report::new(ActorKind::OrderProjector, &state.meter, details));
            }
        }
        Ok(())
    }
}

impl ProjectorState {
    /// Starts a run if none is going and one is due; otherwise makes sure a check comes once the journal could
    /// have been quiet long enough.
    fn run_when_due(&mut self, myself: &ActorRef<ProjectorMsg>) {
        if self.running {
            return;
        }
        let now = Instant::now();
        if self.pacing.is_due(now) {
            self.start_run(myself);
        } else if !self.check_armed {
            self.check_armed = true;
            myself.send_after(self.pacing.wait(now), || ProjectorMsg::Wake);
        }
    }

    fn start_run(&mut self, myself: &ActorRef<ProjectorMsg>) {
        self.running = true;
        let (link, journal, db, batch) =
            (Arc::clone(&self.link), Arc::clone(&self.journal), self.db.clone(), self.batch);
        let myself = myself.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let spans = RunSpans::start(&link.traces);
            let traced = spans.as_ref().map(|spans| spans as &dyn OrderSpans);
            let result = journal.project_next(&db, batch, traced).await.map_err(|err| err.to_string());
            if let (Some(spans), Ok(projected)) = (spans, &result) {
                spans.finish(projected);
            }
            let _ = myself.cast(ProjectorMsg::Ran { result, took: started.elapsed() });
        });
    }
}

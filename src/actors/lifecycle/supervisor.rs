//! A job supervisor — the PaymentSupervisor (`JobSupervisor<Pay>`) or the CompensationSupervisor
//! (`JobSupervisor<Refund>`): one worker actor per job, at most one job per order at a time. It keeps each job's
//! attempts as its worker reports them, so that a worker that panics is restarted with the one backoff policy and
//! goes on counting where it stopped; a job that gives up — its attempts spent, or its worker's restart budget — is
//! written as a dead letter. Finished jobs stay visible for a while (the most recent `KEEP_FINISHED`).

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;

use super::link::JobLink;
use super::retry::{JobState, Next, Retries};
use super::worker::{JobWorker, WorkerArgs, WorkerMsg};
use super::{Job, LifecycleDeps};
use crate::actors::inspect::{ActorKind, InspectReply, Meter, Report};
use crate::actors::supervision::{BackoffPolicy, Restarts, SupervisorView};
use crate::domain::{Attempt, JobKind, NewDeadLetter, OrderId, PaymentOrder};

/// Finished jobs kept for the admin view.
const KEEP_FINISHED: usize = 1_000;

pub struct JobSupervisor<J>(PhantomData<fn() -> J>);

impl<J> Default for JobSupervisor<J> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

pub struct JobSupervisorArgs<J: Job> {
    pub deps: Arc<LifecycleDeps>,
    pub link: Arc<JobLink<J>>,
    pub policy: BackoffPolicy,
}

/// One job as an admin sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub kind: JobKind,
    #[serde(flatten)]
    pub payment: PaymentOrder,
    pub state: JobState,
    pub attempts: Vec<Attempt>,
}

/// A supervisor's jobs: those under way, then the most recently finished, and its restarts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobsView {
    pub active: usize,
    pub jobs: Vec<JobView>,
    pub supervision: SupervisorView,
}

pub enum JobMsg<J: Job> {
    /// Starts `job` unless its order has one under way; answers with the order's job.
    Start {
        job: J,
        reply: Option<RpcReplyPort<JobView>>,
    },
    /// The provider's callback about an order's charge.
    Confirm {
        order: OrderId,
        result: Result<(), String>,
    },
    /// A worker's attempts changed.
    Progress {
        order: OrderId,
        retries: Retries,
    },
    /// Start the worker of a job whose worker failed.
    Restart(OrderId),
    /// Start whatever `Job::pending` finds due.
    Recover,
    View {
        order: OrderId,
        reply: RpcReplyPort<Option<JobView>>,
    },
    List(RpcReplyPort<JobsView>),
    Inspect(InspectReply),
}

struct Record<J> {
    job: J,
    retries: Retries,
    worker: Option<ActorRef<WorkerMsg>>,
}

pub struct SupervisorState<J: Job> {
    deps: Arc<LifecycleDeps>,
    link: Arc<JobLink<J>>,
    active: HashMap<OrderId, Record<J>>,
    workers: HashMap<ActorId, OrderId>,
    finished: VecDeque<JobView>,
    restarts: Restarts<OrderId>,
    meter: Arc<Meter>,
}

impl<J: Job> Actor for JobSupervisor<J> {
    type Msg = JobMsg<J>;
    type State = SupervisorState<J>;
    type Arguments = JobSupervisorArgs<J>;

    async fn pre_start(
        &self,
        myself: ActorRef<JobMsg<J>>,
        args: JobSupervisorArgs<J>,
    ) -> Result<SupervisorState<J>, ActorProcessingErr> {
        args.link.publish(myself.clone());
        myself.cast(JobMsg::Recover)?;
        Ok(SupervisorState {
            deps: args.deps,
            link: args.link,
            active: HashMap::new(),
            workers: HashMap::new(),
            finished: VecDeque::new(),
            restarts: Restarts::new(args.policy),
            meter: Arc::default(),
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<JobMsg<J>>,
        state: &mut SupervisorState<J>,
    ) -> Result<(), ActorProcessingErr> {
        state.link.withdraw(&myself);
        myself.stop_children(None);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<JobMsg<J>>,
        message: JobMsg<J>,
        state: &mut SupervisorState<J>,
    ) -> Result<(), ActorProcessingErr> {
        state.meter.handled();
        match message {
            JobMsg::Start { job, reply } => {
                let order = job.payment().order_id;
                if !state.active.contains_key(&order) {
                    let retries = Retries::new(J::schedule(&state.deps));
                    state.active.insert(order, Record { job, retries, worker: None });
                    state.spawn(&myself, order).await;
                }
                // The job was just started or is under way, so it has a view (no answer would read as unavailable).
                if let (Some(reply), Some(view)) = (reply, state.view(order)) {
                    let _ = reply.send(view);
                }
            }
            JobMsg::Confirm { order, result } => {
                if let Some(worker) = state.active.get(&order).and_then(|record| record.worker.as_ref()) {
                    let _ = worker.cast(WorkerMsg::Confirmed(result));
                }
            }
            JobMsg::Progress { order, retries } => {
                if let Some(record) = state.active.get_mut(&order) {
                    record.retries = retries;
                    if record.retries.is_over() {
                        state.finish(order);
                    }
                }
            }
            JobMsg::Restart(order) => state.spawn(&myself, order).await,
            JobMsg::Recover => {
                let (deps, myself) = (Arc::clone(&state.deps), myself.clone());
                tokio::spawn(async move {
                    for job in J::pending(&deps).await {
                        let _ = myself.cast(JobMsg::Start { job, reply: None });
                    }
                });
            }
            JobMsg::View { order, reply } => {
                let _ = reply.send(state.view(order));
            }
            JobMsg::List(reply) => {
                let mut jobs: Vec<JobView> = state.active.values().map(view_of).collect();
                jobs.extend(state.finished.iter().rev().cloned());
                let supervision = state.restarts.view(Instant::now());
                let _ = reply.send(JobsView { active: state.active.len(), jobs, supervision });
            }
            JobMsg::Inspect(reply) => {
                let details = serde_json::json!({
                    "active": state.active.len(),
                    "finished": state.finished.len(),
                    "restarts": state.restarts.total(),
                });
                let children = state.workers.iter().map(|(id, order)| (*id, state.restarts.of(order))).collect();
                let report = Report::new(supervisor_kind(J::KIND), &state.meter, details).supervising(children);
                let _ = reply.send(report);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<JobMsg<J>>,
        event: SupervisionEvent,
        state: &mut SupervisorState<J>,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(order) = state.workers.remove(&cell.get_id()) else { return Ok(()) };
                state.worker_failed(&myself, order, err.to_string());
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(order) = state.workers.remove(&cell.get_id()) {
                    if let Some(record) = state.active.get_mut(&order) {
                        record.worker = None;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl<J: Job> SupervisorState<J> {
    async fn spawn(&mut self, myself: &ActorRef<JobMsg<J>>, order: OrderId) {
        let Some(record) = self.active.get(&order) else { return };
        if record.worker.is_some() {
            return;
        }
        let args = WorkerArgs {
            job: record.job.clone(),
            retries: record.retries.clone(),
            deps: Arc::clone(&self.deps),
            supervisor: myself.clone(),
            meter: Arc::default(),
        };
        match Actor::spawn_linked(None, JobWorker::<J>::default(), args, myself.get_cell()).await {
            Ok((worker, _)) => {
                self.workers.insert(worker.get_id(), order);
                if let Some(record) = self.active.get_mut(&order) {
                    record.worker = Some(worker);
                }
            }
            Err(err) => self.worker_failed(myself, order, format!("could not start: {err}")),
        }
    }

    /// A worker failed (a panic, or it could not start): its attempt counts as failed, and it is restarted after the
    /// policy's delay, unless its attempts or its restart budget are spent.
    fn worker_failed(&mut self, myself: &ActorRef<JobMsg<J>>, order: OrderId, why: String) {
        let Some(record) = self.active.get_mut(&order) else { return };
        record.worker = None;
        let kind = J::KIND.as_str();
        tracing::warn!(%order, kind, error = %why, "a job's actor failed");
        if record.retries.current().is_none() {
            record.retries.begin(crate::domain::Timestamp::now());
        }
        let next = record.retries.failed(format!("the {kind} actor failed: {why}"));
        let restart = match next {
            Next::GiveUp => None,
            Next::TryAgainAfter(_) => self.restarts.after_failure(order, Instant::now()).ok(),
        };
        match restart {
            Some(delay) => {
                myself.send_after(delay, move || JobMsg::Restart(order));
            }
            None => {
                if let Some(record) = self.active.get_mut(&order) {
                    record.retries.give_up();
                }
                self.finish(order);
            }
        }
    }

    /// Moves an order's job that is over to the finished ones; one that gave up becomes a dead letter.
    fn finish(&mut self, order: OrderId) {
        let Some(record) = self.active.remove(&order) else { return };
        if let Some(worker) = &record.worker {
            self.workers.remove(&worker.get_id());
        }
        let view = view_of(&record);
        self.deps.metrics.finished(J::KIND.as_str(), view.state.label());
        if view.state == JobState::DeadLettered {
            let letter = NewDeadLetter {
                kind: J::KIND,
                payment: *record.job.payment(),
                reason: record.retries.last_failure().unwrap_or("every attempt failed").to_owned(),
                attempts: view.attempts.clone(),
            };
            let office = self.deps.office.clone();
            tokio::spawn(async move { office.post(letter).await });
        }
        if self.finished.len() == KEEP_FINISHED {
            self.finished.pop_front();
        }
        self.finished.push_back(view);
    }

    fn view(&self, order: OrderId) -> Option<JobView> {
        match self.active.get(&order) {
            Some(record) => Some(view_of(record)),
            None => self.finished.iter().rev().find(|view| view.payment.order_id == order).cloned(),
        }
    }
}

fn view_of<J: Job>(record: &Record<J>) -> JobView {
    JobView::of(&record.job, &record.retries)
}

impl JobView {
    pub fn of<J: Job>(job: &J, retries: &Retries) -> Self {
        JobView {
            kind: J::KIND,
            payment: *job.payment(),
            state: retries.state(),
            attempts: retries.attempts().to_vec(),
        }
    }
}

fn supervisor_kind(kind: JobKind) -> ActorKind {
    match kind {
        JobKind::Payment => ActorKind::PaymentSupervisor,
        JobKind::Refund => ActorKind::CompensationSupervisor,
    }
}

//! The actor of one job — a PaymentAttempt for a payment, a Compensation for a refund: it makes the job's attempts,
//! waits between them as its `Retries` say, and tells its supervisor after every change, so that the supervisor
//! shows every attempt and can restart the actor where it stopped. An attempt awaits the provider inside the
//! handler: the actor serves one job and nothing else, and what arrives meanwhile (the callback's confirmation)
//! waits its turn in the mailbox. A provider that accepted a charge and then stays silent past the callback timeout
//! counts as a failed attempt.

use std::marker::PhantomData;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::retry::{Next, Retries};
use super::supervisor::{JobMsg, JobView};
use super::{Job, LifecycleDeps, Tried};
use crate::actors::inspect::{ActorKind, InspectReply, Meter, Report};
use crate::domain::{JobKind, Timestamp};

pub struct JobWorker<J>(PhantomData<fn() -> J>);

impl<J> Default for JobWorker<J> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

pub struct WorkerArgs<J: Job> {
    pub job: J,
    pub retries: Retries,
    pub deps: Arc<LifecycleDeps>,
    pub supervisor: ActorRef<JobMsg<J>>,
    pub meter: Arc<Meter>,
}

pub enum WorkerMsg {
    Try,
    /// The provider's callback: the charge succeeded, or failed for the reason given.
    Confirmed(Result<(), String>),
    /// The callback timeout of this attempt ran out.
    Silent(u32),
    Inspect(InspectReply),
}

impl<J: Job> Actor for JobWorker<J> {
    type Msg = WorkerMsg;
    type State = WorkerArgs<J>;
    type Arguments = WorkerArgs<J>;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        args: WorkerArgs<J>,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(WorkerMsg::Try)?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        message: WorkerMsg,
        state: &mut WorkerArgs<J>,
    ) -> Result<(), ActorProcessingErr> {
        state.meter.handled();
        if let WorkerMsg::Inspect(reply) = message {
            let details = serde_json::to_value(JobView::of(&state.job, &state.retries)).unwrap_or_default();
            let kind = match J::KIND {
                JobKind::Payment => ActorKind::PaymentAttempt,
                JobKind::Refund => ActorKind::Compensation,
            };
            let _ = reply.send(Report::new(kind, &state.meter, details));
            return Ok(());
        }
        if state.retries.is_over() {
            return Ok(());
        }
        match message {
            WorkerMsg::Try => {
                let number = state.retries.begin(Timestamp::now());
                match J::KIND {
                    JobKind::Payment => state.deps.metrics.payment_attempt(),
                    JobKind::Refund => state.deps.metrics.compensation_attempt(),
                }
                state.report();
                match state.job.attempt(&state.deps).await {
                    Ok(Tried::Done) => state.retries.succeeded(),
                    Ok(Tried::Moot(why)) => state.retries.abandon(why),
                    Ok(Tried::Awaiting) => {
                        myself.send_after(state.deps.settings.callback_timeout, move || WorkerMsg::Silent(number));
                        return Ok(());
                    }
                    Err(reason) => state.fail(&myself, reason),
                }
            }
            WorkerMsg::Confirmed(Ok(())) => state.retries.succeeded(),
            WorkerMsg::Confirmed(Err(reason)) if state.retries.current().is_some() => state.fail(&myself, reason),
            WorkerMsg::Silent(number) if state.retries.current() == Some(number) => {
                let waited = state.deps.settings.callback_timeout.as_millis();
                state.fail(
                    &myself,
                    format!("the provider accepted the charge but did not call back within {waited} ms"),
                );
            }
            WorkerMsg::Confirmed(Err(_)) | WorkerMsg::Silent(_) | WorkerMsg::Inspect(_) => return Ok(()),
        }
        state.report();
        if state.retries.is_over() {
            myself.stop(None);
        }
        Ok(())
    }
}

impl<J: Job> WorkerArgs<J> {
    fn fail(&mut self, myself: &ActorRef<WorkerMsg>, reason: String) {
        if let Next::TryAgainAfter(wait) = self.retries.failed(reason) {
            myself.send_after(wait, || WorkerMsg::Try);
        }
    }

    fn report(&self) {
        let progress = JobMsg::Progress { order: self.job.payment().order_id, retries: self.retries.clone() };
        let _ = self.supervisor.cast(progress);
    }
}

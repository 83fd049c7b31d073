//! Paying for an order and what follows: a buyer starts a payment, the provider's callback says how it went (the
//! order's shard decides paid, or a refund if the order ended meanwhile), and an admin watches the payment and
//! compensation jobs and replays dead letters.

use ractor::rpc::CallResult;
use serde::Serialize;

use super::{Engine, EngineError, OrderStepError};
use crate::actors::lifecycle::{Job, JobLink, JobMsg, JobView, JobsView, Pay, Refund};
use crate::actors::sale::shard::book::OrderAct;
use crate::domain::{
    ChargeResult, DeadLetter, DeadLetterId, JobKind, LetterFilter, Order, OrderId, OrderStatus, PaymentCallback,
    PaymentOrder, Timestamp, UserId,
};
use crate::gateway::SimulatedGateway;

/// An order and its payment job, if one runs or ran lately.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentStatus {
    pub order: Order,
    pub payment: Option<JobView>,
}

/// Why a dead letter was not replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    #[error("no such dead letter")]
    NotFound,
    #[error("the dead letter was already replayed")]
    AlreadyReprocessed,
    #[error("the job's supervisor is restarting; try again")]
    Unavailable,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// Starts paying `user`'s reserved order, or answers the payment already under way; a paid order answers as
    /// it is. Payment is one job per order: asking again never charges twice.
    pub async fn pay(&self, order: OrderId, user: UserId) -> Result<PaymentStatus, OrderStepError> {
        let found = self.order(order, Some(user)).await.map_err(|_| OrderStepError::Unavailable)?;
        let found = found.filter(|found| found.user_id == user).ok_or(OrderStepError::NotFound)?;
        match found.status() {
            OrderStatus::Reserved => {
                let handle = self.catalog.get(found.product_id).ok_or(OrderStepError::NotFound)?;
                let payment = PaymentOrder::of_order(&found, handle.product.draft.price_cents);
                let job = self.start_job(&self.payments, Pay(payment)).await.ok_or(OrderStepError::Unavailable)?;
                Ok(PaymentStatus { order: found, payment: Some(job) })
            }
            OrderStatus::Paid => {
                let job = self.job_of(&self.payments, order).await;
                Ok(PaymentStatus { order: found, payment: job })
            }
            status => Err(OrderStepError::Conflict(status)),
        }
    }

    /// The provider's (verified) callback: a success is decided by the order's shard — paid, or refunded if the order
    /// ended meanwhile, and a repeat changes nothing — and either outcome reaches the payment's job.
    pub async fn payment_callback(&self, callback: PaymentCallback) -> Result<Order, OrderStepError> {
        let payment = callback.payment;
        let (order, result) = match callback.result {
            ChargeResult::Succeeded => {
                let act = OrderAct::PaymentSucceeded;
                let order = self
                    .catalog
                    .act(payment.product_id, payment.user_id, payment.order_id, act, self.settings.purchase_timeout)
                    .await?;
                (order, Ok(()))
            }
            ChargeResult::Failed => {
                let order = self
                    .catalog
                    .order(payment.product_id, payment.user_id, payment.order_id, self.settings.purchase_timeout)
                    .await?
                    .ok_or(OrderStepError::NotFound)?;
                (order, Err(callback.reason.unwrap_or_else(|| "the provider reported the charge failed".into())))
            }
        };
        self.payments.cast(JobMsg::Confirm { order: payment.order_id, result });
        Ok(order)
    }

    /// Payment jobs under way and lately finished, with their attempts.
    pub async fn payment_jobs(&self) -> Result<JobsView, EngineError> {
        jobs(&self.payments).await
    }

    /// Refund jobs under way and lately finished, with their attempts.
    pub async fn compensation_jobs(&self) -> Result<JobsView, EngineError> {
        jobs(&self.refunds).await
    }

    pub async fn dead_letters(&self, filter: LetterFilter) -> Result<Vec<DeadLetter>, EngineError> {
        Ok(self.db.dead_letters(filter).await?)
    }

    /// Replays a pending dead letter: its job starts again with a fresh set of attempts. A letter is replayed once.
    pub async fn reprocess(&self, id: DeadLetterId) -> Result<JobView, ReprocessError> {
        let running = match self.db.dead_letter(id).await.map_err(EngineError::from)? {
            None => return Err(ReprocessError::NotFound),
            Some(letter) if letter.reprocessed_at.is_some() => return Err(ReprocessError::AlreadyReprocessed),
            Some(letter) => match letter.kind {
                JobKind::Payment => self.payments.get().is_some(),
                JobKind::Refund => self.refunds.get().is_some(),
            },
        };
        if !running {
            return Err(ReprocessError::Unavailable);
        }
        let taken = self.db.take_dead_letter(id, Timestamp::now()).await.map_err(EngineError::from)?;
        let letter = taken.ok_or(ReprocessError::AlreadyReprocessed)?;
        let started = match letter.kind {
            JobKind::Payment => self.start_job(&self.payments, Pay(letter.payment)).await,
            JobKind::Refund => self.start_job(&self.refunds, Refund(letter.payment)).await,
        };
        started.ok_or_else(|| {
            tracing::error!(id = %letter.id, "a replayed dead letter's job could not be started");
            ReprocessError::Unavailable
        })
    }

    /// The payment provider inside the service, if that is the configured one.
    pub fn simulator(&self) -> Option<&SimulatedGateway> {
        self.lifecycle.gateway.simulator()
    }

    async fn start_job<J: Job>(&self, link: &JobLink<J>, job: J) -> Option<JobView> {
        let supervisor = link.get()?;
        let asked =
            supervisor.call(|reply| JobMsg::Start { job, reply: Some(reply) }, Some(self.settings.purchase_timeout));
        match asked.await {
            Ok(CallResult::Success(view)) => Some(view),
            _ => None,
        }
    }

    async fn job_of<J: Job>(&self, link: &JobLink<J>, order: OrderId) -> Option<JobView> {
        let supervisor = link.get()?;
        let asked = supervisor.call(|reply| JobMsg::View { order, reply }, Some(self.settings.purchase_timeout));
        match asked.await {
            Ok(CallResult::Success(view)) => view,
            _ => None,
        }
    }
}

async fn jobs<J: Job>(link: &JobLink<J>) -> Result<JobsView, EngineError> {
    let supervisor = link.get().ok_or_else(|| EngineError::Actors("the supervisor is restarting".into()))?;
    super::ask(&supervisor, JobMsg::List).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::super::testing::{engine_paying, no_pass, open_sale, settings, until};
    use super::*;
    use crate::actors::JobState;
    use crate::domain::{Quantity, Refund as RefundState};
    use crate::gateway::{GatewayError, PaymentGateway};
    use crate::persistence::Journal;

    /// A provider whose first calls of each kind panic (a bug in the job's actor, as far as it can tell), then
    /// answer at once; it never calls back, so the test delivers the callbacks.
    #[derive(Default)]
    struct Panicky {
        charges_to_panic: AtomicUsize,
        refunds_to_panic: AtomicUsize,
        charges: AtomicUsize,
        refunds: AtomicUsize,
    }

    #[async_trait]
    impl PaymentGateway for Panicky {
        async fn charge(&self, _: &PaymentOrder) -> Result<(), GatewayError> {
            self.charges.fetch_add(1, Ordering::SeqCst);
            if self.charges_to_panic.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                panic!("a charge that panics");
            }
            Ok(())
        }

        async fn refund(&self, _: &PaymentOrder) -> Result<(), GatewayError> {
            self.refunds.fetch_add(1, Ordering::SeqCst);
            if self.refunds_to_panic.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                panic!("a refund that panics");
            }
            Ok(())
        }
    }

    fn succeeded(order: &Order) -> PaymentCallback {
        PaymentCallback { payment: PaymentOrder::of_order(order, 100), result: ChargeResult::Succeeded, reason: None }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payment_and_compensation_actors_that_panic_are_restarted_with_backoff_and_the_ledger_holds() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = Arc::new(Panicky::default());
        gateway.charges_to_panic.store(2, Ordering::SeqCst);
        gateway.refunds_to_panic.store(1, Ordering::SeqCst);
        let engine = engine_paying(&dir, Journal::whole, settings(), gateway.clone()).await;
        let product = open_sale(&engine, 2).await;
        let (payer, canceller) = (UserId::try_from(1).unwrap(), UserId::try_from(2).unwrap());
        let one = Quantity::try_from(1).unwrap();
        let paying = engine.purchase(product, payer, one, None, no_pass).await.unwrap().order_id;
        let cancelled = engine.purchase(product, canceller, one, None, no_pass).await.unwrap().order_id;

        let started = engine.pay(paying, payer).await.unwrap();
        assert_eq!(started.payment.map(|job| job.kind), Some(JobKind::Payment));
        until("the charge got through its panics", || async { gateway.charges.load(Ordering::SeqCst) == 3 }).await;
        let jobs = engine.payment_jobs().await.unwrap();
        assert_eq!(jobs.supervision.restarts, 2, "restarted twice: {jobs:?}");
        let child = &jobs.supervision.children[0];
        assert!(child.last_delay_ms >= 20, "the second restart waited the policy's second delay: {child:?}");
        let attempts = &jobs.jobs[0].attempts;
        assert_eq!(attempts.len(), 3, "each panic counts as a failed attempt: {attempts:?}");
        assert!(attempts[0].failure.as_deref().is_some_and(|why| why.contains("panic")), "{attempts:?}");
        let order = engine.order(paying, Some(payer)).await.unwrap().unwrap();
        assert_eq!(engine.payment_callback(succeeded(&order)).await.unwrap().status(), OrderStatus::Paid);
        until("the payment job succeeded", || async {
            engine.payment_jobs().await.unwrap().jobs[0].state == JobState::Succeeded
        })
        .await;

        // Money for a cancelled order: its refund's actor panics once, is restarted, and refunds.
        let order = engine.cancel(cancelled, canceller).await.unwrap();
        let late = engine.payment_callback(succeeded(&order)).await.unwrap();
        assert_eq!(late.timeline.life().refund(), Some(RefundState::Requested));
        until("the refund is done", || async {
            let order = engine.order(cancelled, Some(canceller)).await.unwrap().unwrap();
            order.timeline.life().refund() == Some(RefundState::Refunded)
        })
        .await;
        assert_eq!(gateway.refunds.load(Ordering::SeqCst), 2);
        assert_eq!(engine.compensation_jobs().await.unwrap().supervision.restarts, 1);

        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.paid, view.released, view.summary.available), (1, 1, 1), "{view:?}");
        assert!(view.invariant_holds);
        assert!(engine.is_ready().await, "no supervisor escalated");
        engine.shutdown().await;
    }
}

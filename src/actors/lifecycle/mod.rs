//! The jobs of an order's life that must happen eventually and may fail on the way: a buyer's payment, and the
//! refund of money that came for an order that could no longer be filled. Each runs under a job supervisor — the
//! PaymentSupervisor and the CompensationSupervisor — as one actor per job that retries with backoff (payments on
//! the one backoff policy, refunds on a tiered schedule) and, when every attempt failed, leaves a dead letter an
//! operator can replay. The order's own steps (paid, refund requested, refunded) are decided and journaled by the
//! shard that holds it, like every other step; these actors only talk to the provider and tell the shard what it
//! answered. Releasing stock needs no actor of its own: it is a journal step the shard retries itself until it is
//! durable, and it never gives up.

mod link;
mod office;
mod retry;
mod supervisor;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use self::link::JobLink;
pub use self::office::DeadLetterOffice;
pub use self::retry::JobState;
use self::retry::Schedule;
pub use self::supervisor::{JobMsg, JobSupervisor, JobSupervisorArgs, JobView, JobsView};
pub use self::worker::WorkerMsg;
use super::sale::catalog::Catalog;
use super::sale::shard::book::{ActRefusal, OrderAct};
use super::sale::shard::ShardMsg;
use super::supervision::BackoffPolicy;
use crate::domain::{JobKind, OrderStatus, PaymentOrder};
use crate::gateway::PaymentGateway;
use crate::metrics::LifecycleMetrics;

/// Tunables of the jobs (see `config/default.toml`).
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// Tries of one payment before it is dead-lettered, with the backoff policy's delays between them.
    pub payment_attempts: u32,
    /// How long an accepted charge waits for the provider's callback before the attempt counts as failed.
    pub callback_timeout: Duration,
    /// The waits between a refund's tries; the refund is dead-lettered after the last.
    pub refund_waits: Vec<Duration>,
    /// The one backoff policy: payment retries and restarts of failed job actors.
    pub policy: BackoffPolicy,
    /// How long a job waits for a shard's answer.
    pub ask_timeout: Duration,
}

/// What every job needs.
pub struct LifecycleDeps {
    pub gateway: Arc<dyn PaymentGateway>,
    pub catalog: Arc<Catalog>,
    pub office: DeadLetterOffice,
    pub settings: LifecycleSettings,
    pub metrics: LifecycleMetrics,
}

/// How one attempt went, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tried {
    Done,
    /// The provider accepted; the outcome comes with its callback.
    Awaiting,
    /// Nothing is left to do, for this reason.
    Moot(String),
}

#[async_trait]
pub trait Job: Clone + Send + Sync + 'static {
    const KIND: JobKind;

    fn payment(&self) -> &PaymentOrder;

    fn schedule(deps: &LifecycleDeps) -> Schedule;

    /// One try; `Err` with the reason it failed.
    async fn attempt(&self, deps: &LifecycleDeps) -> Result<Tried, String>;

    /// Jobs found due when a supervisor starts (after a crash, or its own restart).
    async fn pending(_deps: &LifecycleDeps) -> Vec<Self> {
        Vec::new()
    }
}

/// A buyer's payment of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pay(pub PaymentOrder);

/// Money to give back for an order that could not be filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund(pub PaymentOrder);

pub type PaymentSupervisor = JobSupervisor<Pay>;
pub type CompensationSupervisor = JobSupervisor<Refund>;

#[async_trait]
impl Job for Pay {
    const KIND: JobKind = JobKind::Payment;

    fn payment(&self) -> &PaymentOrder {
        &self.0
    }

    fn schedule(deps: &LifecycleDeps) -> Schedule {
        Schedule::Backoff { policy: deps.settings.policy, attempts: deps.settings.payment_attempts.max(1) }
    }

    /// Charges the order while it awaits payment; one that ended meanwhile is not charged.
    async fn attempt(&self, deps: &LifecycleDeps) -> Result<Tried, String> {
        let payment = &self.0;
        let (catalog, timeout) = (&deps.catalog, deps.settings.ask_timeout);
        let found = catalog.order(payment.product_id, payment.user_id, payment.order_id, timeout).await;
        match found.map_err(|_| "the order's shard did not answer".to_owned())? {
            None => return Ok(Tried::Moot("no such order".into())),
            Some(order) if order.status() != OrderStatus::Reserved => {
                return Ok(Tried::Moot(format!("the order is {}", order.status().as_str())));
            }
            Some(_) => {}
        }
        deps.gateway.charge(payment).await.map(|()| Tried::Awaiting).map_err(|err| err.to_string())
    }
}

#[async_trait]
impl Job for Refund {
    const KIND: JobKind = JobKind::Refund;

    fn payment(&self) -> &PaymentOrder {
        &self.0
    }

    fn schedule(deps: &LifecycleDeps) -> Schedule {
        Schedule::Tiers(deps.settings.refund_waits.clone())
    }

    /// Refunds at the provider, then has the shard journal that the money is back.
    async fn attempt(&self, deps: &LifecycleDeps) -> Result<Tried, String> {
        let payment = &self.0;
        deps.gateway.refund(payment).await.map_err(|err| err.to_string())?;
        let settings = &deps.settings;
        let recorded = deps
            .catalog
            .act(payment.product_id, payment.user_id, payment.order_id, OrderAct::Refunded, settings.ask_timeout)
            .await;
        match recorded {
            Ok(_) => Ok(Tried::Done),
            Err(ActRefusal::Unavailable) => Err("refunded, but the refund could not be recorded yet".into()),
            Err(ActRefusal::NotFound) => Ok(Tried::Moot("no such order".into())),
            Err(ActRefusal::Conflict(status)) => {
                Ok(Tried::Moot(format!("no refund is due (the order is {})", status.as_str())))
            }
        }
    }

    /// Every order whose refund was requested and not done, as its shard holds it.
    async fn pending(deps: &LifecycleDeps) -> Vec<Self> {
        let mut due = Vec::new();
        for handle in deps.catalog.all() {
            for shard in &handle.shards {
                let asked = shard.call(ShardMsg::RefundsDue, Some(deps.settings.ask_timeout)).await;
                if let Ok(ractor::rpc::CallResult::Success(reservations)) = asked {
                    let price = handle.product.draft.price_cents;
                    due.extend(reservations.iter().map(|reservation| Refund(PaymentOrder::of(reservation, price))));
                }
            }
        }
        due
    }
}

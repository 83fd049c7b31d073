//! `Engine`: the actor system behind one door. This part starts the tree under the RootSupervisor, says whether it is
//! ready, and flushes and snapshots everything on shutdown. The HTTP layer's questions are answered in the sibling
//! modules: `purchase` routes a purchase straight to the buyer's shard, `order_steps` carries a buyer's request
//! about an order to the shard holding it, `reads` finds orders, `views` shows products as buyers and admins see them.

mod census;
mod controls;
mod live;
mod order_steps;
mod payments;
mod purchase;
mod reads;
#[cfg(test)]
mod testing;
mod views;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, ActorStatus};

pub use self::live::{KillError, StockFeed};
pub use self::order_steps::OrderStepError;
pub use self::payments::{PaymentStatus, ReprocessError};
pub use self::purchase::PurchaseError;
pub use self::reads::Supervision;
pub use self::views::{AdminView, ProductSummary, SnapshotHealth};
use super::journal::Appender;
use super::lifecycle::{DeadLetterOffice, JobLink, LifecycleDeps, LifecycleSettings, Pay, Refund};
use super::live::{OrderFeed, StockPace};
use super::orders::projector::ProjectorLink;
use super::root::{RootArgs, RootMsg, RootSupervisor};
use super::sale::catalog::Catalog;
use super::sale::product::snapshot_clock::SnapshotPolicy;
use super::sale::product::{ProductDeps, ProductMsg};
use super::supervision::BackoffPolicy;
use crate::gateway::PaymentGateway;
use crate::metrics::Metrics;
use crate::persistence::{Database, DbError, Journal, JournalError, JournalProjection, SnapshotStore};

/// Tunables of the actor system (see `config/default.toml` for what each means).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub purchase_timeout: Duration,
    pub journal_max_batch: usize,
    pub journal_linger: Duration,
    pub snapshots: SnapshotPolicy,
    pub projector_batch: usize,
    pub projector_poll: Duration,
    pub projector_quiet: Duration,
    pub projector_max_lag: u64,
    pub supervision: BackoffPolicy,
    pub payment_attempts: u32,
    pub callback_timeout: Duration,
    pub refund_waits: Vec<Duration>,
    /// Called with each dead letter, if set.
    pub alert_webhook: Option<String>,
    /// How often products publish their live stock.
    pub stock_pace: StockPace,
    /// How long before its window opens a product warms itself up for the sale.
    pub preheat: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no such product")]
    NotFound,
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("actor system unavailable: {0}")]
    Actors(String),
}

pub struct Engine {
    db: Database,
    deps: Arc<ProductDeps>,
    catalog: Arc<Catalog>,
    appender: Appender,
    projection: Arc<dyn JournalProjection>,
    root: ActorRef<RootMsg>,
    settings: EngineSettings,
    lifecycle: Arc<LifecycleDeps>,
    payments: Arc<JobLink<Pay>>,
    refunds: Arc<JobLink<Refund>>,
    orders: Arc<OrderFeed>,
}

impl Engine {
    /// Starts the actor tree and recovers every stored product.
    pub async fn start(
        db: Database,
        journal: Journal,
        snapshots: Arc<dyn SnapshotStore>,
        gateway: Arc<dyn PaymentGateway>,
        settings: EngineSettings,
        metrics: &Metrics,
    ) -> Result<Self, EngineError> {
        let appender = Appender::new();
        let orders = OrderFeed::start();
        let catalog = Arc::new(Catalog::default());
        catalog.global().set(db.global_sale().await?);
        let (payments, refunds) = (Arc::new(JobLink::default()), Arc::new(JobLink::default()));
        let office = DeadLetterOffice::new(
            db.clone(),
            journal.dead_letters.clone(),
            settings.alert_webhook.clone(),
            settings.supervision,
            metrics.lifecycle.clone(),
        );
        let lifecycle = Arc::new(LifecycleDeps {
            gateway,
            catalog: Arc::clone(&catalog),
            office,
            metrics: metrics.lifecycle.clone(),
            settings: LifecycleSettings {
                payment_attempts: settings.payment_attempts,
                callback_timeout: settings.callback_timeout,
                refund_waits: settings.refund_waits.clone(),
                policy: settings.supervision,
                ask_timeout: settings.purchase_timeout,
            },
        });
        let deps = Arc::new(ProductDeps {
            journal: Arc::clone(&journal.replay),
            snapshots,
            writer: appender.clone(),
            snapshot_policy: settings.snapshots,
            snapshot_failures: AtomicU64::new(0),
            refunds: Arc::clone(&refunds),
            orders: Arc::clone(&orders),
            stock_pace: settings.stock_pace,
            preheat: settings.preheat,
        });
        let projection = Arc::clone(&journal.projection);
        let args = RootArgs {
            db: db.clone(),
            journal,
            appender: appender.clone(),
            link: Arc::new(ProjectorLink::default()),
            deps: Arc::clone(&deps),
            catalog: Arc::clone(&catalog),
            settings: settings.clone(),
            lifecycle: Arc::clone(&lifecycle),
            payments: Arc::clone(&payments),
            refunds: Arc::clone(&refunds),
            journal_metrics: metrics.journal.clone(),
        };
        let (root, _) =
            Actor::spawn(None, RootSupervisor, args).await.map_err(|err| EngineError::Actors(err.to_string()))?;
        Ok(Self { db, deps, catalog, appender, projection, root, settings, lifecycle, payments, refunds, orders })
    }

    /// Whether the whole tree runs, the journal writer takes appends, and the database answers.
    pub async fn is_ready(&self) -> bool {
        if self.root.get_status() != ActorStatus::Running || !self.appender.is_running() {
            return false;
        }
        let tree = ask(&self.root, RootMsg::Health).await;
        tree.is_ok_and(|tree| tree.running) && self.db.ping().await.is_ok()
    }

    /// Restarts of the root's children (journal writer, order projector, product supervisor) since start.
    pub async fn tree_restarts(&self) -> Result<u64, EngineError> {
        Ok(ask(&self.root, RootMsg::Health).await?.restarts)
    }

    /// Flushes the journal's open batch, snapshots every product and stops the actors.
    pub async fn shutdown(&self) {
        if !tokio::time::timeout(Duration::from_secs(10), self.appender.flushed()).await.unwrap_or(false) {
            tracing::warn!("journal writer did not flush before shutdown");
        }
        for handle in self.catalog.all() {
            let saved =
                handle.actor.call(|reply| ProductMsg::SnapshotNow(Some(reply)), Some(Duration::from_secs(30))).await;
            if !matches!(saved, Ok(CallResult::Success(Ok(())))) {
                tracing::warn!(product = %handle.product.id, "no snapshot at shutdown; recovery will replay further");
            }
        }
        if let Err(err) = self.root.stop_and_wait(None, Some(Duration::from_secs(30))).await {
            tracing::warn!(error = %err, "the actor tree did not stop in time");
        }
    }
}

/// Asks `actor` and waits (bounded) for its answer.
async fn ask<M, T>(actor: &ActorRef<M>, message: impl FnOnce(ractor::RpcReplyPort<T>) -> M) -> Result<T, EngineError>
where
    M: ractor::Message,
    T: Send + 'static,
{
    match actor.call(message, Some(Duration::from_secs(10))).await {
        Ok(CallResult::Success(answer)) => Ok(answer),
        Ok(_) | Err(_) => Err(EngineError::Actors("an actor did not answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{child, engine, no_pass, open_sale, restart_product, settings, slow, until};
    use super::*;
    use crate::actors::journal::{Ack, Outcome, Recipient, WriterMsg};
    use crate::actors::orders::projector::ProjectorMsg;
    use crate::domain::{JournalEvent, OrderId, Quantity, UserId, Voided};

    fn one() -> Quantity {
        Quantity::try_from(1).unwrap()
    }

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_product_whose_shard_dies_is_restarted_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 50).await;
        for buyer in 1..=10 {
            assert!(engine.purchase(product, user(buyer), one(), None, no_pass).await.is_ok());
        }

        restart_product(&engine, product).await;

        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.reserved, view.summary.available), (10, 40), "recovered from the journal");
        assert!(view.invariant_holds);
        let again = engine.purchase(product, user(1), one(), None, no_pass).await;
        assert!(matches!(again, Err(PurchaseError::LimitExceeded { .. })), "buyers survive the restart: {again:?}");
        for buyer in 11..=20 {
            assert!(engine.purchase(product, user(buyer), one(), None, no_pass).await.is_ok());
        }
        assert_eq!(engine.restarts().await.unwrap(), 1);
        let supervision = engine.supervision().await.unwrap();
        let restarted = &supervision.products.children[0];
        assert_eq!((restarted.child.as_str(), restarted.restarts, restarted.failures_in_window), ("1", 1, 1));
        assert!(restarted.last_delay_ms >= 10, "the policy's first delay: {restarted:?}");
        assert!(supervision.root.children.is_empty(), "the root's children never failed");
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_product_restarted_while_its_reservation_is_in_flight_counts_it_once_it_lands() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, slow(Duration::from_millis(500)), settings()).await;
        let product = open_sale(&engine, 1).await;

        let buying = engine.purchase(product, user(1), one(), None, no_pass);
        let restarting = async {
            until("the reservation is in flight", || async { engine.product(product).unwrap().available == 0 }).await;
            restart_product(&engine, product).await;
        };
        let (first, ()) = tokio::join!(buying, restarting);
        assert_eq!(first, Err(PurchaseError::Unavailable), "the old shard went away before the answer came");

        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.reserved, view.summary.available), (1, 0), "the restarted product waited for it to land");
        assert!(view.invariant_holds);
        assert_eq!(
            engine.purchase(product, user(2), one(), None, no_pass).await,
            Err(PurchaseError::SoldOut),
            "not sold twice"
        );
        engine.shutdown().await;
    }

    /// Kills the root's child that takes `M` messages and waits until the root has started a new one.
    async fn kill_and_await_restart<M: ractor::Message>(engine: &Engine) {
        let old = child::<M>(engine).expect("the child runs");
        old.kill();
        until("the root starts a new one", || {
            let restarted = child::<M>(engine).is_some_and(|now| now.get_id() != old.get_id());
            async move { restarted }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journal_writer_that_stops_is_restarted_by_the_root_and_sales_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 50).await;
        assert!(engine.purchase(product, user(1), one(), None, no_pass).await.is_ok());

        kill_and_await_restart::<WriterMsg>(&engine).await;
        until("the service is ready again", || engine.is_ready()).await;

        assert_eq!(engine.tree_restarts().await.unwrap(), 1);
        let root = engine.supervision().await.unwrap().root;
        assert_eq!(
            root.children.iter().map(|c| (c.child.as_str(), c.restarts)).collect::<Vec<_>>(),
            [("journal_writer", 1)]
        );
        assert!(
            engine.purchase(product, user(2), one(), None, no_pass).await.is_ok(),
            "appends reach the new committer"
        );
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.reserved, view.summary.available), (2, 48));
        assert!(view.invariant_holds);
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_order_projector_that_stops_is_restarted_by_the_root_and_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 50).await;
        kill_and_await_restart::<ProjectorMsg>(&engine).await;

        for buyer in 1..=5 {
            assert!(engine.purchase(product, user(buyer), one(), None, no_pass).await.is_ok());
        }
        until("the new projector writes the new orders", || async {
            engine.orders_of_product(product).await.unwrap().len() == 5
        })
        .await;
        assert_eq!(engine.projection_lag().await.unwrap(), 0);
        assert_eq!(engine.tree_restarts().await.unwrap(), 1);
        assert!(engine.projector_status().await.is_ok(), "the engine reaches the new projector");
        engine.shutdown().await;
    }

    /// A recipient with a bug: hearing about its event kills the committer, outside its guarded append.
    struct Buggy;

    impl Recipient for Buggy {
        fn acknowledge(&self, _: Vec<Outcome>) {
            panic!("a recipient with a bug");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_committer_refuses_appends_at_once_and_the_service_is_not_ready_until_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let slow_restart =
            BackoffPolicy { base: Duration::from_secs(2), cap: Duration::from_secs(2), ..settings().supervision };
        let engine = engine(&dir, Journal::whole, EngineSettings { supervision: slow_restart, ..settings() }).await;
        let product = open_sale(&engine, 10).await;
        assert!(engine.is_ready().await);

        let order_id = OrderId::generate();
        let harmless = JournalEvent::Voided(Voided { order_id, product_id: product });
        engine
            .appender
            .append(harmless, Ack { to: std::sync::Arc::new(Buggy), order_id, span: tracing::Span::none() })
            .unwrap();
        until("the committer is dead", || async { !engine.appender.is_running() }).await;

        let started = std::time::Instant::now();
        assert_eq!(engine.purchase(product, user(1), one(), None, no_pass).await, Err(PurchaseError::Unavailable));
        assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not after the purchase timeout");
        assert!(!engine.is_ready().await, "not ready while no committer runs");
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.in_flight, view.reserved, view.summary.available), (0, 0, 10), "the stock is back");
        assert!(view.invariant_holds);

        until("the writer is restarted", || engine.is_ready()).await;
        assert_eq!(engine.tree_restarts().await.unwrap(), 1);
        assert!(
            engine.purchase(product, user(1), one(), None, no_pass).await.is_ok(),
            "the buyer's slot came back too"
        );
        engine.shutdown().await;
    }
}

//! `Engine`: the actor system behind one door. It starts the tree (journal writer, order projector, product
//! supervisor with its products), and turns the HTTP layer's questions into messages: a purchase goes straight to
//! the user's shard, everything else to the actor that knows the answer. It also flushes and snapshots everything
//! on shutdown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, ActorStatus};
use serde::Serialize;

use super::catalog::{Catalog, ProductHandle};
use super::journal_writer::{Appender, JournalWriter, WriterArgs, WriterMsg};
use super::order_projector::{OrderProjector, ProjectorArgs, ProjectorMsg, ProjectorStatus};
use super::product::snapshot_clock::SnapshotPolicy;
use super::product::{Inspection, ProductDeps, ProductMsg};
use super::product_supervisor::{ProductSupervisor, SupervisorArgs, SupervisorMsg};
use super::stock_shard::book::{PurchaseRequest, Receipt, Refusal, ShardCounts};
use super::stock_shard::ShardMsg;
use super::supervision::Backoff;
use crate::domain::{IdempotencyKey, Order, OrderId, ProductDraft, ProductId, Quantity, SalePhase, Timestamp, UserId};
use crate::persistence::{Database, DbError, Journal, JournalError, SnapshotStore};

/// Tunables of the actor system (see `config/default.toml` for what each means).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub pay_within: Duration,
    pub purchase_timeout: Duration,
    pub journal_max_batch: usize,
    pub journal_linger: Duration,
    pub snapshots: SnapshotPolicy,
    pub projector_batch: usize,
    pub projector_poll: Duration,
    pub projector_quiet: Duration,
    pub projector_max_lag: u64,
    pub retry: Backoff,
    pub max_restarts: usize,
    pub restart_window: Duration,
}

/// How many of a buyer's orders `GET /orders` lists.
const RECENT_ORDERS: i64 = 100;

/// Why a purchase was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PurchaseError {
    #[error("no such product")]
    NotFound,
    #[error("the sale has not started")]
    NotStarted { starts_at: Timestamp },
    #[error("the sale has ended")]
    Ended,
    #[error("sold out")]
    SoldOut,
    #[error("only {available} units left")]
    InsufficientStock { available: u64 },
    #[error("limit of {limit} per user reached")]
    LimitExceeded { limit: u32, held: u32 },
    #[error("the order could not be recorded; nothing was taken")]
    Unavailable,
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

/// A product as buyers see it, with live stock.
#[derive(Debug, Clone, Serialize)]
pub struct ProductSummary {
    pub id: ProductId,
    pub name: String,
    pub price_cents: i64,
    pub stock_total: u64,
    pub available: u64,
    pub per_user_limit: u32,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub phase: SalePhase,
    pub sold_out: bool,
}

/// A product as an admin sees it: where every unit is right now, and whether they add up.
#[derive(Debug, Clone, Serialize)]
pub struct AdminView {
    #[serde(flatten)]
    pub summary: ProductSummary,
    pub shard_count: u32,
    pub pool: u64,
    pub shards: Vec<ShardCounts>,
    pub in_flight: u64,
    pub reserved: u64,
    /// Units in acknowledged orders.
    pub sold: u64,
    /// `pool + Σ shard.available + in_flight + reserved == stock_total`, read while no unit can move between them.
    pub invariant_holds: bool,
    pub snapshot_position: i64,
    pub snapshot_age_seconds: f64,
    /// A snapshot is due by units (taken at the first pause in sales) or being saved.
    pub snapshot_pending: bool,
}

/// How the snapshot store is doing; sales never wait on it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotHealth {
    pub reachable: bool,
    pub failed_saves: u64,
}

pub struct Engine {
    db: Database,
    deps: Arc<ProductDeps>,
    supervisor: ActorRef<SupervisorMsg>,
    writer: ActorRef<WriterMsg>,
    projector: ActorRef<ProjectorMsg>,
    settings: EngineSettings,
}

impl Engine {
    /// Starts the actor tree and recovers every stored product.
    pub async fn start(
        db: Database,
        journal: Arc<dyn Journal>,
        snapshots: Arc<dyn SnapshotStore>,
        settings: EngineSettings,
    ) -> Result<Self, EngineError> {
        let products = db.products().await?;
        let actors = |err: ractor::SpawnErr| EngineError::Actors(err.to_string());
        let projector_args = ProjectorArgs {
            journal: Arc::clone(&journal),
            db: db.clone(),
            batch: settings.projector_batch,
            poll: settings.projector_poll,
            quiet: settings.projector_quiet,
            max_lag: settings.projector_max_lag,
            retry: settings.retry,
        };
        let (projector, _) = Actor::spawn(None, OrderProjector, projector_args).await.map_err(actors)?;
        let appender = Appender::new(settings.journal_max_batch);
        let writer_args = WriterArgs {
            journal: Arc::clone(&journal),
            projector: projector.clone(),
            appender: appender.clone(),
            linger: settings.journal_linger,
        };
        let (writer, _) = Actor::spawn(None, JournalWriter, writer_args).await.map_err(actors)?;
        let deps = Arc::new(ProductDeps {
            journal,
            snapshots,
            writer: appender,
            catalog: Arc::new(Catalog::default()),
            pay_within: settings.pay_within,
            snapshot_policy: settings.snapshots,
            snapshot_failures: AtomicU64::new(0),
        });
        let supervisor_args = SupervisorArgs {
            deps: Arc::clone(&deps),
            db: db.clone(),
            products,
            backoff: settings.retry,
            max_restarts: settings.max_restarts,
            restart_window: settings.restart_window,
        };
        let (supervisor, _) = Actor::spawn(None, ProductSupervisor, supervisor_args).await.map_err(actors)?;
        Ok(Self { db, deps, supervisor, writer, projector, settings })
    }

    pub async fn purchase(
        &self,
        product: ProductId,
        user: UserId,
        quantity: Quantity,
        key: Option<IdempotencyKey>,
    ) -> Result<Receipt, PurchaseError> {
        let handle = self.deps.catalog.get(product).ok_or(PurchaseError::NotFound)?;
        let window = handle.product.draft.window;
        match window.phase(Timestamp::now()) {
            SalePhase::Upcoming => return Err(PurchaseError::NotStarted { starts_at: window.starts_at() }),
            SalePhase::Ended => return Err(PurchaseError::Ended),
            SalePhase::Open => {}
        }
        // A retried request must still find its order, so only key-less requests take the shortcut.
        if key.is_none() && handle.gauges.is_sold_out() {
            return Err(PurchaseError::SoldOut);
        }
        let shard = handle.shard_of(user);
        let asked = shard
            .call(
                |reply| ShardMsg::Purchase(PurchaseRequest { user, quantity, key, reply }),
                Some(self.settings.purchase_timeout),
            )
            .await;
        match asked {
            Ok(CallResult::Success(Ok(receipt))) => Ok(receipt),
            Ok(CallResult::Success(Err(refusal))) => Err(match refusal {
                Refusal::SoldOut => PurchaseError::SoldOut,
                Refusal::InsufficientStock { available } => PurchaseError::InsufficientStock { available },
                Refusal::LimitExceeded { limit, held } => PurchaseError::LimitExceeded { limit, held },
                Refusal::Unavailable => PurchaseError::Unavailable,
            }),
            Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => Err(PurchaseError::Unavailable),
        }
    }

    pub async fn create_product(&self, draft: ProductDraft) -> Result<ProductSummary, EngineError> {
        let created =
            self.supervisor.call(|reply| SupervisorMsg::Create { draft, reply }, Some(Duration::from_secs(30))).await;
        let product = match created {
            Ok(CallResult::Success(Ok(product))) => product,
            Ok(CallResult::Success(Err(why))) => return Err(EngineError::Actors(why)),
            Ok(_) | Err(_) => return Err(EngineError::Actors("product supervisor did not answer".into())),
        };
        self.product(product.id).ok_or(EngineError::NotFound)
    }

    pub fn products(&self) -> Vec<ProductSummary> {
        self.deps.catalog.all().iter().map(|handle| summarize(handle)).collect()
    }

    pub fn product(&self, id: ProductId) -> Option<ProductSummary> {
        self.deps.catalog.get(id).map(|handle| summarize(&handle))
    }

    pub async fn inspect(&self, id: ProductId) -> Result<AdminView, EngineError> {
        let handle = self.deps.catalog.get(id).ok_or(EngineError::NotFound)?;
        let inspection: Inspection = ask(&handle.actor, ProductMsg::Inspect).await?;
        let in_flight = inspection.shards.iter().map(|s| s.in_flight).sum();
        let reserved = inspection.shards.iter().map(|s| s.reserved).sum();
        let available: u64 = inspection.shards.iter().map(|s| s.available).sum();
        let summary = summarize(&handle);
        Ok(AdminView {
            invariant_holds: inspection.pool + available + in_flight + reserved == summary.stock_total,
            shard_count: handle.product.draft.shards.get(),
            pool: inspection.pool,
            shards: inspection.shards,
            in_flight,
            reserved,
            sold: reserved,
            snapshot_position: inspection.snapshot_position,
            snapshot_age_seconds: inspection.snapshot_age_seconds,
            snapshot_pending: inspection.snapshot_pending,
            summary,
        })
    }

    /// An order from `orders`, or — if the projector has not written it yet — from the shard that holds it: the
    /// shard of `holder` in every product, or with no holder given, every shard.
    pub async fn order(&self, id: OrderId, holder: Option<UserId>) -> Result<Option<Order>, EngineError> {
        if let Some(order) = self.db.order(id).await? {
            return Ok(Some(order));
        }
        for handle in self.deps.catalog.all() {
            let shards = match holder {
                Some(user) => std::slice::from_ref(handle.shard_of(user)),
                None => &handle.shards[..],
            };
            for shard in shards {
                if let Some(reservation) = ask(shard, |reply| ShardMsg::Order(id, reply)).await? {
                    return Ok(Some(Order::reserved(&reservation)));
                }
            }
        }
        Ok(None)
    }

    /// A user's most recent orders, newest first, including those the projector has not written yet.
    pub async fn orders_of_user(&self, user: UserId) -> Result<Vec<Order>, EngineError> {
        let mut orders = self.db.orders_of_user(user, RECENT_ORDERS).await?;
        let projected: HashSet<OrderId> = orders.iter().map(|order| order.order_id).collect();
        for handle in self.deps.catalog.all() {
            let shard = handle.shard_of(user);
            let held = ask(shard, |reply| ShardMsg::OrdersOf(user, reply)).await?;
            let fresh = held.iter().filter(|reservation| !projected.contains(&reservation.order_id));
            orders.extend(fresh.map(|reservation| Order::reserved(reservation)));
        }
        orders.sort_by_key(|order| std::cmp::Reverse(order.reserved_at));
        orders.truncate(RECENT_ORDERS as usize);
        Ok(orders)
    }

    pub async fn orders_of_product(&self, product: ProductId) -> Result<Vec<Order>, EngineError> {
        self.deps.catalog.get(product).ok_or(EngineError::NotFound)?;
        Ok(self.db.orders_of_product(product).await?)
    }

    pub async fn projector_status(&self) -> Result<ProjectorStatus, EngineError> {
        ask(&self.projector, ProjectorMsg::Status).await
    }

    /// How many journal events the projector has yet to write into `orders`: 0 once it has caught up.
    pub async fn projection_lag(&self) -> Result<u64, EngineError> {
        Ok(self.deps.journal.projection_lag(&self.db).await?)
    }

    /// Product restarts performed by the supervisor since start.
    pub async fn restarts(&self) -> Result<u64, EngineError> {
        ask(&self.supervisor, SupervisorMsg::Restarts).await
    }

    pub async fn snapshot_health(&self) -> SnapshotHealth {
        SnapshotHealth {
            reachable: self.deps.snapshots.ping().await.is_ok(),
            failed_saves: self.deps.snapshot_failures.load(Ordering::Relaxed),
        }
    }

    /// Whether every long-lived actor is running and the database answers.
    pub async fn is_ready(&self) -> bool {
        let running = |status: ActorStatus| status == ActorStatus::Running;
        running(self.supervisor.get_status())
            && running(self.writer.get_status())
            && running(self.projector.get_status())
            && self.db.ping().await.is_ok()
    }

    /// Flushes the journal's open batch, snapshots every product and stops the actors.
    pub async fn shutdown(&self) {
        if ask(&self.writer, WriterMsg::Flush).await.is_err() {
            tracing::warn!("journal writer did not flush before shutdown");
        }
        for handle in self.deps.catalog.all() {
            let saved =
                handle.actor.call(|reply| ProductMsg::SnapshotNow(Some(reply)), Some(Duration::from_secs(30))).await;
            if !matches!(saved, Ok(CallResult::Success(Ok(())))) {
                tracing::warn!(product = %handle.product.id, "no snapshot at shutdown; recovery will replay further");
            }
        }
        self.supervisor.stop(None);
        self.writer.stop(None);
        self.projector.stop(None);
    }
}

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

fn summarize(handle: &ProductHandle) -> ProductSummary {
    let draft = &handle.product.draft;
    let stock_total = u64::from(draft.stock.get());
    ProductSummary {
        id: handle.product.id,
        name: draft.name.clone(),
        price_cents: draft.price_cents,
        stock_total,
        available: stock_total.saturating_sub(handle.gauges.taken()),
        per_user_limit: draft.per_user_limit.get(),
        starts_at: draft.window.starts_at(),
        ends_at: draft.window.ends_at(),
        phase: draft.window.phase(Timestamp::now()),
        sold_out: handle.gauges.is_sold_out(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::{PerUserLimit, Position, Recorded, SaleWindow, ShardCount, StockLevel};
    use crate::persistence::{Projected, SqlJournal, SqlSnapshots};

    /// Reports the first `failures` appends failed, then behaves like the SQL journal it wraps. With `lands`,
    /// those appends are written all the same: the answer is lost, not the events.
    struct FlakyJournal {
        failures: AtomicUsize,
        lands: bool,
        inner: SqlJournal,
    }

    impl FlakyJournal {
        fn failing(failures: usize, inner: SqlJournal) -> Arc<dyn Journal> {
            Arc::new(Self { failures: AtomicUsize::new(failures), lands: false, inner })
        }

        fn losing_answers(failures: usize, inner: SqlJournal) -> Arc<dyn Journal> {
            Arc::new(Self { failures: AtomicUsize::new(failures), lands: true, inner })
        }
    }

    #[async_trait]
    impl Journal for FlakyJournal {
        fn append(&self, events: &[crate::domain::JournalEvent]) -> Result<Vec<Position>, JournalError> {
            if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
                if self.lands {
                    self.inner.append(events)?;
                }
                return Err(JournalError::Unavailable("disk on fire".into()));
            }
            self.inner.append(events)
        }

        async fn read_product(
            &self,
            p: ProductId,
            after: Position,
            limit: usize,
        ) -> Result<Vec<Recorded>, JournalError> {
            self.inner.read_product(p, after, limit).await
        }

        async fn project_next(&self, orders: &Database, limit: usize) -> Result<Projected, JournalError> {
            self.inner.project_next(orders, limit).await
        }

        async fn projection_lag(&self, orders: &Database) -> Result<u64, JournalError> {
            self.inner.projection_lag(orders).await
        }
    }

    fn settings() -> EngineSettings {
        EngineSettings {
            pay_within: Duration::from_secs(60),
            purchase_timeout: Duration::from_secs(5),
            journal_max_batch: 64,
            journal_linger: Duration::ZERO,
            snapshots: SnapshotPolicy { every_units: 1_000, every: Duration::from_secs(60), busy_max_units: 10_000 },
            projector_batch: 100,
            projector_poll: Duration::from_millis(50),
            projector_quiet: Duration::from_millis(20),
            projector_max_lag: 10_000,
            retry: Backoff { base: Duration::from_millis(10), factor: 2, cap: Duration::from_millis(100) },
            max_restarts: 3,
            restart_window: Duration::from_secs(10),
        }
    }

    /// An engine on a fresh SQLite file whose journal `wrap` builds around the SQL one.
    async fn engine(dir: &tempfile::TempDir, wrap: impl FnOnce(SqlJournal) -> Arc<dyn Journal>) -> Engine {
        engine_with(dir, wrap, settings()).await
    }

    async fn engine_with(
        dir: &tempfile::TempDir,
        wrap: impl FnOnce(SqlJournal) -> Arc<dyn Journal>,
        settings: EngineSettings,
    ) -> Engine {
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let db = Database::connect(&url, 4, Duration::from_secs(5)).unwrap();
        db.migrate().unwrap();
        let journal = wrap(SqlJournal::new(db.clone()));
        Engine::start(db.clone(), journal, Arc::new(SqlSnapshots::new(db)), settings).await.unwrap()
    }

    /// An open sale of `stock` units, one per buyer, over two shards.
    async fn open_sale(engine: &Engine, stock: i64) -> ProductId {
        let now = Timestamp::now();
        let draft = ProductDraft {
            name: "Phone".into(),
            price_cents: 100,
            stock: StockLevel::try_from(stock).unwrap(),
            per_user_limit: PerUserLimit::try_from(1).unwrap(),
            shards: ShardCount::try_from(2).unwrap(),
            window: SaleWindow::new(now, now.plus(Duration::from_secs(3600))).unwrap(),
        };
        engine.create_product(draft).await.unwrap().id
    }

    #[tokio::test]
    async fn a_failed_append_puts_the_stock_and_the_buyers_slot_back() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, |inner| FlakyJournal::failing(1, inner)).await;
        let product = open_sale(&engine, 5).await;
        let (user, one) = (UserId::try_from(7).unwrap(), Quantity::try_from(1).unwrap());

        let refused = engine.purchase(product, user, one, None).await;
        assert_eq!(refused, Err(PurchaseError::Unavailable));
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.in_flight, view.reserved, view.summary.available), (0, 0, 5), "nothing was taken");
        assert!(view.invariant_holds);

        let receipt = engine.purchase(product, user, one, None).await;
        assert!(receipt.is_ok(), "the buyer's slot came back with the stock: {receipt:?}");
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.reserved, view.summary.available), (1, 4));
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_append_that_landed_after_all_is_voided_not_sold_twice() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, |inner| FlakyJournal::losing_answers(1, inner)).await;
        let product = open_sale(&engine, 1).await;
        let one = Quantity::try_from(1).unwrap();
        let (first, second) = (UserId::try_from(1).unwrap(), UserId::try_from(2).unwrap());

        assert_eq!(engine.purchase(product, first, one, None).await, Err(PurchaseError::Unavailable));
        let sold = engine.purchase(product, second, one, None).await.expect("the unit came back and sells");

        restart_product(&engine, product).await;
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.reserved, view.summary.available), (1, 0), "the refused reservation was voided");
        assert!(view.invariant_holds);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.projection_lag().await.unwrap() > 0 {
            assert!(std::time::Instant::now() < deadline, "the projector did not catch up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let orders = engine.orders_of_product(product).await.unwrap();
        assert_eq!(orders.iter().map(|order| order.order_id).collect::<Vec<_>>(), vec![sold.order_id]);
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buyers_read_orders_the_projector_has_not_written_yet() {
        let dir = tempfile::tempdir().unwrap();
        let deferred =
            EngineSettings { projector_quiet: Duration::from_secs(3600), projector_max_lag: u64::MAX, ..settings() };
        let engine = engine_with(&dir, |sql| Arc::new(sql), deferred).await;
        let product = open_sale(&engine, 10).await;
        let one = Quantity::try_from(1).unwrap();
        let buyer = UserId::try_from(3).unwrap();
        let receipt = engine.purchase(product, buyer, one, None).await.unwrap();

        assert_eq!(engine.db.order(receipt.order_id).await.unwrap(), None, "projection waits for a quiet journal");
        assert!(engine.projection_lag().await.unwrap() > 0);
        let order = engine.order(receipt.order_id, Some(buyer)).await.unwrap().expect("the buyer sees the order");
        assert_eq!((order.user_id, order.product_id, order.quantity), (buyer, product, one));
        let seen_by_admin = engine.order(receipt.order_id, None).await.unwrap();
        assert_eq!(seen_by_admin.map(|order| order.order_id), Some(receipt.order_id));
        let mine = engine.orders_of_user(buyer).await.unwrap();
        assert_eq!(mine.iter().map(|order| order.order_id).collect::<Vec<_>>(), vec![receipt.order_id]);
        assert!(engine.orders_of_user(UserId::try_from(4).unwrap()).await.unwrap().is_empty());
        engine.shutdown().await;
    }

    /// Kills one of `product`'s shards and waits until the supervisor has recovered the product.
    async fn restart_product(engine: &Engine, product: ProductId) {
        let before = engine.deps.catalog.get(product).unwrap();
        before.shards[0].kill();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.deps.catalog.get(product).is_none_or(|now| Arc::ptr_eq(&now, &before)) {
            assert!(std::time::Instant::now() < deadline, "the product was not restarted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_product_whose_shard_dies_is_restarted_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, |sql| Arc::new(sql)).await;
        let product = open_sale(&engine, 50).await;
        let one = Quantity::try_from(1).unwrap();
        for user in 1..=10 {
            assert!(engine.purchase(product, UserId::try_from(user).unwrap(), one, None).await.is_ok());
        }

        restart_product(&engine, product).await;

        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.reserved, view.summary.available), (10, 40), "recovered from the journal");
        assert!(view.invariant_holds);
        let again = engine.purchase(product, UserId::try_from(1).unwrap(), one, None).await;
        assert!(matches!(again, Err(PurchaseError::LimitExceeded { .. })), "buyers survive the restart: {again:?}");
        for user in 11..=20 {
            assert!(engine.purchase(product, UserId::try_from(user).unwrap(), one, None).await.is_ok());
        }
        assert_eq!(engine.restarts().await.unwrap(), 1);
        engine.shutdown().await;
    }
}

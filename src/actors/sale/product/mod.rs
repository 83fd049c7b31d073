//! The ProductActor: coordinator of one product. It recovers the product's stock from its snapshot and the journal
//! after it, starts the shards with the reservations that belong to them, and carries out what its `ProductBook`
//! decides about the central pool: grants to dry shards, reclaims before a sell-out, reopening. It also takes
//! snapshots and answers inspections. It calls its shards (surrender, counts, snapshot) but shards only ever cast
//! to it, so the two can never wait on each other. A shard's failure fails the product, whose supervisor restarts
//! it from the journal once everything the old incarnation handed to the journal writer has settled.
//!
//! An admin's restock is journaled (`StockAdded`) and awaited inside its handler: no snapshot can be taken between
//! the append and its answer, so every snapshot either holds the restock or was taken before it was appended, and
//! recovery then finds it in the journal after the snapshot's position. Only once it is durable do its units reach
//! the pool. Before a sale opens (on an admin's word, or `preheat_secs` ahead on its own) the product warms its
//! shards: their buyer maps are sized for the crowd, so the first second of the sale does not pay for growing them.

pub mod book;
pub mod pool;
mod recovery;
pub mod snapshot_clock;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;

use self::book::{Command, ProductBook};
use self::snapshot_clock::{SnapshotClock, SnapshotPolicy};
use super::gauges::Gauges;
use super::shard::book::{ShardBook, ShardCounts};
use super::shard::{PoolRequest, ShardArgs, ShardMsg, StockShard};
use crate::actors::inspect::{ActorKind, InspectReply, Meter, Report};
use crate::actors::journal::{AppendFailed, Appender};
use crate::actors::lifecycle::{JobLink, Refund};
use crate::actors::live::{OrderFeed, Pace, ProductLive, StockPace};
use crate::domain::{
    JournalEvent, OrderId, Position, Product, Reservation, RestockUnits, SaleWindow, StockAdded, StockLevel,
    StockSnapshot, Timeline, Timestamp,
};
use crate::persistence::{JournalReplay, SnapshotError, SnapshotStore};

/// What every product actor needs, shared.
pub struct ProductDeps {
    pub journal: Arc<dyn JournalReplay>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub writer: Appender,
    pub snapshot_policy: SnapshotPolicy,
    /// Snapshots that could not be saved, across all products, since start.
    pub snapshot_failures: AtomicU64,
    /// Where shards hand the refunds of money that came too late.
    pub refunds: Arc<JobLink<Refund>>,
    /// Where shards tell buyers of their orders' changes.
    pub orders: Arc<OrderFeed>,
    /// How often products publish their live stock.
    pub stock_pace: StockPace,
    /// How long before its window opens a product warms itself up.
    pub preheat: Duration,
}

pub struct ProductActor;

pub struct ProductArgs {
    pub product: Product,
    pub deps: Arc<ProductDeps>,
    /// Fresh for each incarnation, shared with its shards and the catalog.
    pub gauges: Arc<Gauges>,
    /// The same for every incarnation: the live feed and the sale switch.
    pub live: Arc<ProductLive>,
}

pub struct ProductState {
    product: Product,
    deps: Arc<ProductDeps>,
    book: ProductBook,
    shards: Vec<ActorRef<ShardMsg>>,
    gauges: Arc<Gauges>,
    live: Arc<ProductLive>,
    pace: Pace,
    snapshot: SnapshotClock,
    meter: Arc<Meter>,
    /// The sale's own stock plus every restock.
    stock: u64,
    /// Every durable restock, for the snapshots.
    restocks: Vec<StockAdded>,
    /// What the last warm-up did, if there was one.
    warmed: Option<Warmed>,
}

/// Why a restock was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RestockError {
    #[error("stock would exceed {max} units (it is {stock})")]
    TooMuch { stock: u64, max: u64 },
    #[error("the journal did not record the restock; nothing was added")]
    Unavailable,
}

/// What a warm-up made ready.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Warmed {
    pub shards: usize,
    /// Buyers each shard now has room for without growing its maps.
    pub buyers_per_shard: Vec<usize>,
    /// Units already in the shards' slices, sold without asking the pool.
    pub in_slices: u64,
    pub pool: u64,
    pub journal_position: i64,
    pub snapshot_position: i64,
    pub at: Timestamp,
}

/// A product's stock as its actors see it at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub pool: u64,
    pub shards: Vec<ShardCounts>,
    pub sold_out: bool,
    pub snapshot_position: i64,
    pub snapshot_age_seconds: f64,
    pub snapshot_pending: bool,
}

impl Inspection {
    /// Every shard's counts added up (the journal position: the furthest any shard reaches).
    pub fn totals(&self) -> ShardCounts {
        self.shards.iter().fold(ShardCounts::default(), |sum, shard| ShardCounts {
            available: sum.available + shard.available,
            in_flight: sum.in_flight + shard.in_flight,
            reserved: sum.reserved + shard.reserved,
            paid: sum.paid + shard.paid,
            released: sum.released + shard.released,
            buyers: sum.buyers + shard.buyers,
            waiting: sum.waiting + shard.waiting,
            deadlines: sum.deadlines + shard.deadlines,
            batch_in_flight: sum.batch_in_flight + shard.batch_in_flight,
            journal_position: sum.journal_position.max(shard.journal_position),
        })
    }
}

pub type SnapshotReply = RpcReplyPort<Result<(), String>>;

/// Most buyers a warm-up makes room for in one shard: enough for a sale of millions over a few shards, and a bound
/// on the memory a warm-up takes before anyone buys.
const MAX_WARM: usize = 262_144;

pub enum ProductMsg {
    Pool(PoolRequest),
    /// Where every unit is, for the admin's view of the product.
    Count(RpcReplyPort<Inspection>),
    /// The shards' addresses, for the catalog.
    Shards(RpcReplyPort<Vec<ActorRef<ShardMsg>>>),
    Tick,
    /// Publish the live stock if it changed.
    Publish,
    /// An admin adds units; answered with the stock after it, once the restock is durable.
    Restock(RestockUnits, RpcReplyPort<Result<u64, RestockError>>),
    /// An admin moved the sale's window (already stored).
    Window(SaleWindow),
    /// Get ready for the sale's first second; answered with what was made ready.
    Preheat(RpcReplyPort<Warmed>),
    /// An admin switched this sale or every sale (stored and set already): tell the subscribers.
    Announce,
    Inspect(InspectReply),
    SnapshotNow(Option<SnapshotReply>),
    SnapshotSaved {
        result: Result<(), SnapshotError>,
        taken: u64,
        position: i64,
        reply: Option<SnapshotReply>,
    },
}

impl From<PoolRequest> for ProductMsg {
    fn from(request: PoolRequest) -> Self {
        ProductMsg::Pool(request)
    }
}

impl TryFrom<ProductMsg> for PoolRequest {
    type Error = ProductMsg;

    fn try_from(message: ProductMsg) -> Result<Self, ProductMsg> {
        match message {
            ProductMsg::Pool(request) => Ok(request),
            other => Err(other),
        }
    }
}

impl Actor for ProductActor {
    type Msg = ProductMsg;
    type State = ProductState;
    type Arguments = ProductArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProductMsg>,
        ProductArgs { product, deps, gauges, live }: ProductArgs,
    ) -> Result<ProductState, ActorProcessingErr> {
        let started = Instant::now();
        // A previous incarnation's reservations may still be in the writer's batch: once they are durable (or
        // refused), the journal holds all of this product's history, and none of its units is sold twice.
        if !deps.writer.flushed().await {
            return Err("the journal writer did not answer a flush before recovery".into());
        }
        let recovered = recovery::recover(&product, deps.journal.as_ref(), deps.snapshots.as_ref()).await?;
        let added: u64 = recovered.restocks.iter().map(|added| u64::from(added.units.get())).sum();
        let stock = u64::from(product.draft.stock.get()) + added;
        let holding = recovered.orders.iter().filter(|(_, timeline)| timeline.life().holds_units());
        let taken: u64 = holding.map(|(reservation, _)| u64::from(reservation.quantity.get())).sum();
        if taken > stock {
            tracing::error!(product = %product.id, taken, stock, "journal holds more reservations than stock");
        }
        let shard_count = product.draft.shards;
        let book = ProductBook::new(stock.saturating_sub(taken), shard_count.get() as usize);
        gauges.set_stock(stock);
        gauges.record(0, taken);

        let mut per_shard: Vec<Vec<(Arc<Reservation>, Timeline)>> =
            (0..shard_count.get()).map(|_| Vec::new()).collect();
        let order_count = recovered.orders.len();
        for (reservation, timeline) in recovered.orders {
            per_shard[shard_count.shard_of(reservation.user_id)].push((reservation, timeline));
        }
        let mut shards = Vec::with_capacity(per_shard.len());
        for (index, orders) in per_shard.into_iter().enumerate() {
            let limit = product.draft.per_user_limit.get();
            let pay_within = product.draft.payment_window.duration();
            let book = ShardBook::new(product.id, limit, pay_within, recovered.position, orders);
            let args = ShardArgs {
                index,
                book,
                pool: myself.get_derived(),
                writer: deps.writer.clone(),
                gauges: Arc::clone(&gauges),
                refunds: Arc::clone(&deps.refunds),
                price_cents: product.draft.price_cents,
                orders: Arc::clone(&deps.orders),
            };
            let (shard, _) = Actor::spawn_linked(None, StockShard, args, myself.get_cell()).await?;
            shards.push(shard);
        }
        let mut state = ProductState {
            snapshot: SnapshotClock::new(taken, recovered.position.get(), Instant::now()),
            product,
            pace: Pace::new(deps.stock_pace),
            deps,
            book,
            shards,
            gauges,
            live,
            meter: Arc::default(),
            stock,
            restocks: recovered.restocks,
            warmed: None,
        };
        let opening = state.book.open();
        state.perform(opening).await?;
        state.publish();
        myself.send_interval(Duration::from_secs(1), || ProductMsg::Tick);
        myself.send_interval(state.deps.stock_pace.tick(), || ProductMsg::Publish);
        tracing::info!(
            product = %state.product.id, orders = order_count, taken, pool = state.book.units(),
            position = recovered.position.get(), took_ms = started.elapsed().as_millis() as u64, "product recovered"
        );
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<ProductMsg>, state: &mut ProductState) -> Result<(), ActorProcessingErr> {
        for shard in &state.shards {
            shard.stop(None);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ProductMsg>,
        message: ProductMsg,
        state: &mut ProductState,
    ) -> Result<(), ActorProcessingErr> {
        state.meter.handled();
        match message {
            ProductMsg::Pool(PoolRequest::NeedStock { shard, want }) => {
                let commands = state.book.need_stock(shard, want);
                state.perform(commands).await?;
            }
            ProductMsg::Pool(PoolRequest::StockReturned { units }) => {
                let commands = state.book.stock_returned();
                if !commands.is_empty() {
                    tracing::info!(product = %state.product.id, units, "stock came back after sell-out; reopening");
                }
                state.perform(commands).await?;
            }
            ProductMsg::Count(reply) => {
                let _ = reply.send(state.inspection().await?);
            }
            ProductMsg::Publish => state.publish(),
            ProductMsg::Restock(units, reply) => {
                let outcome = state.restock(units).await?;
                let _ = reply.send(outcome);
            }
            ProductMsg::Window(window) => {
                tracing::info!(product = %state.product.id, window = ?window, "sale window moved");
                state.product.draft.window = window;
                state.announce();
            }
            ProductMsg::Preheat(reply) => {
                let warmed = state.warm().await?;
                let _ = reply.send(warmed);
            }
            ProductMsg::Announce => state.announce(),
            ProductMsg::Inspect(reply) => {
                let inspection = state.inspection().await?;
                let _ = reply.send(state.report(inspection));
            }
            ProductMsg::Shards(reply) => {
                let _ = reply.send(state.shards.clone());
            }
            ProductMsg::Tick => {
                for shard in &state.shards {
                    shard.cast(ShardMsg::Tick)?;
                }
                let opens = state.product.draft.window.starts_at();
                let now = Timestamp::now();
                if state.warmed.is_none() && now < opens && opens <= now.plus(state.deps.preheat) {
                    state.warm().await?;
                }
                if state.snapshot.tick(state.gauges.taken(), Instant::now(), &state.deps.snapshot_policy) {
                    state.take_snapshot(&myself, None).await?;
                }
            }
            ProductMsg::SnapshotNow(reply) => state.take_snapshot(&myself, reply).await?,
            ProductMsg::SnapshotSaved { result, taken, position, reply } => {
                state.snapshot.saved(result.is_ok().then_some((taken, position)), Instant::now());
                let outcome = result.map_err(|err| {
                    state.deps.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(product = %state.product.id, error = %err, "snapshot not saved; will retry");
                    err.to_string()
                });
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<ProductMsg>,
        event: SupervisionEvent,
        state: &mut ProductState,
    ) -> Result<(), ActorProcessingErr> {
        // A shard owns stock and buyers; without it the product cannot sell correctly, so any way a shard ends
        // while the product runs fails the product, and its supervisor restarts both from the journal.
        match event {
            SupervisionEvent::ActorFailed(_, err) => {
                Err(format!("a stock shard of product {} failed: {err}", state.product.id).into())
            }
            SupervisionEvent::ActorTerminated(_, _, reason) => Err(format!(
                "a stock shard of product {} stopped: {}",
                state.product.id,
                reason.unwrap_or_else(|| "no reason given".into())
            )
            .into()),
            _ => Ok(()),
        }
    }
}

impl ProductState {
    /// Where every unit of the product is, read from its shards in turn.
    async fn inspection(&self) -> Result<Inspection, ActorProcessingErr> {
        let mut shards = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            shards.push(ractor::call!(shard, ShardMsg::Counts)?);
        }
        Ok(Inspection {
            pool: self.book.units(),
            shards,
            sold_out: self.book.is_sold_out(),
            snapshot_position: self.snapshot.position(),
            snapshot_age_seconds: self.snapshot.age(Instant::now()).as_secs_f64(),
            snapshot_pending: self.snapshot.pending(self.gauges.taken(), &self.deps.snapshot_policy),
        })
    }

    fn report(&self, inspection: Inspection) -> Report {
        let total = inspection.totals();
        let details = serde_json::json!({
            "product_id": self.product.id,
            "name": self.product.draft.name,
            "stock": self.stock,
            "restocks": self.restocks.len(),
            "warmed": self.warmed,
            "sale": self.live.sale(),
            "pool": inspection.pool,
            "available": inspection.pool + total.available,
            "in_flight": total.in_flight,
            "reserved": total.reserved,
            "paid": total.paid,
            "buyers": total.buyers,
            "batch_in_flight": total.batch_in_flight,
            "sold_out": inspection.sold_out,
            "snapshot_age_seconds": inspection.snapshot_age_seconds,
            "snapshot_position": inspection.snapshot_position,
            "journal_position": total.journal_position,
        });
        Report::new(ActorKind::Product, &self.meter, details).children_restart_with_it()
    }

    /// Publishes what buyers can still get, if it changed and the feed's pace allows.
    fn publish(&mut self) {
        self.live.refresh(self.product.draft.window, &self.gauges, &mut self.pace, Instant::now());
    }

    /// Publishes the sale as it stands now, whatever the pace: an admin changed it.
    fn announce(&self) {
        self.live.announce(self.product.draft.window, &self.gauges);
    }

    /// Journals a restock and waits for it to be durable; then its units join the pool (reopening a sold-out sale)
    /// and the live stock rises.
    async fn restock(&mut self, units: RestockUnits) -> Result<Result<u64, RestockError>, ActorProcessingErr> {
        let added = u64::from(units.get());
        let max = StockLevel::MAX_WITH_RESTOCKS;
        if self.stock + added > max {
            return Ok(Err(RestockError::TooMuch { stock: self.stock, max }));
        }
        let restock =
            StockAdded { restock_id: OrderId::generate(), product_id: self.product.id, units, at: Timestamp::now() };
        if let Err(AppendFailed) = self.deps.writer.append_and_wait(JournalEvent::StockAdded(restock)).await {
            tracing::warn!(product = %self.product.id, units = added, "restock not journaled; nothing added");
            return Ok(Err(RestockError::Unavailable));
        }
        self.stock += added;
        self.restocks.push(restock);
        self.gauges.set_stock(self.stock);
        let commands = self.book.restock(added);
        self.perform(commands).await?;
        self.announce();
        tracing::info!(product = %self.product.id, units = added, stock = self.stock, "restocked");
        Ok(Ok(self.stock))
    }

    /// Sizes every shard for its share of the crowd the stock left can serve (a buyer takes at least a unit).
    async fn warm(&mut self) -> Result<Warmed, ActorProcessingErr> {
        let left = self.gauges.available();
        let buyers = usize::try_from(left.div_ceil(self.shards.len() as u64)).unwrap_or(usize::MAX).min(MAX_WARM);
        let mut buyers_per_shard = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            buyers_per_shard.push(ractor::call!(shard, ShardMsg::Warm, buyers)?);
        }
        let inspection = self.inspection().await?;
        let warmed = Warmed {
            shards: self.shards.len(),
            buyers_per_shard,
            in_slices: inspection.totals().available,
            pool: inspection.pool,
            journal_position: inspection.totals().journal_position,
            snapshot_position: inspection.snapshot_position,
            at: Timestamp::now(),
        };
        tracing::info!(product = %self.product.id, buyers, "warmed for the sale");
        self.warmed = Some(warmed.clone());
        Ok(warmed)
    }

    /// Carries out the book's commands; a surrender's answer goes back to the book, which may command more.
    async fn perform(&mut self, commands: Vec<Command>) -> Result<(), ActorProcessingErr> {
        let mut queue = std::collections::VecDeque::from(commands);
        while let Some(command) = queue.pop_front() {
            match command {
                Command::Grant { shard, units, last } => self.shards[shard].cast(ShardMsg::Grant { units, last })?,
                Command::Surrender { shard } => {
                    let units = ractor::call!(self.shards[shard], ShardMsg::Surrender)?;
                    queue.extend(self.book.surrendered(units));
                }
                Command::SellOut => {
                    self.gauges.set_sold_out(true);
                    for shard in &self.shards {
                        shard.cast(ShardMsg::SellOut)?;
                    }
                }
                Command::Reopen => {
                    self.gauges.set_sold_out(false);
                    for shard in &self.shards {
                        shard.cast(ShardMsg::Reopen)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn take_snapshot(
        &mut self,
        myself: &ActorRef<ProductMsg>,
        reply: Option<SnapshotReply>,
    ) -> Result<(), ActorProcessingErr> {
        let taken = self.gauges.taken();
        let mut snapshot = StockSnapshot { position: Position::new(i64::MAX), ..StockSnapshot::default() };
        for shard in &self.shards {
            let part = ractor::call!(shard, ShardMsg::Snapshot)?;
            snapshot.position = snapshot.position.min(part.position);
            snapshot.reservations.extend(part.reservations);
            snapshot.steps.extend(part.steps);
        }
        snapshot.restocks.clone_from(&self.restocks);
        self.snapshot.saving();
        let position = snapshot.position.get();
        let (store, product, myself) = (Arc::clone(&self.deps.snapshots), self.product.id, myself.clone());
        tokio::spawn(async move {
            let result = store.save(product, snapshot).await;
            let _ = myself.cast(ProductMsg::SnapshotSaved { result, taken, position, reply });
        });
        Ok(())
    }
}

//! The ProductActor: coordinator of one product. It recovers the product's stock from its snapshot and the journal
//! after it, starts the shards with the reservations that belong to them, and owns the central pool: it grants
//! chunks to dry shards, reclaims every slice before declaring the product sold out, takes snapshots, and answers
//! inspections. It calls its shards (reclaim, counts, snapshot) but shards only ever cast to it, so the two can
//! never wait on each other. A shard's failure fails the product, whose supervisor restarts it from the journal.

pub mod pool;
pub mod snapshot_clock;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;

use self::pool::{Pool, Refill};
use self::snapshot_clock::{SnapshotClock, SnapshotPolicy};
use super::catalog::{Catalog, Gauges, ProductHandle};
use super::journal_writer::Appender;
use super::stock_shard::book::{ShardBook, ShardCounts};
use super::stock_shard::{ShardArgs, ShardMsg, StockShard};
use crate::domain::{JournalEvent, Position, Product, Reservation, StockSnapshot};
use crate::persistence::{Journal, SnapshotError, SnapshotStore};

/// Events read per journal query during recovery.
const REPLAY_PAGE: usize = 10_000;

/// What every product actor needs, shared.
pub struct ProductDeps {
    pub journal: Arc<dyn Journal>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub writer: Appender,
    pub catalog: Arc<Catalog>,
    pub pay_within: Duration,
    pub snapshot_policy: SnapshotPolicy,
    /// Snapshots that could not be saved, across all products, since start.
    pub snapshot_failures: AtomicU64,
}

pub struct ProductActor;

pub struct ProductArgs {
    pub product: Product,
    pub deps: Arc<ProductDeps>,
}

pub struct ProductState {
    product: Product,
    deps: Arc<ProductDeps>,
    pool: Pool,
    shards: Vec<ActorRef<ShardMsg>>,
    gauges: Arc<Gauges>,
    snapshot: SnapshotClock,
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

pub type SnapshotReply = RpcReplyPort<Result<(), String>>;

pub enum ProductMsg {
    NeedStock { shard: usize, want: u64 },
    StockReturned { units: u64 },
    Inspect(RpcReplyPort<Inspection>),
    Tick,
    SnapshotNow(Option<SnapshotReply>),
    SnapshotSaved { result: Result<(), SnapshotError>, taken: u64, position: i64, reply: Option<SnapshotReply> },
}

impl Actor for ProductActor {
    type Msg = ProductMsg;
    type State = ProductState;
    type Arguments = ProductArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProductMsg>,
        ProductArgs { product, deps }: ProductArgs,
    ) -> Result<ProductState, ActorProcessingErr> {
        let started = Instant::now();
        let recovered = recover(&product, &deps).await?;
        let stock = u64::from(product.draft.stock.get());
        let taken: u64 = recovered.reservations.iter().map(|r| u64::from(r.quantity.get())).sum();
        if taken > stock {
            tracing::error!(product = %product.id, taken, stock, "journal holds more reservations than stock");
        }
        let shard_count = product.draft.shards;
        let mut pool = Pool::new(stock.saturating_sub(taken), shard_count.get() as usize);
        let gauges = Arc::new(Gauges::new(taken));

        let mut per_shard: Vec<Vec<Arc<Reservation>>> = vec![Vec::new(); shard_count.get() as usize];
        let reservation_count = recovered.reservations.len();
        for reservation in recovered.reservations {
            per_shard[shard_count.shard_of(reservation.user_id)].push(reservation);
        }
        let mut shards = Vec::with_capacity(per_shard.len());
        for (index, reservations) in per_shard.into_iter().enumerate() {
            let limit = product.draft.per_user_limit.get();
            let book = ShardBook::new(product.id, limit, deps.pay_within, recovered.position, reservations);
            let args = ShardArgs {
                index,
                book,
                product: myself.clone(),
                writer: deps.writer.clone(),
                gauges: Arc::clone(&gauges),
            };
            let (shard, _) = Actor::spawn_linked(None, StockShard, args, myself.get_cell()).await?;
            let units = pool.initial_grant();
            if units > 0 {
                shard.cast(ShardMsg::Grant { units, last: false })?;
            }
            shards.push(shard);
        }
        deps.catalog.publish(ProductHandle {
            product: product.clone(),
            actor: myself.clone(),
            shards: shards.clone(),
            gauges: Arc::clone(&gauges),
        });
        myself.send_interval(Duration::from_secs(1), || ProductMsg::Tick);
        tracing::info!(
            product = %product.id, reservations = reservation_count, taken, pool = pool.units(),
            position = recovered.position.get(), took_ms = started.elapsed().as_millis() as u64, "product recovered"
        );
        Ok(ProductState {
            product,
            deps,
            pool,
            shards,
            gauges,
            snapshot: SnapshotClock::new(taken, recovered.position.get(), Instant::now()),
        })
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
        match message {
            ProductMsg::NeedStock { shard, want } => state.refill(shard, want).await?,
            ProductMsg::StockReturned { units } => {
                if state.pool.reopen() {
                    tracing::info!(product = %state.product.id, units, "stock came back after sell-out; reopening");
                    state.gauges.set_sold_out(false);
                    for shard in &state.shards {
                        shard.cast(ShardMsg::Reopen)?;
                    }
                }
            }
            ProductMsg::Inspect(reply) => {
                let mut shards = Vec::with_capacity(state.shards.len());
                for shard in &state.shards {
                    shards.push(ractor::call!(shard, ShardMsg::Counts)?);
                }
                let _ = reply.send(Inspection {
                    pool: state.pool.units(),
                    shards,
                    sold_out: state.pool.is_sold_out(),
                    snapshot_position: state.snapshot.position(),
                    snapshot_age_seconds: state.snapshot.age(Instant::now()).as_secs_f64(),
                    snapshot_pending: state.snapshot.pending(state.gauges.taken(), &state.deps.snapshot_policy),
                });
            }
            ProductMsg::Tick => {
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
    async fn refill(&mut self, shard: usize, want: u64) -> Result<(), ActorProcessingErr> {
        let refill = match self.pool.on_request(want) {
            Refill::Reclaim => {
                let mut reclaimed = 0;
                for other in &self.shards {
                    reclaimed += ractor::call!(other, ShardMsg::Surrender)?;
                }
                self.pool.after_reclaim(reclaimed, want)
            }
            grant => grant,
        };
        let Refill::Grant { units, last } = refill else {
            return Err("the pool asked for a second reclaim".into());
        };
        self.shards[shard].cast(ShardMsg::Grant { units, last })?;
        if units == 0 && self.pool.is_sold_out() {
            self.gauges.set_sold_out(true);
            for other in &self.shards {
                other.cast(ShardMsg::SellOut)?;
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
        let mut snapshot = StockSnapshot { position: Position::new(i64::MAX), reservations: Vec::new() };
        for shard in &self.shards {
            let part = ractor::call!(shard, ShardMsg::Snapshot)?;
            snapshot.position = snapshot.position.min(part.position);
            snapshot.reservations.extend(part.reservations);
        }
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

/// The product's committed reservations: its snapshot, if one can be read, plus every journal event after it.
async fn recover(product: &Product, deps: &ProductDeps) -> Result<StockSnapshot, ActorProcessingErr> {
    let snapshot = deps.snapshots.load(product.id).await.unwrap_or_else(|err| {
        tracing::warn!(product = %product.id, error = %err, "snapshot unreadable; replaying the whole journal");
        None
    });
    let StockSnapshot { mut position, reservations } = snapshot.unwrap_or_default();
    let mut by_order: HashMap<_, _> = reservations.into_iter().map(|r| (r.order_id, r)).collect();
    loop {
        let page = deps.journal.read_product(product.id, position, REPLAY_PAGE).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        for recorded in page {
            match recorded.event {
                JournalEvent::Reserved(reservation) => {
                    by_order.entry(reservation.order_id).or_insert_with(|| Arc::new(reservation));
                }
                JournalEvent::Voided(voided) => {
                    by_order.remove(&voided.order_id);
                }
            }
        }
    }
    Ok(StockSnapshot { position, reservations: by_order.into_values().collect() })
}

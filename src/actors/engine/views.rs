//! Products as buyers see them (live stock from the gauges, no actor asked) and as admins see them (where every
//! unit is right now, read from the actors), and making a new one.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::rpc::CallResult;
use serde::Serialize;

use super::{ask, Engine, EngineError};
use crate::actors::root::RootMsg;
use crate::actors::sale::catalog::ProductHandle;
use crate::actors::sale::product::{Inspection, ProductMsg};
use crate::actors::sale::shard::book::ShardCounts;
use crate::actors::sale::supervisor::SupervisorMsg;
use crate::domain::{ProductDraft, ProductId, SalePhase, SaleState, Timestamp};

/// A product as buyers see it, with live stock.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// The admin's switch as buyers meet it (a global pause shows here).
    pub sale: SaleState,
    /// Seconds each buyer has to pay.
    pub payment_window_secs: u32,
    /// Whether buying needs a seckill token first.
    pub requires_token: bool,
}

/// A product as an admin sees it: where every unit is right now, and whether they add up.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminView {
    #[serde(flatten)]
    pub summary: ProductSummary,
    pub shard_count: u32,
    pub pool: u64,
    pub shards: Vec<ShardCounts>,
    pub in_flight: u64,
    /// Units of orders awaiting payment, or ended unpaid and awaiting release.
    pub reserved: u64,
    pub paid: u64,
    /// Units released back on sale (from expired and cancelled orders) since the sale began.
    pub released: u64,
    /// Units in acknowledged orders that still hold them: `reserved + paid`.
    pub sold: u64,
    /// `pool + Σ shard.available + in_flight + reserved + paid == stock_total`, read while no unit can move between
    /// them.
    pub invariant_holds: bool,
    pub snapshot_position: i64,
    pub snapshot_age_seconds: f64,
    /// A snapshot is due by units (taken at the first pause in sales) or being saved.
    pub snapshot_pending: bool,
}

/// How the snapshot store is doing; sales never wait on it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SnapshotHealth {
    pub reachable: bool,
    pub failed_saves: u64,
}

impl Engine {
    pub async fn create_product(&self, draft: ProductDraft) -> Result<ProductSummary, EngineError> {
        let created = self
            .root
            .call(|reply| RootMsg::Products(SupervisorMsg::Create { draft, reply }), Some(Duration::from_secs(30)))
            .await;
        let product = match created {
            Ok(CallResult::Success(Ok(product))) => product,
            Ok(CallResult::Success(Err(why))) => return Err(EngineError::Actors(why)),
            Ok(_) | Err(_) => return Err(EngineError::Actors("product supervisor did not answer".into())),
        };
        self.product(product.id).ok_or(EngineError::NotFound)
    }

    pub fn products(&self) -> Vec<ProductSummary> {
        self.catalog.all().iter().map(|handle| summarize(handle)).collect()
    }

    pub fn product(&self, id: ProductId) -> Option<ProductSummary> {
        self.catalog.get(id).map(|handle| summarize(&handle))
    }

    pub async fn inspect(&self, id: ProductId) -> Result<AdminView, EngineError> {
        let handle = self.catalog.get(id).ok_or(EngineError::NotFound)?;
        let inspection: Inspection = ask(&handle.actor, ProductMsg::Count).await?;
        let ShardCounts { available, in_flight, reserved, paid, released, .. } = inspection.totals();
        let summary = summarize(&handle);
        Ok(AdminView {
            invariant_holds: inspection.pool + available + in_flight + reserved + paid == summary.stock_total,
            shard_count: handle.product.draft.shards.get(),
            pool: inspection.pool,
            shards: inspection.shards,
            in_flight,
            reserved,
            paid,
            released,
            sold: reserved + paid,
            snapshot_position: inspection.snapshot_position,
            snapshot_age_seconds: inspection.snapshot_age_seconds,
            snapshot_pending: inspection.snapshot_pending,
            summary,
        })
    }

    pub async fn snapshot_health(&self) -> SnapshotHealth {
        SnapshotHealth {
            reachable: self.deps.snapshots.ping().await.is_ok(),
            failed_saves: self.deps.snapshot_failures.load(Ordering::Relaxed),
        }
    }
}

fn summarize(handle: &ProductHandle) -> ProductSummary {
    let draft = &handle.product.draft;
    let stock_total = handle.gauges.stock();
    ProductSummary {
        id: handle.product.id,
        name: draft.name.clone(),
        price_cents: draft.price_cents,
        stock_total,
        available: handle.gauges.available(),
        per_user_limit: draft.per_user_limit.get(),
        starts_at: draft.window.starts_at(),
        ends_at: draft.window.ends_at(),
        phase: draft.window.phase(Timestamp::now()),
        sold_out: handle.gauges.is_sold_out(),
        sale: handle.live.sale().under(handle.live.global()),
        payment_window_secs: draft.payment_window.get(),
        requires_token: draft.requires_token,
    }
}

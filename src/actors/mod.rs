//! The actors that own the stock. Each product is a ProductActor with a pool and its StockShards; purchases are
//! serialised by the shards' mailboxes, durable through the JournalWriter's group commit, and projected into the
//! orders table by the OrderProjector. `Engine` is the one door the HTTP layer uses.

mod catalog;
mod engine;
mod journal_writer;
mod order_projector;
mod product;
mod product_supervisor;
mod stock_shard;
mod supervision;

#[cfg(test)]
mod stock_properties;

pub use engine::{AdminView, Engine, EngineError, EngineSettings, ProductSummary, PurchaseError, SnapshotHealth};
pub use order_projector::ProjectorStatus;
pub use product::snapshot_clock::SnapshotPolicy;
pub use stock_shard::book::{Receipt, ShardCounts};
pub use supervision::Backoff;

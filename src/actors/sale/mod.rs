//! The sale's subtree: the ProductSupervisor, a ProductActor per product (its pool, sell-out and snapshots) and
//! the product's StockShards (its buyers and a slice of its stock), plus the catalog through which HTTP reaches
//! them. Each actor's decisions live in a plain state machine beside it — `ProductBook`, `ShardBook` — which the
//! property test in `properties` drives directly.

pub mod catalog;
pub mod gauges;
pub mod product;
pub mod shard;
pub mod supervisor;

#[cfg(test)]
mod properties;

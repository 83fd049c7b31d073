//! The actors that run the sale, arranged as their supervision tree:
//!
//! ```text
//! root            RootSupervisor: restarts any child below with the one backoff policy (supervision)
//! ├── journal     JournalWriter: group commit on a committer thread of its own
//! ├── orders      OrderProjector: journal -> orders table
//! ├── lifecycle   CompensationSupervisor -> Compensation (one per refund), PaymentSupervisor -> PaymentAttempt
//! │               (one per payment): jobs retried with backoff, dead letters when they give up
//! └── sale        ProductSupervisor -> ProductActor(p) -> StockShard(p, i), and the catalog HTTP reads them by
//! ```
//!
//! Beside the tree, `live` carries what the actors publish for people watching (stock feeds, order changes), and
//! `inspect` walks the tree itself for the admin.
//!
//! `Engine` is the one door the HTTP layer uses. Within the tree, dependencies point down and across only through
//! narrow types: a shard knows its product as the receiver of `PoolRequest`s and the writer as an `Appender`; the
//! writer knows the projector as a `CommitListener`.

mod engine;
mod inspect;
mod journal;
mod lifecycle;
mod live;
mod orders;
mod root;
mod sale;
mod supervision;

pub use engine::{
    AdminView, Engine, EngineError, EngineSettings, KillError, OrderStepError, PaymentStatus, ProductSummary,
    PurchaseError, ReprocessError, SnapshotHealth, StockFeed, Supervision,
};
pub use inspect::{ActorKind, ActorNode};
pub use lifecycle::{JobState, JobView, JobsView};
pub use live::{OrderWatch, StockPace};
pub use orders::projector::ProjectorStatus;
pub use sale::product::snapshot_clock::SnapshotPolicy;
pub use sale::product::{RestockError, Warmed};
pub use sale::shard::book::{Receipt, ShardCounts};
pub use supervision::BackoffPolicy;

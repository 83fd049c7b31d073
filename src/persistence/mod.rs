//! Everything that touches a database or a broker. The actors see the journal (by role) and the snapshot store only
//! through their traits, so the embedded default and a production deployment run the same actor code.

pub mod blacklist;
pub mod db;
pub mod dead_letters;
pub mod journal;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod orders;
pub mod products;
pub mod redis_snapshots;
pub mod schema;
pub mod snapshots;
pub mod users;

pub use db::{Database, DbError};
pub use dead_letters::DeadLetterTopic;
pub use journal::{
    Journal, JournalAppend, JournalError, JournalProjection, JournalReplay, KafkaConfig, OrderSpans, Projected,
    SqlJournal,
};
pub use redis_snapshots::RedisSnapshots;
pub use snapshots::{SnapshotError, SnapshotStore, SqlSnapshots};
pub use users::{Account, AccountStanding};

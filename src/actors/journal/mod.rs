//! The journal's subtree: the JournalWriter, which makes reservations durable by group commit on a committer
//! thread of its own and tells each shard, and the order projector, how every commit went.

mod committer;
mod group_commit;
mod writer;

pub use committer::{Ack, AppendFailed, Appender, CommitListener, Outcome, Recipient};
pub use writer::{JournalWriter, WriterArgs, WriterMsg};

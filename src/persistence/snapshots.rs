//! Snapshots of each product's stock state, so recovery replays only the journal's tail. A snapshot is an
//! optimisation, never the truth: losing one only makes recovery replay from further back. They live in the SQL
//! database by default, or in Redis (`redis_snapshots`).

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::db::{per_backend, Database, DbError};
use super::schema::snapshots;
use crate::domain::{ProductId, StockSnapshot, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot store unavailable: {0}")]
    Unavailable(String),
    #[error("snapshot unreadable: {0}")]
    Corrupt(String),
}

impl From<DbError> for SnapshotError {
    fn from(err: DbError) -> Self {
        SnapshotError::Unavailable(err.to_string())
    }
}

#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    async fn save(&self, product: ProductId, snapshot: StockSnapshot) -> Result<(), SnapshotError>;
    async fn load(&self, product: ProductId) -> Result<Option<StockSnapshot>, SnapshotError>;
    /// Whether the store answers right now (for readiness reports; sales never wait on it).
    async fn ping(&self) -> Result<(), SnapshotError>;
}

/// Snapshots in the `snapshots` table, one row per product, overwritten each time.
#[derive(Clone)]
pub struct SqlSnapshots {
    db: Database,
}

impl SqlSnapshots {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl SnapshotStore for SqlSnapshots {
    async fn save(&self, product: ProductId, snapshot: StockSnapshot) -> Result<(), SnapshotError> {
        let position = snapshot.position.get();
        // Encoded before taking the writers' turn, so the turn covers only the row write.
        let body = encode(snapshot).await?;
        self.db
            .write(move |conn| {
                let row = (
                    snapshots::product_id.eq(product.get()),
                    snapshots::position.eq(position),
                    snapshots::body.eq(body),
                    snapshots::taken_at.eq(Timestamp::now().millis()),
                );
                per_backend!(conn, conn => diesel::insert_into(snapshots::table)
                    .values(row)
                    .on_conflict(snapshots::product_id)
                    .do_update()
                    .set((
                        snapshots::position.eq(excluded(snapshots::position)),
                        snapshots::body.eq(excluded(snapshots::body)),
                        snapshots::taken_at.eq(excluded(snapshots::taken_at)),
                    ))
                    .execute(conn))?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), SnapshotError> {
        Ok(self.db.run(|_| Ok(())).await?)
    }

    async fn load(&self, product: ProductId) -> Result<Option<StockSnapshot>, SnapshotError> {
        let body = self
            .db
            .run(move |conn| {
                Ok(snapshots::table
                    .filter(snapshots::product_id.eq(product.get()))
                    .select(snapshots::body)
                    .first::<String>(conn)
                    .optional()?)
            })
            .await?;
        body.as_deref().map(decode).transpose()
    }
}

/// A snapshot as stored. Serialising a large sale takes a while, so it happens on a blocking thread.
pub(super) async fn encode(snapshot: StockSnapshot) -> Result<String, SnapshotError> {
    tokio::task::spawn_blocking(move || serde_json::to_string(&snapshot))
        .await
        .map_err(|err| SnapshotError::Unavailable(err.to_string()))?
        .map_err(|err| SnapshotError::Corrupt(err.to_string()))
}

pub(super) fn decode(body: &str) -> Result<StockSnapshot, SnapshotError> {
    serde_json::from_str(body).map_err(|err| SnapshotError::Corrupt(err.to_string()))
}

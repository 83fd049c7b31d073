//! Snapshots of each product's stock state, so recovery replays only the journal's tail. A snapshot is an
//! optimisation, never the truth: losing one only makes recovery replay from further back. They live in the SQL
//! database by default, or in Redis (`redis_snapshots`).

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::db::{per_backend, Database, DbError};
use super::schema::{snapshot_chunks, snapshots};
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

/// Snapshots in the SQL database. A snapshot holds every reservation of the sale so far, so it grows with the sale
/// (16 MB at 50,000 units). Written as one row it holds SQLite's single writer — and with it every purchase waiting
/// for a journal commit — for the whole write: a pause of 0.1–0.2 s at 50,000 units, and seconds for a sale of
/// millions. So it is written as a new generation of `CHUNK_BYTES` chunks, each in a transaction of its own that
/// journal commits queue between, and then one small transaction points the product's `snapshots` row at it; the
/// previous generation's chunks are removed the same way, one per transaction. A reader sees the old snapshot or
/// the new one, never a mix. The work is the same; no single pause grows with the sale.
#[derive(Clone)]
pub struct SqlSnapshots {
    db: Database,
}

/// Most bytes of a snapshot written in one transaction: a few milliseconds of the writer's turn.
const CHUNK_BYTES: usize = 1024 * 1024;

/// A complete generation of chunks, as the `snapshots` row names it.
#[derive(Debug, Clone, Copy)]
struct Generation {
    id: i64,
    chunks: i32,
}

impl SqlSnapshots {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn write_chunk(&self, product: ProductId, generation: i64, seq: i32, data: String) -> Result<(), DbError> {
        self.db
            .write(move |conn| {
                let row = (
                    snapshot_chunks::product_id.eq(product.get()),
                    snapshot_chunks::generation.eq(generation),
                    snapshot_chunks::seq.eq(seq),
                    snapshot_chunks::data.eq(data),
                );
                per_backend!(conn, conn => diesel::insert_into(snapshot_chunks::table)
                    .values(row)
                    .on_conflict((snapshot_chunks::product_id, snapshot_chunks::generation, snapshot_chunks::seq))
                    .do_update()
                    .set(snapshot_chunks::data.eq(excluded(snapshot_chunks::data)))
                    .execute(conn))?;
                Ok(())
            })
            .await
    }

    /// Points `product`'s snapshot at `generation`, whose chunks are all written, and says which generation it
    /// replaced: read in the same transaction, so of two overlapping saves each discards exactly what it replaced.
    async fn switch(
        &self,
        product: ProductId,
        position: i64,
        generation: Generation,
    ) -> Result<Option<Generation>, DbError> {
        self.db
            .write(move |conn| {
                Ok(conn.transaction(|conn| {
                    let replaced = snapshots::table
                        .filter(snapshots::product_id.eq(product.get()))
                        .select((snapshots::generation, snapshots::chunks))
                        .first::<(i64, i32)>(conn)
                        .optional()?
                        .map(|(id, chunks)| Generation { id, chunks });
                    let row = (
                        snapshots::product_id.eq(product.get()),
                        snapshots::position.eq(position),
                        snapshots::generation.eq(generation.id),
                        snapshots::chunks.eq(generation.chunks),
                        snapshots::taken_at.eq(Timestamp::now().millis()),
                    );
                    per_backend!(conn, conn => diesel::insert_into(snapshots::table)
                        .values(row)
                        .on_conflict(snapshots::product_id)
                        .do_update()
                        .set((
                            snapshots::position.eq(excluded(snapshots::position)),
                            snapshots::generation.eq(excluded(snapshots::generation)),
                            snapshots::chunks.eq(excluded(snapshots::chunks)),
                            snapshots::taken_at.eq(excluded(snapshots::taken_at)),
                        ))
                        .execute(conn))?;
                    diesel::QueryResult::Ok(replaced)
                })?)
            })
            .await
    }

    /// Removes a generation nobody points at any more, a chunk per transaction.
    async fn discard(&self, product: ProductId, generation: Generation) -> Result<(), DbError> {
        for seq in 0..generation.chunks {
            self.db
                .write(move |conn| {
                    diesel::delete(
                        snapshot_chunks::table.filter(
                            snapshot_chunks::product_id
                                .eq(product.get())
                                .and(snapshot_chunks::generation.eq(generation.id))
                                .and(snapshot_chunks::seq.eq(seq)),
                        ),
                    )
                    .execute(conn)?;
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SnapshotStore for SqlSnapshots {
    async fn save(&self, product: ProductId, snapshot: StockSnapshot) -> Result<(), SnapshotError> {
        let position = snapshot.position.get();
        // Encoded before taking the writers' turn, so the turn covers only the chunk writes.
        let body = encode(snapshot).await?;
        // A fresh random generation, so two saves of one product that overlap (a periodic one and the one at
        // shutdown) never write into each other's chunks; whichever switches last wins, whole.
        let mut generation = Generation { id: rand::random::<i64>() & i64::MAX, chunks: 0 };
        for (seq, data) in chunks(&body, CHUNK_BYTES).enumerate() {
            let seq = i32::try_from(seq).map_err(|_| SnapshotError::Corrupt("snapshot too large".into()))?;
            self.write_chunk(product, generation.id, seq, data.to_owned()).await?;
            generation.chunks = seq + 1;
        }
        if let Some(replaced) = self.switch(product, position, generation).await? {
            self.discard(product, replaced).await?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), SnapshotError> {
        Ok(self.db.run(|_| Ok(())).await?)
    }

    async fn load(&self, product: ProductId) -> Result<Option<StockSnapshot>, SnapshotError> {
        // One statement, so on either backend it reads the pointer and the chunks from the same moment: a save that
        // switches generations meanwhile cannot leave a pointer without its chunks.
        let rows = self
            .db
            .run(move |conn| {
                let current = snapshots::table.on(snapshots::product_id
                    .eq(snapshot_chunks::product_id)
                    .and(snapshots::generation.eq(snapshot_chunks::generation)));
                Ok(snapshot_chunks::table
                    .inner_join(current)
                    .filter(snapshot_chunks::product_id.eq(product.get()))
                    .order(snapshot_chunks::seq.asc())
                    .select((snapshots::chunks, snapshot_chunks::data))
                    .load::<(i32, String)>(conn)?)
            })
            .await?;
        let Some(&(chunks, _)) = rows.first() else { return Ok(None) };
        let parts: Vec<String> = rows.into_iter().map(|(_, data)| data).collect();
        if i32::try_from(parts.len()).ok() != Some(chunks) {
            let found = parts.len();
            return Err(SnapshotError::Corrupt(format!("{found} of {chunks} chunks found")));
        }
        decode(&parts.concat()).map(Some)
    }
}

/// `body` cut into pieces of at most `size` bytes (at least 4, a char's most), on character boundaries.
fn chunks(body: &str, size: usize) -> impl Iterator<Item = &str> {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = size.max(4).min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::domain::{OrderId, OrderSteps, Position, Quantity, Reservation, Step, StepAt, UserId};

    #[test]
    fn chunks_cover_the_body_on_character_boundaries() {
        let body = "ab€cd€".repeat(100);
        for size in [1, 4, 5, 7, 1000] {
            let pieces: Vec<&str> = chunks(&body, size).collect();
            assert_eq!(pieces.concat(), body);
            assert!(pieces.iter().all(|piece| !piece.is_empty() && piece.len() <= size.max(4)));
        }
        assert_eq!(chunks("", 8).count(), 0);
    }

    /// A snapshot of `count` reservations of product 1, every third paid, at position `count`.
    fn snapshot(count: i64) -> StockSnapshot {
        let reservations: Vec<Arc<Reservation>> = (1..=count)
            .map(|user| {
                Arc::new(Reservation {
                    order_id: OrderId::generate(),
                    product_id: ProductId::try_from(1).unwrap(),
                    user_id: UserId::try_from(user).unwrap(),
                    quantity: Quantity::try_from(1).unwrap(),
                    idempotency_key: None,
                    reserved_at: Timestamp::from_millis(user),
                    pay_before: Timestamp::from_millis(user + 1),
                })
            })
            .collect();
        let steps = reservations
            .iter()
            .step_by(3)
            .map(|reservation| OrderSteps {
                order_id: reservation.order_id,
                steps: vec![StepAt { step: Step::Paid, at: reservation.reserved_at }],
            })
            .collect();
        StockSnapshot { position: Position::new(count), reservations, steps, restocks: Vec::new() }
    }

    async fn store(dir: &tempfile::TempDir) -> (SqlSnapshots, Database) {
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let db = Database::connect(&url, 2, Duration::from_secs(5)).unwrap();
        db.migrate().unwrap();
        (SqlSnapshots::new(db.clone()), db)
    }

    async fn stored_chunks(db: &Database) -> i64 {
        db.run(|conn| Ok(snapshot_chunks::table.count().get_result::<i64>(conn)?)).await.unwrap()
    }

    #[tokio::test]
    async fn a_large_snapshot_is_written_in_chunks_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (store, db) = store(&dir).await;
        let product = ProductId::try_from(1).unwrap();
        assert_eq!(store.load(product).await.unwrap(), None);

        let first = snapshot(12_000);
        store.save(product, first.clone()).await.unwrap();
        let chunks_of_first = stored_chunks(&db).await;
        assert!(chunks_of_first > 2, "12,000 reservations span several chunks, got {chunks_of_first}");
        assert_eq!(store.load(product).await.unwrap(), Some(first));

        let second = snapshot(10);
        store.save(product, second.clone()).await.unwrap();
        assert_eq!(store.load(product).await.unwrap(), Some(second));
        assert_eq!(stored_chunks(&db).await, 1, "the replaced generation's chunks are gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_saves_leave_one_whole_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (store, db) = store(&dir).await;
        let product = ProductId::try_from(1).unwrap();
        let (small, large) = (snapshot(100), snapshot(8_000));
        let (a, b) = tokio::join!(store.save(product, small.clone()), store.save(product, large.clone()));
        a.unwrap();
        b.unwrap();
        let loaded = store.load(product).await.unwrap().expect("a snapshot is there");
        assert!(loaded == small || loaded == large, "one of the two, whole");
        let pointed: i32 =
            db.run(move |conn| Ok(snapshots::table.select(snapshots::chunks).first::<i32>(conn)?)).await.unwrap();
        assert_eq!(stored_chunks(&db).await, i64::from(pointed), "no chunks are left behind by the save that lost");
    }
}

//! The journal: the source of truth for every product's stock. A reservation exists once `append` returned its
//! position, and not before. Each of its three users sees only its own role — the journal writer appends, a
//! product replays its history to recover, the order projector projects — so the SQL table of the embedded default
//! and Kafka of a production deployment are interchangeable to the actors, and a test stands in for one role
//! without pretending to be the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::query_builder::InsertStatement;
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::QueryResult;

use super::db::{lock, AnyConnection, Database, DbError};
use super::schema::journal;
use crate::domain::{JournalEvent, Position, ProductId, Recorded, Reservation};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    #[error("journal entry {position:?} is unreadable: {reason}")]
    Corrupt { position: Position, reason: String },
}

/// The journal writer's role.
pub trait JournalAppend: Send + Sync + 'static {
    /// Makes `events` durable, all or none, and returns their positions in order. Blocks until then: the journal
    /// writer calls it from a thread of its own, which goes from one commit straight to the next under load.
    fn append(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError>;
}

/// A recovering product's role.
#[async_trait]
pub trait JournalReplay: Send + Sync + 'static {
    /// Up to `limit` events of one product after `after`, in order.
    async fn read_product(
        &self,
        product: ProductId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Recorded>, JournalError>;
}

/// The order projector's role.
#[async_trait]
pub trait JournalProjection: Send + Sync + 'static {
    /// Writes the next events (up to `limit`) into the `orders` table of `orders`, and records how far the
    /// projection got no earlier than the rows are committed: after a crash in between, the stretch is projected
    /// again, which changes nothing. `spans`, while traces are on, gives each order written a span.
    async fn project_next(
        &self,
        orders: &Database,
        limit: usize,
        spans: Option<&dyn OrderSpans>,
    ) -> Result<Projected, JournalError>;

    /// How many events the projection has yet to write.
    async fn projection_lag(&self, orders: &Database) -> Result<u64, JournalError>;
}

/// A span for each order a projection step writes, held until the order's row is committed: how a trace follows an
/// order into `orders`. The projector makes them; persistence only holds them.
pub trait OrderSpans: Send + Sync {
    fn applying(&self, reservation: &Reservation, position: Position) -> tracing::Span;
}

/// One journal, as its three users see it.
#[derive(Clone)]
pub struct Journal {
    pub append: Arc<dyn JournalAppend>,
    pub replay: Arc<dyn JournalReplay>,
    pub projection: Arc<dyn JournalProjection>,
    /// Where dead letters are mirrored, if the journal has such a stream (Kafka's `<topic>-dlq`).
    pub dead_letters: Option<Arc<dyn super::DeadLetterTopic>>,
}

impl Journal {
    /// A journal that plays every role itself.
    pub fn whole<J: JournalAppend + JournalReplay + JournalProjection>(journal: J) -> Self {
        let journal = Arc::new(journal);
        Self { append: journal.clone(), replay: journal.clone(), projection: journal, dead_letters: None }
    }
}

/// Where the Kafka journal lives and how long to wait for it (used when the service is built with `kafka`).
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    /// Partitions of a topic this service creates; an existing topic keeps its own count.
    pub partitions: i32,
    pub replication: i32,
    /// The order projection's consumer group.
    pub group: String,
    /// How long a record may wait for the broker's acknowledgement before its append is reported failed.
    pub delivery_timeout: Duration,
    /// Bound on metadata, offset and read requests.
    pub request_timeout: Duration,
    /// How long a start waits for the broker to answer (a service started beside its broker waits for it).
    pub connect_wait: Duration,
    pub linger: Duration,
}

/// What one projection step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Projected {
    /// Journal events read.
    pub events: usize,
    /// Orders written that were not there before.
    pub orders: usize,
}

/// The projection's name in `projector_offsets`, where a journal kept in a table records how far it got.
const PROJECTION: &str = "orders";

/// The journal as a table. Positions are handed out here, so a single writer (the JournalWriter actor) appends;
/// after any failed append the next position is read again from the table.
#[derive(Clone)]
pub struct SqlJournal {
    db: Database,
    next: Arc<Mutex<Option<i64>>>,
    /// The projection's position as last committed; read again from the table after any failure.
    projected: Arc<Mutex<Option<Position>>>,
}

/// A journal row as it is inserted.
type Row = (
    diesel::dsl::Eq<journal::position, i64>,
    diesel::dsl::Eq<journal::product_id, i64>,
    diesel::dsl::Eq<journal::payload, String>,
);

/// Rows per INSERT statement on PostgreSQL, where every statement is a round trip: a batch goes in as few
/// statements as it can (three parameters a row keeps each far below the parameter limit).
const ROWS_PER_INSERT: usize = 1_000;

/// Inserts `rows` into an embedded SQLite journal as statements of a few fixed shapes (64, 8 and 1 rows), largest
/// first. In process a statement costs no round trip, but parsing one does: a statement's shape is its SQL, so each
/// shape is parsed once and then served from the connection's statement cache, where a statement sized to the whole
/// batch would be new SQL nearly every commit.
fn insert_shaped<'a, C: Connection>(conn: &mut C, rows: &'a [Row]) -> QueryResult<()>
where
    Shaped<64>: Insert<'a, C>,
    Shaped<8>: Insert<'a, C>,
    Shaped<1>: Insert<'a, C>,
{
    let rest = Shaped::<64>::insert(conn, rows)?;
    let rest = Shaped::<8>::insert(conn, rest)?;
    Shaped::<1>::insert(conn, rest).map(drop)
}

/// Statements of `N` journal rows.
struct Shaped<const N: usize>;

trait Insert<'a, C> {
    /// Inserts the longest prefix of `rows` that splits into statements of this shape; returns what is left.
    fn insert(conn: &mut C, rows: &'a [Row]) -> QueryResult<&'a [Row]>;
}

impl<'a, C: Connection, const N: usize> Insert<'a, C> for Shaped<N>
where
    InsertStatement<journal::table, <&'a [Row; N] as Insertable<journal::table>>::Values>: ExecuteDsl<C>,
{
    fn insert(conn: &mut C, rows: &'a [Row]) -> QueryResult<&'a [Row]> {
        let mut chunks = rows.chunks_exact(N);
        for chunk in &mut chunks {
            let chunk: &[Row; N] = chunk.try_into().expect("chunks_exact yields chunks of N");
            diesel::insert_into(journal::table).values(chunk).execute(conn)?;
        }
        Ok(chunks.remainder())
    }
}

impl SqlJournal {
    pub fn new(db: Database) -> Self {
        Self { db, next: Arc::new(Mutex::new(None)), projected: Arc::new(Mutex::new(None)) }
    }
}

impl From<DbError> for JournalError {
    fn from(err: DbError) -> Self {
        JournalError::Unavailable(err.to_string())
    }
}

impl JournalAppend for SqlJournal {
    fn append(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
        Ok(self.db.write_blocking(|conn| {
            let mut next = lock(&self.next);
            let first = match *next {
                Some(first) => first,
                None => {
                    let last: Option<i64> = journal::table.select(diesel::dsl::max(journal::position)).first(conn)?;
                    last.unwrap_or(0) + 1
                }
            };
            *next = None;
            let rows: Vec<_> = events
                .iter()
                .zip(first..)
                .map(|(event, position)| {
                    (
                        journal::position.eq(position),
                        journal::product_id.eq(event.product_id().get()),
                        journal::payload.eq(event.to_json()),
                    )
                })
                .collect();
            let end = first + rows.len() as i64;
            let committed = match conn {
                AnyConnection::Sqlite(conn) => conn.transaction(|conn| insert_shaped(conn, &rows)),
                AnyConnection::Postgresql(conn) => conn.transaction(|conn| {
                    for chunk in rows.chunks(ROWS_PER_INSERT) {
                        diesel::insert_into(journal::table).values(chunk).execute(conn)?;
                    }
                    QueryResult::Ok(())
                }),
            };
            settle(committed, rows.len(), || {
                journal::table
                    .filter(journal::position.ge(first).and(journal::position.lt(end)))
                    .count()
                    .get_result(conn)
            })?;
            *next = Some(end);
            Ok((first..end).map(Position::new).collect())
        })?)
    }
}

#[async_trait]
impl JournalReplay for SqlJournal {
    async fn read_product(
        &self,
        product: ProductId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Recorded>, JournalError> {
        self.load_after(Some(product), after, limit).await
    }
}

#[async_trait]
impl JournalProjection for SqlJournal {
    async fn project_next(
        &self,
        orders: &Database,
        limit: usize,
        spans: Option<&dyn OrderSpans>,
    ) -> Result<Projected, JournalError> {
        let known = *lock(&self.projected);
        let after = match known {
            Some(position) => position,
            None => orders.projector_position(PROJECTION).await?,
        };
        let step = async {
            let events = self.load_after(None, after, limit).await?;
            let read = events.len();
            let last = events.last().map_or(after, |recorded| recorded.position);
            let written = orders.project_orders(events, Some(PROJECTION), spans).await?;
            Ok::<_, JournalError>((Projected { events: read, orders: written }, last))
        };
        let outcome = step.await;
        *lock(&self.projected) = outcome.as_ref().ok().map(|(_, last)| *last);
        outcome.map(|(projected, _)| projected)
    }

    async fn projection_lag(&self, orders: &Database) -> Result<u64, JournalError> {
        let after = orders.projector_position(PROJECTION).await?;
        let behind = self
            .db
            .run(move |conn| {
                Ok(journal::table.filter(journal::position.gt(after.get())).count().get_result::<i64>(conn)?)
            })
            .await?;
        Ok(behind.unsigned_abs())
    }
}

impl SqlJournal {
    async fn load_after(
        &self,
        product: Option<ProductId>,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Recorded>, JournalError> {
        let rows = self
            .db
            .run(move |conn| {
                let mut query = journal::table
                    .filter(journal::position.gt(after.get()))
                    .order(journal::position.asc())
                    .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                    .select((journal::position, journal::payload))
                    .into_boxed();
                if let Some(product) = product {
                    query = query.filter(journal::product_id.eq(product.get()));
                }
                Ok(query.load::<(i64, String)>(conn)?)
            })
            .await?;
        decode(rows)
    }
}

/// Whether an append happened. A COMMIT can succeed in the database while its answer is lost on the way back;
/// refusing then would roll the stock back in memory while the reservation stands in the journal — a unit sold
/// twice. Positions belong to this single writer, so counting them tells the truth: all there means committed,
/// anything else (including a count that cannot be read) means not.
fn settle(
    committed: QueryResult<()>,
    rows: usize,
    count_landed: impl FnOnce() -> QueryResult<i64>,
) -> Result<(), DbError> {
    let Err(err) = committed else { return Ok(()) };
    match count_landed() {
        Ok(landed) if usize::try_from(landed).is_ok_and(|landed| landed == rows) => {
            tracing::warn!(error = %err, rows, "journal commit reported an error but its rows are durable");
            Ok(())
        }
        _ => Err(err.into()),
    }
}

fn decode(rows: Vec<(i64, String)>) -> Result<Vec<Recorded>, JournalError> {
    rows.into_iter()
        .map(|(position, payload)| {
            let position = Position::new(position);
            JournalEvent::from_json(&payload)
                .map(|event| Recorded { position, event })
                .map_err(|err| JournalError::Corrupt { position, reason: err.to_string() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use diesel::result::Error as DieselError;

    use super::*;
    use crate::domain::{OrderId, Quantity, Reservation, Timestamp, UserId};

    fn reservation(product: ProductId, user: i64) -> JournalEvent {
        JournalEvent::Reserved(Reservation {
            order_id: OrderId::generate(),
            product_id: product,
            user_id: UserId::try_from(user + 1).unwrap(),
            quantity: Quantity::try_from(1).unwrap(),
            idempotency_key: None,
            reserved_at: Timestamp::from_millis(user),
            pay_before: Timestamp::from_millis(user + 1),
        })
    }

    /// A migrated SQLite file of the test's own, alive as long as the folder.
    fn scratch() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("j.db").display());
        let db = Database::connect(&url, 2, Duration::from_secs(5)).unwrap();
        db.migrate().unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn batches_of_every_size_land_whole_in_order_and_read_back_per_product() {
        let (_dir, db) = scratch();
        let journal = SqlJournal::new(db);
        let (ours, theirs) = (ProductId::try_from(1).unwrap(), ProductId::try_from(2).unwrap());
        let (mut appended, mut ours_expected) = (0, Vec::new());
        for size in [1, 7, 8, 9, 63, 64, 65, 72, 137] {
            let events: Vec<_> =
                (0..size).map(|i| reservation(if i % 3 == 0 { theirs } else { ours }, appended + i)).collect();
            let positions = journal.append(&events).unwrap();
            let expected: Vec<_> = (appended + 1..=appended + size).map(Position::new).collect();
            assert_eq!(positions, expected, "a batch of {size} takes the next positions, in order");
            appended += size;
            ours_expected.extend(positions.into_iter().zip(events).filter(|(_, event)| event.product_id() == ours));
        }
        let read = journal.read_product(ours, Position::new(0), 10_000).await.unwrap();
        let read: Vec<_> = read.into_iter().map(|recorded| (recorded.position, recorded.event)).collect();
        assert_eq!(read, ours_expected);
    }

    #[tokio::test]
    async fn an_event_of_an_unknown_version_stops_a_replay_with_an_error_that_names_it() {
        let (_dir, db) = scratch();
        let journal = SqlJournal::new(db.clone());
        let product = ProductId::try_from(1).unwrap();
        journal.append(&[reservation(product, 1)]).unwrap();
        let from_the_future = reservation(product, 2).to_json().replace("\"v\":1", "\"v\":7");
        db.write(move |conn| {
            let row = (journal::position.eq(2), journal::product_id.eq(1), journal::payload.eq(from_the_future));
            Ok(diesel::insert_into(journal::table).values(row).execute(conn)?)
        })
        .await
        .unwrap();

        let refused = journal.read_product(product, Position::new(0), 100).await.unwrap_err();
        assert!(matches!(&refused, JournalError::Corrupt { position, .. } if *position == Position::new(2)));
        assert!(refused.to_string().contains("event version 7 is unknown"), "{refused}");
    }

    #[test]
    fn a_failed_commit_counts_only_if_every_row_landed() {
        assert!(settle(Ok(()), 3, || unreachable!("a clean commit is not re-checked")).is_ok());
        assert!(settle(Err(DieselError::BrokenTransactionManager), 3, || Ok(3)).is_ok());
        assert!(settle(Err(DieselError::BrokenTransactionManager), 3, || Ok(0)).is_err());
        assert!(settle(Err(DieselError::BrokenTransactionManager), 3, || Ok(2)).is_err());
        assert!(settle(Err(DieselError::BrokenTransactionManager), 3, || Err(DieselError::NotFound)).is_err());
    }
}

//! The `dead_letters` table: jobs that failed every attempt, with every attempt, until an operator replays them.

use diesel::prelude::*;

use super::db::{per_backend, Database, DbError};
use super::schema::dead_letters;
use crate::domain::{
    DeadLetter, DeadLetterId, JobKind, LetterFilter, LetterStatus, NewDeadLetter, OrderId, PaymentOrder, ProductId,
    Timestamp, UserId,
};

/// A row in the table's column order (`schema.rs`).
type Row = (i64, String, String, i64, i64, i64, String, String, i64, Option<i64>);

fn from_row(
    (id, kind, order_id, product_id, user_id, amount_cents, reason, attempts, created_at, reprocessed_at): Row,
) -> Result<DeadLetter, DbError> {
    let bad = |what: &str| DbError::Corrupt(format!("dead_letters row {id}: bad {what}"));
    Ok(DeadLetter {
        id: DeadLetterId::try_from(id).map_err(|_| bad("id"))?,
        kind: JobKind::parse(&kind).map_err(|_| bad("kind"))?,
        payment: PaymentOrder {
            order_id: order_id.parse::<OrderId>().map_err(|_| bad("order_id"))?,
            product_id: ProductId::try_from(product_id).map_err(|_| bad("product_id"))?,
            user_id: UserId::try_from(user_id).map_err(|_| bad("user_id"))?,
            amount_cents,
        },
        reason,
        attempts: serde_json::from_str(&attempts).map_err(|_| bad("attempts"))?,
        created_at: Timestamp::from_millis(created_at),
        reprocessed_at: reprocessed_at.map(Timestamp::from_millis),
    })
}

impl Database {
    pub async fn insert_dead_letter(&self, letter: NewDeadLetter) -> Result<DeadLetter, DbError> {
        let attempts = serde_json::to_string(&letter.attempts).map_err(|err| DbError::Corrupt(err.to_string()))?;
        let created_at = Timestamp::now();
        let payment = letter.payment;
        let row = (
            dead_letters::kind.eq(letter.kind.as_str()),
            dead_letters::order_id.eq(payment.order_id.to_string()),
            dead_letters::product_id.eq(payment.product_id.get()),
            dead_letters::user_id.eq(payment.user_id.get()),
            dead_letters::amount_cents.eq(payment.amount_cents),
            dead_letters::reason.eq(letter.reason.clone()),
            dead_letters::attempts.eq(attempts),
            dead_letters::created_at.eq(created_at.millis()),
        );
        let id = self
            .write(move |conn| {
                Ok(per_backend!(conn, conn => diesel::insert_into(dead_letters::table)
                    .values(row)
                    .returning(dead_letters::id)
                    .get_result::<i64>(conn))?)
            })
            .await?;
        Ok(DeadLetter {
            id: DeadLetterId::try_from(id).map_err(|_| DbError::Corrupt(format!("dead_letters row {id}: bad id")))?,
            kind: letter.kind,
            payment,
            reason: letter.reason,
            attempts: letter.attempts,
            created_at,
            reprocessed_at: None,
        })
    }

    /// Dead letters in the order they were written.
    pub async fn dead_letters(&self, filter: LetterFilter) -> Result<Vec<DeadLetter>, DbError> {
        self.run(move |conn| {
            let mut query = dead_letters::table.order(dead_letters::id.asc()).into_boxed();
            if let Some(kind) = filter.kind {
                query = query.filter(dead_letters::kind.eq(kind.as_str()));
            }
            query = match filter.status {
                Some(LetterStatus::Pending) => query.filter(dead_letters::reprocessed_at.is_null()),
                Some(LetterStatus::Reprocessed) => query.filter(dead_letters::reprocessed_at.is_not_null()),
                None => query,
            };
            if let Some(after) = filter.after {
                query = query.filter(dead_letters::id.gt(after.get()));
            }
            let rows = query.limit(i64::from(filter.limit)).load::<Row>(conn)?;
            rows.into_iter().map(from_row).collect()
        })
        .await
    }

    /// How many dead letters of `kind` wait to be replayed.
    pub async fn pending_dead_letters(&self, kind: JobKind) -> Result<u64, DbError> {
        self.run(move |conn| {
            let pending: i64 = dead_letters::table
                .filter(dead_letters::kind.eq(kind.as_str()))
                .filter(dead_letters::reprocessed_at.is_null())
                .count()
                .get_result(conn)?;
            Ok(u64::try_from(pending).unwrap_or(0))
        })
        .await
    }

    /// Marks a pending dead letter replayed at `at`; `None` if there is no such letter or it was already replayed
    /// (so two operators replaying at once replay it once).
    pub async fn take_dead_letter(&self, id: DeadLetterId, at: Timestamp) -> Result<Option<DeadLetter>, DbError> {
        self.write(move |conn| {
            let taken = diesel::update(
                dead_letters::table
                    .filter(dead_letters::id.eq(id.get()))
                    .filter(dead_letters::reprocessed_at.is_null()),
            )
            .set(dead_letters::reprocessed_at.eq(at.millis()))
            .execute(conn)?;
            if taken == 0 {
                return Ok(None);
            }
            let row = dead_letters::table.filter(dead_letters::id.eq(id.get())).first::<Row>(conn)?;
            from_row(row).map(Some)
        })
        .await
    }

    /// One dead letter.
    pub async fn dead_letter(&self, id: DeadLetterId) -> Result<Option<DeadLetter>, DbError> {
        self.run(move |conn| {
            let row = dead_letters::table.filter(dead_letters::id.eq(id.get())).first::<Row>(conn).optional()?;
            row.map(from_row).transpose()
        })
        .await
    }
}

/// A stream of dead letters beside the journal, for the consumers of a production deployment (Kafka's
/// `<topic>-dlq`). The database stays the letters' home; this is a copy.
#[async_trait::async_trait]
pub trait DeadLetterTopic: Send + Sync {
    async fn publish(&self, letter: &DeadLetter) -> Result<(), super::JournalError>;
}

//! The `orders` table: the read side built from the journal by the OrderProjector, and what buyers and admins
//! query. Rows and, for a journal kept in a table, the projector's position are written in one transaction, so a
//! crash never leaves one without the other; inserts ignore rows already there, voids delete theirs, and an order's
//! steps go through its `Timeline` (a step already taken changes nothing), so replaying a stretch twice, in journal
//! order, changes nothing.

use diesel::prelude::*;

use super::db::{per_backend, Database, DbError};
use super::journal::OrderSpans;
use super::schema::{orders, projector_offsets};
use std::collections::HashMap;

use crate::domain::{
    JournalEvent, Order, OrderId, OrderStatus, Position, ProductId, Quantity, Recorded, Reservation, Step, StepAt,
    Timeline, Timestamp, UserId,
};

/// An order's row as the projector first writes it, at its reservation.
#[derive(Insertable, Queryable, Selectable)]
#[diesel(table_name = orders)]
struct OrderRow {
    order_id: String,
    product_id: i64,
    user_id: i64,
    quantity: i32,
    status: String,
    reserved_at: i64,
    pay_before: i64,
    journal_position: i64,
}

/// Rows per INSERT statement (eight parameters each), below SQLite's parameter limit.
const ROWS_PER_INSERT: usize = 1_000;

/// When each step was taken; `status` is where they lead.
#[derive(Queryable, Selectable, AsChangeset, Default)]
#[diesel(table_name = orders, treat_none_as_null = true)]
struct StepColumns {
    status: String,
    paid_at: Option<i64>,
    expired_at: Option<i64>,
    cancelled_at: Option<i64>,
    released_at: Option<i64>,
    refund_requested_at: Option<i64>,
    refunded_at: Option<i64>,
}

impl StepColumns {
    fn column(&mut self, step: Step) -> &mut Option<i64> {
        match step {
            Step::Paid => &mut self.paid_at,
            Step::Expired => &mut self.expired_at,
            Step::Cancelled => &mut self.cancelled_at,
            Step::Released => &mut self.released_at,
            Step::RefundRequested => &mut self.refund_requested_at,
            Step::Refunded => &mut self.refunded_at,
        }
    }

    fn of(timeline: &Timeline) -> Self {
        let mut columns = Self { status: timeline.life().status().as_str().to_owned(), ..Self::default() };
        for taken in timeline.steps() {
            *columns.column(taken.step) = Some(taken.at.millis());
        }
        columns
    }

    /// The timeline these columns hold: the steps in the order they were taken (by time, then by the order in which
    /// the life allows them).
    fn timeline(mut self) -> Timeline {
        let mut steps: Vec<StepAt> = Step::ALL
            .into_iter()
            .filter_map(|step| self.column(step).map(|at| StepAt { step, at: Timestamp::from_millis(at) }))
            .collect();
        steps.sort_by_key(|taken| taken.at);
        Timeline::of(steps)
    }
}

/// A whole row, as read.
#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
struct StoredOrder {
    #[diesel(embed)]
    row: OrderRow,
    #[diesel(embed)]
    steps: StepColumns,
}

impl OrderRow {
    fn projected(reservation: &Reservation, position: Position) -> Self {
        Self {
            order_id: reservation.order_id.to_string(),
            product_id: reservation.product_id.get(),
            user_id: reservation.user_id.get(),
            quantity: reservation.quantity.get() as i32,
            status: OrderStatus::Reserved.as_str().to_owned(),
            reserved_at: reservation.reserved_at.millis(),
            pay_before: reservation.pay_before.millis(),
            journal_position: position.get(),
        }
    }
}

impl StoredOrder {
    fn into_order(self) -> Result<Order, DbError> {
        let Self { row, steps } = self;
        let corrupt = |what: &str| DbError::Corrupt(format!("orders row {}: bad {what}", row.order_id));
        let timeline = steps.timeline();
        if timeline.life().status().as_str() != row.status {
            return Err(corrupt("status"));
        }
        let reservation = Reservation {
            order_id: row.order_id.parse().map_err(|_| corrupt("order_id"))?,
            product_id: ProductId::try_from(row.product_id).map_err(|_| corrupt("product_id"))?,
            user_id: UserId::try_from(row.user_id).map_err(|_| corrupt("user_id"))?,
            quantity: Quantity::try_from(i64::from(row.quantity)).map_err(|_| corrupt("quantity"))?,
            idempotency_key: None,
            reserved_at: Timestamp::from_millis(row.reserved_at),
            pay_before: Timestamp::from_millis(row.pay_before),
        };
        Ok(Order::new(&reservation, timeline))
    }
}

/// An order's step as the projector applies it.
enum StepEvent {
    Take(Step, Timestamp),
    Revoke(Step),
}

/// `INSERT … ON CONFLICT DO NOTHING` is spelled differently per backend.
trait InsertNewOrders {
    fn insert_new_orders(&mut self, rows: &[OrderRow]) -> QueryResult<usize>;
}

/// PostgreSQL gets one array per column instead of eight parameters per row: the statement stays the same for
/// every batch, and the server unpacks the rows without parsing and planning thousands of placeholders.
impl InsertNewOrders for diesel::PgConnection {
    fn insert_new_orders(&mut self, rows: &[OrderRow]) -> QueryResult<usize> {
        use diesel::sql_types::{Array, BigInt, Integer, Text};
        fn column<'r, T: ?Sized>(rows: &'r [OrderRow], field: impl Fn(&'r OrderRow) -> &'r T) -> Vec<&'r T> {
            rows.iter().map(field).collect()
        }
        diesel::sql_query(
            "INSERT INTO orders \
             (order_id, product_id, user_id, quantity, status, reserved_at, pay_before, journal_position) \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int4[], $5::text[], $6::int8[], \
             $7::int8[], $8::int8[]) ON CONFLICT DO NOTHING",
        )
        .bind::<Array<Text>, _>(column(rows, |row| row.order_id.as_str()))
        .bind::<Array<BigInt>, _>(column(rows, |row| &row.product_id))
        .bind::<Array<BigInt>, _>(column(rows, |row| &row.user_id))
        .bind::<Array<Integer>, _>(column(rows, |row| &row.quantity))
        .bind::<Array<Text>, _>(column(rows, |row| row.status.as_str()))
        .bind::<Array<BigInt>, _>(column(rows, |row| &row.reserved_at))
        .bind::<Array<BigInt>, _>(column(rows, |row| &row.pay_before))
        .bind::<Array<BigInt>, _>(column(rows, |row| &row.journal_position))
        .execute(self)
    }
}

impl InsertNewOrders for diesel::SqliteConnection {
    fn insert_new_orders(&mut self, rows: &[OrderRow]) -> QueryResult<usize> {
        diesel::insert_or_ignore_into(orders::table).values(rows).execute(self)
    }
}

impl Database {
    /// Writes the orders `events` describe, and, given a `cursor`, moves that projector to the last event's
    /// position in the same transaction. Returns how many orders were new. Each reservation's span from `spans`, if
    /// any, lasts until its row is committed.
    pub async fn project_orders(
        &self,
        events: Vec<Recorded>,
        cursor: Option<&'static str>,
        spans: Option<&dyn OrderSpans>,
    ) -> Result<usize, DbError> {
        let Some(last) = events.last().map(|recorded| recorded.position) else {
            return Ok(0);
        };
        // Held until the write below is over: they end as this function returns.
        let _applying: Vec<tracing::Span> = match spans {
            Some(spans) => events
                .iter()
                .filter_map(|recorded| match &recorded.event {
                    JournalEvent::Reserved(reservation) => Some(spans.applying(reservation, recorded.position)),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        let mut rows = Vec::with_capacity(events.len());
        let mut voided = Vec::new();
        let mut steps = Vec::new();
        for recorded in &events {
            if let Some((step, taken)) = recorded.event.step() {
                steps.push((taken.order_id, StepEvent::Take(step, taken.at)));
                continue;
            }
            match &recorded.event {
                JournalEvent::Reserved(reservation) => rows.push(OrderRow::projected(reservation, recorded.position)),
                JournalEvent::Voided(void) => voided.push(void.order_id.to_string()),
                JournalEvent::Revoked(revoked) => steps.push((revoked.order_id, StepEvent::Revoke(revoked.step))),
                // A restock is no order: stock is the product actors' to count (a restock's void deletes nothing).
                JournalEvent::StockAdded(_) => {}
                _ => {}
            }
        }
        self.write(move |conn| {
            let inserted = per_backend!(conn, conn => conn.transaction(|conn| {
                let mut inserted = 0;
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    inserted += conn.insert_new_orders(chunk)?;
                }
                for chunk in voided.chunks(ROWS_PER_INSERT) {
                    diesel::delete(orders::table.filter(orders::order_id.eq_any(chunk))).execute(conn)?;
                }
                apply_steps(conn, &steps)?;
                if let Some(name) = cursor {
                    diesel::insert_into(projector_offsets::table)
                        .values((projector_offsets::name.eq(name), projector_offsets::position.eq(last.get())))
                        .on_conflict(projector_offsets::name)
                        .do_update()
                        .set(projector_offsets::position.eq(last.get()))
                        .execute(conn)?;
                }
                diesel::QueryResult::Ok(inserted)
            }))?;
            Ok(inserted)
        })
        .await
    }

    /// Where projector `name` stopped: every event at or before it is in `orders`.
    pub async fn projector_position(&self, name: &'static str) -> Result<Position, DbError> {
        self.run(move |conn| {
            let position = projector_offsets::table
                .filter(projector_offsets::name.eq(name))
                .select(projector_offsets::position)
                .first::<i64>(conn)
                .optional()?;
            Ok(Position::new(position.unwrap_or(0)))
        })
        .await
    }

    pub async fn order(&self, id: OrderId) -> Result<Option<Order>, DbError> {
        self.run(move |conn| {
            orders::table
                .filter(orders::order_id.eq(id.to_string()))
                .select(StoredOrder::as_select())
                .first::<StoredOrder>(conn)
                .optional()?
                .map(StoredOrder::into_order)
                .transpose()
        })
        .await
    }

    /// A user's most recent orders, newest first.
    pub async fn orders_of_user(&self, user: UserId, limit: i64) -> Result<Vec<Order>, DbError> {
        self.run(move |conn| {
            orders::table
                .filter(orders::user_id.eq(user.get()))
                .order(orders::reserved_at.desc())
                .limit(limit)
                .select(StoredOrder::as_select())
                .load::<StoredOrder>(conn)?
                .into_iter()
                .map(StoredOrder::into_order)
                .collect()
        })
        .await
    }

    /// Every order of a product, oldest first: for audits of a sale.
    pub async fn orders_of_product(&self, product: ProductId) -> Result<Vec<Order>, DbError> {
        self.run(move |conn| {
            orders::table
                .filter(orders::product_id.eq(product.get()))
                .order(orders::reserved_at.asc())
                .select(StoredOrder::as_select())
                .load::<StoredOrder>(conn)?
                .into_iter()
                .map(StoredOrder::into_order)
                .collect()
        })
        .await
    }
}

/// Reading and writing the step columns: the same diesel calls for each backend's connection type.
trait StepRows {
    fn load_steps(&mut self, ids: &[String]) -> QueryResult<Vec<(String, StepColumns)>>;
    fn save_steps(&mut self, id: &str, columns: &StepColumns) -> QueryResult<usize>;
}

macro_rules! step_rows {
    ($($connection:ty),*) => {$(
        impl StepRows for $connection {
            fn load_steps(&mut self, ids: &[String]) -> QueryResult<Vec<(String, StepColumns)>> {
                orders::table
                    .filter(orders::order_id.eq_any(ids))
                    .select((orders::order_id, StepColumns::as_select()))
                    .load(self)
            }

            fn save_steps(&mut self, id: &str, columns: &StepColumns) -> QueryResult<usize> {
                diesel::update(orders::table.filter(orders::order_id.eq(id))).set(columns).execute(self)
            }
        }
    )*};
}

step_rows!(diesel::PgConnection, diesel::SqliteConnection);

/// Applies a batch's steps, in journal order, to the rows of their orders: read once, moved through each order's
/// `Timeline`, written back where they changed. A step for an order with no row (a voided reservation) is dropped.
fn apply_steps(conn: &mut impl StepRows, steps: &[(OrderId, StepEvent)]) -> QueryResult<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<String> = steps.iter().map(|(id, _)| id.to_string()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut timelines: HashMap<String, (Timeline, bool)> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        for (id, columns) in conn.load_steps(chunk)? {
            timelines.insert(id, (columns.timeline(), false));
        }
    }
    for (id, event) in steps {
        let Some((timeline, changed)) = timelines.get_mut(&id.to_string()) else { continue };
        *changed |= match *event {
            StepEvent::Take(step, at) => timeline.apply(step, at),
            StepEvent::Revoke(step) => timeline.revoke(step),
        };
    }
    for (id, (timeline, changed)) in timelines {
        if changed {
            conn.save_steps(&id, &StepColumns::of(&timeline))?;
        }
    }
    Ok(())
}

//! The `orders` table: the read side built from the journal by the OrderProjector, and what buyers and admins
//! query. Rows and, for a journal kept in a table, the projector's position are written in one transaction, so a
//! crash never leaves one without the other; inserts ignore rows already there and voids delete theirs, so
//! replaying a stretch twice, in journal order, changes nothing.

use diesel::prelude::*;

use super::db::{per_backend, Database, DbError};
use super::schema::{orders, projector_offsets};
use crate::domain::{
    JournalEvent, Order, OrderId, OrderStatus, Position, ProductId, Quantity, Recorded, Reservation, Timestamp, UserId,
};

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

impl OrderRow {
    fn projected(reservation: &Reservation, position: Position) -> Self {
        let order = Order::reserved(reservation);
        Self {
            order_id: order.order_id.to_string(),
            product_id: order.product_id.get(),
            user_id: order.user_id.get(),
            quantity: order.quantity.get() as i32,
            status: order.status.as_str().to_owned(),
            reserved_at: order.reserved_at.millis(),
            pay_before: order.pay_before.millis(),
            journal_position: position.get(),
        }
    }

    fn into_order(self) -> Result<Order, DbError> {
        let corrupt = |what: &str| DbError::Corrupt(format!("orders row {}: bad {what}", self.order_id));
        Ok(Order {
            order_id: self.order_id.parse().map_err(|_| corrupt("order_id"))?,
            product_id: ProductId::try_from(self.product_id).map_err(|_| corrupt("product_id"))?,
            user_id: UserId::try_from(self.user_id).map_err(|_| corrupt("user_id"))?,
            quantity: Quantity::try_from(i64::from(self.quantity)).map_err(|_| corrupt("quantity"))?,
            status: OrderStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            reserved_at: Timestamp::from_millis(self.reserved_at),
            pay_before: Timestamp::from_millis(self.pay_before),
        })
    }
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
    /// position in the same transaction. Returns how many orders were new.
    pub async fn project_orders(&self, events: Vec<Recorded>, cursor: Option<&'static str>) -> Result<usize, DbError> {
        let Some(last) = events.last().map(|recorded| recorded.position) else {
            return Ok(0);
        };
        let mut rows = Vec::with_capacity(events.len());
        let mut voided = Vec::new();
        for recorded in &events {
            match &recorded.event {
                JournalEvent::Reserved(reservation) => rows.push(OrderRow::projected(reservation, recorded.position)),
                JournalEvent::Voided(void) => voided.push(void.order_id.to_string()),
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
                .select(OrderRow::as_select())
                .first::<OrderRow>(conn)
                .optional()?
                .map(OrderRow::into_order)
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
                .select(OrderRow::as_select())
                .load::<OrderRow>(conn)?
                .into_iter()
                .map(OrderRow::into_order)
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
                .select(OrderRow::as_select())
                .load::<OrderRow>(conn)?
                .into_iter()
                .map(OrderRow::into_order)
                .collect()
        })
        .await
    }
}

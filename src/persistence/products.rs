//! The `products` table: what an admin decided about each sale. Stock levels are not here; they live in the
//! product actors and the journal.

use diesel::prelude::*;

use super::db::{per_backend, Database, DbError};
use super::schema::products;
use crate::domain::{
    PaymentWindow, PerUserLimit, Product, ProductDraft, ProductId, SaleWindow, ShardCount, StockLevel, Timestamp,
};

type Row = (i64, String, i64, i32, i32, i32, i64, i64, i32);

fn from_row(
    (id, name, price_cents, stock, per_user_limit, shards, starts_at, ends_at, payment_window): Row,
) -> Result<Product, DbError> {
    let bad = |what: &str| DbError::Corrupt(format!("products row {id}: bad {what}"));
    let window = SaleWindow::new(Timestamp::from_millis(starts_at), Timestamp::from_millis(ends_at))
        .map_err(|_| bad("window"))?;
    Ok(Product {
        id: ProductId::try_from(id).map_err(|_| bad("id"))?,
        draft: ProductDraft {
            name,
            price_cents,
            stock: StockLevel::try_from(i64::from(stock)).map_err(|_| bad("stock"))?,
            per_user_limit: PerUserLimit::try_from(i64::from(per_user_limit)).map_err(|_| bad("per_user_limit"))?,
            shards: ShardCount::try_from(i64::from(shards)).map_err(|_| bad("shards"))?,
            window,
            payment_window: PaymentWindow::try_from(i64::from(payment_window))
                .map_err(|_| bad("payment_window_secs"))?,
        },
    })
}

impl Database {
    pub async fn create_product(&self, draft: ProductDraft) -> Result<Product, DbError> {
        let row = (
            products::name.eq(draft.name.clone()),
            products::price_cents.eq(draft.price_cents),
            products::stock.eq(draft.stock.get() as i32),
            products::per_user_limit.eq(draft.per_user_limit.get() as i32),
            products::shards.eq(draft.shards.get() as i32),
            products::starts_at.eq(draft.window.starts_at().millis()),
            products::ends_at.eq(draft.window.ends_at().millis()),
            products::payment_window_secs.eq(draft.payment_window.get() as i32),
            products::created_at.eq(Timestamp::now().millis()),
        );
        let id = self
            .write(move |conn| {
                Ok(per_backend!(conn, conn => diesel::insert_into(products::table)
                    .values(row)
                    .returning(products::id)
                    .get_result::<i64>(conn))?)
            })
            .await?;
        let id = ProductId::try_from(id).map_err(|_| DbError::Corrupt(format!("products row {id}: bad id")))?;
        Ok(Product { id, draft })
    }

    pub async fn products(&self) -> Result<Vec<Product>, DbError> {
        self.run(|conn| {
            products::table
                .order(products::id.asc())
                .select((
                    products::id,
                    products::name,
                    products::price_cents,
                    products::stock,
                    products::per_user_limit,
                    products::shards,
                    products::starts_at,
                    products::ends_at,
                    products::payment_window_secs,
                ))
                .load::<Row>(conn)?
                .into_iter()
                .map(from_row)
                .collect()
        })
        .await
    }
}

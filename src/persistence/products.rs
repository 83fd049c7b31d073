//! The `products` table: what an admin decided about each sale, including its switch and its window as last
//! changed, and the `sale_switch` row of the switch over every sale. Stock levels are not here (beyond what a sale
//! started with); they live in the product actors and the journal, restocks included.

use diesel::prelude::*;

use super::db::{per_backend, Database, DbError};
use super::schema::{products, sale_switch};
use crate::domain::{
    PaymentWindow, PerUserLimit, Product, ProductDraft, ProductId, SaleState, SaleWindow, ShardCount, StockLevel,
    Timestamp,
};

type Row = (i64, String, i64, i32, i32, i32, i64, i64, i32, String, bool);

/// The one row of `sale_switch`.
const GLOBAL: i32 = 1;

fn from_row(
    (id, name, price_cents, stock, per_user_limit, shards, starts_at, ends_at, payment_window, sale, requires_token): Row,
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
            requires_token,
        },
        sale: SaleState::parse(&sale).ok_or_else(|| bad("sale"))?,
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
            products::requires_token.eq(draft.requires_token),
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
        Ok(Product { id, draft, sale: SaleState::Open })
    }

    /// Stores `product`'s switch; false if there is no such product.
    pub async fn set_sale(&self, product: ProductId, sale: SaleState) -> Result<bool, DbError> {
        self.write(move |conn| {
            let row = products::table.filter(products::id.eq(product.get()));
            Ok(diesel::update(row).set(products::sale.eq(sale.as_str())).execute(conn)? == 1)
        })
        .await
    }

    /// Stores `product`'s new window; false if there is no such product.
    pub async fn set_window(&self, product: ProductId, window: SaleWindow) -> Result<bool, DbError> {
        self.write(move |conn| {
            let row = products::table.filter(products::id.eq(product.get()));
            let window =
                (products::starts_at.eq(window.starts_at().millis()), products::ends_at.eq(window.ends_at().millis()));
            Ok(diesel::update(row).set(window).execute(conn)? == 1)
        })
        .await
    }

    /// The switch over every sale (open until an admin first sets it).
    pub async fn global_sale(&self) -> Result<SaleState, DbError> {
        self.run(|conn| {
            let stored = sale_switch::table
                .filter(sale_switch::id.eq(GLOBAL))
                .select(sale_switch::state)
                .first::<String>(conn)
                .optional()?;
            match stored {
                None => Ok(SaleState::Open),
                Some(name) => {
                    SaleState::parse(&name).ok_or_else(|| DbError::Corrupt(format!("sale_switch: bad state {name:?}")))
                }
            }
        })
        .await
    }

    pub async fn set_global_sale(&self, sale: SaleState) -> Result<(), DbError> {
        self.write(move |conn| {
            let row = (
                sale_switch::id.eq(GLOBAL),
                sale_switch::state.eq(sale.as_str()),
                sale_switch::changed_at.eq(Timestamp::now().millis()),
            );
            per_backend!(conn, conn => diesel::insert_into(sale_switch::table)
                .values(row)
                .on_conflict(sale_switch::id)
                .do_update()
                .set((sale_switch::state.eq(sale.as_str()), sale_switch::changed_at.eq(Timestamp::now().millis())))
                .execute(conn))?;
            Ok(())
        })
        .await
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
                    products::sale,
                    products::requires_token,
                ))
                .load::<Row>(conn)?
                .into_iter()
                .map(from_row)
                .collect()
        })
        .await
    }
}

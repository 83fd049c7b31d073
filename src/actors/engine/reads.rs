//! Reading orders: from the shards that hold them, which know every step an order has taken the moment it is durable,
//! and from the `orders` table for what no shard holds. Also how far the projection is.

use std::collections::HashSet;

use super::{ask, Engine, EngineError};
use crate::actors::orders::projector::ProjectorStatus;
use crate::actors::root::RootMsg;
use crate::actors::sale::shard::ShardMsg;
use crate::actors::supervision::SupervisorView;
use crate::domain::{Order, OrderId, ProductId, UserId};

/// Every supervisor's restarts, as an admin sees them.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Supervision {
    pub root: SupervisorView,
    pub products: SupervisorView,
    /// Restarts of failed PaymentAttempt actors.
    pub payments: SupervisorView,
    /// Restarts of failed Compensation actors.
    pub compensations: SupervisorView,
}

/// How many of a buyer's orders `GET /orders` lists.
const RECENT_ORDERS: i64 = 100;

impl Engine {
    /// An order as the shard that holds it knows it — the shard of `holder` in every product, or with no holder
    /// given, every shard — or else from `orders`.
    pub async fn order(&self, id: OrderId, holder: Option<UserId>) -> Result<Option<Order>, EngineError> {
        for handle in self.catalog.all() {
            let shards = match holder {
                Some(user) => std::slice::from_ref(handle.shard_of(user)),
                None => &handle.shards[..],
            };
            for shard in shards {
                if let Some(order) = ask(shard, |reply| ShardMsg::Order(id, reply)).await? {
                    return Ok(Some(order));
                }
            }
        }
        Ok(self.db.order(id).await?)
    }

    /// A user's most recent orders, newest first, as their shards know them, and from `orders` any no shard holds.
    pub async fn orders_of_user(&self, user: UserId) -> Result<Vec<Order>, EngineError> {
        let mut orders = Vec::new();
        for handle in self.catalog.all() {
            orders.extend(ask(handle.shard_of(user), |reply| ShardMsg::OrdersOf(user, reply)).await?);
        }
        let held: HashSet<OrderId> = orders.iter().map(|order| order.order_id).collect();
        let projected = self.db.orders_of_user(user, RECENT_ORDERS).await?;
        orders.extend(projected.into_iter().filter(|order| !held.contains(&order.order_id)));
        orders.sort_by_key(|order| std::cmp::Reverse(order.reserved_at));
        orders.truncate(RECENT_ORDERS as usize);
        Ok(orders)
    }

    pub async fn orders_of_product(&self, product: ProductId) -> Result<Vec<Order>, EngineError> {
        self.catalog.get(product).ok_or(EngineError::NotFound)?;
        Ok(self.db.orders_of_product(product).await?)
    }

    pub async fn projector_status(&self) -> Result<ProjectorStatus, EngineError> {
        ask(&self.root, RootMsg::ProjectorStatus).await
    }

    /// How many journal events the projector has yet to write into `orders`: 0 once it has caught up.
    pub async fn projection_lag(&self) -> Result<u64, EngineError> {
        Ok(self.projection.projection_lag(&self.db).await?)
    }

    /// Product restarts performed by the product supervisor since it started.
    pub async fn restarts(&self) -> Result<u64, EngineError> {
        Ok(self.supervision().await?.products.restarts)
    }

    /// The restarts of every supervisor: the root's children, the products, and the payment and compensation jobs.
    pub async fn supervision(&self) -> Result<Supervision, EngineError> {
        Ok(Supervision {
            root: ask(&self.root, RootMsg::Supervision).await?,
            products: ask(&self.root, RootMsg::ProductSupervision).await?,
            payments: self.payment_jobs().await?.supervision,
            compensations: self.compensation_jobs().await?.supervision,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{engine, no_pass, open_sale, settings};
    use super::super::EngineSettings;
    use super::*;
    use crate::domain::Quantity;
    use crate::persistence::Journal;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buyers_read_orders_the_projector_has_not_written_yet() {
        let dir = tempfile::tempdir().unwrap();
        let deferred =
            EngineSettings { projector_quiet: Duration::from_secs(3600), projector_max_lag: u64::MAX, ..settings() };
        let engine = engine(&dir, Journal::whole, deferred).await;
        let product = open_sale(&engine, 10).await;
        let one = Quantity::try_from(1).unwrap();
        let buyer = UserId::try_from(3).unwrap();
        let receipt = engine.purchase(product, buyer, one, None, no_pass).await.unwrap();

        assert_eq!(engine.db.order(receipt.order_id).await.unwrap(), None, "projection waits for a quiet journal");
        assert!(engine.projection_lag().await.unwrap() > 0);
        let order = engine.order(receipt.order_id, Some(buyer)).await.unwrap().expect("the buyer sees the order");
        assert_eq!((order.user_id, order.product_id, order.quantity), (buyer, product, one));
        let seen_by_admin = engine.order(receipt.order_id, None).await.unwrap();
        assert_eq!(seen_by_admin.map(|order| order.order_id), Some(receipt.order_id));
        let mine = engine.orders_of_user(buyer).await.unwrap();
        assert_eq!(mine.iter().map(|order| order.order_id).collect::<Vec<_>>(), vec![receipt.order_id]);
        assert!(engine.orders_of_user(UserId::try_from(4).unwrap()).await.unwrap().is_empty());
        engine.shutdown().await;
    }
}

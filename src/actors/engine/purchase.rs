//! Purchase routing: the sale window, the admin's switches (the product's and the global one, an atomic load each)
//! and the sold-out flag are checked from memory, then, for a sale that requires one, the buyer's seckill token, and
//! the purchase goes straight to the buyer's shard — no other actor is involved. The token is spent only once
//! everything else has let the purchase through, so a buyer refused for a closed or sold-out sale keeps theirs.

use ractor::rpc::CallResult;

use super::Engine;
use crate::actors::sale::catalog::ProductHandle;
use crate::actors::sale::shard::book::{HeldOrders, PurchaseRequest, Receipt, Refusal};
use crate::actors::sale::shard::ShardMsg;
use crate::domain::{admit, Closed, IdempotencyKey, PassRefusal, ProductId, Quantity, Timestamp, UserId};

/// Why a purchase was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurchaseError {
    #[error("no such product")]
    NotFound,
    #[error("the sale has not started")]
    NotStarted { starts_at: Timestamp },
    #[error("the sale has ended")]
    Ended,
    #[error("the sale is paused")]
    SalePaused,
    #[error("the sale is draining: it takes no new purchases")]
    SaleDraining,
    #[error("sold out")]
    SoldOut,
    #[error("only {available} units left")]
    InsufficientStock { available: u64 },
    #[error("limit of {limit} per user reached")]
    LimitExceeded { limit: u32, held: u32, orders: HeldOrders },
    #[error("the order could not be recorded; nothing was taken")]
    Unavailable,
    #[error(transparent)]
    Pass(#[from] PassRefusal),
    #[error("this Idempotency-Key was used for another request (another quantity)")]
    KeyReused,
    #[error("the request with this Idempotency-Key is still being processed; ask again in a moment")]
    KeyInFlight,
}

impl From<Refusal> for PurchaseError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::SoldOut => PurchaseError::SoldOut,
            Refusal::InsufficientStock { available } => PurchaseError::InsufficientStock { available },
            Refusal::LimitExceeded { limit, held, orders } => PurchaseError::LimitExceeded { limit, held, orders },
            Refusal::Unavailable => PurchaseError::Unavailable,
            Refusal::KeyReused => PurchaseError::KeyReused,
            Refusal::KeyInFlight => PurchaseError::KeyInFlight,
        }
    }
}

impl From<Closed> for PurchaseError {
    fn from(closed: Closed) -> Self {
        match closed {
            Closed::NotStarted { starts_at } => PurchaseError::NotStarted { starts_at },
            Closed::Ended => PurchaseError::Ended,
            Closed::Paused => PurchaseError::SalePaused,
            Closed::Draining => PurchaseError::SaleDraining,
        }
    }
}

impl Engine {
    /// `user` buys `quantity` of `product`; `pass` spends the buyer's seckill token, asked only if the sale requires
    /// one and everything else lets the purchase through.
    pub async fn purchase(
        &self,
        product: ProductId,
        user: UserId,
        quantity: Quantity,
        key: Option<IdempotencyKey>,
        pass: impl FnOnce() -> Result<(), PassRefusal>,
    ) -> Result<Receipt, PurchaseError> {
        let handle = self.catalog.get(product).ok_or(PurchaseError::NotFound)?;
        open_to_buyers(&handle)?;
        // A retried request must still find its order, so only key-less requests take the sold-out shortcut.
        if key.is_none() && handle.gauges.is_sold_out() {
            return Err(PurchaseError::SoldOut);
        }
        if handle.product.draft.requires_token {
            pass()?;
        }
        let asked = handle
            .shard_of(user)
            .call(
                |reply| ShardMsg::Purchase(PurchaseRequest { user, quantity, key, reply }),
                Some(self.settings.purchase_timeout),
            )
            .await;
        match asked {
            Ok(CallResult::Success(outcome)) => outcome.map_err(PurchaseError::from),
            Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => Err(PurchaseError::Unavailable),
        }
    }

    /// Whether `product` takes purchases right now and has a unit no one holds: what a seckill token is issued
    /// after.
    pub fn open_to_buyers(&self, product: ProductId) -> Result<(), PurchaseError> {
        let handle = self.catalog.get(product).ok_or(PurchaseError::NotFound)?;
        open_to_buyers(&handle)?;
        if handle.gauges.available() == 0 {
            return Err(PurchaseError::SoldOut);
        }
        Ok(())
    }
}

/// Inside the window, and neither the product's switch nor the global one holds it back.
fn open_to_buyers(handle: &ProductHandle) -> Result<(), Closed> {
    admit(handle.product.draft.window, Timestamp::now(), handle.live.sale(), handle.live.global())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{engine, flaky, no_pass, open_sale, restart_product, settings, slow, until};
    use super::*;

    #[tokio::test]
    async fn a_failed_append_puts_the_stock_and_the_buyers_slot_back() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, flaky(1, false), settings()).await;
        let product = open_sale(&engine, 5).await;
        let (user, one) = (UserId::try_from(7).unwrap(), Quantity::try_from(1).unwrap());

        let refused = engine.purchase(product, user, one, None, no_pass).await;
        assert_eq!(refused, Err(PurchaseError::Unavailable));
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.in_flight, view.reserved, view.summary.available), (0, 0, 5), "nothing was taken");
        assert!(view.invariant_holds);

        let receipt = engine.purchase(product, user, one, None, no_pass).await;
        assert!(receipt.is_ok(), "the buyer's slot came back with the stock: {receipt:?}");
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.reserved, view.summary.available), (1, 4));
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_append_that_landed_after_all_is_voided_not_sold_twice() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, flaky(1, true), settings()).await;
        let product = open_sale(&engine, 1).await;
        let one = Quantity::try_from(1).unwrap();
        let (first, second) = (UserId::try_from(1).unwrap(), UserId::try_from(2).unwrap());

        assert_eq!(engine.purchase(product, first, one, None, no_pass).await, Err(PurchaseError::Unavailable));
        let sold = engine.purchase(product, second, one, None, no_pass).await.expect("the unit came back and sells");

        restart_product(&engine, product).await;
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.reserved, view.summary.available), (1, 0), "the refused reservation was voided");
        assert!(view.invariant_holds);
        until("the projector catches up", || async { engine.projection_lag().await.unwrap() == 0 }).await;
        let orders = engine.orders_of_product(product).await.unwrap();
        assert_eq!(orders.iter().map(|order| order.order_id).collect::<Vec<_>>(), vec![sold.order_id]);
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_repeated_in_flight_or_for_another_quantity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, slow(std::time::Duration::from_millis(300)), settings()).await;
        let product = open_sale(&engine, 5).await;
        let buyer = UserId::try_from(1).unwrap();
        let (one, two) = (Quantity::try_from(1).unwrap(), Quantity::try_from(2).unwrap());
        let key = || Some(IdempotencyKey::try_from("checkout-1".to_owned()).unwrap());

        let first = engine.purchase(product, buyer, one, key(), no_pass);
        let repeats = async {
            until("the first purchase is in flight", || async { engine.product(product).unwrap().available == 4 })
                .await;
            let same = engine.purchase(product, buyer, one, key(), no_pass).await;
            let other = engine.purchase(product, buyer, two, key(), no_pass).await;
            (same, other)
        };
        let (first, (same, other)) = tokio::join!(first, repeats);
        let first = first.expect("the first purchase is accepted");
        assert_eq!(same, Err(PurchaseError::KeyInFlight), "a repeat while the first is being recorded");
        assert_eq!(other, Err(PurchaseError::KeyReused), "the key for another quantity");

        assert_eq!(engine.purchase(product, buyer, one, key(), no_pass).await, Ok(first), "a repeat once it is done");
        assert_eq!(engine.purchase(product, buyer, two, key(), no_pass).await, Err(PurchaseError::KeyReused));
        assert_eq!(engine.product(product).unwrap().available, 4, "one unit sold, to the first purchase only");
        engine.shutdown().await;
    }
}

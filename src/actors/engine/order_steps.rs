//! A buyer's requests about an order they hold (cancel): asked of the buyer's shard in each product,
//! since an order id does not say which product it belongs to; only the shard holding it answers with more than
//! "not found".

use super::Engine;
use crate::actors::sale::shard::book::{ActRefusal, OrderAct};
use crate::domain::{Order, OrderId, OrderStatus, UserId};

/// Why an order request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderStepError {
    #[error("no such order")]
    NotFound,
    #[error("the order is {}", .0.as_str())]
    Conflict(OrderStatus),
    #[error("the step could not be recorded; nothing changed")]
    Unavailable,
}

impl Engine {
    /// Cancels a reserved order; its units are then released back on sale. Cancelling a cancelled order answers it
    /// as it is.
    pub async fn cancel(&self, order: OrderId, user: UserId) -> Result<Order, OrderStepError> {
        self.act(order, user, OrderAct::Cancel).await
    }

    async fn act(&self, order: OrderId, user: UserId, act: OrderAct) -> Result<Order, OrderStepError> {
        for handle in self.catalog.all() {
            let asked = self.catalog.act(handle.product.id, user, order, act, self.settings.purchase_timeout).await;
            match asked {
                Err(ActRefusal::NotFound) => continue,
                answered => return Ok(answered?),
            }
        }
        Err(OrderStepError::NotFound)
    }
}

impl From<ActRefusal> for OrderStepError {
    fn from(refusal: ActRefusal) -> Self {
        match refusal {
            ActRefusal::NotFound => OrderStepError::NotFound,
            ActRefusal::Conflict(status) => OrderStepError::Conflict(status),
            ActRefusal::Unavailable => OrderStepError::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::super::testing::{engine, flaky_on_cue, no_pass, open_sale, restart_product, settings, until};
    use super::*;
    use crate::domain::{Quantity, Step};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancel_the_journal_refused_is_not_taken_even_if_it_landed_and_a_restart_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let refuse = Arc::new(AtomicUsize::new(0));
        let engine = engine(&dir, flaky_on_cue(Arc::clone(&refuse), true), settings()).await;
        let product = open_sale(&engine, 10).await;
        let buyer = UserId::try_from(3).unwrap();
        let order =
            engine.purchase(product, buyer, Quantity::try_from(1).unwrap(), None, no_pass).await.unwrap().order_id;
        let status = || async { engine.order(order, Some(buyer)).await.unwrap().map(|order| order.status()) };

        refuse.store(1, Ordering::SeqCst);
        assert_eq!(engine.cancel(order, buyer).await, Err(OrderStepError::Unavailable));
        assert_eq!(status().await, Some(OrderStatus::Reserved));
        restart_product(&engine, product).await;
        assert_eq!(status().await, Some(OrderStatus::Reserved), "the landed cancel is revoked in the journal");

        assert_eq!(engine.cancel(order, buyer).await.map(|order| order.status()), Ok(OrderStatus::Cancelled));
        until("the unit is released", || async { engine.inspect(product).await.unwrap().released == 1 }).await;
        restart_product(&engine, product).await;
        assert_eq!(status().await, Some(OrderStatus::Released));
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.released, view.reserved, view.summary.available), (1, 0, 10));
        assert!(view.invariant_holds);
        assert_eq!(engine.cancel(order, UserId::try_from(4).unwrap()).await, Err(OrderStepError::NotFound));

        until("the projector has the order's steps", || async {
            let projected = engine.db.order(order).await.unwrap();
            projected.is_some_and(|order| order.status() == OrderStatus::Released)
        })
        .await;
        let projected = engine.db.order(order).await.unwrap().unwrap();
        let steps: Vec<Step> = projected.timeline.steps().iter().map(|taken| taken.step).collect();
        assert_eq!(steps, [Step::Cancelled, Step::Released], "the revoked cancel left no trace");
        engine.shutdown().await;
    }
}

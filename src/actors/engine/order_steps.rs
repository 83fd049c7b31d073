//! A buyer's requests about an order they hold (cancel, and later pay): asked of the buyer's shard in each product,
//! since an order id does not say which product it belongs to; only the shard holding it answers with more than
//! "not found".

use ractor::rpc::CallResult;

use super::Engine;
use crate::actors::sale::shard::book::{ActRefusal, OrderAct, OrderRequest};
use crate::actors::sale::shard::ShardMsg;
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
            let asked = handle
                .shard_of(user)
                .call(
                    |reply| ShardMsg::Act(OrderRequest { order, user, act, reply }),
                    Some(self.settings.purchase_timeout),
                )
                .await;
            match asked {
                Ok(CallResult::Success(Err(ActRefusal::NotFound))) => continue,
                Ok(CallResult::Success(Ok(order))) => return Ok(order),
                Ok(CallResult::Success(Err(ActRefusal::Conflict(status)))) => {
                    return Err(OrderStepError::Conflict(status))
                }
                Ok(CallResult::Success(Err(ActRefusal::Unavailable)))
                | Ok(CallResult::Timeout | CallResult::SenderError)
                | Err(_) => return Err(OrderStepError::Unavailable),
            }
        }
        Err(OrderStepError::NotFound)
    }
}

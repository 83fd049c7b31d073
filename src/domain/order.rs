//! An order as buyers and admins read it: its reservation and every step taken since, and a product's durable stock
//! state for recovery.

use std::sync::Arc;

use serde::Serialize;

use super::{
    OrderId, OrderStatus, Position, ProductId, Quantity, Reservation, StepAt, StockAdded, Timeline, Timestamp, UserId,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Order {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub reserved_at: Timestamp,
    pub pay_before: Timestamp,
    /// Read as `status`, `refund` (if there is one) and `steps`, each with when it was taken.
    #[serde(flatten)]
    pub timeline: Timeline,
}

impl Order {
    pub fn new(reservation: &Reservation, timeline: Timeline) -> Self {
        Self {
            order_id: reservation.order_id,
            product_id: reservation.product_id,
            user_id: reservation.user_id,
            quantity: reservation.quantity,
            reserved_at: reservation.reserved_at,
            pay_before: reservation.pay_before,
            timeline,
        }
    }

    pub fn status(&self) -> OrderStatus {
        self.timeline.life().status()
    }
}

/// The steps of one order that has taken any, as a snapshot keeps them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderSteps {
    pub order_id: OrderId,
    pub steps: Vec<StepAt>,
}

/// A product's durable stock state at a journal position: every committed reservation at or before it, the steps
/// of the orders that took any, and every restock (so the stock it was taken under is the product's own plus theirs). Recovery loads it and replays the journal after `position`. Reservations are shared
/// with the shards that hold them, so taking a snapshot copies pointers, not reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StockSnapshot {
    pub position: Position,
    pub reservations: Vec<Arc<Reservation>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<OrderSteps>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restocks: Vec<StockAdded>,
}

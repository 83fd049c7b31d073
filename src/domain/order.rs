//! An order as buyers and admins read it: the projection of the journal's events for one reservation.

use std::sync::Arc;

use serde::Serialize;

use super::{OrderId, Position, ProductId, Quantity, Reservation, Timestamp, UserId};

/// Where an order stands. It only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Reserved,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Reserved => "reserved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        (text == "reserved").then_some(OrderStatus::Reserved)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub status: OrderStatus,
    pub reserved_at: Timestamp,
    pub pay_before: Timestamp,
}

impl Order {
    pub fn reserved(reservation: &Reservation) -> Self {
        Self {
            order_id: reservation.order_id,
            product_id: reservation.product_id,
            user_id: reservation.user_id,
            quantity: reservation.quantity,
            status: OrderStatus::Reserved,
            reserved_at: reservation.reserved_at,
            pay_before: reservation.pay_before,
        }
    }
}

/// A product's durable stock state at a journal position: every committed reservation at or before it. Recovery
/// loads it and replays the journal after `position`. Reservations are shared with the shards that hold them, so
/// taking a snapshot copies pointers, not reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StockSnapshot {
    pub position: Position,
    pub reservations: Vec<Arc<Reservation>>,
}

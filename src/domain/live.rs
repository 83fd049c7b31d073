//! What the live surfaces tell people as it happens: a product's stock as a subscriber sees it, whether an admin
//! lets it sell, and a change of one order. They are values, compared and sent as they are, so a feed can tell a
//! change from a repeat and coalesce the rest.

use serde::Serialize;

use super::{OrderId, ProductId, Step, Timestamp, UserId};

/// Whether an admin lets a product sell, apart from its window. It outlives the product's actors (a restart keeps
/// it) but not the service: a restarted service opens every sale again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    #[default]
    Open,
    /// Buyers are refused (`SALE_PAUSED`) until an admin resumes; nothing else changes.
    Paused,
    /// No new purchase is taken (`SALE_DRAINING`); those already handed to the shards finish.
    Draining,
}

impl SaleState {
    pub fn as_u8(self) -> u8 {
        match self {
            SaleState::Open => 0,
            SaleState::Paused => 1,
            SaleState::Draining => 2,
        }
    }

    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => SaleState::Paused,
            2 => SaleState::Draining,
            _ => SaleState::Open,
        }
    }
}

/// A product's stock as its live feed publishes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LiveStock {
    pub available: u64,
    pub sold_out: bool,
    pub sale: SaleState,
}

/// What became durable about an order: its reservation, or a step of its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Reserved,
    Step(Step),
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Reserved => "reserved",
            Change::Step(step) => step.as_str(),
        }
    }
}

impl Serialize for Change {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One order's change, for its buyer only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OrderChange {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub user_id: UserId,
    #[serde(rename = "status")]
    pub change: Change,
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sale_states_survive_their_atomic_form() {
        for state in [SaleState::Open, SaleState::Paused, SaleState::Draining] {
            assert_eq!(SaleState::from_u8(state.as_u8()), state);
        }
    }

    #[test]
    fn a_change_reads_as_the_status_a_buyer_knows() {
        assert_eq!(Change::Reserved.as_str(), "reserved");
        assert_eq!(Change::Step(Step::Paid).as_str(), "paid");
        assert_eq!(serde_json::to_value(Change::Step(Step::Refunded)).unwrap(), "refunded");
    }
}

//! What the live surfaces tell people as it happens: a product's stock as a subscriber sees it, whether an admin
//! lets it sell, and a change of one order. They are values, compared and sent as they are, so a feed can tell a
//! change from a repeat and coalesce the rest. Whether a purchase may reach a shard at all — the window and the
//! admin's switches — is decided here too, by one plain function the purchase path and the property test share.

use serde::{Deserialize, Serialize};

use super::{OrderId, ProductId, SalePhase, SaleWindow, Step, Timestamp, UserId};

/// Whether an admin lets a product (or, as the global switch, every product) sell, apart from its window. It is kept
/// in the database, so it outlives the product's actors and the service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// The name it is stored and sent under.
    pub fn as_str(self) -> &'static str {
        match self {
            SaleState::Open => "open",
            SaleState::Paused => "paused",
            SaleState::Draining => "draining",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [SaleState::Open, SaleState::Paused, SaleState::Draining].into_iter().find(|state| state.as_str() == name)
    }

    /// The state a buyer meets under this product switch and the `global` one: a paused service pauses everything.
    pub fn under(self, global: SaleState) -> SaleState {
        if self == SaleState::Open {
            global
        } else {
            self
        }
    }
}

/// Why a purchase is turned away before it reaches a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    NotStarted { starts_at: Timestamp },
    Ended,
    Paused,
    Draining,
}

/// Whether a purchase at `now` may go to its shard: inside the window, and neither the product's switch nor the
/// global one holds it back. Plain loads and compares: it runs on every purchase.
pub fn admit(window: SaleWindow, now: Timestamp, product: SaleState, global: SaleState) -> Result<(), Closed> {
    match window.phase(now) {
        SalePhase::Upcoming => return Err(Closed::NotStarted { starts_at: window.starts_at() }),
        SalePhase::Ended => return Err(Closed::Ended),
        SalePhase::Open => {}
    }
    match product.under(global) {
        SaleState::Open => Ok(()),
        SaleState::Paused => Err(Closed::Paused),
        SaleState::Draining => Err(Closed::Draining),
    }
}

/// A product's stock as its live feed publishes it: what is left of how much (restocks raise `stock`), and the
/// window and switch as they stand, so that an admin's change reaches every subscriber with the next value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LiveStock {
    pub available: u64,
    pub stock: u64,
    pub sold_out: bool,
    pub sale: SaleState,
    pub window: SaleWindow,
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
    fn sale_states_read_back_by_name_and_a_global_pause_holds_every_open_sale() {
        for state in [SaleState::Open, SaleState::Paused, SaleState::Draining] {
            assert_eq!(SaleState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(SaleState::parse("closed"), None);
        assert_eq!(SaleState::Open.under(SaleState::Paused), SaleState::Paused);
        assert_eq!(SaleState::Draining.under(SaleState::Paused), SaleState::Draining, "the product's own hold stays");
        assert_eq!(SaleState::Paused.under(SaleState::Open), SaleState::Paused);
    }

    #[test]
    fn only_an_open_window_with_both_switches_open_admits() {
        let (start, end) = (Timestamp::from_millis(1_000), Timestamp::from_millis(2_000));
        let window = SaleWindow::new(start, end).unwrap();
        let open = SaleState::Open;
        assert_eq!(admit(window, Timestamp::from_millis(1_500), open, open), Ok(()));
        assert_eq!(
            admit(window, Timestamp::from_millis(999), open, open),
            Err(Closed::NotStarted { starts_at: start })
        );
        assert_eq!(admit(window, end, open, open), Err(Closed::Ended));
        let inside = Timestamp::from_millis(1_500);
        assert_eq!(admit(window, inside, SaleState::Paused, open), Err(Closed::Paused));
        assert_eq!(admit(window, inside, open, SaleState::Paused), Err(Closed::Paused));
        assert_eq!(admit(window, inside, SaleState::Draining, open), Err(Closed::Draining));
    }

    #[test]
    fn a_change_reads_as_the_status_a_buyer_knows() {
        assert_eq!(Change::Reserved.as_str(), "reserved");
        assert_eq!(Change::Step(Step::Paid).as_str(), "paid");
        assert_eq!(serde_json::to_value(Change::Step(Step::Refunded)).unwrap(), "refunded");
    }
}

//! What the journal records. Events are versioned JSON (`"v": 1`) so that a later release can still read what an
//! earlier one wrote — and so that this release refuses, by name, a version it does not know, rather than reading
//! it as if it were its own.

use serde::{Deserialize, Serialize};

use super::{IdempotencyKey, OrderId, Position, ProductId, Quantity, RestockUnits, Step, Timestamp, UserId};

/// Units taken from a product's stock for one user, awaiting payment until `pay_before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub idempotency_key: Option<IdempotencyKey>,
    pub reserved_at: Timestamp,
    pub pay_before: Timestamp,
}

/// A reservation whose append was reported failed, so its buyer was refused and its stock put back. The append
/// may still have landed (a lost acknowledgement, or the rest of a batch that failed in part), so the journal
/// writer records this before anything else of the product is acknowledged: whoever reads the journal drops the
/// reservation, and its unit is never counted twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voided {
    pub order_id: OrderId,
    pub product_id: ProductId,
}

/// A step of an order's life after its reservation (which step is the event's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStep {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub user_id: UserId,
    pub at: Timestamp,
}

/// A step whose append was reported failed, so the order was left where it stood. Like a void, it is journaled
/// before anything else of the product is acknowledged, in case the step landed after all: whoever reads the journal
/// takes the step back if it is where the order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub step: Step,
}

/// Units an admin added to a product's stock. It takes its id from the same space as orders, so that the journal
/// writer's acknowledgements and voids, which go by that id, serve it as they serve a reservation: a restock whose
/// append was reported failed is voided, and recovery never counts it. Recovery counts each restock once by its id,
/// whether it meets it in a snapshot, in the journal after it, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockAdded {
    pub restock_id: OrderId,
    pub product_id: ProductId,
    pub units: RestockUnits,
    pub at: Timestamp,
}

/// The version of the events this release writes, and the only one it reads.
const VERSION: u32 = 1;

/// How a stored event of `VERSION` begins.
const VERSION_PREFIX: &[u8] = b"{\"v\":1";

/// Why a stored event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event version {0} is unknown to this release, which reads version {VERSION}")]
    UnknownVersion(u64),
    #[error("event has no version (\"v\")")]
    NoVersion,
    #[error("event is not valid: {0}")]
    Json(#[from] serde_json::Error),
}

/// One fact about a product's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JournalEvent {
    Reserved(Reservation),
    Voided(Voided),
    Paid(OrderStep),
    Expired(OrderStep),
    Cancelled(OrderStep),
    Released(OrderStep),
    RefundRequested(OrderStep),
    Refunded(OrderStep),
    Revoked(Revoked),
    StockAdded(StockAdded),
}

impl JournalEvent {
    /// The event recording `step` of an order.
    pub fn of_step(step: Step, order: OrderStep) -> Self {
        match step {
            Step::Paid => JournalEvent::Paid(order),
            Step::Expired => JournalEvent::Expired(order),
            Step::Cancelled => JournalEvent::Cancelled(order),
            Step::Released => JournalEvent::Released(order),
            Step::RefundRequested => JournalEvent::RefundRequested(order),
            Step::Refunded => JournalEvent::Refunded(order),
        }
    }

    /// The order step this event records, if it records one.
    pub fn step(&self) -> Option<(Step, &OrderStep)> {
        match self {
            JournalEvent::Paid(order) => Some((Step::Paid, order)),
            JournalEvent::Expired(order) => Some((Step::Expired, order)),
            JournalEvent::Cancelled(order) => Some((Step::Cancelled, order)),
            JournalEvent::Released(order) => Some((Step::Released, order)),
            JournalEvent::RefundRequested(order) => Some((Step::RefundRequested, order)),
            JournalEvent::Refunded(order) => Some((Step::Refunded, order)),
            JournalEvent::Reserved(_)
            | JournalEvent::Voided(_)
            | JournalEvent::Revoked(_)
            | JournalEvent::StockAdded(_) => None,
        }
    }

    pub fn product_id(&self) -> ProductId {
        self.ids().1
    }

    /// The order the event is about (a restock's own id, for `StockAdded`).
    pub fn order_id(&self) -> OrderId {
        self.ids().0
    }

    fn ids(&self) -> (OrderId, ProductId) {
        match self {
            JournalEvent::Reserved(reservation) => (reservation.order_id, reservation.product_id),
            JournalEvent::Voided(voided) => (voided.order_id, voided.product_id),
            JournalEvent::Revoked(revoked) => (revoked.order_id, revoked.product_id),
            JournalEvent::StockAdded(added) => (added.restock_id, added.product_id),
            JournalEvent::Paid(order)
            | JournalEvent::Expired(order)
            | JournalEvent::Cancelled(order)
            | JournalEvent::Released(order)
            | JournalEvent::RefundRequested(order)
            | JournalEvent::Refunded(order) => (order.order_id, order.product_id),
        }
    }

    /// What must be journaled if this event's append is reported failed: a reservation or a restock is voided, a
    /// step revoked, and a void or a revocation is simply written again.
    pub fn undo(&self) -> JournalEvent {
        if let Some((step, order)) = self.step() {
            return JournalEvent::Revoked(Revoked { order_id: order.order_id, product_id: order.product_id, step });
        }
        match self {
            JournalEvent::Reserved(reservation) => {
                JournalEvent::Voided(Voided { order_id: reservation.order_id, product_id: reservation.product_id })
            }
            JournalEvent::StockAdded(added) => {
                JournalEvent::Voided(Voided { order_id: added.restock_id, product_id: added.product_id })
            }
            again => again.clone(),
        }
    }

    /// The event as stored: `{"v":1,"type":"reserved",...}`. Written as the version, then the tagged event with its
    /// opening brace turned into the comma: the bytes serde's `flatten` would write, without the map serializer
    /// `flatten` goes through, which made most of the cost of encoding an event on the journal writer's thread.
    pub fn to_json(&self) -> String {
        let mut json = Vec::with_capacity(320);
        json.extend_from_slice(VERSION_PREFIX);
        if serde_json::to_writer(&mut json, self).is_err() {
            return String::new();
        }
        json[VERSION_PREFIX.len()] = b',';
        String::from_utf8(json).unwrap_or_default()
    }

    /// An event as stored, if its version is the one this release reads.
    pub fn from_json(text: &str) -> Result<Self, EventError> {
        #[derive(Deserialize)]
        struct Versioned {
            v: Option<u64>,
        }
        match serde_json::from_str::<Versioned>(text)?.v {
            Some(v) if v == u64::from(VERSION) => Ok(serde_json::from_str(text)?),
            Some(v) => Err(EventError::UnknownVersion(v)),
            None => Err(EventError::NoVersion),
        }
    }
}

/// An event together with its place in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub position: Position,
    pub event: JournalEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two units of product 3 for user 9, with an idempotency key.
    fn reservation() -> Reservation {
        Reservation {
            order_id: OrderId::generate(),
            product_id: ProductId::try_from(3).unwrap(),
            user_id: UserId::try_from(9).unwrap(),
            quantity: Quantity::try_from(2).unwrap(),
            idempotency_key: Some(IdempotencyKey::try_from("k-1".to_owned()).unwrap()),
            reserved_at: Timestamp::from_millis(5),
            pay_before: Timestamp::from_millis(9),
        }
    }

    #[test]
    fn events_round_trip_with_a_version() {
        let event = JournalEvent::Reserved(reservation());
        let json = event.to_json();
        assert!(json.contains("\"v\":1"));
        assert!(json.contains("\"type\":\"reserved\""));
        assert_eq!(JournalEvent::from_json(&json).unwrap(), event);
        let void = event.undo();
        assert!(void.to_json().contains("\"type\":\"voided\""));
        assert_eq!(JournalEvent::from_json(&void.to_json()).unwrap(), void);
        assert_eq!(void.undo(), void, "a void that failed is written again, not undone");
    }

    #[test]
    fn every_step_is_its_own_event_type_and_its_undo_revokes_it() {
        let reservation = reservation();
        let order = OrderStep {
            order_id: reservation.order_id,
            product_id: reservation.product_id,
            user_id: reservation.user_id,
            at: Timestamp::from_millis(7),
        };
        for step in Step::ALL {
            let event = JournalEvent::of_step(step, order);
            let json = event.to_json();
            assert!(json.starts_with(&format!("{{\"v\":1,\"type\":\"{}\",", step.as_str())), "{json}");
            assert_eq!(JournalEvent::from_json(&json).unwrap(), event);
            assert_eq!(event.step(), Some((step, &order)));
            assert_eq!((event.order_id(), event.product_id()), (order.order_id, order.product_id));
            let revoked = event.undo();
            assert_eq!(
                revoked,
                JournalEvent::Revoked(Revoked { order_id: order.order_id, product_id: order.product_id, step })
            );
            assert_eq!(JournalEvent::from_json(&revoked.to_json()).unwrap(), revoked);
            assert_eq!(revoked.undo(), revoked, "a revocation that failed is written again");
        }
    }

    #[test]
    fn events_are_stored_exactly_as_serde_flattens_them_under_their_version() {
        #[derive(Serialize)]
        struct Flattened<'a> {
            v: u32,
            #[serde(flatten)]
            event: &'a JournalEvent,
        }
        assert_eq!(VERSION_PREFIX, format!("{{\"v\":{VERSION}").as_bytes());
        let reservation = reservation();
        let unkeyed = Reservation { idempotency_key: None, ..reservation.clone() };
        for event in [
            JournalEvent::Reserved(reservation),
            JournalEvent::Reserved(unkeyed.clone()),
            JournalEvent::Reserved(unkeyed).undo(),
        ] {
            let flattened = serde_json::to_string(&Flattened { v: VERSION, event: &event }).unwrap();
            assert_eq!(event.to_json(), flattened);
        }
    }

    #[test]
    fn a_restock_round_trips_and_a_failed_one_is_voided_by_its_id() {
        let added = StockAdded {
            restock_id: OrderId::generate(),
            product_id: ProductId::try_from(3).unwrap(),
            units: RestockUnits::try_from(25).unwrap(),
            at: Timestamp::from_millis(11),
        };
        let event = JournalEvent::StockAdded(added);
        let json = event.to_json();
        assert!(json.starts_with("{\"v\":1,\"type\":\"stock_added\","), "{json}");
        assert!(json.contains("\"units\":25"), "{json}");
        assert_eq!(JournalEvent::from_json(&json).unwrap(), event);
        assert_eq!(event.step(), None);
        assert_eq!((event.order_id(), event.product_id()), (added.restock_id, added.product_id));
        assert_eq!(
            event.undo(),
            JournalEvent::Voided(Voided { order_id: added.restock_id, product_id: added.product_id })
        );
    }

    #[test]
    fn an_event_of_an_unknown_version_is_refused_by_name_never_read_as_ours() {
        let ours =
            JournalEvent::Voided(Voided { order_id: OrderId::generate(), product_id: ProductId::try_from(3).unwrap() });
        let theirs = ours.to_json().replace("\"v\":1", "\"v\":2");
        let refused = JournalEvent::from_json(&theirs).unwrap_err();
        assert!(matches!(refused, EventError::UnknownVersion(2)));
        assert_eq!(refused.to_string(), "event version 2 is unknown to this release, which reads version 1");
        let unversioned = ours.to_json().replace("\"v\":1,", "");
        assert!(matches!(JournalEvent::from_json(&unversioned), Err(EventError::NoVersion)));
        assert!(matches!(JournalEvent::from_json("{\"v\":1,\"type\":\"teleported\"}"), Err(EventError::Json(_))));
    }
}

//! How a product finds its committed orders after a (re)start: its latest snapshot, if one can be read, plus every
//! journal event after it, each order's steps replayed through its `Timeline`. Redis or the snapshot table being
//! unreadable only makes the replay longer. A snapshot's shards may each reach past its position, so the replay
//! meets events the snapshot already holds: a reservation or a restock seen twice is kept once (by its id), and a
//! step the order already took changes nothing. A restock voided after a failed append is never counted.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{JournalEvent, OrderId, Product, Reservation, StockAdded, StockSnapshot, Timeline};
use crate::persistence::{JournalError, JournalReplay, SnapshotStore};

/// Events read per journal query during recovery.
const REPLAY_PAGE: usize = 10_000;

/// A product's committed orders and restocks, and the journal position they reach.
pub struct Recovered {
    pub position: crate::domain::Position,
    pub orders: Vec<(Arc<Reservation>, Timeline)>,
    pub restocks: Vec<StockAdded>,
}

/// What the replay builds: orders and restocks by id.
#[derive(Default)]
struct History {
    orders: HashMap<OrderId, (Arc<Reservation>, Timeline)>,
    restocks: HashMap<OrderId, StockAdded>,
}

pub async fn recover(
    product: &Product,
    journal: &dyn JournalReplay,
    snapshots: &dyn SnapshotStore,
) -> Result<Recovered, JournalError> {
    let snapshot = snapshots.load(product.id).await.unwrap_or_else(|err| {
        tracing::warn!(product = %product.id, error = %err, "snapshot unreadable; replaying the whole journal");
        None
    });
    let StockSnapshot { mut position, reservations, steps, restocks } = snapshot.unwrap_or_default();
    let mut history = History {
        orders: reservations.into_iter().map(|r| (r.order_id, (r, Timeline::default()))).collect(),
        restocks: restocks.into_iter().map(|added| (added.restock_id, added)).collect(),
    };
    for taken in steps {
        if let Some((_, timeline)) = history.orders.get_mut(&taken.order_id) {
            *timeline = Timeline::of(taken.steps);
        }
    }
    loop {
        let page = journal.read_product(product.id, position, REPLAY_PAGE).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        for recorded in page {
            history.replay(recorded.event);
        }
    }
    let mut restocks: Vec<StockAdded> = history.restocks.into_values().collect();
    restocks.sort_by_key(|added| added.at);
    Ok(Recovered { position, orders: history.orders.into_values().collect(), restocks })
}

impl History {
    fn replay(&mut self, event: JournalEvent) {
        if let Some((step, taken)) = event.step() {
            if let Some((_, timeline)) = self.orders.get_mut(&taken.order_id) {
                timeline.apply(step, taken.at);
            }
            return;
        }
        match event {
            JournalEvent::Reserved(reservation) => {
                self.orders.entry(reservation.order_id).or_insert_with(|| (Arc::new(reservation), Timeline::default()));
            }
            JournalEvent::StockAdded(added) => {
                self.restocks.entry(added.restock_id).or_insert(added);
            }
            JournalEvent::Voided(voided) => {
                self.orders.remove(&voided.order_id);
                self.restocks.remove(&voided.order_id);
            }
            JournalEvent::Revoked(revoked) => {
                if let Some((_, timeline)) = self.orders.get_mut(&revoked.order_id) {
                    timeline.revoke(revoked.step);
                }
            }
            _ => {}
        }
    }
}

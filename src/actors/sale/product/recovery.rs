//! How a product finds its committed orders after a (re)start: its latest snapshot, if one can be read, plus every
//! journal event after it, each order's steps replayed through its `Timeline`. Redis or the snapshot table being
//! unreadable only makes the replay longer. A snapshot's shards may each reach past its position, so the replay
//! meets events the snapshot already holds: a reservation seen twice is kept once, and a step the order already
//! took changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{JournalEvent, OrderId, Product, Reservation, StockSnapshot, Timeline};
use crate::persistence::{JournalError, JournalReplay, SnapshotStore};

/// Events read per journal query during recovery.
const REPLAY_PAGE: usize = 10_000;

/// A product's committed orders, and the journal position they reach.
pub struct Recovered {
    pub position: crate::domain::Position,
    pub orders: Vec<(Arc<Reservation>, Timeline)>,
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
    let StockSnapshot { mut position, reservations, steps } = snapshot.unwrap_or_default();
    let mut orders: HashMap<OrderId, (Arc<Reservation>, Timeline)> =
        reservations.into_iter().map(|r| (r.order_id, (r, Timeline::default()))).collect();
    for taken in steps {
        if let Some((_, timeline)) = orders.get_mut(&taken.order_id) {
            *timeline = Timeline::of(taken.steps);
        }
    }
    loop {
        let page = journal.read_product(product.id, position, REPLAY_PAGE).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        for recorded in page {
            replay(&mut orders, recorded.event);
        }
    }
    Ok(Recovered { position, orders: orders.into_values().collect() })
}

fn replay(orders: &mut HashMap<OrderId, (Arc<Reservation>, Timeline)>, event: JournalEvent) {
    if let Some((step, taken)) = event.step() {
        if let Some((_, timeline)) = orders.get_mut(&taken.order_id) {
            timeline.apply(step, taken.at);
        }
        return;
    }
    match event {
        JournalEvent::Reserved(reservation) => {
            orders.entry(reservation.order_id).or_insert_with(|| (Arc::new(reservation), Timeline::default()));
        }
        JournalEvent::Voided(voided) => {
            orders.remove(&voided.order_id);
        }
        JournalEvent::Revoked(revoked) => {
            if let Some((_, timeline)) = orders.get_mut(&revoked.order_id) {
                timeline.revoke(revoked.step);
            }
        }
        _ => {}
    }
}

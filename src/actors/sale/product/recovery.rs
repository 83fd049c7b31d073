//! How a product finds its committed reservations after a (re)start: its latest snapshot, if one can be read, plus
//! every journal event after it. Redis or the snapshot table being unreadable only makes the replay longer.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{JournalEvent, Product, StockSnapshot};
use crate::persistence::{JournalError, JournalReplay, SnapshotStore};

/// Events read per journal query during recovery.
const REPLAY_PAGE: usize = 10_000;

pub async fn recover(
    product: &Product,
    journal: &dyn JournalReplay,
    snapshots: &dyn SnapshotStore,
) -> Result<StockSnapshot, JournalError> {
    let snapshot = snapshots.load(product.id).await.unwrap_or_else(|err| {
        tracing::warn!(product = %product.id, error = %err, "snapshot unreadable; replaying the whole journal");
        None
    });
    let StockSnapshot { mut position, reservations } = snapshot.unwrap_or_default();
    let mut by_order: HashMap<_, _> = reservations.into_iter().map(|r| (r.order_id, r)).collect();
    loop {
        let page = journal.read_product(product.id, position, REPLAY_PAGE).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        for recorded in page {
            match recorded.event {
                JournalEvent::Reserved(reservation) => {
                    by_order.entry(reservation.order_id).or_insert_with(|| Arc::new(reservation));
                }
                JournalEvent::Voided(voided) => {
                    by_order.remove(&voided.order_id);
                }
            }
        }
    }
    Ok(StockSnapshot { position, reservations: by_order.into_values().collect() })
}

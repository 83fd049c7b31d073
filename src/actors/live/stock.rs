//! A product's live stock and sale switch, which outlive the product's actors: a restarted product publishes into
//! the same feed, so a subscriber never notices the restart, and a paused sale stays paused.
//!
//! The feed is a `watch` channel: it holds one value, so however many subscribers there are and however slowly
//! they read, the product writes one value and the server keeps one value. The product actor publishes on a timer
//! (at most `live.stock_interval_ms` apart), so a burst of sales reaches subscribers as one update per interval,
//! and purchases pay nothing for it; with nobody watching it publishes nothing, and a new subscriber's first value
//! is refreshed as it subscribes.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::watch;

use crate::actors::sale::gauges::Gauges;
use crate::domain::{LiveStock, SaleState};

pub struct ProductLive {
    sale: AtomicU8,
    stock: watch::Sender<LiveStock>,
}

impl Default for ProductLive {
    fn default() -> Self {
        Self { sale: AtomicU8::new(SaleState::Open.as_u8()), stock: watch::Sender::new(LiveStock::default()) }
    }
}

impl ProductLive {
    /// Whether buyers may buy now, as far as the admin is concerned; read on every purchase.
    pub fn sale(&self) -> SaleState {
        SaleState::from_u8(self.sale.load(Ordering::Acquire))
    }

    pub fn set_sale(&self, sale: SaleState) {
        self.sale.store(sale.as_u8(), Ordering::Release);
    }

    /// The feed, starting from its latest value.
    pub fn subscribe(&self) -> watch::Receiver<LiveStock> {
        self.stock.subscribe()
    }

    /// Publishes the stock `gauges` show of `stock` units, if anyone watches; true if it changed.
    pub fn refresh(&self, stock: u64, gauges: &Gauges) -> bool {
        if self.stock.receiver_count() == 0 {
            return false;
        }
        self.publish(LiveStock {
            available: gauges.available(stock),
            sold_out: gauges.is_sold_out(),
            sale: self.sale(),
        })
    }

    /// Publishes `level` if it differs from the last one; true if it did.
    pub fn publish(&self, level: LiveStock) -> bool {
        self.stock.send_if_modified(|current| {
            let changed = *current != level;
            *current = level;
            changed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_not_an_update_and_a_late_subscriber_sees_the_latest() {
        let live = ProductLive::default();
        let mut early = live.subscribe();
        let level = LiveStock { available: 5, sold_out: false, sale: SaleState::Open };
        assert!(live.publish(level));
        assert!(!live.publish(level), "the same value again is no update");
        assert!(early.has_changed().unwrap());
        assert_eq!(*early.borrow_and_update(), level);
        assert!(live.publish(LiveStock { available: 4, ..level }));
        assert!(live.publish(LiveStock { available: 3, ..level }));
        assert_eq!(early.borrow_and_update().available, 3, "a slow reader skips to the latest value");
        assert_eq!(live.subscribe().borrow().available, 3);
    }

    #[test]
    fn nothing_is_published_to_nobody_and_a_refresh_reads_the_gauges() {
        let (live, gauges) = (ProductLive::default(), Gauges::default());
        gauges.record(0, 3);
        assert!(!live.refresh(10, &gauges), "nobody watches");
        let watcher = live.subscribe();
        assert!(live.refresh(10, &gauges));
        assert_eq!(watcher.borrow().available, 7);
        gauges.set_sold_out(true);
        assert!(live.refresh(10, &gauges));
        assert!(watcher.borrow().sold_out);
    }

    #[test]
    fn the_switch_reads_back_what_was_set() {
        let live = ProductLive::default();
        assert_eq!(live.sale(), SaleState::Open);
        live.set_sale(SaleState::Draining);
        assert_eq!(live.sale(), SaleState::Draining);
    }
}

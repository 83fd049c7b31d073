//! A product's live stock and sale switch, which outlive the product's actors: a restarted product publishes into
//! the same feed, so a subscriber never notices the restart, and a paused sale stays paused.
//!
//! The feed is a `watch` channel: it holds one value, so however many subscribers there are and however slowly
//! they read, the product writes one value and the server keeps one value. The product actor reads its gauges on a
//! timer and publishes at the [`Pace`] the whole server's audience allows, so a burst of sales reaches subscribers
//! as one update per gap, and purchases pay nothing for it; with nobody watching it publishes nothing. A level is
//! read while the feed is held, so the values in the feed are in the order they were read and a subscriber never
//! sees the stock rise unless units came back.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::pace::Pace;
use crate::actors::sale::gauges::Gauges;
use crate::domain::{LiveStock, SaleState};

/// How many stock subscriptions are open on the server, over all products: what the feed's budget is shared by.
#[derive(Debug, Default)]
pub struct Audience(AtomicUsize);

impl Audience {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct ProductLive {
    sale: AtomicU8,
    stock: watch::Sender<LiveStock>,
    audience: Arc<Audience>,
}

impl ProductLive {
    pub fn new(audience: Arc<Audience>) -> Self {
        Self { sale: AtomicU8::new(SaleState::Open.as_u8()), stock: watch::Sender::new(LiveStock::default()), audience }
    }

    /// Whether buyers may buy now, as far as the admin is concerned; read on every purchase.
    pub fn sale(&self) -> SaleState {
        SaleState::from_u8(self.sale.load(Ordering::Acquire))
    }

    pub fn set_sale(&self, sale: SaleState) {
        self.sale.store(sale.as_u8(), Ordering::Release);
    }

    /// The feed of `stock` units whose sales `gauges` count, starting from its latest value. The first subscriber
    /// of a feed nobody watched reads the gauges itself (the product publishes nothing to nobody); later ones start
    /// from the last update, which is at most one gap old.
    pub fn subscribe(&self, stock: u64, gauges: &Gauges) -> StockWatch {
        let unwatched = self.stock.receiver_count() == 0;
        let updates = self.stock.subscribe();
        if unwatched {
            self.stock.send_if_modified(|current| self.read_into(current, stock, gauges));
        }
        self.audience.0.fetch_add(1, Ordering::Relaxed);
        StockWatch { updates, audience: Arc::clone(&self.audience) }
    }

    /// Publishes the stock `gauges` show of `stock` units if anyone watches and `pace` says it is time.
    pub fn refresh(&self, stock: u64, gauges: &Gauges, pace: &mut Pace, now: Instant) {
        if self.stock.receiver_count() == 0 {
            return;
        }
        let audience = self.audience.count();
        self.stock.send_if_modified(|current| {
            let level = self.level(stock, gauges);
            let due = pace.publish(level, *current, audience, now);
            if due {
                *current = level;
            }
            due
        });
    }

    /// Publishes the stock now, whatever the pace: the admin switched the sale, which every subscriber must see.
    pub fn announce(&self, stock: u64, gauges: &Gauges) {
        self.stock.send_if_modified(|current| self.read_into(current, stock, gauges));
    }

    fn read_into(&self, current: &mut LiveStock, stock: u64, gauges: &Gauges) -> bool {
        let level = self.level(stock, gauges);
        std::mem::replace(current, level) != level
    }

    fn level(&self, stock: u64, gauges: &Gauges) -> LiveStock {
        LiveStock { available: gauges.available(stock), sold_out: gauges.is_sold_out(), sale: self.sale() }
    }
}

/// One subscription to a product's stock; it counts in the [`Audience`] while it lives.
pub struct StockWatch {
    updates: watch::Receiver<LiveStock>,
    audience: Arc<Audience>,
}

impl StockWatch {
    /// The latest level, which is then no longer news.
    pub fn latest(&mut self) -> LiveStock {
        *self.updates.borrow_and_update()
    }

    /// The next level published, `None` once the feed is gone.
    pub async fn next(&mut self) -> Option<LiveStock> {
        self.updates.changed().await.ok()?;
        Some(self.latest())
    }
}

impl Drop for StockWatch {
    fn drop(&mut self) {
        self.audience.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::super::pace::StockPace;
    use super::*;

    fn pace() -> Pace {
        Pace::new(StockPace {
            min_gap: Duration::from_millis(100),
            messages_per_second: NonZeroU32::new(1_000).unwrap(),
        })
    }

    #[tokio::test]
    async fn the_first_subscriber_reads_the_gauges_and_later_ones_wait_for_the_pace() {
        let (live, gauges, start) = (ProductLive::new(Arc::default()), Gauges::default(), Instant::now());
        let mut pace = pace();
        gauges.record(0, 3);
        live.refresh(10, &gauges, &mut pace, start);
        let mut first = live.subscribe(10, &gauges);
        assert_eq!(first.latest().available, 7, "nobody watched: the first subscriber reads the gauges");
        gauges.record(0, 2);
        let mut second = live.subscribe(10, &gauges);
        assert_eq!(second.latest().available, 7, "a later one starts from the last update");
        assert_eq!(live.audience.count(), 2);

        live.refresh(10, &gauges, &mut pace, start);
        assert_eq!(first.next().await.unwrap().available, 5, "the first reading goes out at once");
        gauges.record(0, 1);
        live.refresh(10, &gauges, &mut pace, start + Duration::from_millis(50));
        assert_eq!(first.latest().available, 5, "within the gap nothing goes out");
        live.refresh(10, &gauges, &mut pace, start + Duration::from_millis(100));
        assert_eq!(second.next().await.unwrap().available, 4, "4 held for a tick");
        drop(second);
        assert_eq!(live.audience.count(), 1);
    }

    #[tokio::test]
    async fn nothing_is_published_to_nobody_and_a_switch_is_announced_at_once() {
        let (live, gauges, start) = (ProductLive::new(Arc::default()), Gauges::default(), Instant::now());
        let mut pace = pace();
        gauges.record(0, 3);
        live.refresh(10, &gauges, &mut pace, start);
        assert_eq!(live.stock.borrow().available, 0, "nobody watches");
        let mut watch = live.subscribe(10, &gauges);
        assert_eq!(watch.latest().available, 7);
        live.set_sale(SaleState::Paused);
        live.announce(10, &gauges);
        assert_eq!(watch.next().await.unwrap().sale, SaleState::Paused);
    }

    #[test]
    fn the_switch_reads_back_what_was_set() {
        let live = ProductLive::new(Arc::default());
        assert_eq!(live.sale(), SaleState::Open);
        live.set_sale(SaleState::Draining);
        assert_eq!(live.sale(), SaleState::Draining);
    }
}

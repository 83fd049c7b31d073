//! A product's live stock and sale switch, which outlive the product's actors: a restarted product publishes into
//! the same feed, so a subscriber never notices the restart, and a paused sale stays paused. The switches are kept
//! in the database as well (the product's in its row, the global one in `sale_switch`), so a restarted service
//! starts them where they were; here they are atomics, read on every purchase with one load each.
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
use crate::domain::{LiveStock, Product, SaleState, SaleWindow};

/// How many stock subscriptions are open on the server, over all products: what the feed's budget is shared by.
#[derive(Debug, Default)]
pub struct Audience(AtomicUsize);

impl Audience {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// An admin's switch on a sale (or on all of them), read with one atomic load.
#[derive(Debug, Default)]
pub struct SaleSwitch(AtomicU8);

impl SaleSwitch {
    pub fn new(state: SaleState) -> Self {
        Self(AtomicU8::new(state.as_u8()))
    }

    pub fn get(&self) -> SaleState {
        SaleState::from_u8(self.0.load(Ordering::Acquire))
    }

    pub fn set(&self, state: SaleState) {
        self.0.store(state.as_u8(), Ordering::Release);
    }
}

pub struct ProductLive {
    sale: SaleSwitch,
    /// The switch over every product, shared by all of them.
    global: Arc<SaleSwitch>,
    stock: watch::Sender<LiveStock>,
    audience: Arc<Audience>,
}

impl ProductLive {
    /// The feed and switch of `product`, starting from its stored switch and its full stock.
    pub fn new(product: &Product, global: Arc<SaleSwitch>, audience: Arc<Audience>) -> Self {
        let stock = u64::from(product.draft.stock.get());
        let opening = LiveStock {
            available: stock,
            stock,
            sold_out: false,
            sale: product.sale.under(global.get()),
            window: product.draft.window,
        };
        Self { sale: SaleSwitch::new(product.sale), global, stock: watch::Sender::new(opening), audience }
    }

    /// Whether buyers may buy now, as far as the admin's switch on this product is concerned; read on every
    /// purchase.
    pub fn sale(&self) -> SaleState {
        self.sale.get()
    }

    /// The switch over every product.
    pub fn global(&self) -> SaleState {
        self.global.get()
    }

    pub fn set_sale(&self, sale: SaleState) {
        self.sale.set(sale);
    }

    /// The feed of the sale in `window` whose stock `gauges` count, starting from its latest value. The first
    /// subscriber of a feed nobody watched reads the gauges itself (the product publishes nothing to nobody); later
    /// ones start from the last update, which is at most one gap old.
    pub fn subscribe(&self, window: SaleWindow, gauges: &Gauges) -> StockWatch {
        let unwatched = self.stock.receiver_count() == 0;
        let updates = self.stock.subscribe();
        if unwatched {
            self.stock.send_if_modified(|current| self.read_into(current, window, gauges));
        }
        self.audience.0.fetch_add(1, Ordering::Relaxed);
        StockWatch { updates, audience: Arc::clone(&self.audience) }
    }

    /// Publishes the stock `gauges` show if anyone watches and `pace` says it is time.
    pub fn refresh(&self, window: SaleWindow, gauges: &Gauges, pace: &mut Pace, now: Instant) {
        if self.stock.receiver_count() == 0 {
            return;
        }
        let audience = self.audience.count();
        self.stock.send_if_modified(|current| {
            let level = self.level(window, gauges);
            let due = pace.publish(level, *current, audience, now);
            if due {
                *current = level;
            }
            due
        });
    }

    /// Publishes the stock now, whatever the pace: an admin switched, restocked or moved the sale, which every
    /// subscriber must see.
    pub fn announce(&self, window: SaleWindow, gauges: &Gauges) {
        self.stock.send_if_modified(|current| self.read_into(current, window, gauges));
    }

    fn read_into(&self, current: &mut LiveStock, window: SaleWindow, gauges: &Gauges) -> bool {
        let level = self.level(window, gauges);
        std::mem::replace(current, level) != level
    }

    fn level(&self, window: SaleWindow, gauges: &Gauges) -> LiveStock {
        LiveStock {
            available: gauges.available(),
            stock: gauges.stock(),
            sold_out: gauges.is_sold_out(),
            sale: self.sale().under(self.global()),
            window,
        }
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
    use crate::domain::{PaymentWindow, PerUserLimit, ProductDraft, ProductId, ShardCount, StockLevel, Timestamp};

    fn pace() -> Pace {
        Pace::new(StockPace {
            min_gap: Duration::from_millis(100),
            messages_per_second: NonZeroU32::new(1_000).unwrap(),
        })
    }

    fn window() -> SaleWindow {
        SaleWindow::new(Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX)).unwrap()
    }

    /// A product of ten units, its feed and its gauges.
    fn live(global: Arc<SaleSwitch>) -> (ProductLive, Gauges) {
        let product = Product {
            id: ProductId::try_from(1).unwrap(),
            draft: ProductDraft {
                name: "thing".into(),
                price_cents: 1,
                stock: StockLevel::try_from(10).unwrap(),
                per_user_limit: PerUserLimit::try_from(1).unwrap(),
                shards: ShardCount::try_from(1).unwrap(),
                window: window(),
                payment_window: PaymentWindow::try_from(60).unwrap(),
                requires_token: false,
            },
            sale: SaleState::Open,
        };
        let gauges = Gauges::default();
        gauges.set_stock(10);
        (ProductLive::new(&product, global, Arc::default()), gauges)
    }

    #[tokio::test]
    async fn the_first_subscriber_reads_the_gauges_and_later_ones_wait_for_the_pace() {
        let ((live, gauges), start, window) = (live(Arc::default()), Instant::now(), window());
        let mut pace = pace();
        gauges.record(0, 3);
        live.refresh(window, &gauges, &mut pace, start);
        let mut first = live.subscribe(window, &gauges);
        assert_eq!(first.latest().available, 7, "nobody watched: the first subscriber reads the gauges");
        gauges.record(0, 2);
        let mut second = live.subscribe(window, &gauges);
        assert_eq!(second.latest().available, 7, "a later one starts from the last update");
        assert_eq!(live.audience.count(), 2);

        live.refresh(window, &gauges, &mut pace, start);
        assert_eq!(first.next().await.unwrap().available, 5, "the first reading goes out at once");
        gauges.record(0, 1);
        live.refresh(window, &gauges, &mut pace, start + Duration::from_millis(50));
        assert_eq!(first.latest().available, 5, "within the gap nothing goes out");
        live.refresh(window, &gauges, &mut pace, start + Duration::from_millis(100));
        assert_eq!(second.next().await.unwrap().available, 4, "4 held for a tick");
        drop(second);
        assert_eq!(live.audience.count(), 1);
    }

    #[tokio::test]
    async fn nothing_is_published_to_nobody_and_a_switch_or_a_restock_is_announced_at_once() {
        let ((live, gauges), start, window) = (live(Arc::default()), Instant::now(), window());
        let mut pace = pace();
        gauges.record(0, 3);
        live.refresh(window, &gauges, &mut pace, start);
        assert_eq!(live.stock.borrow().available, 10, "nobody watches: the opening level stays");
        let mut watch = live.subscribe(window, &gauges);
        assert_eq!(watch.latest().available, 7);
        live.set_sale(SaleState::Paused);
        live.announce(window, &gauges);
        assert_eq!(watch.next().await.unwrap().sale, SaleState::Paused);
        gauges.set_stock(15);
        live.announce(window, &gauges);
        let restocked = watch.next().await.unwrap();
        assert_eq!((restocked.stock, restocked.available), (15, 12));
    }

    #[test]
    fn the_switch_reads_back_what_was_set_and_a_global_pause_shows_on_every_feed() {
        let global = Arc::new(SaleSwitch::default());
        let (live, gauges) = live(Arc::clone(&global));
        assert_eq!(live.sale(), SaleState::Open);
        live.set_sale(SaleState::Draining);
        assert_eq!(live.sale(), SaleState::Draining);
        live.set_sale(SaleState::Open);
        global.set(SaleState::Paused);
        assert_eq!((live.sale(), live.global()), (SaleState::Open, SaleState::Paused));
        assert_eq!(live.level(window(), &gauges).sale, SaleState::Paused);
    }
}

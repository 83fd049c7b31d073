//! The admin's hand on sales: a product's switch and the global one, restocks, a sale's window, and warming a
//! product up before it opens. Switches and windows are stored first and then take effect in memory, so what a
//! restarted service starts from is never behind what buyers were told; a restock is journaled by its product.

use super::{ask, Engine, EngineError};
use crate::actors::root::RootMsg;
use crate::actors::sale::product::{ProductMsg, RestockError, Warmed};
use crate::actors::sale::supervisor::SupervisorMsg;
use crate::domain::{ProductId, RestockUnits, SaleState, SaleWindow};

impl Engine {
    /// Opens, pauses or drains `product`'s sale: stored, then set on the switch its purchases read (which outlives
    /// its actors, so a product restarting just now starts with it), then shown on its feed.
    pub async fn switch_sale(&self, product: ProductId, sale: SaleState) -> Result<SaleState, EngineError> {
        let handle = self.catalog.get(product).ok_or(EngineError::NotFound)?;
        if !self.db.set_sale(product, sale).await? {
            return Err(EngineError::NotFound);
        }
        if handle.live.sale() != sale {
            tracing::info!(product = %product, sale = ?sale, "sale switched");
        }
        handle.live.set_sale(sale);
        let _ = handle.actor.cast(ProductMsg::Announce);
        Ok(sale)
    }

    /// The switch over every sale.
    pub fn global_sale(&self) -> SaleState {
        self.catalog.global().get()
    }

    /// Opens or pauses every sale at once: stored, then set, then shown on every product's feed.
    pub async fn set_global_sale(&self, sale: SaleState) -> Result<SaleState, EngineError> {
        self.db.set_global_sale(sale).await?;
        self.catalog.global().set(sale);
        tracing::info!(sale = ?sale, "global sale switch set");
        for handle in self.catalog.all() {
            let _ = handle.actor.cast(ProductMsg::Announce);
        }
        Ok(sale)
    }

    /// Adds `units` to `product`'s stock once the restock is durable; the stock after it.
    pub async fn restock(
        &self,
        product: ProductId,
        units: RestockUnits,
    ) -> Result<Result<u64, RestockError>, EngineError> {
        let handle = self.catalog.get(product).ok_or(EngineError::NotFound)?;
        ask(&handle.actor, |reply| ProductMsg::Restock(units, reply)).await
    }

    /// Moves `product`'s sale to `window`: stored, then taken by the next purchase and the live feed.
    pub async fn reschedule(&self, product: ProductId, window: SaleWindow) -> Result<(), EngineError> {
        if self.catalog.get(product).is_none() {
            return Err(EngineError::NotFound);
        }
        let asked = |reply| RootMsg::Products(SupervisorMsg::Reschedule { product, window, reply });
        match ask(&self.root, asked).await? {
            Ok(true) => Ok(()),
            Ok(false) => Err(EngineError::NotFound),
            Err(why) => Err(EngineError::Actors(why)),
        }
    }

    /// Warms `product` up for its sale now.
    pub async fn preheat(&self, product: ProductId) -> Result<Warmed, EngineError> {
        let handle = self.catalog.get(product).ok_or(EngineError::NotFound)?;
        ask(&handle.actor, ProductMsg::Preheat).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{engine, flaky, no_pass, open_sale, restart_product, settings};
    use super::super::PurchaseError;
    use super::*;
    use crate::domain::{LiveStock, Quantity, Timestamp, UserId};
    use crate::persistence::Journal;

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    fn units(count: i64) -> RestockUnits {
        RestockUnits::try_from(count).unwrap()
    }

    fn one() -> Quantity {
        Quantity::try_from(1).unwrap()
    }

    /// Buys one unit for each of `buyers`; how many were sold.
    async fn buy_all(engine: &Engine, product: ProductId, buyers: std::ops::Range<i64>) -> usize {
        let mut sold = 0;
        for id in buyers {
            match engine.purchase(product, user(id), one(), None, no_pass).await {
                Ok(_) => sold += 1,
                Err(refusal) => assert_eq!(refusal, PurchaseError::SoldOut),
            }
        }
        sold
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_sale_refuses_and_takes_nothing_a_drained_one_finishes_and_both_resume() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 10).await;
        let mut feed = engine.stock_feed(product).expect("a feed");
        let level = |available, sale| {
            let window = engine.catalog.get(product).unwrap().product.draft.window;
            LiveStock { available, stock: 10, sold_out: false, sale, window }
        };

        assert_eq!(engine.switch_sale(product, SaleState::Paused).await.unwrap(), SaleState::Paused);
        assert_eq!(engine.purchase(product, user(1), one(), None, no_pass).await, Err(PurchaseError::SalePaused));
        assert_eq!(feed.updates.next().await.unwrap(), level(10, SaleState::Paused));

        engine.switch_sale(product, SaleState::Draining).await.unwrap();
        assert_eq!(engine.purchase(product, user(1), one(), None, no_pass).await, Err(PurchaseError::SaleDraining));
        assert_eq!(engine.inspect(product).await.unwrap().summary.available, 10, "nothing was taken");

        engine.switch_sale(product, SaleState::Open).await.unwrap();
        engine.purchase(product, user(1), one(), None, no_pass).await.expect("sales go on");
        let mut latest = feed.updates.latest();
        while latest != level(9, SaleState::Open) {
            latest = feed.updates.next().await.unwrap();
        }
        assert!(matches!(
            engine.switch_sale(ProductId::try_from(999).unwrap(), SaleState::Paused).await,
            Err(EngineError::NotFound)
        ));
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restock_reopens_a_sold_out_sale_and_the_feed_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 3).await;
        assert_eq!(buy_all(&engine, product, 1..6).await, 3);
        let mut feed = engine.stock_feed(product).expect("a feed");
        assert!(feed.updates.latest().sold_out);

        assert_eq!(engine.restock(product, units(4)).await.unwrap(), Ok(7));
        let LiveStock { available, stock, sold_out, .. } = feed.updates.next().await.unwrap();
        assert_eq!((available, stock, sold_out), (4, 7, false), "announced at once");
        assert_eq!(buy_all(&engine, product, 10..20).await, 4);
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.summary.stock_total, view.reserved, view.summary.available), (7, 7, 0));
        assert!(view.invariant_holds);
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restock_the_journal_refuses_adds_nothing_now_or_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        // The refused append lands all the same: the void written after it keeps recovery from counting it.
        let engine = engine(&dir, flaky(1, true), settings()).await;
        let product = open_sale(&engine, 2).await;
        assert_eq!(engine.restock(product, units(5)).await.unwrap(), Err(RestockError::Unavailable));
        assert_eq!(engine.product(product).unwrap().stock_total, 2);
        restart_product(&engine, product).await;
        assert_eq!(engine.product(product).unwrap().stock_total, 2, "the voided restock is not replayed");
        assert_eq!(engine.restock(product, units(5)).await.unwrap(), Ok(7));
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restocks_are_counted_once_from_a_snapshot_and_the_journal_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 2).await;
        assert_eq!(buy_all(&engine, product, 1..2).await, 1);
        assert_eq!(engine.restock(product, units(3)).await.unwrap(), Ok(5));
        restart_product(&engine, product).await;
        assert_eq!(engine.product(product).unwrap().stock_total, 5, "replayed from the journal alone");

        let handle = engine.catalog.get(product).unwrap();
        let saved = ask(&handle.actor, |reply| ProductMsg::SnapshotNow(Some(reply))).await.unwrap();
        assert_eq!(saved, Ok(()));
        assert_eq!(engine.restock(product, units(10)).await.unwrap(), Ok(15));
        restart_product(&engine, product).await;
        let view = engine.inspect(product).await.unwrap();
        assert_eq!((view.summary.stock_total, view.reserved, view.summary.available), (15, 1, 14));
        assert!(view.invariant_holds);
        engine.shutdown().await;

        let engine = super::super::testing::engine(&dir, Journal::whole, settings()).await;
        assert_eq!(engine.product(product).unwrap().stock_total, 15, "and after the whole service restarts");
        assert_eq!(buy_all(&engine, product, 100..120).await, 14);
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn switches_are_stored_and_hold_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let (paused, open) = (open_sale(&engine, 5).await, open_sale(&engine, 5).await);
        engine.switch_sale(paused, SaleState::Paused).await.unwrap();
        restart_product(&engine, paused).await;
        assert_eq!(engine.purchase(paused, user(1), one(), None, no_pass).await, Err(PurchaseError::SalePaused));

        engine.set_global_sale(SaleState::Paused).await.unwrap();
        assert_eq!(engine.purchase(open, user(1), one(), None, no_pass).await, Err(PurchaseError::SalePaused));
        assert_eq!(engine.product(open).unwrap().sale, SaleState::Paused, "the global pause shows");
        engine.shutdown().await;

        let engine = super::super::testing::engine(&dir, Journal::whole, settings()).await;
        assert_eq!(engine.global_sale(), SaleState::Paused);
        assert_eq!(engine.purchase(open, user(1), one(), None, no_pass).await, Err(PurchaseError::SalePaused));
        engine.set_global_sale(SaleState::Open).await.unwrap();
        assert!(engine.purchase(open, user(1), one(), None, no_pass).await.is_ok());
        assert_eq!(engine.purchase(paused, user(1), one(), None, no_pass).await, Err(PurchaseError::SalePaused));
        assert_eq!(engine.inspect(paused).await.unwrap().summary.available, 5, "nothing was taken");
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_window_takes_effect_at_once_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 5).await;
        let mut feed = engine.stock_feed(product).expect("a feed");
        let later = Timestamp::now().plus(Duration::from_secs(7200));
        let window = SaleWindow::new(later, later.plus(Duration::from_secs(60))).unwrap();
        engine.reschedule(product, window).await.unwrap();
        assert_eq!(
            engine.purchase(product, user(1), one(), None, no_pass).await,
            Err(PurchaseError::NotStarted { starts_at: later })
        );
        assert_eq!(feed.updates.next().await.unwrap().window, window, "the feed shows the new window");
        restart_product(&engine, product).await;
        assert_eq!(engine.product(product).unwrap().starts_at, later, "a restarted product keeps it");
        assert_eq!(
            engine.reschedule(ProductId::try_from(999).unwrap(), window).await.unwrap_err().to_string(),
            "no such product"
        );
        engine.shutdown().await;

        let engine = super::super::testing::engine(&dir, Journal::whole, settings()).await;
        assert_eq!(engine.product(product).unwrap().starts_at, later, "so does a restarted service");
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn preheat_makes_room_for_every_shards_share_of_the_crowd() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 1_000).await;
        let warmed = engine.preheat(product).await.unwrap();
        assert_eq!(warmed.shards, 2);
        assert!(warmed.buyers_per_shard.iter().all(|room| *room >= 500), "{warmed:?}");
        assert_eq!(warmed.pool + warmed.in_slices, 1_000);
        assert!(matches!(engine.preheat(ProductId::try_from(999).unwrap()).await, Err(EngineError::NotFound)));
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_product_warms_itself_up_within_preheat_of_its_opening_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let now = Timestamp::now();
        let draft = |opens_in: u64| crate::domain::ProductDraft {
            name: "Soon".into(),
            price_cents: 100,
            stock: crate::domain::StockLevel::try_from(100).unwrap(),
            per_user_limit: crate::domain::PerUserLimit::try_from(1).unwrap(),
            shards: crate::domain::ShardCount::try_from(2).unwrap(),
            window: SaleWindow::new(now.plus(Duration::from_secs(opens_in)), now.plus(Duration::from_secs(7200)))
                .unwrap(),
            payment_window: crate::domain::PaymentWindow::try_from(60).unwrap(),
            requires_token: false,
        };
        // `settings()` preheats 30 s ahead: one product opens within that, the other an hour away.
        let soon = engine.create_product(draft(20)).await.unwrap().id;
        let later = engine.create_product(draft(3600)).await.unwrap().id;
        let warmed = |product: ProductId| {
            let engine = &engine;
            async move {
                let tree = engine.actors().await;
                let mut nodes = vec![tree];
                while let Some(node) = nodes.pop() {
                    if node.details["product_id"] == product.get() && node.details.get("warmed").is_some() {
                        return !node.details["warmed"].is_null();
                    }
                    nodes.extend(node.children);
                }
                false
            }
        };
        super::super::testing::until("the product opening soon warms itself", || warmed(soon)).await;
        assert!(!warmed(later).await, "one opening in an hour waits");
        engine.shutdown().await;
    }
}

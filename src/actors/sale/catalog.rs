//! The live products the HTTP layer can reach without asking an actor: each product's definition, its shards'
//! addresses and its gauges, so "sold out" and live stock are answered from memory and a purchase goes straight to
//! its shard. The product supervisor publishes a product each time it (re)starts one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::ActorRef;

use super::gauges::Gauges;
use super::product::ProductMsg;
use super::shard::book::{ActRefusal, OrderAct, OrderRequest};
use super::shard::ShardMsg;
use crate::actors::live::{Audience, ProductLive, SaleSwitch};
use crate::domain::{Order, OrderId, Product, ProductId, SaleWindow, UserId};

/// One running product.
pub struct ProductHandle {
    pub product: Product,
    pub actor: ActorRef<ProductMsg>,
    pub shards: Vec<ActorRef<ShardMsg>>,
    pub gauges: Arc<Gauges>,
    /// The product's live stock feed and sale switch, the same across its restarts.
    pub live: Arc<ProductLive>,
}

impl ProductHandle {
    /// The shard that serves every purchase, and holds every order, of `user` in this product.
    pub fn shard_of(&self, user: UserId) -> &ActorRef<ShardMsg> {
        &self.shards[self.product.draft.shards.shard_of(user)]
    }
}

#[derive(Default)]
pub struct Catalog {
    products: RwLock<BTreeMap<ProductId, Arc<ProductHandle>>>,
    /// Each product's feed and sale switch, kept across the restarts of its actors and of their supervisor.
    live: Mutex<HashMap<ProductId, Arc<ProductLive>>>,
    /// Everyone watching any product's stock.
    audience: Arc<Audience>,
    /// The admin's switch over every product.
    global: Arc<SaleSwitch>,
}

impl Catalog {
    pub fn get(&self, id: ProductId) -> Option<Arc<ProductHandle>> {
        self.read().get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ProductHandle>> {
        self.read().values().cloned().collect()
    }

    /// Publishes a (re)started product, replacing the handle of its previous incarnation.
    pub fn publish(&self, handle: ProductHandle) {
        let mut products = self.products.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        products.insert(handle.product.id, Arc::new(handle));
    }

    /// A running product's handle with its sale moved to `window`, replacing the old one at once, so the next
    /// purchase and the next view see the new window; false if the product does not run.
    pub fn reschedule(&self, id: ProductId, window: SaleWindow) -> bool {
        let mut products = self.products.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(handle) = products.get(&id) else { return false };
        let mut product = handle.product.clone();
        product.draft.window = window;
        let moved = ProductHandle {
            product,
            actor: handle.actor.clone(),
            shards: handle.shards.clone(),
            gauges: Arc::clone(&handle.gauges),
            live: Arc::clone(&handle.live),
        };
        products.insert(id, Arc::new(moved));
        true
    }

    /// `product`'s feed and switch, made (from its stored switch) the first time a product of that id starts.
    pub fn live_of(&self, product: &Product) -> Arc<ProductLive> {
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let made = || Arc::new(ProductLive::new(product, Arc::clone(&self.global), Arc::clone(&self.audience)));
        Arc::clone(live.entry(product.id).or_insert_with(made))
    }

    /// The switch over every product.
    pub fn global(&self) -> &SaleSwitch {
        &self.global
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ProductId, Arc<ProductHandle>>> {
        self.products.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Catalog {
    /// `order` as the shard holding `user`'s orders of `product` knows it (`None` if it holds no such order).
    pub async fn order(
        &self,
        product: ProductId,
        user: UserId,
        order: OrderId,
        timeout: Duration,
    ) -> Result<Option<Order>, ActRefusal> {
        let Some(handle) = self.get(product) else { return Ok(None) };
        match handle.shard_of(user).call(|reply| ShardMsg::Order(order, reply), Some(timeout)).await {
            Ok(CallResult::Success(found)) => Ok(found.filter(|found| found.user_id == user)),
            Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => Err(ActRefusal::Unavailable),
        }
    }

    /// Asks the shard holding `user`'s orders of `product` to do `act` to `order`; a shard that does not answer in
    /// `timeout` (or is restarting) is `Unavailable`.
    pub async fn act(
        &self,
        product: ProductId,
        user: UserId,
        order: OrderId,
        act: OrderAct,
        timeout: Duration,
    ) -> Result<Order, ActRefusal> {
        let Some(handle) = self.get(product) else { return Err(ActRefusal::NotFound) };
        let request = |reply| ShardMsg::Act(OrderRequest { order, user, act, reply });
        match handle.shard_of(user).call(request, Some(timeout)).await {
            Ok(CallResult::Success(outcome)) => outcome,
            Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => Err(ActRefusal::Unavailable),
        }
    }
}

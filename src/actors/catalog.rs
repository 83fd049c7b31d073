//! The live products the HTTP layer can reach without asking an actor: each product's definition, its shards'
//! addresses, and two gauges the product's actors keep current — units taken and the sold-out flag — so "sold
//! out" and live stock are answered from memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ractor::ActorRef;

use super::product::ProductMsg;
use super::stock_shard::ShardMsg;
use crate::domain::{Product, ProductId, UserId};

/// Counters shared by a product actor and its shards.
#[derive(Debug, Default)]
pub struct Gauges {
    taken: AtomicU64,
    sold_out: AtomicBool,
}

impl Gauges {
    pub fn new(taken: u64) -> Self {
        Self { taken: AtomicU64::new(taken), sold_out: AtomicBool::new(false) }
    }

    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// A shard's units in flight or reserved went from `before` to `after`.
    pub fn record(&self, before: u64, after: u64) {
        if after > before {
            self.taken.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.taken.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Acquire)
    }

    pub fn set_sold_out(&self, sold_out: bool) {
        self.sold_out.store(sold_out, Ordering::Release);
    }
}

/// One running product.
pub struct ProductHandle {
    pub product: Product,
    pub actor: ActorRef<ProductMsg>,
    pub shards: Vec<ActorRef<ShardMsg>>,
    pub gauges: Arc<Gauges>,
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ProductId, Arc<ProductHandle>>> {
        self.products.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

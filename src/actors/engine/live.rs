//! The live side as the HTTP layer reaches it: a product's stock feed, a buyer's order changes, the running actor
//! tree, and the admin's hand on an actor (kill it, to see it restarted).

use std::time::Duration;

use super::Engine;
use crate::actors::inspect::{self, ActorNode, ChildRestarts};
use crate::actors::live::{OrderWatch, StockWatch};
use crate::domain::{ProductId, UserId};

/// How long each actor has to answer an inspection before it is listed without its details.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One product's live stock, for a subscriber.
pub struct StockFeed {
    pub product_id: ProductId,
    pub updates: StockWatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    #[error("no such actor")]
    NotFound,
    #[error("the root supervisor has nobody to restart it")]
    Root,
}

impl Engine {
    /// `product`'s stock feed, from its latest value.
    pub fn stock_feed(&self, product: ProductId) -> Option<StockFeed> {
        let handle = self.catalog.get(product)?;
        let updates = handle.live.subscribe(handle.product.draft.window, &handle.gauges);
        Some(StockFeed { product_id: product, updates })
    }

    /// `user`'s order changes from now on, with room for `buffer` not yet sent.
    pub fn watch_orders(&self, user: UserId, buffer: usize) -> OrderWatch {
        self.orders.watch(user, buffer)
    }

    /// The running actor tree, from the root down.
    pub async fn actors(&self) -> ActorNode {
        inspect::tree(self.root.get_cell(), ChildRestarts::default(), INSPECT_TIMEOUT).await
    }

    /// The actor with `id` and those it supervises, if it runs.
    pub async fn actor(&self, id: u64) -> Option<ActorNode> {
        let tree = self.actors().await;
        tree.find(id).cloned()
    }

    /// Kills an actor as a crash would, so that its supervisor restarts it (a shard: with its product).
    pub fn kill_actor(&self, id: u64) -> Result<(), KillError> {
        let root = self.root.get_cell();
        if root.get_id().pid() == id {
            return Err(KillError::Root);
        }
        let cell = inspect::find(&root, id).ok_or(KillError::NotFound)?;
        tracing::warn!(actor = id, "an admin killed an actor");
        cell.kill();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{engine, no_pass, open_sale, settings, until};
    use super::*;
    use crate::actors::inspect::ActorKind;
    use crate::domain::{Quantity, Step};
    use crate::persistence::Journal;

    fn user(id: i64) -> UserId {
        UserId::try_from(id).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tree_is_the_running_actors_and_a_killed_shard_comes_back_with_its_product() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 20).await;
        let tree = engine.actors().await;
        assert_eq!(tree.kind, Some(ActorKind::Root));
        let count = |kind| all_of(&tree, kind).len();
        assert_eq!((count(ActorKind::Product), count(ActorKind::Shard)), (1, 2), "{tree:#?}");
        for kind in [ActorKind::JournalWriter, ActorKind::OrderProjector, ActorKind::ProductSupervisor] {
            assert_eq!(count(kind), 1, "{kind:?}");
        }
        let shard = find_kind(&tree, ActorKind::Shard);
        assert_eq!(shard.details["product_id"], product.get());
        assert_eq!(shard.mailbox_depth, Some(0));

        assert_eq!(engine.kill_actor(tree.id), Err(KillError::Root));
        assert_eq!(engine.kill_actor(shard.id), Ok(()));
        until("the product comes back with new shards", || async {
            let tree = engine.actors().await;
            let shards: Vec<_> = all_of(&tree, ActorKind::Shard);
            shards.len() == 2 && shards.iter().all(|s| s.id != shard.id && s.restarts == 1)
        })
        .await;
        let one = Quantity::try_from(1).unwrap();
        assert!(engine.purchase(product, user(1), one, None, no_pass).await.is_ok(), "it sells again");
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_buyer_hears_of_their_own_orders_steps() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir, Journal::whole, settings()).await;
        let product = open_sale(&engine, 10).await;
        let one = Quantity::try_from(1).unwrap();
        let (mut mine, mut theirs) = (engine.watch_orders(user(1), 16), engine.watch_orders(user(2), 16));

        let receipt = engine.purchase(product, user(1), one, None, no_pass).await.unwrap();
        engine.cancel(receipt.order_id, user(1)).await.unwrap();
        let mut heard = Vec::new();
        while heard.len() < 3 {
            let change = tokio::time::timeout(Duration::from_secs(5), mine.changes.recv()).await.unwrap().unwrap();
            assert_eq!((change.order_id, change.user_id), (receipt.order_id, user(1)));
            heard.push(change.change.as_str());
        }
        assert_eq!(heard, ["reserved", Step::Cancelled.as_str(), Step::Released.as_str()]);
        assert!(theirs.changes.try_recv().is_err(), "another buyer hears nothing of it");
        engine.shutdown().await;
    }

    fn all_of(tree: &ActorNode, kind: ActorKind) -> Vec<ActorNode> {
        let mut found: Vec<ActorNode> = tree.children.iter().flat_map(|child| all_of(child, kind)).collect();
        if tree.kind == Some(kind) {
            found.push(tree.clone());
        }
        found
    }

    fn find_kind(tree: &ActorNode, kind: ActorKind) -> ActorNode {
        all_of(tree, kind).into_iter().next().unwrap_or_else(|| panic!("no {kind:?} in {tree:#?}"))
    }
}

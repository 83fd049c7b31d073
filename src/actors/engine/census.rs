//! The actors' side of `/metrics`: what a scrape samples from the running tree. Each product is asked for its
//! ledger as an admin's view asks (while no unit can move), the tree is walked as the admin's tree is (so mailbox
//! depths are measured the same way), and the database is asked for the projector's lag and the dead letters
//! waiting; all of it concurrently, once per scrape, never on the purchase path.

use futures::future::join_all;

use super::{AdminView, Engine};
use crate::actors::inspect::{ActorKind, ActorNode};
use crate::domain::{JobKind, ProductId};
use crate::metrics::{ActorDepth, Census, ProductLedger};

impl Engine {
    pub async fn census(&self) -> Census {
        let ids: Vec<ProductId> = self.catalog.all().iter().map(|handle| handle.product.id).collect();
        let products = join_all(ids.into_iter().map(|id| async move { (id, self.inspect(id).await) }));
        let letters = async {
            let payments = self.db.pending_dead_letters(JobKind::Payment).await?;
            let refunds = self.db.pending_dead_letters(JobKind::Refund).await?;
            Ok::<_, crate::persistence::DbError>([("payment", payments), ("refund", refunds)])
        };
        let (ready, products, tree, lag, letters, supervision) = futures::join!(
            self.is_ready(),
            products,
            self.actors(),
            self.projection_lag(),
            letters,
            self.supervision()
        );
        let mut census = Census {
            ready,
            actors: depths(&tree),
            projector_lag: lag.ok(),
            dead_letters: letters.ok(),
            snapshot_failures: self.deps.snapshot_failures.load(std::sync::atomic::Ordering::Relaxed),
            ..Census::default()
        };
        if let Ok(supervision) = supervision {
            census.restarts = vec![
                ("root", supervision.root.restarts),
                ("products", supervision.products.restarts),
                ("payments", supervision.payments.restarts),
                ("compensations", supervision.compensations.restarts),
            ];
        }
        for (id, view) in products {
            match view {
                Ok(view) => census.products.push(ledger(&view)),
                Err(_) => census.silent_products.push(id.get()),
            }
        }
        census
    }
}

fn ledger(view: &AdminView) -> ProductLedger {
    ProductLedger {
        product: view.summary.id.get(),
        stock: view.summary.stock_total,
        pool: view.pool,
        shards: view.shards.iter().map(|shard| shard.available).sum(),
        in_flight: view.in_flight,
        reserved: view.reserved,
        paid: view.paid,
        released: view.released,
        invariant_holds: view.invariant_holds,
        snapshot_age_seconds: view.snapshot_age_seconds,
    }
}

/// Every kind of actor, with how many run and the messages waiting in their mailboxes (a kind with none running
/// shows zeros, so a gauge falls back when its actors are gone).
fn depths(tree: &ActorNode) -> Vec<ActorDepth> {
    let mut depths: Vec<ActorDepth> = ActorKind::ALL
        .iter()
        .map(|kind| ActorDepth { kind: kind.label(), actors: 0, waiting: 0, deepest: 0 })
        .collect();
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        stack.extend(node.children.iter());
        let Some(kind) = node.kind else { continue };
        let Some(depth) = ActorKind::ALL.iter().position(|each| *each == kind).map(|at| &mut depths[at]) else {
            continue;
        };
        depth.actors += 1;
        let waiting = node.mailbox_depth.unwrap_or(0);
        depth.waiting += waiting;
        depth.deepest = depth.deepest.max(waiting);
    }
    depths
}

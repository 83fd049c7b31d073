//! Order changes pushed to their buyers. Shards publish each change the moment it is durable; a router task hands
//! it to the connections of that buyer only, so no connection ever sees (or filters) another buyer's orders.
//!
//! A shard pays one atomic load per change while nobody watches, and an unbounded, lock-free send when someone
//! does; the router does the rest off the purchase path. Each connection has a small bounded buffer: a buyer whose
//! connection cannot keep up is cut off (its client reconnects and reads its orders afresh) rather than buffered
//! without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::domain::{OrderChange, UserId};

pub struct OrderFeed {
    watchers: AtomicUsize,
    next_watch: AtomicU64,
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    Change(OrderChange),
    Watch { user: UserId, id: u64, to: mpsc::Sender<OrderChange> },
    Unwatch { user: UserId, id: u64 },
}

/// One connection's view of its buyer's changes; it stops watching when dropped. `changes` ends if the
/// connection fell too far behind.
pub struct OrderWatch {
    pub changes: mpsc::Receiver<OrderChange>,
    feed: Arc<OrderFeed>,
    user: UserId,
    id: u64,
}

impl Drop for OrderWatch {
    fn drop(&mut self) {
        self.feed.watchers.fetch_sub(1, Ordering::Relaxed);
        let _ = self.feed.commands.send(Command::Unwatch { user: self.user, id: self.id });
    }
}

impl OrderFeed {
    /// A feed and its router, which runs until the last handle of the feed is gone.
    pub fn start() -> Arc<Self> {
        let (commands, inbox) = mpsc::unbounded_channel();
        tokio::spawn(route(inbox));
        Arc::new(Self { watchers: AtomicUsize::new(0), next_watch: AtomicU64::new(0), commands })
    }

    /// Hands `change` to its buyer's connections, if anyone watches at all.
    pub fn publish(&self, change: OrderChange) {
        if self.watchers.load(Ordering::Relaxed) > 0 {
            let _ = self.commands.send(Command::Change(change));
        }
    }

    /// Watches `user`'s changes, with room for `buffer` of them not yet sent.
    pub fn watch(self: &Arc<Self>, user: UserId, buffer: usize) -> OrderWatch {
        let (to, changes) = mpsc::channel(buffer.max(1));
        let id = self.next_watch.fetch_add(1, Ordering::Relaxed);
        self.watchers.fetch_add(1, Ordering::Relaxed);
        let _ = self.commands.send(Command::Watch { user, id, to });
        OrderWatch { changes, feed: Arc::clone(self), user, id }
    }
}

async fn route(mut inbox: mpsc::UnboundedReceiver<Command>) {
    let mut watching: HashMap<UserId, Vec<(u64, mpsc::Sender<OrderChange>)>> = HashMap::new();
    while let Some(command) = inbox.recv().await {
        match command {
            Command::Watch { user, id, to } => watching.entry(user).or_default().push((id, to)),
            Command::Unwatch { user, id } => forget(&mut watching, user, |watch| watch == id),
            Command::Change(change) => {
                let Some(connections) = watching.get(&change.user_id) else { continue };
                // A full buffer means a connection that stopped reading: dropping its sender ends its stream.
                let behind: Vec<u64> =
                    connections.iter().filter(|(_, to)| to.try_send(change).is_err()).map(|(id, _)| *id).collect();
                if !behind.is_empty() {
                    forget(&mut watching, change.user_id, |watch| behind.contains(&watch));
                }
            }
        }
    }
}

fn forget(
    watching: &mut HashMap<UserId, Vec<(u64, mpsc::Sender<OrderChange>)>>,
    user: UserId,
    drop_it: impl Fn(u64) -> bool,
) {
    if let Some(connections) = watching.get_mut(&user) {
        connections.retain(|(id, _)| !drop_it(*id));
        if connections.is_empty() {
            watching.remove(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{Change, OrderId, ProductId, Timestamp};

    fn change(user: i64) -> OrderChange {
        OrderChange {
            order_id: OrderId::generate(),
            product_id: ProductId::try_from(1).unwrap(),
            user_id: UserId::try_from(user).unwrap(),
            change: Change::Reserved,
            at: Timestamp::now(),
        }
    }

    async fn next(watch: &mut OrderWatch) -> Option<OrderChange> {
        tokio::time::timeout(Duration::from_secs(5), watch.changes.recv()).await.expect("an answer in time")
    }

    #[tokio::test]
    async fn each_buyer_gets_their_own_changes_only() {
        let feed = OrderFeed::start();
        let (mut alice, mut bob) =
            (feed.watch(UserId::try_from(1).unwrap(), 8), feed.watch(UserId::try_from(2).unwrap(), 8));
        let (for_alice, for_bob) = (change(1), change(2));
        feed.publish(for_alice);
        feed.publish(for_bob);
        assert_eq!(next(&mut alice).await, Some(for_alice));
        assert_eq!(next(&mut bob).await, Some(for_bob));
        assert!(alice.changes.try_recv().is_err(), "nothing of bob's reaches alice");
    }

    #[tokio::test]
    async fn a_connection_that_stops_reading_is_cut_off_not_buffered() {
        let feed = OrderFeed::start();
        let mut stalled = feed.watch(UserId::try_from(1).unwrap(), 2);
        for _ in 0..10 {
            feed.publish(change(1));
        }
        let mut received = 0;
        while next(&mut stalled).await.is_some() {
            received += 1;
        }
        assert_eq!(received, 2, "the buffer held two, then the stream ended");
        drop(stalled);
        tokio::time::timeout(Duration::from_secs(5), async {
            while feed.watchers.load(Ordering::Relaxed) != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the watcher is forgotten");
    }
}

//! The decision logic of a product's coordinator, free of any runtime: refill, reclaim, sell-out and reopen. Like
//! the shard's book it answers each event with commands for the actor to carry out, and the property test drives it
//! directly.
//!
//! A dry shard asks for stock; the pool grants a chunk while it has any. When the pool is empty, the product does not
//! say "sold out" on its own: it reclaims every shard's unused slice, one shard at a time (each surrender waits
//! behind what is already in that shard's mailbox), and only when the pool and every slice are empty does it sell
//! out. Stock that comes back after a sell-out (a refused append) or a restock reopens the sale. That is what rules
//! out undersell. A restock's units go to the pool, and the shards get them by the usual grants.

use super::pool::{Pool, Refill};

/// What the product actor must do after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Send `units` to `shard`. `last`: nothing is left outside that shard afterwards.
    Grant { shard: usize, units: u64, last: bool },
    /// Take `shard`'s whole slice back and report it with `surrendered`.
    Surrender { shard: usize },
    /// Nothing is left anywhere: every shard refuses without asking, and the sold-out flag goes up.
    SellOut,
    /// Stock came back after the sell-out: every shard asks again when dry, and the flag goes down.
    Reopen,
}

/// A reclaim under way: the shard that asked, what it wanted, and the slices gathered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reclaim {
    requester: usize,
    want: u64,
    next: usize,
    gathered: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductBook {
    pool: Pool,
    shards: usize,
    reclaim: Option<Reclaim>,
}

impl ProductBook {
    /// A product with `units` not held by anyone, sold through `shards` shards.
    pub fn new(units: u64, shards: usize) -> Self {
        Self { pool: Pool::new(units, shards), shards: shards.max(1), reclaim: None }
    }

    /// The first chunk for every shard, while stock lasts.
    pub fn open(&mut self) -> Vec<Command> {
        (0..self.shards)
            .map(|shard| (shard, self.pool.initial_grant()))
            .filter(|(_, units)| *units > 0)
            .map(|(shard, units)| Command::Grant { shard, units, last: false })
            .collect()
    }

    /// `shard` ran dry with a buyer waiting for `want` units.
    pub fn need_stock(&mut self, shard: usize, want: u64) -> Vec<Command> {
        debug_assert!(self.reclaim.is_none(), "a reclaim finishes before the next request is read");
        match self.pool.on_request(want) {
            Refill::Grant { units, last } => vec![Command::Grant { shard, units, last }],
            Refill::Reclaim => {
                self.reclaim = Some(Reclaim { requester: shard, want, next: 0, gathered: 0 });
                vec![Command::Surrender { shard: 0 }]
            }
        }
    }

    /// The shard last asked to surrender gave back `units`: ask the next one, or, after the last, grant from what
    /// there is now or sell out.
    pub fn surrendered(&mut self, units: u64) -> Vec<Command> {
        let Some(mut reclaim) = self.reclaim.take() else {
            return Vec::new();
        };
        reclaim.gathered += units;
        reclaim.next += 1;
        if reclaim.next < self.shards {
            self.reclaim = Some(reclaim);
            return vec![Command::Surrender { shard: reclaim.next }];
        }
        let (units, last) = match self.pool.after_reclaim(reclaim.gathered, reclaim.want) {
            Refill::Grant { units, last } => (units, last),
            Refill::Reclaim => unreachable!("after a reclaim the pool always grants"),
        };
        let mut commands = vec![Command::Grant { shard: reclaim.requester, units, last }];
        if units == 0 && self.pool.is_sold_out() {
            commands.push(Command::SellOut);
        }
        commands
    }

    /// A shard got stock back (a refused append) after it had been told the product was sold out.
    pub fn stock_returned(&mut self) -> Vec<Command> {
        if self.pool.reopen() {
            vec![Command::Reopen]
        } else {
            Vec::new()
        }
    }

    /// An admin added `units` (durable already): they join the pool, and a sold-out sale opens again.
    pub fn restock(&mut self, units: u64) -> Vec<Command> {
        debug_assert!(self.reclaim.is_none(), "a reclaim finishes before the next message is read");
        self.pool.add(units);
        self.stock_returned()
    }

    /// Units the coordinator holds: the pool, and slices a reclaim under way has gathered.
    pub fn units(&self) -> u64 {
        self.pool.units() + self.reclaim.map_or(0, |reclaim| reclaim.gathered)
    }

    pub fn is_sold_out(&self) -> bool {
        self.pool.is_sold_out()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_with_a_chunk_for_every_shard_while_stock_lasts() {
        assert_eq!(
            ProductBook::new(100, 2).open(),
            vec![
                Command::Grant { shard: 0, units: 6, last: false },
                Command::Grant { shard: 1, units: 6, last: false }
            ]
        );
        assert_eq!(ProductBook::new(1, 3).open(), vec![Command::Grant { shard: 0, units: 1, last: false }]);
    }

    #[test]
    fn a_dry_pool_reclaims_every_shard_in_turn_before_it_grants() {
        let mut book = ProductBook::new(0, 3);
        assert_eq!(book.need_stock(2, 1), vec![Command::Surrender { shard: 0 }]);
        assert_eq!(book.surrendered(4), vec![Command::Surrender { shard: 1 }]);
        assert_eq!(book.units(), 4, "gathered slices are counted while the reclaim goes on");
        assert_eq!(book.surrendered(0), vec![Command::Surrender { shard: 2 }]);
        assert_eq!(book.surrendered(2), vec![Command::Grant { shard: 2, units: 1, last: false }]);
        assert_eq!(book.units(), 5);
        assert_eq!(book.need_stock(0, 1), vec![Command::Grant { shard: 0, units: 1, last: false }], "reclaim over");
    }

    #[test]
    fn sells_out_only_when_the_pool_and_every_slice_are_empty_and_reopens_once() {
        let mut book = ProductBook::new(0, 2);
        book.need_stock(1, 1);
        book.surrendered(0);
        assert_eq!(book.surrendered(0), vec![Command::Grant { shard: 1, units: 0, last: true }, Command::SellOut]);
        assert!(book.is_sold_out());
        assert_eq!(book.stock_returned(), vec![Command::Reopen]);
        assert_eq!(book.stock_returned(), vec![], "reopened already");
    }

    #[test]
    fn a_restock_fills_the_pool_and_reopens_a_sold_out_sale() {
        let mut book = ProductBook::new(0, 1);
        book.need_stock(0, 1);
        assert_eq!(book.surrendered(0), vec![Command::Grant { shard: 0, units: 0, last: true }, Command::SellOut]);
        assert_eq!(book.restock(5), vec![Command::Reopen]);
        assert_eq!(book.units(), 5);
        assert_eq!(book.need_stock(0, 2), vec![Command::Grant { shard: 0, units: 2, last: false }]);
        assert_eq!(book.restock(3), vec![], "an open sale just has more to grant");
        assert_eq!(book.units(), 6);
    }

    #[test]
    fn a_last_grant_that_empties_everything_is_not_yet_a_sell_out() {
        let mut book = ProductBook::new(0, 1);
        book.need_stock(0, 3);
        assert_eq!(book.surrendered(3), vec![Command::Grant { shard: 0, units: 3, last: true }]);
        assert!(!book.is_sold_out());
    }
}

//! The decision logic of a product's central pool, free of any runtime.
//!
//! The pool hands stock to shards in chunks so that most purchases never leave their shard. When it runs dry it
//! does not say "sold out" on its own: the product actor first reclaims every shard's unused slice, and only when
//! the pool and all slices are empty is the product sold out. That is what rules out undersell.

/// The pool's answer to a shard that asked for stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refill {
    /// Send `units` to the shard. `last`: nothing is left outside that shard afterwards.
    Grant { units: u64, last: bool },
    /// The pool is empty: reclaim every shard's slice, then call `after_reclaim`.
    Reclaim,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    units: u64,
    chunk: u64,
    shards: u64,
    sold_out: bool,
}

impl Pool {
    /// A pool holding `units` for `shards` shards, handing out chunks of about an eighth of a shard's fair share.
    pub fn new(units: u64, shards: usize) -> Self {
        let shards = shards.max(1) as u64;
        let chunk = (units / (shards * 8)).clamp(1, 1024);
        Self { units, chunk, shards, sold_out: false }
    }

    pub fn units(&self) -> u64 {
        self.units
    }

    pub fn is_sold_out(&self) -> bool {
        self.sold_out
    }

    /// The first chunk for a shard at start, if any stock is left.
    pub fn initial_grant(&mut self) -> u64 {
        self.take(self.chunk)
    }

    pub fn on_request(&mut self, want: u64) -> Refill {
        if self.units == 0 {
            return Refill::Reclaim;
        }
        Refill::Grant { units: self.take(want.max(self.chunk)), last: false }
    }

    /// Every slice was returned (`reclaimed` units in all): grant from what there is now, or declare the product
    /// sold out with an empty last grant.
    pub fn after_reclaim(&mut self, reclaimed: u64, want: u64) -> Refill {
        self.units += reclaimed;
        if self.units == 0 {
            self.sold_out = true;
            return Refill::Grant { units: 0, last: true };
        }
        let fair_share = self.units.div_ceil(self.shards).min(self.chunk);
        let units = self.take(want.max(fair_share));
        Refill::Grant { units, last: self.units == 0 }
    }

    /// An admin's restock: `units` more for the shards to ask for.
    pub fn add(&mut self, units: u64) {
        self.units += units;
    }

    /// A shard got stock back after the sell-out; returns whether the shards must be told to ask again.
    pub fn reopen(&mut self) -> bool {
        std::mem::take(&mut self.sold_out)
    }

    fn take(&mut self, want: u64) -> u64 {
        let units = want.min(self.units);
        self.units -= units;
        units
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_at_least_a_chunk_and_never_more_than_it_holds() {
        let mut pool = Pool::new(100, 2);
        assert_eq!(pool.initial_grant(), 6);
        assert_eq!(pool.on_request(1), Refill::Grant { units: 6, last: false });
        assert_eq!(pool.on_request(500), Refill::Grant { units: 88, last: false });
        assert_eq!(pool.on_request(1), Refill::Reclaim);
    }

    #[test]
    fn sold_out_only_after_an_empty_reclaim() {
        let mut pool = Pool::new(0, 4);
        assert_eq!(pool.on_request(1), Refill::Reclaim);
        assert!(!pool.is_sold_out());
        assert_eq!(pool.after_reclaim(0, 1), Refill::Grant { units: 0, last: true });
        assert!(pool.is_sold_out());
        assert!(pool.reopen());
        assert!(!pool.reopen());
    }

    #[test]
    fn reclaimed_stock_is_shared_out_not_handed_to_one_shard() {
        let mut pool = Pool::new(0, 4);
        assert_eq!(pool.after_reclaim(40, 1), Refill::Grant { units: 1, last: false });
        let mut big = Pool::new(80_000, 4);
        while big.on_request(1) != Refill::Reclaim {}
        assert_eq!(big.after_reclaim(40, 3), Refill::Grant { units: 10, last: false });
        assert_eq!(big.after_reclaim(0, 30), Refill::Grant { units: 30, last: true });
    }
}

//! Numbers a product's actors keep current for readers that must not ask an actor: the stock (the sale's own plus
//! its restocks), units taken (in flight or reserved) and the sold-out flag. Live stock and the sold-out shortcut of
//! the purchase path read them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Gauges {
    stock: AtomicU64,
    taken: AtomicU64,
    sold_out: AtomicBool,
}

impl Gauges {
    /// Every unit the sale has had: its own and its restocks'.
    pub fn stock(&self) -> u64 {
        self.stock.load(Ordering::Relaxed)
    }

    pub fn set_stock(&self, stock: u64) {
        self.stock.store(stock, Ordering::Relaxed);
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

    /// What buyers can still get.
    pub fn available(&self) -> u64 {
        self.stock().saturating_sub(self.taken())
    }

    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Acquire)
    }

    pub fn set_sold_out(&self, sold_out: bool) {
        self.sold_out.store(sold_out, Ordering::Release);
    }
}

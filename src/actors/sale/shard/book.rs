//! The decision logic of one stock shard, free of any runtime so it can be property-tested.
//!
//! A shard owns a slice of a product's stock and every purchase of the users hashed to it. Because one shard sees
//! all of a user's purchases, the per-user limit and `Idempotency-Key` replay are plain map look-ups here, with no
//! lock. Stock moves through three states inside the shard — `available` → `in_flight` (handed to the journal) →
//! `reserved` (durable) — and back to `available` when the journal refuses a batch, so the shard's part of
//! `pool + Σ available + in_flight + reserved == stock` never changes except by grants and surrenders.
//!
//! `R` is whatever the caller needs to answer a buyer later (a reply port in the actor, a plain id in tests).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Serialize;
use smallvec::SmallVec;

use crate::domain::{
    IdempotencyKey, OrderId, Position, ProductId, Quantity, Reservation, StockSnapshot, Timestamp, UserId,
};

/// One buyer's request as the shard sees it.
#[derive(Debug)]
pub struct PurchaseRequest<R> {
    pub user: UserId,
    pub quantity: Quantity,
    pub key: Option<IdempotencyKey>,
    pub reply: R,
}

/// What a buyer is told when stock was reserved for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub order_id: OrderId,
    pub pay_before: Timestamp,
}

/// Why a purchase was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing is left anywhere.
    SoldOut,
    /// Some units are left, fewer than asked for.
    InsufficientStock { available: u64 },
    /// The user already holds `held` of at most `limit` units.
    LimitExceeded { limit: u32, held: u32 },
    /// The journal could not record the reservation; nothing was taken.
    Unavailable,
}

pub type Outcome = Result<Receipt, Refusal>;

/// What the shard asks its actor to do after a decision.
#[derive(Debug)]
pub enum Effect<R> {
    /// Answer a buyer.
    Reply(R, Outcome),
    /// Hand a reservation to the journal; answer comes back as `committed` or `failed`.
    Append(Reservation),
    /// The slice cannot serve a waiting buyer: ask the product's pool for at least `want` units. At most one such
    /// request is outstanding, and the pool answers each with exactly one `grant`.
    AskPool { want: u64 },
    /// Units came back from a failed append after the pool had declared the product sold out.
    StockReturned { units: u64 },
}

/// Counts an admin sees for one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShardCounts {
    pub available: u64,
    pub in_flight: u64,
    pub reserved: u64,
    pub buyers: u64,
    pub waiting: u64,
}

struct Pending<R> {
    reservation: Reservation,
    /// The buyer, and anyone who repeated its idempotency key meanwhile (rarely anyone).
    waiters: SmallVec<[R; 1]>,
}

pub struct ShardBook<R> {
    product_id: ProductId,
    limit: u32,
    pay_within: Duration,
    available: u64,
    in_flight: u64,
    reserved: u64,
    // User and order ids are the service's own (database keys, random UUIDs), so no client can pick ids that
    // collide: these maps use a fast hash. Idempotency keys are the client's, so their map keeps SipHash with a
    // random seed.
    holdings: FxHashMap<UserId, u32>,
    keys: HashMap<(UserId, IdempotencyKey), OrderId>,
    pending: FxHashMap<OrderId, Pending<R>>,
    committed: FxHashMap<OrderId, Arc<Reservation>>,
    /// Each buyer's committed orders, so a buyer can read them before the projector has written them. Most buyers
    /// of a flash sale hold one order, kept inline.
    orders_by_user: FxHashMap<UserId, SmallVec<[OrderId; 1]>>,
    waiting: VecDeque<PurchaseRequest<R>>,
    refill_asked: bool,
    sold_out: bool,
    position: Position,
}

impl<R> ShardBook<R> {
    /// A shard holding the reservations recovered up to `position`, and no stock yet.
    pub fn new(
        product_id: ProductId,
        limit: u32,
        pay_within: Duration,
        position: Position,
        recovered: Vec<Arc<Reservation>>,
    ) -> Self {
        let mut book = Self {
            product_id,
            limit,
            pay_within,
            available: 0,
            in_flight: 0,
            reserved: 0,
            holdings: FxHashMap::default(),
            keys: HashMap::new(),
            pending: FxHashMap::default(),
            committed: FxHashMap::default(),
            orders_by_user: FxHashMap::default(),
            waiting: VecDeque::new(),
            refill_asked: false,
            sold_out: false,
            position,
        };
        for reservation in recovered {
            book.hold(&reservation);
            book.reserved += u64::from(reservation.quantity.get());
            book.keep(reservation);
        }
        book
    }

    pub fn purchase(&mut self, request: PurchaseRequest<R>, now: Timestamp) -> Vec<Effect<R>> {
        let mut effects = Vec::new();
        self.serve_or_wait(request, now, false, &mut effects);
        effects
    }

    /// The journal made these reservations durable.
    pub fn committed(&mut self, order_id: OrderId, position: Position) -> Vec<Effect<R>> {
        let Some(pending) = self.pending.remove(&order_id) else {
            return Vec::new();
        };
        let units = u64::from(pending.reservation.quantity.get());
        self.in_flight -= units;
        self.reserved += units;
        self.position = self.position.max(position);
        let receipt = receipt_of(&pending.reservation);
        self.keep(Arc::new(pending.reservation));
        pending.waiters.into_iter().map(|reply| Effect::Reply(reply, Ok(receipt))).collect()
    }

    /// The journal refused the batch holding this reservation: undo it as if it never happened.
    pub fn failed(&mut self, order_id: OrderId, now: Timestamp) -> Vec<Effect<R>> {
        let Some(pending) = self.pending.remove(&order_id) else {
            return Vec::new();
        };
        let reservation = pending.reservation;
        let units = u64::from(reservation.quantity.get());
        self.in_flight -= units;
        self.available += units;
        self.release(&reservation);
        let mut effects: Vec<Effect<R>> =
            pending.waiters.into_iter().map(|reply| Effect::Reply(reply, Err(Refusal::Unavailable))).collect();
        if self.sold_out {
            self.sold_out = false;
            effects.push(Effect::StockReturned { units });
        }
        self.serve_waiting(now, false, &mut effects);
        effects
    }

    /// The pool's answer to `AskPool`. `last` means nothing is left outside this shard after this grant, so waiting
    /// buyers it cannot serve are told so instead of waiting again.
    pub fn grant(&mut self, units: u64, last: bool, now: Timestamp) -> Vec<Effect<R>> {
        self.available += units;
        self.refill_asked = false;
        let mut effects = Vec::new();
        self.serve_waiting(now, last, &mut effects);
        effects
    }

    /// The pool found nothing anywhere: refuse without asking until `reopen`. A failed append may have put units
    /// back here after the pool's reclaim; then the product is not sold out after all, and the pool must hear so.
    pub fn sell_out(&mut self, now: Timestamp) -> Vec<Effect<R>> {
        let mut effects = Vec::new();
        if self.available > 0 {
            effects.push(Effect::StockReturned { units: self.available });
            return effects;
        }
        self.sold_out = true;
        self.serve_waiting(now, true, &mut effects);
        effects
    }

    /// Stock came back somewhere after a sell-out: ask the pool again when dry.
    pub fn reopen(&mut self) {
        self.sold_out = false;
    }

    /// Give the whole slice back to the pool.
    pub fn surrender(&mut self) -> u64 {
        std::mem::take(&mut self.available)
    }

    pub fn counts(&self) -> ShardCounts {
        ShardCounts {
            available: self.available,
            in_flight: self.in_flight,
            reserved: self.reserved,
            buyers: self.holdings.len() as u64,
            waiting: self.waiting.len() as u64,
        }
    }

    /// A committed order of this shard's buyers.
    pub fn order(&self, order_id: OrderId) -> Option<Arc<Reservation>> {
        self.committed.get(&order_id).cloned()
    }

    /// Every committed order of `user`.
    pub fn orders_of(&self, user: UserId) -> Vec<Arc<Reservation>> {
        let ids = self.orders_by_user.get(&user).map_or(&[][..], SmallVec::as_slice);
        ids.iter().filter_map(|id| self.order(*id)).collect()
    }

    /// The shard's durable part: its committed reservations (shared, not copied) and the position they reach.
    pub fn snapshot(&self) -> StockSnapshot {
        StockSnapshot { position: self.position, reservations: self.committed.values().cloned().collect() }
    }

    fn serve_waiting(&mut self, now: Timestamp, final_answer: bool, effects: &mut Vec<Effect<R>>) {
        for request in std::mem::take(&mut self.waiting) {
            self.serve_or_wait(request, now, final_answer, effects);
        }
    }

    fn serve_or_wait(
        &mut self,
        request: PurchaseRequest<R>,
        now: Timestamp,
        final_answer: bool,
        effects: &mut Vec<Effect<R>>,
    ) {
        if let Some(key) = &request.key {
            if let Some(order_id) = self.keys.get(&(request.user, key.clone())) {
                if let Some(pending) = self.pending.get_mut(order_id) {
                    pending.waiters.push(request.reply);
                } else if let Some(reservation) = self.committed.get(order_id) {
                    effects.push(Effect::Reply(request.reply, Ok(receipt_of(reservation))));
                }
                return;
            }
        }
        let units = request.quantity.get();
        let held = self.holdings.get(&request.user).copied().unwrap_or(0);
        if held + units > self.limit {
            let refusal = Refusal::LimitExceeded { limit: self.limit, held };
            effects.push(Effect::Reply(request.reply, Err(refusal)));
        } else if self.available >= u64::from(units) {
            self.reserve(request, now, effects);
        } else if final_answer || self.sold_out {
            let refusal = match self.available {
                0 => Refusal::SoldOut,
                available => Refusal::InsufficientStock { available },
            };
            effects.push(Effect::Reply(request.reply, Err(refusal)));
        } else {
            if !self.refill_asked {
                self.refill_asked = true;
                effects.push(Effect::AskPool { want: u64::from(units) });
            }
            self.waiting.push_back(request);
        }
    }

    fn reserve(&mut self, request: PurchaseRequest<R>, now: Timestamp, effects: &mut Vec<Effect<R>>) {
        let reservation = Reservation {
            order_id: OrderId::generate(),
            product_id: self.product_id,
            user_id: request.user,
            quantity: request.quantity,
            idempotency_key: request.key,
            reserved_at: now,
            pay_before: now.plus(self.pay_within),
        };
        let units = u64::from(reservation.quantity.get());
        self.available -= units;
        self.in_flight += units;
        self.hold(&reservation);
        effects.push(Effect::Append(reservation.clone()));
        self.pending.insert(reservation.order_id, Pending { reservation, waiters: smallvec::smallvec![request.reply] });
    }

    fn keep(&mut self, reservation: Arc<Reservation>) {
        self.orders_by_user.entry(reservation.user_id).or_default().push(reservation.order_id);
        self.committed.insert(reservation.order_id, reservation);
    }

    fn hold(&mut self, reservation: &Reservation) {
        *self.holdings.entry(reservation.user_id).or_default() += reservation.quantity.get();
        if let Some(key) = &reservation.idempotency_key {
            self.keys.insert((reservation.user_id, key.clone()), reservation.order_id);
        }
    }

    fn release(&mut self, reservation: &Reservation) {
        if let Some(held) = self.holdings.get_mut(&reservation.user_id) {
            *held -= reservation.quantity.get();
            if *held == 0 {
                self.holdings.remove(&reservation.user_id);
            }
        }
        if let Some(key) = &reservation.idempotency_key {
            self.keys.remove(&(reservation.user_id, key.clone()));
        }
    }
}

fn receipt_of(reservation: &Reservation) -> Receipt {
    Receipt { order_id: reservation.order_id, pay_before: reservation.pay_before }
}

//! The decision logic of one stock shard, free of any runtime so it can be property-tested.
//!
//! A shard owns a slice of a product's stock and every purchase of the users hashed to it. Because one shard sees
//! all of a user's purchases, the per-user limit and `Idempotency-Key` replay are plain map look-ups here, with no
//! lock. Stock moves through three states inside the shard — `available` → `in_flight` (handed to the journal) →
//! `reserved` (durable) — and back to `available` when the journal refuses a batch, so the shard's part of
//! `pool + Σ available + in_flight + reserved == stock` never changes except by grants and surrenders.
//!
//! A committed order then lives on here until it ends: the shard decides its steps with the order's `Timeline` (the
//! domain's state machine), journals each, and applies it only once it is durable. A paid order keeps its units
//! (`paid`); one that expired or was cancelled is released, and its units go back to `available`, on sale again, and
//! its buyer's slot is free. So the whole ledger is `pool + Σ (available + in_flight + reserved + paid) == stock`.
//! Deadlines of open orders wait in `deadlines`, expired by the product's tick with at most `MAX_STEPS_IN_FLIGHT` of
//! the shard's steps with the journal writer at once (more follow as those commit),
//! so a second in which a whole sale's deadlines fall never queues the sale's purchases behind a flood of steps.
//!
//! `R` and `A` are whatever the caller needs to answer a buyer later (a purchase and an order request; reply ports
//! in the actor, plain ids in tests).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use smallvec::SmallVec;

use crate::domain::{
    Change, Decision, IdempotencyKey, JournalEvent, Order, OrderChange, OrderId, OrderStatus, OrderStep, OrderSteps,
    Position, ProductId, Quantity, Reservation, Step, StockSnapshot, Timeline, Timestamp, UserId,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing is left anywhere.
    SoldOut,
    /// Some units are left, fewer than asked for.
    InsufficientStock { available: u64 },
    /// The user already holds `held` of at most `limit` units, in `orders` (those recorded; one still being
    /// recorded counts in `held` only). A buyer whose answer was lost learns here which order they hold.
    LimitExceeded { limit: u32, held: u32, orders: HeldOrders },
    /// The journal could not record the reservation; nothing was taken.
    Unavailable,
    /// The purchase's Idempotency-Key names an earlier purchase of another quantity.
    KeyReused,
    /// The purchase's Idempotency-Key names a purchase whose journal append is still under way.
    KeyInFlight,
}

pub type Outcome = Result<Receipt, Refusal>;

/// The orders that use up a buyer's limit: most limits are one or two units, which need no allocation.
pub type HeldOrders = SmallVec<[OrderId; 2]>;

/// What a buyer (or an admin) asks of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAct {
    Cancel,
    /// The payment provider took the money: paid, or a refund if the order ended meanwhile.
    PaymentSucceeded,
    /// The provider gave back the money of an order that could not be filled.
    Refunded,
}

/// A request about one order by `user`, who must hold it.
#[derive(Debug)]
pub struct OrderRequest<A> {
    pub order: OrderId,
    pub user: UserId,
    pub act: OrderAct,
    pub reply: A,
}

/// Why an order request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActRefusal {
    /// No such order among this shard's buyers' (or not the asker's).
    NotFound,
    /// The order stands where the request cannot apply.
    Conflict(OrderStatus),
    /// The journal could not record the step; nothing changed.
    Unavailable,
}

pub type ActOutcome = Result<Order, ActRefusal>;

/// Steps the clock starts (expiries, retried releases) wait while this many of the shard's steps are with the
/// journal writer: its queue is shared with every purchase, and a flood of steps ahead of them would stall them. It
/// also bounds what one tick does before the shard lets purchases in again.
pub const MAX_STEPS_IN_FLIGHT: usize = 512;

/// Most reservations a warmed shard makes room for as in flight at once: a batch's worth, however large the sale.
const MAX_WARM_PENDING: usize = 4_096;

/// What the shard asks its actor to do after a decision.
#[derive(Debug)]
pub enum Effect<R, A> {
    /// Answer a buyer.
    Reply(R, Outcome),
    /// Answer an order request.
    Answer(A, ActOutcome),
    /// Hand a reservation to the journal; answer comes back as `committed` or `failed`.
    Append(Reservation),
    /// Hand an order's step to the journal; its answer comes back the same way, under the order's id.
    Journal(JournalEvent),
    /// The slice cannot serve a waiting buyer: ask the product's pool for at least `want` units. At most one such
    /// request is outstanding, and the pool answers each with exactly one `grant`.
    AskPool { want: u64 },
    /// Units came back (a failed append, a released order) after the pool had declared the product sold out.
    StockReturned { units: u64 },
    /// More is due than the last tick could start: tick again once the mailbox has had its turn.
    TickAgain,
    /// Money came for an order that can no longer be filled: hand its refund to compensation.
    RefundDue(Arc<Reservation>),
    /// An order's reservation or step is durable: tell its buyer.
    Changed(OrderChange),
}

/// Counts an admin sees for one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ShardCounts {
    pub available: u64,
    pub in_flight: u64,
    /// Units of committed orders not paid and not released: awaiting payment, or ended and awaiting release.
    pub reserved: u64,
    pub paid: u64,
    /// Units released back on sale since the sale began.
    pub released: u64,
    pub buyers: u64,
    pub waiting: u64,
    /// Open orders whose payment window has yet to close.
    pub deadlines: u64,
    /// Reservations and steps handed to the journal and not yet answered.
    pub batch_in_flight: u64,
    /// How far into the journal this shard's orders reach.
    pub journal_position: i64,
}

struct Pending<R> {
    reservation: Reservation,
    /// The buyer (a repeat of its idempotency key meanwhile is told `KeyInFlight`, not made to wait).
    reply: R,
}

/// A committed order and the steps it took since.
struct Held {
    reservation: Arc<Reservation>,
    timeline: Timeline,
}

/// A step handed to the journal, and the requests about its order that wait for the journal's answer.
struct Stepping<A> {
    step: Step,
    at: Timestamp,
    waiters: SmallVec<[(OrderAct, A); 1]>,
}

pub struct ShardBook<R, A> {
    product_id: ProductId,
    limit: u32,
    pay_within: Duration,
    available: u64,
    in_flight: u64,
    reserved: u64,
    paid: u64,
    released: u64,
    // User and order ids are the service's own (database keys, random UUIDs), so no client can pick ids that
    // collide: these maps use a fast hash. Idempotency keys are the client's, so their map keeps SipHash with a
    // random seed.
    holdings: FxHashMap<UserId, u32>,
    keys: HashMap<(UserId, IdempotencyKey), OrderId>,
    pending: FxHashMap<OrderId, Pending<R>>,
    committed: FxHashMap<OrderId, Held>,
    /// At most one step per order is with the journal at a time.
    stepping: FxHashMap<OrderId, Stepping<A>>,
    /// Payment deadlines of open orders, earliest first.
    deadlines: BTreeSet<(Timestamp, OrderId)>,
    /// Orders ended unpaid whose release is not with the journal writer: refused, or recovered before it was
    /// durable, and taking no other step. The tick retries them.
    release_due: FxHashSet<OrderId>,
    /// Each buyer's committed orders, so a buyer can read them before the projector has written them. Most buyers
    /// of a flash sale hold one order, kept inline.
    orders_by_user: FxHashMap<UserId, SmallVec<[OrderId; 1]>>,
    waiting: VecDeque<PurchaseRequest<R>>,
    /// A `TickAgain` is on its way.
    tick_asked: bool,
    refill_asked: bool,
    sold_out: bool,
    position: Position,
}

impl<R, A> ShardBook<R, A> {
    /// A shard holding the orders recovered up to `position`, and no stock yet.
    pub fn new(
        product_id: ProductId,
        limit: u32,
        pay_within: Duration,
        position: Position,
        recovered: Vec<(Arc<Reservation>, Timeline)>,
    ) -> Self {
        let mut book = Self {
            product_id,
            limit,
            pay_within,
            available: 0,
            in_flight: 0,
            reserved: 0,
            paid: 0,
            released: 0,
            holdings: FxHashMap::default(),
            keys: HashMap::new(),
            pending: FxHashMap::default(),
            committed: FxHashMap::default(),
            stepping: FxHashMap::default(),
            deadlines: BTreeSet::new(),
            release_due: FxHashSet::default(),
            orders_by_user: FxHashMap::default(),
            waiting: VecDeque::new(),
            tick_asked: false,
            refill_asked: false,
            sold_out: false,
            position,
        };
        for (reservation, timeline) in recovered {
            let units = u64::from(reservation.quantity.get());
            let life = *timeline.life();
            book.remember_key(&reservation);
            if life.holds_units() {
                book.hold(&reservation);
            }
            match life.status() {
                OrderStatus::Paid => book.paid += units,
                OrderStatus::Released => book.released += units,
                OrderStatus::Reserved | OrderStatus::Expired | OrderStatus::Cancelled => book.reserved += units,
            }
            if life.is_open() {
                book.deadlines.insert((reservation.pay_before, reservation.order_id));
            }
            if life.release_due() {
                book.release_due.insert(reservation.order_id);
            }
            book.keep(reservation, timeline);
        }
        book
    }

    pub fn purchase(&mut self, request: PurchaseRequest<R>, now: Timestamp) -> Vec<Effect<R, A>> {
        let mut effects = Vec::new();
        self.serve_or_wait(request, now, false, &mut effects);
        effects
    }

    /// The buyer whose reservation `order_id` is with the journal.
    pub fn buyer(&self, order_id: OrderId) -> Option<&R> {
        self.pending.get(&order_id).map(|pending| &pending.reply)
    }

    /// The journal made this order's reservation, or its step, durable.
    pub fn committed(&mut self, order_id: OrderId, position: Position, now: Timestamp) -> Vec<Effect<R, A>> {
        self.position = self.position.max(position);
        let Some(pending) = self.pending.remove(&order_id) else {
            let mut effects = Vec::new();
            if let Some(stepping) = self.stepping.remove(&order_id) {
                self.stepped(order_id, stepping, now, &mut effects);
                self.keep_ticking(now, &mut effects);
            }
            return effects;
        };
        let units = u64::from(pending.reservation.quantity.get());
        self.in_flight -= units;
        self.reserved += units;
        let receipt = receipt_of(&pending.reservation);
        let change = change_of(&pending.reservation, Change::Reserved, pending.reservation.reserved_at);
        self.deadlines.insert((pending.reservation.pay_before, order_id));
        self.keep(Arc::new(pending.reservation), Timeline::default());
        vec![Effect::Reply(pending.reply, Ok(receipt)), Effect::Changed(change)]
    }

    /// The journal refused the batch holding this reservation, or this order's step: undo it as if it never
    /// happened. A refused step leaves the order where it stood; an expiry or a release is tried again at a tick.
    pub fn failed(&mut self, order_id: OrderId, now: Timestamp) -> Vec<Effect<R, A>> {
        let Some(pending) = self.pending.remove(&order_id) else {
            let mut effects = Vec::new();
            if let Some(stepping) = self.stepping.remove(&order_id) {
                let refused =
                    stepping.waiters.into_iter().map(|(_, reply)| Effect::Answer(reply, Err(ActRefusal::Unavailable)));
                effects.extend(refused);
                if let Some(held) = self.committed.get(&order_id) {
                    let life = held.timeline.life();
                    if life.is_open() {
                        self.deadlines.insert((held.reservation.pay_before, order_id));
                    } else if life.release_due() {
                        self.release_due.insert(order_id);
                    }
                }
            }
            return effects;
        };
        let reservation = pending.reservation;
        let units = u64::from(reservation.quantity.get());
        self.in_flight -= units;
        self.available += units;
        self.unhold(&reservation);
        self.forget_key(&reservation);
        let mut effects = vec![Effect::Reply(pending.reply, Err(Refusal::Unavailable))];
        if self.sold_out {
            self.sold_out = false;
            effects.push(Effect::StockReturned { units });
        }
        self.serve_waiting(now, false, &mut effects);
        effects
    }

    /// The pool's answer to `AskPool`. `last` means nothing is left outside this shard after this grant, so waiting
    /// buyers it cannot serve are told so instead of waiting again.
    pub fn grant(&mut self, units: u64, last: bool, now: Timestamp) -> Vec<Effect<R, A>> {
        self.available += units;
        self.refill_asked = false;
        let mut effects = Vec::new();
        self.serve_waiting(now, last, &mut effects);
        effects
    }

    /// The pool found nothing anywhere: refuse without asking until `reopen`. A failed append may have put units
    /// back here after the pool's reclaim; then the product is not sold out after all, and the pool must hear so.
    pub fn sell_out(&mut self, now: Timestamp) -> Vec<Effect<R, A>> {
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

    /// A request about one of this shard's orders: decided now, or after the step the order is taking.
    pub fn act(&mut self, request: OrderRequest<A>, now: Timestamp) -> Vec<Effect<R, A>> {
        let mut effects = Vec::new();
        let owned = self.committed.get(&request.order).is_some_and(|held| held.reservation.user_id == request.user);
        if !owned {
            effects.push(Effect::Answer(request.reply, Err(ActRefusal::NotFound)));
        } else {
            self.decide(request.order, request.act, request.reply, now, &mut effects);
        }
        effects
    }

    /// The product's clock: expires open orders whose payment window has closed and retries releases the journal
    /// refused, while fewer than `MAX_STEPS_IN_FLIGHT` of its steps are with the journal writer.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Effect<R, A>> {
        self.tick_asked = false;
        let mut effects = Vec::new();
        let mut budget = MAX_STEPS_IN_FLIGHT.saturating_sub(self.stepping.len());
        let retries: Vec<OrderId> = self.release_due.iter().take(budget).copied().collect();
        budget -= retries.len();
        for order_id in retries {
            self.release_due.remove(&order_id);
            self.take(order_id, Step::Released, now, SmallVec::new(), &mut effects);
        }
        while budget > 0 {
            let Some(&(deadline, order_id)) = self.deadlines.first() else { break };
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let decision = self.committed.get(&order_id).map(|held| held.timeline.life().expire());
            if let (Some(Decision::Take(step)), false) = (decision, self.stepping.contains_key(&order_id)) {
                self.take(order_id, step, now, SmallVec::new(), &mut effects);
                budget -= 1;
            }
        }
        self.keep_ticking(now, &mut effects);
        effects
    }

    /// Asks for another tick if steps are due and there is room for them with the journal writer; otherwise the
    /// commits of the steps in flight ask once they make room, or the product's next tick does.
    fn keep_ticking(&mut self, now: Timestamp, effects: &mut Vec<Effect<R, A>>) {
        if self.tick_asked || self.stepping.len() >= MAX_STEPS_IN_FLIGHT {
            return;
        }
        let expiry_due = self.deadlines.first().is_some_and(|(deadline, _)| *deadline <= now);
        if expiry_due || !self.release_due.is_empty() {
            self.tick_asked = true;
            effects.push(Effect::TickAgain);
        }
    }

    pub fn product_id(&self) -> ProductId {
        self.product_id
    }

    pub fn counts(&self) -> ShardCounts {
        ShardCounts {
            available: self.available,
            in_flight: self.in_flight,
            reserved: self.reserved,
            paid: self.paid,
            released: self.released,
            buyers: self.holdings.len() as u64,
            waiting: self.waiting.len() as u64,
            deadlines: self.deadlines.len() as u64,
            batch_in_flight: (self.pending.len() + self.stepping.len()) as u64,
            journal_position: self.position.get(),
        }
    }

    /// Makes room for `buyers` more buyers in the maps every purchase writes, so that a sale's first second does not
    /// pay for growing them (each doubling rehashes everything in the map, on the shard's one thread, while buyers
    /// wait). Returns how many buyers the maps now hold without growing.
    pub fn warm(&mut self, buyers: usize) -> usize {
        self.holdings.reserve(buyers);
        self.pending.reserve(buyers.min(MAX_WARM_PENDING));
        self.committed.reserve(buyers);
        self.orders_by_user.reserve(buyers);
        self.holdings.capacity().min(self.committed.capacity()).min(self.orders_by_user.capacity())
    }

    /// Units this shard has taken off sale: in flight, reserved or paid.
    pub fn taken(&self) -> u64 {
        self.in_flight + self.reserved + self.paid
    }

    /// Orders whose money must be given back (recovered with a refund requested and not yet done).
    pub fn refunds_due(&self) -> Vec<Arc<Reservation>> {
        let due = self.committed.values().filter(|held| held.timeline.life().refund_due());
        due.map(|held| Arc::clone(&held.reservation)).collect()
    }

    /// A committed order of this shard's buyers.
    pub fn order(&self, order_id: OrderId) -> Option<Order> {
        self.committed.get(&order_id).map(|held| Order::new(&held.reservation, held.timeline.clone()))
    }

    /// Every committed order of `user`.
    pub fn orders_of(&self, user: UserId) -> Vec<Order> {
        let ids = self.orders_by_user.get(&user).map_or(&[][..], SmallVec::as_slice);
        ids.iter().filter_map(|id| self.order(*id)).collect()
    }

    /// The shard's durable part: its committed reservations (shared, not copied), the steps of the orders that took
    /// any, and the position they reach.
    pub fn snapshot(&self) -> StockSnapshot {
        let steps = self
            .committed
            .values()
            .filter(|held| !held.timeline.steps().is_empty())
            .map(|held| OrderSteps { order_id: held.reservation.order_id, steps: held.timeline.steps().to_vec() });
        StockSnapshot {
            position: self.position,
            reservations: self.committed.values().map(|held| Arc::clone(&held.reservation)).collect(),
            steps: steps.collect(),
            restocks: Vec::new(),
        }
    }

    /// Decides `act` on a committed order, or queues it behind the order's step in flight.
    fn decide(&mut self, order_id: OrderId, act: OrderAct, reply: A, now: Timestamp, effects: &mut Vec<Effect<R, A>>) {
        if let Some(stepping) = self.stepping.get_mut(&order_id) {
            stepping.waiters.push((act, reply));
            return;
        }
        let Some(held) = self.committed.get(&order_id) else {
            effects.push(Effect::Answer(reply, Err(ActRefusal::NotFound)));
            return;
        };
        let life = held.timeline.life();
        let decision = match act {
            OrderAct::Cancel => life.cancel(),
            OrderAct::PaymentSucceeded => life.payment_succeeded(),
            OrderAct::Refunded => life.refunded(),
        };
        match decision {
            Decision::Take(step) => self.take(order_id, step, now, smallvec::smallvec![(act, reply)], effects),
            Decision::AlreadyDone => {
                effects.push(Effect::Answer(reply, Ok(Order::new(&held.reservation, held.timeline.clone()))))
            }
            Decision::Refused => effects.push(Effect::Answer(reply, Err(ActRefusal::Conflict(life.status())))),
        }
    }

    /// Hands `step` of an order to the journal.
    fn take(
        &mut self,
        order_id: OrderId,
        step: Step,
        now: Timestamp,
        waiters: SmallVec<[(OrderAct, A); 1]>,
        effects: &mut Vec<Effect<R, A>>,
    ) {
        let Some(held) = self.committed.get(&order_id) else { return };
        debug_assert!(!self.stepping.contains_key(&order_id), "one step of an order at a time");
        // Whatever step the order takes, its release (if due) follows once that step is durable or refused.
        self.release_due.remove(&order_id);
        let order = OrderStep { order_id, product_id: self.product_id, user_id: held.reservation.user_id, at: now };
        self.stepping.insert(order_id, Stepping { step, at: now, waiters });
        effects.push(Effect::Journal(JournalEvent::of_step(step, order)));
    }

    /// A step is durable: apply it, move the units it moves, answer who waited, and take the step that must follow.
    fn stepped(&mut self, order_id: OrderId, stepping: Stepping<A>, now: Timestamp, effects: &mut Vec<Effect<R, A>>) {
        let Some(held) = self.committed.get_mut(&order_id) else { return };
        let reservation = Arc::clone(&held.reservation);
        let units = u64::from(reservation.quantity.get());
        if held.timeline.apply(stepping.step, stepping.at) {
            effects.push(Effect::Changed(change_of(&reservation, Change::Step(stepping.step), stepping.at)));
            match stepping.step {
                Step::Paid => {
                    self.reserved -= units;
                    self.paid += units;
                }
                Step::Expired | Step::Cancelled => {}
                Step::Released => {
                    self.reserved -= units;
                    self.released += units;
                    self.available += units;
                    self.unhold(&reservation);
                    if self.sold_out {
                        self.sold_out = false;
                        effects.push(Effect::StockReturned { units });
                    }
                    self.serve_waiting(now, false, effects);
                }
                Step::RefundRequested => effects.push(Effect::RefundDue(Arc::clone(&reservation))),
                Step::Refunded => {}
            }
        }
        for (act, reply) in stepping.waiters {
            self.decide(order_id, act, reply, now, effects);
        }
        let release_due = self.committed.get(&order_id).is_some_and(|held| held.timeline.life().release_due());
        if release_due && !self.stepping.contains_key(&order_id) {
            self.take(order_id, Step::Released, now, SmallVec::new(), effects);
        }
    }

    fn serve_waiting(&mut self, now: Timestamp, final_answer: bool, effects: &mut Vec<Effect<R, A>>) {
        for request in std::mem::take(&mut self.waiting) {
            self.serve_or_wait(request, now, final_answer, effects);
        }
    }

    fn serve_or_wait(
        &mut self,
        request: PurchaseRequest<R>,
        now: Timestamp,
        final_answer: bool,
        effects: &mut Vec<Effect<R, A>>,
    ) {
        if let Some(key) = &request.key {
            if let Some(order_id) = self.keys.get(&(request.user, key.clone())) {
                // As draft-ietf-httpapi-idempotency-key-header has it: the same key for another request is an
                // error, and so is a repeat while the first is still being processed.
                let same = |reservation: &Reservation| reservation.quantity == request.quantity;
                let answer = if let Some(pending) = self.pending.get(order_id) {
                    Some(Err(if same(&pending.reservation) { Refusal::KeyInFlight } else { Refusal::KeyReused }))
                } else {
                    let held = self.committed.get(order_id);
                    held.map(|held| {
                        if same(&held.reservation) {
                            Ok(receipt_of(&held.reservation))
                        } else {
                            Err(Refusal::KeyReused)
                        }
                    })
                };
                if let Some(answer) = answer {
                    effects.push(Effect::Reply(request.reply, answer));
                    return;
                }
            }
        }
        let units = request.quantity.get();
        let held = self.holdings.get(&request.user).copied().unwrap_or(0);
        if held + units > self.limit {
            let refusal = Refusal::LimitExceeded { limit: self.limit, held, orders: self.holding(request.user) };
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

    fn reserve(&mut self, request: PurchaseRequest<R>, now: Timestamp, effects: &mut Vec<Effect<R, A>>) {
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
        self.remember_key(&reservation);
        effects.push(Effect::Append(reservation.clone()));
        self.pending.insert(reservation.order_id, Pending { reservation, reply: request.reply });
    }

    fn keep(&mut self, reservation: Arc<Reservation>, timeline: Timeline) {
        self.orders_by_user.entry(reservation.user_id).or_default().push(reservation.order_id);
        self.committed.insert(reservation.order_id, Held { reservation, timeline });
    }

    /// The recorded orders of `user` that still hold units.
    fn holding(&self, user: UserId) -> HeldOrders {
        let ids = self.orders_by_user.get(&user).map_or(&[][..], SmallVec::as_slice);
        let holds = |id: &&OrderId| self.committed.get(id).is_some_and(|held| held.timeline.life().holds_units());
        ids.iter().filter(holds).copied().collect()
    }

    /// The buyer's units count against their limit.
    fn hold(&mut self, reservation: &Reservation) {
        *self.holdings.entry(reservation.user_id).or_default() += reservation.quantity.get();
    }

    /// The buyer's units no longer count against their limit (a refused append, a released order).
    fn unhold(&mut self, reservation: &Reservation) {
        if let Some(held) = self.holdings.get_mut(&reservation.user_id) {
            *held -= reservation.quantity.get();
            if *held == 0 {
                self.holdings.remove(&reservation.user_id);
            }
        }
    }

    /// A repeat of the purchase's idempotency key answers with this order, even once it has ended.
    fn remember_key(&mut self, reservation: &Reservation) {
        if let Some(key) = &reservation.idempotency_key {
            self.keys.insert((reservation.user_id, key.clone()), reservation.order_id);
        }
    }

    fn forget_key(&mut self, reservation: &Reservation) {
        if let Some(key) = &reservation.idempotency_key {
            self.keys.remove(&(reservation.user_id, key.clone()));
        }
    }
}

fn receipt_of(reservation: &Reservation) -> Receipt {
    Receipt { order_id: reservation.order_id, pay_before: reservation.pay_before }
}

/// What its buyer is told of an order's `change`.
fn change_of(reservation: &Reservation, change: Change, at: Timestamp) -> OrderChange {
    OrderChange {
        order_id: reservation.order_id,
        product_id: reservation.product_id,
        user_id: reservation.user_id,
        change,
        at,
    }
}

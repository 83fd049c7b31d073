//! Property tests of a whole product — its `ProductBook` and its `ShardBook`s, the very state machines the actors
//! run — driven by random interleavings of purchases, message deliveries, refills, reclaims, journal commits and
//! journal failures. The actors add only mailboxes around these state machines, so the model delivers messages in
//! any order a mailbox allows: FIFO per mailbox, anything across mailboxes. A reclaim surrenders one shard per step
//! while the others go on, and each surrender reaches its shard after everything already in that shard's mailbox,
//! as the product actor's call does. Buyers cancel orders and the clock runs out payment windows, so units go back
//! on sale through the journal while others are bought. An admin restocks (the ledger's stock grows by the units,
//! reaching the pool when the product actor handles the restock, as it does once the restock is durable) and pauses
//! and resumes the product or every sale: a purchase then meets the same gate as the purchase path (`admit`) and is
//! refused before any shard sees it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use proptest::prelude::*;

use super::product::book::{Command, ProductBook};
use super::shard::book::{
    ActOutcome, ActRefusal, Effect, OrderAct, OrderRequest, Outcome, PurchaseRequest, Refusal, ShardBook,
};
use crate::domain::{
    admit, Change, Closed, IdempotencyKey, OrderId, OrderStatus, Position, ProductId, Quantity, Refund, SaleState,
    SaleWindow, Timestamp, UserId,
};

/// How long a buyer has to pay, in the model's clock.
const PAY_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum Op {
    Buy {
        user: u8,
        quantity: u8,
        key: Option<u8>,
    },
    DeliverToShard(u8),
    DeliverToProduct,
    Journal {
        pick: u8,
        ok: bool,
    },
    /// A buyer cancels the `nth` order they were told was accepted.
    Cancel {
        user: u8,
        nth: u8,
    },
    /// The payment provider reports the `nth` order of a buyer paid (perhaps after it ended: then it is refunded).
    Pay {
        user: u8,
        nth: u8,
    },
    /// The product's tick reaches a shard; `late` first moves the clock past every deadline so far.
    Tick {
        shard: u8,
        late: bool,
    },
    /// An admin adds units; the product actor takes them into the pool when it handles the restock.
    Restock {
        units: u8,
    },
    /// An admin sets the product's switch, or the global one.
    Switch {
        state: u8,
        global: bool,
    },
}

enum ToShard {
    Buy(PurchaseRequest<u64>),
    Act(OrderRequest<u64>),
    Tick,
    Grant {
        units: u64,
        last: bool,
    },
    SellOut,
    Reopen,
    Committed(OrderId, Position),
    /// The journal refused the order's append (a reservation's units go back to the shard; a step's are 0).
    Failed(OrderId, u64),
}

enum ToProduct {
    Need { shard: usize, want: u64 },
    Returned,
    Restock(u64),
}

struct Model {
    /// The shard the product is waiting on to surrender, if a reclaim is under way.
    surrendering: Option<usize>,
    stock: u64,
    limit: u32,
    product: ProductBook,
    shards: Vec<ShardBook<u64, u64>>,
    shard_mail: Vec<VecDeque<ToShard>>,
    product_mail: VecDeque<ToProduct>,
    /// Appends waiting for the journal's answer: the shard, the order and its units.
    journal: Vec<(usize, OrderId, u64)>,
    /// Units refused appends have put back, or restocks added, since every unit was last held (in flight or
    /// reserved) at once.
    returned_since_all_held: u64,
    /// The product's switch and the global one.
    switch: SaleState,
    global: SaleState,
    /// Purchases the switches turned away before any shard saw them.
    paused_refusals: u64,
    next_position: i64,
    next_request: u64,
    /// Each purchase asked: its buyer, key and quantity.
    requests: HashMap<u64, (UserId, Option<IdempotencyKey>, u32)>,
    answers: HashMap<u64, Outcome>,
    accepted_orders: HashSet<OrderId>,
    /// What each order's buyer was told of it, in order.
    told: HashMap<OrderId, Vec<(UserId, Change)>>,
    /// Accepted orders of each buyer, in the order they were told.
    orders_of_user: HashMap<UserId, Vec<OrderId>>,
    held_by_user: HashMap<UserId, u32>,
    order_of_key: HashMap<(UserId, IdempotencyKey), OrderId>,
    acts: u64,
    /// What each request about an order asked, of which order, for whom.
    act_kinds: HashMap<u64, (OrderAct, UserId, OrderId)>,
    act_answers: u64,
    /// Orders seen released, each once.
    released: HashSet<OrderId>,
    released_units: u64,
    now: Timestamp,
}

impl Model {
    fn new(stock: u64, shard_count: usize, limit: u32) -> Self {
        let id = ProductId::try_from(1).unwrap();
        let shards =
            (0..shard_count).map(|_| ShardBook::new(id, limit, PAY_WITHIN, Position::START, Vec::new())).collect();
        let mut model = Self {
            surrendering: None,
            stock,
            limit,
            product: ProductBook::new(stock, shard_count),
            shards,
            shard_mail: (0..shard_count).map(|_| VecDeque::new()).collect(),
            product_mail: VecDeque::new(),
            journal: Vec::new(),
            returned_since_all_held: 0,
            switch: SaleState::Open,
            global: SaleState::Open,
            paused_refusals: 0,
            next_position: 0,
            next_request: 0,
            requests: HashMap::new(),
            answers: HashMap::new(),
            accepted_orders: HashSet::new(),
            told: HashMap::new(),
            orders_of_user: HashMap::new(),
            held_by_user: HashMap::new(),
            order_of_key: HashMap::new(),
            acts: 0,
            act_kinds: HashMap::new(),
            act_answers: 0,
            released: HashSet::new(),
            released_units: 0,
            now: Timestamp::from_millis(1_000),
        };
        let opening = model.product.open();
        model.command(opening);
        model
    }

    fn shard_of(&self, user: UserId) -> usize {
        (user.get() as usize) % self.shards.len()
    }

    fn buy(&mut self, user: UserId, quantity: u32, key: Option<IdempotencyKey>) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.requests.insert(id, (user, key.clone(), quantity));
        let quantity = Quantity::try_from(i64::from(quantity)).unwrap();
        let shard = self.shard_of(user);
        self.shard_mail[shard].push_back(ToShard::Buy(PurchaseRequest { user, quantity, key, reply: id }));
        id
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Buy { user, quantity, key } => {
                let user = UserId::try_from(i64::from(user) + 1).unwrap();
                let key = key.map(|k| IdempotencyKey::try_from(format!("k{k}")).unwrap());
                let window = SaleWindow::new(Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX)).unwrap();
                match admit(window, self.now, self.switch, self.global) {
                    Ok(()) => {
                        self.buy(user, u32::from(quantity), key);
                    }
                    Err(closed) => {
                        assert!(matches!(closed, Closed::Paused | Closed::Draining), "the window is always open");
                        assert_ne!(self.switch.under(self.global), SaleState::Open, "refused while open");
                        self.paused_refusals += 1;
                    }
                }
            }
            Op::Restock { units } => self.product_mail.push_back(ToProduct::Restock(u64::from(units))),
            Op::Switch { state, global } => {
                let state = SaleState::from_u8(state);
                if global {
                    self.global = state;
                } else {
                    self.switch = state;
                }
            }
            Op::DeliverToShard(shard) => self.deliver_to_shard(usize::from(shard) % self.shards.len()),
            Op::DeliverToProduct => self.deliver_to_product(),
            Op::Journal { pick, ok } => self.resolve_journal(usize::from(pick), ok),
            Op::Cancel { user, nth } => self.act_on_nth(user, nth, OrderAct::Cancel),
            Op::Pay { user, nth } => self.act_on_nth(user, nth, OrderAct::PaymentSucceeded),
            Op::Tick { shard, late } => {
                if late {
                    self.now = self.now.plus(PAY_WITHIN + Duration::from_secs(1));
                }
                let shard = usize::from(shard) % self.shards.len();
                self.shard_mail[shard].push_back(ToShard::Tick);
            }
        }
        self.check_conservation();
    }

    fn act_on_nth(&mut self, user: u8, nth: u8, act: OrderAct) {
        let user = UserId::try_from(i64::from(user) + 1).unwrap();
        let orders = self.orders_of_user.get(&user).map_or(&[][..], Vec::as_slice);
        if let Some(&order) = orders.get(usize::from(nth) % orders.len().max(1)) {
            self.act(user, order, act);
        }
    }

    fn act(&mut self, user: UserId, order: OrderId, act: OrderAct) {
        self.acts += 1;
        self.act_kinds.insert(self.acts, (act, user, order));
        let shard = self.shard_of(user);
        self.shard_mail[shard].push_back(ToShard::Act(OrderRequest { order, user, act, reply: self.acts }));
    }

    fn deliver_to_shard(&mut self, shard: usize) {
        let Some(message) = self.shard_mail[shard].pop_front() else { return };
        let now = self.now;
        let book = &mut self.shards[shard];
        let effects = match message {
            ToShard::Buy(request) => book.purchase(request, now),
            ToShard::Act(request) => book.act(request, now),
            ToShard::Tick => book.tick(now),
            ToShard::Grant { units, last } => book.grant(units, last, now),
            ToShard::SellOut => book.sell_out(now),
            ToShard::Reopen => {
                book.reopen();
                Vec::new()
            }
            ToShard::Committed(order, position) => {
                let effects = book.committed(order, position, now);
                self.note_release(shard, order);
                effects
            }
            ToShard::Failed(order, units) => {
                self.returned_since_all_held += units;
                book.failed(order, now)
            }
        };
        self.apply(shard, effects);
    }

    /// Once an order's release is durable its units are on sale again and its buyer's slot is free — once.
    fn note_release(&mut self, shard: usize, order_id: OrderId) {
        let Some(order) = self.shards[shard].order(order_id) else { return };
        if order.status() == OrderStatus::Released && self.released.insert(order_id) {
            let units = order.quantity.get();
            self.released_units += u64::from(units);
            self.returned_since_all_held += u64::from(units);
            *self.held_by_user.get_mut(&order.user_id).expect("a released order was accepted") -= units;
        }
    }

    /// One step of the product actor: the surrender it waits for (which it gets once the shard has handled
    /// everything before it), or its next message.
    fn deliver_to_product(&mut self) {
        if let Some(shard) = self.surrendering.take() {
            while !self.shard_mail[shard].is_empty() {
                self.deliver_to_shard(shard);
            }
            let units = self.shards[shard].surrender();
            let commands = self.product.surrendered(units);
            self.command(commands);
            return;
        }
        let commands = match self.product_mail.pop_front() {
            Some(ToProduct::Need { shard, want }) => self.product.need_stock(shard, want),
            Some(ToProduct::Returned) => self.product.stock_returned(),
            Some(ToProduct::Restock(units)) => {
                self.stock += units;
                self.returned_since_all_held += units;
                self.product.restock(units)
            }
            None => return,
        };
        self.command(commands);
    }

    /// Carries out the product book's commands as its actor does, except that a surrender waits for its step.
    fn command(&mut self, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::Grant { shard, units, last } => {
                    self.shard_mail[shard].push_back(ToShard::Grant { units, last })
                }
                Command::Surrender { shard } => self.surrendering = Some(shard),
                Command::SellOut => self.shard_mail.iter_mut().for_each(|mail| mail.push_back(ToShard::SellOut)),
                Command::Reopen => self.shard_mail.iter_mut().for_each(|mail| mail.push_back(ToShard::Reopen)),
            }
        }
    }

    fn resolve_journal(&mut self, pick: usize, ok: bool) {
        if self.journal.is_empty() {
            return;
        }
        let (shard, order, units) = self.journal.remove(pick % self.journal.len());
        if ok {
            self.next_position += 1;
            self.shard_mail[shard].push_back(ToShard::Committed(order, Position::new(self.next_position)));
        } else {
            self.shard_mail[shard].push_back(ToShard::Failed(order, units));
        }
    }

    fn apply(&mut self, shard: usize, effects: Vec<Effect<u64, u64>>) {
        for effect in effects {
            match effect {
                Effect::Reply(request, outcome) => self.answered(request, outcome),
                Effect::Answer(request, outcome) => self.act_answered(request, outcome),
                Effect::Append(reservation) => {
                    self.journal.push((shard, reservation.order_id, u64::from(reservation.quantity.get())));
                }
                Effect::Journal(event) => self.journal.push((shard, event.order_id(), 0)),
                Effect::AskPool { want } => self.product_mail.push_back(ToProduct::Need { shard, want }),
                Effect::StockReturned { .. } => self.product_mail.push_back(ToProduct::Returned),
                Effect::TickAgain => self.shard_mail[shard].push_back(ToShard::Tick),
                // Compensation refunds at once, in the model.
                Effect::RefundDue(reservation) => {
                    self.act(reservation.user_id, reservation.order_id, OrderAct::Refunded)
                }
                Effect::Changed(change) => {
                    let told = self.told.entry(change.order_id).or_default();
                    let first = change.change == Change::Reserved;
                    assert_eq!(told.is_empty(), first, "a buyer hears of the reservation first, once: {told:?}");
                    assert!(!told.contains(&(change.user_id, change.change)), "{:?} told twice", change.change);
                    told.push((change.user_id, change.change));
                }
            }
        }
    }

    fn act_answered(&mut self, request: u64, outcome: ActOutcome) {
        let (act, user, order) = self.act_kinds[&request];
        if act == OrderAct::Refunded && outcome == Err(ActRefusal::Unavailable) {
            // Compensation tries a refund the journal refused again.
            let shard = self.shard_of(user);
            self.shard_mail[shard].push_back(ToShard::Act(OrderRequest { order, user, act, reply: request }));
            return;
        }
        self.act_answers += 1;
        let Ok(order) = outcome else { return };
        let (status, refund) = (order.status(), order.timeline.life().refund());
        let fits = match act {
            OrderAct::Cancel => matches!(status, OrderStatus::Cancelled | OrderStatus::Released),
            OrderAct::PaymentSucceeded => (status == OrderStatus::Paid) != refund.is_some(),
            OrderAct::Refunded => refund == Some(Refund::Refunded) && status != OrderStatus::Paid,
        };
        assert!(fits, "{act:?} answered {status:?} with refund {refund:?}");
    }

    fn answered(&mut self, request: u64, outcome: Outcome) {
        let (user, key, quantity) = self.requests[&request].clone();
        // The other purchases with the same buyer and key (one that waited for stock may find its key taken by a
        // later one), and whether each asked for the same quantity.
        let same_key = |other: &(UserId, Option<IdempotencyKey>, u32)| other.0 == user && other.1 == key;
        let others: Vec<bool> = (0..self.next_request)
            .filter(|id| *id != request)
            .filter_map(|id| self.requests.get(&id).filter(|other| key.is_some() && same_key(other)))
            .map(|other| other.2 == quantity)
            .collect();
        match outcome {
            Ok(receipt) => {
                if let Some(key) = key {
                    let first = *self.order_of_key.entry((user, key)).or_insert(receipt.order_id);
                    assert_eq!(first, receipt.order_id, "one Idempotency-Key yielded two orders");
                }
                if self.accepted_orders.insert(receipt.order_id) {
                    self.orders_of_user.entry(user).or_default().push(receipt.order_id);
                    let units = self.unit_count(receipt.order_id);
                    let held = self.held_by_user.entry(user).or_default();
                    *held += units;
                    assert!(*held <= self.limit, "user {user} holds {held} > limit {}", self.limit);
                }
            }
            Err(Refusal::SoldOut) => {
                // Every unit was held at some point before this answer, and whatever is unsold now is only what
                // refused appends have put back since (on its way back on sale). Without failures: nothing remains.
                let remaining = self.remaining();
                assert!(
                    remaining <= self.returned_since_all_held,
                    "SOLD_OUT answered while {remaining} units remain, of which only {} came back from refused appends",
                    self.returned_since_all_held
                );
            }
            Err(Refusal::KeyReused) => {
                assert!(
                    others.contains(&false),
                    "KeyReused, though no other purchase used the key for another quantity"
                );
            }
            Err(Refusal::KeyInFlight) => {
                assert!(others.contains(&true), "KeyInFlight, though no other purchase used the key for this quantity");
            }
            Err(Refusal::LimitExceeded { limit, held, ref orders }) => {
                assert!(held + quantity > limit, "LimitExceeded for {quantity} more while holding {held} of {limit}");
                let mine = self.orders_of_user.get(&user).map_or(&[][..], Vec::as_slice);
                assert!(orders.iter().all(|order| mine.contains(order)), "{orders:?} are not all {user}'s: {mine:?}");
                let named: u32 = orders.iter().map(|order| self.unit_count(*order)).sum();
                assert!(named <= held, "the orders named hold {named} units, more than the {held} held");
            }
            Err(_) => {}
        }
        self.answers.insert(request, outcome);
    }

    fn shard_of_order(&self, order: OrderId) -> usize {
        self.shards.iter().position(|book| book.order(order).is_some()).expect("an accepted order is held")
    }

    fn unit_count(&self, order: OrderId) -> u32 {
        self.shards
            .iter()
            .flat_map(|book| book.snapshot().reservations)
            .find(|reservation| reservation.order_id == order)
            .map(|reservation| reservation.quantity.get())
            .expect("an accepted order is committed")
    }

    fn in_transit(&self) -> u64 {
        let grants = self.shard_mail.iter().flatten().map(|message| match message {
            ToShard::Grant { units, .. } => *units,
            _ => 0,
        });
        grants.sum()
    }

    /// Units nobody holds yet: the pool, units a reclaim has gathered, every slice, and grants on their way.
    fn remaining(&self) -> u64 {
        self.product.units() + self.shards.iter().map(|book| book.counts().available).sum::<u64>() + self.in_transit()
    }

    /// Checks the ledger after a step, and notes when every unit is held.
    fn check_conservation(&mut self) {
        if self.remaining() == 0 {
            self.returned_since_all_held = 0;
        }
        let held: u64 = self.shards.iter().map(|book| book.taken()).sum();
        assert_eq!(self.remaining() + held, self.stock, "pool + slices + in flight + reserved + paid != stock");
    }

    fn quiesce(&mut self) {
        for _ in 0..100_000 {
            if let Some(shard) = self.shard_mail.iter().position(|mail| !mail.is_empty()) {
                self.deliver_to_shard(shard);
            } else if self.surrendering.is_some() || !self.product_mail.is_empty() {
                self.deliver_to_product();
            } else if !self.journal.is_empty() {
                self.resolve_journal(0, true);
            } else {
                return;
            }
            self.check_conservation();
        }
        panic!("the model did not settle");
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..12, 1u8..=3, proptest::option::of(0u8..3))
            .prop_map(|(user, quantity, key)| Op::Buy { user, quantity, key }),
        4 => (0u8..4).prop_map(Op::DeliverToShard),
        2 => Just(Op::DeliverToProduct),
        2 => (any::<u8>(), prop::bool::weighted(0.8)).prop_map(|(pick, ok)| Op::Journal { pick, ok }),
        1 => (0u8..12, any::<u8>()).prop_map(|(user, nth)| Op::Cancel { user, nth }),
        1 => (0u8..12, any::<u8>()).prop_map(|(user, nth)| Op::Pay { user, nth }),
        1 => (0u8..4, prop::bool::weighted(0.2)).prop_map(|(shard, late)| Op::Tick { shard, late }),
        1 => (1u8..=5).prop_map(|units| Op::Restock { units }),
        1 => (0u8..3, any::<bool>()).prop_map(|(state, global)| Op::Switch { state, global }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn stock_is_conserved_limits_hold_and_no_sold_out_while_stock_remains(
        stock in 0u64..40,
        shard_count in 1usize..=4,
        limit in 1u32..=3,
        ops in prop::collection::vec(op(), 0..300),
    ) {
        let mut model = Model::new(stock, shard_count, limit);
        for op in &ops {
            let before = (model.remaining(), model.next_request, model.paused_refusals);
            model.step(op);
            if model.paused_refusals > before.2 {
                // A paused sale refused the buyer: no request reached a shard, and no unit moved.
                prop_assert_eq!((model.remaining(), model.next_request), (before.0, before.1));
            }
        }
        model.quiesce();
        let restocked = model.stock - stock;
        let restocks = ops.iter().filter_map(|op| match op { Op::Restock { units } => Some(u64::from(*units)), _ => None });
        prop_assert_eq!(restocked, restocks.sum::<u64>(), "every restock reached the ledger once");
        let stock = model.stock;
        model.step(&Op::Switch { state: 0, global: false });
        model.step(&Op::Switch { state: 0, global: true });

        // Every buyer and every request about an order got exactly one answer once everything settled.
        prop_assert_eq!(model.answers.len() as u64, model.next_request);
        prop_assert_eq!(model.act_answers, model.acts);
        // Nothing is left in flight, and what was accepted and not released is exactly what the shards hold.
        let reserved: u64 = model.shards.iter().map(|book| book.counts().reserved + book.counts().paid).sum();
        let accepted: u64 = model.held_by_user.values().map(|&units| u64::from(units)).sum();
        prop_assert_eq!(reserved, accepted);
        let released: u64 = model.shards.iter().map(|book| book.counts().released).sum();
        prop_assert_eq!(released, model.released_units, "a unit was released twice, or a release went unseen");

        // No undersell: whatever is left can be bought by newcomers on every shard, down to the last unit, and only
        // then is anyone told SOLD_OUT.
        let mut left = model.remaining();
        prop_assert_eq!(left + reserved, stock);
        let mut newcomers = (1_000..).map(|id| UserId::try_from(id).unwrap());
        for round in 0..=stock {
            for shard in 0..shard_count {
                let newcomer = newcomers.by_ref().find(|user| model.shard_of(*user) == shard).unwrap();
                let request = model.buy(newcomer, 1, None);
                model.quiesce();
                let sold = model.answers[&request].is_ok();
                prop_assert_eq!(sold, left > 0, "round {}: {} left before a newcomer on shard {}", round, left, shard);
                left = left.saturating_sub(1);
            }
        }
        prop_assert_eq!(model.remaining(), 0);

        // Once every payment window has closed, every order ended exactly once: paid, or released (and refunded if
        // money came after it ended); every unspoken-for unit is back on sale.
        model.step(&Op::Tick { shard: 0, late: true });
        for shard in 1..shard_count {
            model.step(&Op::Tick { shard: shard as u8, late: false });
        }
        model.quiesce();
        let orders: Vec<_> = model.accepted_orders.iter().filter_map(|id| model.shards[model.shard_of_order(*id)].order(*id)).collect();
        prop_assert_eq!(orders.len(), model.accepted_orders.len());
        let paid: u64 = orders.iter().filter(|order| order.status() == OrderStatus::Paid).map(|order| u64::from(order.quantity.get())).sum();
        prop_assert_eq!(model.remaining() + paid, stock);
        for order in &orders {
            let (status, refund) = (order.status(), order.timeline.life().refund());
            prop_assert!(status == OrderStatus::Paid || status == OrderStatus::Released, "{:?}", status);
            prop_assert!(refund.is_none() || refund == Some(Refund::Refunded), "a refund was left undone");
            prop_assert!(status != OrderStatus::Paid || refund.is_none(), "a paid order was refunded");
        }
        let unpaid = orders.iter().filter(|order| order.status() == OrderStatus::Released).count();
        prop_assert_eq!(model.released.len(), unpaid);
        // Each buyer was told every step of their own order, and only of their own.
        for order in &orders {
            let told: Vec<_> = model.told[&order.order_id].iter().map(|(user, change)| {
                assert_eq!(*user, order.user_id);
                *change
            }).collect();
            let steps: Vec<_> = std::iter::once(Change::Reserved)
                .chain(order.timeline.steps().iter().map(|step| Change::Step(step.step)))
                .collect();
            prop_assert_eq!(told, steps);
        }
    }
}

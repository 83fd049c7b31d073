//! The StockShard actor: serialises the purchases of the users hashed to it through its mailbox and turns the
//! decisions of its `ShardBook` into messages — replies to buyers, appends to the journal writer, requests to the
//! product's pool. It never waits on anything: the journal's answer comes back as a message. Its orders' later
//! steps (cancel, expiry, release) go through the same journal writer, decided and applied by the same book.
//!
//! A purchase is traced here as `shard.purchase`, from its message to its answer, under the span it was sent from
//! (ractor carries it with the message); its reservation's `journal.append` span goes to the writer with the event.
//! Both are DEBUG spans, disabled unless traces are on, and then neither is made nor looked up.

pub mod book;

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};
use tracing::field::{debug, display, Empty};
use tracing::{Level, Span};

use self::book::{ActOutcome, Effect, OrderRequest, Outcome, PurchaseRequest, ShardBook, ShardCounts};
use super::gauges::Gauges;
use crate::actors::inspect::{ActorKind, InspectReply, Meter, Report};
use crate::actors::journal::{Ack, AppendFailed, Appender, Outcome as Journaled, Recipient};
use crate::actors::lifecycle::{JobLink, JobMsg, Refund};
use crate::actors::live::OrderFeed;
use crate::domain::{
    JournalEvent, Order, OrderId, PaymentOrder, ProductId, Reservation, StockSnapshot, Timestamp, UserId,
};

pub struct StockShard;

pub type BuyerReply = RpcReplyPort<Outcome>;
pub type ActReply = RpcReplyPort<ActOutcome>;
pub type Book = ShardBook<Buyer, ActReply>;

/// A buyer waiting for their purchase's outcome, and the purchase's span here.
pub struct Buyer {
    reply: BuyerReply,
    span: Span,
}

/// What a shard asks of its product's pool. The shard knows its product only as the receiver of these.
pub enum PoolRequest {
    /// The slice cannot serve a waiting buyer; the product answers with exactly one `Grant`.
    NeedStock { shard: usize, want: u64 },
    /// Units came back (a refused append) after the product had been declared sold out.
    StockReturned { units: u64 },
}

pub struct ShardArgs {
    pub index: usize,
    pub book: Book,
    pub pool: DerivedActorRef<PoolRequest>,
    pub writer: Appender,
    pub gauges: Arc<Gauges>,
    pub refunds: Arc<JobLink<Refund>>,
    /// A unit's price, for the refunds this shard hands over.
    pub price_cents: i64,
    /// Where buyers hear of their orders' changes.
    pub orders: Arc<OrderFeed>,
}

pub struct ShardState {
    index: usize,
    /// This shard as the journal writer's recipient.
    inbox: Arc<dyn Recipient>,
    book: Book,
    pool: DerivedActorRef<PoolRequest>,
    writer: Appender,
    gauges: Arc<Gauges>,
    refunds: Arc<JobLink<Refund>>,
    price_cents: i64,
    orders: Arc<OrderFeed>,
    meter: Arc<Meter>,
}

pub enum ShardMsg {
    Purchase(PurchaseRequest<BuyerReply>),
    /// A request about one of this shard's orders.
    Act(OrderRequest<ActReply>),
    /// The product's clock: expire what is due, retry releases.
    Tick,
    /// The journal writer's outcomes for this shard's reservations in one batch.
    Journaled(Vec<Journaled>),
    Grant {
        units: u64,
        last: bool,
    },
    SellOut,
    Reopen,
    Surrender(RpcReplyPort<u64>),
    Counts(RpcReplyPort<ShardCounts>),
    Snapshot(RpcReplyPort<StockSnapshot>),
    /// Make room for this many buyers before the sale opens; answered with the room there is.
    Warm(usize, RpcReplyPort<usize>),
    Order(OrderId, RpcReplyPort<Option<Order>>),
    OrdersOf(UserId, RpcReplyPort<Vec<Order>>),
    /// Orders whose money must be given back.
    RefundsDue(RpcReplyPort<Vec<Arc<Reservation>>>),
    Inspect(InspectReply),
}

impl Actor for StockShard {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(&self, myself: ActorRef<ShardMsg>, args: ShardArgs) -> Result<ShardState, ActorProcessingErr> {
        let ShardArgs { index, book, pool, writer, gauges, refunds, price_cents, orders } = args;
        let inbox = Arc::new(Inbox(myself));
        let meter = Arc::default();
        let state = ShardState { index, inbox, book, pool, writer, gauges, refunds, price_cents, orders, meter };
        // Refunds a crash interrupted start again (compensation ignores those it already runs).
        for reservation in state.book.refunds_due() {
            state.refund(&reservation);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        message: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        state.meter.handled();
        let before = state.taken();
        let now = Timestamp::now();
        let effects = match message {
            ShardMsg::Purchase(request) => {
                let span = tracing::debug_span!(
                    "shard.purchase",
                    product_id = state.book.product_id().get(),
                    shard = state.index as i64,
                    order_id = Empty,
                    refusal = Empty,
                );
                let PurchaseRequest { user, quantity, key, reply } = request;
                let buyer = Buyer { reply, span };
                state.book.purchase(PurchaseRequest { user, quantity, key, reply: buyer }, now)
            }
            ShardMsg::Act(request) => state.book.act(request, now),
            ShardMsg::Tick => state.book.tick(now),
            ShardMsg::Journaled(outcomes) => {
                let book = &mut state.book;
                outcomes
                    .into_iter()
                    .flat_map(|(order_id, result)| match result {
                        Ok(position) => book.committed(order_id, position, now),
                        Err(AppendFailed) => book.failed(order_id, now),
                    })
                    .collect()
            }
            ShardMsg::Grant { units, last } => state.book.grant(units, last, now),
            ShardMsg::SellOut => state.book.sell_out(now),
            ShardMsg::Reopen => {
                state.book.reopen();
                Vec::new()
            }
            ShardMsg::Surrender(reply) => {
                let _ = reply.send(state.book.surrender());
                Vec::new()
            }
            ShardMsg::Counts(reply) => {
                let _ = reply.send(state.book.counts());
                Vec::new()
            }
            ShardMsg::Snapshot(reply) => {
                let _ = reply.send(state.book.snapshot());
                Vec::new()
            }
            ShardMsg::Warm(buyers, reply) => {
                let _ = reply.send(state.book.warm(buyers));
                Vec::new()
            }
            ShardMsg::Order(order_id, reply) => {
                let _ = reply.send(state.book.order(order_id));
                Vec::new()
            }
            ShardMsg::OrdersOf(user, reply) => {
                let _ = reply.send(state.book.orders_of(user));
                Vec::new()
            }
            ShardMsg::RefundsDue(reply) => {
                let _ = reply.send(state.book.refunds_due());
                Vec::new()
            }
            ShardMsg::Inspect(reply) => {
                let _ = reply.send(state.report());
                Vec::new()
            }
        };
        state.perform(effects, now, &myself);
        state.gauges.record(before, state.taken());
        Ok(())
    }
}

/// Hands the writer's outcomes to the shard's mailbox.
struct Inbox(ActorRef<ShardMsg>);

impl Recipient for Inbox {
    fn acknowledge(&self, outcomes: Vec<Journaled>) {
        let _ = self.0.cast(ShardMsg::Journaled(outcomes));
    }
}

impl ShardState {
    fn taken(&self) -> u64 {
        self.book.taken()
    }

    fn perform(&mut self, effects: Vec<Effect<Buyer, ActReply>>, now: Timestamp, myself: &ActorRef<ShardMsg>) {
        let mut queue = effects;
        while !queue.is_empty() {
            let mut follow_up = Vec::new();
            for effect in queue {
                match effect {
                    Effect::Reply(buyer, outcome) => buyer.answer(outcome),
                    Effect::Answer(reply, outcome) => {
                        let _ = reply.send(outcome);
                    }
                    Effect::Append(reservation) => {
                        let span = self.appending(&reservation);
                        follow_up.extend(self.journal(JournalEvent::Reserved(reservation), span, now));
                    }
                    Effect::Journal(event) => follow_up.extend(self.journal(event, Span::none(), now)),
                    Effect::TickAgain => {
                        let _ = myself.cast(ShardMsg::Tick);
                    }
                    Effect::AskPool { want } => {
                        let _ = self.pool.send_message(PoolRequest::NeedStock { shard: self.index, want });
                    }
                    Effect::StockReturned { units } => {
                        let _ = self.pool.send_message(PoolRequest::StockReturned { units });
                    }
                    Effect::RefundDue(reservation) => self.refund(&reservation),
                    Effect::Changed(change) => self.orders.publish(change),
                }
            }
            queue = follow_up;
        }
    }

    fn report(&self) -> Report {
        #[derive(serde::Serialize)]
        struct Details {
            product_id: ProductId,
            index: usize,
            #[serde(flatten)]
            counts: ShardCounts,
        }
        let details = Details { product_id: self.book.product_id(), index: self.index, counts: self.book.counts() };
        Report::new(ActorKind::Shard, &self.meter, serde_json::to_value(details).unwrap_or_default())
    }

    /// Hands a refund to compensation. If none runs just now, the one that starts next finds it (`Job::pending`).
    fn refund(&self, reservation: &Reservation) {
        let job = Refund(PaymentOrder::of(reservation, self.price_cents));
        self.refunds.cast(JobMsg::Start { job, reply: None });
    }

    /// The span of a reservation's way through the journal, under its purchase's span. Looked up only while DEBUG
    /// spans can be on at all (one load of the level every layer allows, asking no layer).
    fn appending(&self, reservation: &Reservation) -> Span {
        if !tracing::level_enabled!(Level::DEBUG) {
            return Span::none();
        }
        self.book.buyer(reservation.order_id).map_or_else(Span::none, |buyer| buyer.appending(reservation))
    }

    /// Hands an event of one of this shard's orders to the journal writer, with the span its batch is to link; if
    /// the writer refuses it at once, the book hears so.
    fn journal(&mut self, event: JournalEvent, span: Span, now: Timestamp) -> Vec<Effect<Buyer, ActReply>> {
        let order_id = event.order_id();
        let ack = Ack { to: Arc::clone(&self.inbox), order_id, span };
        match self.writer.append(event, ack) {
            Ok(()) => Vec::new(),
            Err(_) => self.book.failed(order_id, now),
        }
    }
}

impl Buyer {
    /// Tells the buyer, and their purchase's span how it went.
    fn answer(self, outcome: Outcome) {
        if let Err(refusal) = &outcome {
            if !self.span.is_disabled() {
                self.span.record("refusal", debug(refusal));
            }
        }
        let _ = self.reply.send(outcome);
    }

    /// The purchase has become `reservation`: its order id goes on the purchase's span, and the reservation's way
    /// through the journal gets a span of its own under it.
    fn appending(&self, reservation: &Reservation) -> Span {
        if self.span.is_disabled() {
            return Span::none();
        }
        self.span.record("order_id", display(reservation.order_id));
        tracing::debug_span!(
            parent: &self.span,
            "journal.append",
            order_id = %reservation.order_id,
            product_id = reservation.product_id.get(),
            journal.position = Empty,
        )
    }
}

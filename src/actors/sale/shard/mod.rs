//! The StockShard actor: serialises the purchases of the users hashed to it through its mailbox and turns the
//! decisions of its `ShardBook` into messages — replies to buyers, appends to the journal writer, requests to the
//! product's pool. It never waits on anything: the journal's answer comes back as a message.

pub mod book;

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};

use self::book::{Effect, Outcome, PurchaseRequest, ShardBook, ShardCounts};
use super::gauges::Gauges;
use crate::actors::journal::{Ack, AppendFailed, Appender, Outcome as Journaled, Recipient};
use crate::domain::{JournalEvent, OrderId, Reservation, StockSnapshot, Timestamp, UserId};

pub struct StockShard;

pub type BuyerReply = RpcReplyPort<Outcome>;

/// What a shard asks of its product's pool. The shard knows its product only as the receiver of these.
pub enum PoolRequest {
    /// The slice cannot serve a waiting buyer; the product answers with exactly one `Grant`.
    NeedStock { shard: usize, want: u64 },
    /// Units came back (a refused append) after the product had been declared sold out.
    StockReturned { units: u64 },
}

pub struct ShardArgs {
    pub index: usize,
    pub book: ShardBook<BuyerReply>,
    pub pool: DerivedActorRef<PoolRequest>,
    pub writer: Appender,
    pub gauges: Arc<Gauges>,
}

pub struct ShardState {
    index: usize,
    /// This shard as the journal writer's recipient.
    inbox: Arc<dyn Recipient>,
    book: ShardBook<BuyerReply>,
    pool: DerivedActorRef<PoolRequest>,
    writer: Appender,
    gauges: Arc<Gauges>,
}

pub enum ShardMsg {
    Purchase(PurchaseRequest<BuyerReply>),
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
    Order(OrderId, RpcReplyPort<Option<Arc<Reservation>>>),
    OrdersOf(UserId, RpcReplyPort<Vec<Arc<Reservation>>>),
}

impl Actor for StockShard {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(&self, myself: ActorRef<ShardMsg>, args: ShardArgs) -> Result<ShardState, ActorProcessingErr> {
        let ShardArgs { index, book, pool, writer, gauges } = args;
        Ok(ShardState { index, inbox: Arc::new(Inbox(myself)), book, pool, writer, gauges })
    }

    async fn handle(
        &self,
        _: ActorRef<ShardMsg>,
        message: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        let before = state.taken();
        let now = Timestamp::now();
        let effects = match message {
            ShardMsg::Purchase(request) => state.book.purchase(request, now),
            ShardMsg::Journaled(outcomes) => {
                let book = &mut state.book;
                outcomes
                    .into_iter()
                    .flat_map(|(order_id, result)| match result {
                        Ok(position) => book.committed(order_id, position),
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
            ShardMsg::Order(order_id, reply) => {
                let _ = reply.send(state.book.order(order_id));
                Vec::new()
            }
            ShardMsg::OrdersOf(user, reply) => {
                let _ = reply.send(state.book.orders_of(user));
                Vec::new()
            }
        };
        state.perform(effects, now);
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
        let counts = self.book.counts();
        counts.in_flight + counts.reserved
    }

    fn perform(&mut self, effects: Vec<Effect<BuyerReply>>, now: Timestamp) {
        let mut queue = effects;
        while !queue.is_empty() {
            let mut follow_up = Vec::new();
            for effect in queue {
                match effect {
                    Effect::Reply(reply, outcome) => {
                        let _ = reply.send(outcome);
                    }
                    Effect::Append(reservation) => {
                        let order_id = reservation.order_id;
                        let ack = Ack { to: Arc::clone(&self.inbox), order_id };
                        if self.writer.append(JournalEvent::Reserved(reservation), ack).is_err() {
                            follow_up.extend(self.book.failed(order_id, now));
                        }
                    }
                    Effect::AskPool { want } => {
                        let _ = self.pool.send_message(PoolRequest::NeedStock { shard: self.index, want });
                    }
                    Effect::StockReturned { units } => {
                        let _ = self.pool.send_message(PoolRequest::StockReturned { units });
                    }
                }
            }
            queue = follow_up;
        }
    }
}

//! The JournalWriter actor: group commit. Shards hand it one reservation at a time; it appends them to the journal
//! many per transaction and tells each shard the outcome. One batch is in flight at a time, so positions are
//! handed out in commit order; while it is in flight the next batch fills, which is what makes batches large
//! exactly when load is high. A batch is sent when it is full, when the linger timer fires, or — with a zero
//! linger — as soon as the previous one is done.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::order_projector::ProjectorMsg;
use crate::domain::{JournalEvent, Position};
use crate::persistence::{Journal, JournalError};

/// The journal did not record the event; nothing of it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendFailed;

/// Called once with the event's position, or with `AppendFailed`.
pub type Ack = Box<dyn FnOnce(Result<Position, AppendFailed>) + Send>;

/// Batching decisions, apart from the actor so they can be tested alone.
pub struct GroupCommit<A> {
    pending: Vec<(JournalEvent, A)>,
    in_flight: bool,
    max_batch: usize,
}

impl<A> GroupCommit<A> {
    pub fn new(max_batch: usize) -> Self {
        Self { pending: Vec::new(), in_flight: false, max_batch: max_batch.max(1) }
    }

    /// Queues an event; true when a full batch is waiting and none is in flight.
    pub fn push(&mut self, event: JournalEvent, ack: A) -> bool {
        self.pending.push((event, ack));
        !self.in_flight && self.pending.len() >= self.max_batch
    }

    /// The next batch to send, if none is in flight and any event waits.
    pub fn next_batch(&mut self) -> Option<Vec<(JournalEvent, A)>> {
        if self.in_flight || self.pending.is_empty() {
            return None;
        }
        self.in_flight = true;
        let rest = self.pending.split_off(self.pending.len().min(self.max_batch));
        Some(std::mem::replace(&mut self.pending, rest))
    }

    pub fn finished(&mut self) {
        self.in_flight = false;
    }

    pub fn is_idle(&self) -> bool {
        !self.in_flight && self.pending.is_empty()
    }
}

pub struct JournalWriter;

pub struct WriterArgs {
    pub journal: Arc<dyn Journal>,
    pub projector: ActorRef<ProjectorMsg>,
    pub max_batch: usize,
    pub linger: Duration,
}

pub struct WriterState {
    journal: Arc<dyn Journal>,
    projector: ActorRef<ProjectorMsg>,
    batches: GroupCommit<Ack>,
    linger: Duration,
    timer_armed: bool,
    flush_waiters: Vec<RpcReplyPort<()>>,
    head: Option<Position>,
}

pub enum WriterMsg {
    Append {
        event: JournalEvent,
        ack: Ack,
    },
    Linger,
    Appended {
        result: Result<Vec<Position>, JournalError>,
        acks: Vec<Ack>,
    },
    /// Answers once everything handed in so far has been appended (or refused).
    Flush(RpcReplyPort<()>),
    /// The last position this writer committed, if any.
    Head(RpcReplyPort<Option<Position>>),
}

impl Actor for JournalWriter {
    type Msg = WriterMsg;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(&self, _: ActorRef<WriterMsg>, args: WriterArgs) -> Result<WriterState, ActorProcessingErr> {
        Ok(WriterState {
            journal: args.journal,
            projector: args.projector,
            batches: GroupCommit::new(args.max_batch),
            linger: args.linger,
            timer_armed: false,
            flush_waiters: Vec::new(),
            head: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WriterMsg>,
        message: WriterMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WriterMsg::Append { event, ack } => {
                let full = state.batches.push(event, ack);
                if full || state.linger.is_zero() {
                    state.send_batch(&myself);
                } else if !state.timer_armed {
                    state.timer_armed = true;
                    myself.send_after(state.linger, || WriterMsg::Linger);
                }
            }
            WriterMsg::Linger => {
                state.timer_armed = false;
                state.send_batch(&myself);
            }
            WriterMsg::Appended { result, acks } => {
                state.batches.finished();
                match result {
                    Ok(positions) => {
                        state.head = positions.last().copied().or(state.head);
                        for (ack, position) in acks.into_iter().zip(positions) {
                            ack(Ok(position));
                        }
                        let _ = state.projector.cast(ProjectorMsg::Wake);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, events = acks.len(), "journal append failed; reservations rolled back");
                        for ack in acks {
                            ack(Err(AppendFailed));
                        }
                    }
                }
                state.send_batch(&myself);
                if state.batches.is_idle() {
                    for waiter in state.flush_waiters.drain(..) {
                        let _ = waiter.send(());
                    }
                }
            }
            WriterMsg::Flush(reply) => {
                if state.batches.is_idle() {
                    let _ = reply.send(());
                } else {
                    state.flush_waiters.push(reply);
                    state.send_batch(&myself);
                }
            }
            WriterMsg::Head(reply) => {
                let _ = reply.send(state.head);
            }
        }
        Ok(())
    }
}

impl WriterState {
    fn send_batch(&mut self, myself: &ActorRef<WriterMsg>) {
        let Some(batch) = self.batches.next_batch() else { return };
        let (events, acks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let journal = Arc::clone(&self.journal);
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = journal.append(events).await;
            let _ = myself.cast(WriterMsg::Appended { result, acks });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderId, ProductId, Quantity, Reservation, Timestamp, UserId};

    fn event() -> JournalEvent {
        JournalEvent::Reserved(Reservation {
            order_id: OrderId::generate(),
            product_id: ProductId::try_from(1).unwrap(),
            user_id: UserId::try_from(1).unwrap(),
            quantity: Quantity::try_from(1).unwrap(),
            idempotency_key: None,
            reserved_at: Timestamp::from_millis(0),
            pay_before: Timestamp::from_millis(1),
        })
    }

    #[test]
    fn one_batch_in_flight_and_the_next_fills_meanwhile() {
        let mut commits = GroupCommit::new(3);
        assert!(!commits.push(event(), 1));
        assert_eq!(commits.next_batch().map(|b| b.len()), Some(1));
        for ack in 2..=5 {
            assert!(!commits.push(event(), ack), "nothing is sent while a batch is in flight");
        }
        assert!(commits.next_batch().is_none());
        commits.finished();
        let batch: Vec<i32> = commits.next_batch().unwrap().into_iter().map(|(_, ack)| ack).collect();
        assert_eq!(batch, vec![2, 3, 4], "batches keep arrival order and stop at the maximum");
        commits.finished();
        assert_eq!(commits.next_batch().map(|b| b.len()), Some(1));
        commits.finished();
        assert!(commits.is_idle());
    }

    #[test]
    fn a_full_batch_asks_to_be_sent() {
        let mut commits = GroupCommit::new(2);
        assert!(!commits.push(event(), ()));
        assert!(commits.push(event(), ()));
    }
}

//! The JournalWriter actor: group commit. Shards hand it one reservation at a time; it appends them to the journal
//! many per transaction and tells each shard the outcome. One batch is in flight at a time, so positions are
//! handed out in commit order; while it is in flight the next batch fills, which is what makes batches large
//! exactly when load is high. A batch is sent when it is full, when the linger timer fires, or — with a zero
//! linger — as soon as the previous one is done.
//!
//! A failed append rolls its reservations back in memory, but it may have landed in part (or whole, if only the
//! answer was lost). So the writer owes the journal a void for each event of a failed batch and puts those voids
//! at the head of the next batch: no later reservation is acknowledged before they are durable, and readers of
//! the journal drop what they void.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::order_projector::ProjectorMsg;
use crate::domain::{JournalEvent, OrderId, Position};
use crate::persistence::{Journal, JournalError};

/// The journal did not record the event; nothing of it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendFailed;

/// What became of one appended reservation: its position, or `AppendFailed`.
pub type Outcome = (OrderId, Result<Position, AppendFailed>);

/// Whoever hands events in and waits to hear about them. It is told once per batch about all of its events, in
/// order, so a busy shard gets one message per commit rather than one per reservation.
pub trait Recipient: Send + Sync {
    fn acknowledge(&self, outcomes: Vec<Outcome>);
}

/// Whom to tell about an event, and which order it is.
pub struct Ack {
    pub to: Arc<dyn Recipient>,
    pub order_id: OrderId,
}

/// Tells every recipient in `acks` the results meant for it, in one call each.
fn acknowledge(acks: Vec<Ack>, results: impl Iterator<Item = Result<Position, AppendFailed>>) {
    let mut recipients: Vec<(Arc<dyn Recipient>, Vec<Outcome>)> = Vec::new();
    for (Ack { to, order_id }, result) in acks.into_iter().zip(results) {
        match recipients.iter_mut().find(|(known, _)| Arc::ptr_eq(known, &to)) {
            Some((_, outcomes)) => outcomes.push((order_id, result)),
            None => recipients.push((to, vec![(order_id, result)])),
        }
    }
    for (to, outcomes) in recipients {
        to.acknowledge(outcomes);
    }
}

/// Batching decisions, apart from the actor so they can be tested alone.
pub struct GroupCommit<A> {
    pending: Vec<(JournalEvent, A)>,
    /// Voids of the events of failed batches: they lead the next batch, so that for every product whatever a
    /// failed append may have left in the journal is cancelled before anything newer is acknowledged.
    owed: Vec<JournalEvent>,
    in_flight: bool,
    max_batch: usize,
}

/// One append: the owed voids first (nobody waits for them), then the events whose acks follow in order.
pub struct Batch<A> {
    pub events: Vec<JournalEvent>,
    pub acks: Vec<A>,
}

impl<A> GroupCommit<A> {
    pub fn new(max_batch: usize) -> Self {
        Self { pending: Vec::new(), owed: Vec::new(), in_flight: false, max_batch: max_batch.max(1) }
    }

    /// Queues an event; true when a full batch is waiting and none is in flight.
    pub fn push(&mut self, event: JournalEvent, ack: A) -> bool {
        self.pending.push((event, ack));
        !self.in_flight && self.pending.len() >= self.max_batch
    }

    /// The next batch to send, if none is in flight and any event waits. Owed voids ride along with the next
    /// events; on their own they wait, since nothing can be acknowledged before them anyway.
    pub fn next_batch(&mut self) -> Option<Batch<A>> {
        if self.in_flight || self.pending.is_empty() {
            return None;
        }
        self.in_flight = true;
        let rest = self.pending.split_off(self.pending.len().min(self.max_batch));
        let taken = std::mem::replace(&mut self.pending, rest);
        let mut events = std::mem::take(&mut self.owed);
        let mut acks = Vec::with_capacity(taken.len());
        events.reserve(taken.len());
        for (event, ack) in taken {
            events.push(event);
            acks.push(ack);
        }
        Some(Batch { events, acks })
    }

    pub fn succeeded(&mut self) {
        self.in_flight = false;
    }

    /// The batch in flight failed: `undo` (its events' voids) is owed to the journal.
    pub fn failed(&mut self, undo: Vec<JournalEvent>) {
        self.in_flight = false;
        self.owed.splice(0..0, undo);
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
}

pub enum WriterMsg {
    Append {
        event: JournalEvent,
        ack: Ack,
    },
    Linger,
    Appended {
        result: Result<Vec<Position>, (JournalError, Vec<JournalEvent>)>,
        acks: Vec<Ack>,
    },
    /// Answers once everything handed in so far has been appended (or refused).
    Flush(RpcReplyPort<()>),
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
                match result {
                    Ok(positions) => {
                        state.batches.succeeded();
                        let events = positions.len() as u64;
                        let voids = positions.len() - acks.len();
                        acknowledge(acks, positions.into_iter().skip(voids).map(Ok));
                        let _ = state.projector.cast(ProjectorMsg::Committed { events });
                    }
                    Err((err, undo)) => {
                        tracing::warn!(error = %err, events = acks.len(), "journal append failed; reservations rolled back");
                        state.batches.failed(undo);
                        acknowledge(acks, std::iter::repeat(Err(AppendFailed)));
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
        }
        Ok(())
    }
}

impl WriterState {
    fn send_batch(&mut self, myself: &ActorRef<WriterMsg>) {
        let Some(Batch { events, acks }) = self.batches.next_batch() else { return };
        let journal = Arc::clone(&self.journal);
        let myself = myself.clone();
        tokio::spawn(async move {
            let undo: Vec<JournalEvent> = events.iter().map(JournalEvent::undo).collect();
            let result = journal.append(events).await.map_err(|err| (err, undo));
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
        assert_eq!(commits.next_batch().map(|b| b.events.len()), Some(1));
        for ack in 2..=5 {
            assert!(!commits.push(event(), ack), "nothing is sent while a batch is in flight");
        }
        assert!(commits.next_batch().is_none());
        commits.succeeded();
        assert_eq!(
            commits.next_batch().unwrap().acks,
            vec![2, 3, 4],
            "batches keep arrival order and stop at the maximum"
        );
        commits.succeeded();
        assert_eq!(commits.next_batch().map(|b| b.acks.len()), Some(1));
        commits.succeeded();
        assert!(commits.is_idle());
    }

    #[test]
    fn a_failed_batch_is_voided_ahead_of_everything_after_it() {
        let mut commits = GroupCommit::new(10);
        commits.push(event(), 1);
        let failed = commits.next_batch().unwrap();
        commits.push(event(), 2);
        commits.failed(failed.events.iter().map(JournalEvent::undo).collect());
        assert!(!commits.is_idle(), "the newer event still waits");
        let next = commits.next_batch().unwrap();
        assert_eq!(next.events.len() - next.acks.len(), 1);
        assert_eq!(next.acks, vec![2]);
        let JournalEvent::Reserved(reserved) = &failed.events[0] else { panic!("a reservation was sent") };
        assert!(matches!(next.events[0], JournalEvent::Voided(v) if v.order_id == reserved.order_id));

        commits.failed(next.events.iter().map(JournalEvent::undo).collect());
        assert!(commits.is_idle(), "owed voids alone do not keep a flush waiting");
        assert!(commits.next_batch().is_none(), "owed voids wait for the next event");
        commits.push(event(), 3);
        let retry = commits.next_batch().unwrap();
        assert_eq!(retry.events.len() - retry.acks.len(), 2, "both voids are owed again, the first one still first");
        assert!(matches!(retry.events[0], JournalEvent::Voided(v) if v.order_id == reserved.order_id));
    }

    /// Writes down every call it gets.
    #[derive(Default)]
    struct Listener(std::sync::Mutex<Vec<Vec<Outcome>>>);

    impl Recipient for Listener {
        fn acknowledge(&self, outcomes: Vec<Outcome>) {
            self.0.lock().unwrap().push(outcomes);
        }
    }

    #[test]
    fn each_recipient_hears_once_per_batch_about_its_own_events_in_order() {
        let (first, second) = (Arc::new(Listener::default()), Arc::new(Listener::default()));
        let orders: Vec<OrderId> = (0..4).map(|_| OrderId::generate()).collect();
        let to = [&first, &second, &first, &first];
        let acks =
            orders.iter().zip(to).map(|(&order_id, to)| Ack { to: Arc::clone(to) as Arc<dyn Recipient>, order_id });
        acknowledge(acks.collect(), (1..=4).map(|p| Ok(Position::new(p))));

        let at = |p| Ok(Position::new(p));
        assert_eq!(*first.0.lock().unwrap(), vec![vec![(orders[0], at(1)), (orders[2], at(3)), (orders[3], at(4))]]);
        assert_eq!(*second.0.lock().unwrap(), vec![vec![(orders[1], at(2))]]);
    }

    #[test]
    fn a_full_batch_asks_to_be_sent() {
        let mut commits = GroupCommit::new(2);
        assert!(!commits.push(event(), ()));
        assert!(commits.push(event(), ()));
    }
}

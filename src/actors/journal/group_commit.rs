//! Group commit's batching decisions, apart from the committer so they can be tested alone. One batch is in flight
//! at a time, so positions are handed out in commit order; while it is in flight the next batch fills, which is
//! what makes batches large exactly when load is high.
//!
//! A failed append rolls its reservations back in memory, but it may have landed in part (or whole, if only the
//! answer was lost). So the writer owes the journal a void for each event of a failed batch and puts those voids at
//! the head of the next batch: no later reservation is acknowledged before they are durable, and readers of the
//! journal drop what they void. (A step of an order is undone the same way, by a revocation.) Before a flush is
//! answered they are written on their own too (`settle_owed`), since a flush is how a recovery waits until the
//! journal holds a product's whole history.

use crate::domain::JournalEvent;

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
    /// Batches of at most `max_batch` events, the first of them led by `owed` voids left by an earlier writer.
    pub fn new(max_batch: usize, owed: Vec<JournalEvent>) -> Self {
        Self { pending: Vec::new(), owed, in_flight: false, max_batch: max_batch.max(1) }
    }

    pub fn push(&mut self, event: JournalEvent, ack: A) {
        self.pending.push((event, ack));
    }

    /// A full batch is waiting and none is in flight.
    pub fn is_full(&self) -> bool {
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

    /// The owed undos on their own, when nothing else is pending or in flight to carry them.
    pub fn settle_owed(&mut self) -> Option<Batch<A>> {
        if !self.is_idle() || self.owed.is_empty() {
            return None;
        }
        self.in_flight = true;
        Some(Batch { events: std::mem::take(&mut self.owed), acks: Vec::new() })
    }

    pub fn is_idle(&self) -> bool {
        !self.in_flight && self.pending.is_empty()
    }

    /// Gives up: the acks of the events never sent, to be refused, and the voids still owed to the journal.
    pub fn abandon(self) -> (Vec<A>, Vec<JournalEvent>) {
        (self.pending.into_iter().map(|(_, ack)| ack).collect(), self.owed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{OrderId, ProductId, Quantity, Reservation, Timestamp, UserId};

    pub(crate) fn event() -> JournalEvent {
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
        let mut commits = GroupCommit::new(3, Vec::new());
        commits.push(event(), 1);
        assert!(!commits.is_full());
        assert_eq!(commits.next_batch().map(|b| b.events.len()), Some(1));
        for ack in 2..=5 {
            commits.push(event(), ack);
            assert!(!commits.is_full(), "nothing is sent while a batch is in flight");
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
        let mut commits = GroupCommit::new(10, Vec::new());
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

    #[test]
    fn owed_undos_can_be_settled_on_their_own_once_nothing_else_is_pending() {
        let mut commits = GroupCommit::new(10, Vec::new());
        commits.push(event(), 1);
        let failed = commits.next_batch().unwrap();
        commits.push(event(), 2);
        assert!(commits.settle_owed().is_none(), "nothing is owed yet");
        commits.failed(failed.events.iter().map(JournalEvent::undo).collect());
        assert!(commits.settle_owed().is_none(), "a pending event carries them");
        let carried = commits.next_batch().unwrap();
        commits.failed(carried.events.iter().map(JournalEvent::undo).collect());
        let settled = commits.settle_owed().expect("the owed undos alone");
        assert_eq!((settled.events.len(), settled.acks.len()), (2, 0));
        assert!(commits.settle_owed().is_none() && commits.next_batch().is_none(), "one batch in flight at a time");
        commits.succeeded();
        assert!(commits.settle_owed().is_none(), "paid");
    }

    #[test]
    fn a_full_batch_asks_to_be_sent() {
        let mut commits = GroupCommit::new(2, Vec::new());
        commits.push(event(), ());
        assert!(!commits.is_full());
        commits.push(event(), ());
        assert!(commits.is_full());
    }

    #[test]
    fn voids_owed_by_an_earlier_writer_lead_the_first_batch() {
        let owed = event().undo();
        let mut commits = GroupCommit::new(10, vec![owed.clone()]);
        assert!(commits.is_idle(), "owed voids alone are no work");
        commits.push(event(), 1);
        let batch = commits.next_batch().unwrap();
        assert_eq!(batch.events[0], owed);
        assert_eq!(batch.acks, vec![1]);
    }

    #[test]
    fn an_abandoned_batch_hands_back_what_it_never_sent_and_what_it_still_owes() {
        let mut commits = GroupCommit::new(1, Vec::new());
        commits.push(event(), 1);
        let failed = commits.next_batch().unwrap();
        commits.push(event(), 2);
        commits.failed(failed.events.iter().map(JournalEvent::undo).collect());
        let (refused, owed) = commits.abandon();
        assert_eq!(refused, vec![2]);
        assert_eq!(owed, failed.events.iter().map(JournalEvent::undo).collect::<Vec<_>>());
    }
}

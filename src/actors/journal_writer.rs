//! The JournalWriter actor: group commit. Shards hand it one reservation at a time, straight into its queue through
//! an `Appender` (a lock taken for a push, not a message for the actor to handle); its own thread appends them to
//! the journal many per transaction and tells each shard the outcome. One batch is in flight at a time, so
//! positions are handed out in commit order; while it is in flight the next batch fills, which is what makes
//! batches large exactly when load is high. The thread takes that next batch itself as soon as a commit is done
//! (or, with a linger, once the batch is full or the linger is over), so under load no commit waits for a wake-up.
//!
//! A failed append rolls its reservations back in memory, but it may have landed in part (or whole, if only the
//! answer was lost). So the writer owes the journal a void for each event of a failed batch and puts those voids
//! at the head of the next batch: no later reservation is acknowledged before they are durable, and readers of
//! the journal drop what they void.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
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

    pub fn is_idle(&self) -> bool {
        !self.in_flight && self.pending.is_empty()
    }
}

pub struct JournalWriter;

pub struct WriterArgs {
    pub journal: Arc<dyn Journal>,
    pub projector: ActorRef<ProjectorMsg>,
    /// The queue the actor's thread commits from, as the shards were given it.
    pub appender: Appender,
    pub linger: Duration,
}

pub struct WriterState {
    queue: Arc<Queue>,
}

pub enum WriterMsg {
    /// Answers once everything handed in so far has been appended (or refused).
    Flush(RpcReplyPort<()>),
}

/// Hands events to the journal writer. Once the writer has stopped, every append is refused at once.
#[derive(Clone)]
pub struct Appender {
    queue: Arc<Queue>,
}

impl Appender {
    /// A queue for a journal writer that commits at most `max_batch` events at a time.
    pub fn new(max_batch: usize) -> Self {
        Self { queue: Arc::new(Queue::new(max_batch)) }
    }

    /// Queues `event`; `ack` hears how its append went, unless it is refused here.
    pub fn append(&self, event: JournalEvent, ack: Ack) -> Result<(), AppendFailed> {
        self.queue.push(event, ack)
    }
}

impl Actor for JournalWriter {
    type Msg = WriterMsg;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(&self, _: ActorRef<WriterMsg>, args: WriterArgs) -> Result<WriterState, ActorProcessingErr> {
        let queue = args.appender.queue;
        let committer = Committer {
            queue: Arc::clone(&queue),
            journal: args.journal,
            projector: args.projector,
            linger: args.linger,
        };
        std::thread::Builder::new().name("journal-writer".into()).spawn(move || committer.run())?;
        Ok(WriterState { queue })
    }

    async fn handle(
        &self,
        _: ActorRef<WriterMsg>,
        message: WriterMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        let WriterMsg::Flush(reply) = message;
        state.queue.flush(reply);
        Ok(())
    }
}

/// However the actor ends, its committer finishes what was handed in and stops.
impl Drop for WriterState {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// The batches between the actor, which fills them, and its committer thread, which takes the next one itself
/// the moment the previous commit is done: under load it goes from commit to commit without sleeping, and no
/// reservation waits for a thread to be woken or a message to be handled between two commits.
struct Queue {
    pending: Mutex<Pending>,
    ready: Condvar,
}

struct Pending {
    commits: GroupCommit<Ack>,
    flush_waiters: Vec<RpcReplyPort<()>>,
    /// What the committer sleeps until, if it sleeps.
    awaits: Option<Awaited>,
    closed: bool,
}

impl Pending {
    fn has_come(&self, awaited: Awaited) -> bool {
        self.closed
            || match awaited {
                Awaited::AnyEvent => !self.commits.is_idle(),
                Awaited::FullBatch => self.commits.is_full() || !self.flush_waiters.is_empty(),
            }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaited {
    /// Idle: the first event wakes it.
    AnyEvent,
    /// Lingering: a full batch, a flush or the linger's end wakes it.
    FullBatch,
}

impl Queue {
    fn new(max_batch: usize) -> Self {
        let pending =
            Pending { commits: GroupCommit::new(max_batch), flush_waiters: Vec::new(), awaits: None, closed: false };
        Self { pending: Mutex::new(pending), ready: Condvar::new() }
    }

    /// A panic elsewhere while the lock was held leaves whole batches behind, still fit to use.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, event: JournalEvent, ack: Ack) -> Result<(), AppendFailed> {
        let mut pending = self.lock();
        if pending.closed {
            return Err(AppendFailed);
        }
        pending.commits.push(event, ack);
        self.wake_if_due(&mut pending);
        Ok(())
    }

    fn flush(&self, reply: RpcReplyPort<()>) {
        let mut pending = self.lock();
        if pending.commits.is_idle() {
            let _ = reply.send(());
        } else {
            pending.flush_waiters.push(reply);
            self.wake_if_due(&mut pending);
        }
    }

    fn close(&self) {
        let mut pending = self.lock();
        pending.closed = true;
        self.wake_if_due(&mut pending);
    }

    /// Wakes the committer if what it sleeps until has come, once: what has come stays until it runs.
    fn wake_if_due(&self, pending: &mut Pending) {
        if pending.awaits.is_some_and(|until| pending.has_come(until)) {
            pending.awaits = None;
            self.ready.notify_one();
        }
    }

    /// The committer's next batch: at once if events wait, else after sleeping until one comes (and, with a
    /// linger, until the batch is full or the linger is over). Answers flushes whenever nothing is left to do;
    /// `None` once closed and drained.
    fn next_batch(&self, linger: Duration) -> Option<Batch<Ack>> {
        let mut pending = self.lock();
        loop {
            if let Some(batch) = pending.commits.next_batch() {
                return Some(batch);
            }
            for waiter in pending.flush_waiters.drain(..) {
                let _ = waiter.send(());
            }
            if pending.closed {
                return None;
            }
            pending = self.sleep(pending, Awaited::AnyEvent, None);
            if !linger.is_zero() {
                pending = self.sleep(pending, Awaited::FullBatch, Some(linger));
            }
        }
    }

    fn sleep<'a>(
        &self,
        mut pending: MutexGuard<'a, Pending>,
        until: Awaited,
        at_most: Option<Duration>,
    ) -> MutexGuard<'a, Pending> {
        pending.awaits = Some(until);
        let asleep = |pending: &mut Pending| !pending.has_come(until);
        let mut pending = match at_most {
            None => self.ready.wait_while(pending, asleep).unwrap_or_else(PoisonError::into_inner),
            Some(at_most) => {
                self.ready.wait_timeout_while(pending, at_most, asleep).unwrap_or_else(PoisonError::into_inner).0
            }
        };
        pending.awaits = None;
        pending
    }

    /// Records how the batch in flight ended; `undo` holds its voids if it failed.
    fn settle(&self, undo: Option<Vec<JournalEvent>>) {
        let mut pending = self.lock();
        match undo {
            None => pending.commits.succeeded(),
            Some(undo) => pending.commits.failed(undo),
        }
    }
}

/// The writer's thread: appends batch after batch and tells every shard, and the projector, how each went.
struct Committer {
    queue: Arc<Queue>,
    journal: Arc<dyn Journal>,
    projector: ActorRef<ProjectorMsg>,
    linger: Duration,
}

impl Committer {
    fn run(self) {
        while let Some(Batch { events, acks }) = self.queue.next_batch(self.linger) {
            match append_guarded(self.journal.as_ref(), &events) {
                Ok(positions) => {
                    self.queue.settle(None);
                    let appended = positions.len() as u64;
                    let voids = positions.len() - acks.len();
                    acknowledge(acks, positions.into_iter().skip(voids).map(Ok));
                    let _ = self.projector.cast(ProjectorMsg::Committed { events: appended });
                }
                Err(err) => {
                    tracing::warn!(error = %err, events = acks.len(), "journal append failed; reservations rolled back");
                    self.queue.settle(Some(events.iter().map(JournalEvent::undo).collect()));
                    acknowledge(acks, std::iter::repeat(Err(AppendFailed)));
                }
            }
        }
    }
}

/// Appends `events`; a panic in the journal's code counts as a failed append, rolled back like any other, rather
/// than ending the thread that every reservation waits on.
fn append_guarded(journal: &dyn Journal, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| journal.append(events)))
        .unwrap_or_else(|_| Err(JournalError::Unavailable("the journal append panicked".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderId, ProductId, Quantity, Recorded, Reservation, Timestamp, UserId};
    use crate::persistence::{Database, Projected};

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
        commits.push(event(), ());
        assert!(!commits.is_full());
        commits.push(event(), ());
        assert!(commits.is_full());
    }

    fn ack(to: &Arc<Listener>) -> Ack {
        Ack { to: Arc::clone(to) as Arc<dyn Recipient>, order_id: OrderId::generate() }
    }

    fn flush(queue: &Queue) -> ractor::concurrency::OneshotReceiver<()> {
        let (reply, answer) = ractor::concurrency::oneshot();
        queue.flush(reply.into());
        answer
    }

    #[test]
    fn the_committer_takes_what_piled_up_during_a_commit_at_once() {
        let (queue, to) = (Queue::new(3), Arc::new(Listener::default()));
        queue.push(event(), ack(&to)).unwrap();
        let first = queue.next_batch(Duration::ZERO).unwrap();
        assert_eq!(first.acks.len(), 1);
        for _ in 0..4 {
            queue.push(event(), ack(&to)).unwrap();
        }
        queue.settle(None);
        assert_eq!(queue.next_batch(Duration::ZERO).unwrap().acks.len(), 3, "a full batch, without waiting");
        queue.settle(None);
        assert_eq!(queue.next_batch(Duration::ZERO).unwrap().acks.len(), 1);
    }

    #[test]
    fn a_flush_is_answered_once_nothing_handed_in_is_left() {
        let (queue, to) = (Queue::new(10), Arc::new(Listener::default()));
        assert_eq!(flush(&queue).try_recv(), Ok(()), "an idle writer answers at once");

        queue.push(event(), ack(&to)).unwrap();
        let mut waiting = flush(&queue);
        let batch = queue.next_batch(Duration::ZERO).unwrap();
        assert!(waiting.try_recv().is_err(), "not while its event is in flight");
        queue.settle(Some(batch.events.iter().map(JournalEvent::undo).collect()));
        queue.close();
        assert!(queue.next_batch(Duration::ZERO).is_none(), "owed voids alone are no batch");
        assert_eq!(waiting.try_recv(), Ok(()));
    }

    #[test]
    fn a_sleeping_committer_wakes_for_events_and_for_the_close() {
        let (queue, to) = (Arc::new(Queue::new(10)), Arc::new(Listener::default()));
        let committer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut sizes = Vec::new();
                while let Some(batch) = queue.next_batch(Duration::ZERO) {
                    sizes.push(batch.acks.len());
                    queue.settle(None);
                }
                sizes
            })
        };
        queue.push(event(), ack(&to)).unwrap();
        queue.close();
        assert_eq!(
            committer.join().unwrap().iter().sum::<usize>(),
            1,
            "what was handed in is appended before it stops"
        );
    }

    #[test]
    fn once_the_writer_stopped_an_append_is_refused_at_once() {
        let (appender, to) = (Appender::new(10), Arc::new(Listener::default()));
        appender.append(event(), ack(&to)).unwrap();
        appender.queue.close();
        assert_eq!(appender.append(event(), ack(&to)), Err(AppendFailed), "refused, not queued to wait forever");
        assert_eq!(appender.queue.next_batch(Duration::ZERO).map(|batch| batch.acks.len()), Some(1));
    }

    #[test]
    fn a_lingering_committer_sends_as_soon_as_the_batch_is_full() {
        // The committer sleeps, the first event wakes it, and the second usually comes before it starts to linger:
        // either way the batch goes at once. A committer that missed it would sit out the whole ten-minute linger.
        for _ in 0..200 {
            let (queue, to) = (Arc::new(Queue::new(2)), Arc::new(Listener::default()));
            let (sent, batch) = std::sync::mpsc::channel();
            std::thread::spawn({
                let queue = Arc::clone(&queue);
                move || sent.send(queue.next_batch(Duration::from_secs(600)).map(|batch| batch.acks.len()))
            });
            while queue.lock().awaits != Some(Awaited::AnyEvent) {
                std::thread::yield_now();
            }
            queue.push(event(), ack(&to)).unwrap();
            queue.push(event(), ack(&to)).unwrap();
            assert_eq!(batch.recv_timeout(Duration::from_secs(60)), Ok(Some(2)));
        }
    }

    /// Panics on every append.
    struct Panicking;

    #[async_trait::async_trait]
    impl Journal for Panicking {
        fn append(&self, _: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
            panic!("a bug in the journal")
        }

        async fn read_product(&self, _: ProductId, _: Position, _: usize) -> Result<Vec<Recorded>, JournalError> {
            Ok(Vec::new())
        }

        async fn project_next(&self, _: &Database, _: usize) -> Result<Projected, JournalError> {
            Ok(Projected::default())
        }

        async fn projection_lag(&self, _: &Database) -> Result<u64, JournalError> {
            Ok(0)
        }
    }

    #[test]
    fn a_panicking_append_is_a_failed_append() {
        assert!(matches!(append_guarded(&Panicking, &[event()]), Err(JournalError::Unavailable(_))));
    }
}

//! The journal writer's committer: a thread of its own that owns the receiving end of the writer's channel and its
//! own batch. Shards send reservations straight into the channel through an `Appender` (no actor hop); flush and
//! close are messages on the same channel, so they are seen in order with the events. The thread blocks on the
//! channel only when it has nothing to do, and after each commit takes everything that piled up meanwhile at once,
//! so under load it goes from commit to commit without sleeping.
//!
//! A committer can die (a bug outside its guarded append). Then nothing is left waiting: what it never sent is
//! refused, every event still in the channel refuses itself as the channel goes, and the `Appender` refuses every
//! append at once until the writer is restarted and connects a new committer — which first pays the voids the dead
//! one still owed.
//!
//! While traces are on, each commit has a `journal.commit` span of its own — one batch serves many purchases, so it
//! is no purchase's child — linked both ways with the `journal.append` span of every traced event it carries, which
//! records the event's position once it is durable.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ractor::RpcReplyPort;
use tracing::Span;

use super::group_commit::{Batch, GroupCommit};
use crate::domain::{JournalEvent, OrderId, Position};
use crate::metrics::JournalMetrics;
use crate::persistence::{JournalAppend, JournalError};

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

/// Whom to tell about an event, which order it is, and the event's span (disabled unless it is traced).
pub struct Ack {
    pub to: Arc<dyn Recipient>,
    pub order_id: OrderId,
    pub span: Span,
}

/// Hears, after every commit, how many events it made durable.
pub trait CommitListener: Send + Sync {
    fn committed(&self, events: u64);

    /// The commit's traced events, by order, with their spans (only while traces are on), so that the work that
    /// follows from them can join their traces.
    fn traced(&self, _events: Vec<(OrderId, Span)>) {}
}

/// What travels on the writer's channel.
enum Command {
    Append(Handed),
    /// Answered once everything sent before it has been appended (or refused).
    Flush(RpcReplyPort<()>),
    /// Finish what was handed in, then stop.
    Close,
}

/// An event on its way to the committer. Dropped undelivered — the committer died with it still in the channel —
/// it refuses itself, so no buyer waits for an answer that will never come.
struct Handed {
    parts: Option<(JournalEvent, Ack)>,
}

impl Handed {
    fn take(mut self) -> (JournalEvent, Ack) {
        self.parts.take().expect("a handed event is taken once")
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        if let Some((_, ack)) = self.parts.take() {
            ack.to.acknowledge(vec![(ack.order_id, Err(AppendFailed))]);
        }
    }
}

/// Hands events to whichever committer runs now, and refuses them at once while none does.
#[derive(Clone)]
pub struct Appender {
    line: Arc<Line>,
}

/// What outlives any one committer.
struct Line {
    sender: ArcSwap<Sender<Command>>,
    running: AtomicBool,
    /// Voids a stopped committer still owed the journal; the next one pays them first.
    owed: Mutex<Vec<JournalEvent>>,
    /// The last committer's thread, which the next one waits for, so two never append at once.
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// How a committer works and whom it tells.
pub struct CommitterConfig {
    pub journal: Arc<dyn JournalAppend>,
    pub listener: Arc<dyn CommitListener>,
    pub max_batch: usize,
    pub linger: Duration,
    /// Each commit's size and time.
    pub metrics: JournalMetrics,
}

impl Default for Appender {
    fn default() -> Self {
        Self::new()
    }
}

impl Appender {
    /// An appender with no committer yet: it refuses everything until `connect`.
    pub fn new() -> Self {
        let line = Line {
            sender: ArcSwap::from_pointee(disconnected()),
            running: AtomicBool::new(false),
            owed: Mutex::new(Vec::new()),
            thread: Mutex::new(None),
        };
        Self { line: Arc::new(line) }
    }

    /// Queues `event`; `ack` hears how its append went, unless it is refused here.
    pub fn append(&self, event: JournalEvent, ack: Ack) -> Result<(), AppendFailed> {
        let handed = Handed { parts: Some((event, ack)) };
        self.line.sender.load().send(Command::Append(handed)).map_err(|refused| {
            if let Command::Append(handed) = refused.into_inner() {
                // The caller hears of the refusal from the result, not from the ack as well.
                drop(handed.take());
            }
            AppendFailed
        })
    }

    /// Appends one event and waits until it is durable (its position) or refused — for the rare event a person
    /// waits on, such as a restock; the purchase path never waits here. A refused event is undone by the committer
    /// as any other is.
    pub async fn append_and_wait(&self, event: JournalEvent) -> Result<Position, AppendFailed> {
        let (answer, heard) = tokio::sync::oneshot::channel();
        let order_id = event.order_id();
        let to: Arc<dyn Recipient> = Arc::new(Answer(Mutex::new(Some(answer))));
        self.append(event, Ack { to, order_id, span: Span::none() })?;
        heard.await.unwrap_or(Err(AppendFailed))
    }

    /// Appends (and flushes) handed in that the committer has not taken yet.
    pub fn waiting(&self) -> usize {
        self.line.sender.load().len()
    }

    /// Whether a committer is running and takes appends.
    pub fn is_running(&self) -> bool {
        self.line.running.load(Ordering::Acquire)
    }

    /// `reply` hears once everything handed in so far has been appended or refused: at once if no committer runs.
    pub fn flush(&self, reply: RpcReplyPort<()>) {
        if let Err(refused) = self.line.sender.load().send(Command::Flush(reply)) {
            if let Command::Flush(reply) = refused.into_inner() {
                let _ = reply.send(());
            }
        }
    }

    /// Waits until everything handed in so far has been appended or refused; false if the answer was lost.
    pub async fn flushed(&self) -> bool {
        let (reply, answer) = ractor::concurrency::oneshot();
        self.flush(reply.into());
        answer.await.is_ok()
    }

    /// Asks the running committer to finish what was handed in and stop.
    pub fn close(&self) {
        let _ = self.line.sender.load().send(Command::Close);
    }

    /// Starts a committer on a new channel once the previous one has ended. `on_exit` is called on its thread
    /// when it ends, with whether it died.
    pub async fn connect(
        &self,
        config: CommitterConfig,
        on_exit: impl FnOnce(bool) + Send + 'static,
    ) -> std::io::Result<()> {
        let previous = self.line.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(previous) = previous {
            // Dead or closing: either way it is gone soon, and its debts are in `owed` once it is.
            let _ = tokio::task::spawn_blocking(move || previous.join()).await;
        }
        let (sender, commands) = crossbeam_channel::unbounded();
        let owed = std::mem::take(&mut *self.line.owed.lock().unwrap_or_else(PoisonError::into_inner));
        let committer = Committer {
            commands,
            commits: GroupCommit::new(config.max_batch, owed),
            flush_waiters: Vec::new(),
            closing: false,
            telling: Vec::new(),
            config,
            line: Arc::clone(&self.line),
            on_exit: Some(Box::new(on_exit)),
        };
        self.line.running.store(true, Ordering::Release);
        self.line.sender.store(Arc::new(sender));
        let spawned = std::thread::Builder::new().name("journal-writer".into()).spawn(move || committer.run());
        match spawned {
            Ok(thread) => {
                *self.line.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
                Ok(())
            }
            Err(err) => {
                self.line.running.store(false, Ordering::Release);
                Err(err)
            }
        }
    }
}

/// Where `append_and_wait` hears of its one event.
struct Answer(Mutex<Option<tokio::sync::oneshot::Sender<Result<Position, AppendFailed>>>>);

impl Recipient for Answer {
    fn acknowledge(&self, outcomes: Vec<Outcome>) {
        let waiting = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let (Some(waiting), Some((_, result))) = (waiting, outcomes.into_iter().next()) {
            let _ = waiting.send(result);
        }
    }
}

/// A sender whose receiver is gone: every send fails at once.
fn disconnected() -> Sender<Command> {
    crossbeam_channel::unbounded().0
}

/// The writer's thread: appends batch after batch and tells every shard, and the listener, how each went.
struct Committer {
    commands: Receiver<Command>,
    commits: GroupCommit<Ack>,
    flush_waiters: Vec<RpcReplyPort<()>>,
    closing: bool,
    /// Outcomes of the last commit not yet told, so that a committer dying while it tells them still tells them.
    telling: Vec<(Arc<dyn Recipient>, Vec<Outcome>)>,
    config: CommitterConfig,
    line: Arc<Line>,
    on_exit: Option<Box<dyn FnOnce(bool) + Send>>,
}

impl Committer {
    fn run(mut self) {
        loop {
            if self.commits.is_idle() {
                // One try at the undos still owed before a flush is answered: a recovery flushes before it reads.
                if !self.flush_waiters.is_empty() {
                    if let Some(owed) = self.commits.settle_owed() {
                        self.commit(owed);
                    }
                }
                for waiter in self.flush_waiters.drain(..) {
                    let _ = waiter.send(());
                }
                if self.closing {
                    return;
                }
                match self.commands.recv() {
                    Ok(command) => self.take(command),
                    Err(_) => return,
                }
                self.linger();
            }
            while let Ok(command) = self.commands.try_recv() {
                self.take(command);
            }
            if let Some(batch) = self.commits.next_batch() {
                self.commit(batch);
            }
        }
    }

    fn take(&mut self, command: Command) {
        match command {
            Command::Append(handed) => {
                let (event, ack) = handed.take();
                self.commits.push(event, ack);
            }
            Command::Flush(reply) => self.flush_waiters.push(reply),
            Command::Close => self.closing = true,
        }
    }

    /// With a linger, waits for company for the first event: until the batch is full, a flush or close comes, or
    /// the linger is over.
    fn linger(&mut self) {
        if self.config.linger.is_zero() {
            return;
        }
        let until = Instant::now() + self.config.linger;
        while !self.commits.is_full() && self.flush_waiters.is_empty() && !self.closing {
            match self.commands.recv_deadline(until) {
                Ok(command) => self.take(command),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn commit(&mut self, Batch { events, acks }: Batch<Ack>) {
        let started = Instant::now();
        let batch = batch_span(events.len(), &acks);
        let _in_batch = batch.enter();
        match append_guarded(self.config.journal.as_ref(), &events) {
            Ok(positions) => {
                self.config.metrics.committed(events.len(), started.elapsed());
                self.commits.succeeded();
                let appended = positions.len() as u64;
                let voids = positions.len() - acks.len();
                let traced = traced(&batch, &acks, &positions[voids..]);
                self.tell(acks, positions.into_iter().skip(voids).map(Ok));
                self.config.listener.committed(appended);
                if !traced.is_empty() {
                    self.config.listener.traced(traced);
                }
            }
            Err(err) => {
                self.config.metrics.failed(events.len(), started.elapsed());
                tracing::warn!(error = %err, events = acks.len(), "journal append failed; reservations rolled back");
                self.commits.failed(events.iter().map(JournalEvent::undo).collect());
                self.tell(acks, std::iter::repeat(Err(AppendFailed)));
            }
        }
    }

    /// Tells every recipient in `acks` the results meant for it, in one call each.
    fn tell(&mut self, acks: Vec<Ack>, results: impl Iterator<Item = Result<Position, AppendFailed>>) {
        self.telling = by_recipient(acks, results);
        while let Some((to, outcomes)) = self.telling.pop() {
            to.acknowledge(outcomes);
        }
    }
}

/// However the committer ends, nothing is left waiting on it, and what it owed is passed on.
impl Drop for Committer {
    fn drop(&mut self) {
        let died = std::thread::panicking();
        self.line.running.store(false, Ordering::Release);
        self.line.sender.store(Arc::new(disconnected()));
        for (to, outcomes) in std::mem::take(&mut self.telling) {
            to.acknowledge(outcomes);
        }
        let commits = std::mem::replace(&mut self.commits, GroupCommit::new(1, Vec::new()));
        let (never_sent, owed) = commits.abandon();
        for (to, outcomes) in by_recipient(never_sent, std::iter::repeat(Err(AppendFailed))) {
            to.acknowledge(outcomes);
        }
        // What is still in the channel refuses itself as it is dropped here, or with the channel just after.
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Flush(reply) = command {
                self.flush_waiters.push(reply);
            }
        }
        for waiter in self.flush_waiters.drain(..) {
            let _ = waiter.send(());
        }
        self.line.owed.lock().unwrap_or_else(PoisonError::into_inner).extend(owed);
        if died {
            tracing::error!("the journal committer died; appends are refused until the writer restarts");
        }
        if let Some(on_exit) = self.on_exit.take() {
            on_exit(died);
        }
    }
}

/// A commit's span, linked both ways with the span of every traced event in it.
fn batch_span(events: usize, acks: &[Ack]) -> Span {
    let batch = tracing::debug_span!("journal.commit", journal.events = events as i64);
    if !batch.is_disabled() {
        for ack in acks.iter().filter(|ack| !ack.span.is_disabled()) {
            batch.follows_from(&ack.span);
            ack.span.follows_from(&batch);
        }
    }
    batch
}

/// The committed events that are traced, their positions recorded on their spans (nothing while traces are off).
fn traced(batch: &Span, acks: &[Ack], positions: &[Position]) -> Vec<(OrderId, Span)> {
    if batch.is_disabled() {
        return Vec::new();
    }
    acks.iter()
        .zip(positions)
        .filter(|(ack, _)| !ack.span.is_disabled())
        .map(|(ack, position)| {
            ack.span.record("journal.position", position.get());
            (ack.order_id, ack.span.clone())
        })
        .collect()
}

/// The outcomes of `acks`, grouped by recipient in order.
fn by_recipient(
    acks: Vec<Ack>,
    results: impl Iterator<Item = Result<Position, AppendFailed>>,
) -> Vec<(Arc<dyn Recipient>, Vec<Outcome>)> {
    let mut recipients: Vec<(Arc<dyn Recipient>, Vec<Outcome>)> = Vec::new();
    for (Ack { to, order_id, .. }, result) in acks.into_iter().zip(results) {
        match recipients.iter_mut().find(|(known, _)| Arc::ptr_eq(known, &to)) {
            Some((_, outcomes)) => outcomes.push((order_id, result)),
            None => recipients.push((to, vec![(order_id, result)])),
        }
    }
    recipients
}

/// Appends `events`; a panic in the journal's code counts as a failed append, rolled back like any other, rather
/// than ending the thread that every reservation waits on.
fn append_guarded(journal: &dyn JournalAppend, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| journal.append(events)))
        .unwrap_or_else(|_| Err(JournalError::Unavailable("the journal append panicked".into())))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::actors::journal::group_commit::tests::event;

    /// Writes down every outcome it hears, and can be made to panic when it hears one.
    #[derive(Default)]
    struct Listener {
        heard: Mutex<Vec<Vec<Outcome>>>,
        panics: bool,
    }

    impl Recipient for Listener {
        fn acknowledge(&self, outcomes: Vec<Outcome>) {
            self.heard.lock().unwrap().push(outcomes);
            assert!(!self.panics, "a recipient with a bug");
        }
    }

    impl Listener {
        fn outcomes(&self) -> Vec<Result<Position, AppendFailed>> {
            self.heard.lock().unwrap().iter().flatten().map(|(_, result)| *result).collect()
        }
    }

    fn ack(to: &Arc<Listener>) -> Ack {
        Ack { to: Arc::clone(to) as Arc<dyn Recipient>, order_id: OrderId::generate(), span: Span::none() }
    }

    /// A journal that records each batch's size, answers with positions, and can be held before an append, made to
    /// fail, or made to panic.
    #[derive(Default)]
    struct Journal {
        batches: Mutex<Vec<Vec<JournalEvent>>>,
        hold: Mutex<Option<mpsc::Receiver<()>>>,
        fail: AtomicBool,
        panics: bool,
    }

    impl JournalAppend for Journal {
        fn append(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
            let held = self.hold.lock().unwrap().take();
            if let Some(release) = held {
                let _ = release.recv();
            }
            assert!(!self.panics, "a bug in the journal");
            if self.fail.load(Ordering::SeqCst) {
                return Err(JournalError::Unavailable("disk on fire".into()));
            }
            let mut batches = self.batches.lock().unwrap();
            let first = batches.iter().map(Vec::len).sum::<usize>() as i64 + 1;
            batches.push(events.to_vec());
            Ok((first..first + events.len() as i64).map(Position::new).collect())
        }
    }

    impl Journal {
        fn sizes(&self) -> Vec<usize> {
            self.batches.lock().unwrap().iter().map(Vec::len).collect()
        }
    }

    /// Counts the events it is told were committed.
    #[derive(Default)]
    struct Commits(Mutex<u64>);

    impl CommitListener for Commits {
        fn committed(&self, events: u64) {
            *self.0.lock().unwrap() += events;
        }
    }

    fn metrics() -> JournalMetrics {
        crate::metrics::Metrics::new().expect("metrics").journal
    }

    struct Running {
        appender: Appender,
        journal: Arc<Journal>,
        commits: Arc<Commits>,
        exited: mpsc::Receiver<bool>,
    }

    async fn start(journal: Journal, max_batch: usize, linger: Duration) -> Running {
        let (journal, commits, appender) = (Arc::new(journal), Arc::new(Commits::default()), Appender::new());
        let (exit, exited) = mpsc::channel();
        let config = CommitterConfig {
            journal: journal.clone(),
            listener: commits.clone(),
            max_batch,
            linger,
            metrics: metrics(),
        };
        appender.connect(config, move |died| exit.send(died).unwrap()).await.unwrap();
        Running { appender, journal, commits, exited }
    }

    impl Running {
        /// Connects a new committer to the same appender and journal, as a restarted writer does.
        async fn restart(&self) {
            let config = CommitterConfig {
                journal: self.journal.clone(),
                listener: self.commits.clone(),
                max_batch: 10,
                linger: Duration::ZERO,
                metrics: metrics(),
            };
            self.appender.connect(config, |_| {}).await.unwrap();
        }
    }

    #[test]
    fn each_recipient_hears_once_per_batch_about_its_own_events_in_order() {
        let (first, second) = (Arc::new(Listener::default()), Arc::new(Listener::default()));
        let acks: Vec<Ack> = [&first, &second, &first, &first].into_iter().map(ack).collect();
        let orders: Vec<OrderId> = acks.iter().map(|ack| ack.order_id).collect();
        for (to, outcomes) in by_recipient(acks, (1..=4).map(|p| Ok(Position::new(p)))) {
            to.acknowledge(outcomes);
        }
        let at = |p| Ok(Position::new(p));
        assert_eq!(
            *first.heard.lock().unwrap(),
            vec![vec![(orders[0], at(1)), (orders[2], at(3)), (orders[3], at(4))]]
        );
        assert_eq!(*second.heard.lock().unwrap(), vec![vec![(orders[1], at(2))]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_committer_takes_what_piled_up_during_a_commit_at_once() {
        let (release, held) = mpsc::channel();
        let journal = Journal { hold: Mutex::new(Some(held)), ..Journal::default() };
        let (running, to) = (start(journal, 3, Duration::ZERO).await, Arc::new(Listener::default()));
        running.appender.append(event(), ack(&to)).unwrap();
        while running.journal.hold.lock().unwrap().is_some() {
            std::thread::yield_now();
        }
        for _ in 0..4 {
            running.appender.append(event(), ack(&to)).unwrap();
        }
        release.send(()).unwrap();
        assert!(running.appender.flushed().await, "a flush is always answered");
        assert_eq!(running.journal.sizes(), vec![1, 3, 1], "a full batch at once, then the rest");
        assert_eq!(*running.commits.0.lock().unwrap(), 5);
        assert!(to.outcomes().iter().all(Result::is_ok));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_is_answered_once_nothing_handed_in_is_left() {
        let (release, held) = mpsc::channel();
        let journal = Journal { hold: Mutex::new(Some(held)), ..Journal::default() };
        let (running, to) = (start(journal, 10, Duration::ZERO).await, Arc::new(Listener::default()));
        assert!(running.appender.flushed().await, "a flush is always answered");
        running.appender.append(event(), ack(&to)).unwrap();
        let (reply, mut answer) = ractor::concurrency::oneshot();
        running.appender.flush(reply.into());
        while running.journal.hold.lock().unwrap().is_some() {
            std::thread::yield_now();
        }
        assert!(answer.try_recv().is_err(), "not while its event is in flight");
        release.send(()).unwrap();
        answer.await.unwrap();
        assert_eq!(to.outcomes(), vec![Ok(Position::new(1))]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_committer_sleeps_on_its_channel_and_wakes_for_events_and_for_the_close() {
        let (running, to) = (start(Journal::default(), 10, Duration::ZERO).await, Arc::new(Listener::default()));
        running.appender.append(event(), ack(&to)).unwrap();
        assert!(running.appender.flushed().await, "a flush is always answered");
        // Answering that flush was the last thing the committer did before blocking on its channel for the next
        // command: it has nothing else to do. Give it the time to get there.
        tokio::time::sleep(Duration::from_millis(50)).await;
        running.appender.append(event(), ack(&to)).unwrap();
        running.appender.close();
        assert_eq!(running.exited.recv_timeout(Duration::from_secs(10)), Ok(false), "it stops when closed");
        assert_eq!(running.journal.sizes(), vec![1, 1], "the event sent to the sleeping committer was appended");
        assert_eq!(to.outcomes().len(), 2);
        assert!(!running.appender.is_running());
        assert_eq!(running.appender.append(event(), ack(&to)), Err(AppendFailed), "refused, not queued forever");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lingering_committer_sends_as_soon_as_the_batch_is_full() {
        // With a ten-minute linger, only a full batch can send the first event before the test times out.
        let (running, to) =
            (start(Journal::default(), 2, Duration::from_secs(600)).await, Arc::new(Listener::default()));
        running.appender.append(event(), ack(&to)).unwrap();
        running.appender.append(event(), ack(&to)).unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(30), async {
            while running.journal.sizes().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert!(sent.await.is_ok(), "the full batch did not wait out the linger");
        assert_eq!(running.journal.sizes(), vec![2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_append_is_a_failed_append_and_the_committer_goes_on() {
        let journal = Journal { panics: true, ..Journal::default() };
        let (running, to) = (start(journal, 10, Duration::ZERO).await, Arc::new(Listener::default()));
        running.appender.append(event(), ack(&to)).unwrap();
        assert!(running.appender.flushed().await, "a flush is always answered");
        assert_eq!(to.outcomes(), vec![Err(AppendFailed)]);
        assert!(running.appender.is_running());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_committer_that_dies_leaves_nothing_waiting_and_passes_its_debts_on() {
        let journal = Journal { fail: AtomicBool::new(true), ..Journal::default() };
        let (running, to) = (start(journal, 1, Duration::ZERO).await, Arc::new(Listener::default()));
        // A failed append leaves a void owed.
        running.appender.append(event(), ack(&to)).unwrap();
        assert!(running.appender.flushed().await, "a flush is always answered");
        assert_eq!(to.outcomes(), vec![Err(AppendFailed)]);
        running.journal.fail.store(false, Ordering::SeqCst);

        // A recipient with a bug kills the committer outside its guarded append, in the middle of telling a batch.
        let (buggy, bystander) =
            (Arc::new(Listener { panics: true, ..Listener::default() }), Arc::new(Listener::default()));
        let mut bystanders = Vec::new();
        running.appender.append(event(), ack(&buggy)).unwrap();
        for _ in 0..20 {
            let ack = ack(&bystander);
            bystanders.push(ack.order_id);
            if running.appender.append(event(), ack).is_err() {
                bystanders.pop();
            }
        }
        assert_eq!(running.exited.recv_timeout(Duration::from_secs(10)), Ok(true), "the committer died");
        assert!(!running.appender.is_running());
        assert_eq!(running.appender.append(event(), ack(&bystander)), Err(AppendFailed), "refused at once");

        // Every bystander heard exactly once: appended or refused, nobody left waiting.
        let heard: Vec<OrderId> = bystander.heard.lock().unwrap().iter().flatten().map(|(order, _)| *order).collect();
        assert_eq!(heard.len(), bystanders.len());
        assert!(bystanders.iter().all(|order| heard.contains(order)));
        let appended = running.journal.sizes().iter().sum::<usize>();
        let told_ok = bystander.outcomes().iter().filter(|result| result.is_ok()).count() + 1;
        assert_eq!(appended, told_ok + 1, "one void, then exactly the events whose buyers were told they landed");

        // The next committer pays the dead one's debts first: here none remain, since the void went out with the
        // first batch after the failure; a committer that dies right after a failure hands its voids on.
        running.restart().await;
        running.appender.append(event(), ack(&to)).unwrap();
        assert!(running.appender.flushed().await, "a flush is always answered");
        assert_eq!(to.outcomes().last(), Some(&Ok(Position::new(appended as i64 + 1))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn voids_owed_when_a_committer_stops_lead_the_next_committers_first_batch() {
        let journal = Journal { fail: AtomicBool::new(true), ..Journal::default() };
        let (running, to) = (start(journal, 10, Duration::ZERO).await, Arc::new(Listener::default()));
        running.appender.append(event(), ack(&to)).unwrap();
        assert!(running.appender.flushed().await, "a flush is always answered");
        running.appender.close();
        assert_eq!(running.exited.recv_timeout(Duration::from_secs(10)), Ok(false));
        running.journal.fail.store(false, Ordering::SeqCst);

        running.restart().await;
        running.appender.append(event(), ack(&to)).unwrap();
        assert!(running.appender.flushed().await, "a flush is always answered");
        let batches = running.journal.batches.lock().unwrap();
        assert_eq!(batches.len(), 1);
        assert!(matches!(batches[0][0], JournalEvent::Voided(_)), "the owed void goes first");
        assert!(matches!(batches[0][1], JournalEvent::Reserved(_)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_is_answered_only_after_a_try_at_the_undos_still_owed() {
        let journal = Journal { fail: AtomicBool::new(true), ..Journal::default() };
        let (running, to) = (start(journal, 10, Duration::ZERO).await, Arc::new(Listener::default()));
        running.appender.append(event(), ack(&to)).unwrap();
        assert!(running.appender.flushed().await, "a flush is always answered");
        assert_eq!(to.outcomes(), vec![Err(AppendFailed)]);
        running.journal.fail.store(false, Ordering::SeqCst);

        // A recovery flushes and then reads the journal: the void of the failed append must be there by then.
        assert!(running.appender.flushed().await, "a flush is always answered");
        let batches = running.journal.batches.lock().unwrap();
        assert_eq!(batches.len(), 1, "{batches:?}");
        assert!(matches!(batches[0][..], [JournalEvent::Voided(_)]), "the owed void alone: {batches:?}");
    }
}

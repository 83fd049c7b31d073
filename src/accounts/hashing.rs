//! Password hashing on threads of its own. An argon2 check costs tens of milliseconds of a core on purpose, so a
//! flood of logins run where purchases run would take the cores that sell: hashing gets a small pool (a quarter of
//! the cores by default) of threads that run only on what the others leave (`SCHED_IDLE`), and a bounded queue. A login takes its
//! place in the queue before it does anything else (before its account is even looked up), and one that finds the
//! queue full is refused at once rather than waiting behind the flood.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("every password check the service can queue is taken")]
    Busy,
    #[error("the password check failed")]
    Failed,
}

/// A fixed set of hashing threads behind a bounded queue; dropping it lets the threads finish what is queued and end.
pub struct HashPool {
    jobs: Sender<Job>,
    /// Checks admitted and not yet finished (running or queued), at most `capacity`.
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

/// A place in the pool, taken before the work it is for is known (a login takes one before it looks up the account);
/// given back when the work is done or the place dropped unused.
pub struct Place {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashPool {
    /// `threads` hashing threads (at least one) and room for `queue` checks waiting for one.
    pub fn new(threads: usize, queue: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, queued) = crossbeam_channel::unbounded::<Job>();
        for n in 0..threads {
            let queued = queued.clone();
            std::thread::Builder::new().name(format!("seckill-hash-{n}")).spawn(move || {
                yield_to_other_threads();
                for job in queued {
                    // A check that panics drops its reply (its caller is told `Failed`); the thread carries on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        }
        Ok(Self { jobs, admitted: Arc::new(AtomicUsize::new(0)), capacity: threads + queue })
    }

    /// A place for one check, or `Busy` at once if every place is taken.
    pub fn admit(&self) -> Result<Place, HashError> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |admitted| {
                (admitted < self.capacity).then_some(admitted + 1)
            })
            .map_err(|_| HashError::Busy)?;
        Ok(Place { admitted: Arc::clone(&self.admitted) })
    }

    /// Queues `work` for a hashing thread in `place`; the future is its result.
    pub fn run_in<T, F>(&self, place: Place, work: F) -> impl Future<Output = Result<T, HashError>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = work();
            // The place is given back before the answer goes out: a thread that runs only on what others leave may
            // wait a long time between two instructions, and the caller, once answered, may ask again at once.
            drop(place);
            let _ = reply.send(result);
        });
        let queued = self.jobs.send(job).map_err(|_| HashError::Failed);
        async move {
            queued?;
            answer.await.map_err(|_| HashError::Failed)
        }
    }

    /// Takes a place and queues `work` in it at once (or refuses it, if every place is taken).
    pub fn run<T, F>(&self, work: F) -> impl Future<Output = Result<T, HashError>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let queued = self.admit().map(|place| self.run_in(place, work));
        async move { queued?.await }
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class: it runs on what the other threads leave, and any of them
/// that wakes takes its core at once. Best effort: a system that refuses leaves the thread as it was.
fn yield_to_other_threads() {
    let idle = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` with pid 0 changes only the calling thread's policy; `idle` outlives the call.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Arc, Barrier};

    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_hashing_thread() {
        let pool = HashPool::new(1, 4).unwrap();
        let name = pool.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert_eq!(name.as_deref(), Some("seckill-hash-0"));
    }

    #[tokio::test]
    async fn past_the_queue_a_check_is_refused_at_once() {
        let pool = HashPool::new(1, 2).unwrap();
        let gate = Arc::new(Barrier::new(2));
        let (started, taken) = mpsc::channel();
        let held = Arc::clone(&gate);
        let busy = pool.run(move || {
            started.send(()).unwrap();
            held.wait();
        });
        taken.recv().unwrap();
        let queued: Vec<_> = (0..2).map(|n| pool.run(move || n)).collect();
        assert_eq!(pool.run(|| 99).await, Err(HashError::Busy), "the queue holds two");
        gate.wait();
        busy.await.unwrap();
        for (n, check) in queued.into_iter().enumerate() {
            assert_eq!(check.await, Ok(n), "queued checks run once the thread is free");
        }
    }

    #[tokio::test]
    async fn a_place_taken_early_counts_against_the_queue_until_dropped() {
        let pool = HashPool::new(1, 1).unwrap();
        let first = pool.admit().unwrap();
        let second = pool.admit().unwrap();
        assert_eq!(pool.admit().err(), Some(HashError::Busy), "one running and one queued");
        drop(first);
        assert_eq!(pool.run_in(second, || 5).await, Ok(5));
        assert_eq!(pool.run(|| 6).await, Ok(6), "every place given back");
    }

    #[test]
    fn hashing_threads_run_only_on_what_the_others_leave() {
        let pool = HashPool::new(1, 1).unwrap();
        // SAFETY: reads the calling thread's own scheduling policy.
        let policy = futures::executor::block_on(pool.run(|| unsafe { libc::sched_getscheduler(0) }));
        assert_eq!(policy, Ok(libc::SCHED_IDLE));
    }

    #[tokio::test]
    async fn a_check_that_panics_fails_alone() {
        let pool = HashPool::new(1, 2).unwrap();
        assert_eq!(pool.run(|| -> u8 { panic!("argon2 broke") }).await, Err(HashError::Failed));
        assert_eq!(pool.run(|| 7).await, Ok(7), "the pool still works");
    }
}

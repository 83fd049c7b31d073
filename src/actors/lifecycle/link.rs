//! How the rest of the tree reaches a job supervisor: a restarted supervisor is a new actor, so it publishes its
//! address here when it starts and takes it back when it stops. Jobs sent while none runs are not lost: the
//! supervisor that starts next looks for what is due (see `Job::pending`).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ractor::ActorRef;

use super::supervisor::JobMsg;

pub struct JobLink<J: super::Job> {
    current: ArcSwapOption<ActorRef<JobMsg<J>>>,
}

impl<J: super::Job> Default for JobLink<J> {
    fn default() -> Self {
        Self { current: ArcSwapOption::empty() }
    }
}

impl<J: super::Job> JobLink<J> {
    pub(super) fn publish(&self, supervisor: ActorRef<JobMsg<J>>) {
        self.current.store(Some(Arc::new(supervisor)));
    }

    pub(super) fn withdraw(&self, supervisor: &ActorRef<JobMsg<J>>) {
        let current = self.current.load();
        if current.as_ref().is_some_and(|now| now.get_id() == supervisor.get_id()) {
            self.current.store(None);
        }
    }

    /// The running supervisor, if one runs.
    pub fn get(&self) -> Option<ActorRef<JobMsg<J>>> {
        self.current.load().as_deref().cloned()
    }

    /// Hands `message` to the running supervisor; `false` if none runs.
    pub fn cast(&self, message: JobMsg<J>) -> bool {
        self.get().is_some_and(|supervisor| supervisor.cast(message).is_ok())
    }
}

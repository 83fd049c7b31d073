//! The JournalWriter actor: the supervised owner of the journal's committer thread. It connects a committer to the
//! shared `Appender` when it starts (flushes go straight through the appender), and fails when its committer dies, so that its supervisor
//! restarts it (and with it a new committer) with backoff; meanwhile every append is refused at once. When it
//! stops, its committer finishes what was handed in and stops too.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::committer::{Appender, CommitListener, CommitterConfig};
use crate::actors::inspect::{ActorKind, InspectReply, Meter, Report};
use crate::metrics::JournalMetrics;
use crate::persistence::JournalAppend;

pub struct JournalWriter;

pub struct WriterArgs {
    /// Where the shards hand events in; it outlives every incarnation of the writer.
    pub appender: Appender,
    pub journal: Arc<dyn JournalAppend>,
    pub listener: Arc<dyn CommitListener>,
    pub max_batch: usize,
    pub linger: Duration,
    pub metrics: JournalMetrics,
}

pub struct WriterState {
    appender: Appender,
    meter: Arc<Meter>,
}

pub enum WriterMsg {
    /// The committer thread ended.
    CommitterStopped {
        died: bool,
    },
    Inspect(InspectReply),
}

impl Actor for JournalWriter {
    type Msg = WriterMsg;
    type State = WriterState;
    type Arguments = WriterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WriterMsg>,
        args: WriterArgs,
    ) -> Result<WriterState, ActorProcessingErr> {
        let WriterArgs { appender, journal, listener, max_batch, linger, metrics } = args;
        let config = CommitterConfig { journal, listener, max_batch, linger, metrics };
        appender
            .connect(config, move |died| {
                let _ = myself.cast(WriterMsg::CommitterStopped { died });
            })
            .await?;
        Ok(WriterState { appender, meter: Arc::default() })
    }

    async fn handle(
        &self,
        _: ActorRef<WriterMsg>,
        message: WriterMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        state.meter.handled();
        match message {
            WriterMsg::CommitterStopped { died } => {
                let how = if died { "died" } else { "stopped" };
                Err(format!("the journal committer {how} while its writer ran").into())
            }
            WriterMsg::Inspect(reply) => {
                let details = serde_json::json!({ "appends_waiting": state.appender.waiting() });
                let _ = reply.send(Report::new(ActorKind::JournalWriter, &state.meter, details));
                Ok(())
            }
        }
    }
}

/// However the writer ends, its committer finishes what was handed in and stops.
impl Drop for WriterState {
    fn drop(&mut self) {
        self.appender.close();
    }
}

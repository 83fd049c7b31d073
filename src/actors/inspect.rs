//! Inspecting the running actor tree, for the admin: the tree is walked from the root through ractor's own
//! supervision links (`ActorCell::get_children`), so it shows the actors that run now, never a list kept beside
//! them, and every actor on it is asked about itself through its own mailbox.
//!
//! ractor does not expose a mailbox's length, so each actor counts the messages it has handled (a `Meter`, one
//! uncontended atomic add per message) and the inspector measures the depth the way it would be felt: it reads the
//! count, sends an inspection, and the messages handled before the inspection's turn came are those that were
//! waiting ahead of it.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorId, ActorRef, ActorStatus, Message, RpcReplyPort};
use serde::Serialize;

use super::journal::WriterMsg;
use super::lifecycle::{JobMsg, Pay, Refund, WorkerMsg};
use super::orders::projector::ProjectorMsg;
use super::root::RootMsg;
use super::sale::product::ProductMsg;
use super::sale::shard::ShardMsg;
use super::sale::supervisor::SupervisorMsg;

/// Messages an actor has handled; each actor bumps its own.
#[derive(Debug, Default)]
pub struct Meter(AtomicU64);

impl Meter {
    pub fn handled(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Root,
    JournalWriter,
    OrderProjector,
    ProductSupervisor,
    Product,
    Shard,
    PaymentSupervisor,
    CompensationSupervisor,
    PaymentAttempt,
    Compensation,
}

impl ActorKind {
    pub const ALL: [ActorKind; 10] = [
        ActorKind::Root,
        ActorKind::JournalWriter,
        ActorKind::OrderProjector,
        ActorKind::ProductSupervisor,
        ActorKind::Product,
        ActorKind::Shard,
        ActorKind::PaymentSupervisor,
        ActorKind::CompensationSupervisor,
        ActorKind::PaymentAttempt,
        ActorKind::Compensation,
    ];

    /// The kind as the admin's tree and the metrics name it.
    pub fn label(self) -> &'static str {
        match self {
            ActorKind::Root => "root",
            ActorKind::JournalWriter => "journal_writer",
            ActorKind::OrderProjector => "order_projector",
            ActorKind::ProductSupervisor => "product_supervisor",
            ActorKind::Product => "product",
            ActorKind::Shard => "shard",
            ActorKind::PaymentSupervisor => "payment_supervisor",
            ActorKind::CompensationSupervisor => "compensation_supervisor",
            ActorKind::PaymentAttempt => "payment_attempt",
            ActorKind::Compensation => "compensation",
        }
    }
}

/// A supervisor's record of one child it runs now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChildRestarts {
    pub restarts: u64,
    /// The delay before its latest restart.
    pub backoff_ms: Option<u64>,
}

/// What an actor says about itself.
pub struct Report {
    pub kind: ActorKind,
    pub meter: Arc<Meter>,
    /// The meter as the report was made, this inspection counted.
    pub handled: u64,
    pub details: serde_json::Value,
    /// A supervisor's restart records of the children it runs now.
    pub children: HashMap<ActorId, ChildRestarts>,
    /// Its children are restarted only with it (a product's shards), so its restarts are theirs.
    pub children_restart_with_it: bool,
}

impl Report {
    pub fn new(kind: ActorKind, meter: &Arc<Meter>, details: serde_json::Value) -> Self {
        Self {
            kind,
            meter: Arc::clone(meter),
            handled: meter.count(),
            details,
            children: HashMap::new(),
            children_restart_with_it: false,
        }
    }

    pub fn supervising(mut self, children: HashMap<ActorId, ChildRestarts>) -> Self {
        self.children = children;
        self
    }

    pub fn children_restart_with_it(mut self) -> Self {
        self.children_restart_with_it = true;
        self
    }
}

pub type InspectReply = RpcReplyPort<Report>;

/// One actor as the admin sees it, with the actors it supervises.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActorNode {
    pub id: u64,
    pub name: Option<String>,
    pub kind: Option<ActorKind>,
    pub status: &'static str,
    /// Messages waiting ahead of the inspection when it was sent.
    pub mailbox_depth: Option<u64>,
    pub restarts: u64,
    pub backoff_ms: Option<u64>,
    /// What the actor says about itself, by kind; null if it did not answer in time.
    pub details: serde_json::Value,
    #[schema(no_recursion)]
    pub children: Vec<ActorNode>,
}

impl ActorNode {
    /// This node or the one below it with `id`.
    pub fn find(&self, id: u64) -> Option<&ActorNode> {
        if self.id == id {
            return Some(self);
        }
        self.children.iter().find_map(|child| child.find(id))
    }
}

/// The tree under `cell`, each actor given `timeout` to answer (one that does not is listed without details).
pub fn tree(cell: ActorCell, restarts: ChildRestarts, timeout: Duration) -> BoxFuture<'static, ActorNode> {
    async move {
        let report = report_of(&cell, timeout).await;
        // The second inspection's turn came after every message that was ahead of it when it was sent.
        let depth = match &report {
            Some(first) => {
                let before = first.meter.count();
                report_of(&cell, timeout).await.map(|second| second.handled.saturating_sub(before + 1))
            }
            None => None,
        };
        let (kind, details, children, with_it) = match report {
            Some(report) => (Some(report.kind), report.details, report.children, report.children_restart_with_it),
            None => (None, serde_json::Value::Null, HashMap::new(), false),
        };
        let below = cell.get_children().into_iter().map(|child| {
            let of_child = if with_it { Some(restarts) } else { children.get(&child.get_id()).copied() };
            tree(child, of_child.unwrap_or_default(), timeout)
        });
        let mut children = join_all(below).await;
        children.sort_by_key(|child| child.id);
        ActorNode {
            id: local_id(&cell),
            name: cell.get_name(),
            kind,
            status: status(cell.get_status()),
            mailbox_depth: depth,
            restarts: restarts.restarts,
            backoff_ms: restarts.backoff_ms,
            details,
            children,
        }
    }
    .boxed()
}

/// The actor with `id` under `cell`, if one runs.
pub fn find(cell: &ActorCell, id: u64) -> Option<ActorCell> {
    if local_id(cell) == id {
        return Some(cell.clone());
    }
    cell.get_children().iter().find_map(|child| find(child, id))
}

/// Asks `cell` about itself through the `Inspect` message of whichever actor it is.
async fn report_of(cell: &ActorCell, timeout: Duration) -> Option<Report> {
    let kind = cell.get_type_id();
    if kind == TypeId::of::<ShardMsg>() {
        ask(cell, ShardMsg::Inspect, timeout).await
    } else if kind == TypeId::of::<ProductMsg>() {
        ask(cell, ProductMsg::Inspect, timeout).await
    } else if kind == TypeId::of::<SupervisorMsg>() {
        ask(cell, SupervisorMsg::Inspect, timeout).await
    } else if kind == TypeId::of::<RootMsg>() {
        ask(cell, RootMsg::Inspect, timeout).await
    } else if kind == TypeId::of::<WriterMsg>() {
        ask(cell, WriterMsg::Inspect, timeout).await
    } else if kind == TypeId::of::<ProjectorMsg>() {
        ask(cell, ProjectorMsg::Inspect, timeout).await
    } else if kind == TypeId::of::<JobMsg<Pay>>() {
        ask(cell, JobMsg::<Pay>::Inspect, timeout).await
    } else if kind == TypeId::of::<JobMsg<Refund>>() {
        ask(cell, JobMsg::<Refund>::Inspect, timeout).await
    } else if kind == TypeId::of::<WorkerMsg>() {
        ask(cell, WorkerMsg::Inspect, timeout).await
    } else {
        None
    }
}

async fn ask<M: Message>(cell: &ActorCell, inspect: fn(InspectReply) -> M, timeout: Duration) -> Option<Report> {
    let actor: ActorRef<M> = cell.clone().into();
    match actor.call(inspect, Some(timeout)).await {
        Ok(CallResult::Success(report)) => Some(report),
        _ => None,
    }
}

fn local_id(cell: &ActorCell) -> u64 {
    cell.get_id().pid()
}

fn status(status: ActorStatus) -> &'static str {
    match status {
        ActorStatus::Unstarted => "unstarted",
        ActorStatus::Starting => "starting",
        ActorStatus::Running => "running",
        ActorStatus::Upgrading => "upgrading",
        ActorStatus::Draining => "draining",
        ActorStatus::Stopping => "stopping",
        ActorStatus::Stopped => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_labelled_as_the_admin_tree_names_it() {
        for kind in ActorKind::ALL {
            assert_eq!(serde_json::to_value(kind).ok(), Some(serde_json::Value::from(kind.label())));
        }
    }
}

//! The RootSupervisor: the top of the tree. It starts everything the service runs — the journal writer first (so
//! appends have somewhere to go), then the order projector, the compensation and payment supervisors, then the
//! product supervisor, which recovers every product — and restarts any of them that fails or stops on its own, with the one backoff policy. A child whose
//! budget is spent fails the root, which leaves the service not ready rather than restarting forever.
//!
//! The engine reaches the children through the root, since a restarted child is a new actor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent};

use super::inspect::{ActorKind, InspectReply, Meter, Report};
use super::journal::{Appender, JournalWriter, WriterArgs, WriterMsg};
use super::lifecycle::{
    CompensationSupervisor, JobLink, JobSupervisorArgs, LifecycleDeps, Pay, PaymentSupervisor, Refund,
};
use super::orders::projector::{OrderProjector, ProjectorArgs, ProjectorLink, ProjectorMsg, ProjectorStatus};
use super::sale::catalog::Catalog;
use super::sale::product::ProductDeps;
use super::sale::supervisor::{ProductSupervisor, SupervisorArgs, SupervisorMsg};
use super::supervision::{Restarts, SupervisorView};
use super::EngineSettings;
use crate::metrics::JournalMetrics;
use crate::persistence::{Database, Journal};

pub struct RootSupervisor;

/// Everything the root needs to (re)start its children.
pub struct RootArgs {
    pub db: Database,
    pub journal: Journal,
    pub appender: Appender,
    pub link: Arc<ProjectorLink>,
    pub deps: Arc<ProductDeps>,
    pub catalog: Arc<Catalog>,
    pub settings: EngineSettings,
    pub lifecycle: Arc<LifecycleDeps>,
    pub payments: Arc<JobLink<Pay>>,
    pub refunds: Arc<JobLink<Refund>>,
    pub journal_metrics: JournalMetrics,
}

/// The root's children, each of which it restarts on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Child {
    JournalWriter,
    OrderProjector,
    Compensations,
    Payments,
    Products,
}

impl std::fmt::Display for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Child::JournalWriter => "journal_writer",
            Child::OrderProjector => "order_projector",
            Child::Compensations => "compensation_supervisor",
            Child::Payments => "payment_supervisor",
            Child::Products => "product_supervisor",
        })
    }
}

pub struct RootState {
    args: RootArgs,
    writer: Option<ActorRef<WriterMsg>>,
    projector: Option<ActorRef<ProjectorMsg>>,
    products: Option<ActorRef<SupervisorMsg>>,
    compensations: Option<ActorCell>,
    payments: Option<ActorCell>,
    children: HashMap<ActorId, Child>,
    restarts: Restarts<Child>,
    meter: Arc<Meter>,
}

/// How the root's children are doing.
#[derive(Debug, Clone, Copy)]
pub struct TreeHealth {
    /// Every child runs.
    pub running: bool,
    /// Restarts of the root's own children since start.
    pub restarts: u64,
}

pub enum RootMsg {
    Start(Child),
    Health(RpcReplyPort<TreeHealth>),
    /// For the product supervisor: a product created or rescheduled.
    Products(SupervisorMsg),
    /// The root's own restarts.
    Supervision(RpcReplyPort<SupervisorView>),
    /// The product supervisor's restarts.
    ProductSupervision(RpcReplyPort<SupervisorView>),
    ProjectorStatus(RpcReplyPort<ProjectorStatus>),
    Inspect(InspectReply),
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(&self, myself: ActorRef<RootMsg>, args: RootArgs) -> Result<RootState, ActorProcessingErr> {
        let restarts = Restarts::new(args.settings.supervision);
        let mut state = RootState {
            args,
            writer: None,
            projector: None,
            products: None,
            compensations: None,
            payments: None,
            children: HashMap::new(),
            restarts,
            meter: Arc::default(),
        };
        // Compensation runs before the products recover, so that the refunds their shards find have somewhere to go.
        for child in
            [Child::JournalWriter, Child::OrderProjector, Child::Compensations, Child::Payments, Child::Products]
        {
            state.start(&myself, child).await?;
        }
        Ok(state)
    }

    async fn post_stop(&self, myself: ActorRef<RootMsg>, _: &mut RootState) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(None, None).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        message: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        state.meter.handled();
        match message {
            RootMsg::Start(child) => {
                if let Err(err) = state.start(&myself, child).await {
                    state.restart_later(&myself, child, &err.to_string())?;
                }
            }
            RootMsg::Health(reply) => {
                let running =
                    |cell: Option<ActorCell>| cell.is_some_and(|cell| cell.get_status() == ActorStatus::Running);
                let _ = reply.send(TreeHealth {
                    running: running(state.writer.as_ref().map(|a| a.get_cell()))
                        && running(state.projector.as_ref().map(|a| a.get_cell()))
                        && running(state.compensations.clone())
                        && running(state.payments.clone())
                        && running(state.products.as_ref().map(|a| a.get_cell())),
                    restarts: state.restarts.total(),
                });
            }
            RootMsg::Products(message) => match &state.products {
                Some(products) => products.cast(message)?,
                None => message.refuse("the product supervisor is restarting"),
            },
            RootMsg::Supervision(reply) => {
                let _ = reply.send(state.restarts.view(Instant::now()));
            }
            RootMsg::ProductSupervision(reply) => {
                if let Some(products) = &state.products {
                    products.cast(SupervisorMsg::Restarts(reply))?;
                }
            }
            RootMsg::ProjectorStatus(reply) => {
                if let Some(projector) = &state.projector {
                    projector.cast(ProjectorMsg::Status(reply))?;
                }
            }
            RootMsg::Inspect(reply) => {
                let details = serde_json::json!({ "restarts": state.restarts.total() });
                let children = state.children.iter().map(|(id, child)| (*id, state.restarts.of(child))).collect();
                let _ = reply.send(Report::new(ActorKind::Root, &state.meter, details).supervising(children));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, format!("stopped: {}", reason.unwrap_or_else(|| "no reason given".into())))
            }
            _ => return Ok(()),
        };
        let Some(child) = state.children.remove(&cell.get_id()) else { return Ok(()) };
        // A failed child did not stop its own children.
        cell.stop_children(None);
        state.forget(child);
        state.restart_later(&myself, child, &why)
    }
}

impl RootState {
    async fn start(&mut self, myself: &ActorRef<RootMsg>, child: Child) -> Result<(), ActorProcessingErr> {
        let (args, settings, supervisor) = (&self.args, &self.args.settings, myself.get_cell());
        let cell = match child {
            Child::JournalWriter => {
                let writer_args = WriterArgs {
                    appender: args.appender.clone(),
                    journal: Arc::clone(&args.journal.append),
                    listener: args.link.clone(),
                    max_batch: settings.journal_max_batch,
                    linger: settings.journal_linger,
                    metrics: args.journal_metrics.clone(),
                };
                let (writer, _) = Actor::spawn_linked(None, JournalWriter, writer_args, supervisor).await?;
                self.writer.insert(writer).get_cell()
            }
            Child::OrderProjector => {
                let projector_args = ProjectorArgs {
                    link: Arc::clone(&args.link),
                    journal: Arc::clone(&args.journal.projection),
                    db: args.db.clone(),
                    batch: settings.projector_batch,
                    poll: settings.projector_poll,
                    quiet: settings.projector_quiet,
                    max_lag: settings.projector_max_lag,
                    retry: settings.supervision,
                };
                let (projector, _) = Actor::spawn_linked(None, OrderProjector, projector_args, supervisor).await?;
                self.projector.insert(projector).get_cell()
            }
            Child::Compensations => {
                let jobs = JobSupervisorArgs {
                    deps: Arc::clone(&args.lifecycle),
                    link: Arc::clone(&args.refunds),
                    policy: settings.supervision,
                };
                let (compensations, _) =
                    Actor::spawn_linked(None, CompensationSupervisor::default(), jobs, supervisor).await?;
                self.compensations.insert(compensations.get_cell()).clone()
            }
            Child::Payments => {
                let jobs = JobSupervisorArgs {
                    deps: Arc::clone(&args.lifecycle),
                    link: Arc::clone(&args.payments),
                    policy: settings.supervision,
                };
                let (payments, _) = Actor::spawn_linked(None, PaymentSupervisor::default(), jobs, supervisor).await?;
                self.payments.insert(payments.get_cell()).clone()
            }
            Child::Products => {
                let supervisor_args = SupervisorArgs {
                    deps: Arc::clone(&args.deps),
                    catalog: Arc::clone(&args.catalog),
                    db: args.db.clone(),
                    policy: settings.supervision,
                };
                let (products, _) = Actor::spawn_linked(None, ProductSupervisor, supervisor_args, supervisor).await?;
                self.products.insert(products).get_cell()
            }
        };
        self.children.insert(cell.get_id(), child);
        Ok(())
    }

    fn forget(&mut self, child: Child) {
        match child {
            Child::JournalWriter => self.writer = None,
            Child::OrderProjector => self.projector = None,
            Child::Compensations => self.compensations = None,
            Child::Payments => self.payments = None,
            Child::Products => self.products = None,
        }
    }

    fn restart_later(&mut self, myself: &ActorRef<RootMsg>, child: Child, why: &str) -> Result<(), ActorProcessingErr> {
        let delay = self
            .restarts
            .after_failure(child, Instant::now())
            .map_err(|failures| format!("{child:?} failed {failures} times; giving up: {why}"))?;
        tracing::warn!(?child, error = why, retry_in_ms = delay.as_millis() as u64, "restarting");
        myself.send_after(delay, move || RootMsg::Start(child));
        Ok(())
    }
}

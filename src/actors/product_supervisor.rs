//! The ProductSupervisor: starts a ProductActor per product and restarts one that fails — after a backoff, from
//! its snapshot and the journal — until the product's restart budget is spent, then gives up on the whole
//! supervisor so the failure is visible (readiness goes red) instead of looping. Creating a product goes through
//! it too, so a new product and its actor appear together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::product::{ProductActor, ProductArgs, ProductDeps};
use super::supervision::{Backoff, RestartBudget};
use crate::domain::{Product, ProductDraft, ProductId};
use crate::persistence::{Database, DbError};

pub struct ProductSupervisor;

pub struct SupervisorArgs {
    pub deps: Arc<ProductDeps>,
    pub db: Database,
    pub products: Vec<Product>,
    pub backoff: Backoff,
    pub max_restarts: usize,
    pub restart_window: Duration,
}

pub struct SupervisorState {
    deps: Arc<ProductDeps>,
    db: Database,
    children: HashMap<ActorId, Product>,
    budgets: HashMap<ProductId, RestartBudget>,
    backoff: Backoff,
    max_restarts: usize,
    restart_window: Duration,
    restarts: u64,
}

pub type CreateReply = RpcReplyPort<Result<Product, String>>;

pub enum SupervisorMsg {
    Create { draft: ProductDraft, reply: CreateReply },
    Stored { result: Result<Product, DbError>, reply: CreateReply },
    Start(Product),
    Restarts(RpcReplyPort<u64>),
}

impl Actor for ProductSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut state = SupervisorState {
            deps: args.deps,
            db: args.db,
            children: HashMap::new(),
            budgets: HashMap::new(),
            backoff: args.backoff,
            max_restarts: args.max_restarts,
            restart_window: args.restart_window,
            restarts: 0,
        };
        // Recover every product before the engine answers anyone: a product that exists must never look missing.
        for product in args.products {
            if let Err(err) = state.start(&myself, product.clone()).await {
                state.retry_later(&myself, product, &err)?;
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Create { draft, reply } => {
                let (db, myself) = (state.db.clone(), myself.clone());
                tokio::spawn(async move {
                    let result = db.create_product(draft).await;
                    let _ = myself.cast(SupervisorMsg::Stored { result, reply });
                });
            }
            SupervisorMsg::Stored { result: Ok(product), reply } => {
                let started = state.start(&myself, product.clone()).await;
                let _ = reply.send(started.map(|()| product));
            }
            SupervisorMsg::Stored { result: Err(err), reply } => {
                let _ = reply.send(Err(err.to_string()));
            }
            SupervisorMsg::Start(product) => {
                if let Err(err) = state.start(&myself, product.clone()).await {
                    state.retry_later(&myself, product, &err)?;
                }
            }
            SupervisorMsg::Restarts(reply) => {
                let _ = reply.send(state.restarts);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(product) = state.children.remove(&cell.get_id()) {
                    state.retry_later(&myself, product, &err.to_string())?;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.children.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn start(&mut self, myself: &ActorRef<SupervisorMsg>, product: Product) -> Result<(), String> {
        let args = ProductArgs { product: product.clone(), deps: Arc::clone(&self.deps) };
        let (actor, _) =
            Actor::spawn_linked(None, ProductActor, args, myself.get_cell()).await.map_err(|err| err.to_string())?;
        self.children.insert(actor.get_id(), product);
        Ok(())
    }

    fn retry_later(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        product: Product,
        why: &str,
    ) -> Result<(), ActorProcessingErr> {
        let budget = self
            .budgets
            .entry(product.id)
            .or_insert_with(|| RestartBudget::new(self.max_restarts, self.restart_window));
        if !budget.allow(Instant::now()) {
            return Err(format!("product {} failed {} times; giving up: {why}", product.id, budget.attempts()).into());
        }
        let delay = self.backoff.delay(budget.attempts().saturating_sub(1));
        self.restarts += 1;
        tracing::warn!(product = %product.id, error = why, retry_in_ms = delay.as_millis() as u64, "restarting product");
        myself.send_after(delay, move || SupervisorMsg::Start(product));
        Ok(())
    }
}

//! The ProductSupervisor: starts a ProductActor per product and publishes it in the catalog, and restarts one that
//! fails — after a backoff, from its snapshot and the journal — until the product's restart budget is spent, then
//! fails itself so that its own supervisor decides. Creating a product goes through it too, so a new product and
//! its actor appear together, and so does moving a sale's window: it is stored, then the supervisor's own copy (what
//! a restart starts from), the catalog's (what purchases read) and the product actor's (what its feed shows) change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::catalog::{Catalog, ProductHandle};
use super::gauges::Gauges;
use super::product::{ProductActor, ProductArgs, ProductDeps, ProductMsg};
use crate::actors::inspect::{ActorKind, InspectReply, Meter, Report};
use crate::actors::supervision::{BackoffPolicy, Restarts, SupervisorView};
use crate::domain::{Product, ProductDraft, ProductId, SaleWindow};
use crate::persistence::{Database, DbError};

pub struct ProductSupervisor;

pub struct SupervisorArgs {
    pub deps: Arc<ProductDeps>,
    pub catalog: Arc<Catalog>,
    pub db: Database,
    pub policy: BackoffPolicy,
}

pub struct SupervisorState {
    deps: Arc<ProductDeps>,
    catalog: Arc<Catalog>,
    db: Database,
    children: HashMap<ActorId, Product>,
    /// Windows an admin moved since this supervisor started (stored already): a product (re)started from a copy
    /// older than the move — a restart waiting out its backoff — starts with the window it was moved to.
    moved: HashMap<ProductId, SaleWindow>,
    restarts: Restarts<ProductId>,
    meter: Arc<Meter>,
}

pub type CreateReply = RpcReplyPort<Result<Product, String>>;

/// `Ok(false)`: no such product.
pub type RescheduleReply = RpcReplyPort<Result<bool, String>>;

pub enum SupervisorMsg {
    Create { draft: ProductDraft, reply: CreateReply },
    Stored { result: Result<Product, DbError>, reply: CreateReply },
    Reschedule { product: ProductId, window: SaleWindow, reply: RescheduleReply },
    Rescheduled { product: ProductId, window: SaleWindow, result: Result<bool, DbError>, reply: RescheduleReply },
    Start(Product),
    Restarts(RpcReplyPort<SupervisorView>),
    Inspect(InspectReply),
}

impl SupervisorMsg {
    /// Answers a request that cannot reach the supervisor (it is restarting) with `why`.
    pub fn refuse(self, why: &str) {
        match self {
            SupervisorMsg::Create { reply, .. } | SupervisorMsg::Stored { reply, .. } => {
                let _ = reply.send(Err(why.to_owned()));
            }
            SupervisorMsg::Reschedule { reply, .. } | SupervisorMsg::Rescheduled { reply, .. } => {
                let _ = reply.send(Err(why.to_owned()));
            }
            SupervisorMsg::Start(_) | SupervisorMsg::Restarts(_) | SupervisorMsg::Inspect(_) => {}
        }
    }
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
        let products = args.db.products().await?;
        let mut state = SupervisorState {
            deps: args.deps,
            catalog: args.catalog,
            db: args.db,
            children: HashMap::new(),
            moved: HashMap::new(),
            restarts: Restarts::new(args.policy),
            meter: Arc::default(),
        };
        // Recover every product before the engine answers anyone: a product that exists must never look missing.
        for product in products {
            if let Err(err) = state.start(&myself, product.clone()).await {
                state.retry_later(&myself, product, &err)?;
            }
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<SupervisorMsg>,
        _: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children(None);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        state.meter.handled();
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
            SupervisorMsg::Reschedule { product, window, reply } => {
                let (db, myself) = (state.db.clone(), myself.clone());
                tokio::spawn(async move {
                    let result = db.set_window(product, window).await;
                    let _ = myself.cast(SupervisorMsg::Rescheduled { product, window, result, reply });
                });
            }
            SupervisorMsg::Rescheduled { product, window, result, reply } => {
                let outcome = result.map_err(|err| err.to_string());
                if outcome == Ok(true) {
                    state.reschedule(product, window);
                }
                let _ = reply.send(outcome);
            }
            SupervisorMsg::Start(product) => {
                if let Err(err) = state.start(&myself, product.clone()).await {
                    state.retry_later(&myself, product, &err)?;
                }
            }
            SupervisorMsg::Restarts(reply) => {
                let _ = reply.send(state.restarts.view(Instant::now()));
            }
            SupervisorMsg::Inspect(reply) => {
                let view = state.restarts.view(Instant::now());
                let details = serde_json::json!({
                    "products": state.children.len(),
                    "restarts": view.restarts,
                    "gave_up": view.gave_up,
                });
                let children =
                    state.children.iter().map(|(id, product)| (*id, state.restarts.of(&product.id))).collect();
                let report = Report::new(ActorKind::ProductSupervisor, &state.meter, details).supervising(children);
                let _ = reply.send(report);
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
                // A failed product did not stop its shards itself.
                cell.stop_children(None);
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
    /// Starts `product`'s actor (which recovers it) and publishes it.
    async fn start(&mut self, myself: &ActorRef<SupervisorMsg>, mut product: Product) -> Result<(), String> {
        if let Some(window) = self.moved.get(&product.id) {
            product.draft.window = *window;
        }
        let gauges = Arc::new(Gauges::default());
        let live = self.catalog.live_of(&product);
        let args = ProductArgs {
            product: product.clone(),
            deps: Arc::clone(&self.deps),
            gauges: Arc::clone(&gauges),
            live: Arc::clone(&live),
        };
        let (actor, _) =
            Actor::spawn_linked(None, ProductActor, args, myself.get_cell()).await.map_err(|err| err.to_string())?;
        self.children.insert(actor.get_id(), product.clone());
        let shards = ractor::call!(actor, ProductMsg::Shards).map_err(|err| err.to_string())?;
        self.catalog.publish(ProductHandle { product, actor, shards, gauges, live });
        Ok(())
    }

    /// Moves a stored product's window in every copy the running service keeps.
    fn reschedule(&mut self, id: ProductId, window: SaleWindow) {
        self.moved.insert(id, window);
        for product in self.children.values_mut().filter(|product| product.id == id) {
            product.draft.window = window;
        }
        if self.catalog.reschedule(id, window) {
            if let Some(handle) = self.catalog.get(id) {
                let _ = handle.actor.cast(ProductMsg::Window(window));
            }
        }
    }

    fn retry_later(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        product: Product,
        why: &str,
    ) -> Result<(), ActorProcessingErr> {
        let delay = self
            .restarts
            .after_failure(product.id, Instant::now())
            .map_err(|failures| format!("product {} failed {failures} times; giving up: {why}", product.id))?;
        tracing::warn!(product = %product.id, error = why, retry_in_ms = delay.as_millis() as u64, "restarting product");
        myself.send_after(delay, move || SupervisorMsg::Start(product));
        Ok(())
    }
}

//! A buyer's orders: reading them, and cancelling one that awaits payment (its units go back on sale).

use std::sync::Arc;

use warp::reply::Response;
use warp::Reply;

use super::auth::Caller;
use super::extract::segment;
use super::problem::Problem;
use super::AppState;
use crate::domain::{OrderId, Role};

pub async fn mine(state: Arc<AppState>, caller: Caller) -> Result<Response, Problem> {
    let orders = state.engine.orders_of_user(caller.user).await?;
    Ok(warp::reply::json(&orders).into_response())
}

/// One order; someone else's order is as invisible as one that does not exist.
pub async fn one(state: Arc<AppState>, id: String, caller: Caller) -> Result<Response, Problem> {
    let id: OrderId = segment(&id)?;
    let order = state
        .engine
        .order(id, (caller.role != Role::Admin).then_some(caller.user))
        .await?
        .filter(|order| order.user_id == caller.user || caller.role == Role::Admin)
        .ok_or_else(|| Problem::not_found("no such order"))?;
    Ok(warp::reply::json(&order).into_response())
}

/// Cancels the caller's own reserved order: `200` with the order, now cancelled (its release follows at once).
pub async fn cancel(state: Arc<AppState>, id: String, caller: Caller) -> Result<Response, Problem> {
    let id: OrderId = segment(&id)?;
    let order = state.engine.cancel(id, caller.user).await?;
    Ok(warp::reply::json(&order).into_response())
}

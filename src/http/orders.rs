//! A buyer's orders: reading them, and cancelling one that awaits payment (its units go back on sale).

use std::sync::Arc;

use warp::reply::Response;
use warp::Reply;

use super::auth::Caller;
use super::extract::segment;
use super::problem::{BadRequest, Conflict, NotFound, Problem, Unauthorized, Unavailable};
use super::AppState;
use crate::domain::{Order, OrderId, Role};

/// The caller's newest orders (at most 100), newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    responses(
        (status = 200, description = "The caller's newest orders", body = [Order]),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn mine(state: Arc<AppState>, caller: Caller) -> Result<Response, Problem> {
    let orders = state.engine.orders_of_user(caller.user).await?;
    Ok(warp::reply::json(&orders).into_response())
}

/// One order; someone else's order is as invisible as one that does not exist (an admin sees every order).
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = OrderId, Path, description = "The order.")),
    responses(
        (status = 200, description = "The order, with every step it took", body = Order),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
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
/// Cancelling again answers the order as it is; 409 `ORDER_STATUS_CONFLICT` (with `order_status`) if it was paid or
/// expired.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = OrderId, Path, description = "The order.")),
    responses(
        (status = 200, description = "The order, cancelled", body = Order),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn cancel(state: Arc<AppState>, id: String, caller: Caller) -> Result<Response, Problem> {
    let id: OrderId = segment(&id)?;
    let order = state.engine.cancel(id, caller.user).await?;
    Ok(warp::reply::json(&order).into_response())
}

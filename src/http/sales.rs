//! The public side of a sale: product listings with live stock, and the purchase endpoint — the hot path, which
//! parses, asks the buyer's shard and maps the answer, nothing more.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::auth::{admit, Caller};
use super::extract::{json, segment};
use super::problem::Problem;
use super::AppState;
use crate::domain::{IdempotencyKey, OrderId, OrderStatus, ProductId, Quantity, Timestamp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    quantity: Quantity,
}

/// The `202` answer: the order, reserved until `pay_before`.
#[derive(Serialize)]
struct Reserved {
    order_id: OrderId,
    status: OrderStatus,
    pay_before: Timestamp,
}

pub async fn list(state: Arc<AppState>) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.products()).into_response())
}

pub async fn show(state: Arc<AppState>, id: String) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    let product = state.engine.product(id).ok_or_else(|| Problem::not_found("no such product"))?;
    Ok(warp::reply::json(&product).into_response())
}

/// `POST /api/v1/products/{id}/purchase`. An empty body buys one unit; a sale that requires a seckill token takes it
/// from the `Seckill-Token` header.
pub async fn purchase(
    state: Arc<AppState>,
    id: String,
    caller: Caller,
    client: Option<SocketAddr>,
    key: Option<String>,
    pass: Option<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    admit(&state, Some(&caller), client.map(|client| client.ip()))?;
    let product: ProductId = segment(&id)?;
    let key = key.map(IdempotencyKey::try_from).transpose()?;
    let quantity = if body.iter().all(u8::is_ascii_whitespace) {
        Quantity::try_from(1).map_err(Problem::from)?
    } else {
        json::<PurchaseBody>(&body)?.quantity
    };
    let spend = || state.passes.redeem(pass.as_deref(), caller.user, product, Timestamp::now());
    let receipt = state.engine.purchase(product, caller.user, quantity, key, spend).await?;
    let body = Reserved { order_id: receipt.order_id, status: OrderStatus::Reserved, pay_before: receipt.pay_before };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
}

/// The `200` answer to a seckill token request.
#[derive(Serialize)]
struct IssuedToken {
    product_id: ProductId,
    token: String,
    expires_at: Timestamp,
}

/// `POST /api/v1/products/{id}/token`: a seckill token for one purchase of the product, issued only to a caller who
/// could buy it now (logged in, not banned, within their rate, the sale open, stock left).
pub async fn seckill_token(
    state: Arc<AppState>,
    id: String,
    caller: Caller,
    client: Option<SocketAddr>,
) -> Result<Response, Problem> {
    admit(&state, Some(&caller), client.map(|client| client.ip()))?;
    let product: ProductId = segment(&id)?;
    state.engine.open_to_buyers(product)?;
    let pass = state.passes.issue(caller.user, product, Timestamp::now());
    let body = IssuedToken { product_id: product, token: pass.token, expires_at: pass.expires_at };
    Ok(warp::reply::json(&body).into_response())
}

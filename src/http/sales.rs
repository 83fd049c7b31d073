//! The public side of a sale: product listings with live stock, and the purchase endpoint — the hot path, which
//! parses, asks the buyer's shard and maps the answer, nothing more.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::auth::{admit, Caller};
use super::extract::{json, segment};
use super::problem::{
    BadRequest, Conflict, Forbidden, LengthRequired, NotFound, PayloadTooLarge, Problem, RequestTimeout,
    TooManyRequests, Unauthorized, Unavailable, UnprocessableEntity,
};
use super::AppState;
use crate::actors::ProductSummary;
use crate::domain::{IdempotencyKey, OrderId, OrderStatus, ProductId, Quantity, Timestamp};

/// How many units to buy; an empty body buys one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PurchaseBody {
    quantity: Quantity,
}

/// The `202` answer: the order, reserved until `pay_before`.
#[derive(Serialize, ToSchema)]
struct Reserved {
    order_id: OrderId,
    status: OrderStatus,
    pay_before: Timestamp,
}

/// Every product, with its live stock.
#[utoipa::path(get, path = "/api/v1/products", tag = "sales",
    responses((status = 200, description = "Every product, with its live stock", body = [ProductSummary])))]
pub async fn list(state: Arc<AppState>) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.products()).into_response())
}

/// One product, with its live stock.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "sales",
    params(("id" = ProductId, Path, description = "The product.")),
    responses(
        (status = 200, description = "The product, with its live stock", body = ProductSummary),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub async fn show(state: Arc<AppState>, id: String) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    let product = state.engine.product(id).ok_or_else(|| Problem::not_found("no such product"))?;
    Ok(warp::reply::json(&product).into_response())
}

/// `POST /api/v1/products/{id}/purchase`. An empty body buys one unit; a sale that requires a seckill token takes it
/// from the `Seckill-Token` header.
///
/// Refusals: 403 `BLACKLISTED`, `SECKILL_TOKEN_REQUIRED`, `SECKILL_TOKEN_INVALID`, `SECKILL_TOKEN_EXPIRED`,
/// `SECKILL_TOKEN_USED`, `SECKILL_TOKEN_NOT_YOURS`; 409 `SOLD_OUT`, `INSUFFICIENT_STOCK`, `LIMIT_EXCEEDED`,
/// `SALE_NOT_STARTED`, `SALE_ENDED`, `SALE_PAUSED`, `SALE_DRAINING`, `IDEMPOTENCY_KEY_IN_FLIGHT`; 422
/// `IDEMPOTENCY_KEY_REUSED`; 429 `RATE_LIMITED`; 503 `UNAVAILABLE` (the journal did not record it: nothing taken).
#[utoipa::path(post, path = "/api/v1/products/{id}/purchase", tag = "sales",
    params(
        ("id" = ProductId, Path, description = "The product."),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header,
            description = "The same key answers the same order; with another quantity it is refused."),
        ("Seckill-Token" = Option<String>, Header,
            description = "A seckill token from `POST /api/v1/products/{id}/token`, for a sale that requires one."),
    ),
    request_body(content = ref("#/components/schemas/PurchaseBody"),
        description = "How many units; an empty body buys one (a JSON `null` is refused: a body is an object)."),
    responses(
        (status = 202, description = "Reserved until `pay_before`", body = Reserved),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn purchase(
    state: Arc<AppState>,
    id: String,
    caller: Caller,
    client: Option<SocketAddr>,
    key: Option<String>,
    pass: Option<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let answer = buy(&state, id, caller, client, key, pass, body).await;
    match &answer {
        Ok(_) => state.metrics.purchases.accepted(),
        Err(problem) => state.metrics.purchases.refused(problem.status().as_u16(), problem.code()),
    }
    answer
}

async fn buy(
    state: &AppState,
    id: String,
    caller: Caller,
    client: Option<SocketAddr>,
    key: Option<String>,
    pass: Option<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let traced = purchase_span();
    admit(state, Some(&caller), client.map(|client| client.ip()))?;
    let product: ProductId = segment(&id)?;
    traced.record("product_id", product.get());
    let key = key.map(IdempotencyKey::try_from).transpose()?;
    let quantity = if body.iter().all(u8::is_ascii_whitespace) {
        Quantity::try_from(1).map_err(Problem::from)?
    } else {
        json::<PurchaseBody>(&body)?.quantity
    };
    let spend = || state.passes.redeem(pass.as_deref(), caller.user, product, Timestamp::now());
    let receipt = state.engine.purchase(product, caller.user, quantity, key, spend).await?;
    traced.record("order_id", tracing::field::display(receipt.order_id));
    let body = Reserved { order_id: receipt.order_id, status: OrderStatus::Reserved, pay_before: receipt.pay_before };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
}

/// The request's span, named after the purchase route (while traces are off there is none, and recording on it does
/// nothing).
fn purchase_span() -> tracing::Span {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("http.route", "/api/v1/products/{id}/purchase");
        // It was named by its method when it started: only OpenTelemetry's own handle renames it now.
        span.context().span().update_name("POST /api/v1/products/{id}/purchase");
    }
    span
}

/// The `200` answer to a seckill token request.
#[derive(Serialize, ToSchema)]
#[schema(as = SeckillToken)]
struct IssuedToken {
    product_id: ProductId,
    token: String,
    expires_at: Timestamp,
}

/// `POST /api/v1/products/{id}/token`: a seckill token for one purchase of the product, issued only to a caller who
/// could buy it now (logged in, not banned, within their rate, the sale open, stock left).
///
/// Refusals as a purchase's: 403 `BLACKLISTED`; 409 `SOLD_OUT`, `SALE_NOT_STARTED`, `SALE_ENDED`, `SALE_PAUSED`,
/// `SALE_DRAINING`; 429 `RATE_LIMITED`.
#[utoipa::path(post, path = "/api/v1/products/{id}/token", tag = "sales",
    params(("id" = ProductId, Path, description = "The product.")),
    responses(
        (status = 200, description = "A token for one purchase of the product", body = IssuedToken),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = TooManyRequests),
    ),
    security(("bearer" = [])))]
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

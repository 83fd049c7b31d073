//! The admin's sale controls: restock a product, move its window, warm it up before it opens, and the switch over
//! every sale. (A product's own switch — pause, resume, drain — is in `admin`.) Bodies are parsed into domain
//! types first, so bad input is a 400 that changes nothing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::reply::Response;
use warp::Reply;

use super::auth::Caller;
use super::extract::segment;
use super::problem::{
    BadRequest, Forbidden, LengthRequired, NotFound, PayloadTooLarge, Problem, RequestTimeout, Unauthorized,
    Unavailable,
};
use super::AppState;
use crate::actors::{ProductSummary, RestockError, Warmed};
use crate::domain::{ProductId, RestockUnits, SaleState, SaleWindow, Timestamp};

/// Units to add to a sale.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    units: RestockUnits,
}

/// A restock, durable, and the stock after it.
#[derive(Serialize, ToSchema)]
struct Restocked {
    product_id: ProductId,
    units: RestockUnits,
    stock_total: u64,
    available: u64,
}

/// `POST /api/v1/admin/products/{id}/restock`: answered once the restock is durable, with the stock after it. 400
/// past a sale's stock with its restocks, 1,000,000,000 (nothing added); 503 if the journal refused it (nothing added,
/// ever).
#[utoipa::path(post, path = "/api/v1/admin/products/{id}/restock", tag = "admin: sales",
    params(("id" = ProductId, Path, description = "The product.")),
    request_body = Restock,
    responses(
        (status = 200, description = "Restocked", body = Restocked),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn restock(state: Arc<AppState>, id: String, _: Caller, body: Restock) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    match state.engine.restock(id, body.units).await? {
        Ok(stock) => {
            let available = state.engine.product(id).map_or(0, |product| product.available);
            let body = Restocked { product_id: id, units: body.units, stock_total: stock, available };
            Ok(warp::reply::json(&body).into_response())
        }
        Err(err @ RestockError::TooMuch { max, .. }) => {
            Err(Problem::invalid(err.to_string()).with("field", "units").with("max_stock", max))
        }
        Err(err @ RestockError::Unavailable) => Err(Problem::unavailable(err.to_string())),
    }
}

/// A sale's new window.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    starts_at: Timestamp,
    ends_at: Timestamp,
}

/// `PUT /api/v1/admin/products/{id}/window`: the next purchase and the live feed go by the new window. 400 if the end
/// is not after the start or is in the past.
#[utoipa::path(put, path = "/api/v1/admin/products/{id}/window", tag = "admin: sales",
    params(("id" = ProductId, Path, description = "The product.")),
    request_body = NewWindow,
    responses(
        (status = 200, description = "The product, with its new window", body = ProductSummary),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn window(state: Arc<AppState>, id: String, _: Caller, body: NewWindow) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    let window = SaleWindow::reschedule(body.starts_at, body.ends_at, Timestamp::now())?;
    state.engine.reschedule(id, window).await?;
    let product = state.engine.product(id).ok_or_else(|| Problem::not_found("no such product"))?;
    Ok(warp::reply::json(&product).into_response())
}

/// What a warm-up made ready.
#[derive(Serialize, ToSchema)]
struct Preheated {
    product_id: ProductId,
    warmed: Warmed,
}

/// `POST /api/v1/admin/products/{id}/preheat`: the product's shards are made ready for the crowd now.
#[utoipa::path(post, path = "/api/v1/admin/products/{id}/preheat", tag = "admin: sales",
    params(("id" = ProductId, Path, description = "The product.")),
    responses(
        (status = 200, description = "Warmed", body = Preheated),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn preheat(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    let warmed = state.engine.preheat(id).await?;
    Ok(warp::reply::json(&Preheated { product_id: id, warmed }).into_response())
}

/// The global switch as an admin sets it: open or paused (draining is a product's alone).
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalSwitch {
    /// `open` or `paused` (a `SaleState`, but `draining` is a product's alone).
    #[schema(value_type = String, pattern = "^(open|paused)$")]
    state: SaleState,
}

/// `GET /api/v1/admin/sale`: the switch over every sale.
#[utoipa::path(get, path = "/api/v1/admin/sale", tag = "admin: sales",
    responses(
        (status = 200, description = "The switch over every sale", body = GlobalSwitch),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
    security(("bearer" = [])))]
pub async fn global(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&GlobalSwitch { state: state.engine.global_sale() }).into_response())
}

/// `PUT /api/v1/admin/sale`: every sale paused or opened at once (a product's own switch still holds). 400 for
/// `draining`, which is a product's alone.
#[utoipa::path(put, path = "/api/v1/admin/sale", tag = "admin: sales",
    request_body = GlobalSwitch,
    responses(
        (status = 200, description = "The switch as set", body = GlobalSwitch),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn set_global(state: Arc<AppState>, _: Caller, body: GlobalSwitch) -> Result<Response, Problem> {
    if body.state == SaleState::Draining {
        return Err(Problem::invalid("state: must be \"open\" or \"paused\"").with("field", "state"));
    }
    let sale = state.engine.set_global_sale(body.state).await?;
    Ok(warp::reply::json(&GlobalSwitch { state: sale }).into_response())
}

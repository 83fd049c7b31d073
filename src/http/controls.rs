//! The admin's sale controls: restock a product, move its window, warm it up before it opens, and the switch over
//! every sale. (A product's own switch — pause, resume, drain — is in `admin`.) Bodies are parsed into domain
//! types first, so bad input is a 400 that changes nothing.

use std::sync::Arc;

use serde::Deserialize;
use warp::reply::Response;
use warp::Reply;

use super::auth::Caller;
use super::extract::segment;
use super::problem::Problem;
use super::AppState;
use crate::actors::RestockError;
use crate::domain::{ProductId, RestockUnits, SaleState, SaleWindow, Timestamp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    units: RestockUnits,
}

/// `POST /api/v1/admin/products/{id}/restock`: answered once the restock is durable, with the stock after it.
pub async fn restock(state: Arc<AppState>, id: String, _: Caller, body: Restock) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    match state.engine.restock(id, body.units).await? {
        Ok(stock) => {
            let available = state.engine.product(id).map_or(0, |product| product.available);
            let body = serde_json::json!({
                "product_id": id,
                "units": body.units,
                "stock_total": stock,
                "available": available,
            });
            Ok(warp::reply::json(&body).into_response())
        }
        Err(err @ RestockError::TooMuch { max, .. }) => {
            Err(Problem::invalid(err.to_string()).with("field", "units").with("max_stock", max))
        }
        Err(err @ RestockError::Unavailable) => Err(Problem::unavailable(err.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    starts_at: Timestamp,
    ends_at: Timestamp,
}

/// `PUT /api/v1/admin/products/{id}/window`: the next purchase and the live feed go by the new window.
pub async fn window(state: Arc<AppState>, id: String, _: Caller, body: NewWindow) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    let window = SaleWindow::reschedule(body.starts_at, body.ends_at, Timestamp::now())?;
    state.engine.reschedule(id, window).await?;
    let product = state.engine.product(id).ok_or_else(|| Problem::not_found("no such product"))?;
    Ok(warp::reply::json(&product).into_response())
}

/// `POST /api/v1/admin/products/{id}/preheat`: the product's shards are made ready for the crowd now.
pub async fn preheat(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    let warmed = state.engine.preheat(id).await?;
    Ok(warp::reply::json(&serde_json::json!({ "product_id": id, "warmed": warmed })).into_response())
}

/// The global switch as an admin sets it: open or paused (draining is a product's alone).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalSwitch {
    state: SaleState,
}

/// `GET /api/v1/admin/sale`.
pub async fn global(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&serde_json::json!({ "state": state.engine.global_sale() })).into_response())
}

/// `PUT /api/v1/admin/sale`: every sale paused or opened at once (a product's own switch still holds).
pub async fn set_global(state: Arc<AppState>, _: Caller, body: GlobalSwitch) -> Result<Response, Problem> {
    if body.state == SaleState::Draining {
        return Err(Problem::invalid("state: must be \"open\" or \"paused\"").with("field", "state"));
    }
    let sale = state.engine.set_global_sale(body.state).await?;
    Ok(warp::reply::json(&serde_json::json!({ "state": sale })).into_response())
}

//! Liveness and readiness for orchestrators and load balancers.

use warp::reply::Response;
use warp::Reply;

use super::problem::Problem;
use super::AppState;

/// The process answers HTTP. Deliberately does nothing else: it is also the bench's baseline.
pub async fn healthz() -> Result<Response, Problem> {
    Ok(warp::reply::json(&serde_json::json!({ "status": "ok" })).into_response())
}

/// The actors run and the database answers: send traffic here.
pub async fn readyz(state: AppState) -> Result<Response, Problem> {
    if state.engine.is_ready().await {
        Ok(warp::reply::json(&serde_json::json!({ "status": "ready" })).into_response())
    } else {
        Err(Problem::unavailable("not ready"))
    }
}

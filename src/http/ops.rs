//! Liveness and readiness for orchestrators and load balancers.

use std::sync::Arc;

use warp::reply::Response;
use warp::Reply;

use super::problem::Problem;
use super::AppState;

/// The process answers HTTP. Deliberately does nothing else: it is also the bench's baseline.
pub async fn healthz() -> Result<Response, Problem> {
    Ok(warp::reply::json(&serde_json::json!({ "status": "ok" })).into_response())
}

/// The actors run and the database answers: send traffic here. The snapshot store's state is reported but does not
/// decide readiness, since sales go on without it.
pub async fn readyz(state: Arc<AppState>) -> Result<Response, Problem> {
    let snapshots = state.engine.snapshot_health().await;
    if state.engine.is_ready().await {
        Ok(warp::reply::json(&serde_json::json!({ "status": "ready", "snapshots": snapshots })).into_response())
    } else {
        Err(Problem::unavailable("not ready").with("snapshots", snapshots))
    }
}

//! Liveness and readiness for orchestrators and load balancers.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;
use warp::reply::Response;
use warp::Reply;

use super::problem::{Problem, Unavailable};
use super::AppState;
use crate::actors::SnapshotHealth;

/// The liveness answer.
#[derive(Serialize, ToSchema)]
struct Alive {
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

/// The readiness answer.
#[derive(Serialize, ToSchema)]
struct Ready {
    #[schema(pattern = "^ready$")]
    status: &'static str,
    snapshots: SnapshotHealth,
}

/// The process answers HTTP. Deliberately does nothing else: it is also the bench's baseline.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = Alive)))]
pub async fn healthz() -> Result<Response, Problem> {
    Ok(warp::reply::json(&Alive { status: "ok" }).into_response())
}

/// The actors run and the database answers: send traffic here. The snapshot store's state is reported but does not
/// decide readiness, since sales go on without it (a 503 carries it as `snapshots`).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready: the actor tree runs, the journal takes appends, the database answers",
            body = Ready),
        (status = 503, response = Unavailable),
    ))]
pub async fn readyz(state: Arc<AppState>) -> Result<Response, Problem> {
    let snapshots = state.engine.snapshot_health().await;
    if state.engine.is_ready().await {
        Ok(warp::reply::json(&Ready { status: "ready", snapshots }).into_response())
    } else {
        Err(Problem::unavailable("not ready").with("snapshots", snapshots))
    }
}

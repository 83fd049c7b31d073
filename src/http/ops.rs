//! Liveness and readiness for orchestrators and load balancers, and the metrics Prometheus scrapes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;
use warp::reply::Response;
use warp::Reply;

use super::problem::{Problem, Unavailable};
use super::AppState;
use crate::actors::SnapshotHealth;
use crate::metrics::CONTENT_TYPE;

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

/// The shortest time between two samplings of the actors: a scrape within it shows the last sample. Sampling asks
/// every product and walks the actor tree, so however often `/metrics` is called — by several Prometheus replicas
/// or by someone hammering it — the actors are asked at most once a second.
const CENSUS_EVERY: Duration = Duration::from_secs(1);

/// When the actors were last sampled; one sampling at a time.
#[derive(Default)]
pub struct Scrapes {
    last: tokio::sync::Mutex<Option<Instant>>,
}

/// Every metric in Prometheus's text format: counters and histograms as recorded, and a fresh sample of what only
/// the actors know (units by state and the ledger invariant per product, mailbox depths, projector lag, dead
/// letters pending, restarts, readiness).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "The metrics, in Prometheus's text exposition format",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 503, response = Unavailable),
    ))]
pub async fn metrics(state: Arc<AppState>, scrapes: Arc<Scrapes>) -> Result<Response, Problem> {
    {
        let mut last = scrapes.last.lock().await;
        if last.is_none_or(|at| at.elapsed() >= CENSUS_EVERY) {
            state.metrics.census.record(&state.engine.census().await);
            *last = Some(Instant::now());
        }
    }
    let text = state.metrics.render().map_err(|err| {
        tracing::warn!(error = %err, "the metrics could not be rendered");
        Problem::unavailable("the metrics could not be rendered")
    })?;
    Ok(warp::reply::with_header(text, warp::http::header::CONTENT_TYPE, CONTENT_TYPE).into_response())
}

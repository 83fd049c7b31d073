//! Paying for an order, the payment provider's callback, and what an admin needs when payments go wrong: the payment
//! and compensation jobs with every attempt, the dead letters (listed, exported as CSV, replayed), and the knobs of
//! the simulated provider.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::auth::Caller;
use super::extract::{json, segment};
use super::problem::{
    BadRequest, Conflict, Forbidden, LengthRequired, NotFound, PayloadTooLarge, Problem, RequestTimeout, Unauthorized,
    Unavailable,
};
use super::AppState;
use crate::actors::{JobState, JobView, JobsView, PaymentStatus, ReprocessError};
use crate::domain::{
    CallbackRefusal, DeadLetter, DeadLetterId, IdempotencyKey, JobKind, LetterFilter, LetterStatus, Order, OrderId,
    PaymentCallback, Timestamp,
};
use crate::gateway::{SimulatorKnobs, SimulatorView};

/// Dead letters one page lists unless asked for fewer, and at most.
const PAGE: u32 = 100;
const MAX_PAGE: u32 = 1_000;

/// Starts paying the caller's reserved order: `202` with the order and its payment job, whose outcome the provider
/// reports later (the order turns `paid`); `200` if it is paid already. Paying is one job per order, so asking
/// again, with or without the same `Idempotency-Key`, never charges twice. 409 `ORDER_STATUS_CONFLICT` if the order
/// expired or was cancelled.
#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "orders",
    params(
        ("id" = OrderId, Path, description = "The order."),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header,
            description = "Checked, then unneeded: an order is paid by one job whatever the key."),
    ),
    responses(
        (status = 200, description = "Paid already", body = PaymentStatus),
        (status = 202, description = "The payment job is under way; the provider's callback makes the order paid",
            body = PaymentStatus),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn pay(state: Arc<AppState>, id: String, caller: Caller, key: Option<String>) -> Result<Response, Problem> {
    let id: OrderId = segment(&id)?;
    key.map(IdempotencyKey::try_from).transpose()?;
    let status = state.engine.pay(id, caller.user).await?;
    let under_way =
        status.payment.as_ref().is_some_and(|job| matches!(job.state, JobState::Trying | JobState::Waiting));
    let code = if under_way { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok(warp::reply::with_status(warp::reply::json(&status), code).into_response())
}

/// The provider's callback. Believed only if signed (`Seckill-Timestamp`, `Seckill-Signature`) within the
/// tolerance: otherwise `401`, and nothing changes. A repeat of a processed callback answers `200` and changes
/// nothing; an order the service does not know is `404`. The codes of a 401: `CALLBACK_UNSIGNED`,
/// `CALLBACK_SIGNATURE_INVALID`, `CALLBACK_STALE` (more than `webhook_tolerance_secs` from the service's clock).
#[utoipa::path(post, path = "/api/v1/payments/callback", tag = "payments",
    params(
        ("Seckill-Timestamp" = String, Header, description = "When the provider sent it, in Unix seconds."),
        ("Seckill-Signature" = String, Header,
            description = "`v1=` and the hex HMAC-SHA256, under the webhook secret, of `{timestamp}.{body}`."),
    ),
    request_body = PaymentCallback,
    responses(
        (status = 200, description = "The order: paid, or a refund under way if it had ended; a repeat changes nothing",
            body = Order),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ))]
pub async fn callback(
    state: Arc<AppState>,
    timestamp: Option<String>,
    signature: Option<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    state.webhook.verify(timestamp.as_deref(), signature.as_deref(), &body, Timestamp::now()).map_err(refused)?;
    let callback: PaymentCallback = json(&body)?;
    let order = state.engine.payment_callback(callback).await?;
    Ok(warp::reply::json(&order).into_response())
}

fn refused(refusal: CallbackRefusal) -> Problem {
    let code = match refusal {
        CallbackRefusal::Unsigned => "CALLBACK_UNSIGNED",
        CallbackRefusal::BadSignature => "CALLBACK_SIGNATURE_INVALID",
        CallbackRefusal::Stale => "CALLBACK_STALE",
    };
    Problem::new(StatusCode::UNAUTHORIZED, code, refusal.to_string())
}

/// Payment jobs under way, then the latest finished, each with every attempt; the supervisor's restarts.
#[utoipa::path(get, path = "/api/v1/admin/payments", tag = "admin: payments",
    responses(
        (status = 200, description = "The payment jobs", body = JobsView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn payment_jobs(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.payment_jobs().await?).into_response())
}

/// Refund jobs under way, then the latest finished, each with every attempt; the supervisor's restarts.
#[utoipa::path(get, path = "/api/v1/admin/compensations", tag = "admin: payments",
    responses(
        (status = 200, description = "The refund jobs", body = JobsView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn compensation_jobs(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.compensation_jobs().await?).into_response())
}

/// The simulated provider's knobs and what it did; 404 if another provider is configured.
#[utoipa::path(get, path = "/api/v1/admin/payments/simulator", tag = "admin: payments",
    responses(
        (status = 200, description = "The knobs and the counts", body = SimulatorView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = [])))]
pub async fn simulator(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    let simulator = state.engine.simulator().ok_or_else(no_simulator)?;
    Ok(warp::reply::json(&simulator.view()).into_response())
}

/// Sets every knob of the simulated provider at once.
#[utoipa::path(put, path = "/api/v1/admin/payments/simulator", tag = "admin: payments",
    request_body = SimulatorKnobs,
    responses(
        (status = 200, description = "The knobs as set, and the counts", body = SimulatorView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
    ),
    security(("bearer" = [])))]
pub async fn set_simulator(state: Arc<AppState>, _: Caller, knobs: SimulatorKnobs) -> Result<Response, Problem> {
    if !(0.0..=1.0).contains(&knobs.failure_rate) {
        return Err(Problem::invalid("failure_rate: must be between 0 and 1").with("field", "failure_rate"));
    }
    let simulator = state.engine.simulator().ok_or_else(no_simulator)?;
    simulator.set(knobs);
    Ok(warp::reply::json(&simulator.view()).into_response())
}

fn no_simulator() -> Problem {
    Problem::not_found("the configured payment provider is not the simulated one")
}

/// `?kind=payment|refund&status=pending|reprocessed&after=ID&limit=N`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LetterQuery {
    /// Only dead letters of this kind.
    #[param(value_type = Option<JobKind>)]
    kind: Option<String>,
    /// Only those waiting (`pending`) or replayed already (`reprocessed`).
    #[param(value_type = Option<String>, pattern = "^(pending|reprocessed)$")]
    status: Option<String>,
    /// Only those after this id: the previous page's `next_after`.
    #[param(value_type = Option<DeadLetterId>)]
    after: Option<String>,
    /// At most this many: 1 to 1,000 (default 100) in a page; 1 or more in the CSV (default all).
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
}

/// A page of dead letters.
#[derive(Serialize, ToSchema)]
struct LetterPage {
    items: Vec<DeadLetter>,
    /// Pass as `after` for the next page; null on the last.
    next_after: Option<DeadLetterId>,
}

impl LetterQuery {
    fn filter(&self, max: u32) -> Result<LetterFilter, Problem> {
        let kind = self.kind.as_deref().map(JobKind::parse).transpose()?;
        let status = match self.status.as_deref() {
            None => None,
            Some("pending") => Some(LetterStatus::Pending),
            Some("reprocessed") => Some(LetterStatus::Reprocessed),
            Some(_) => {
                return Err(Problem::invalid("status: must be pending or reprocessed").with("field", "status"));
            }
        };
        let after = self.after.as_deref().map(segment::<DeadLetterId>).transpose()?;
        let limit = match self.limit.as_deref() {
            None => max.min(PAGE),
            Some(text) => match text.parse::<u32>() {
                Ok(limit) if (1..=max).contains(&limit) => limit,
                _ => return Err(Problem::invalid(format!("limit: must be from 1 to {max}")).with("field", "limit")),
            },
        };
        Ok(LetterFilter { kind, status, after, limit })
    }
}

/// A page of dead letters, oldest first; `next_after` continues the listing.
#[utoipa::path(get, path = "/api/v1/admin/dead-letters", tag = "admin: payments",
    params(LetterQuery),
    responses(
        (status = 200, description = "A page of dead letters", body = LetterPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn dead_letters(state: Arc<AppState>, _: Caller, query: LetterQuery) -> Result<Response, Problem> {
    let filter = query.filter(MAX_PAGE)?;
    let letters = state.engine.dead_letters(filter).await?;
    let next_after = (letters.len() == filter.limit as usize).then(|| letters.last().map(|letter| letter.id)).flatten();
    Ok(warp::reply::json(&LetterPage { items: letters, next_after }).into_response())
}

/// Every dead letter the filter selects, as CSV.
#[utoipa::path(get, path = "/api/v1/admin/dead-letters.csv", tag = "admin: payments",
    params(LetterQuery),
    responses(
        (status = 200, description = "The dead letters as CSV, with a header row", body = String,
            content_type = "text/csv; charset=utf-8"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn dead_letters_csv(state: Arc<AppState>, _: Caller, query: LetterQuery) -> Result<Response, Problem> {
    let mut filter = query.filter(u32::MAX)?;
    let mut left = if query.limit.is_some() { filter.limit } else { u32::MAX };
    let mut csv =
        String::from("id,kind,order_id,product_id,user_id,amount_cents,reason,attempts,created_at,reprocessed_at\n");
    while left > 0 {
        let page = LetterFilter { limit: left.min(MAX_PAGE), ..filter };
        let letters = state.engine.dead_letters(page).await?;
        for letter in &letters {
            csv.push_str(&csv_row(letter));
        }
        left -= letters.len() as u32;
        match letters.last() {
            Some(last) if letters.len() == page.limit as usize => filter.after = Some(last.id),
            _ => break,
        }
    }
    let mut response = csv.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"dead-letters.csv\""));
    Ok(response)
}

fn csv_row(letter: &DeadLetter) -> String {
    let attempts = serde_json::to_string(&letter.attempts).unwrap_or_default();
    let fields = [
        letter.id.to_string(),
        letter.kind.as_str().to_owned(),
        letter.payment.order_id.to_string(),
        letter.payment.product_id.to_string(),
        letter.payment.user_id.to_string(),
        letter.payment.amount_cents.to_string(),
        letter.reason.clone(),
        attempts,
        letter.created_at.to_rfc3339(),
        letter.reprocessed_at.map(Timestamp::to_rfc3339).unwrap_or_default(),
    ];
    let mut row = fields.iter().map(|field| csv_field(field)).collect::<Vec<_>>().join(",");
    row.push('\n');
    row
}

/// A field quoted when it must be (RFC 4180), and never read as a formula by a spreadsheet.
fn csv_field(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@']) && field.parse::<f64>().is_err() {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}

/// Replays a pending dead letter: `202` with the job started again; 409 `DEAD_LETTER_REPROCESSED` if it was replayed
/// already.
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/{id}/reprocess", tag = "admin: payments",
    params(("id" = DeadLetterId, Path, description = "The dead letter.")),
    responses(
        (status = 202, description = "The job, started again with fresh attempts", body = JobView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn reprocess(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id: DeadLetterId = segment(&id)?;
    let job = state.engine.reprocess(id).await.map_err(|err| match err {
        ReprocessError::NotFound => Problem::not_found("no such dead letter"),
        ReprocessError::AlreadyReprocessed => {
            Problem::new(StatusCode::CONFLICT, "DEAD_LETTER_REPROCESSED", err.to_string())
        }
        ReprocessError::Unavailable => Problem::unavailable(err.to_string()),
        ReprocessError::Engine(err) => err.into(),
    })?;
    Ok(warp::reply::with_status(warp::reply::json(&job), StatusCode::ACCEPTED).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_they_must_be_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"no\""), "\"say \"\"no\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-12"), "-12");
    }
}

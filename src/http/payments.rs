//! Paying for an order, the payment provider's callback, and what an admin needs when payments go wrong: the payment
//! and compensation jobs with every attempt, the dead letters (listed, exported as CSV, replayed), and the knobs of
//! the simulated provider.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::auth::Caller;
use super::extract::{json, segment};
use super::problem::Problem;
use super::AppState;
use crate::actors::{JobState, ReprocessError};
use crate::domain::{
    CallbackRefusal, DeadLetter, DeadLetterId, IdempotencyKey, JobKind, LetterFilter, LetterStatus, OrderId,
    PaymentCallback, Timestamp,
};
use crate::gateway::SimulatorKnobs;

/// Dead letters one page lists unless asked for fewer, and at most.
const PAGE: u32 = 100;
const MAX_PAGE: u32 = 1_000;

/// Starts paying the caller's reserved order: `202` with the order and its payment job, whose outcome the provider
/// reports later (the order turns `paid`); `200` if it is paid already. Paying is one job per order, so asking
/// again, with or without the same `Idempotency-Key`, never charges twice.
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
/// nothing; an order the service does not know is `404`.
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

pub async fn payment_jobs(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.payment_jobs().await?).into_response())
}

pub async fn compensation_jobs(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.compensation_jobs().await?).into_response())
}

pub async fn simulator(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    let simulator = state.engine.simulator().ok_or_else(no_simulator)?;
    Ok(warp::reply::json(&simulator.view()).into_response())
}

/// Sets every knob of the simulated provider at once.
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterQuery {
    kind: Option<String>,
    status: Option<String>,
    after: Option<String>,
    limit: Option<String>,
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
pub async fn dead_letters(state: Arc<AppState>, _: Caller, query: LetterQuery) -> Result<Response, Problem> {
    let filter = query.filter(MAX_PAGE)?;
    let letters = state.engine.dead_letters(filter).await?;
    let next_after = (letters.len() == filter.limit as usize).then(|| letters.last().map(|letter| letter.id)).flatten();
    let page = serde_json::json!({ "items": letters, "next_after": next_after });
    Ok(warp::reply::json(&page).into_response())
}

/// Every dead letter the filter selects, as CSV.
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

/// Replays a pending dead letter: `202` with the job started again.
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

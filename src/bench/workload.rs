//! What the workers send: one purchase per prepared buyer, or `GET /healthz` for the baseline. Every answer becomes
//! an outcome label — the status plus the problem's `code` when there is one, or the kind of transport failure.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::api::{Buyer, ProblemBody};
use super::audit::Accepted;
use super::connection::{Connection, Endpoint};
use super::load::{Outcome, Until, Workload};

/// Units each buyer asks for.
pub(super) const QUANTITY: u64 = 1;

#[derive(Serialize)]
struct PurchaseBody {
    quantity: u64,
}

#[derive(Deserialize)]
struct Receipt {
    order_id: String,
}

/// One purchase per buyer, each with an idempotency key of its own (the ticket: a buyer sends one purchase). What
/// is the same for every request of a buyer (the `Authorization` header) or of the phase (the body) is built once,
/// before the clock starts.
pub(super) struct Purchase {
    endpoint: Endpoint,
    body: Bytes,
    buyers: Vec<Prepared>,
}

struct Prepared {
    user_id: i64,
    authorization: HeaderValue,
}

impl Purchase {
    pub fn new(endpoint: Endpoint, buyers: Vec<Buyer>) -> Result<Self> {
        let body = serde_json::to_vec(&PurchaseBody { quantity: QUANTITY }).context("encoding the purchase")?;
        let buyers = buyers
            .into_iter()
            .map(|buyer| {
                let mut authorization = HeaderValue::try_from(format!("Bearer {}", buyer.access_token))
                    .context("a buyer's token is not a valid header value")?;
                authorization.set_sensitive(true);
                Ok(Prepared { user_id: buyer.user_id, authorization })
            })
            .collect::<Result<_>>()?;
        Ok(Self { endpoint, body: Bytes::from(body), buyers })
    }

    /// One ticket per buyer.
    pub fn until(&self) -> Until {
        Until::Tickets(self.buyers.len())
    }
}

impl Workload for Purchase {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn send(&self, connection: &mut Connection, ticket: usize) -> Outcome {
        // Tickets stay below `until()`'s count, the number of buyers.
        let buyer = &self.buyers[ticket];
        let request = self
            .endpoint
            .request(Method::POST)
            .header(AUTHORIZATION, buyer.authorization.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("idempotency-key", HeaderValue::from(ticket))
            .body(Full::new(self.body.clone()));
        match exchange(connection, request).await {
            Ok((status, body)) if status == StatusCode::ACCEPTED => receipt(&body, buyer.user_id),
            Ok((status, body)) => Outcome::answered(status, status_label(status, &body)),
            Err(label) => Outcome::failed(label),
        }
    }
}

/// `GET /healthz`, the cheapest request the service answers.
pub(super) struct Healthz {
    endpoint: Endpoint,
}

impl Healthz {
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

impl Workload for Healthz {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn send(&self, connection: &mut Connection, _ticket: usize) -> Outcome {
        match exchange(connection, self.endpoint.request(Method::GET).body(Full::new(Bytes::new()))).await {
            Ok((status, body)) => Outcome::answered(status, status_label(status, &body)),
            Err(label) => Outcome::failed(label),
        }
    }
}

/// Sends a built request on `connection`; a request that cannot even be built is an outcome of its own.
async fn exchange(
    connection: &mut Connection,
    request: hyper::http::Result<Request<Full<Bytes>>>,
) -> Result<(StatusCode, Bytes), String> {
    let request = request.map_err(|_| "error: request".to_owned())?;
    connection.exchange(request).await
}

/// A 202's outcome: the order it names, won by `user_id`.
fn receipt(body: &[u8], user_id: i64) -> Outcome {
    match serde_json::from_slice::<Receipt>(body) {
        Ok(receipt) => Outcome {
            accepted: Some(Accepted { order_id: receipt.order_id, user_id }),
            ..Outcome::answered(StatusCode::ACCEPTED, StatusCode::ACCEPTED.as_str().to_owned())
        },
        Err(_) => {
            Outcome::answered(StatusCode::ACCEPTED, format!("{} without order_id", StatusCode::ACCEPTED.as_str()))
        }
    }
}

/// `409 SOLD_OUT` for a problem, the bare status otherwise.
fn status_label(status: StatusCode, body: &[u8]) -> String {
    match ProblemBody::parse(body) {
        Some(problem) => format!("{} {}", status.as_str(), problem.code),
        None => status.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_status_and_the_problem_code() {
        let sold_out = br#"{"type":"/problems/sold-out","status":409,"code":"SOLD_OUT"}"#;
        assert_eq!(status_label(StatusCode::CONFLICT, sold_out), "409 SOLD_OUT");
        assert_eq!(status_label(StatusCode::OK, br#"{"status":"ok"}"#), "200");
        assert_eq!(status_label(StatusCode::BAD_GATEWAY, b"<html>"), "502");
    }

    #[test]
    fn a_receipt_carries_the_order_to_its_buyer() {
        let won = receipt(br#"{"order_id":"0190-abc","status":"reserved","pay_before":"x"}"#, 42);
        assert_eq!(won.label, "202");
        assert_eq!(won.accepted, Some(Accepted { order_id: "0190-abc".into(), user_id: 42 }));
        let garbled = receipt(b"{}", 42);
        assert_eq!((garbled.label.as_str(), garbled.accepted), ("202 without order_id", None));
    }
}

//! Errors as RFC 9457 `application/problem+json`, each with a stable `code` clients can switch on. Every way a
//! request can fail ends here, including warp's own rejections, so no client ever sees a bare text error.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
use utoipa::openapi::{Ref, RefOr, ResponseBuilder, Schema};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::limits::Refused;
use crate::accounts::{AccountsError, Blacklisted, HashError};
use crate::actors::{EngineError, OrderStepError, PurchaseError};
use crate::domain::ParseError;

/// The media type of every refusal.
pub const PROBLEM: &str = "application/problem+json";

#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after_secs: Option<u64>,
    extra: Map<String, Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), retry_after_secs: None, extra: Map::new() }
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.extra.insert(key.to_owned(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", detail)
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", "this needs the admin role")
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", detail).retry_after(1)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// A failure of our own backends: logged in full here, described only vaguely to the client.
    pub fn backend(err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "backend failure while serving a request");
        Self::unavailable("a backend is unavailable; try again shortly")
    }
}

impl warp::reject::Reject for Problem {}

impl Reply for Problem {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = Body {
            kind: format!("/problems/{}", self.code.to_ascii_lowercase().replace('_', "-")),
            title,
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
            extra: &self.extra,
        };
        let mut response = warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<Refused> for Problem {
    fn from(refused: Refused) -> Self {
        let detail = match refused.scope {
            "user" => "too many requests from this account; slow down",
            "ip" => "too many requests from this address; slow down",
            _ => "the service is taking all the requests it can; try again shortly",
        };
        let secs = refused.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", detail)
            .with("scope", refused.scope)
            .retry_after(secs)
    }
}

impl From<ParseError> for Problem {
    fn from(err: ParseError) -> Self {
        Problem::invalid(err.to_string()).with("field", err.field())
    }
}

impl From<PurchaseError> for Problem {
    fn from(err: PurchaseError) -> Self {
        let conflict = |code| Problem::new(StatusCode::CONFLICT, code, err.to_string());
        match &err {
            PurchaseError::NotFound => Problem::not_found("no such product"),
            PurchaseError::NotStarted { starts_at } => conflict("SALE_NOT_STARTED").with("starts_at", starts_at),
            PurchaseError::Ended => conflict("SALE_ENDED"),
            PurchaseError::SalePaused => conflict("SALE_PAUSED"),
            PurchaseError::SaleDraining => conflict("SALE_DRAINING"),
            PurchaseError::SoldOut => conflict("SOLD_OUT"),
            PurchaseError::InsufficientStock { available } => {
                conflict("INSUFFICIENT_STOCK").with("available", available)
            }
            PurchaseError::LimitExceeded { limit, held, orders } => {
                conflict("LIMIT_EXCEEDED").with("limit", limit).with("held", held).with("orders", orders.as_slice())
            }
            PurchaseError::Unavailable => Problem::unavailable(err.to_string()),
            PurchaseError::KeyReused => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED", err.to_string())
            }
            PurchaseError::KeyInFlight => conflict("IDEMPOTENCY_KEY_IN_FLIGHT").retry_after(1),
            PurchaseError::Pass(refusal) => Problem::new(StatusCode::FORBIDDEN, refusal.code(), refusal.to_string()),
        }
    }
}

impl From<OrderStepError> for Problem {
    fn from(err: OrderStepError) -> Self {
        match err {
            OrderStepError::NotFound => Problem::not_found("no such order"),
            OrderStepError::Conflict(status) => {
                Problem::new(StatusCode::CONFLICT, "ORDER_STATUS_CONFLICT", err.to_string())
                    .with("order_status", status)
            }
            OrderStepError::Unavailable => Problem::unavailable(err.to_string()),
        }
    }
}

impl From<EngineError> for Problem {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::NotFound => Problem::not_found("no such product"),
            other => Problem::backend(&other),
        }
    }
}

impl From<AccountsError> for Problem {
    fn from(err: AccountsError) -> Self {
        match err {
            AccountsError::UsernameTaken => Problem::new(StatusCode::CONFLICT, "USERNAME_TAKEN", err.to_string()),
            AccountsError::InvalidCredentials => Problem::unauthorized(err.to_string()),
            AccountsError::InvalidCount { .. } => Problem::invalid(err.to_string()).with("field", "count"),
            AccountsError::InvalidPrefix(_) => Problem::invalid(err.to_string()).with("field", "prefix"),
            AccountsError::NoAccount => Problem::not_found("no such account"),
            AccountsError::Blacklisted(blacklisted) => blacklisted.into(),
            AccountsError::Hashing(HashError::Busy) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "LOGIN_BUSY",
                "too many logins at once; try again shortly",
            )
            .retry_after(1),
            AccountsError::Database(_) | AccountsError::Hashing(HashError::Failed) | AccountsError::NotAdmin(_) => {
                Problem::backend(&err)
            }
        }
    }
}

impl From<Blacklisted> for Problem {
    fn from(blacklisted: Blacklisted) -> Self {
        let detail = match blacklisted.subject.kind() {
            "user" => "this account may not buy or log in",
            _ => "this address may not buy or log in",
        };
        Problem::new(StatusCode::FORBIDDEN, "BLACKLISTED", detail)
            .with("scope", blacklisted.subject.kind())
            .with("until", blacklisted.end.until())
    }
}

/// Every stable `code` a problem may carry, for the OpenAPI document.
const CODES: &str =
    "`INVALID_INPUT` (400, with the offending `field` where there is one), `UNAUTHORIZED` (401), `JSON_TOO_DEEP` \
    (400), `FORBIDDEN` (403), `NOT_FOUND` (404), `METHOD_NOT_ALLOWED` (405), `BODY_TIMEOUT` (408), `LENGTH_REQUIRED` \
    (411), `PAYLOAD_TOO_LARGE` (413), `IDEMPOTENCY_KEY_REUSED` (422), `RATE_LIMITED` (429, with `scope`); 403: \
    `BLACKLISTED` (with `scope` and `until`), `SECKILL_TOKEN_REQUIRED`, `SECKILL_TOKEN_INVALID`, \
    `SECKILL_TOKEN_EXPIRED`, `SECKILL_TOKEN_USED`, `SECKILL_TOKEN_NOT_YOURS`; 409: `USERNAME_TAKEN`, `SOLD_OUT`, \
    `INSUFFICIENT_STOCK` (with `available`), `LIMIT_EXCEEDED` (with `limit`, `held` and `orders`, the buyer's orders \
    that use up the limit), `SALE_NOT_STARTED` (with `starts_at`), `SALE_ENDED`, `SALE_PAUSED`, `SALE_DRAINING`, \
    `IDEMPOTENCY_KEY_IN_FLIGHT`, `ORDER_STATUS_CONFLICT` (with `order_status`), `DEAD_LETTER_REPROCESSED`, \
    `ACTOR_NOT_KILLABLE`; 401 from the payment callback: `CALLBACK_UNSIGNED`, `CALLBACK_SIGNATURE_INVALID`, \
    `CALLBACK_STALE`; 503: `UNAVAILABLE`, `LOGIN_BUSY`, `LIVE_FULL`, and `TOO_MANY_CONNECTIONS` to a connection past \
    the connection caps (before any route).";

/// The schema of a problem as `into_response` writes it.
impl utoipa::PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let text = |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
        ObjectBuilder::new()
            .description(Some("An RFC 9457 problem: a refusal, with a stable `code` to switch on."))
            .property("type", text("`/problems/` and the code in kebab case, such as `/problems/sold-out`."))
            .property("title", text("The HTTP status's reason phrase."))
            .property("status", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(400)).maximum(Some(599)))
            .property("code", text(CODES).pattern(Some("^[A-Z][A-Z_]*$")))
            .property("detail", text("What was wrong, for a person."))
            .property("field", text("The part of the request that was wrong (`INVALID_INPUT`)."))
            .property(
                "scope",
                text("Which limit or ban refused the request: `user`, `ip`, `global`, `login_ip`, `login_user`."),
            )
            .required("type")
            .required("title")
            .required("status")
            .required("code")
            .required("detail")
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for Problem {}

/// The refusals an operation lists in the OpenAPI document, each a `Problem` as `application/problem+json`; which
/// codes an operation answers with is in its description.
macro_rules! refusals {
    ($($name:ident => $description:literal $(, $retry_after:literal)?;)*) => {
        $(
            pub struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                    let content = utoipa::openapi::Content::new(Some(Ref::from_schema_name("Problem")));
                    let response = ResponseBuilder::new().description($description).content(PROBLEM, content);
                    $(let response = response.header(
                        "Retry-After",
                        utoipa::openapi::HeaderBuilder::new()
                            .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                            .description(Some($retry_after))
                            .build(),
                    );)?
                    (stringify!($name), response.into())
                }
            }
        )*
    };
}

refusals! {
    BadRequest => "`INVALID_INPUT`: a parameter, header or body broke a rule (`JSON_TOO_DEEP`: a body nested deeper \
                   than 32 levels); nothing changed.";
    Unauthorized => "`UNAUTHORIZED`: no bearer token, or one that is invalid, expired or revoked.";
    Forbidden => "Not allowed: `FORBIDDEN` (not an admin), `BLACKLISTED`, or a seckill token refused.";
    NotFound => "`NOT_FOUND`: no such resource (or not the caller's).";
    Conflict => "The resource's state refuses the request; `code` says how. `IDEMPOTENCY_KEY_IN_FLIGHT` comes with \
                 `Retry-After`.", "Seconds to wait before asking again (`IDEMPOTENCY_KEY_IN_FLIGHT` only).";
    LengthRequired => "`LENGTH_REQUIRED`: send a `Content-Length`.";
    PayloadTooLarge => "`PAYLOAD_TOO_LARGE`: the body is over the configured limit.";
    RequestTimeout => "`BODY_TIMEOUT`: the body did not arrive whole within the configured time; the connection is \
                       closed and nothing changed.";
    UnprocessableEntity => "`IDEMPOTENCY_KEY_REUSED`: the key named an earlier request with another body.";
    TooManyRequests => "`RATE_LIMITED`: over a rate limit (`scope` says which); nothing was done.",
        "Seconds until the request would pass.";
    Unavailable => "A backend could not do it now; nothing was taken. Try again after `Retry-After`.",
        "Seconds to wait before trying again.";
}

/// Turns whatever warp rejected into a problem response.
pub async fn recover(rejection: Rejection) -> Result<Response, std::convert::Infallible> {
    let problem = if let Some(problem) = rejection.find::<Problem>() {
        if problem.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come: this connection carries nothing more.
            return Ok(closing(problem.clone()));
        }
        problem.clone()
    } else if rejection.is_not_found() {
        Problem::not_found("no such resource")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(closing(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the request body is too large",
        )));
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        return Ok(closing(Problem::new(
            StatusCode::LENGTH_REQUIRED,
            "LENGTH_REQUIRED",
            "send a Content-Length header",
        )));
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Problem::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "method not allowed on this resource")
    } else if let Some(header) = rejection.find::<warp::reject::InvalidHeader>() {
        Problem::invalid(format!("header {} is not valid", header.name()))
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        Problem::invalid("the query string is not valid for this resource")
    } else if let Some(header) = rejection.find::<warp::reject::MissingHeader>() {
        Problem::invalid(format!("header {} is missing", header.name()))
    } else {
        tracing::warn!(?rejection, "unexpected rejection");
        Problem::invalid("the request could not be understood")
    };
    Ok(problem.into_response())
}

/// A refusal sent before the request body was read: the body is still on the wire, so the connection cannot carry
/// another request, and the client must be told not to reuse it.
fn closing(problem: Problem) -> Response {
    let mut response = problem.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

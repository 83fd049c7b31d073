//! The OpenAPI 3.1 document of the HTTP surface, `GET /openapi.json`.
//!
//! A module of its own because the document is generated from the code, not written beside it, so it cannot drift
//! quietly: each handler carries its operation (`#[utoipa::path]`, on the function), every body's schema is derived
//! from the type serde reads or writes — in `domain` and `actors` too, where the parsed values describe themselves
//! by the rules their parsers enforce (`utoipa` is plain data with no web framework in it) — and every refusal is
//! one shared `Problem` schema and one response per status, in `problem`. This module only gathers them, adds the
//! bearer scheme, and renders the JSON once when the routes are built; serving it hands out the same bytes.

use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warp::filters::BoxedFilter;
use warp::http::header::CONTENT_TYPE;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::Filter;

use super::problem::{self, Problem};
use super::{admin, auth, controls, live, ops, orders, payments, read, sales};
use crate::domain::{DeadLetterId, IdempotencyKey, OrderId, ProductId, UserId};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Seckill",
        description = "A flash-sale service that sells every unit exactly once. Ids in paths are positive integers \
                       in canonical decimal (order ids are UUIDs). Every refusal is `application/problem+json` \
                       (RFC 9457) with a stable `code`. Every `GET` answers `HEAD` too."
    ),
    paths(
        ops::healthz,
        ops::readyz,
        auth::register,
        auth::login,
        auth::change_password,
        sales::list,
        sales::show,
        sales::purchase,
        sales::seckill_token,
        orders::mine,
        orders::one,
        orders::cancel,
        payments::pay,
        payments::callback,
        live::stock,
        live::orders,
        admin::create_product,
        admin::inspect,
        admin::product_orders,
        admin::switch_sale,
        controls::restock,
        controls::window,
        controls::preheat,
        controls::global,
        controls::set_global,
        admin::projector,
        admin::limits,
        admin::set_limits,
        admin::bulk_accounts,
        admin::revoke_tokens,
        admin::bans,
        admin::ban,
        admin::unban,
        admin::supervision,
        admin::actors,
        admin::actor,
        admin::kill_actor,
        payments::payment_jobs,
        payments::compensation_jobs,
        payments::simulator,
        payments::set_simulator,
        payments::dead_letters,
        payments::dead_letters_csv,
        payments::reprocess,
    ),
    components(
        schemas(Problem, ProductId, OrderId, UserId, DeadLetterId, IdempotencyKey, sales::PurchaseBody),
        responses(
            problem::BadRequest,
            problem::Unauthorized,
            problem::Forbidden,
            problem::NotFound,
            problem::Conflict,
            problem::LengthRequired,
            problem::PayloadTooLarge,
            problem::UnprocessableEntity,
            problem::TooManyRequests,
            problem::Unavailable,
        )
    ),
    modifiers(&Bearer),
    tags(
        (name = "sales", description = "Products with live stock, seckill tokens, and the purchase (the hot path)."),
        (name = "orders", description = "A buyer's orders: read, cancel, pay."),
        (name = "auth", description = "Accounts and tokens."),
        (name = "payments", description = "The payment provider's signed callback."),
        (name = "live", description = "WebSocket feeds: live stock, and a buyer's order changes."),
        (name = "admin: sales", description = "Create and run a sale: live views, switches, restocks, windows."),
        (name = "admin: accounts", description = "Rate limits, bans, token revocation, load-test accounts."),
        (name = "admin: actors", description = "The running actor tree and its supervisors."),
        (name = "admin: payments", description = "Payment and refund jobs, dead letters, the simulated provider."),
        (name = "ops", description = "Liveness and readiness."),
    )
)]
struct ApiDoc;

/// The bearer tokens `POST /api/v1/auth/login` issues.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("An access token from `POST /api/v1/auth/login` (HS256, issuer `seckill`)."))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document as JSON.
fn document() -> String {
    ApiDoc::openapi().to_json().expect("the OpenAPI document is plain data and always serialises")
}

/// `GET /openapi.json`, rendered here once.
pub fn routes() -> BoxedFilter<(Response,)> {
    let json = Bytes::from(document());
    warp::path!("openapi.json")
        .and(read())
        .map(move || {
            let mut response = Response::new(json.clone().into());
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        })
        .boxed()
}

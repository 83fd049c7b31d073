//! The OpenAPI 3.1 document of the HTTP surface (`GET /openapi.json`), and Swagger UI over it (`GET /docs/`).
//!
//! A module of its own because the document is generated from the code, not written beside it, so it cannot drift
//! quietly: each handler carries its operation (`#[utoipa::path]`, on the function), every body's schema is derived
//! from the type serde reads or writes — in `domain` and `actors` too, where the parsed values describe themselves
//! by the rules their parsers enforce (`utoipa` is plain data with no web framework in it) — and every refusal is
//! one shared `Problem` schema and one response per status, in `problem`. This module only gathers them, adds the
//! bearer scheme, and renders the JSON once when the routes are built; serving it hands out the same bytes.
//! Swagger UI's files are compiled into the binary (`utoipa-swagger-ui`'s `vendored` feature, and `debug-embed` so
//! that a debug build does not read them from the build directory either), so `/docs` loads nothing from elsewhere.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::Config;
use warp::filters::path::{FullPath, Tail};
use warp::filters::BoxedFilter;
use warp::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::problem::{self, Problem};
use super::{admin, auth, controls, live, ops, orders, payments, read, respond, sales};
use crate::domain::{DeadLetterId, IdempotencyKey, OrderId, ProductId, UserId};

/// Where the document is served, and where Swagger UI reads it.
const DOCUMENT: &str = "/openapi.json";

/// Swagger UI's scripts and styles from this origin only (it sets style attributes, and draws icons as data URLs);
/// its requests, "try it out" included, to this origin only.
const POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                      connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

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
        ops::metrics,
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
            problem::RequestTimeout,
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

/// The document as JSON; a failure (the document is plain data, so none is expected) is logged once and each
/// request for the document told 503, rather than the service refusing to start over its documentation.
fn document() -> Result<Bytes, Problem> {
    ApiDoc::openapi().to_json().map(Bytes::from).map_err(|err| Problem::backend(&err))
}

/// `GET /openapi.json`, rendered here once; `GET /docs/` and the files of Swagger UI (`/docs` redirects there, so
/// that the page's relative links resolve under it).
pub fn routes() -> BoxedFilter<(Response,)> {
    let json = document();
    let document = warp::path!("openapi.json")
        .and(read())
        .map(move || {
            let mut response = Response::new(json.clone()?.into());
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(response)
        })
        .map(respond);
    let config = Arc::new(Config::new([DOCUMENT]));
    let docs = warp::path("docs")
        .and(warp::path::full())
        .and(warp::path::tail())
        .and(read())
        .map(move |full: FullPath, tail: Tail| swagger(&config, full.as_str(), tail.as_str()))
        .map(respond);
    document.or(docs).unify().boxed()
}

fn swagger(config: &Arc<Config<'static>>, full: &str, tail: &str) -> Result<Response, Problem> {
    if full == "/docs" {
        let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
        response.headers_mut().insert(LOCATION, HeaderValue::from_static("/docs/"));
        return Ok(response);
    }
    let file = utoipa_swagger_ui::serve(tail, Arc::clone(config))
        .map_err(|err| Problem::backend(&err))?
        .ok_or_else(|| Problem::not_found("no such file of the API docs"))?;
    let body = match file.bytes {
        Cow::Borrowed(embedded) => Bytes::from_static(embedded),
        Cow::Owned(made) => Bytes::from(made),
    };
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    if let Ok(content_type) = HeaderValue::from_str(&file.content_type) {
        headers.insert(CONTENT_TYPE, content_type);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    Ok(response)
}

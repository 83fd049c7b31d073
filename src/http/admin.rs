//! What an admin runs a sale with: create it, watch every unit's whereabouts live, audit its orders, prepare load
//! test accounts, and see whether the order projection has caught up.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::auth::Caller;
use super::extract::segment;
use super::limits::LimitSettings;
use super::problem::{
    BadRequest, Conflict, Forbidden, LengthRequired, NotFound, PayloadTooLarge, Problem, RequestTimeout, Unauthorized,
    Unavailable,
};
use super::AppState;
use crate::accounts::{AccountsError, Identity};
use crate::actors::{ActorNode, AdminView, KillError, ProductSummary, ProjectorStatus, Supervision};
use crate::domain::{
    Ban, BanEnd, BanReason, BanSubject, Order, PaymentWindow, PerUserLimit, ProductDraft, ProductId, Role, SaleState,
    SaleWindow, ShardCount, StockLevel, Timestamp, TokenVersion, UserId, Username,
};

/// How long a sale lasts when the admin gives no end.
const DEFAULT_SALE_LENGTH: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A sale to create. Left out: one unit per buyer, `sale.default_shards`, open from now for 24 hours, the configured
/// payment window, no seckill token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// 1 to 200 characters (spaces around it trimmed), without control characters.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    name: String,
    #[schema(minimum = 0, maximum = 100_000_000_000_i64)]
    price_cents: i64,
    stock: StockLevel,
    per_user_limit: Option<PerUserLimit>,
    shards: Option<ShardCount>,
    starts_at: Option<Timestamp>,
    /// After `starts_at`, and not past.
    ends_at: Option<Timestamp>,
    payment_window_secs: Option<PaymentWindow>,
    /// Sell only to buyers holding a seckill token.
    requires_token: Option<bool>,
}

/// Creates a sale. 400 for a `name` with control characters or a window that has already ended.
#[utoipa::path(post, path = "/api/v1/admin/products", tag = "admin: sales",
    request_body = NewProduct,
    responses(
        (status = 201, description = "Created", body = ProductSummary),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn create_product(state: Arc<AppState>, _: Caller, body: NewProduct) -> Result<Response, Problem> {
    let starts_at = body.starts_at.unwrap_or_else(Timestamp::now);
    let ends_at = body.ends_at.unwrap_or_else(|| starts_at.plus(DEFAULT_SALE_LENGTH));
    let draft = ProductDraft {
        name: ProductDraft::parse_name(body.name)?,
        price_cents: ProductDraft::parse_price(body.price_cents)?,
        stock: body.stock,
        per_user_limit: body.per_user_limit.unwrap_or(PerUserLimit::try_from(1)?),
        shards: body.shards.unwrap_or(state.default_shards),
        window: SaleWindow::reschedule(starts_at, ends_at, Timestamp::now())?,
        payment_window: body.payment_window_secs.unwrap_or(state.default_payment_window),
        requires_token: body.requires_token.unwrap_or(false),
    };
    let product = state.engine.create_product(draft).await?;
    Ok(warp::reply::with_status(warp::reply::json(&product), StatusCode::CREATED).into_response())
}

/// A product as an admin sees it: the pool, each shard's slice, in flight, reserved, paid, released, and whether
/// `pool + Σ slices + in_flight + reserved + paid == stock` holds.
#[utoipa::path(get, path = "/api/v1/admin/products/{id}", tag = "admin: sales",
    params(("id" = ProductId, Path, description = "The product.")),
    responses(
        (status = 200, description = "The product's live view", body = AdminView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn inspect(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    Ok(warp::reply::json(&state.engine.inspect(id).await?).into_response())
}

/// Every order of the product in the orders table, for audits.
#[utoipa::path(get, path = "/api/v1/admin/products/{id}/orders", tag = "admin: sales",
    params(("id" = ProductId, Path, description = "The product.")),
    responses(
        (status = 200, description = "The product's orders", body = [Order]),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn product_orders(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    Ok(warp::reply::json(&state.engine.orders_of_product(id).await?).into_response())
}

/// How far the order projection is.
#[derive(Serialize, ToSchema)]
struct Projection {
    projector: ProjectorStatus,
    /// Journal events not yet in the orders table.
    lag: u64,
    caught_up: bool,
    product_restarts: u64,
    /// Restarts of the root's children.
    tree_restarts: u64,
}

/// The order projector: its lag behind the journal, its rate and failures, and restarts.
#[utoipa::path(get, path = "/api/v1/admin/projector", tag = "admin: sales",
    responses(
        (status = 200, description = "The projection", body = Projection),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn projector(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    let status = state.engine.projector_status().await?;
    let lag = state.engine.projection_lag().await?;
    let body = Projection {
        projector: status,
        lag,
        caught_up: lag == 0,
        product_restarts: state.engine.restarts().await?,
        tree_restarts: state.engine.tree_restarts().await?,
    };
    Ok(warp::reply::json(&body).into_response())
}

/// The rate limits.
#[utoipa::path(get, path = "/api/v1/admin/limits", tag = "admin: accounts",
    responses(
        (status = 200, description = "The rate limits", body = LimitSettings),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
    security(("bearer" = [])))]
pub async fn limits(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.limits.settings()).into_response())
}

/// `PUT /api/v1/admin/limits`: every limit at once; the buckets start full. 400 for a limit that is on with a burst
/// of 0.
#[utoipa::path(put, path = "/api/v1/admin/limits", tag = "admin: accounts",
    request_body = LimitSettings,
    responses(
        (status = 200, description = "The rate limits as set", body = LimitSettings),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
    ),
    security(("bearer" = [])))]
pub async fn set_limits(state: Arc<AppState>, _: Caller, limits: LimitSettings) -> Result<Response, Problem> {
    state.limits.replace(limits).map_err(|err| Problem::invalid(err.to_string()).with("field", "burst"))?;
    tracing::info!(?limits, "rate limits replaced");
    Ok(warp::reply::json(&limits).into_response())
}

/// Every supervisor's restarts: per child, its restarts, failures counted against its budget, the latest delay.
#[utoipa::path(get, path = "/api/v1/admin/supervision", tag = "admin: actors",
    responses(
        (status = 200, description = "The supervisors' restarts", body = Supervision),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn supervision(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.supervision().await?).into_response())
}

/// The running actor tree, from the root down.
#[utoipa::path(get, path = "/api/v1/admin/actors", tag = "admin: actors",
    responses(
        (status = 200, description = "The actor tree", body = ActorNode),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
    security(("bearer" = [])))]
pub async fn actors(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.actors().await).into_response())
}

/// One running actor and those it supervises.
#[utoipa::path(get, path = "/api/v1/admin/actors/{id}", tag = "admin: actors",
    params(("id" = u64, Path, description = "The actor's id, in decimal as the tree shows it.")),
    responses(
        (status = 200, description = "The actor and its subtree", body = ActorNode),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = [])))]
pub async fn actor(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id = actor_id(&id)?;
    let node = state.engine.actor(id).await.ok_or_else(|| Problem::not_found(format!("no actor {id} runs")))?;
    Ok(warp::reply::json(&node).into_response())
}

/// An actor killed.
#[derive(Serialize, ToSchema)]
struct Killed {
    killed: u64,
}

/// Kills an actor as a crash would; its supervisor restarts it with backoff (a shard restarts with its product). 409
/// `ACTOR_NOT_KILLABLE` for the root.
#[utoipa::path(post, path = "/api/v1/admin/actors/{id}/kill", tag = "admin: actors",
    params(("id" = u64, Path, description = "The actor's id, in decimal as the tree shows it.")),
    responses(
        (status = 202, description = "Killed; its supervisor restarts it", body = Killed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
    security(("bearer" = [])))]
pub async fn kill_actor(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id = actor_id(&id)?;
    match state.engine.kill_actor(id) {
        Ok(()) => {
            let body = Killed { killed: id };
            Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
        }
        Err(KillError::NotFound) => Err(Problem::not_found(format!("no actor {id} runs"))),
        Err(err @ KillError::Root) => Err(Problem::new(StatusCode::CONFLICT, "ACTOR_NOT_KILLABLE", err.to_string())),
    }
}

/// A product's switch as it now stands.
#[derive(Serialize, ToSchema)]
struct Switched {
    product_id: ProductId,
    sale: SaleState,
}

/// Opens (`resume`), pauses or drains a product's sale: `paused` refuses buyers with 409 `SALE_PAUSED` and touches no
/// stock; `draining` takes no new purchase (409 `SALE_DRAINING`) while those already with the shards finish.
#[utoipa::path(post, path = "/api/v1/admin/products/{id}/{action}", tag = "admin: sales",
    params(
        ("id" = ProductId, Path, description = "The product."),
        ("action" = String, Path, pattern = "^(pause|resume|drain)$", description = "`pause`, `resume` or `drain`."),
    ),
    responses(
        (status = 200, description = "The product's switch", body = Switched),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn switch_sale(state: Arc<AppState>, id: String, sale: SaleState, _: Caller) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    let sale = state.engine.switch_sale(id, sale).await?;
    Ok(warp::reply::json(&Switched { product_id: id, sale }).into_response())
}

/// An actor id as the tree shows it: a plain decimal number.
fn actor_id(text: &str) -> Result<u64, Problem> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    canonical
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| Problem::invalid("an actor id is a decimal number, as the tree shows it").with("field", "id"))
}

/// Accounts to make for a load test.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkAccounts {
    /// Every name `{prefix}-{n}` must pass the registration rule (3 to 64 characters).
    prefix: Username,
    #[schema(minimum = 1, maximum = 10_000)]
    count: usize,
}

/// The accounts made, each with a token.
#[derive(Serialize, ToSchema)]
struct BulkMade {
    users: Vec<BulkAccount>,
}

#[derive(Serialize, ToSchema)]
struct BulkAccount {
    user_id: UserId,
    access_token: String,
}

/// Accounts `{prefix}-1` … `{prefix}-{count}` that cannot log in, each with a token: load tests use them so that
/// they measure purchases, not argon2. 409 `USERNAME_TAKEN` if accounts with the prefix exist.
#[utoipa::path(post, path = "/api/v1/admin/users/bulk", tag = "admin: accounts",
    request_body = BulkAccounts,
    responses(
        (status = 201, description = "Made", body = BulkMade),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn bulk_accounts(state: Arc<AppState>, _: Caller, body: BulkAccounts) -> Result<Response, Problem> {
    let ids = match state.accounts.create_bulk(body.prefix, body.count).await {
        Ok(ids) => ids,
        Err(AccountsError::UsernameTaken) => {
            return Err(Problem::new(StatusCode::CONFLICT, "USERNAME_TAKEN", "accounts with that prefix exist"));
        }
        Err(err) => return Err(err.into()),
    };
    let users = ids
        .into_iter()
        .map(|id| {
            let identity = Identity { user: id, role: Role::Customer, token_version: TokenVersion::default() };
            let token = state.tokens.issue(identity)?;
            Ok(BulkAccount { user_id: id, access_token: token.access_token })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let body = BulkMade { users };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response())
}

/// An account's tokens after a revocation: only those of this version are taken.
#[derive(Serialize, ToSchema)]
struct Revoked {
    user_id: UserId,
    token_version: TokenVersion,
}

/// `POST /api/v1/admin/users/{id}/revoke-tokens`: every token of the account issued so far stops working.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/revoke-tokens", tag = "admin: accounts",
    params(("id" = UserId, Path, description = "The account.")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn revoke_tokens(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let user: UserId = segment(&id)?;
    let version = state.accounts.revoke_tokens(user).await?;
    tracing::info!(user = %user, "an admin revoked an account's tokens");
    Ok(warp::reply::json(&Revoked { user_id: user, token_version: version }).into_response())
}

/// A blacklist entry as an admin sends it: exactly one of `user_id` and `ip`, an optional end and reason.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBan {
    user_id: Option<UserId>,
    /// An IPv4 or IPv6 address.
    ip: Option<String>,
    /// When the ban ends by itself, in the future; left out, it holds until removed.
    until: Option<Timestamp>,
    reason: Option<BanReason>,
}

/// A blacklist entry as an admin reads it.
#[derive(Serialize, ToSchema)]
struct BanView {
    #[schema(pattern = "^(user|ip)$")]
    kind: &'static str,
    /// The user's id or the address, as text.
    subject: String,
    until: Option<Timestamp>,
    reason: Option<BanReason>,
    created_at: Timestamp,
}

impl From<Ban> for BanView {
    fn from(ban: Ban) -> Self {
        Self {
            kind: ban.subject.kind(),
            subject: ban.subject.subject(),
            until: ban.end.until(),
            reason: ban.reason,
            created_at: ban.created_at,
        }
    }
}

/// Every ban in force.
#[derive(Serialize, ToSchema)]
struct Bans {
    entries: Vec<BanView>,
}

/// `GET /api/v1/admin/blacklist`: every ban in force.
#[utoipa::path(get, path = "/api/v1/admin/blacklist", tag = "admin: accounts",
    responses(
        (status = 200, description = "The bans in force", body = Bans),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn bans(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    let entries = state.accounts.bans().await?.into_iter().map(BanView::from).collect();
    Ok(warp::reply::json(&Bans { entries }).into_response())
}

/// `POST /api/v1/admin/blacklist`: bans a user or an address, until `until` or until removed; in force at once. 404
/// banning an account that does not exist.
#[utoipa::path(post, path = "/api/v1/admin/blacklist", tag = "admin: accounts",
    request_body = NewBan,
    responses(
        (status = 201, description = "Banned", body = BanView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn ban(state: Arc<AppState>, _: Caller, body: NewBan) -> Result<Response, Problem> {
    let subject = match (body.user_id, body.ip) {
        (Some(user), None) => BanSubject::User(user),
        (None, Some(ip)) => BanSubject::ip(&ip)?,
        _ => return Err(Problem::invalid("give exactly one of user_id and ip").with("field", "user_id")),
    };
    let now = Timestamp::now();
    let end = match body.until {
        None => BanEnd::Never,
        Some(until) if until > now => BanEnd::At(until),
        Some(_) => return Err(Problem::invalid("until must be in the future").with("field", "until")),
    };
    let ban = Ban { subject, end, reason: body.reason, created_at: now };
    state.accounts.ban(ban.clone()).await.map_err(|err| match err {
        AccountsError::NoAccount => Problem::not_found("no such user"),
        other => other.into(),
    })?;
    tracing::info!(kind = subject.kind(), "an admin added a blacklist entry");
    Ok(warp::reply::with_status(warp::reply::json(&BanView::from(ban)), StatusCode::CREATED).into_response())
}

/// `DELETE /api/v1/admin/blacklist/{user|ip}/{subject}`: lifts a ban at once; 404 if there was none.
#[utoipa::path(delete, path = "/api/v1/admin/blacklist/{kind}/{subject}", tag = "admin: accounts",
    params(
        ("kind" = String, Path, pattern = "^(user|ip)$", description = "`user` or `ip`."),
        ("subject" = String, Path, description = "The user's id, or the address."),
    ),
    responses(
        (status = 204, description = "Lifted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn unban(state: Arc<AppState>, kind: String, subject: String, _: Caller) -> Result<Response, Problem> {
    let subject = BanSubject::parse(&kind, &subject)?;
    if state.accounts.unban(subject).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found("no such blacklist entry"))
    }
}

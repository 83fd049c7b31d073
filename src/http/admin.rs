//! What an admin runs a sale with: create it, watch every unit's whereabouts live, audit its orders, prepare load
//! test accounts, and see whether the order projection has caught up.

use std::sync::Arc;

use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::auth::Caller;
use super::extract::segment;
use super::limits::LimitSettings;
use super::problem::Problem;
use super::AppState;
use crate::accounts::{AccountsError, Identity};
use crate::actors::KillError;
use crate::domain::{
    Ban, BanEnd, BanReason, BanSubject, PaymentWindow, PerUserLimit, ProductDraft, ProductId, Role, SaleState,
    SaleWindow, ShardCount, StockLevel, Timestamp, TokenVersion, UserId, Username,
};

/// How long a sale lasts when the admin gives no end.
const DEFAULT_SALE_LENGTH: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    name: String,
    price_cents: i64,
    stock: StockLevel,
    per_user_limit: Option<PerUserLimit>,
    shards: Option<ShardCount>,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    payment_window_secs: Option<PaymentWindow>,
    requires_token: Option<bool>,
}

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

pub async fn inspect(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    Ok(warp::reply::json(&state.engine.inspect(id).await?).into_response())
}

pub async fn product_orders(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    Ok(warp::reply::json(&state.engine.orders_of_product(id).await?).into_response())
}

pub async fn projector(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    let status = state.engine.projector_status().await?;
    let lag = state.engine.projection_lag().await?;
    let body = serde_json::json!({
        "projector": status,
        "lag": lag,
        "caught_up": lag == 0,
        "product_restarts": state.engine.restarts().await?,
        "tree_restarts": state.engine.tree_restarts().await?,
    });
    Ok(warp::reply::json(&body).into_response())
}

/// Every supervisor's restarts: per child, its restarts, failures counted against its budget, the latest delay.
pub async fn limits(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.limits.settings()).into_response())
}

/// `PUT /api/v1/admin/limits`: every limit at once; the buckets start full.
pub async fn set_limits(state: Arc<AppState>, _: Caller, limits: LimitSettings) -> Result<Response, Problem> {
    state.limits.replace(limits).map_err(|err| Problem::invalid(err.to_string()).with("field", "burst"))?;
    tracing::info!(?limits, "rate limits replaced");
    Ok(warp::reply::json(&limits).into_response())
}

pub async fn supervision(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.supervision().await?).into_response())
}

/// The running actor tree, from the root down.
pub async fn actors(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    Ok(warp::reply::json(&state.engine.actors().await).into_response())
}

/// One running actor and those it supervises.
pub async fn actor(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id = actor_id(&id)?;
    let node = state.engine.actor(id).await.ok_or_else(|| Problem::not_found(format!("no actor {id} runs")))?;
    Ok(warp::reply::json(&node).into_response())
}

/// Kills an actor as a crash would; its supervisor restarts it (a shard restarts with its product).
pub async fn kill_actor(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let id = actor_id(&id)?;
    match state.engine.kill_actor(id) {
        Ok(()) => {
            let body = serde_json::json!({ "killed": id });
            Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
        }
        Err(KillError::NotFound) => Err(Problem::not_found(format!("no actor {id} runs"))),
        Err(err @ KillError::Root) => Err(Problem::new(StatusCode::CONFLICT, "ACTOR_NOT_KILLABLE", err.to_string())),
    }
}

/// Opens, pauses or drains a product's sale.
pub async fn switch_sale(state: Arc<AppState>, id: String, sale: SaleState, _: Caller) -> Result<Response, Problem> {
    let id: ProductId = segment(&id)?;
    let sale = state.engine.switch_sale(id, sale).await?;
    Ok(warp::reply::json(&serde_json::json!({ "product_id": id, "sale": sale })).into_response())
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkAccounts {
    prefix: Username,
    count: usize,
}

/// Accounts `{prefix}-1` … `{prefix}-{count}` that cannot log in, each with a token: load tests use them so that
/// they measure purchases, not argon2.
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
            Ok(serde_json::json!({ "user_id": id, "access_token": token.access_token }))
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let body = serde_json::json!({ "users": users });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response())
}

/// `POST /api/v1/admin/users/{id}/revoke-tokens`: every token of the account issued so far stops working.
pub async fn revoke_tokens(state: Arc<AppState>, id: String, _: Caller) -> Result<Response, Problem> {
    let user: UserId = segment(&id)?;
    let version = state.accounts.revoke_tokens(user).await?;
    tracing::info!(user = %user, "an admin revoked an account's tokens");
    Ok(warp::reply::json(&serde_json::json!({ "user_id": user, "token_version": version })).into_response())
}

/// A blacklist entry as an admin sends it: exactly one of `user_id` and `ip`, an optional end and reason.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBan {
    user_id: Option<UserId>,
    ip: Option<String>,
    until: Option<Timestamp>,
    reason: Option<BanReason>,
}

/// A blacklist entry as an admin reads it.
#[derive(serde::Serialize)]
struct BanView {
    kind: &'static str,
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

/// `GET /api/v1/admin/blacklist`: every ban in force.
pub async fn bans(state: Arc<AppState>, _: Caller) -> Result<Response, Problem> {
    let bans: Vec<BanView> = state.accounts.bans().await?.into_iter().map(BanView::from).collect();
    Ok(warp::reply::json(&serde_json::json!({ "entries": bans })).into_response())
}

/// `POST /api/v1/admin/blacklist`: bans a user or an address, until `until` or until removed; in force at once.
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

/// `DELETE /api/v1/admin/blacklist/{user|ip}/{subject}`: lifts a ban at once.
pub async fn unban(state: Arc<AppState>, kind: String, subject: String, _: Caller) -> Result<Response, Problem> {
    let subject = BanSubject::parse(&kind, &subject)?;
    if state.accounts.unban(subject).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found("no such blacklist entry"))
    }
}

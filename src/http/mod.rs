//! The HTTP surface (warp). Routes parse requests into domain types, ask the engine or the accounts service, and
//! map the answer; every failure becomes `application/problem+json`. Route groups are boxed to keep compile times
//! sane.

mod admin;
mod auth;
mod controls;
mod extract;
mod jwt;
mod limits;
mod live;
mod observe;
mod openapi;
mod ops;
mod orders;
mod pages;
mod passes;
mod payments;
mod problem;
mod sales;
mod server;
mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub use auth::Tokens;
pub use limits::{Limit, LimitError, LimitSettings, RateLimits};
pub use live::Live;
pub use passes::Passes;
pub use problem::Problem;
pub use server::{serve, ClientAddr, ConnectionSettings};

use crate::accounts::Accounts;
use crate::actors::Engine;
use crate::domain::{PaymentWindow, SaleState, ShardCount, WebhookKey};
use crate::metrics::Metrics;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub accounts: Arc<Accounts>,
    pub tokens: Arc<Tokens>,
    pub default_shards: ShardCount,
    pub default_payment_window: PaymentWindow,
    pub body_limit: u64,
    /// The longest a request's body may take to arrive.
    pub body_timeout: Duration,
    /// The secret shared with the payment provider, for its callbacks.
    pub webhook: Arc<WebhookKey>,
    pub live: Arc<Live>,
    pub limits: Arc<RateLimits>,
    /// Seckill tokens issued and spent.
    pub passes: Arc<Passes>,
    pub metrics: Arc<Metrics>,
}

/// Every route of the service. Handlers share one `AppState` behind an `Arc`: cloning it for each request is one
/// reference count, not one per field (each touched by every request on every core). Routes are tried in order,
/// so the hot ones come first: probes, then purchases and product pages, then orders; an unmatched request gets the
/// most specific rejection whatever the order.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let state = Arc::new(state);
    let api = warp::path("api").and(warp::path("v1"));
    let ops = ops_routes(state.clone());
    let auth = api.and(warp::path("auth")).and(auth_routes(state.clone()));
    let products = api.and(warp::path("products")).and(product_routes(state.clone()));
    let orders = api.and(warp::path("orders")).and(order_routes(state.clone()));
    let callback = api.and(warp::path!("payments" / "callback")).and(callback_route(state.clone()));
    let admin = api.and(warp::path("admin")).and(admin_routes(state.clone()));
    let live = live_routes(state);
    ops.or(products)
        .unify()
        .or(orders)
        .unify()
        .or(auth)
        .unify()
        .or(callback)
        .unify()
        .or(admin)
        .unify()
        .or(live)
        .unify()
        .or(page_routes())
        .unify()
        .or(openapi::routes())
        .unify()
        .recover(problem::recover)
        .unify()
        .boxed()
}

fn ops_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let healthz = warp::path!("healthz").and(read()).then(ops::healthz).map(respond);
    let readyz = warp::path!("readyz").and(read()).and(with(state.clone())).then(ops::readyz).map(respond);
    let scrapes = Arc::new(ops::Scrapes::default());
    let metrics = warp::path!("metrics")
        .and(read())
        .and(with(state))
        .and(warp::any().map(move || Arc::clone(&scrapes)))
        .then(ops::metrics)
        .map(respond);
    healthz.or(readyz).unify().or(metrics).unify().boxed()
}

fn live_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let query = warp::query::raw().map(Some).or(warp::any().map(|| None)).unify();
    let stock = warp::path!("ws" / "stock")
        .and(warp::get())
        .and(with(state.clone()))
        .and(websocket::handshake())
        .and(query)
        .then(live::stock)
        .map(respond);
    let orders = warp::path!("ws" / "orders")
        .and(warp::get())
        .and(with(state.clone()))
        .and(websocket::handshake())
        .and(auth::live_caller(Arc::clone(&state)))
        .then(|state, ws, (caller, by_protocol)| live::orders(state, ws, caller, by_protocol))
        .map(respond);
    stock.or(orders).unify().boxed()
}

fn page_routes() -> BoxedFilter<(Response,)> {
    let storefront = warp::path::end().and(read()).then(pages::storefront);
    let admin = warp::path!("admin").and(read()).then(pages::admin);
    let asset = warp::path!("assets" / String).and(read()).then(pages::asset).map(respond);
    storefront.or(admin).unify().or(asset).unify().boxed()
}

fn auth_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let client = client().map(|client: Option<SocketAddr>| client.map(|client| client.ip()));
    let register = warp::path!("register")
        .and(warp::post())
        .and(with(state.clone()))
        .and(client)
        .and(body(&state))
        .then(auth::register);
    let login =
        warp::path!("login").and(warp::post()).and(with(state.clone())).and(client).and(body(&state)).then(auth::login);
    let password = warp::path!("password")
        .and(warp::post())
        .and(with(state.clone()))
        .and(auth::caller(Arc::clone(&state)))
        .and(client)
        .and(body(&state))
        .then(auth::change_password);
    register.map(respond).or(login.map(respond)).unify().or(password.map(respond)).unify().boxed()
}

fn product_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let caller = auth::caller(Arc::clone(&state));
    let list = warp::path::end().and(read()).and(with(state.clone())).then(sales::list).map(respond);
    let show =
        warp::path!(String).and(read()).and(with(state.clone())).then(|id, state| sales::show(state, id)).map(respond);
    let purchase = warp::path!(String / "purchase")
        .and(warp::post())
        .and(with(state.clone()))
        .and(caller.clone())
        .and(client())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(warp::header::optional::<String>("seckill-token"))
        .and(bytes(&state))
        .then(|id, state, caller, client, key, pass, body| sales::purchase(state, id, caller, client, key, pass, body))
        .map(respond);
    let token = warp::path!(String / "token")
        .and(warp::post())
        .and(with(state.clone()))
        .and(caller)
        .and(client())
        .then(|id, state, caller, client| sales::seckill_token(state, id, caller, client))
        .map(respond);
    purchase.or(show).unify().or(list).unify().or(token).unify().boxed()
}

fn order_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let caller = auth::caller(Arc::clone(&state));
    let mine = warp::path::end().and(read()).and(with(state.clone())).and(caller.clone()).then(orders::mine);
    let one = warp::path!(String)
        .and(read())
        .and(with(state.clone()))
        .and(caller.clone())
        .then(|id, state, caller| orders::one(state, id, caller));
    let cancel = warp::path!(String / "cancel")
        .and(warp::post())
        .and(with(state.clone()))
        .and(caller.clone())
        .then(|id, state, caller| orders::cancel(state, id, caller));
    let pay = warp::path!(String / "pay")
        .and(warp::post())
        .and(with(state))
        .and(caller)
        .and(warp::header::optional::<String>("idempotency-key"))
        .then(|id, state, caller, key| payments::pay(state, id, caller, key));
    mine.map(respond).or(one.map(respond)).unify().or(cancel.map(respond)).unify().or(pay.map(respond)).unify().boxed()
}

/// The payment provider's callback: no login, a signature instead.
fn callback_route(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path::end()
        .and(warp::post())
        .and(with(state.clone()))
        .and(warp::header::optional::<String>("seckill-timestamp"))
        .and(warp::header::optional::<String>("seckill-signature"))
        .and(bytes(&state))
        .then(payments::callback)
        .map(respond)
        .boxed()
}

/// What an admin needs when payments go wrong: jobs, dead letters, the simulated provider's knobs.
fn lifecycle_admin_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let admin = auth::admin(Arc::clone(&state));
    let payment_jobs = warp::path!("payments")
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(payments::payment_jobs)
        .map(respond);
    let compensation_jobs = warp::path!("compensations")
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(payments::compensation_jobs)
        .map(respond);
    let simulator = warp::path!("payments" / "simulator")
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(payments::simulator)
        .map(respond);
    let set_simulator = warp::path!("payments" / "simulator")
        .and(warp::put())
        .and(with(state.clone()))
        .and(admin.clone())
        .and(body(&state))
        .then(payments::set_simulator)
        .map(respond);
    let letters = warp::path!("dead-letters")
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .and(warp::query::<payments::LetterQuery>())
        .then(payments::dead_letters)
        .map(respond);
    let csv = warp::path!("dead-letters.csv")
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .and(warp::query::<payments::LetterQuery>())
        .then(payments::dead_letters_csv)
        .map(respond);
    let reprocess = warp::path!("dead-letters" / String / "reprocess")
        .and(warp::post())
        .and(with(state))
        .and(admin)
        .then(|id, state, caller| payments::reprocess(state, id, caller))
        .map(respond);
    payment_jobs
        .or(compensation_jobs)
        .unify()
        .or(simulator)
        .unify()
        .or(set_simulator)
        .unify()
        .or(letters)
        .unify()
        .or(csv)
        .unify()
        .or(reprocess)
        .unify()
        .boxed()
}

fn admin_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let admin = auth::admin(Arc::clone(&state));
    let create = warp::path!("products")
        .and(warp::post())
        .and(with(state.clone()))
        .and(admin.clone())
        .and(body(&state))
        .then(admin::create_product)
        .map(respond);
    let inspect = warp::path!("products" / String)
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(|id, state, caller| admin::inspect(state, id, caller))
        .map(respond);
    let product_orders = warp::path!("products" / String / "orders")
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(|id, state, caller| admin::product_orders(state, id, caller))
        .map(respond);
    let projector =
        warp::path!("projector").and(read()).and(with(state.clone())).and(admin.clone()).then(admin::projector);
    let limits = warp::path!("limits").and(read()).and(with(state.clone())).and(admin.clone()).then(admin::limits);
    let set_limits = warp::path!("limits")
        .and(warp::put())
        .and(with(state.clone()))
        .and(admin.clone())
        .and(body(&state))
        .then(admin::set_limits);
    let supervision = warp::path!("supervision")
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(admin::supervision)
        .map(respond);
    let bulk = warp::path!("users" / "bulk")
        .and(warp::post())
        .and(with(state.clone()))
        .and(admin)
        .and(body(&state))
        .then(admin::bulk_accounts);
    let accounts = account_admin_routes(state.clone());
    let lifecycle = lifecycle_admin_routes(state.clone());
    let controls = control_admin_routes(state.clone());
    let live = live_admin_routes(state);
    create
        .or(inspect)
        .unify()
        .or(product_orders)
        .unify()
        .or(projector.map(respond))
        .unify()
        .or(supervision)
        .unify()
        .or(limits.map(respond))
        .unify()
        .or(set_limits.map(respond))
        .unify()
        .or(bulk.map(respond))
        .unify()
        .or(accounts)
        .unify()
        .or(lifecycle)
        .unify()
        .or(controls)
        .unify()
        .or(live)
        .unify()
        .boxed()
}

/// Who may be served: revoking an account's tokens, and the blacklist.
fn account_admin_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let admin = auth::admin(Arc::clone(&state));
    let revoke = warp::path!("users" / String / "revoke-tokens")
        .and(warp::post())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(|id, state, caller| admin::revoke_tokens(state, id, caller));
    let bans = warp::path!("blacklist").and(read()).and(with(state.clone())).and(admin.clone()).then(admin::bans);
    let ban = warp::path!("blacklist")
        .and(warp::post())
        .and(with(state.clone()))
        .and(admin.clone())
        .and(body(&state))
        .then(admin::ban);
    let unban = warp::path!("blacklist" / String / String)
        .and(warp::delete())
        .and(with(state))
        .and(admin)
        .then(|kind, subject, state, caller| admin::unban(state, kind, subject, caller));
    revoke.or(bans).unify().or(ban).unify().or(unban).unify().map(respond).boxed()
}

/// The running actors, and the admin's hand on them and on a sale.
fn live_admin_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let admin = auth::admin(Arc::clone(&state));
    let tree = warp::path!("actors").and(read()).and(with(state.clone())).and(admin.clone()).then(admin::actors);
    let one = warp::path!("actors" / String)
        .and(read())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(|id, state, caller| admin::actor(state, id, caller));
    let kill = warp::path!("actors" / String / "kill")
        .and(warp::post())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(|id, state, caller| admin::kill_actor(state, id, caller));
    let switch = warp::path!("products" / String / String)
        .and(warp::post())
        .and_then(|id: String, action: String| async move {
            let sale = match action.as_str() {
                "pause" => SaleState::Paused,
                "resume" => SaleState::Open,
                "drain" => SaleState::Draining,
                _ => return Err(warp::reject::not_found()),
            };
            Ok((id, sale))
        })
        .untuple_one()
        .and(with(state))
        .and(admin)
        .then(|id, sale, state, caller| admin::switch_sale(state, id, sale, caller));
    tree.or(one).unify().or(kill).unify().or(switch).unify().map(respond).boxed()
}

/// The admin's sale controls: restock, window, preheat, and the switch over every sale.
fn control_admin_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let admin = auth::admin(Arc::clone(&state));
    let restock = warp::path!("products" / String / "restock")
        .and(warp::post())
        .and(with(state.clone()))
        .and(admin.clone())
        .and(body(&state))
        .then(|id, state, caller, body| controls::restock(state, id, caller, body));
    let window = warp::path!("products" / String / "window")
        .and(warp::put())
        .and(with(state.clone()))
        .and(admin.clone())
        .and(body(&state))
        .then(|id, state, caller, body| controls::window(state, id, caller, body));
    let preheat = warp::path!("products" / String / "preheat")
        .and(warp::post())
        .and(with(state.clone()))
        .and(admin.clone())
        .then(|id, state, caller| controls::preheat(state, id, caller));
    let global = warp::path!("sale").and(read()).and(with(state.clone())).and(admin.clone()).then(controls::global);
    let set_global = warp::path!("sale")
        .and(warp::put())
        .and(with(state.clone()))
        .and(admin)
        .and(body(&state))
        .then(controls::set_global);
    restock.or(window).unify().or(preheat).unify().or(global).unify().or(set_global).unify().map(respond).boxed()
}

/// `GET`, or `HEAD` for the same answer without its body (hyper sends the headers only).
fn read() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::get().or(warp::head()).unify()
}

fn with(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

/// The client's address, which the listener puts on every request.
fn client() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Copy {
    warp::ext::optional::<ClientAddr>().map(|client: Option<ClientAddr>| client.map(|ClientAddr(addr)| addr))
}

/// A body of at most the configured size, all of it within the configured time (413 and 408 otherwise).
fn bytes(state: &AppState) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    let within = state.body_timeout;
    warp::body::content_length_limit(state.body_limit)
        .and(warp::body::stream())
        .and_then(move |body| async move { extract::bytes(body, within).await.map_err(warp::reject::custom) })
}

/// A JSON body of at most the configured size, parsed into `T` (400 with the reason otherwise).
fn body<T: DeserializeOwned + Send>(state: &AppState) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    bytes(state).and_then(|bytes| async move { extract::json::<T>(&bytes).map_err(warp::reject::custom) })
}

fn respond(result: Result<Response, Problem>) -> Response {
    result.unwrap_or_else(Reply::into_response)
}

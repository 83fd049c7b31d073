//! The WebSocket feeds: `/ws/stock` (anyone: each product's stock, phase and sale state, as it changes) and
//! `/ws/orders` (a buyer: their own orders' changes as they become durable).
//!
//! Everything that can be refused is refused before the upgrade, with a problem+json like any other route: a bad
//! query (400), an unknown product (404), a missing or bad token (401), no room (503 `LIVE_FULL`, `Retry-After`).
//! After the upgrade one loop serves either feed: it sends what the feed yields, a heartbeat message now and then,
//! and a ping every `ping_secs`, dropping a client that did not answer the previous ping (warp sends no pings of its
//! own, so half-open sockets would otherwise pile up) or that does not take a message within `send_timeout_ms`.
//! A feed never queues for a connection: stock is a `watch` (the latest value only), and a buyer's changes have a
//! small bounded buffer after which the connection is closed (1013) and the client reads its orders afresh.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, SelectAll};
use futures::{FutureExt, SinkExt, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use warp::http::StatusCode;
use warp::reply::Response;

use super::auth::Caller;
use super::extract::segment;
use super::problem::{BadRequest, NotFound, Problem, Unauthorized, Unavailable};
use super::websocket::{Handshake, Socket};
use super::AppState;
use crate::actors::StockFeed;
use crate::config::LiveSettings;
use crate::domain::{LiveStock, OrderChange, ProductId, SalePhase, SaleState, Timestamp};

/// The subprotocol a browser offers, followed by its token, since it cannot send an `Authorization` header.
pub const BEARER_PROTOCOL: &str = "seckill.bearer";
/// Changes of one buyer that may wait for their connection before it is dropped as too slow.
const ORDER_BUFFER: usize = 64;
/// Room for connections, and how they are kept alive.
pub struct Live {
    stock_slots: Arc<Semaphore>,
    order_slots: Arc<Semaphore>,
    max_products: usize,
    heartbeat: Duration,
    ping: Duration,
    send_timeout: Duration,
    /// Turns true when the service stops: every connection closes (1001).
    closing: watch::Receiver<bool>,
    sessions: Sessions,
}

/// The runtime the live connections run on, apart from the one that serves purchases. An update wakes every
/// subscriber of a product at once; on the purchase runtime those wake-ups would queue ahead of buyers' requests
/// (a burst every `stock_interval_ms`), while on threads of their own the operating system shares the cores
/// between the two and purchases keep their latency.
struct Sessions {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Sessions {
    fn start(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("live")
            .enable_all()
            .build()?;
        Ok(Self { handle: runtime.handle().clone(), runtime: Some(runtime) })
    }
}

/// Dropped from async code (with the routes), where a runtime may not block to shut down.
impl Drop for Sessions {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Live {
    pub fn new(settings: &LiveSettings, closing: watch::Receiver<bool>) -> std::io::Result<Self> {
        Ok(Self {
            stock_slots: Arc::new(Semaphore::new(settings.max_stock_subscribers)),
            order_slots: Arc::new(Semaphore::new(settings.max_order_subscribers)),
            max_products: settings.max_products_per_subscriber.max(1),
            heartbeat: Duration::from_secs(settings.heartbeat_secs.max(1)),
            ping: Duration::from_secs(settings.ping_secs.max(1)),
            send_timeout: Duration::from_millis(settings.send_timeout_ms.max(1)),
            closing,
            sessions: Sessions::start(settings.threads)?,
        })
    }
}

fn slot(slots: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Problem> {
    Arc::clone(slots).try_acquire_owned().map_err(|_| {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "LIVE_FULL", "no room for another live connection").retry_after(5)
    })
}

/// `GET /ws/stock?products=1,2`: a WebSocket (send `Connection: Upgrade`, `Upgrade: websocket`,
/// `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`; anything else is a 400). At once one
/// `{"type":"stock", product_id, stock, available, sold_out, phase, sale, starts_in_seconds, ends_in_seconds}` per
/// product, then one per change (coalesced to the latest value), and again when a sale opens or ends;
/// `{"type":"heartbeat"}` now and then. Refused before the upgrade: 400 (no list, a bad id, too many), 404 for an
/// unknown product, 503 `LIVE_FULL`.
#[utoipa::path(get, path = "/ws/stock", tag = "live",
    params(("products" = String, Query, pattern = "^[1-9][0-9]*(,[1-9][0-9]*)*$",
        description = "The products to watch, comma-separated.")),
    responses(
        (status = 101, description = "Switching to the WebSocket feed"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
pub async fn stock(state: Arc<AppState>, ws: Handshake, query: Option<String>) -> Result<Response, Problem> {
    let live = Arc::clone(&state.live);
    let ids = products_of(query.as_deref().unwrap_or(""), live.max_products)?;
    let feeds = ids
        .into_iter()
        .map(|id| state.engine.stock_feed(id).ok_or_else(|| Problem::not_found(format!("no product {id}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let permit = slot(&live.stock_slots)?;
    let sessions = live.sessions.handle.clone();
    let metrics = Arc::clone(&state.metrics);
    Ok(ws.accept(&sessions, None, move |socket| async move {
        let watching = metrics.live.watching("stock");
        serve(socket, stock_messages(feeds), &live, (1011, "the stock feed ended")).await;
        drop((watching, permit));
    }))
}

/// `GET /ws/orders`, with `Authorization: Bearer <token>` or the subprotocols `seckill.bearer, <token>` (a browser
/// cannot set headers on a WebSocket; the answer then names `seckill.bearer`): a WebSocket, upgraded as `/ws/stock`
/// is. `{"type":"order", order_id, product_id, user_id, status, at}` for each of the caller's own orders as each
/// step becomes durable; a connection that falls 64 changes behind is closed with 1013. Refused before the upgrade:
/// 400 (not an upgrade), 401, 503 `LIVE_FULL`.
#[utoipa::path(get, path = "/ws/orders", tag = "live",
    responses(
        (status = 101, description = "Switching to the WebSocket feed of the caller's orders"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn orders(
    state: Arc<AppState>,
    ws: Handshake,
    caller: Caller,
    by_protocol: bool,
) -> Result<Response, Problem> {
    let live = Arc::clone(&state.live);
    let permit = slot(&live.order_slots)?;
    let watch = state.engine.watch_orders(caller.user, ORDER_BUFFER);
    let (sessions, protocol) = (live.sessions.handle.clone(), by_protocol.then_some(BEARER_PROTOCOL));
    let metrics = Arc::clone(&state.metrics);
    Ok(ws.accept(&sessions, protocol, move |socket| async move {
        let watching = metrics.live.watching("orders");
        let changes = stream::unfold(watch, |mut watch| async move {
            let change = watch.changes.recv().await?;
            Some((order_message(&change), watch))
        });
        serve(socket, changes, &live, (1013, "too far behind: reconnect and read your orders")).await;
        drop((watching, permit));
    }))
}

/// The product ids of `products=1,2,3`: at least one, at most `max`, each once.
fn products_of(query: &str, max: usize) -> Result<Vec<ProductId>, Problem> {
    let list = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("products="))
        .ok_or_else(|| Problem::invalid("name the products to watch: ?products=1,2").with("field", "products"))?;
    let mut ids = Vec::new();
    for part in list.split(',') {
        let id: ProductId = segment(part).map_err(|problem| problem.with("field", "products"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > max {
        return Err(Problem::invalid(format!("watch at most {max} products at once")).with("field", "products"));
    }
    Ok(ids)
}

/// Sends `outgoing` on `socket` with heartbeats and pings, until either side stops; closes with `ended` if the
/// feed itself ends.
async fn serve(socket: Socket, outgoing: impl Stream<Item = String>, live: &Live, ended: (u16, &'static str)) {
    let (mut sink, mut incoming) = socket.split();
    let mut outgoing = std::pin::pin!(outgoing);
    let mut closing = live.closing.clone();
    let start = Instant::now();
    let mut heartbeat = tokio::time::interval_at(start + live.heartbeat, live.heartbeat);
    let mut ping = tokio::time::interval_at(start + live.ping, live.ping);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut answered = true;
    loop {
        let message = tokio::select! {
            next = outgoing.next() => match next {
                Some(text) => Message::text(text),
                None => close(ended.0, ended.1),
            },
            _ = heartbeat.tick() => Message::text(r#"{"type":"heartbeat"}"#),
            _ = ping.tick() => {
                if !answered {
                    break;
                }
                answered = false;
                Message::Ping(Default::default())
            }
            received = incoming.next() => match received {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(message)) => {
                    answered |= message.is_pong();
                    continue;
                }
            },
            _ = closing.wait_for(|closing| *closing) => close(1001, "the service is stopping"),
        };
        let last = message.is_close();
        // Most sends complete at once; only one that waits (a client not reading) needs a timer.
        let mut sending = sink.send(message);
        let sent = match (&mut sending).now_or_never() {
            Some(sent) => Ok(sent),
            None => tokio::time::timeout(live.send_timeout, sending).await,
        };
        match sent {
            Ok(Ok(())) if !last => {}
            _ => break,
        }
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code: code.into(), reason: reason.into() }))
}

/// One stock message per product at once, then one per change, and all again when a sale opens or ends.
fn stock_messages(feeds: Vec<StockFeed>) -> impl Stream<Item = String> {
    type Updates = SelectAll<Pin<Box<dyn Stream<Item = (ProductId, LiveStock)> + Send>>>;
    let mut updates: Updates = SelectAll::new();
    let mut latest = BTreeMap::new();
    for feed in feeds {
        let id = feed.product_id;
        let values = stream::unfold((feed.updates, true), move |(mut updates, first)| async move {
            let value = if first { updates.latest() } else { updates.next().await? };
            Some(((id, value), (updates, false)))
        });
        updates.push(Box::pin(values));
        latest.insert(id, None::<LiveStock>);
    }
    // One timer for the next phase change, moved only when that changes (not made anew for every message).
    let boundary = Boundary { sleep: Box::pin(tokio::time::sleep(Duration::ZERO)), at: None };
    let state = (updates, latest, Vec::<String>::new(), boundary);
    stream::unfold(state, |(mut updates, mut latest, mut queued, mut boundary)| async move {
        loop {
            if let Some(message) = queued.pop() {
                return Some((message, (updates, latest, queued, boundary)));
            }
            let now = Timestamp::now();
            boundary.aim(latest.values().flatten().filter_map(|last| next_boundary(last.window, now)).min(), now);
            tokio::select! {
                next = updates.next() => {
                    let (id, value) = next?;
                    if let Some(last) = latest.get_mut(&id) {
                        *last = Some(value);
                        queued.push(stock_message(id, value, Timestamp::now()));
                    }
                }
                () = &mut boundary.sleep, if boundary.at.is_some() => {
                    boundary.at = None;
                    let now = Timestamp::now();
                    for (id, last) in &latest {
                        if let Some(value) = last {
                            queued.push(stock_message(*id, *value, now));
                        }
                    }
                }
            }
        }
    })
}

/// A connection's timer for the next time a sale it watches opens or ends.
struct Boundary {
    sleep: Pin<Box<tokio::time::Sleep>>,
    at: Option<Timestamp>,
}

impl Boundary {
    fn aim(&mut self, at: Option<Timestamp>, now: Timestamp) {
        if at != self.at {
            self.at = at;
            if let Some(at) = at {
                let wait = Duration::from_millis(at.millis().saturating_sub(now.millis()).max(0) as u64);
                self.sleep.as_mut().reset(Instant::now() + wait);
            }
        }
    }
}

/// When the sale's phase changes next (it opens, or it ends), if it still will.
fn next_boundary(window: crate::domain::SaleWindow, now: Timestamp) -> Option<Timestamp> {
    [window.starts_at(), window.ends_at()].into_iter().find(|at| *at > now)
}

#[derive(Serialize)]
struct StockMessage {
    #[serde(rename = "type")]
    kind: &'static str,
    product_id: ProductId,
    stock: u64,
    available: u64,
    sold_out: bool,
    phase: SalePhase,
    sale: SaleState,
    starts_in_seconds: u64,
    ends_in_seconds: u64,
}

fn stock_message(product_id: ProductId, value: LiveStock, now: Timestamp) -> String {
    let window = value.window;
    let seconds_to = |at: Timestamp| (at.millis() - now.millis()).max(0).unsigned_abs().div_ceil(1000);
    let message = StockMessage {
        kind: "stock",
        product_id,
        stock: value.stock,
        available: value.available,
        sold_out: value.sold_out,
        phase: window.phase(now),
        sale: value.sale,
        starts_in_seconds: seconds_to(window.starts_at()),
        ends_in_seconds: seconds_to(window.ends_at()),
    };
    serde_json::to_string(&message).unwrap_or_default()
}

#[derive(Serialize)]
struct OrderMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    change: &'a OrderChange,
}

fn order_message(change: &OrderChange) -> String {
    serde_json::to_string(&OrderMessage { kind: "order", change }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_list_is_parsed_strictly() {
        let ids = products_of("products=3,1,3", 50).unwrap();
        assert_eq!(ids, [ProductId::try_from(3).unwrap(), ProductId::try_from(1).unwrap()]);
        for bad in ["", "products=", "products=1,x", "products=0", "other=1", "products=1,,2"] {
            assert!(products_of(bad, 50).is_err(), "{bad:?} is refused");
        }
        assert!(products_of("products=1,2,3", 2).is_err(), "too many");
    }

    #[test]
    fn a_stock_message_counts_down_to_the_sale() {
        let now = Timestamp::from_millis(10_000);
        let window =
            crate::domain::SaleWindow::new(Timestamp::from_millis(12_500), Timestamp::from_millis(20_000)).unwrap();
        let value = LiveStock { available: 7, stock: 10, sold_out: false, sale: SaleState::Paused, window };
        let text = stock_message(ProductId::try_from(4).unwrap(), value, now);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["type"], "stock");
        assert_eq!((json["available"].as_u64(), json["stock"].as_u64()), (Some(7), Some(10)));
        assert_eq!((json["phase"].as_str(), json["sale"].as_str()), (Some("upcoming"), Some("paused")));
        assert_eq!((json["starts_in_seconds"].as_u64(), json["ends_in_seconds"].as_u64()), (Some(3), Some(10)));
        assert_eq!(next_boundary(window, now), Some(Timestamp::from_millis(12_500)));
    }
}

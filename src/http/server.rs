//! The listener's side of HTTP: which connections are taken, how long a client may hold one without finishing a
//! request, what every answer carries, and what is logged when hyper refuses a client before the routes see it.
//!
//! warp's own `serve` sets no timeout and no cap: a few hundred clients that open a connection and never finish
//! their headers would hold the process's file descriptors for ever. Here every connection counts against a cap
//! overall and per address (past either, it is answered 503 at once and closed, and the open ones keep being
//! served), and a connection whose next request head has not arrived in time is closed. hyper starts that clock as
//! soon as a connection waits for a request — when it opens and after each answer — so the same setting bounds a
//! slow client's headers and an idle keep-alive: a separate idle clock would cost a timer reset per request.
//! Security headers and CORS are added here too, around the routes, so no route can forget them, and each request
//! gets its span here, the root of its trace (a DEBUG span: while traces are off it is never enabled).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::Layer as _;
use tracing::field::Empty;
use tracing::Span;
use warp::filters::BoxedFilter;
use warp::http::header::{
    HeaderName, AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, RETRY_AFTER,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use warp::http::{HeaderValue, Method, Request};
use warp::reply::Response;

use super::observe::{Routes, Timed};
use crate::metrics::HttpMetrics;

/// How the listener treats connections.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// The longest a connection may take to deliver a request head, counted from when it is ready for one.
    pub header_timeout: Duration,
    /// Most connections open at once, all clients together.
    pub max_connections: usize,
    /// Most connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// Other sites whose pages may call the API from a browser.
    pub cors_origins: Vec<HeaderValue>,
}

/// The client's address, put on every request by the listener (warp's own `addr::remote` is filled only by
/// warp's server).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Serves `routes` on `listener` until `shutdown` resolves, then lets open requests finish; each request's latency
/// and answer go to `metrics`.
pub fn serve(
    listener: tokio::net::TcpListener,
    routes: BoxedFilter<(Response,)>,
    settings: ConnectionSettings,
    metrics: &HttpMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let routes = warp::service(routes);
    let timing = Arc::new(Routes::new(metrics));
    async move {
        match cors(&settings.cors_origins) {
            Some(cors) => accept(listener, cors.layer(routes), timing, &settings, shutdown).await,
            None => accept(listener, routes, timing, &settings, shutdown).await,
        }
    }
}

/// Cross-origin calls from the configured origins' pages, none unless configured. A request from an origin not
/// listed is served as any other, without the headers that would let a browser hand the answer to that page.
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("seckill-token"),
        ])
        .expose_headers([RETRY_AFTER])
        .max_age(Duration::from_secs(600));
    Some(cors)
}

async fn accept<S>(
    listener: tokio::net::TcpListener,
    routes: S,
    timing: Arc<Routes>,
    settings: &ConnectionSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let gate = Arc::new(Gate::new(settings.max_connections, settings.max_connections_per_ip));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        // A request head larger than this is refused (431) rather than buffered.
        .max_buf_size(64 * 1024);
    builder.http2().timer(TokioTimer::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(&err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(ticket) = Gate::admit(&gate, peer.ip()) else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = Connection { routes: routes.clone(), timing: Arc::clone(&timing), client: ClientAddr(peer) };
        let served = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let served = graceful.watch(served);
        tokio::spawn(async move {
            if let Err(err) = served.await {
                connection_failed(peer, &*err);
            }
            drop(ticket);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One connection's service: the routes, with the client's address put on each request, each served in its span,
/// the security headers on each answer, and each answer timed.
/// (Generic over the routes' service, whose type warp does not name.)
#[derive(Clone)]
struct Connection<S> {
    routes: S,
    timing: Arc<Routes>,
    client: ClientAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for Connection<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Timed<
        Traced<futures::future::Map<S::Future, fn(Result<Response, Infallible>) -> Result<Response, Infallible>>>,
    >;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        use futures::FutureExt as _;
        let timer = self.timing.timer(request.uri().path());
        let span = request_span(&request);
        request.extensions_mut().insert(self.client);
        timer.around(Traced { answer: self.routes.clone().call(request).map(secure as fn(_) -> _), span })
    }
}

/// A request's span, named by its method until a route names it better (`http::sales` does for purchases).
fn request_span(request: &Request<Incoming>) -> Span {
    let method = request.method().as_str();
    tracing::debug_span!(
        "http.request",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        url.path = request.uri().path(),
        http.route = Empty,
        http.response.status_code = Empty,
        product_id = Empty,
        order_id = Empty,
    )
}

pin_project_lite::pin_project! {
    /// A request's answer on its way: polled inside the request's span, whose status it records once it is ready.
    struct Traced<F> {
        #[pin]
        answer: F,
        span: Span,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Traced<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let Ok(response) = std::task::ready!(this.answer.poll(cx));
        if !this.span.is_disabled() {
            let status = response.status();
            this.span.record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_server_error() {
                this.span.record("otel.status_code", "error");
            }
        }
        Poll::Ready(Ok(response))
    }
}

const NO_FRAMES: HeaderValue = HeaderValue::from_static("DENY");
const NO_SNIFFING: HeaderValue = HeaderValue::from_static("nosniff");
const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
/// An API answer loads nothing; the pages set a policy of their own.
const NOTHING_LOADS: HeaderValue = HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'");

/// Headers every answer carries: never framed, never sniffed into another type, no referrer leaked.
fn secure(answer: Result<Response, Infallible>) -> Result<Response, Infallible> {
    let Ok(mut response) = answer;
    let headers = response.headers_mut();
    let set: [(HeaderName, HeaderValue); 3] =
        [(X_CONTENT_TYPE_OPTIONS, NO_SNIFFING), (X_FRAME_OPTIONS, NO_FRAMES), (REFERRER_POLICY, NO_REFERRER)];
    for (name, value) in set {
        headers.insert(name, value);
    }
    headers.entry(CONTENT_SECURITY_POLICY).or_insert(NOTHING_LOADS);
    Ok(response)
}

/// The connections open, overall and per address.
struct Gate {
    open: AtomicUsize,
    max: usize,
    per_ip: DashMap<IpAddr, usize>,
    max_per_ip: usize,
}

/// A connection's place under the caps, given back when it closes.
struct Ticket {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    fn new(max: usize, max_per_ip: usize) -> Self {
        Self { open: AtomicUsize::new(0), max, per_ip: DashMap::new(), max_per_ip }
    }

    fn admit(gate: &Arc<Self>, ip: IpAddr) -> Option<Ticket> {
        if gate.open.fetch_add(1, Ordering::AcqRel) >= gate.max {
            gate.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut from_ip = gate.per_ip.entry(ip).or_insert(0);
        if *from_ip >= gate.max_per_ip {
            drop(from_ip);
            gate.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *from_ip += 1;
        Some(Ticket { gate: Arc::clone(gate), ip })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.per_ip.remove_if_mut(&self.ip, |_, open| {
            *open -= 1;
            *open == 0
        });
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection past a cap is told before it is closed: the whole answer fits a fresh socket's send buffer,
/// so it is written without waiting, or not at all.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 174\r\n\
\r\n\
{\"type\":\"/problems/too-many-connections\",\"title\":\"Service Unavailable\",\"status\":503,\"code\":\"TOO_MANY_CONNECTIONS\",\
\"detail\":\"too many connections are open; try again shortly\"}";

/// What the client has sent so far is read and dropped first, and the answer is followed by a FIN: a socket closed
/// with unread data resets the connection, which could destroy the answer before the client reads it.
fn refuse(stream: tokio::net::TcpStream) {
    let mut sent = [0u8; 4096];
    while matches!(stream.try_read(&mut sent), Ok(read) if read > 0) {}
    let _ = stream.try_write(FULL);
    if let Ok(stream) = stream.into_std() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    tracing::debug!("refused a connection past the connection caps");
}

/// A client that hangs up, times out or sends what is not HTTP is the client's doing: hyper has already answered
/// what it could (400, 408, 414, 431), and the log says so below ERROR.
fn connection_failed(peer: SocketAddr, err: &(dyn std::error::Error + 'static)) {
    match err.downcast_ref::<hyper::Error>() {
        Some(err) if err.is_timeout() => {
            tracing::debug!(%peer, "closed a connection whose request head did not arrive in time")
        }
        Some(err) if err.is_parse() || err.is_parse_status() => {
            tracing::debug!(%peer, error = %err, "refused a request that is not valid HTTP/1.1")
        }
        Some(err) if err.is_incomplete_message() || err.is_closed() || err.is_canceled() => {
            tracing::debug!(%peer, error = %err, "client went away")
        }
        _ => tracing::warn!(%peer, error = %err, "connection ended with an error"),
    }
}

/// Out of file descriptors, or a connection reset before it was accepted: wait a moment rather than spin.
async fn accept_failed(err: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(err.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused) {
        return;
    }
    tracing::warn!(error = %err, "could not accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_complete_problem_json() {
        let text = std::str::from_utf8(FULL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(body["code"], "TOO_MANY_CONNECTIONS");
    }

    #[test]
    fn the_gate_counts_overall_and_per_address() {
        let gate = Arc::new(Gate::new(3, 2));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = Gate::admit(&gate, a).expect("first from a");
        let second = Gate::admit(&gate, a).expect("second from a");
        assert!(Gate::admit(&gate, a).is_none(), "a third from a is past the per-address cap");
        let third = Gate::admit(&gate, b).expect("first from b");
        assert!(Gate::admit(&gate, b).is_none(), "a fourth overall is past the overall cap");
        drop(first);
        let again = Gate::admit(&gate, b).expect("a closed connection frees its place");
        drop((second, third, again));
        assert_eq!(gate.open.load(Ordering::Acquire), 0);
        assert!(gate.per_ip.is_empty(), "addresses with nothing open are forgotten");
    }
}

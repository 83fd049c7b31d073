//! Each request's latency and answer, by route, recorded around the routes by the listener (so a refusal before any
//! handler — a missing login, a body too large — counts too).
//!
//! warp does not say which route matched, so the path is classified here into the route templates the OpenAPI
//! document lists (ids become `{id}`: a label per order id would be a series per order). Classifying walks the
//! path's segments without allocating, and each route's handles are resolved when the listener starts, so timing
//! a request costs a clock read, a match on a few segments and two atomic adds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use warp::reply::Response;

use crate::metrics::{HttpMetrics, RouteMetrics};

/// The routes requests are counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Readyz,
    Metrics,
    Register,
    Login,
    Password,
    Products,
    Product,
    Purchase,
    SeckillToken,
    Orders,
    Order,
    Cancel,
    Pay,
    PaymentCallback,
    Admin,
    StockFeed,
    OrderFeed,
    Storefront,
    AdminPage,
    Asset,
    OpenApi,
    Docs,
    Other,
}

impl Route {
    const ALL: [Route; 24] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Register,
        Route::Login,
        Route::Password,
        Route::Products,
        Route::Product,
        Route::Purchase,
        Route::SeckillToken,
        Route::Orders,
        Route::Order,
        Route::Cancel,
        Route::Pay,
        Route::PaymentCallback,
        Route::Admin,
        Route::StockFeed,
        Route::OrderFeed,
        Route::Storefront,
        Route::AdminPage,
        Route::Asset,
        Route::OpenApi,
        Route::Docs,
        Route::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Register => "/api/v1/auth/register",
            Route::Login => "/api/v1/auth/login",
            Route::Password => "/api/v1/auth/password",
            Route::Products => "/api/v1/products",
            Route::Product => "/api/v1/products/{id}",
            Route::Purchase => "/api/v1/products/{id}/purchase",
            Route::SeckillToken => "/api/v1/products/{id}/token",
            Route::Orders => "/api/v1/orders",
            Route::Order => "/api/v1/orders/{id}",
            Route::Cancel => "/api/v1/orders/{id}/cancel",
            Route::Pay => "/api/v1/orders/{id}/pay",
            Route::PaymentCallback => "/api/v1/payments/callback",
            Route::Admin => "/api/v1/admin/*",
            Route::StockFeed => "/ws/stock",
            Route::OrderFeed => "/ws/orders",
            Route::Storefront => "/",
            Route::AdminPage => "/admin",
            Route::Asset => "/assets/{name}",
            Route::OpenApi => "/openapi.json",
            Route::Docs => "/docs",
            Route::Other => "other",
        }
    }

    /// The route `path` belongs to, whatever the method (a wrong method is still that route's answer).
    fn of(path: &str) -> Route {
        let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
        let first = segments.next().unwrap_or("");
        let rest: [Option<&str>; 5] = std::array::from_fn(|_| segments.next());
        match (first, rest) {
            ("", [None, ..]) => Route::Storefront,
            ("healthz", [None, ..]) => Route::Healthz,
            ("readyz", [None, ..]) => Route::Readyz,
            ("metrics", [None, ..]) => Route::Metrics,
            ("admin", [None, ..]) => Route::AdminPage,
            ("assets", [Some(_), None, ..]) => Route::Asset,
            ("openapi.json", [None, ..]) => Route::OpenApi,
            ("docs", _) => Route::Docs,
            ("ws", [Some("stock"), None, ..]) => Route::StockFeed,
            ("ws", [Some("orders"), None, ..]) => Route::OrderFeed,
            ("api", [Some("v1"), Some("admin"), ..]) => Route::Admin,
            ("api", [Some("v1"), Some(area), id, step, None]) => Route::api(area, id, step),
            _ => Route::Other,
        }
    }

    fn api(area: &str, id: Option<&str>, step: Option<&str>) -> Route {
        match (area, id, step) {
            ("auth", Some("register"), None) => Route::Register,
            ("auth", Some("login"), None) => Route::Login,
            ("auth", Some("password"), None) => Route::Password,
            ("products", None | Some(""), None) => Route::Products,
            ("products", Some(_), None) => Route::Product,
            ("products", Some(_), Some("purchase")) => Route::Purchase,
            ("products", Some(_), Some("token")) => Route::SeckillToken,
            ("orders", None | Some(""), None) => Route::Orders,
            ("orders", Some(_), None) => Route::Order,
            ("orders", Some(_), Some("cancel")) => Route::Cancel,
            ("orders", Some(_), Some("pay")) => Route::Pay,
            ("payments", Some("callback"), None) => Route::PaymentCallback,
            _ => Route::Other,
        }
    }
}

/// Every route's handles, resolved once.
pub(super) struct Routes(Vec<RouteMetrics>);

impl Routes {
    pub fn new(metrics: &HttpMetrics) -> Self {
        Self(Route::ALL.iter().map(|route| metrics.route(route.label())).collect())
    }

    /// Starts timing a request for `path`, from now.
    pub fn timer(self: &Arc<Self>, path: &str) -> Timer {
        Timer { routes: Arc::clone(self), at: Route::of(path) as usize, started: Instant::now() }
    }
}

/// A request's clock, started when its head arrived.
pub(super) struct Timer {
    routes: Arc<Routes>,
    at: usize,
    started: Instant,
}

impl Timer {
    /// The routes' `answer`, recorded when it is ready.
    pub fn around<F>(self, answer: F) -> Timed<F> {
        let Timer { routes, at, started } = self;
        Timed { answer, routes, at, started }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer on its way, recorded when it is ready.
    pub(super) struct Timed<F> {
        #[pin]
        answer: F,
        routes: Arc<Routes>,
        at: usize,
        started: Instant,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.answer.poll(cx));
        if let (Ok(response), Some(route)) = (&answer, this.routes.0.get(*this.at)) {
            route.observe(response.status().as_u16(), this.started.elapsed());
        }
        Poll::Ready(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_under_their_route_templates() {
        let cases = [
            ("/", Route::Storefront),
            ("/healthz", Route::Healthz),
            ("/metrics", Route::Metrics),
            ("/api/v1/products", Route::Products),
            ("/api/v1/products/", Route::Products),
            ("/api/v1/products/7", Route::Product),
            ("/api/v1/products/7/purchase", Route::Purchase),
            ("/api/v1/products/7/token", Route::SeckillToken),
            ("/api/v1/orders/0190/pay", Route::Pay),
            ("/api/v1/orders/0190/cancel", Route::Cancel),
            ("/api/v1/orders/0190", Route::Order),
            ("/api/v1/auth/login", Route::Login),
            ("/api/v1/payments/callback", Route::PaymentCallback),
            ("/api/v1/admin/products/7/stock", Route::Admin),
            ("/api/v1/admin/dead-letters/3/reprocess/x/y", Route::Admin),
            ("/ws/stock", Route::StockFeed),
            ("/assets/app.js", Route::Asset),
            ("/docs/index.html", Route::Docs),
            ("/api/v1/products/7/purchase/again", Route::Other),
            ("/api/v2/products", Route::Other),
            ("/nothing/here", Route::Other),
        ];
        for (path, route) in cases {
            assert_eq!(Route::of(path), route, "{path}");
        }
    }

    #[test]
    fn routes_are_listed_in_their_order() {
        for (at, route) in Route::ALL.iter().enumerate() {
            assert_eq!(*route as usize, at, "{route:?}");
        }
    }

    #[test]
    fn every_route_has_its_own_label() {
        let mut labels: Vec<&str> = Route::ALL.iter().map(|route| route.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Route::ALL.len());
    }
}

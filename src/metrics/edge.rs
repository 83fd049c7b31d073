//! What the HTTP edge records: each route's latency and answers, what buyers were told, who was refused for their
//! rate or a ban, and who watches live.

use std::time::Duration;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use rustc_hash::FxBuildHasher;

use super::{latency_buckets, MetricsError, Registrar};

/// Latency and answers per route; each route's handles are resolved once (`route`).
pub struct HttpMetrics {
    duration: HistogramVec,
    responses: IntCounterVec,
}

/// One route's handles.
pub struct RouteMetrics {
    duration: Histogram,
    /// By status class, 1xx to 5xx.
    responses: [IntCounter; 5],
}

impl HttpMetrics {
    pub(super) fn new(add: &Registrar) -> Result<Self, MetricsError> {
        Ok(Self {
            duration: add.histogram_vec(
                "seckill_http_request_duration_seconds",
                "From a request's head to its answer, by route.",
                &["route"],
                latency_buckets(),
            )?,
            responses: add.counter_vec(
                "seckill_http_responses_total",
                "Answers by route and status class (2xx, 4xx, ...).",
                &["route", "class"],
            )?,
        })
    }

    /// The handles of the route labelled `route` (a path template such as `/api/v1/products/{id}/purchase`).
    pub fn route(&self, route: &str) -> RouteMetrics {
        let class = |class: &str| self.responses.with_label_values(&[route, class]);
        RouteMetrics {
            duration: self.duration.with_label_values(&[route]),
            responses: [class("1xx"), class("2xx"), class("3xx"), class("4xx"), class("5xx")],
        }
    }
}

impl RouteMetrics {
    pub fn observe(&self, status: u16, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].inc();
    }
}

/// What every purchase was told, by outcome and problem code. The crowd's answers are few codes many times over:
/// each code's counter is resolved the first time it is told and found without a lock after that.
pub struct PurchaseMetrics {
    told: IntCounterVec,
    accepted: IntCounter,
    refused: papaya::HashMap<(u16, &'static str), IntCounter, FxBuildHasher>,
}

impl PurchaseMetrics {
    pub(super) fn new(add: &Registrar) -> Result<Self, MetricsError> {
        let told = add.counter_vec(
            "seckill_purchases_total",
            "Purchases by what the buyer was told: accepted (202), refused (4xx) or failed (5xx), and the code.",
            &["outcome", "code"],
        )?;
        let accepted = told.with_label_values(&["accepted", "ACCEPTED"]);
        Ok(Self { told, accepted, refused: papaya::HashMap::with_hasher(FxBuildHasher) })
    }

    /// A purchase answered 202.
    pub fn accepted(&self) {
        self.accepted.inc();
    }

    /// A purchase answered `status` with the problem `code`.
    pub fn refused(&self, status: u16, code: &'static str) {
        let refused = self.refused.pin();
        let counter = refused.get_or_insert_with((status, code), || {
            let outcome = if status >= 500 { "failed" } else { "refused" };
            self.told.with_label_values(&[outcome, code])
        });
        counter.inc();
    }
}

/// Requests refused before they reached a sale: a rate limit's bucket was empty, or the caller is banned. A flood
/// is refused on these paths, so each scope's counter is resolved when the service starts.
pub struct RefusalMetrics {
    rate_limited: Resolved<5>,
    blacklisted: Resolved<2>,
}

/// A counter per label value, resolved up front; a value not listed is resolved when it comes.
struct Resolved<const N: usize> {
    counters: IntCounterVec,
    each: [(&'static str, IntCounter); N],
}

impl<const N: usize> Resolved<N> {
    fn new(counters: IntCounterVec, values: [&'static str; N]) -> Self {
        let each = values.map(|value| (value, counters.with_label_values(&[value])));
        Self { counters, each }
    }

    fn inc(&self, value: &str) {
        match self.each.iter().find(|(each, _)| *each == value) {
            Some((_, counter)) => counter.inc(),
            None => self.counters.with_label_values(&[value]).inc(),
        }
    }
}

impl RefusalMetrics {
    pub(super) fn new(add: &Registrar) -> Result<Self, MetricsError> {
        let rate_limited = add.counter_vec(
            "seckill_rate_limited_total",
            "Requests refused 429 RATE_LIMITED, by the bucket that ran dry (user, ip, global, login_ip, login_user).",
            &["scope"],
        )?;
        let blacklisted = add.counter_vec(
            "seckill_blacklisted_total",
            "Requests refused 403 BLACKLISTED, by what is banned (user or ip).",
            &["subject"],
        )?;
        Ok(Self {
            rate_limited: Resolved::new(rate_limited, ["user", "ip", "global", "login_ip", "login_user"]),
            blacklisted: Resolved::new(blacklisted, ["user", "ip"]),
        })
    }

    pub fn rate_limited(&self, scope: &str) {
        self.rate_limited.inc(scope);
    }

    pub fn blacklisted(&self, subject: &str) {
        self.blacklisted.inc(subject);
    }
}

/// Clients connected to the live feeds.
pub struct LiveMetrics {
    clients: IntGaugeVec,
}

/// A connected client, counted until it is dropped.
pub struct Watching(IntGauge);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl LiveMetrics {
    pub(super) fn new(add: &Registrar) -> Result<Self, MetricsError> {
        let clients = add.gauge_vec(
            "seckill_websocket_clients",
            "WebSocket clients connected now, by feed (stock or orders).",
            &["feed"],
        )?;
        for feed in ["stock", "orders"] {
            clients.with_label_values(&[feed]);
        }
        Ok(Self { clients })
    }

    /// Counts a client of `feed` for as long as the answer is kept.
    pub fn watching(&self, feed: &str) -> Watching {
        let gauge = self.clients.with_label_values(&[feed]);
        gauge.inc();
        Watching(gauge)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::*;

    #[test]
    fn answers_count_by_status_class() -> Result<(), MetricsError> {
        let metrics = Metrics::new()?;
        let route = metrics.http.route("/healthz");
        route.observe(200, Duration::from_millis(1));
        route.observe(503, Duration::from_millis(2));
        route.observe(101, Duration::ZERO);
        let text = metrics.render()?;
        for class in ["1xx", "2xx", "5xx"] {
            assert!(text.contains(&format!("seckill_http_responses_total{{class=\"{class}\",route=\"/healthz\"}} 1")));
        }
        assert!(text.contains("seckill_http_request_duration_seconds_count{route=\"/healthz\"} 3"), "{text}");
        Ok(())
    }

    #[test]
    fn purchases_count_by_outcome_and_code() -> Result<(), MetricsError> {
        let metrics = Metrics::new()?;
        metrics.purchases.accepted();
        for _ in 0..3 {
            metrics.purchases.refused(409, "SOLD_OUT");
        }
        metrics.purchases.refused(503, "UNAVAILABLE");
        let text = metrics.render()?;
        assert!(text.contains("seckill_purchases_total{code=\"ACCEPTED\",outcome=\"accepted\"} 1"), "{text}");
        assert!(text.contains("seckill_purchases_total{code=\"SOLD_OUT\",outcome=\"refused\"} 3"), "{text}");
        assert!(text.contains("seckill_purchases_total{code=\"UNAVAILABLE\",outcome=\"failed\"} 1"), "{text}");
        Ok(())
    }

    #[test]
    fn refusals_count_by_scope_and_subject() -> Result<(), MetricsError> {
        let metrics = Metrics::new()?;
        metrics.refusals.rate_limited("user");
        metrics.refusals.rate_limited("user");
        metrics.refusals.rate_limited("somewhere");
        metrics.refusals.blacklisted("ip");
        let text = metrics.render()?;
        assert!(text.contains("seckill_rate_limited_total{scope=\"user\"} 2"), "{text}");
        assert!(text.contains("seckill_rate_limited_total{scope=\"somewhere\"} 1"), "{text}");
        assert!(text.contains("seckill_rate_limited_total{scope=\"global\"} 0"), "{text}");
        assert!(text.contains("seckill_blacklisted_total{subject=\"ip\"} 1"), "{text}");
        Ok(())
    }

    #[test]
    fn a_watching_client_is_counted_until_it_leaves() -> Result<(), MetricsError> {
        let metrics = Metrics::new()?;
        let first = metrics.live.watching("stock");
        let second = metrics.live.watching("stock");
        drop(first);
        assert!(metrics.render()?.contains("seckill_websocket_clients{feed=\"stock\"} 1"));
        drop(second);
        assert!(metrics.render()?.contains("seckill_websocket_clients{feed=\"stock\"} 0"));
        Ok(())
    }
}

//! What an operator watches during a sale, in Prometheus's text format at `/metrics`.
//!
//! Every metric lives in one registry per running service (not the process-global one), so two services in one
//! process — the integration tests — never count each other's requests. Handles are resolved once, when the
//! service starts (a route's histogram, a refusal code's counter the first time it is seen), so recording is an
//! atomic add on the hot path: no lock, no allocation, no label formatting. What only an actor knows — where every
//! unit is, how deep the mailboxes are, how far behind the projector is — is sampled when Prometheus scrapes
//! (`census`), so the actors pay nothing between scrapes.
//!
//! Names are `seckill_*`, but for the lifecycle counters the seeds define (`compensation_attempt_total`,
//! `compensation_success_total`, `failed_order_archived_total`), kept as the seeds spell them so their dashboards
//! read this service too.

mod census;
mod edge;
mod jobs;

use prometheus::core::Collector;
use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts};
use prometheus::{IntGaugeVec, Registry, TextEncoder};

pub use census::{ActorDepth, Census, CensusGauges, ProductLedger};
pub use edge::{HttpMetrics, LiveMetrics, PurchaseMetrics, RefusalMetrics, RouteMetrics};
pub use jobs::{JournalMetrics, LifecycleMetrics};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every metric of one service.
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub purchases: PurchaseMetrics,
    pub refusals: RefusalMetrics,
    pub live: LiveMetrics,
    pub journal: JournalMetrics,
    pub lifecycle: LifecycleMetrics,
    pub census: CensusGauges,
}

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let add = Registrar(&registry);
        let build = add.gauge_vec(
            "seckill_build_info",
            "The running build: always 1, labelled with its version.",
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Ok(Self {
            http: HttpMetrics::new(&add)?,
            purchases: PurchaseMetrics::new(&add)?,
            refusals: RefusalMetrics::new(&add)?,
            live: LiveMetrics::new(&add)?,
            journal: JournalMetrics::new(&add)?,
            lifecycle: LifecycleMetrics::new(&add)?,
            census: CensusGauges::new(&add)?,
            registry,
        })
    }

    /// The text Prometheus scrapes.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut text = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

/// Registers what it builds in one registry.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<C: Collector + Clone + 'static>(&self, collector: C) -> Result<C, MetricsError> {
        self.0.register(Box::new(collector.clone()))?;
        Ok(collector)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        self.register(IntCounter::with_opts(Opts::new(name, help))?)
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, MetricsError> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        self.register(IntGauge::with_opts(Opts::new(name, help))?)
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, MetricsError> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn float_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<prometheus::GaugeVec, MetricsError> {
        self.register(prometheus::GaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Result<Histogram, MetricsError> {
        self.register(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?)
    }

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> Result<HistogramVec, MetricsError> {
        self.register(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?)
    }
}

/// Latency buckets, in seconds: from half a millisecond (a refusal) to ten seconds (a request that waited out a
/// timeout).
fn latency_buckets() -> Vec<f64> {
    vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

/// Moves a counter that mirrors a count kept elsewhere up to `total` (it never goes down).
fn advance(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_registry_renders_its_build_and_the_seed_counters() -> Result<(), MetricsError> {
        let metrics = Metrics::new()?;
        let text = metrics.render()?;
        assert!(text.contains("seckill_build_info{version=\""), "{text}");
        for name in ["compensation_attempt_total", "compensation_success_total", "failed_order_archived_total"] {
            assert!(text.contains(&format!("# TYPE {name} counter")), "{name} missing from\n{text}");
        }
        Ok(())
    }

    #[test]
    fn an_advanced_counter_follows_its_source_and_never_goes_back() -> Result<(), MetricsError> {
        let counter = IntCounter::new("c", "c")?;
        advance(&counter, 3);
        advance(&counter, 2);
        assert_eq!(counter.get(), 3);
        advance(&counter, 5);
        assert_eq!(counter.get(), 5);
        Ok(())
    }
}

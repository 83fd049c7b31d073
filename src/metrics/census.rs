//! What only the actors know, sampled when Prometheus scrapes: where every unit of every product is and whether the
//! ledger adds up, how deep each kind of actor's mailboxes are, how far the projector is behind, how many dead
//! letters wait for an operator, how often supervisors restarted a child, and whether the service is ready.

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::{advance, MetricsError, Registrar};

/// One product's ledger, read while no unit can move.
#[derive(Debug, Clone)]
pub struct ProductLedger {
    pub product: i64,
    pub stock: u64,
    pub pool: u64,
    /// Units in the shards' slices, on sale.
    pub shards: u64,
    pub in_flight: u64,
    pub reserved: u64,
    pub paid: u64,
    /// Units released back on sale since the sale began (they are in `pool` or `shards` again).
    pub released: u64,
    pub invariant_holds: bool,
    pub snapshot_age_seconds: f64,
}

/// The actors of one kind running now, and the messages waiting in their mailboxes.
#[derive(Debug, Clone)]
pub struct ActorDepth {
    pub kind: &'static str,
    pub actors: u64,
    pub waiting: u64,
    pub deepest: u64,
}

/// One scrape's sample. A part that could not be read is `None` (or missing) and its gauges are left out rather
/// than shown stale.
#[derive(Debug, Clone, Default)]
pub struct Census {
    pub ready: bool,
    pub products: Vec<ProductLedger>,
    /// Products that did not answer in time.
    pub silent_products: Vec<i64>,
    pub actors: Vec<ActorDepth>,
    pub projector_lag: Option<u64>,
    /// Pending dead letters, by job ("payment", "refund").
    pub dead_letters: Option<[(&'static str, u64); 2]>,
    /// Restarts since start, by supervisor.
    pub restarts: Vec<(&'static str, u64)>,
    pub snapshot_failures: u64,
}

pub struct CensusGauges {
    ready: IntGauge,
    stock: IntGaugeVec,
    units: IntGaugeVec,
    released: IntGaugeVec,
    invariant_broken: IntGaugeVec,
    snapshot_age: GaugeVec,
    snapshot_failures: IntCounter,
    actors: IntGaugeVec,
    waiting: IntGaugeVec,
    deepest: IntGaugeVec,
    projector_lag: IntGauge,
    dead_letters: IntGaugeVec,
    restarts: IntCounterVec,
}

/// The states `seckill_product_units` splits a product's stock into; they add up to `seckill_product_stock_units`.
const STATES: [&str; 5] = ["pool", "shards", "in_flight", "reserved", "paid"];

impl CensusGauges {
    pub(super) fn new(add: &Registrar) -> Result<Self, MetricsError> {
        let product = &["product"];
        Ok(Self {
            ready: add
                .gauge("seckill_ready", "1 while the service is ready for buyers (what /readyz says), else 0.")?,
            stock: add.gauge_vec(
                "seckill_product_stock_units",
                "Every unit a product has had on sale: its stock and its restocks.",
                product,
            )?,
            units: add.gauge_vec(
                "seckill_product_units",
                "A product's units by where they are now (pool, shards, in_flight, reserved, paid); they add up to \
                 seckill_product_stock_units.",
                &["product", "state"],
            )?,
            released: add.gauge_vec(
                "seckill_product_released_units",
                "Units of expired and cancelled orders put back on sale since the sale began.",
                product,
            )?,
            invariant_broken: add.gauge_vec(
                "seckill_ledger_invariant_broken",
                "1 if a product's units by state do not add up to its stock (a unit is missing or counted twice), \
                 0 while they do.",
                product,
            )?,
            snapshot_age: add.float_gauge_vec(
                "seckill_snapshot_age_seconds",
                "Seconds since a product's last snapshot.",
                product,
            )?,
            snapshot_failures: add.counter(
                "seckill_snapshot_failures_total",
                "Snapshot saves that failed (sales go on; recovery replays further).",
            )?,
            actors: add.gauge_vec("seckill_actors", "Actors running now, by kind.", &["kind"])?,
            waiting: add.gauge_vec(
                "seckill_actor_mailbox_depth",
                "Messages waiting in the mailboxes of all actors of a kind when the scrape asked.",
                &["kind"],
            )?,
            deepest: add.gauge_vec(
                "seckill_actor_mailbox_depth_max",
                "The deepest mailbox among the actors of a kind when the scrape asked.",
                &["kind"],
            )?,
            projector_lag: add.gauge(
                "seckill_projector_lag_events",
                "Journal events the order projector has yet to write into the orders table.",
            )?,
            dead_letters: add.gauge_vec(
                "seckill_dead_letters_pending",
                "Dead letters waiting for an operator to replay them, by job (payment, refund).",
                &["job"],
            )?,
            restarts: add.counter_vec(
                "seckill_supervisor_restarts_total",
                "Children a supervisor restarted since start, by supervisor.",
                &["supervisor"],
            )?,
        })
    }

    pub fn record(&self, census: &Census) {
        self.ready.set(i64::from(census.ready));
        for ledger in &census.products {
            let product = ledger.product.to_string();
            let product = product.as_str();
            self.stock.with_label_values(&[product]).set(gauge(ledger.stock));
            let by_state = [ledger.pool, ledger.shards, ledger.in_flight, ledger.reserved, ledger.paid];
            for (state, units) in STATES.into_iter().zip(by_state) {
                self.units.with_label_values(&[product, state]).set(gauge(units));
            }
            self.released.with_label_values(&[product]).set(gauge(ledger.released));
            self.invariant_broken.with_label_values(&[product]).set(i64::from(!ledger.invariant_holds));
            self.snapshot_age.with_label_values(&[product]).set(ledger.snapshot_age_seconds);
        }
        for silent in &census.silent_products {
            let product = silent.to_string();
            let _ = self.stock.remove_label_values(&[&product]);
            for state in STATES {
                let _ = self.units.remove_label_values(&[&product, state]);
            }
            let _ = self.released.remove_label_values(&[&product]);
            let _ = self.invariant_broken.remove_label_values(&[&product]);
            let _ = self.snapshot_age.remove_label_values(&[&product]);
        }
        for depth in &census.actors {
            self.actors.with_label_values(&[depth.kind]).set(gauge(depth.actors));
            self.waiting.with_label_values(&[depth.kind]).set(gauge(depth.waiting));
            self.deepest.with_label_values(&[depth.kind]).set(gauge(depth.deepest));
        }
        if let Some(lag) = census.projector_lag {
            self.projector_lag.set(gauge(lag));
        }
        if let Some(letters) = census.dead_letters {
            for (job, pending) in letters {
                self.dead_letters.with_label_values(&[job]).set(gauge(pending));
            }
        }
        for (supervisor, restarts) in &census.restarts {
            advance(&self.restarts.with_label_values(&[supervisor]), *restarts);
        }
        advance(&self.snapshot_failures, census.snapshot_failures);
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::*;

    fn ledger(product: i64, holds: bool) -> ProductLedger {
        ProductLedger {
            product,
            stock: 10,
            pool: 2,
            shards: 3,
            in_flight: 0,
            reserved: 4,
            paid: 1,
            released: 5,
            invariant_holds: holds,
            snapshot_age_seconds: 1.5,
        }
    }

    #[test]
    fn a_census_shows_each_products_units_and_forgets_a_silent_one() -> Result<(), MetricsError> {
        let metrics = Metrics::new()?;
        let census = Census { products: vec![ledger(7, true), ledger(8, false)], ..Census::default() };
        metrics.census.record(&census);
        let text = metrics.render()?;
        assert!(text.contains("seckill_product_units{product=\"7\",state=\"reserved\"} 4"), "{text}");
        assert!(text.contains("seckill_ledger_invariant_broken{product=\"7\"} 0"), "{text}");
        assert!(text.contains("seckill_ledger_invariant_broken{product=\"8\"} 1"), "{text}");
        metrics.census.record(&Census { silent_products: vec![8], ..Census::default() });
        let text = metrics.render()?;
        assert!(!text.contains("product=\"8\""), "{text}");
        assert!(text.contains("product=\"7\""), "{text}");
        Ok(())
    }

    #[test]
    fn restarts_and_snapshot_failures_follow_their_totals() -> Result<(), MetricsError> {
        let metrics = Metrics::new()?;
        for total in [2, 5] {
            let census = Census { restarts: vec![("products", total)], snapshot_failures: total, ..Census::default() };
            metrics.census.record(&census);
        }
        let text = metrics.render()?;
        assert!(text.contains("seckill_supervisor_restarts_total{supervisor=\"products\"} 5"), "{text}");
        assert!(text.contains("seckill_snapshot_failures_total 5"), "{text}");
        Ok(())
    }
}

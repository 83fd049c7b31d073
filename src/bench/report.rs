//! The bench's report: a human summary on stderr, the same figures as JSON on stdout (and optionally in a file), as
//! an HTML page with charts (optionally), and the verdict that decides the exit status.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::audit::Correctness;
use super::lifecycle::LifecycleReport;
use super::load::{LatencySummary, PhaseStats};
use super::subscribers::FeedReport;
use super::timeline::Series;

/// Everything one run measured.
#[derive(Serialize)]
pub(super) struct Report {
    /// When the run began: UTC, RFC 3339.
    pub started_at: String,
    /// The version of the `seckill` package the bench was built from.
    pub bench_version: &'static str,
    /// `--label`: what the run measured, in its author's words (backends, commit, machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub url: String,
    pub product_id: i64,
    pub users: usize,
    pub stock: u64,
    pub concurrency: usize,
    pub per_user_limit: u32,
    /// The sale's stock shards, as the service made them.
    pub shards: u32,
    #[serde(flatten)]
    pub purchase: PhaseStats,
    pub projector: Settlement,
    /// Absent when the projector never caught up, so there was nothing trustworthy to check.
    pub correctness: Option<Correctness>,
    /// With `--pay`: what became of every order after the crowd.
    pub lifecycle: Option<LifecycleReport>,
    /// With `--stock-subscribers`: what the sale's watchers saw.
    pub stock_feed: Option<FeedReport>,
    pub baseline: Option<Baseline>,
}

/// How the order projector fared after the load.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Settlement {
    pub caught_up: bool,
    /// From the end of the load until the projector reported it had caught up (or the wait gave up).
    pub catch_up_secs: f64,
    pub orders_per_second: f64,
}

/// The healthz baseline next to the purchase phase.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Baseline {
    pub healthz_requests: u64,
    pub healthz_rps: f64,
    pub healthz_latency_ms: LatencySummary,
    pub healthz_outcomes: BTreeMap<String, u64>,
    pub healthz_timeline: Series,
    pub purchase_to_healthz_ratio: f64,
    /// Whether a snapshot of the sale was still due or being saved when the baseline began (after waiting for it
    /// up to `SNAPSHOT_WAIT`), so that it may have shared the machine with the baseline.
    pub snapshot_pending: bool,
}

impl Baseline {
    pub fn compare(purchase: &PhaseStats, healthz: PhaseStats, snapshot_pending: bool) -> Self {
        let ratio = if healthz.throughput_rps > 0.0 { purchase.throughput_rps / healthz.throughput_rps } else { 0.0 };
        Self {
            healthz_requests: healthz.requests,
            healthz_rps: healthz.throughput_rps,
            healthz_latency_ms: healthz.latency_ms,
            healthz_outcomes: healthz.outcomes,
            healthz_timeline: healthz.timeline,
            purchase_to_healthz_ratio: ratio,
            snapshot_pending,
        }
    }
}

impl Report {
    /// Fails if correctness could not be checked, if a unit was oversold, left unsold, lost or duplicated, or if the
    /// product's stock ledger did not add up.
    pub fn verdict(&self) -> Result<()> {
        let Some(correctness) = &self.correctness else {
            bail!(
                "the order projector did not catch up within {:.0} s; correctness was not checked",
                self.projector.catch_up_secs
            );
        };
        let failures = correctness.failures();
        if !failures.is_empty() {
            let listed: Vec<String> = failures.iter().map(|(name, count)| format!("{name} {count}")).collect();
            bail!("correctness check failed: {}", listed.join(", "));
        }
        if !correctness.invariant_holds {
            bail!("the product's stock ledger does not add up (invariant broken)");
        }
        if let Some(lifecycle) = self.lifecycle.as_ref().filter(|lifecycle| !lifecycle.every_unit_accounted) {
            bail!("order lifecycle check failed: {lifecycle:?}");
        }
        if let Some(feed) = self.stock_feed.as_ref().filter(|feed| feed.rises > 0 || !feed.all_reached_final) {
            bail!("stock feed check failed: {feed:?}");
        }
        Ok(())
    }
}

/// Prints the summary to stderr and the JSON report to stdout, and writes the JSON to `json_path` and the HTML page
/// to `html_path` if given.
pub(super) fn emit(report: &Report, json_path: Option<&Path>, html_path: Option<&Path>) -> Result<()> {
    print_summary(report);
    let json = serde_json::to_string_pretty(report).context("serializing the report")?;
    if let Some(path) = json_path {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = html_path {
        let page = super::html::render(report).context("rendering the HTML report")?;
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    Ok(())
}

fn print_summary(report: &Report) {
    let purchase = &report.purchase;
    eprintln!("seckill bench against {} (product {})", report.url, report.product_id);
    eprintln!(
        "  users {}, stock {}, concurrency {}, shards {}",
        report.users, report.stock, report.concurrency, report.shards
    );
    eprintln!(
        "  purchases: {} requests in {:.2} s, {:.0} req/s",
        purchase.requests,
        purchase.duration.as_secs_f64(),
        purchase.throughput_rps
    );
    eprintln!("  latency: {}", latency_line(&purchase.latency_ms));
    eprintln!("  outcomes:");
    for (label, count) in &purchase.outcomes {
        eprintln!("    {label:<28} {count:>10}");
    }
    print_projector(&report.projector);
    match &report.correctness {
        Some(correctness) => print_correctness(correctness),
        None => eprintln!("  correctness: not checked"),
    }
    if let Some(feed) = &report.stock_feed {
        eprintln!(
            "  stock feed: {} subscribers, {:.1} updates each, {} rises, all saw the final stock: {}, {:.0} ms after the last purchase (p50; max {:.0} ms)",
            feed.subscribers,
            feed.updates_per_subscriber,
            feed.rises,
            feed.all_reached_final,
            feed.final_lag_ms.p50,
            feed.final_lag_ms.max
        );
    }
    if let Some(lifecycle) = &report.lifecycle {
        eprintln!(
            "  lifecycle (pay {:.2}, window {} s): paid {}, expired {}, released {}, resold {}, refused {}; paid in the end {} of {}, invariant {} -> {}",
            lifecycle.pay_fraction,
            lifecycle.payment_window_secs,
            lifecycle.paid,
            lifecycle.expired,
            lifecycle.released,
            lifecycle.resold,
            lifecycle.pay_refused,
            lifecycle.paid_in_the_end,
            report.stock,
            if lifecycle.invariant_holds { "holds" } else { "BROKEN" },
            if lifecycle.every_unit_accounted { "every unit accounted for" } else { "UNITS UNACCOUNTED" }
        );
    }
    if let Some(baseline) = &report.baseline {
        print_baseline(baseline);
    }
}

fn print_projector(settlement: &Settlement) {
    let state = if settlement.caught_up { "caught up" } else { "still behind" };
    eprintln!(
        "  projector: {state} {:.2} s after the load, {:.0} orders/s",
        settlement.catch_up_secs, settlement.orders_per_second
    );
}

fn print_correctness(correctness: &Correctness) {
    eprintln!(
        "  correctness: oversold {}, unsold {}, lost {}, duplicate {} (accepted {}, orders {}, units {}, phantom {}, invariant {})",
        correctness.oversold,
        correctness.unsold,
        correctness.lost,
        correctness.duplicate,
        correctness.accepted,
        correctness.orders,
        correctness.units_ordered,
        correctness.phantom,
        if correctness.invariant_holds { "holds" } else { "BROKEN" }
    );
    if let Some(note) = &correctness.note {
        eprintln!("  note: {note}");
    }
}

fn print_baseline(baseline: &Baseline) {
    eprintln!(
        "  baseline: healthz {:.0} req/s, p99 {:.2} ms; purchase/healthz ratio {:.3}{}",
        baseline.healthz_rps,
        baseline.healthz_latency_ms.p99,
        baseline.purchase_to_healthz_ratio,
        if baseline.snapshot_pending {
            " (the sale's snapshot was still pending and may have overlapped it)"
        } else {
            ""
        }
    );
}

fn latency_line(latency: &LatencySummary) -> String {
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        latency.p50, latency.p90, latency.p99, latency.p99_9, latency.max
    )
}

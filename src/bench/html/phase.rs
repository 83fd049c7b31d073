//! A measured phase on the page: its throughput and its latency over time, and the table of the numbers behind them.

use std::fmt::{self, Write};

use super::chart::{Reference, Series, Style, TimeChart};
use super::{figure, grouped, Escaped};
use crate::bench::load::{LatencySummary, PhaseStats};
use crate::bench::report::Baseline;
use crate::bench::timeline;

/// What the page shows of one measured phase.
pub(super) struct Phase<'a> {
    /// Element ids start with it.
    id: &'static str,
    heading: &'static str,
    /// What its requests are called, in captions.
    requests_are: &'static str,
    /// The names of the stacked classes of answers.
    classes: [&'static str; 3],
    requests: u64,
    throughput_rps: f64,
    latency: &'a LatencySummary,
    timeline: &'a timeline::Series,
}

impl<'a> Phase<'a> {
    pub fn purchases(stats: &'a PhaseStats) -> Self {
        Self {
            id: "purchases",
            heading: "Purchases",
            requests_are: "purchases",
            classes: ["reserved (2xx)", "refused (4xx)", "failed (5xx, no answer)"],
            requests: stats.requests,
            throughput_rps: stats.throughput_rps,
            latency: &stats.latency_ms,
            timeline: &stats.timeline,
        }
    }

    pub fn healthz(baseline: &'a Baseline) -> Self {
        Self {
            id: "healthz",
            heading: "/healthz baseline",
            requests_are: "GET /healthz",
            classes: ["answered (2xx)", "refused (4xx)", "failed (5xx, no answer)"],
            requests: baseline.healthz_requests,
            throughput_rps: baseline.healthz_rps,
            latency: &baseline.healthz_latency_ms,
            timeline: &baseline.healthz_timeline,
        }
    }

    /// Its row of the summary table.
    pub fn summary_row(&self, page: &mut String) -> fmt::Result {
        let LatencySummary { p50, p90, p99, p99_9, max } = *self.latency;
        write!(
            page,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{:.2}</td><td>{}</td>\
                <td>{p50:.2}</td><td>{p90:.2}</td><td>{p99:.2}</td><td>{p99_9:.2}</td><td>{max:.2}</td></tr>",
            Escaped(self.heading),
            grouped(self.requests),
            self.timeline.duration_secs,
            grouped(self.throughput_rps.round() as u64),
        )
    }

    fn intervals(&self) -> Vec<(f64, f64)> {
        self.timeline.points.iter().map(|point| (point.start_secs, point.secs)).collect()
    }
}

/// A phase's throughput and latency charts, with `other`'s throughput as a reference line, and its intervals' table.
pub(super) fn phase_section(page: &mut String, phase: &Phase<'_>, other: Option<&Phase<'_>>) -> fmt::Result {
    write!(page, r#"<h2 id="{}">{} over time</h2>"#, phase.id, Escaped(phase.heading))?;
    throughput_figure(page, phase, other)?;
    latency_figure(page, phase)?;
    interval_table(page, phase)
}

/// Requests per second in each interval, stacked by the class of their answer.
fn throughput_figure(page: &mut String, phase: &Phase<'_>, other: Option<&Phase<'_>>) -> fmt::Result {
    const CLASSES: [&str; 3] = ["s-ok", "s-refused", "s-failed"];
    let points = &phase.timeline.points;
    let interval = phase.timeline.interval_secs;
    let counts: [fn(&timeline::Point) -> u64; 3] = [|p| p.succeeded, |p| p.refused, |p| p.failed];
    let totals = counts.map(|count| points.iter().map(count).sum::<u64>());
    // The first class always has a place in the legend; the others only if they happened.
    let series: Vec<Series<'_>> = (0..CLASSES.len())
        .filter(|&i| i == 0 || totals[i] > 0)
        .map(|i| Series {
            name: phase.classes[i],
            class: CLASSES[i],
            values: points
                .iter()
                .map(|point| (point.secs > 0.0).then(|| counts[i](point) as f64 / point.secs))
                .collect(),
        })
        .collect();
    let peak = points.iter().max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps));
    let mut desc = format!(
        "{} {} in {:.2} s, {} per second on average",
        grouped(phase.requests),
        phase.requests_are,
        phase.timeline.duration_secs,
        grouped(phase.throughput_rps.round() as u64)
    );
    if let Some(peak) = peak {
        write!(
            desc,
            ", {} at most (the interval from {:.2} s)",
            grouped(peak.throughput_rps.round() as u64),
            peak.start_secs
        )?;
    }
    write!(
        desc,
        "; intervals of {interval:.2} s. {} {}, {} {}, {} {}.",
        grouped(totals[0]),
        phase.classes[0],
        grouped(totals[1]),
        phase.classes[1],
        grouped(totals[2]),
        phase.classes[2]
    )?;
    if let Some(other) = other {
        let average = grouped(other.throughput_rps.round() as u64);
        write!(desc, " The dashed line is the {} average, {average} per second.", other.heading)?;
    }
    let reference_label = other.map(|other| format!("{} average", other.heading));
    let throughput_id = format!("{}-throughput", phase.id);
    figure(
        page,
        &TimeChart {
            id: &throughput_id,
            title: &format!("{}: requests per second over time", phase.heading),
            desc: &desc,
            y_label: "requests per second",
            intervals: phase.intervals(),
            series,
            style: Style::Stacked,
            reference: other
                .zip(reference_label.as_deref())
                .map(|(other, label)| Reference { label, value: other.throughput_rps }),
        },
        &desc,
    )
}

/// Each interval's latency percentiles, on a log scale.
fn latency_figure(page: &mut String, phase: &Phase<'_>) -> fmt::Result {
    let points = &phase.timeline.points;
    let interval = phase.timeline.interval_secs;
    let LatencySummary { p50, p90, p99, p99_9, max } = *phase.latency;
    let desc = format!(
        "Latency of {} per interval of {interval:.2} s, log scale. Over the whole phase: p50 {p50:.2} ms, p90 \
            {p90:.2} ms, p99 {p99:.2} ms, p99.9 {p99_9:.2} ms, max {max:.2} ms.",
        phase.requests_are
    );
    let percentile = |pick: fn(&LatencySummary) -> f64| -> Vec<Option<f64>> {
        points.iter().map(|point| point.latency_ms.as_ref().map(pick)).collect()
    };
    let latency_id = format!("{}-latency", phase.id);
    figure(
        page,
        &TimeChart {
            id: &latency_id,
            title: &format!("{}: latency percentiles over time", phase.heading),
            desc: &desc,
            y_label: "milliseconds (log scale)",
            intervals: phase.intervals(),
            series: vec![
                Series { name: "p50", class: "s-p50", values: percentile(|l| l.p50) },
                Series { name: "p90", class: "s-p90", values: percentile(|l| l.p90) },
                Series { name: "p99", class: "s-p99", values: percentile(|l| l.p99) },
                Series { name: "max", class: "s-max", values: percentile(|l| l.max) },
            ],
            style: Style::LogLines,
            reference: None,
        },
        &desc,
    )
}

/// The numbers behind a phase's two charts, interval by interval.
fn interval_table(page: &mut String, phase: &Phase<'_>) -> fmt::Result {
    let [succeeded, refused, failed] = phase.classes;
    write!(
        page,
        r#"<details><summary>The numbers behind these charts: {} intervals of {:.2} s</summary><table><thead><tr><th scope="col">from s</th><th scope="col">requests</th><th scope="col">req/s</th><th scope="col">{succeeded}</th><th scope="col">{refused}</th><th scope="col">{failed}</th><th scope="col">p50 ms</th><th scope="col">p90 ms</th><th scope="col">p99 ms</th><th scope="col">max ms</th></tr></thead><tbody>"#,
        phase.timeline.points.len(),
        phase.timeline.interval_secs
    )?;
    for point in &phase.timeline.points {
        write!(
            page,
            "<tr><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            point.start_secs,
            grouped(point.requests),
            grouped(point.throughput_rps.round() as u64),
            grouped(point.succeeded),
            grouped(point.refused),
            grouped(point.failed)
        )?;
        match &point.latency_ms {
            Some(latency) => write!(
                page,
                "<td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                latency.p50, latency.p90, latency.p99, latency.max
            )?,
            None => page.push_str("<td>–</td><td>–</td><td>–</td><td>–</td></tr>"),
        }
    }
    page.push_str("</tbody></table></details>");
    Ok(())
}

//! `--report PATH`: the run as one HTML page that needs nothing else — no script, and no font, style sheet or image
//! from anywhere — so that it can be attached to an issue or opened offline long after the run. Its charts are
//! inline SVG drawn here (`chart`); each has its numbers in a table beside it and a caption that says in words what
//! it shows, so the page reads without the pictures. It follows the reader's light or dark mode. Text that did not
//! come from this file (the label, the URL, the server's problem codes, the verdict) is escaped.

mod chart;
mod phase;

use std::fmt::{self, Display, Formatter, Write};

use chart::BarChart;
use phase::{phase_section, Phase};

use super::audit::Correctness;
use super::report::{Report, Settlement};

/// Text made safe for HTML and SVG, in content and in quoted attribute values alike.
struct Escaped<'a>(&'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => out.write_str("&amp;")?,
                '<' => out.write_str("&lt;")?,
                '>' => out.write_str("&gt;")?,
                '"' => out.write_str("&quot;")?,
                '\'' => out.write_str("&#39;")?,
                c => out.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The page for `report`.
pub(super) fn render(report: &Report) -> Result<String, fmt::Error> {
    let mut page = String::with_capacity(64 * 1024);
    let verdict = report.verdict().err().map(|failure| failure.to_string());
    write!(
        page,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark"><title>Seckill bench report, {}</title><style>{STYLE}</style></head><body><main>"#,
        Escaped(&report.started_at)
    )?;
    page.push_str("<h1>Seckill bench report</h1>");
    if let Some(label) = &report.label {
        write!(page, r#"<p class="label">{}</p>"#, Escaped(label))?;
    }
    match &verdict {
        None => page.push_str(
            r#"<p class="verdict pass"><strong>PASS</strong>: nothing was oversold, left unsold, lost or duplicated, and the stock ledger adds up (see Correctness, below).</p>"#,
        ),
        Some(failure) => write!(page, r#"<p class="verdict fail"><strong>FAIL</strong>: {}</p>"#, Escaped(failure))?,
    }
    parameters(&mut page, report)?;
    let purchases = Phase::purchases(&report.purchase);
    let healthz = report.baseline.as_ref().map(Phase::healthz);
    let phases: Vec<&Phase<'_>> = std::iter::once(&purchases).chain(healthz.as_ref()).collect();
    summary(&mut page, report, &phases)?;
    phase_section(&mut page, &purchases, healthz.as_ref())?;
    if let Some(healthz) = &healthz {
        phase_section(&mut page, healthz, Some(&purchases))?;
    }
    outcomes(&mut page, report)?;
    correctness(&mut page, report, verdict.is_none())?;
    write!(
        page,
        r#"<footer><p class="note">Written by <code>seckill bench</code> {}. Latencies are measured by the bench from sending a request to the end of its answer's body. Each interval's percentiles are kept to about 6%; the summary's are exact.</p></footer></main></body></html>"#,
        Escaped(report.bench_version)
    )?;
    Ok(page)
}

/// The page's only styling: colours for light and dark mode, which the charts' classes take.
const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1f2328;--bg:#fff;--muted:#59636e;--rule:#d1d9e0;--pass:#1a7f37;--fail:#cf222e;\
--ok:#0072b2;--refused:#e69f00;--failed:#d55e00;--p50:#0072b2;--p90:#009e73;--p99:#d55e00;--max:#cc79a7;\
--reference:#59636e}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--rule:#3d444d;--pass:#3fb950;\
--fail:#f85149;--ok:#56b4e9;--refused:#e69f00;--failed:#ff7b52;--p50:#56b4e9;--p90:#2fbf8f;--p99:#ff9e64;--max:#e08fc0;\
--reference:#9198a1}}\
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,sans-serif}\
main{max-width:960px;margin:0 auto;padding:24px}\
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:32px 0 8px;border-bottom:1px solid var(--rule)}\
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}\
th,td{padding:3px 10px;border-bottom:1px solid var(--rule);text-align:right;vertical-align:top}\
th:first-child,td:first-child,.keys td{text-align:left}caption{text-align:left;font-weight:600}\
.label{font-size:1.1em;margin:0 0 12px}.note,figcaption,summary{color:var(--muted)}\
.verdict{padding:10px 14px;border:2px solid;border-radius:6px}\
.pass{color:var(--pass)}.fail{color:var(--fail)}\
figure{margin:16px 0}figcaption{font-size:.9em}summary{cursor:pointer}\
.chart{display:block;width:100%;height:auto}.chart text{fill:var(--fg);font-size:12px}\
.chart .grid line{stroke:var(--rule)}.chart .axis line{stroke:var(--muted)}\
.s-ok,.s-bar{fill:var(--ok)}.s-refused{fill:var(--refused)}.s-failed{fill:var(--failed)}\
.s-p50{fill:var(--p50);stroke:var(--p50)}.s-p90{fill:var(--p90);stroke:var(--p90);stroke-dasharray:7 3}\
.s-p99{fill:var(--p99);stroke:var(--p99);stroke-dasharray:2 3}.s-max{fill:var(--max);stroke:var(--max)}\
.line{fill:none;stroke-width:2}.s-max.line{stroke-width:1.25}\
.reference{stroke:var(--reference);stroke-width:1.5;stroke-dasharray:9 5}";

fn parameters(page: &mut String, report: &Report) -> fmt::Result {
    page.push_str(r#"<h2 id="run">Run</h2><table class="keys">"#);
    let rows: [(&str, String); 9] = [
        ("started (UTC)", report.started_at.clone()),
        ("service", report.url.clone()),
        ("product", report.product_id.to_string()),
        ("stock", grouped(report.stock)),
        ("buyers (one purchase each)", grouped(report.users as u64)),
        ("concurrency (connections)", grouped(report.concurrency as u64)),
        ("stock shards", report.shards.to_string()),
        ("per-user limit", report.per_user_limit.to_string()),
        ("bench version", report.bench_version.to_owned()),
    ];
    for (key, value) in &rows {
        write!(page, "<tr><th scope=\"row\">{key}</th><td>{}</td></tr>", Escaped(value))?;
    }
    page.push_str("</table>");
    Ok(())
}

fn summary(page: &mut String, report: &Report, phases: &[&Phase<'_>]) -> fmt::Result {
    page.push_str(
        r#"<h2 id="summary">Summary</h2><table><thead><tr><th scope="col">phase</th><th scope="col">requests</th><th scope="col">seconds</th><th scope="col">req/s</th><th scope="col">p50 ms</th><th scope="col">p90 ms</th><th scope="col">p99 ms</th><th scope="col">p99.9 ms</th><th scope="col">max ms</th></tr></thead><tbody>"#,
    );
    for phase in phases {
        phase.summary_row(page)?;
    }
    page.push_str("</tbody></table>");
    match &report.baseline {
        Some(baseline) => {
            write!(
                page,
                "<p>Purchases ran at <strong>{:.3}</strong> of the throughput of <code>GET /healthz</code>, measured \
                    in the same run against the same server with the same client and concurrency for as long as the \
                    purchases took.",
                baseline.purchase_to_healthz_ratio
            )?;
            if baseline.snapshot_pending {
                page.push_str(
                    " The sale's snapshot was still pending when the baseline began and may have shared the \
                    machine with it.",
                );
            }
            page.push_str("</p>");
        }
        None => page
            .push_str(r#"<p class="note">No /healthz baseline was measured (run with <code>--baseline</code>).</p>"#),
    }
    Ok(())
}

fn figure(page: &mut String, chart: &impl Display, caption: &str) -> fmt::Result {
    write!(page, "<figure>{chart}<figcaption>{}</figcaption></figure>", Escaped(caption))
}

fn outcomes(page: &mut String, report: &Report) -> fmt::Result {
    page.push_str(r#"<h2 id="outcomes">Outcomes</h2>"#);
    let purchases = &report.purchase.outcomes;
    let rows: Vec<(&str, u64)> = purchases.iter().map(|(label, &count)| (label.as_str(), count)).collect();
    let desc = format!(
        "How each of the {} purchases was answered: the HTTP status and the problem's code, or the kind of failure.",
        grouped(report.purchase.requests)
    );
    figure(page, &BarChart { id: "purchase-outcomes", title: "Purchase outcomes", desc: &desc, rows }, &desc)?;
    outcome_table(page, "Purchases", purchases)?;
    if let Some(baseline) = &report.baseline {
        outcome_table(page, "/healthz baseline", &baseline.healthz_outcomes)?;
    }
    Ok(())
}

fn outcome_table(page: &mut String, phase: &str, outcomes: &std::collections::BTreeMap<String, u64>) -> fmt::Result {
    let total: u64 = outcomes.values().sum();
    write!(
        page,
        r#"<table><caption>{}</caption><thead><tr><th scope="col">outcome</th><th scope="col">requests</th><th scope="col">share</th></tr></thead><tbody>"#,
        Escaped(phase)
    )?;
    for (label, &count) in outcomes {
        let share = if total == 0 { 0.0 } else { count as f64 * 100.0 / total as f64 };
        write!(page, "<tr><td>{}</td><td>{}</td><td>{share:.1}%</td></tr>", Escaped(label), grouped(count))?;
    }
    page.push_str("</tbody></table>");
    Ok(())
}

fn correctness(page: &mut String, report: &Report, passed: bool) -> fmt::Result {
    page.push_str(r#"<h2 id="correctness">Correctness</h2>"#);
    let Settlement { caught_up, catch_up_secs, orders_per_second } = &report.projector;
    write!(
        page,
        "<p>Read back from the server once the order projector had caught up with the journal: the product's order \
            rows against every order the service acknowledged with a 202. The projector {} {catch_up_secs:.2} s after \
            the last purchase ({} orders/s).</p>",
        if *caught_up { "caught up" } else { "had <strong>not</strong> caught up" },
        grouped(orders_per_second.round() as u64)
    )?;
    let Some(counts) = &report.correctness else {
        return write!(page, r#"<p class="fail">Not checked: the orders were not all projected in time.</p>"#);
    };
    let Correctness {
        accepted,
        orders,
        units_ordered,
        oversold,
        unsold,
        lost,
        duplicate,
        phantom,
        invariant_holds,
        note,
    } = counts;
    page.push_str(
        r#"<table><caption>Correctness counts</caption><thead><tr><th scope="col">count</th><th scope="col">value</th><th scope="col">must be</th><th scope="col">result</th></tr></thead><tbody>"#,
    );
    let checked = [
        ("oversold: units ordered beyond the stock", *oversold),
        ("unsold: units the crowd should have bought that no order holds", *unsold),
        ("lost: acknowledged orders with no row for their buyer", *lost),
        ("duplicate: order ids twice, buyers over their limit", *duplicate),
    ];
    for (name, count) in checked {
        write!(page, "<tr><td>{name}</td><td>{}</td><td>0</td>{}</tr>", grouped(count), result(count == 0))?;
    }
    write!(
        page,
        "<tr><td>stock ledger: pool + shards + in flight + reserved + paid = \
            stock</td><td>{}</td><td>holds</td>{}</tr>",
        if *invariant_holds { "holds" } else { "broken" },
        result(*invariant_holds)
    )?;
    write!(
        page,
        "<tr><td>phantom: rows whose 202 never reached the bench (a lost answer, not a lost \
            unit)</td><td>{}</td><td>–</td><td>info</td></tr>",
        grouped(*phantom)
    )?;
    for (name, count) in [("acknowledged (202)", accepted), ("order rows", orders), ("units ordered", units_ordered)] {
        write!(page, "<tr><td>{name}</td><td>{}</td><td>–</td><td>info</td></tr>", grouped(*count))?;
    }
    page.push_str("</tbody></table>");
    if let Some(note) = note {
        write!(page, r#"<p class="note">{}</p>"#, Escaped(note))?;
    }
    if let Some(lifecycle) = &report.lifecycle {
        let rows = [
            ("orders paid by their buyers", lifecycle.paid),
            ("orders expired unpaid", lifecycle.expired),
            ("units released back on sale", lifecycle.released),
            ("released units resold and paid", lifecycle.resold),
            ("pay requests refused", lifecycle.pay_refused),
            ("units paid in the end", lifecycle.paid_in_the_end),
        ];
        key_counts(page, &format!("Order life after the crowd (pay {:.2} of orders)", lifecycle.pay_fraction), &rows)?;
        write!(page, "<p>Every unit accounted for: {}.</p>", result_word(lifecycle.every_unit_accounted))?;
    }
    if let Some(feed) = &report.stock_feed {
        let rows = [("subscribers", feed.subscribers as u64), ("times any saw the stock rise", feed.rises)];
        key_counts(page, "Stock feed watchers (/ws/stock)", &rows)?;
        write!(
            page,
            "<p>None saw the stock rise and all saw its final value: {}; {:.0} ms after the last purchase at the \
                median, {:.0} ms at most.</p>",
            result_word(feed.all_reached_final && feed.rises == 0),
            feed.final_lag_ms.p50,
            feed.final_lag_ms.max
        )?;
    }
    if !passed {
        page.push_str(r#"<p class="fail">The run failed: see the verdict at the top.</p>"#);
    }
    Ok(())
}

fn key_counts(page: &mut String, caption: &str, rows: &[(&str, u64)]) -> fmt::Result {
    write!(page, r#"<table class="keys"><caption>{}</caption><tbody>"#, Escaped(caption))?;
    for (key, count) in rows {
        write!(page, "<tr><td>{key}</td><td>{}</td></tr>", grouped(*count))?;
    }
    page.push_str("</tbody></table>");
    Ok(())
}

/// A table cell saying whether a check passed, in words (the colour only repeats it).
fn result(passed: bool) -> &'static str {
    if passed {
        r#"<td class="pass">pass</td>"#
    } else {
        r#"<td class="fail"><strong>FAIL</strong></td>"#
    }
}

fn result_word(passed: bool) -> &'static str {
    if passed {
        r#"<span class="pass">yes</span>"#
    } else {
        r#"<strong class="fail">NO</strong>"#
    }
}

/// `1234567` as `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::bench::load::{LatencySummary, PhaseStats};
    use crate::bench::report::Baseline;
    use crate::bench::timeline::{Class, Timeline};

    const URL: &str = "http://127.0.0.1:8080";

    fn phase(requests: u64) -> PhaseStats {
        let mut timeline = Timeline::new().expect("a timeline");
        for i in 0..requests {
            let class = if i % 3 == 0 { Class::Succeeded } else { Class::Refused };
            timeline
                .record(Duration::from_millis(i * 7), Duration::from_micros(500 + i * 10), class)
                .expect("recorded");
        }
        let duration = Duration::from_millis(requests * 7);
        let latency = LatencySummary { p50: 0.8, p90: 1.2, p99: 2.5, p99_9: 3.0, max: 4.1 };
        PhaseStats {
            duration,
            requests,
            throughput_rps: requests as f64 / duration.as_secs_f64(),
            latency_ms: latency,
            outcomes: BTreeMap::from([
                ("202".to_owned(), requests / 3),
                ("409 <SOLD_OUT>".to_owned(), requests * 2 / 3),
            ]),
            timeline: timeline.into_series(duration).expect("a series"),
        }
    }

    fn report(baseline: bool) -> Report {
        let healthz = phase(300);
        let purchase = phase(120);
        Report {
            started_at: "2025-01-02T03:04:05Z".to_owned(),
            bench_version: "0.1.0",
            label: Some("embedded <default> & \"friends\"".to_owned()),
            url: URL.to_owned(),
            product_id: 7,
            users: 120,
            stock: 40,
            concurrency: 8,
            per_user_limit: 1,
            shards: 2,
            projector: Settlement { caught_up: true, catch_up_secs: 0.4, orders_per_second: 900.0 },
            correctness: Some(Correctness {
                accepted: 40,
                orders: 40,
                units_ordered: 40,
                oversold: 0,
                unsold: 0,
                lost: 0,
                duplicate: 0,
                phantom: 0,
                invariant_holds: true,
                note: None,
            }),
            lifecycle: None,
            stock_feed: None,
            baseline: baseline.then(|| Baseline::compare(&purchase, healthz, false)),
            purchase,
        }
    }

    #[test]
    fn the_page_refers_to_nothing_outside_itself() {
        let page = render(&report(true)).expect("rendered");
        for reference in ["<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "xmlns"] {
            assert!(!page.contains(reference), "the page has {reference}");
        }
        let without_the_service = page.replace(URL, "");
        assert!(!without_the_service.contains("http:") && !without_the_service.contains("https:"));
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>"));
    }

    #[test]
    fn every_figure_is_a_described_chart_and_correctness_a_table() {
        let page = render(&report(true)).expect("rendered");
        let charts =
            ["purchases-throughput", "purchases-latency", "healthz-throughput", "healthz-latency", "purchase-outcomes"];
        assert_eq!(page.matches("<svg ").count(), charts.len());
        for id in charts {
            assert!(page.contains(&format!(r#"aria-labelledby="{id}-title {id}-desc""#)), "no chart {id}");
        }
        assert_eq!(page.matches("<figcaption>").count(), charts.len());
        assert!(page.contains("<caption>Correctness counts</caption>"));
        assert_eq!(page.matches(r#"<td class="pass">pass</td>"#).count(), 5, "four counts and the ledger");
        assert!(page.contains(r#"<p class="verdict pass"><strong>PASS</strong>"#));
        assert!(page.contains("The numbers behind these charts"));
        assert!(page.contains("of the throughput of <code>GET /healthz</code>"));
    }

    #[test]
    fn a_run_without_baseline_draws_the_purchases_alone() {
        let page = render(&report(false)).expect("rendered");
        assert_eq!(page.matches("<svg ").count(), 3);
        assert!(page.contains("No /healthz baseline was measured"));
    }

    #[test]
    fn text_from_outside_is_escaped() {
        let page = render(&report(true)).expect("rendered");
        assert!(page.contains("embedded &lt;default&gt; &amp; &quot;friends&quot;"));
        assert!(page.contains("409 &lt;SOLD_OUT&gt;"));
        assert!(!page.contains("<default>") && !page.contains("<SOLD_OUT>"));
        assert_eq!(Escaped("a'b").to_string(), "a&#39;b");
    }

    #[test]
    fn a_failed_check_fails_the_page() {
        let mut failed = report(true);
        if let Some(correctness) = failed.correctness.as_mut() {
            correctness.oversold = 3;
        }
        let page = render(&failed).expect("rendered");
        assert!(
            page.contains(r#"<p class="verdict fail"><strong>FAIL</strong>: correctness check failed: oversold 3</p>"#)
        );
        assert!(page.contains(r#"<td>3</td><td>0</td><td class="fail"><strong>FAIL</strong></td>"#));
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}

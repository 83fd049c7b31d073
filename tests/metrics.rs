//! `/metrics` against what really happened: a crowd buys while Prometheus's view is scraped, and the counters must
//! add up to what each buyer was told (202s, 409s by code, 429s), the units by state to the stock, and the ledger
//! invariant must read 0 throughout. The operator files under `deploy/` may name only metrics the service exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{start_with, Api, Backend, Scrape, Scratch};
use futures::future::join_all;
use reqwest::StatusCode;
use seckill::http::Limit;

/// The ledger of `product` in `scrape`: its units by state must add up to its stock, and its invariant gauge read 0.
fn assert_accounted_for(scrape: &Scrape, product: &str, when: &str) -> BTreeMap<String, f64> {
    let stock = scrape.value("seckill_product_stock_units", &[("product", product)]);
    let by_state: BTreeMap<String, f64> = ["pool", "shards", "in_flight", "reserved", "paid"]
        .into_iter()
        .map(|state| {
            (state.to_owned(), scrape.value("seckill_product_units", &[("product", product), ("state", state)]))
        })
        .collect();
    assert!(stock > 0.0, "{when}: product {product} has a stock");
    assert_eq!(by_state.values().sum::<f64>(), stock, "{when}: units by state {by_state:?} add up to the stock");
    assert_eq!(scrape.value("seckill_ledger_invariant_broken", &[("product", product)]), 0.0, "{when}");
    by_state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_add_up_to_what_every_buyer_was_told_during_and_after_a_sale() {
    const STOCK: u32 = 120;
    const CROWD: usize = 400;
    const GREEDY_TRIES: usize = 30;
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| {
        settings.limits.user = Limit { per_second: 1, burst: 5 };
    })
    .await;
    let product = app.create_product(STOCK, 1, 4).await;
    let id = product.to_string();
    let buyers = app.customers(CROWD + 1).await;
    let (greedy, crowd) = buyers.split_first().expect("buyers");

    let before = Scrape::of(&app).await;
    assert_accounted_for(&before, &id, "before the sale");
    assert_eq!(before.value("seckill_ready", &[]), 1.0);

    // Prometheus scrapes while the crowd buys.
    let selling = Arc::new(AtomicBool::new(true));
    let scraping = {
        let (api, selling, id) = (Api::connect(app.base.clone()).await, Arc::clone(&selling), id.clone());
        tokio::spawn(async move {
            let mut scrapes = 0;
            while selling.load(Ordering::Acquire) || scrapes == 0 {
                assert_accounted_for(&Scrape::of(&api).await, &id, "during the sale");
                scrapes += 1;
                tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
            }
            scrapes
        })
    };
    let crowd = join_all(crowd.iter().map(|(_, token)| app.purchase(product, token, None, 1)));
    let greed = join_all((0..GREEDY_TRIES).map(|_| app.purchase(product, &greedy.1, None, 1)));
    let (crowd, greed) = futures::join!(crowd, greed);
    selling.store(false, Ordering::Release);
    let scrapes = scraping.await.expect("the scraper did not fail");
    assert!(scrapes >= 1);

    let mut told: BTreeMap<(u16, String), u64> = BTreeMap::new();
    for answer in crowd.iter().chain(&greed) {
        let code = if answer.status == StatusCode::ACCEPTED { "ACCEPTED".to_owned() } else { answer.code().to_owned() };
        *told.entry((answer.status.as_u16(), code)).or_default() += 1;
    }
    let accepted = told.get(&(202, "ACCEPTED".to_owned())).copied().unwrap_or(0);
    assert_eq!(accepted, u64::from(STOCK), "every unit sold: {told:?}");
    assert!(told.contains_key(&(409, "SOLD_OUT".to_owned())), "the crowd outnumbers the stock: {told:?}");
    assert!(told.contains_key(&(429, "RATE_LIMITED".to_owned())), "the greedy buyer ran out of burst: {told:?}");

    let after = Scrape::of(&app).await;
    for ((status, code), count) in &told {
        let outcome = match status {
            202 => "accepted",
            500.. => "failed",
            _ => "refused",
        };
        let counted = after.value("seckill_purchases_total", &[("outcome", outcome), ("code", code)]);
        assert_eq!(counted, *count as f64, "{status} {code}: buyers were told {count}, the metrics say {counted}");
    }
    let purchases = (CROWD + GREEDY_TRIES) as f64;
    assert_eq!(
        after.values("seckill_purchases_total", &[]).iter().sum::<f64>(),
        purchases,
        "no purchase counted twice"
    );
    let route = [("route", "/api/v1/products/{id}/purchase")];
    assert_eq!(after.value("seckill_http_request_duration_seconds_count", &route), purchases);
    let twos = after.value("seckill_http_responses_total", &[route[0], ("class", "2xx")]);
    assert_eq!(twos, accepted as f64, "every 2xx of the route is an acceptance");
    let rate_limited = told.get(&(429, "RATE_LIMITED".to_owned())).copied().unwrap_or(0) as f64;
    assert_eq!(after.value("seckill_rate_limited_total", &[("scope", "user")]), rate_limited);

    let units = assert_accounted_for(&after, &id, "after the sale");
    assert_eq!(units["reserved"], accepted as f64, "{units:?}");
    assert_eq!(units["pool"] + units["shards"] + units["in_flight"] + units["paid"], 0.0, "sold out: {units:?}");
    assert!(after.value("seckill_journal_events_total", &[]) >= accepted as f64, "every acceptance was journaled");
    assert!(after.value("seckill_journal_batch_size_count", &[]) >= 1.0);
    assert!(after.value("seckill_actors", &[("kind", "shard")]) >= 4.0, "the product's four shards run");
    assert_eq!(after.value("seckill_ready", &[]), 1.0);
    assert_eq!(after.values("seckill_dead_letters_pending", &[]), vec![0.0, 0.0]);
    app.stop().await;
}

/// The names a PromQL expression reads: what is left once label matchers, ranges, strings, grouping clauses,
/// function calls, keywords and numbers are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut plain = String::new();
    let mut depth = (0, 0, false);
    for ch in expr.chars() {
        match (ch, depth) {
            ('"', (_, _, quoted)) => depth.2 = !quoted,
            (_, (_, _, true)) => {}
            ('{', _) => depth.0 += 1,
            ('}', _) => depth.0 -= 1,
            ('[', _) => depth.1 += 1,
            (']', _) => depth.1 -= 1,
            (_, (0, 0, false)) => plain.push(ch),
            _ => {}
        }
    }
    const KEYWORDS: [&str; 12] =
        ["by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset", "le"];
    let mut names = BTreeSet::new();
    let mut rest = plain.as_str();
    while let Some(start) = rest.find(|ch: char| ch.is_ascii_alphabetic() || ch == '_') {
        let token_len = rest[start..].find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'));
        let end = start + token_len.unwrap_or(rest.len() - start);
        let token = &rest[start..end];
        let after = rest[end..].trim_start();
        let grouping = matches!(token, "by" | "without" | "on" | "ignoring" | "group_left" | "group_right");
        let is_number = rest[..start].ends_with(|ch: char| ch.is_ascii_digit() || ch == '.');
        if grouping && after.starts_with('(') {
            rest = &after[after.find(')').map_or(after.len(), |at| at + 1)..];
            continue;
        }
        // A call, or an aggregation whose grouping comes first (`sum by (le) (...)`).
        let grouped = ["by", "without"].iter().find_map(|clause| after.strip_prefix(clause));
        let calls = after.starts_with('(') || grouped.is_some_and(|rest| rest.trim_start().starts_with('('));
        if !calls && !KEYWORDS.contains(&token) && !is_number && !token.starts_with('$') {
            names.insert(token.to_owned());
        }
        rest = &rest[end..];
    }
    names
}

/// Every query in the operator files: the alert rules' `expr:` lines and the dashboard's targets and variables.
fn deployed_queries() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let rules = std::fs::read_to_string(root.join("prometheus/alerts.yml")).expect("alert rules");
    let mut queries: Vec<(String, String)> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .map(|expr| ("alerts.yml".to_owned(), expr.trim().to_owned()))
        .collect();
    assert!(queries.len() >= 5, "the alert rules have their expressions on one line each");
    let dashboard = std::fs::read_to_string(root.join("grafana/seckill-dashboard.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    for target in panels.iter().filter_map(|panel| panel["targets"].as_array()).flatten() {
        queries.push(("dashboard".to_owned(), target["expr"].as_str().expect("a target's expr").to_owned()));
    }
    for variable in dashboard["templating"]["list"].as_array().expect("variables") {
        if let Some(query) = variable["definition"].as_str() {
            let inner = query.trim_start_matches("label_values(").split(',').next().unwrap_or("");
            queries.push(("dashboard variable".to_owned(), inner.to_owned()));
        }
    }
    queries
}

#[test]
fn the_promql_reader_finds_metric_names_and_nothing_else() {
    let expr =
        "histogram_quantile(0.99, sum by (le, route) (rate(seckill_x_bucket{route=\"/a/{id}\"}[$__rate_interval]))) \
                > 0 and deriv(seckill_y[5m]) >= 0 or on(instance) up == 0";
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(names, ["seckill_x_bucket", "seckill_y", "up"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alert_rules_name_only_exported_metrics() {
    let app = start_with(Scratch::new(Backend::Sqlite), |_| {}).await;
    let product = app.create_product(5, 1, 2).await;
    let buyers = app.customers(1).await;
    assert_eq!(app.purchase(product, &buyers[0].1, None, 1).await.status, StatusCode::ACCEPTED);
    let exported = Scrape::of(&app).await.names();
    let queries = deployed_queries();
    let mut named = BTreeSet::new();
    for (file, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{file}: {expr} reads no metric");
        for name in names {
            // `up` is Prometheus's own record of each scrape.
            assert!(name == "up" || exported.contains(&name), "{file} names {name}, which /metrics does not export");
            named.insert(name);
        }
    }
    for headline in ["seckill_ledger_invariant_broken", "seckill_dead_letters_pending", "seckill_projector_lag_events"]
    {
        assert!(named.contains(headline), "the operator files watch {headline}");
    }
    app.stop().await;
}

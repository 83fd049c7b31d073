//! `kill -9` in the middle of a sale (and after a restock made during it), on the real binary: every 202'd order
//! must survive exactly once, every restocked unit must be there after the restart, no unit may be sold twice, requests whose answer was lost must find their order again by `Idempotency-Key`, and the sale
//! must go on after the restart until the stock is gone. A final SIGTERM must shut down cleanly with exit 0. And
//! `kill -9` in a storm of cancellations and expiries: every order ends released exactly once, by one cause, the
//! expiries still pending fire after the restart, and the whole stock sells again, once.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, Api, Backend, Scratch};
use futures::future::join_all;
use reqwest::StatusCode;

const STOCK: u32 = 600;
/// Units the admin adds while the first crowd buys.
const RESTOCK: u32 = 100;
const KILL_AFTER_ACCEPTED: usize = 200;

fn start_server(scratch: &Scratch, port: u16) -> Child {
    start_server_with(scratch, port, &[])
}

fn start_server_with(scratch: &Scratch, port: u16, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_seckill"))
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(scratch.env())
        .envs(env.iter().copied())
        .env("SECKILL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("SECKILL__SNAPSHOTS__EVERY_UNITS", "50")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the seckill binary starts")
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let ready = || async {
        let response = client.get(format!("{base}/readyz")).send().await;
        response.is_ok_and(|response| response.status() == StatusCode::OK).then_some(())
    };
    common::eventually_every("the service is ready", Duration::from_secs(60), Duration::from_millis(50), ready).await;
}

/// What one buyer's request came to.
enum Outcome {
    Accepted(String),
    Refused,
    Lost,
}

/// Each user in `users` buys once with key `k-{user}`, `concurrency` at a time.
async fn buy_all(api: &Api, product: i64, users: &[(i64, String)], concurrency: usize) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new((0..users.len()).map(|_| None).collect::<Vec<Option<Outcome>>>());
    join_all((0..concurrency).map(|_| async {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some((user, token)) = users.get(index) else { break };
            let outcome = buy(api, product, *user, token).await;
            outcomes.lock().expect("lock")[index] = Some(outcome);
        }
    }))
    .await;
    outcomes.into_inner().expect("lock").into_iter().map(|o| o.expect("every user tried")).collect()
}

async fn buy(api: &Api, product: i64, user: i64, token: &str) -> Outcome {
    let request = api
        .client
        .post(api.url(&format!("/api/v1/products/{product}/purchase")))
        .bearer_auth(token)
        .header("Idempotency-Key", format!("k-{user}"))
        .timeout(Duration::from_secs(10))
        .json(&serde_json::json!({"quantity": 1}));
    let Ok(response) = request.send().await else { return Outcome::Lost };
    let status = response.status();
    let Ok(body) = response.json::<serde_json::Value>().await else { return Outcome::Lost };
    match status {
        StatusCode::ACCEPTED => Outcome::Accepted(body["order_id"].as_str().expect("order id").to_owned()),
        StatusCode::CONFLICT => Outcome::Refused,
        _ => Outcome::Lost,
    }
}

async fn kill_9_mid_sale_loses_nothing_and_sells_nothing_twice(backend: Backend) {
    let scratch = Scratch::new(backend);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&scratch, port);
    wait_ready(&base).await;
    let api = Api::connect(base.clone()).await;
    let product = api.create_product(STOCK, 1, 4).await;
    let users = Arc::new(api.customers(2_000).await);

    // Phase 1: a crowd buys while a watcher kills the server once enough orders were acknowledged.
    let accepted_so_far = Arc::new(AtomicUsize::new(0));
    let crowd = {
        let (api, users, accepted) =
            (Api::connect(base.clone()).await, Arc::clone(&users), Arc::clone(&accepted_so_far));
        tokio::spawn(async move {
            let outcomes = buy_all(&api, product, &users[..1_000], 32).await;
            accepted.store(usize::MAX, Ordering::SeqCst);
            outcomes
        })
    };
    let restock = api
        .send(
            api.client
                .post(api.url(&format!("/api/v1/admin/products/{product}/restock")))
                .bearer_auth(&api.admin_token)
                .json(&serde_json::json!({ "units": RESTOCK })),
        )
        .await;
    assert_eq!(restock.status, StatusCode::OK, "restock: {}", restock.body);
    let enough_accepted = || async {
        if accepted_so_far.load(Ordering::SeqCst) < KILL_AFTER_ACCEPTED {
            let view = api.admin_view(product).await;
            accepted_so_far.fetch_max(view["reserved"].as_u64().unwrap_or(0) as usize, Ordering::SeqCst);
        }
        (accepted_so_far.load(Ordering::SeqCst) >= KILL_AFTER_ACCEPTED).then_some(())
    };
    // Kill after 60 s whatever happened: the assertions after the kill say whether it came mid-sale.
    let _ = common::poll(Duration::from_secs(60), Duration::from_millis(5), enough_accepted).await;
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    let phase_one = crowd.await.expect("crowd finished");

    let mut accepted: HashMap<String, i64> = HashMap::new();
    let mut lost = Vec::new();
    for ((user, token), outcome) in users[..1_000].iter().zip(phase_one) {
        match outcome {
            Outcome::Accepted(order) => assert!(accepted.insert(order, *user).is_none(), "one order id, two answers"),
            Outcome::Lost => lost.push((*user, token.clone())),
            Outcome::Refused => {}
        }
    }
    eprintln!("killed after {} acknowledged orders; {} requests lost their answer", accepted.len(), lost.len());
    assert!(accepted.len() >= KILL_AFTER_ACCEPTED / 2, "the kill came mid-sale ({} accepted)", accepted.len());
    assert!(accepted.len() < (STOCK + RESTOCK) as usize, "the kill came before the sale ended");

    // Phase 2: restart on the same database; retried requests find their orders, and the sale goes on.
    let mut server = start_server(&scratch, port);
    wait_ready(&base).await;
    let api = Api::connect(base.clone()).await;
    let view = api.admin_view(product).await;
    assert_eq!(view["invariant_holds"], true, "{view}");
    assert!(view["reserved"].as_u64().unwrap_or(0) >= accepted.len() as u64, "every acknowledged unit is still taken");
    assert_eq!(view["stock_total"], STOCK + RESTOCK, "the restock survived the kill: {view}");

    let retried = buy_all(&api, product, &lost, 16).await;
    let rest = buy_all(&api, product, &users[1_000..], 32).await;
    for ((user, _), outcome) in lost.iter().zip(retried).chain(users[1_000..].iter().zip(rest)) {
        match outcome {
            Outcome::Accepted(order) => {
                let previous = accepted.insert(order.clone(), *user);
                assert!(previous.is_none_or(|owner| owner == *user), "order {order} answered to two users");
            }
            Outcome::Lost => panic!("user {user} got no answer from a healthy server"),
            Outcome::Refused => {}
        }
    }

    let orders = api.settled_orders(product).await;
    let ids: HashSet<&str> = orders.iter().map(|o| o["order_id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), orders.len(), "an order row appears twice");
    for (order, user) in &accepted {
        let row = orders.iter().find(|o| o["order_id"] == order.as_str());
        assert_eq!(row.and_then(|r| r["user_id"].as_i64()), Some(*user), "acknowledged order {order} is missing");
    }
    let units: i64 = orders.iter().map(|o| o["quantity"].as_i64().expect("quantity")).sum();
    assert_eq!(units, i64::from(STOCK + RESTOCK), "sold out exactly: no unit twice, none left behind");
    let buyers: HashSet<i64> = orders.iter().map(|o| o["user_id"].as_i64().expect("user")).collect();
    assert_eq!(buyers.len(), orders.len(), "nobody holds two units");
    let view = api.admin_view(product).await;
    assert_eq!((view["invariant_holds"].clone(), view["available"].clone()), (true.into(), 0.into()), "{view}");

    let term = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status().expect("kill -TERM");
    assert!(term.success());
    let exit = server.wait().expect("server exits");
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
}
on_every_backend!(kill_9_mid_sale_loses_nothing_and_sells_nothing_twice);

const RELEASES: u32 = 300;

/// A cancellation whose answer the kill may take away (`None`).
async fn cancel(api: &Api, order: &str, token: &str) -> Option<StatusCode> {
    let request = api.client.post(api.url(&format!("/api/v1/orders/{order}/cancel"))).bearer_auth(token);
    request.timeout(Duration::from_secs(10)).send().await.ok().map(|response| response.status())
}

async fn kill_9_amid_cancels_and_expiries_releases_every_unit_once(backend: Backend) {
    let scratch = Scratch::new(backend);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let window = [("SECKILL__SALE__PAYMENT_WINDOW_SECS", "3")];
    let mut server = start_server_with(&scratch, port, &window);
    wait_ready(&base).await;
    let api = Api::connect(base.clone()).await;
    let product = api.create_product(RELEASES, 1, 4).await;
    let users = api.customers(2 * RELEASES as usize).await;
    let (first, second) = users.split_at(RELEASES as usize);
    let orders: Vec<String> = join_all(first.iter().map(|(_, token)| api.purchase(product, token, None, 1)))
        .await
        .into_iter()
        .map(|answer| answer.body["order_id"].as_str().expect("every unit sells").to_owned())
        .collect();

    // Half the buyers cancel, a few at a time, while the other half's windows run out; the kill lands once a third
    // of the cancellations were answered.
    let cancelled = Mutex::new(HashSet::new());
    let next = AtomicUsize::new(0);
    let cancels = join_all((0..4).map(|_| async {
        while let Some(index) = Some(next.fetch_add(2, Ordering::Relaxed)).filter(|i| *i < orders.len()) {
            if cancel(&api, &orders[index], &first[index].1).await == Some(StatusCode::OK) {
                cancelled.lock().expect("lock").insert(orders[index].clone());
            }
        }
    }));
    let kill = async {
        let a_third_answered = || async { (cancelled.lock().expect("lock").len() >= 50).then_some(()) };
        common::eventually_every(
            "cancellations are answered",
            Duration::from_secs(30),
            Duration::from_millis(2),
            a_third_answered,
        )
        .await;
        server.kill().expect("SIGKILL");
        server.wait().expect("reaped");
    };
    tokio::join!(cancels, kill);
    let cancelled = cancelled.into_inner().expect("lock");
    eprintln!("killed after {} cancellations were answered", cancelled.len());

    // After the restart every order ends released — the expiries pending at the kill fire — and nothing is sold.
    let mut server = start_server_with(&scratch, port, &window);
    wait_ready(&base).await;
    let api = Api::connect(base.clone()).await;
    let all_released = || async {
        let view = api.admin_view(product).await;
        (view["released"] == RELEASES).then_some(view)
    };
    let view = common::eventually("every order is released", Duration::from_secs(30), all_released).await;
    assert_eq!((view["reserved"].as_u64(), view["available"].as_u64()), (Some(0), Some(u64::from(RELEASES))));
    assert_eq!(view["invariant_holds"], true, "{view}");
    let rows = api.settled_orders(product).await;
    assert_eq!(rows.len(), RELEASES as usize);
    for row in &rows {
        let steps: Vec<&str> =
            row["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
        assert!(
            steps == ["cancelled", "released"] || steps == ["expired", "released"],
            "one cause, one release: {row}"
        );
        if cancelled.contains(row["order_id"].as_str().expect("id")) {
            assert_eq!(steps[0], "cancelled", "an answered cancel stands: {row}");
        }
    }

    // The released stock sells again, exactly once.
    let resold = join_all(second.iter().map(|(_, token)| api.purchase(product, token, None, 1))).await;
    assert!(resold.iter().all(|answer| answer.status == StatusCode::ACCEPTED));
    assert_eq!(api.purchase(product, &first[0].1, None, 1).await.code(), "SOLD_OUT");
    let view = api.admin_view(product).await;
    assert_eq!((view["reserved"].as_u64(), view["invariant_holds"].as_bool()), (Some(u64::from(RELEASES)), Some(true)));
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
}
on_every_backend!(kill_9_amid_cancels_and_expiries_releases_every_unit_once);

const PAYMENTS: usize = 200;

/// A signed callback that the charge of `order` (of `user`) succeeded, sent as the provider would; `None` if the
/// kill took its answer away.
async fn late_money(api: &Api, product: i64, order: &str, user: i64) -> Option<StatusCode> {
    let key = seckill::domain::WebhookKey::new(common::WEBHOOK_SECRET, Duration::from_secs(300));
    let body = serde_json::json!({
        "order_id": order, "product_id": product, "user_id": user, "amount_cents": 49_900, "result": "succeeded",
    });
    let request = api.callback_request(&key, seckill::domain::Timestamp::now().unix_secs(), &body);
    let request = request.timeout(Duration::from_secs(10));
    request.send().await.ok().map(|response| response.status())
}

/// Half the buyers pay (the provider answering slowly), the other half let their windows run out, and money arrives
/// late for a quarter of them; the kill lands while refunds are under way. After the restart every order ends one
/// way — paid, or released once (and refunded if money came for it) — pending expiries fire and pending refunds
/// resume.
async fn kill_9_amid_payments_expiries_and_refunds_ends_every_order_once(backend: Backend) {
    let scratch = Scratch::new(backend);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("SECKILL__SALE__PAYMENT_WINDOW_SECS", "3"),
        ("SECKILL__PAYMENTS__SIMULATOR__LATENCY_MS", "150"),
        ("SECKILL__COMPENSATION__RETRY_WAITS_MS", "300,600"),
    ];
    let mut server = start_server_with(&scratch, port, &env);
    wait_ready(&base).await;
    let api = Api::connect(base.clone()).await;
    let product = api.create_product(PAYMENTS as u32, 1, 4).await;
    let users = api.customers(PAYMENTS).await;
    let orders: Vec<String> = join_all(users.iter().map(|(_, token)| api.purchase(product, token, None, 1)))
        .await
        .into_iter()
        .map(|answer| answer.body["order_id"].as_str().expect("every unit sells").to_owned())
        .collect();
    let (payers, walkers) = users.split_at(PAYMENTS / 2);

    let pays = join_all(payers.iter().zip(&orders).map(|((_, token), order)| {
        let request = api.client.post(api.url(&format!("/api/v1/orders/{order}/pay"))).bearer_auth(token);
        async move { request.timeout(Duration::from_secs(10)).send().await.ok().map(|response| response.status()) }
    }));
    let answered_money = Mutex::new(HashSet::new());
    let late = async {
        let some_expired = || async { (api.admin_view(product).await["released"].as_u64() >= Some(20)).then_some(()) };
        common::eventually("the first windows run out", Duration::from_secs(30), some_expired).await;
        let late_ones = walkers.iter().zip(&orders[PAYMENTS / 2..]).skip(PAYMENTS / 4);
        join_all(late_ones.map(|((user, _), order)| {
            let (answered, api) = (&answered_money, &api);
            async move {
                if late_money(api, product, order, *user).await == Some(StatusCode::OK) {
                    answered.lock().expect("lock").insert(order.clone());
                }
            }
        }))
        .await;
    };
    let kill = async {
        let refunds_under_way = || async { (answered_money.lock().expect("lock").len() >= 10).then_some(()) };
        common::eventually_every(
            "late money arrives",
            Duration::from_secs(30),
            Duration::from_millis(2),
            refunds_under_way,
        )
        .await;
        server.kill().expect("SIGKILL");
        server.wait().expect("reaped");
    };
    let (pay_answers, (), ()) = tokio::join!(pays, late, kill);
    let answered_money = answered_money.into_inner().expect("lock");
    eprintln!(
        "killed with {} payments answered and {} late payments answered",
        pay_answers.iter().flatten().count(),
        answered_money.len()
    );

    let mut server = start_server_with(&scratch, port, &env);
    wait_ready(&base).await;
    let api = Api::connect(base.clone()).await;
    let settled = || async {
        let view = api.admin_view(product).await;
        (view["reserved"] == 0 && view["in_flight"] == 0).then_some(view)
    };
    let view = common::eventually("every order has ended", Duration::from_secs(30), settled).await;
    let rows = common::eventually("every refund is done", Duration::from_secs(30), || async {
        let rows = api.settled_orders(product).await;
        rows.iter().all(|row| row["refund"] != "requested").then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), PAYMENTS);
    let (mut paid, mut released) = (0, 0);
    for row in &rows {
        let steps: Vec<&str> =
            row["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
        let count = |step: &str| steps.iter().filter(|taken| **taken == step).count();
        match row["status"].as_str() {
            Some("paid") => {
                assert_eq!(steps, ["paid"], "a paid order took no other step: {row}");
                paid += 1;
            }
            Some("released") => {
                assert_eq!(
                    (count("expired"), count("released"), count("paid")),
                    (1, 1, 0),
                    "one end, one release: {row}"
                );
                assert_eq!(count("refund_requested"), count("refunded"), "a requested refund was done: {row}");
                released += 1;
            }
            other => panic!("an order stayed {other:?}: {row}"),
        }
        if answered_money.contains(row["order_id"].as_str().expect("id")) {
            assert_eq!(row["refund"], "refunded", "money acknowledged after expiry came back: {row}");
        }
    }
    assert_eq!((view["paid"].as_u64(), view["released"].as_u64()), (Some(paid), Some(released)), "{view}");
    assert_eq!(view["available"].as_u64(), Some(released), "every released unit is on sale: {view}");
    assert_eq!(view["invariant_holds"], true, "{view}");
    assert!(paid > 0 && released > 0, "both ends happened: {paid} paid, {released} released");
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
}
on_every_backend!(kill_9_amid_payments_expiries_and_refunds_ends_every_order_once);

//! The live side over real WebSockets: `/ws/stock` follows a crowd's purchases and never holds them back, even for
//! a subscriber that stops reading; 10,000 idle subscribers are held by a real server process (whose memory per
//! connection is reported); `/ws/orders` tells each buyer of their own orders only; the admin's actor tree is the
//! running tree, shows a killed shard's restart, and pause, drain and resume act on buyers.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{eventually, free_port, spawn_app, start_with, Api, Backend, Scratch, TestApp};
use futures::future::join_all;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_url(base: &str, path: &str) -> String {
    format!("ws{}{path}", base.trim_start_matches("http"))
}

async fn connect(base: &str, path: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(ws_url(base, path)).await.expect("the upgrade is accepted");
    socket
}

/// The next JSON message that is not a heartbeat (pings are answered by the client library).
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a good frame");
        if let Message::Text(text) = message {
            let json: Value = serde_json::from_str(&text).expect("json");
            if json["type"] != "heartbeat" {
                return json;
            }
        }
    }
}

/// Each buyer buys one unit, `concurrency` at a time; the number of 202s.
async fn crowd_buys(api: &Api, product: i64, buyers: &[(i64, String)], concurrency: usize) -> usize {
    let (next, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    join_all((0..concurrency).map(|_| async {
        while let Some((_, token)) = buyers.get(next.fetch_add(1, Ordering::Relaxed)) {
            if api.purchase(product, token, None, 1).await.status == StatusCode::ACCEPTED {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }))
    .await;
    accepted.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_stock_only_fall_to_the_end_of_a_ten_thousand_purchase_sale() {
    let app = spawn_app(Backend::Sqlite).await;
    let product = app.create_product(10_000, 1, 4).await;
    let buyers = app.customers(10_000).await;
    let mut socket = connect(&app.base, &format!("/ws/stock?products={product}")).await;
    let first = next_json(&mut socket).await;
    assert_eq!((first["type"].as_str(), first["product_id"].as_i64()), (Some("stock"), Some(product)));
    assert_eq!((first["available"].as_u64(), first["stock"].as_u64()), (Some(10_000), Some(10_000)));
    assert_eq!((first["phase"].as_str(), first["sale"].as_str()), (Some("open"), Some("open")));

    let watcher = tokio::spawn(async move {
        let mut seen = vec![first["available"].as_u64().expect("available")];
        while *seen.last().expect("a value") > 0 {
            let update = next_json(&mut socket).await;
            seen.push(update["available"].as_u64().expect("available"));
        }
        seen
    });
    assert_eq!(crowd_buys(&app, product, &buyers, 64).await, 10_000);
    let seen = watcher.await.expect("the watcher saw the stock run out");
    assert!(seen.windows(2).all(|pair| pair[1] < pair[0]), "stock only fell, and each update changed it: {seen:?}");
    assert!(seen.len() < 10_000, "updates were coalesced: {} for 10,000 purchases", seen.len());
    println!("{} updates for 10,000 purchases", seen.len());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_slows_no_purchase_and_is_dropped_not_buffered() {
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| {
        settings.live.stock_interval_ms = 1;
        settings.live.ping_secs = 1;
        settings.live.send_timeout_ms = 300;
    })
    .await;
    let products: Vec<i64> = join_all((0..20).map(|_| app.create_product(200, 1, 2))).await;
    let buyers = app.customers(200).await;
    let list = products.iter().map(i64::to_string).collect::<Vec<_>>().join(",");

    // A client with a tiny receive window that completes the handshake and never reads again.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(2048).expect("small window");
    let stream = socket.connect(addr.parse().expect("addr")).await.expect("connect");
    let request = ws_url(&app.base, &format!("/ws/stock?products={list}")).into_client_request().expect("request");
    let (stalled, _) = tokio_tungstenite::client_async(request, stream).await.expect("upgrade");

    let sold = join_all(products.iter().map(|product| crowd_buys(&app, *product, &buyers, 8))).await;
    assert_eq!(sold.iter().sum::<usize>(), 20 * 200, "every unit sold while the subscriber stalled");

    // Still not reading, it answers no ping: the server gives up on it (two ping intervals) and closes. Then what
    // the server had sent arrives, and the end.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut stalled = stalled;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = stalled.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server dropped the subscriber that stopped reading");
    app.stop().await;
}

/// The status and problem code of a WebSocket request refused before the upgrade.
async fn refused(base: &str, path: String) -> (u16, String) {
    match tokio_tungstenite::connect_async(ws_url(base, &path)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap_or(Value::Null);
            (response.status().as_u16(), body["code"].as_str().unwrap_or_default().to_owned())
        }
        other => panic!("{path} was not refused: {:?}", other.map(|(_, response)| response.status())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_before_the_upgrade_and_a_full_server_says_so() {
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| settings.live.max_stock_subscribers = 1).await;
    let product = app.create_product(10, 1, 1).await;
    let refused = |path: &str| refused(&app.base, path.to_owned());
    assert_eq!(refused("/ws/stock").await, (400, "INVALID_INPUT".into()));
    assert_eq!(refused("/ws/stock?products=1,x").await, (400, "INVALID_INPUT".into()));
    assert_eq!(refused("/ws/stock?products=999999").await, (404, "NOT_FOUND".into()));
    assert_eq!(refused("/ws/orders").await, (401, "UNAUTHORIZED".into()));

    let mut first = connect(&app.base, &format!("/ws/stock?products={product}")).await;
    next_json(&mut first).await;
    assert_eq!(refused(&format!("/ws/stock?products={product}")).await, (503, "LIVE_FULL".into()));
    first.close(None).await.expect("close");
    drop(first);
    eventually("the slot is free again", Duration::from_secs(10), || async {
        tokio_tungstenite::connect_async(ws_url(&app.base, &format!("/ws/stock?products={product}"))).await.ok()
    })
    .await;
    app.stop().await;
}

/// A buyer's order socket, with the token in the header or (as a browser sends it) in the subprotocols.
async fn orders_socket(base: &str, token: &str, by_protocol: bool) -> Socket {
    let mut request = ws_url(base, "/ws/orders").into_client_request().expect("request");
    let headers = request.headers_mut();
    if by_protocol {
        let offered = HeaderValue::from_str(&format!("seckill.bearer, {token}")).expect("header");
        headers.insert("sec-websocket-protocol", offered);
    } else {
        headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
    }
    let (socket, response) = tokio_tungstenite::connect_async(request).await.expect("the upgrade is accepted");
    let protocol = response.headers().get("sec-websocket-protocol").and_then(|value| value.to_str().ok());
    assert_eq!(protocol, by_protocol.then_some("seckill.bearer"));
    socket
}

async fn each_buyer_hears_of_their_own_orders_and_never_of_anothers(backend: Backend) {
    let app = start_with(Scratch::new(backend), |settings| settings.live.heartbeat_secs = 1).await;
    let product = app.create_product(10, 1, 2).await;
    let buyers = app.customers(2).await;
    let ((alice, alice_token), (bob, bob_token)) = (buyers[0].clone(), buyers[1].clone());
    let mut alice_socket = orders_socket(&app.base, &alice_token, false).await;
    let mut bob_socket = orders_socket(&app.base, &bob_token, true).await;

    let bought = app.purchase(product, &alice_token, None, 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED);
    let order = bought.body["order_id"].as_str().expect("order id").to_owned();
    let reserved = next_json(&mut alice_socket).await;
    assert_eq!(reserved["type"], "order");
    assert_eq!((reserved["order_id"].as_str(), reserved["status"].as_str()), (Some(order.as_str()), Some("reserved")));
    assert_eq!((reserved["user_id"].as_i64(), reserved["product_id"].as_i64()), (Some(alice), Some(product)));
    assert_eq!(app.pay(&order, &alice_token).await.status, StatusCode::ACCEPTED);
    let paid = next_json(&mut alice_socket).await;
    assert_eq!((paid["order_id"].as_str(), paid["status"].as_str()), (Some(order.as_str()), Some("paid")));

    let bobs = app.purchase(product, &bob_token, None, 1).await;
    let bobs_order = bobs.body["order_id"].as_str().expect("order id").to_owned();
    let heard = next_json(&mut bob_socket).await;
    assert_eq!((heard["order_id"].as_str(), heard["user_id"].as_i64()), (Some(bobs_order.as_str()), Some(bob)));
    assert_eq!(app.cancel(&bobs_order, &bob_token).await.status, StatusCode::OK);
    for step in ["cancelled", "released"] {
        assert_eq!(next_json(&mut bob_socket).await["status"], step);
    }
    // Alice's socket carried heartbeats since, and nothing of Bob's.
    let mut heartbeats = 0;
    while heartbeats < 2 {
        let message = tokio::time::timeout(Duration::from_secs(10), alice_socket.next()).await.expect("in time");
        if let Some(Ok(Message::Text(text))) = message {
            let json: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(json["type"], "heartbeat", "alice heard {json}");
            heartbeats += 1;
        }
    }
    app.stop().await;
}

on_every_backend!(each_buyer_hears_of_their_own_orders_and_never_of_anothers);

fn all_of<'a>(node: &'a Value, kind: &str, found: &mut Vec<&'a Value>) {
    if node["kind"] == kind {
        found.push(node);
    }
    for child in node["children"].as_array().into_iter().flatten() {
        all_of(child, kind, found);
    }
}

fn of_kind<'a>(tree: &'a Value, kind: &str) -> Vec<&'a Value> {
    let mut found = Vec::new();
    all_of(tree, kind, &mut found);
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_tree_is_the_running_tree_and_shows_a_killed_shards_restart() {
    let app = spawn_app(Backend::Sqlite).await;
    let products: Vec<i64> = join_all((0..3).map(|_| app.create_product(100, 1, 4))).await;
    let tree = app.admin_get("/api/v1/admin/actors").await;
    assert_eq!(tree["kind"], "root");
    let (product_actors, shards) = (of_kind(&tree, "product"), of_kind(&tree, "shard"));
    assert_eq!((product_actors.len(), shards.len()), (3, 12), "{tree:#}");
    for product in &product_actors {
        assert_eq!(product["children"].as_array().map(Vec::len), Some(4), "each product supervises its shards");
        assert_eq!(product["details"]["stock"], 100);
    }
    for kind in ["journal_writer", "order_projector", "product_supervisor", "payment_supervisor"] {
        assert_eq!(of_kind(&tree, kind).len(), 1, "{kind}");
    }
    let by_product: HashMap<i64, usize> = shards.iter().fold(HashMap::new(), |mut count, shard| {
        *count.entry(shard["details"]["product_id"].as_i64().expect("product")).or_default() += 1;
        count
    });
    assert_eq!(by_product, products.iter().map(|product| (*product, 4)).collect());
    let shard = shards[0];
    assert_eq!((shard["status"].as_str(), shard["restarts"].as_u64()), (Some("running"), Some(0)));
    let one = app.admin_get(&format!("/api/v1/admin/actors/{}", shard["id"])).await;
    assert_eq!(one["id"], shard["id"]);

    let kill = app.client.post(app.url(&format!("/api/v1/admin/actors/{}/kill", shard["id"])));
    assert_eq!(app.send(kill.bearer_auth(&app.admin_token)).await.status, StatusCode::ACCEPTED);
    let restarted_product = shard["details"]["product_id"].clone();
    let tree = eventually("the killed shard's product is restarted", Duration::from_secs(20), || async {
        let tree = app.admin_get("/api/v1/admin/actors").await;
        let restarted: Vec<_> = of_kind(&tree, "shard")
            .into_iter()
            .filter(|s| s["details"]["product_id"] == restarted_product && s["restarts"] == 1)
            .map(|s| s["id"].clone())
            .collect();
        (restarted.len() == 4 && !restarted.contains(&shard["id"])).then_some(tree)
    })
    .await;
    assert_eq!(of_kind(&tree, "shard").len(), 12, "every shard runs again");
    let root_kill = app.client.post(app.url(&format!("/api/v1/admin/actors/{}/kill", tree["id"])));
    assert_eq!(app.send(root_kill.bearer_auth(&app.admin_token)).await.code(), "ACTOR_NOT_KILLABLE");
    let missing = app.send(app.client.get(app.url("/api/v1/admin/actors/01")).bearer_auth(&app.admin_token)).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

async fn switch(app: &TestApp, product: i64, action: &str) -> Value {
    let url = app.url(&format!("/api/v1/admin/products/{product}/{action}"));
    let answer = app.send(app.client.post(url).bearer_auth(&app.admin_token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{action}: {}", answer.body);
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_refuses_buyers_and_keeps_the_stock_drain_finishes_and_resume_sells_again() {
    let app = spawn_app(Backend::Sqlite).await;
    let product = app.create_product(10, 1, 2).await;
    let buyers = app.customers(3).await;
    let mut feed = connect(&app.base, &format!("/ws/stock?products={product}")).await;
    assert_eq!(next_json(&mut feed).await["sale"], "open");

    assert_eq!(switch(&app, product, "pause").await["sale"], "paused");
    let refused = app.purchase(product, &buyers[0].1, None, 1).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "SALE_PAUSED"));
    assert_eq!(next_json(&mut feed).await["sale"], "paused", "subscribers see the pause");
    let view = app.admin_view(product).await;
    assert_eq!((view["available"].as_u64(), view["in_flight"].as_u64()), (Some(10), Some(0)), "stock untouched");

    assert_eq!(switch(&app, product, "drain").await["sale"], "draining");
    assert_eq!(app.purchase(product, &buyers[1].1, None, 1).await.code(), "SALE_DRAINING");

    assert_eq!(switch(&app, product, "resume").await["sale"], "open");
    for (_, token) in &buyers {
        assert_eq!(app.purchase(product, token, None, 1).await.status, StatusCode::ACCEPTED, "sales go on");
    }
    // Updates keep coming until the feed shows all three sales (next_json fails the test if none comes).
    while next_json(&mut feed).await["available"] != 7 {}
    let unknown = app.client.post(app.url(&format!("/api/v1/admin/products/{product}/explode")));
    assert_eq!(app.send(unknown.bearer_auth(&app.admin_token)).await.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// `VmRSS` of process `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_process_holds_ten_thousand_idle_subscribers() {
    const SUBSCRIBERS: usize = 10_000;
    let scratch = Scratch::new(Backend::Sqlite);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = common::Server::default();
    let mut command = Command::new(env!("CARGO_BIN_EXE_seckill"));
    command
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(scratch.env())
        .env("SECKILL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    let ready = format!("127.0.0.1:{port}");
    server.start(&mut command, "seckill", || std::net::TcpStream::connect(&ready).is_ok()).await;
    let pid = server.pid().expect("running");
    let api = Api::connect(base.clone()).await;
    let product = api.create_product(100, 1, 2).await;
    let path = format!("/ws/stock?products={product}");
    // Warm the server's paths before measuring what connections add.
    let mut warm = connect(&base, &path).await;
    next_json(&mut warm).await;
    let before = resident_kib(pid);

    let mut sockets = Vec::with_capacity(SUBSCRIBERS);
    for batch in 0..SUBSCRIBERS / 500 {
        let opened = join_all((0..500).map(|_| async {
            let mut socket = connect(&base, &path).await;
            assert_eq!(next_json(&mut socket).await["available"], 100);
            socket
        }))
        .await;
        sockets.extend(opened);
        assert_eq!(sockets.len(), (batch + 1) * 500);
    }
    let held = resident_kib(pid);
    let per_connection = (held.saturating_sub(before) * 1024) as f64 / SUBSCRIBERS as f64;
    println!(
        "{SUBSCRIBERS} idle /ws/stock subscribers: server RSS {before} KiB -> {held} KiB, {per_connection:.0} bytes each"
    );
    assert!(per_connection < 64.0 * 1024.0, "{per_connection:.0} bytes per idle connection");

    // The sale goes on, and every subscriber hears of it.
    let buyer = api.customers(1).await.remove(0);
    assert_eq!(api.purchase(product, &buyer.1, None, 1).await.status, StatusCode::ACCEPTED);
    let heard = join_all(sockets.iter_mut().map(|socket| async { next_json(socket).await["available"].clone() })).await;
    assert!(heard.iter().all(|available| *available == 99), "every subscriber saw the purchase");
}

//! A flash sale over real HTTP, on SQLite and on PostgreSQL: a crowd far larger than the stock, greedy users,
//! retried requests, and every kind of bad input.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{eventually, spawn_app, start_with, Backend, Scratch};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn crowd_of_2000_buys_exactly_100_units(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product(100, 1, 4).await;
    let users = app.customers(2_000).await;

    let answers = join_all(users.iter().map(|(_, token)| app.purchase(product, token, None, 1))).await;

    let mut accepted = HashMap::new();
    let mut codes: HashMap<String, usize> = HashMap::new();
    for ((user, _), answer) in users.iter().zip(&answers) {
        if answer.status == StatusCode::ACCEPTED {
            assert_eq!(answer.body["status"], "reserved");
            accepted.insert(answer.body["order_id"].as_str().expect("order id").to_owned(), *user);
        } else {
            assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
            *codes.entry(answer.code().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(accepted.len(), 100, "exactly the stock is sold; refusals: {codes:?}");
    assert_eq!(codes.get("SOLD_OUT"), Some(&1_900));

    let orders = app.settled_orders(product).await;
    assert_eq!(orders.len(), 100, "one row per accepted order");
    for order in &orders {
        let id = order["order_id"].as_str().expect("order id");
        assert_eq!(accepted.get(id).copied(), order["user_id"].as_i64(), "row {id} belongs to its buyer");
    }
    let buyers: HashSet<_> = orders.iter().map(|order| order["user_id"].as_i64()).collect();
    assert_eq!(buyers.len(), 100, "nobody bought twice");

    let view = app.admin_view(product).await;
    assert_eq!(view["invariant_holds"], true, "{view}");
    assert_eq!(view["reserved"], 100);
    assert_eq!(view["available"], 0);
    assert_eq!(view["sold_out"], true);

    // 100 units changed hands, more than the tests' `snapshots.every_units`: the product snapshots at the first
    // pause in its sales, and says so while it is pending.
    let view = eventually("the sale's snapshot is saved", Duration::from_secs(10), || async {
        let view = app.admin_view(product).await;
        (view["snapshot_pending"] != true).then_some(view)
    })
    .await;
    assert_eq!(view["snapshot_pending"], false, "{view}");
    assert!(view["snapshot_position"].as_i64() > Some(0), "the snapshot covers the sale: {view}");
    app.stop().await;
}
on_every_backend!(crowd_of_2000_buys_exactly_100_units);

async fn one_user_twenty_parallel_purchases_get_one_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product(50, 1, 2).await;
    let users = app.customers(1).await;
    let token = &users[0].1;

    let keys: Vec<String> = (0..20).map(|n| format!("click-{n}")).collect();
    let with_keys = keys.iter().map(|key| app.purchase(product, token, Some(key), 1));
    let without_keys = (0..20).map(|_| app.purchase(product, token, None, 1));
    let (keyed, unkeyed) = futures::join!(join_all(with_keys), join_all(without_keys));

    let accepted: Vec<&Value> =
        keyed.iter().chain(&unkeyed).filter(|a| a.status == StatusCode::ACCEPTED).map(|a| &a.body).collect();
    assert_eq!(accepted.len(), 1, "one order for one user with limit 1");
    for refused in keyed.iter().chain(&unkeyed).filter(|a| a.status != StatusCode::ACCEPTED) {
        assert_eq!(refused.code(), "LIMIT_EXCEEDED", "{}", refused.body);
    }
    assert_eq!(app.settled_orders(product).await.len(), 1);
    assert_eq!(app.admin_view(product).await["reserved"], 1);
    app.stop().await;
}
on_every_backend!(one_user_twenty_parallel_purchases_get_one_order);

async fn a_repeated_idempotency_key_returns_the_same_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product(10, 2, 2).await;
    let users = app.customers(2).await;
    let (alice, bob) = (&users[0].1, &users[1].1);

    let first = app.purchase(product, alice, Some("checkout-1"), 1).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let retries = join_all((0..10).map(|_| app.purchase(product, alice, Some("checkout-1"), 1))).await;
    for retry in &retries {
        assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.body);
        assert_eq!(retry.body["order_id"], first.body["order_id"], "a retry names the same order");
    }
    let reused = app.purchase(product, alice, Some("checkout-1"), 2).await;
    assert_eq!((reused.status, reused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED"));
    let bobs = app.purchase(product, bob, Some("checkout-1"), 1).await;
    assert_eq!(bobs.status, StatusCode::ACCEPTED, "keys are per user");
    assert_ne!(bobs.body["order_id"], first.body["order_id"]);
    let second = app.purchase(product, alice, Some("checkout-2"), 1).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "a new key is a new purchase (limit 2)");

    let orders = app.settled_orders(product).await;
    assert_eq!(orders.len(), 3);
    assert_eq!(app.admin_view(product).await["available"], 7);
    app.stop().await;
}
on_every_backend!(a_repeated_idempotency_key_returns_the_same_order);

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product(10, 1, 2).await;
    let users = app.customers(1).await;
    let token = users[0].1.as_str();
    let purchase_url = app.url(&format!("/api/v1/products/{product}/purchase"));
    let before = app.admin_view(product).await;

    let post = |url: &str| app.client.post(url);
    let raw = |body: &'static str| {
        post(&purchase_url).bearer_auth(token).header("content-type", "application/json").body(body)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        ("malformed JSON", raw("{\"quantity\": "), StatusCode::BAD_REQUEST, "INVALID_INPUT"),
        ("wrong type", raw("{\"quantity\": \"1\"}"), StatusCode::BAD_REQUEST, "INVALID_INPUT"),
        ("fractional", raw("{\"quantity\": 1.5}"), StatusCode::BAD_REQUEST, "INVALID_INPUT"),
        ("zero", raw("{\"quantity\": 0}"), StatusCode::BAD_REQUEST, "INVALID_INPUT"),
        ("negative", raw("{\"quantity\": -1}"), StatusCode::BAD_REQUEST, "INVALID_INPUT"),
        ("huge", raw("{\"quantity\": 99999999999999999999}"), StatusCode::BAD_REQUEST, "INVALID_INPUT"),
        ("unknown field", raw("{\"quantity\": 1, \"price\": 0}"), StatusCode::BAD_REQUEST, "INVALID_INPUT"),
        ("JSON array", raw("[1]"), StatusCode::BAD_REQUEST, "INVALID_INPUT"),
        ("over the per-user limit", raw("{\"quantity\": 2}"), StatusCode::CONFLICT, "LIMIT_EXCEEDED"),
        (
            "oversized body",
            post(&purchase_url)
                .bearer_auth(token)
                .body(format!("{{\"quantity\": 1, \"pad\": \"{}\"}}", "x".repeat(64 * 1024))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "bad Idempotency-Key",
            raw("{\"quantity\": 1}").header("Idempotency-Key", "x".repeat(200)),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        ("no token", post(&purchase_url).json(&json!({"quantity": 1})), StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        (
            "forged token",
            post(&purchase_url).bearer_auth("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.x").json(&json!({"quantity": 1})),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            "unknown product",
            post(&app.url("/api/v1/products/987654/purchase")).bearer_auth(token).json(&json!({"quantity": 1})),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "non-numeric product id",
            post(&app.url("/api/v1/products/abc/purchase")).bearer_auth(token).json(&json!({"quantity": 1})),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            "wrong method",
            app.client.delete(&purchase_url).bearer_auth(token),
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        ),
        ("unknown route", app.client.get(app.url("/api/v1/nothing-here")), StatusCode::NOT_FOUND, "NOT_FOUND"),
        (
            "customer on an admin route",
            post(&app.url("/api/v1/admin/products"))
                .bearer_auth(token)
                .json(&json!({"name": "x", "price_cents": 1, "stock": 1})),
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        ),
        (
            "sale that ends before it starts",
            post(&app.url("/api/v1/admin/products")).bearer_auth(&app.admin_token).json(&json!({
                "name": "x", "price_cents": 1, "stock": 1,
                "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"})),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            "zero stock",
            post(&app.url("/api/v1/admin/products"))
                .bearer_auth(&app.admin_token)
                .json(&json!({"name": "x", "price_cents": 1, "stock": 0})),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            "no time to pay",
            post(&app.url("/api/v1/admin/products"))
                .bearer_auth(&app.admin_token)
                .json(&json!({"name": "x", "price_cents": 1, "stock": 3, "payment_window_secs": 0})),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            "a cancel of an order that does not exist",
            post(&app.url("/api/v1/orders/01a2361f-02a8-704d-af9e-fb8b99407351/cancel")).bearer_auth(token),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "negative price",
            post(&app.url("/api/v1/admin/products"))
                .bearer_auth(&app.admin_token)
                .json(&json!({"name": "x", "price_cents": -5, "stock": 3})),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            "bad date",
            post(&app.url("/api/v1/admin/products"))
                .bearer_auth(&app.admin_token)
                .json(&json!({"name": "x", "price_cents": 5, "stock": 3, "starts_at": "soon"})),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            "short password",
            post(&app.url("/api/v1/auth/register")).json(&json!({"username": "carol", "password": "short"})),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
        (
            "wrong password",
            post(&app.url("/api/v1/auth/login")).json(&json!({"username": "admin", "password": "not-the-password"})),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            "malformed order id",
            app.client.get(app.url("/api/v1/orders/not-a-uuid")).bearer_auth(token),
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
        ),
    ];
    for (what, request, status, code) in cases {
        let answer = app.send(request).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert_eq!(answer.code(), code, "{what}: {}", answer.body);
        assert_eq!(answer.content_type, "application/problem+json", "{what}");
        assert!(answer.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what} explains itself");
    }

    let after = app.admin_view(product).await;
    for field in ["available", "reserved", "in_flight", "pool", "released"] {
        assert_eq!(after[field], before[field], "bad input changed {field}");
    }
    assert_eq!(app.settled_orders(product).await.len(), 0);
    let products = app.send(app.client.get(app.url("/api/v1/products"))).await;
    assert_eq!(products.body.as_array().map(Vec::len), Some(1), "no bad product was created");
    app.stop().await;
}
on_every_backend!(bad_input_is_refused_and_changes_nothing);

async fn a_sale_sells_only_inside_its_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.customers(1).await.remove(0).1;
    let create = |starts_at: &str, ends_at: &str| {
        let body = json!({"name": "Timed", "price_cents": 100, "stock": 5, "starts_at": starts_at, "ends_at": ends_at});
        app.send(app.client.post(app.url("/api/v1/admin/products")).bearer_auth(&app.admin_token).json(&body))
    };
    let upcoming = create("2999-01-01T00:00:00Z", "2999-01-02T00:00:00Z").await.body["id"].as_i64().expect("id");
    // A sale cannot be created in the past: this one ends a moment after it is created.
    let ends_at = seckill::domain::Timestamp::now().plus(std::time::Duration::from_millis(1_000));
    let ended = create("2001-01-01T00:00:00Z", &ends_at.to_rfc3339()).await.body["id"].as_i64().expect("id");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    let early = app.purchase(upcoming, &token, None, 1).await;
    assert_eq!((early.status, early.code()), (StatusCode::CONFLICT, "SALE_NOT_STARTED"), "{}", early.body);
    assert_eq!(early.body["starts_at"], "2999-01-01T00:00:00.000Z");
    let late = app.purchase(ended, &token, None, 1).await;
    assert_eq!((late.status, late.code()), (StatusCode::CONFLICT, "SALE_ENDED"), "{}", late.body);
    for product in [upcoming, ended] {
        assert_eq!(app.admin_view(product).await["available"], 5);
    }
    app.stop().await;
}
on_every_backend!(a_sale_sells_only_inside_its_window);

async fn a_registered_buyer_sees_only_their_own_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product(3, 1, 1).await;
    let credentials = json!({"username": "alice", "password": "correct horse battery"});
    let registered = app.send(app.client.post(app.url("/api/v1/auth/register")).json(&credentials)).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    let again = app.send(app.client.post(app.url("/api/v1/auth/register")).json(&credentials)).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "USERNAME_TAKEN"));
    let alice = app.login("alice", "correct horse battery").await;
    let eve = app.customers(1).await.remove(0).1;

    let bought = app.purchase(product, &alice, Some("a-1"), 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.body);
    let order_id = bought.body["order_id"].as_str().expect("order id").to_owned();
    app.settled_orders(product).await;

    let order_url = app.url(&format!("/api/v1/orders/{order_id}"));
    let mine = app.send(app.client.get(&order_url).bearer_auth(&alice)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!(mine.body["status"], "reserved");
    assert_eq!(mine.body["product_id"], product);
    let listed = app.send(app.client.get(app.url("/api/v1/orders")).bearer_auth(&alice)).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    let snooped = app.send(app.client.get(&order_url).bearer_auth(&eve)).await;
    assert_eq!((snooped.status, snooped.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"), "others' orders stay hidden");

    let shown = app.send(app.client.get(app.url(&format!("/api/v1/products/{product}")))).await;
    assert_eq!(shown.body["available"], 2, "live stock: {}", shown.body);
    app.stop().await;
}
on_every_backend!(a_registered_buyer_sees_only_their_own_orders);

async fn a_fresh_order_is_readable_before_it_is_projected(backend: Backend) {
    let app = start_with(Scratch::new(backend), |settings| {
        settings.projector.quiet_ms = 3_600_000;
        settings.projector.max_lag = u64::MAX;
    })
    .await;
    let product = app.create_product(3, 1, 2).await;
    let mut buyers = app.customers(2).await;
    let (alice, eve) = (buyers.remove(0), buyers.remove(0));

    let bought = app.purchase(product, &alice.1, None, 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.body);
    let order_id = bought.body["order_id"].as_str().expect("order id").to_owned();
    let projector = app.send(app.client.get(app.url("/api/v1/admin/projector")).bearer_auth(&app.admin_token)).await;
    assert_eq!(projector.body["caught_up"], false, "projection waits for a quiet journal: {}", projector.body);

    let order_url = app.url(&format!("/api/v1/orders/{order_id}"));
    let mine = app.send(app.client.get(&order_url).bearer_auth(&alice.1)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!((mine.body["user_id"].as_i64(), mine.body["status"].as_str()), (Some(alice.0), Some("reserved")));
    let listed = app.send(app.client.get(app.url("/api/v1/orders")).bearer_auth(&alice.1)).await;
    assert_eq!(listed.body[0]["order_id"], order_id.as_str(), "{}", listed.body);
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    let snooped = app.send(app.client.get(&order_url).bearer_auth(&eve.1)).await;
    assert_eq!((snooped.status, snooped.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"), "others' orders stay hidden");
    let as_admin = app.send(app.client.get(&order_url).bearer_auth(&app.admin_token)).await;
    assert_eq!(as_admin.body["order_id"], order_id.as_str(), "{}", as_admin.body);
    app.stop().await;
}
on_every_backend!(a_fresh_order_is_readable_before_it_is_projected);

async fn a_restart_keeps_orders_stock_and_idempotency(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product(30, 1, 3).await;
    let users = app.customers(40).await;
    let api = &app.api;
    let first: Vec<_> = join_all(users[..20].iter().map(|(user, token)| {
        let key = format!("k-{user}");
        async move { api.purchase(product, token, Some(&key), 1).await }
    }))
    .await;
    assert!(first.iter().all(|a| a.status == StatusCode::ACCEPTED));
    let scratch = app.stop().await;

    let app = common::start_on(scratch).await;
    let view = app.admin_view(product).await;
    assert_eq!(view["reserved"], 20, "{view}");
    assert_eq!(view["invariant_holds"], true);
    let (user, token) = &users[0];
    let replay = app.purchase(product, token, Some(&format!("k-{user}")), 1).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "the key survives the restart");
    assert_eq!(replay.body["order_id"], first[0].body["order_id"]);

    let rest = join_all(users[20..].iter().map(|(_, token)| app.purchase(product, token, None, 1))).await;
    assert_eq!(rest.iter().filter(|a| a.status == StatusCode::ACCEPTED).count(), 10, "the last 10 units sell");
    assert_eq!(app.settled_orders(product).await.len(), 30);
    app.stop().await;
}
on_every_backend!(a_restart_keeps_orders_stock_and_idempotency);

//! The admin's sale controls over real HTTP, on the embedded SQLite default, on PostgreSQL and on the production
//! backends (Kafka journal, Redis snapshots): a restock in the middle of a crowd sells exactly the stock it makes,
//! pauses (a product's and the global one) refuse and change nothing, a window moves at once, preheat warms a product,
//! bad bodies are 400s — and restocks, switches and windows survive a restart of the whole service.

mod common;

use std::collections::HashSet;

use common::{spawn_app, Backend, TestApp};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn admin(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> common::Answer {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(&app.admin_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

async fn restock(app: &TestApp, product: i64, units: Value) -> common::Answer {
    admin(
        app,
        reqwest::Method::POST,
        &format!("/api/v1/admin/products/{product}/restock"),
        Some(json!({"units": units})),
    )
    .await
}

async fn switch(app: &TestApp, product: i64, action: &str) {
    let answer = admin(app, reqwest::Method::POST, &format!("/api/v1/admin/products/{product}/{action}"), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{action}: {}", answer.body);
}

async fn global(app: &TestApp, state: &str) -> common::Answer {
    admin(app, reqwest::Method::PUT, "/api/v1/admin/sale", Some(json!({"state": state}))).await
}

async fn public_view(app: &TestApp, product: i64) -> Value {
    let answer = app.send(app.client.get(app.url(&format!("/api/v1/products/{product}")))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// Every buyer tries once; the ids of the orders accepted.
async fn buy_once_each(app: &TestApp, product: i64, buyers: &[(i64, String)]) -> Vec<String> {
    let answers = join_all(buyers.iter().map(|(_, token)| app.purchase(product, token, None, 1))).await;
    let mut accepted = Vec::new();
    for answer in answers {
        if answer.status == StatusCode::ACCEPTED {
            accepted.push(answer.body["order_id"].as_str().expect("order id").to_owned());
        } else {
            assert_eq!((answer.status, answer.code()), (StatusCode::CONFLICT, "SOLD_OUT"), "{}", answer.body);
        }
    }
    accepted
}

async fn a_restock_in_the_middle_of_a_crowd_sells_exactly_the_new_stock(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product(40, 1, 4).await;
    let buyers = app.customers(400).await;

    // A first crowd while the admin restocks: whatever the interleaving, exactly 40 + 25 units can be sold.
    let (first, restocked) =
        futures::join!(buy_once_each(&app, product, &buyers[..200]), restock(&app, product, json!(25)));
    assert_eq!(restocked.status, StatusCode::OK, "{}", restocked.body);
    assert_eq!(restocked.body["stock_total"], 65);
    let second = buy_once_each(&app, product, &buyers[200..]).await;
    let sold: HashSet<String> = first.into_iter().chain(second).collect();
    assert_eq!(sold.len(), 65, "exactly the stock with its restock is sold");

    let view = app.admin_view(product).await;
    assert_eq!((view["stock_total"].as_u64(), view["reserved"].as_u64()), (Some(65), Some(65)), "{view}");
    assert_eq!((view["available"].as_u64(), view["sold_out"].as_bool()), (Some(0), Some(true)), "{view}");
    assert_eq!(view["invariant_holds"], true, "{view}");
    let orders = app.settled_orders(product).await;
    assert_eq!(orders.len(), 65, "one row per order, and the restock made none");

    // A sold-out sale reopens with a restock; the live stock rises and newcomers buy exactly it.
    let reopened = restock(&app, product, json!(3)).await;
    assert_eq!((reopened.body["stock_total"].as_u64(), reopened.body["available"].as_u64()), (Some(68), Some(3)));
    let public = public_view(&app, product).await;
    assert_eq!((public["stock_total"].as_u64(), public["available"].as_u64()), (Some(68), Some(3)), "{public}");
    assert_eq!(public["sold_out"], false);
    let newcomers = app.customers(10).await;
    assert_eq!(buy_once_each(&app, product, &newcomers).await.len(), 3);
    app.stop().await;
}
on_every_backend!(a_restock_in_the_middle_of_a_crowd_sells_exactly_the_new_stock);

async fn pauses_refuse_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (product, other) = (app.create_product(10, 1, 2).await, app.create_product(10, 1, 2).await);
    let buyers = app.customers(4).await;

    switch(&app, product, "pause").await;
    let refused = app.purchase(product, &buyers[0].1, None, 1).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "SALE_PAUSED"), "{}", refused.body);
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(app.purchase(other, &buyers[0].1, None, 1).await.status, StatusCode::ACCEPTED, "others sell");
    switch(&app, product, "resume").await;

    let paused = global(&app, "paused").await;
    assert_eq!((paused.status, &paused.body), (StatusCode::OK, &json!({"state": "paused"})));
    assert_eq!(admin(&app, reqwest::Method::GET, "/api/v1/admin/sale", None).await.body, json!({"state": "paused"}));
    for id in [product, other] {
        let refused = app.purchase(id, &buyers[1].1, None, 1).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "SALE_PAUSED"), "{}", refused.body);
        assert_eq!(public_view(&app, id).await["sale"], "paused");
    }
    assert_eq!(app.admin_view(product).await["available"], 10, "nothing was taken");
    assert_eq!(app.admin_view(other).await["available"], 9);
    assert_eq!(global(&app, "open").await.status, StatusCode::OK);
    assert_eq!(app.purchase(product, &buyers[1].1, None, 1).await.status, StatusCode::ACCEPTED, "open again");

    // Bad bodies are 400s that change nothing; unknown products are 404s; no token, no control.
    assert_eq!(global(&app, "draining").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(global(&app, "closed").await.status, StatusCode::BAD_REQUEST);
    for units in [json!(0), json!(-1), json!(10_000_001), json!("5"), json!(1.5)] {
        let answer = restock(&app, product, units.clone()).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::BAD_REQUEST, "INVALID_INPUT"), "{units}");
        assert_eq!(answer.content_type, "application/problem+json");
    }
    for _ in 0..99 {
        assert_eq!(restock(&app, product, json!(10_000_000)).await.status, StatusCode::OK);
    }
    let past_the_bound = restock(&app, product, json!(10_000_000)).await;
    assert_eq!((past_the_bound.status, past_the_bound.code()), (StatusCode::BAD_REQUEST, "INVALID_INPUT"));
    assert_eq!(app.admin_view(product).await["stock_total"], 990_000_010_u64, "the refused restock added nothing");
    assert_eq!(restock(&app, 999_999, json!(5)).await.status, StatusCode::NOT_FOUND);
    let unauthenticated = app
        .send(app.client.post(app.url(&format!("/api/v1/admin/products/{product}/restock"))).json(&json!({"units": 1})))
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let customer = app
        .send(app.client.put(app.url("/api/v1/admin/sale")).bearer_auth(&buyers[3].1).json(&json!({"state": "paused"})))
        .await;
    assert_eq!(customer.status, StatusCode::FORBIDDEN);
    assert_eq!(app.purchase(product, &buyers[3].1, None, 1).await.status, StatusCode::ACCEPTED, "still open");
    app.stop().await;
}
on_every_backend!(pauses_refuse_and_change_nothing);

async fn a_window_moves_at_once_and_preheat_warms_a_product(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product(20, 1, 2).await;
    let token = app.customers(2).await.remove(0).1;
    let path = format!("/api/v1/admin/products/{product}/window");

    let later = json!({"starts_at": "2999-01-01T00:00:00Z", "ends_at": "2999-01-02T00:00:00Z"});
    let moved = admin(&app, reqwest::Method::PUT, &path, Some(later)).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(
        (moved.body["phase"].as_str(), moved.body["starts_at"].as_str()),
        (Some("upcoming"), Some("2999-01-01T00:00:00.000Z"))
    );
    let early = app.purchase(product, &token, None, 1).await;
    assert_eq!((early.status, early.code()), (StatusCode::CONFLICT, "SALE_NOT_STARTED"), "{}", early.body);

    for bad in [
        json!({"starts_at": "2999-01-02T00:00:00Z", "ends_at": "2999-01-01T00:00:00Z"}),
        json!({"starts_at": "2001-01-01T00:00:00Z", "ends_at": "2001-01-02T00:00:00Z"}),
        json!({"starts_at": "yesterday", "ends_at": "2999-01-01T00:00:00Z"}),
        json!({"starts_at": "2001-01-01T00:00:00Z"}),
    ] {
        let answer = admin(&app, reqwest::Method::PUT, &path, Some(bad.clone())).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, "INVALID_INPUT"),
            "{bad}: {}",
            answer.body
        );
    }
    assert_eq!(
        public_view(&app, product).await["starts_at"],
        "2999-01-01T00:00:00.000Z",
        "the bad ones changed nothing"
    );

    let preheated =
        admin(&app, reqwest::Method::POST, &format!("/api/v1/admin/products/{product}/preheat"), None).await;
    assert_eq!(preheated.status, StatusCode::OK, "{}", preheated.body);
    let warmed = &preheated.body["warmed"];
    assert_eq!(warmed["shards"], 2);
    for room in warmed["buyers_per_shard"].as_array().expect("per shard") {
        assert!(room.as_u64() >= Some(10), "each shard has room for its share of 20 buyers: {warmed}");
    }
    assert_eq!(warmed["pool"].as_u64().unwrap() + warmed["in_slices"].as_u64().unwrap(), 20, "{warmed}");
    let unknown = admin(&app, reqwest::Method::POST, "/api/v1/admin/products/999999/preheat", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let now = json!({"starts_at": "2001-01-01T00:00:00Z", "ends_at": "2999-01-01T00:00:00Z"});
    assert_eq!(admin(&app, reqwest::Method::PUT, &path, Some(now)).await.status, StatusCode::OK);
    assert_eq!(app.purchase(product, &token, None, 1).await.status, StatusCode::ACCEPTED, "open at once");
    app.stop().await;
}
on_every_backend!(a_window_moves_at_once_and_preheat_warms_a_product);

async fn restocks_switches_and_windows_survive_a_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    let (product, other) = (app.create_product(5, 1, 2).await, app.create_product(5, 1, 2).await);
    let buyers = app.customers(30).await;
    assert_eq!(buy_once_each(&app, product, &buyers[..3]).await.len(), 3);
    assert_eq!(restock(&app, product, json!(7)).await.body["stock_total"], 12);
    switch(&app, other, "pause").await;
    let window = json!({"starts_at": "2001-01-01T00:00:00Z", "ends_at": "2998-01-01T00:00:00Z"});
    let path = format!("/api/v1/admin/products/{product}/window");
    assert_eq!(admin(&app, reqwest::Method::PUT, &path, Some(window)).await.status, StatusCode::OK);
    assert_eq!(global(&app, "paused").await.status, StatusCode::OK);
    let scratch = app.stop().await;

    let app = common::start_on(scratch).await;
    let view = app.admin_view(product).await;
    assert_eq!((view["stock_total"].as_u64(), view["reserved"].as_u64()), (Some(12), Some(3)), "{view}");
    assert_eq!((view["available"].as_u64(), view["invariant_holds"].as_bool()), (Some(9), Some(true)), "{view}");
    assert_eq!(view["ends_at"], "2998-01-01T00:00:00.000Z");
    assert_eq!(admin(&app, reqwest::Method::GET, "/api/v1/admin/sale", None).await.body, json!({"state": "paused"}));
    let refused = app.purchase(product, &buyers[3].1, None, 1).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "SALE_PAUSED"), "the global pause held");
    assert_eq!(global(&app, "open").await.status, StatusCode::OK);
    let refused = app.purchase(other, &buyers[3].1, None, 1).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "SALE_PAUSED"), "the product's pause held");

    // A second restart with a restock after the last snapshot: counted once, from the snapshot and the journal.
    assert_eq!(restock(&app, product, json!(4)).await.body["stock_total"], 16);
    let scratch = app.stop().await;
    let app = common::start_on(scratch).await;
    let view = app.admin_view(product).await;
    assert_eq!((view["stock_total"].as_u64(), view["available"].as_u64()), (Some(16), Some(13)), "{view}");
    assert_eq!(buy_once_each(&app, product, &buyers[3..]).await.len(), 13, "exactly the restocked stock sells");
    assert_eq!(app.admin_view(product).await["invariant_holds"], true);
    app.stop().await;
}
on_every_backend!(restocks_switches_and_windows_survive_a_restart);

//! An order's life after its reservation, over real HTTP on every backend: a cancelled or expired order releases
//! its unit, which goes back on sale and is sold to the next buyer; the buyer's slot is free again; the order reads
//! with every step and when it was taken; and a restart (snapshot + journal) comes back to exactly the same state.

mod common;

use std::time::Duration;

use common::{eventually, start_on, start_with, Backend, Scratch, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

/// The order's steps by name, in the order they were taken.
fn steps(order: &Value) -> Vec<&str> {
    order["steps"].as_array().map_or_else(Vec::new, |steps| steps.iter().filter_map(|s| s["step"].as_str()).collect())
}

/// Waits until the product's admin view shows `released` units released and nothing waiting on the journal.
async fn released(app: &TestApp, product: i64, released: u64) -> Value {
    eventually("the units are released", Duration::from_secs(10), || async {
        let view = app.admin_view(product).await;
        (view["released"] == released && view["in_flight"] == 0).then_some(view)
    })
    .await
}

async fn a_cancelled_unit_is_sold_again_and_its_buyer_may_buy_again(backend: Backend) {
    let app = start_on(Scratch::new(backend)).await;
    let product = app.create_product(2, 1, 1).await;
    let users = app.customers(3).await;
    let [(_, first), (_, second), (_, third)] = [&users[0], &users[1], &users[2]];
    let first_order = app.purchase(product, first, None, 1).await;
    assert_eq!(first_order.status, StatusCode::ACCEPTED);
    let first_order = first_order.body["order_id"].as_str().expect("order id").to_owned();
    let third_order = app.purchase(product, third, None, 1).await.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(app.purchase(product, second, None, 1).await.code(), "SOLD_OUT");

    let stranger = app.cancel(&first_order, second).await;
    assert_eq!((stranger.status, stranger.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"), "{}", stranger.body);
    assert_eq!(app.cancel("not-an-order", first).await.status, StatusCode::BAD_REQUEST);
    let cancelled = app.cancel(&first_order, first).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    let view = released(&app, product, 1).await;
    assert_eq!((view["reserved"].as_u64(), view["available"].as_u64()), (Some(1), Some(1)), "{view}");
    assert_eq!((view["sold_out"].as_bool(), view["invariant_holds"].as_bool()), (Some(false), Some(true)));

    let again = app.cancel(&first_order, first).await;
    assert_eq!((again.status, again.body["status"].as_str()), (StatusCode::OK, Some("released")), "{}", again.body);
    let order = app.order(&first_order, first).await.body;
    assert_eq!(steps(&order), ["cancelled", "released"], "{order}");
    assert!(order["steps"][0]["at"].is_string());

    // The released unit goes to the next buyer; the first buyer's slot is free (sold out, not over their limit).
    assert_eq!(app.purchase(product, second, None, 1).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.purchase(product, first, None, 1).await.code(), "SOLD_OUT");
    assert_eq!(app.cancel(&third_order, third).await.status, StatusCode::OK);
    released(&app, product, 2).await;
    assert_eq!(app.purchase(product, first, None, 1).await.status, StatusCode::ACCEPTED, "the first buyer buys again");

    let orders = app.settled_orders(product).await;
    let by_status = |status: &str| orders.iter().filter(|order| order["status"] == status).count();
    assert_eq!((orders.len(), by_status("released"), by_status("reserved")), (4, 2, 2), "{orders:?}");
    let projected = orders.iter().find(|order| order["order_id"] == first_order.as_str()).expect("first order");
    assert_eq!(steps(projected), ["cancelled", "released"], "{projected}");

    let before = app.admin_view(product).await;
    let app = start_on(app.stop().await).await;
    let after = app.admin_view(product).await;
    for field in ["reserved", "paid", "released", "available", "sold_out", "invariant_holds"] {
        assert_eq!(after[field], before[field], "{field} after a restart: {after}");
    }
    assert_eq!(app.order(&first_order, first).await.body["status"], "released");

    // Nothing failed: every supervisor says so, to an admin only.
    let supervision = app.url("/api/v1/admin/supervision");
    let answer = app.send(app.client.get(&supervision).bearer_auth(&app.admin_token)).await;
    assert_eq!(answer.status, StatusCode::OK);
    for supervisor in ["root", "products", "payments", "compensations"] {
        assert_eq!(answer.body[supervisor]["restarts"], 0, "{}", answer.body);
        assert_eq!(answer.body[supervisor]["children"], serde_json::json!([]), "{}", answer.body);
    }
    assert_eq!(app.send(app.client.get(&supervision).bearer_auth(first)).await.code(), "FORBIDDEN");
    app.stop().await;
}

async fn an_unpaid_order_expires_and_its_unit_is_sold_again(backend: Backend) {
    let app = start_on(Scratch::new(backend)).await;
    let product = app.create_product_with(1, 1, 1, serde_json::json!({"payment_window_secs": 1})).await;
    let users = app.customers(2).await;
    let (walks_away, next) = (&users[0].1, &users[1].1);
    let order = app.purchase(product, walks_away, None, 1).await.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(app.purchase(product, next, None, 1).await.code(), "SOLD_OUT");

    let view = released(&app, product, 1).await;
    assert_eq!((view["available"].as_u64(), view["invariant_holds"].as_bool()), (Some(1), Some(true)), "{view}");
    let expired = app.order(&order, walks_away).await.body;
    assert_eq!((expired["status"].as_str(), steps(&expired)), (Some("released"), vec!["expired", "released"]));
    let resold = app.purchase(product, next, None, 1).await;
    assert_eq!(resold.status, StatusCode::ACCEPTED, "{}", resold.body);
    let resold = app.order(resold.body["order_id"].as_str().unwrap(), next).await.body;
    let time = |field: &str| chrono::DateTime::parse_from_rfc3339(resold[field].as_str().unwrap()).unwrap();
    assert_eq!((time("pay_before") - time("reserved_at")).num_seconds(), 1, "the sale's own window: {resold}");
    assert_eq!(app.cancel(&order, walks_away).await.code(), "ORDER_STATUS_CONFLICT", "an expired order stays expired");

    // After a restart from the journal alone, the second buyer's order is there and expires in turn.
    let app = start_with(app.stop().await, |settings| {
        settings.snapshots.redis_prefix = format!("seckill-test-{}", uuid::Uuid::now_v7().simple())
    })
    .await;
    let view = released(&app, product, 2).await;
    assert_eq!((view["available"].as_u64(), view["reserved"].as_u64()), (Some(1), Some(0)), "{view}");
    app.stop().await;
}

on_every_backend!(a_cancelled_unit_is_sold_again_and_its_buyer_may_buy_again);
on_every_backend!(an_unpaid_order_expires_and_its_unit_is_sold_again);

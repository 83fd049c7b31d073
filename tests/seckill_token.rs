//! Seckill tokens over real HTTP (seed 001's flow): a sale created with `requires_token` sells only to a buyer who
//! fetched a token inside the window after every other check; the token is bound to its buyer and product, expires,
//! and buys once. Every refusal has its own code and sells nothing.

mod common;

use std::time::Duration;

use common::{start_with, Api, Backend, Scratch};
use reqwest::StatusCode;
use seckill::http::Limit;
use serde_json::{json, Value};

async fn token(app: &Api, product: i64, buyer: &str) -> (StatusCode, Value) {
    let request = app.client.post(app.url(&format!("/api/v1/products/{product}/token"))).bearer_auth(buyer);
    let answer = app.send(request).await;
    (answer.status, answer.body)
}

async fn granted(app: &Api, product: i64, buyer: &str) -> String {
    let (status, body) = token(app, product, buyer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["product_id"], product);
    body["token"].as_str().expect("token").to_owned()
}

/// A purchase of one unit with `pass` as its `Seckill-Token` (if any): status and code.
async fn buy(app: &Api, product: i64, buyer: &str, pass: Option<&str>) -> (StatusCode, String) {
    let mut request = app
        .client
        .post(app.url(&format!("/api/v1/products/{product}/purchase")))
        .bearer_auth(buyer)
        .json(&json!({"quantity": 1}));
    if let Some(pass) = pass {
        request = request.header("Seckill-Token", pass);
    }
    let answer = app.send(request).await;
    (answer.status, answer.code().to_owned())
}

fn refused(code: &str) -> (StatusCode, String) {
    (StatusCode::FORBIDDEN, code.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sale_sells_once_per_token_to_its_holder_only() {
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| settings.sale.token_ttl_secs = 2).await;
    let product = app.create_product_with(10, 5, 2, json!({"requires_token": true})).await;
    let other = app.create_product_with(10, 5, 2, json!({"requires_token": true})).await;
    let plain = app.create_product(10, 5, 2).await;
    let buyers = app.customers(2).await;
    let (alice, bob) = (&buyers[0].1, &buyers[1].1);
    let shown = app.send(app.client.get(app.url(&format!("/api/v1/products/{product}")))).await;
    assert_eq!(shown.body["requires_token"], true, "{}", shown.body);

    assert_eq!(buy(&app, product, alice, None).await, refused("SECKILL_TOKEN_REQUIRED"));
    let pass = granted(&app, product, alice).await;
    let mut forged = pass.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("base64url");
    assert_eq!(buy(&app, product, alice, Some(&forged)).await, refused("SECKILL_TOKEN_INVALID"));
    assert_eq!(buy(&app, product, alice, Some("not-a-token")).await, refused("SECKILL_TOKEN_INVALID"));
    assert_eq!(buy(&app, product, bob, Some(&pass)).await, refused("SECKILL_TOKEN_NOT_YOURS"), "alice's");
    assert_eq!(buy(&app, other, alice, Some(&pass)).await, refused("SECKILL_TOKEN_NOT_YOURS"), "another product");
    assert_eq!(buy(&app, product, alice, Some(&pass)).await.0, StatusCode::ACCEPTED, "the refusals spent nothing");
    assert_eq!(buy(&app, product, alice, Some(&pass)).await, refused("SECKILL_TOKEN_USED"));

    let late = granted(&app, product, bob).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(buy(&app, product, bob, Some(&late)).await, refused("SECKILL_TOKEN_EXPIRED"));
    let fresh = granted(&app, product, bob).await;
    assert_eq!(buy(&app, product, bob, Some(&fresh)).await.0, StatusCode::ACCEPTED);

    assert_eq!(buy(&app, plain, alice, None).await.0, StatusCode::ACCEPTED, "a sale without tokens needs none");
    assert_eq!(app.admin_view(product).await["reserved"], 2, "one unit per token, nothing for the refusals");
    assert_eq!(app.admin_view(other).await["reserved"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_issued_only_after_every_check_of_the_sale() {
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| {
        settings.limits.user = Limit { per_second: 1, burst: 6 };
    })
    .await;
    let buyers = app.customers(3).await;
    let (alice, bob, carol) = (&buyers[0], &buyers[1], &buyers[2]);

    let anonymous = app.send(app.client.post(app.url("/api/v1/products/1/token"))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "login first");
    assert_eq!(token(&app, 999_999, &alice.1).await.0, StatusCode::NOT_FOUND);

    let starts_at = seckill::domain::Timestamp::now().plus(Duration::from_secs(3_600));
    let upcoming = app.create_product_with(5, 1, 1, json!({"requires_token": true, "starts_at": starts_at})).await;
    let (status, body) = token(&app, upcoming, &alice.1).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("SALE_NOT_STARTED")), "outside the window");

    let product = app.create_product_with(1, 1, 1, json!({"requires_token": true})).await;
    let paused = app
        .send(
            app.client.post(app.url(&format!("/api/v1/admin/products/{product}/pause"))).bearer_auth(&app.admin_token),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    let (status, body) = token(&app, product, &alice.1).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("SALE_PAUSED")));
    let resumed = app
        .send(
            app.client.post(app.url(&format!("/api/v1/admin/products/{product}/resume"))).bearer_auth(&app.admin_token),
        )
        .await;
    assert_eq!(resumed.status, StatusCode::OK);

    let ban = json!({"user_id": bob.0});
    let banned =
        app.send(app.client.post(app.url("/api/v1/admin/blacklist")).bearer_auth(&app.admin_token).json(&ban)).await;
    assert_eq!(banned.status, StatusCode::CREATED);
    let (status, body) = token(&app, product, &bob.1).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("BLACKLISTED")));

    let pass = granted(&app, product, &alice.1).await;
    assert_eq!(buy(&app, product, &alice.1, Some(&pass)).await.0, StatusCode::ACCEPTED);
    let (status, body) = token(&app, product, &carol.1).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("SOLD_OUT")), "no stock, no token");

    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(token(&app, product, &carol.1).await.1["code"].as_str().unwrap_or("").to_owned());
    }
    assert!(codes.iter().any(|code| code == "RATE_LIMITED"), "asking counts against the buyer's rate: {codes:?}");
    assert_eq!(app.admin_view(product).await["reserved"], 1);
    app.stop().await;
}

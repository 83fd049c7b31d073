//! Rate limits over real HTTP: a buyer past their bucket is told `429 RATE_LIMITED` with when to come back and buys
//! nothing more, others are untouched, an address that floods the login is refused before any password is hashed,
//! and an admin reads and replaces the limits at runtime.

mod common;

use common::{start_with, Backend, Scratch};
use futures::future::join_all;
use reqwest::StatusCode;
use seckill::http::Limit;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_past_their_limit_is_refused_and_buys_nothing_more_while_others_buy() {
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| {
        settings.limits.user = Limit { per_second: 1, burst: 5 };
    })
    .await;
    let product = app.create_product(100, 50, 2).await;
    let buyers = app.customers(2).await;
    let (abuser, other) = (&buyers[0].1, &buyers[1].1);

    let answers = join_all((0..50).map(|_| app.purchase(product, abuser, None, 1))).await;
    let accepted = answers.iter().filter(|answer| answer.status == StatusCode::ACCEPTED).count();
    assert!((5..=6).contains(&accepted), "the burst, and at most one refill: {accepted}");
    for refused in answers.iter().filter(|answer| answer.status != StatusCode::ACCEPTED) {
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.body);
        assert_eq!((refused.code(), refused.body["scope"].as_str()), ("RATE_LIMITED", Some("user")));
        assert_eq!(refused.content_type, "application/problem+json");
        assert!(refused.retry_after_secs().as_secs() >= 1);
    }
    assert_eq!(app.purchase(product, other, None, 1).await.status, StatusCode::ACCEPTED, "another buyer buys");
    let view = app.admin_view(product).await;
    assert_eq!(view["reserved"].as_u64(), Some(accepted as u64 + 1), "refusals took nothing: {view}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_floods_the_login_is_refused_before_its_passwords_are_checked() {
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| {
        settings.limits.ip = Limit { per_second: 1, burst: 3 };
    })
    .await;
    let login = |password: &'static str| {
        let request = app.client.post(app.url("/api/v1/auth/login"));
        app.send(request.json(&json!({"username": "admin", "password": password})))
    };
    // The admin's own login at start took one.
    let answers = join_all((0..10).map(|_| login("wrong-password"))).await;
    let statuses: Vec<_> = answers.iter().map(|answer| answer.status).collect();
    assert!(statuses.iter().filter(|status| **status == StatusCode::UNAUTHORIZED).count() <= 3, "{statuses:?}");
    let refused: Vec<_> = answers.iter().filter(|answer| answer.status == StatusCode::TOO_MANY_REQUESTS).collect();
    assert!(refused.len() >= 7, "{statuses:?}");
    assert!(refused.iter().all(|answer| answer.code() == "RATE_LIMITED" && answer.body["scope"] == "ip"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reads_and_replaces_the_limits_and_a_bad_one_changes_nothing() {
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| {
        settings.limits.user = Limit { per_second: 1, burst: 1 };
    })
    .await;
    let product = app.create_product(100, 50, 1).await;
    let buyer = app.customers(1).await.remove(0).1;
    let put = |body: Value, token: &str| {
        app.send(app.client.put(app.url("/api/v1/admin/limits")).bearer_auth(token).json(&body))
    };

    let limits = app.admin_get("/api/v1/admin/limits").await;
    assert_eq!(limits["user"], json!({"per_second": 1, "burst": 1}));
    assert_eq!(app.purchase(product, &buyer, None, 1).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.purchase(product, &buyer, None, 1).await.status, StatusCode::TOO_MANY_REQUESTS);

    let mut bad = limits.clone();
    bad["user"] = json!({"per_second": 5, "burst": 0});
    let answer = put(bad, &app.admin_token).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::BAD_REQUEST, "INVALID_INPUT"), "{}", answer.body);
    assert_eq!(put(limits.clone(), &buyer).await.status, StatusCode::FORBIDDEN, "customers cannot");
    assert_eq!(app.admin_get("/api/v1/admin/limits").await, limits, "nothing changed");

    let mut raised = limits;
    raised["user"] = json!({"per_second": 100, "burst": 100});
    let answer = put(raised.clone(), &app.admin_token).await;
    assert_eq!((answer.status, &answer.body), (StatusCode::OK, &raised));
    let answers = join_all((0..10).map(|_| app.purchase(product, &buyer, None, 1))).await;
    assert!(answers.iter().all(|answer| answer.status == StatusCode::ACCEPTED), "the new limit holds at once");
    app.stop().await;
}

//! Who may be served, over real HTTP: a password change and an admin's revocation cut off every earlier token on
//! its very next request (customers and the admin alike), a validly signed token for no account is refused, and the
//! blacklist turns a user or an address away within a second of being added and serves them again within a second
//! of removal or expiry — with nothing sold to them meanwhile, and all of it still in force after a restart.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_app, start_on, Api, Backend, TestApp, ADMIN_PASSWORD};
use reqwest::StatusCode;
use seckill::domain::Timestamp;
use serde_json::{json, Value};

async fn register(app: &Api, username: &str, password: &str) -> i64 {
    let credentials = json!({"username": username, "password": password});
    let answer = app.send(app.client.post(app.url("/api/v1/auth/register")).json(&credentials)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body["user_id"].as_i64().expect("user id")
}

async fn change_password(app: &Api, token: &str, current: &str, new: &str) -> (StatusCode, Value) {
    let body = json!({"current_password": current, "new_password": new});
    let answer = app.send(app.client.post(app.url("/api/v1/auth/password")).bearer_auth(token).json(&body)).await;
    (answer.status, answer.body)
}

/// What `token` gets from a route every logged-in user may read.
async fn my_orders(app: &Api, token: &str) -> (StatusCode, String) {
    let answer = app.send(app.client.get(app.url("/api/v1/orders")).bearer_auth(token)).await;
    (answer.status, answer.code().to_owned())
}

async fn admin_post(app: &Api, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let answer = app.send(app.client.post(app.url(path)).bearer_auth(token).json(&body)).await;
    (answer.status, answer.body)
}

async fn a_new_password_or_a_revocation_cuts_off_every_earlier_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = register(&app, "alice", "correct horse battery").await;
    let first = app.login("alice", "correct horse battery").await;
    let second = app.login("alice", "correct horse battery").await;
    assert_eq!(my_orders(&app, &first).await.0, StatusCode::OK);

    let (status, body) = change_password(&app, &first, "not the password", "a new horse battery").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("UNAUTHORIZED")));
    assert_eq!(my_orders(&app, &first).await.0, StatusCode::OK, "a wrong current password changes nothing");

    let (status, body) = change_password(&app, &first, "correct horse battery", "a new horse battery").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh = body["access_token"].as_str().expect("a new token").to_owned();
    for old in [&first, &second] {
        assert_eq!(my_orders(&app, old).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    }
    assert_eq!(my_orders(&app, &fresh).await.0, StatusCode::OK, "the token the change answered with works");
    let relogin = app.login("alice", "a new horse battery").await;
    assert_eq!(my_orders(&app, &relogin).await.0, StatusCode::OK);

    let (status, body) =
        admin_post(&app, &app.admin_token, &format!("/api/v1/admin/users/{alice}/revoke-tokens"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], alice);
    for old in [&fresh, &relogin] {
        assert_eq!(my_orders(&app, old).await.0, StatusCode::UNAUTHORIZED, "revoked on the very next request");
    }
    let after = app.login("alice", "a new horse battery").await;
    assert_eq!(my_orders(&app, &after).await.0, StatusCode::OK, "a new login works");

    let (status, _) = admin_post(&app, &after, &format!("/api/v1/admin/users/{alice}/revoke-tokens"), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only an admin revokes");
    let (status, body) =
        admin_post(&app, &app.admin_token, "/api/v1/admin/users/999999/revoke-tokens", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));

    // The admin, too: by a password change, then by revoking its own tokens.
    let admin = app.admin_token.clone();
    let (status, body) = change_password(&app, &admin, ADMIN_PASSWORD, "admin-new-password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(my_orders(&app, &admin).await.0, StatusCode::UNAUTHORIZED, "the admin's old token");
    let admin = app.login("admin", "admin-new-password").await;
    let admin_id = app.send(app.client.get(app.url("/api/v1/admin/projector")).bearer_auth(&admin)).await;
    assert_eq!(admin_id.status, StatusCode::OK, "the new admin token works: {}", admin_id.body);
    let me = app
        .send(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "admin", "password": "admin-new-password"})),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_sqlite() {
    a_new_password_or_a_revocation_cuts_off_every_earlier_token(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_postgres() {
    a_new_password_or_a_revocation_cuts_off_every_earlier_token(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_token_for_no_account_or_an_old_version_is_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let secret = app.scratch.settings().auth.jwt_secret.expose().to_owned();
    let sign = |sub: &str, role: &str, ver: u32| {
        let now = Timestamp::now().unix_secs();
        let claims = json!({
            "iss": "seckill", "aud": "seckill-api", "sub": sub, "role": role, "ver": ver, "iat": now, "exp": now + 600,
        });
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("token")
    };
    let buyer = app.customers(1).await.remove(0).0.to_string();
    assert_eq!(my_orders(&app, &sign(&buyer, "customer", 0)).await.0, StatusCode::OK, "the forge is right");
    for (token, why) in [
        (sign("999999", "customer", 0), "no such account"),
        (sign("999999", "admin", 0), "no such admin"),
        (sign(&buyer, "admin", 0), "a customer's id with the admin role"),
        (sign(&buyer, "customer", 1), "a version the account never had"),
    ] {
        assert_eq!(my_orders(&app, &token).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()), "{why}");
    }
    let product = app.create_product(5, 1, 1).await;
    let refused = app.purchase(product, &sign("999999", "customer", 0), None, 1).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.admin_view(product).await["reserved"], 0, "nothing sold to nobody");
    app.stop().await;
}

/// How long after `since` the first purchase of `token` got `status`, trying every 50 ms for up to 5 s.
async fn until_purchase_is(app: &TestApp, product: i64, token: &str, status: StatusCode) -> (Duration, Value) {
    let since = Instant::now();
    loop {
        let answer = app.purchase(product, token, None, 1).await;
        if answer.status == status {
            return (since.elapsed(), answer.body);
        }
        assert!(since.elapsed() < Duration::from_secs(5), "still {} ({}), not {status}", answer.status, answer.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blacklist_refuses_at_once_lifts_at_once_and_survives_a_restart() {
    let app = spawn_app(Backend::Sqlite).await;
    let product = app.create_product(100, 50, 2).await;
    let mut buyers = app.customers(2).await;
    let ((banned_id, banned), (_, other)) = (buyers.remove(0), buyers.remove(0));
    let blacklist = "/api/v1/admin/blacklist";

    let (status, body) =
        admin_post(&app, &app.admin_token, blacklist, json!({"user_id": banned_id, "reason": "card testing"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (took, body) = until_purchase_is(&app, product, &banned, StatusCode::FORBIDDEN).await;
    assert!(took < Duration::from_secs(1), "refused {took:?} after the ban");
    assert_eq!((body["code"].as_str(), body["scope"].as_str()), (Some("BLACKLISTED"), Some("user")));
    assert_eq!(app.purchase(product, &other, None, 1).await.status, StatusCode::ACCEPTED, "others buy");
    let listed = app.admin_get(blacklist).await;
    assert_eq!(listed["entries"][0]["subject"], banned_id.to_string(), "{listed}");
    assert_eq!(listed["entries"][0]["reason"], "card testing");

    let scratch = app.stop().await;
    let app = start_on(scratch).await;
    assert_eq!(app.purchase(product, &banned, None, 1).await.status, StatusCode::FORBIDDEN, "after a restart");

    let removed = app
        .send(app.client.delete(app.url(&format!("{blacklist}/user/{banned_id}"))).bearer_auth(&app.admin_token))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let (took, _) = until_purchase_is(&app, product, &banned, StatusCode::ACCEPTED).await;
    assert!(took < Duration::from_secs(1), "served {took:?} after the removal");
    let again = app
        .send(app.client.delete(app.url(&format!("{blacklist}/user/{banned_id}"))).bearer_auth(&app.admin_token))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // A ban with an end: refused until it, served within a second after.
    let until = Timestamp::now().plus(Duration::from_millis(1_500));
    let (status, body) =
        admin_post(&app, &app.admin_token, blacklist, json!({"user_id": banned_id, "until": until})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let refused = app.purchase(product, &banned, None, 1).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "BLACKLISTED"));
    assert_eq!(refused.body["until"], json!(until));
    let (_, _) = until_purchase_is(&app, product, &banned, StatusCode::ACCEPTED).await;
    let late = Timestamp::now().millis() - until.millis();
    assert!((0..1_000).contains(&late), "served {late} ms after the ban ended");

    // An address: everyone from it is turned away, from buying and from logging in.
    let (status, body) = admin_post(&app, &app.admin_token, blacklist, json!({"ip": "127.0.0.1"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let refused = app.purchase(product, &other, None, 1).await;
    assert_eq!(
        (refused.status, refused.code(), refused.body["scope"].as_str()),
        (StatusCode::FORBIDDEN, "BLACKLISTED", Some("ip"))
    );
    let login = app
        .send(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!((login.status, login.code()), (StatusCode::FORBIDDEN, "BLACKLISTED"));
    let lifted =
        app.send(app.client.delete(app.url(&format!("{blacklist}/ip/127.0.0.1"))).bearer_auth(&app.admin_token)).await;
    assert_eq!(lifted.status, StatusCode::NO_CONTENT, "the admin's token still works: lifting needs no login");
    assert_eq!(app.purchase(product, &other, None, 1).await.status, StatusCode::ACCEPTED);

    let bought = app.admin_view(product).await["reserved"].as_u64();
    for (body, code) in [
        (json!({"user_id": 999_999}), StatusCode::NOT_FOUND),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"user_id": banned_id, "ip": "127.0.0.1"}), StatusCode::BAD_REQUEST),
        (json!({"ip": "300.0.0.1"}), StatusCode::BAD_REQUEST),
        (json!({"user_id": banned_id, "until": "2020-01-01T00:00:00Z"}), StatusCode::BAD_REQUEST),
        (json!({"user_id": banned_id, "reason": "a\u{7}bell"}), StatusCode::BAD_REQUEST),
    ] {
        let (status, answer) = admin_post(&app, &app.admin_token, blacklist, body.clone()).await;
        assert_eq!(status, code, "{body} → {answer}");
    }
    assert_eq!(app.admin_get(blacklist).await["entries"], json!([]), "refused entries added nothing");
    assert_eq!(app.admin_view(product).await["reserved"].as_u64(), bought, "nor sold anything");
    let customer = admin_post(&app, &other, blacklist, json!({"user_id": banned_id})).await.0;
    assert_eq!(customer, StatusCode::FORBIDDEN, "only an admin bans");
    app.stop().await;
}

//! The input rules over real HTTP, each refusal a 400 problem that changes nothing: ids only in canonical decimal,
//! product names without control characters, sales whose window has already ended, and bulk accounts whose names
//! would break the registration rule; bodies nested too deep, too large or too slow. And `HEAD` answers every `GET`
//! route as `GET` does, without the body; every answer carries the security headers, and CORS is as configured.

mod common;

use common::{spawn_app, Backend};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_input_is_a_400_that_changes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let product = app.create_product(10, 1, 1).await;
    let buyer = app.customers(1).await.remove(0).1;
    let products = || async { app.send(app.client.get(app.url("/api/v1/products"))).await.body };
    let before: Value = products().await;

    for id in ["+1", "01", "1.0", "0x1"] {
        let shown = app.send(app.client.get(app.url(&format!("/api/v1/products/{id}")))).await;
        assert_eq!((shown.status, shown.code()), (StatusCode::BAD_REQUEST, "INVALID_INPUT"), "GET {id}");
        let bought = app
            .send(
                app.client
                    .post(app.url(&format!("/api/v1/products/{id}/purchase")))
                    .bearer_auth(&buyer)
                    .json(&json!({"quantity": 1})),
            )
            .await;
        assert_eq!((bought.status, bought.code()), (StatusCode::BAD_REQUEST, "INVALID_INPUT"), "purchase {id}");
    }
    assert_eq!(app.admin_view(product).await["reserved"], 0, "no id but the canonical one bought anything");

    let create = |body: Value| {
        app.send(app.client.post(app.url("/api/v1/admin/products")).bearer_auth(&app.admin_token).json(&body))
    };
    for (body, field) in [
        (json!({"name": "Phone\u{7}", "price_cents": 1, "stock": 1}), "name"),
        (json!({"name": "Line\nbreak", "price_cents": 1, "stock": 1}), "name"),
        (
            json!({"name": "Past", "price_cents": 1, "stock": 1,
                   "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2020-01-02T00:00:00Z"}),
            "ends_at",
        ),
    ] {
        let answer = create(body.clone()).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::BAD_REQUEST, "INVALID_INPUT"), "{body}");
        assert_eq!(answer.body["field"], field, "{}", answer.body);
    }
    assert_eq!(products().await, before, "no sale was created");

    let bulk = |prefix: String, count: u32| {
        let body = json!({"prefix": prefix, "count": count});
        app.send(app.client.post(app.url("/api/v1/admin/users/bulk")).bearer_auth(&app.admin_token).json(&body))
    };
    let long = "p".repeat(60);
    let refused = bulk(long.clone(), 1_000).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "INVALID_INPUT"), "{}", refused.body);
    assert_eq!(refused.body["field"], "prefix");
    let made = bulk(long, 999).await;
    assert_eq!(made.status, StatusCode::CREATED, "none of the refused names was taken: {}", made.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_every_get_route_as_get_does_without_a_body() {
    let app = spawn_app(Backend::Sqlite).await;
    let product = app.create_product(10, 1, 1).await;
    let buyer = app.customers(1).await.remove(0).1;
    let order = app.purchase(product, &buyer, None, 1).await.body["order_id"].as_str().expect("order").to_owned();
    let public = ["/healthz", "/readyz", "/", "/admin", "/assets/app.css", "/api/v1/products"];
    let product_path = format!("/api/v1/products/{product}");
    let order_path = format!("/api/v1/orders/{order}");
    let admin_product = format!("/api/v1/admin/products/{product}");
    let admin_orders = format!("/api/v1/admin/products/{product}/orders");
    let mut routes: Vec<(&str, Option<&str>)> = public.iter().map(|path| (*path, None)).collect();
    routes.extend([
        (product_path.as_str(), None),
        ("/api/v1/orders", Some(buyer.as_str())),
        (&order_path, Some(&buyer)),
    ]);
    for path in [
        admin_product.as_str(),
        &admin_orders,
        "/api/v1/admin/projector",
        "/api/v1/admin/limits",
        "/api/v1/admin/supervision",
        "/api/v1/admin/blacklist",
        "/api/v1/admin/actors",
        "/api/v1/admin/payments",
        "/api/v1/admin/compensations",
        "/api/v1/admin/payments/simulator",
        "/api/v1/admin/dead-letters",
        "/api/v1/admin/dead-letters.csv",
        "/api/v1/admin/sale",
    ] {
        routes.push((path, Some(&app.admin_token)));
    }
    for (path, token) in routes {
        let request = |method| {
            let request = app.client.request(method, app.url(path));
            match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        };
        let got = request(reqwest::Method::GET).send().await.expect("GET");
        let headed = request(reqwest::Method::HEAD).send().await.expect("HEAD");
        assert_eq!(got.status(), StatusCode::OK, "GET {path}");
        assert_eq!(headed.status(), got.status(), "HEAD {path}");
        assert_eq!(headed.headers().get("content-type"), got.headers().get("content-type"), "HEAD {path}");
        assert!(headed.bytes().await.expect("HEAD body").is_empty(), "HEAD {path} sends no body");
    }
    app.stop().await;
}

/// A buyer whose purchase went through but whose answer was lost asks again without a key: the refusal names the
/// order they hold, and takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_past_the_limit_is_told_which_orders_use_it_up() {
    let app = spawn_app(Backend::Sqlite).await;
    let product = app.create_product(10, 1, 2).await;
    let buyer = app.customers(1).await.remove(0).1;
    let bought = app.purchase(product, &buyer, None, 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.body);
    let again = app.purchase(product, &buyer, None, 1).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "LIMIT_EXCEEDED"), "{}", again.body);
    assert_eq!(again.body["orders"], json!([bought.body["order_id"]]), "the order that uses up the limit");
    assert_eq!((again.body["limit"].as_u64(), again.body["held"].as_u64()), (Some(1), Some(1)));
    assert_eq!(app.admin_view(product).await["reserved"], 1, "one unit, the first purchase's");
    app.stop().await;
}

/// A body nested too deep, too large, or too slow is refused, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_too_deep_too_large_or_too_slow_are_refused_and_change_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let products = || async { app.send(app.client.get(app.url("/api/v1/products"))).await.body };
    let before: Value = products().await;
    let create = |body: String| {
        app.client
            .post(app.url("/api/v1/admin/products"))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body(body)
    };
    let deep = format!(r#"{{"name":"Deep","price_cents":1,"stock":1,"x":{}{}}}"#, "[".repeat(40), "]".repeat(40));
    let answer = app.send(create(deep)).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::BAD_REQUEST, "JSON_TOO_DEEP"), "{}", answer.body);
    let large = format!(r#"{{"name":"{}","price_cents":1,"stock":1}}"#, "n".repeat(20_000));
    let answer = app.send(create(large)).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"));

    let slow = slow_body(&app.base, &app.admin_token).await;
    assert!(slow.starts_with("HTTP/1.1 408"), "a body that does not arrive is timed out: {slow:.200}");
    assert!(slow.contains("BODY_TIMEOUT") && slow.contains("application/problem+json"), "{slow}");
    assert_eq!(products().await, before, "no sale was created");
    app.stop().await;
}

/// Sends the head of a product creation and a tenth of its body, then waits for the answer.
async fn slow_body(base: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.expect("connect");
    let head = format!(
        "POST /api/v1/admin/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the service answers and closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Every answer carries the headers that keep it from being framed, sniffed or leaking the page it came from, and
/// the API is closed to other sites' pages unless their origin is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_security_headers_and_cors_follows_the_configuration() {
    let shop = "https://shop.example";
    let app = common::start_with(common::Scratch::new(Backend::Sqlite), |settings| {
        settings.server.cors_origins = vec![shop.to_owned()];
    })
    .await;
    for path in ["/api/v1/products", "/", "/api/v1/products/999999", "/healthz"] {
        let answer = app.client.get(app.url(path)).send().await.expect("answers");
        let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert!(header("content-security-policy").contains("frame-ancestors 'none'"), "{path}");
    }

    let preflight = |origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/products/1/purchase"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, idempotency-key")
            .send()
    };
    let allowed = preflight(shop).await.expect("answers");
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some(shop));
    let other = preflight("https://evil.example").await.expect("answers");
    assert!(other.headers().get("access-control-allow-origin").is_none(), "an origin not listed is not allowed");
    let own = app.client.get(app.url("/api/v1/products")).header("origin", &app.base).send().await.expect("answers");
    assert_eq!(own.status(), StatusCode::OK, "the service's own pages are served whatever the list says");
    app.stop().await;

    let closed = spawn_app(Backend::Sqlite).await;
    let answer =
        closed.client.get(closed.url("/api/v1/products")).header("origin", shop).send().await.expect("answers");
    assert_eq!(answer.status(), StatusCode::OK, "same-origin use is unaffected");
    assert!(answer.headers().get("access-control-allow-origin").is_none(), "no origin allowed unless configured");
    closed.stop().await;
}

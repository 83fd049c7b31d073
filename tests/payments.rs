//! Paying for orders, over real HTTP on every backend, with the simulated provider calling back through the
//! service's own callback route: a payment that goes through; a provider that fails a few times (retried with
//! growing waits) or every time (a dead letter, replayed once it recovers); money that comes after the order
//! expired (refunded through compensation, retried and dead-lettered in turn); callbacks that are forged, stale or
//! replayed; and cancels racing payments, each order ending exactly one way.

mod common;

use std::time::Duration;

use common::{eventually, start_with, Backend, Scrape, Scratch, TestApp, WEBHOOK_SECRET};
use reqwest::StatusCode;
use seckill::domain::{Timestamp, WebhookKey};
use serde_json::{json, Value};

/// The key the provider signs its callbacks with: the secret the test's service shares with it.
fn provider_key() -> WebhookKey {
    WebhookKey::new(WEBHOOK_SECRET, Duration::from_secs(300))
}

/// The service with payment retries and compensation waits in milliseconds.
async fn start(backend: Backend) -> TestApp {
    start_alerting(backend, "").await
}

/// The same, announcing dead letters to `alert_webhook_url` (empty: to nobody).
async fn start_alerting(backend: Backend, alert_webhook_url: &str) -> TestApp {
    start_with(Scratch::new(backend), |settings| {
        settings.supervision.backoff_base_ms = 30;
        settings.supervision.backoff_jitter = 0.2;
        settings.payments.attempts = 4;
        settings.payments.callback_timeout_ms = 1_500;
        settings.payments.simulator.latency_ms = 5;
        settings.compensation.retry_waits_ms = "30,60".into();
        settings.compensation.alert_webhook_url = alert_webhook_url.to_owned();
    })
    .await
}

/// An operator's alert endpoint: every JSON body POSTed to it, in order.
async fn alert_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use warp::Filter;
    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    let route = warp::post().and(warp::body::json()).map(move |body: Value| {
        let _ = sender.send(body);
        warp::reply()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}/alerts", listener.local_addr().expect("address"));
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (url, received)
}

fn order_id(answer: &common::Answer) -> String {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.body["order_id"].as_str().expect("order id").to_owned()
}

fn steps(order: &Value) -> Vec<&str> {
    order["steps"].as_array().map_or_else(Vec::new, |steps| steps.iter().filter_map(|s| s["step"].as_str()).collect())
}

/// Waits until the buyer reads the order with `status` (and `refund`, if given).
async fn order_becomes(app: &TestApp, order: &str, token: &str, status: &str, refund: Option<&str>) -> Value {
    eventually(&format!("order {order} is {status}"), Duration::from_secs(15), || async {
        let body = app.order(order, token).await.body;
        (body["status"] == status && refund.is_none_or(|refund| body["refund"] == refund)).then_some(body)
    })
    .await
}

/// The job of `order` in an admin's listing of payment or compensation jobs.
async fn job(app: &TestApp, jobs: &str, order: &str) -> Option<Value> {
    let listing = app.admin_get(&format!("/api/v1/admin/{jobs}")).await;
    listing["jobs"].as_array()?.iter().find(|job| job["order_id"] == order).cloned()
}

/// The signed callback body of a successful charge of `order`.
fn succeeded(order: &Value) -> Value {
    json!({
        "order_id": order["order_id"], "product_id": order["product_id"], "user_id": order["user_id"],
        "amount_cents": 49_900, "result": "succeeded",
    })
}

async fn a_paid_order_stays_paid_and_only_signed_fresh_callbacks_count(backend: Backend) {
    let app = start(backend).await;
    let product = app.create_product(3, 1, 1).await;
    let users = app.customers(2).await;
    let (payer, waiter) = (&users[0].1, &users[1].1);
    let paid = order_id(&app.purchase(product, payer, None, 1).await);
    let unpaid = order_id(&app.purchase(product, waiter, None, 1).await);

    let started = app.pay(&paid, payer).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    assert_eq!(started.body["payment"]["kind"], "payment", "{}", started.body);
    assert_eq!(app.pay(&paid, waiter).await.status, StatusCode::NOT_FOUND, "only the buyer pays their order");
    let order = order_becomes(&app, &paid, payer, "paid", None).await;
    assert_eq!(steps(&order), ["paid"]);
    let again = app.pay(&paid, payer).await;
    assert_eq!(
        (again.status, again.body["order"]["status"].as_str()),
        (StatusCode::OK, Some("paid")),
        "{}",
        again.body
    );
    let refused = app.cancel(&paid, payer).await;
    assert_eq!(refused.code(), "ORDER_STATUS_CONFLICT", "a paid order cannot be cancelled");
    assert_eq!(
        (&refused.body["status"], &refused.body["order_status"]),
        (&json!(409), &json!("paid")),
        "{}",
        refused.body
    );
    let view = app.admin_view(product).await;
    assert_eq!(
        (view["paid"].as_u64(), view["reserved"].as_u64(), view["invariant_holds"].as_bool()),
        (Some(1), Some(1), Some(true))
    );

    // Callbacks nobody signed, signed with another secret, or signed long ago change nothing.
    let waiting = app.order(&unpaid, waiter).await.body;
    let body = succeeded(&waiting);
    let now = Timestamp::now().unix_secs();
    let unsigned = app.send(app.client.post(app.url("/api/v1/payments/callback")).json(&body)).await;
    assert_eq!((unsigned.status, unsigned.code()), (StatusCode::UNAUTHORIZED, "CALLBACK_UNSIGNED"));
    let forger = WebhookKey::new("a secret somebody guessed, 32 characters or more", Duration::from_secs(300));
    let forged = app.callback(&forger, now, &body).await;
    assert_eq!((forged.status, forged.code()), (StatusCode::UNAUTHORIZED, "CALLBACK_SIGNATURE_INVALID"));
    assert_eq!(forged.content_type, "application/problem+json");
    let stale = app.callback(&provider_key(), now - 600, &body).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::UNAUTHORIZED, "CALLBACK_STALE"));
    assert_eq!(app.order(&unpaid, waiter).await.body["status"], "reserved", "refused callbacks changed nothing");
    let mut stranger = body.clone();
    stranger["order_id"] = json!(uuid::Uuid::now_v7().to_string());
    assert_eq!(app.callback(&provider_key(), now, &stranger).await.status, StatusCode::NOT_FOUND);

    // A processed callback delivered again is a no-op.
    let replay = app.callback(&provider_key(), now, &succeeded(&order)).await;
    assert_eq!((replay.status, replay.body["status"].as_str()), (StatusCode::OK, Some("paid")), "{}", replay.body);
    assert_eq!(steps(&app.order(&paid, payer).await.body), ["paid"], "the replay took no step");
    assert_eq!(app.admin_view(product).await["paid"], 1);
    app.stop().await;
}

async fn a_failing_provider_is_retried_with_growing_waits_and_a_dead_letter_is_replayed(backend: Backend) {
    let (alerts, mut alerted) = alert_receiver().await;
    let app = start_alerting(backend, &alerts).await;
    let product = app.create_product(3, 1, 1).await;
    let users = app.customers(2).await;
    let (patient, unlucky) = (&users[0].1, &users[1].1);

    app.simulator(json!({"latency_ms": 5, "failure_rate": 0.0, "fail_next": 3, "silent": false})).await;
    let order = order_id(&app.purchase(product, patient, None, 1).await);
    assert_eq!(app.pay(&order, patient).await.status, StatusCode::ACCEPTED);
    order_becomes(&app, &order, patient, "paid", None).await;
    let succeeded = eventually("the job shows its attempts", Duration::from_secs(5), || async {
        job(&app, "payments", &order).await.filter(|job| job["state"] == "succeeded")
    })
    .await;
    let attempts = succeeded["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 4, "three failures, then the charge: {succeeded}");
    let waits: Vec<u64> = attempts[..3].iter().map(|a| a["retry_after_ms"].as_u64().expect("a wait")).collect();
    assert!(waits.windows(2).all(|w| w[0] < w[1]), "the waits grow: {waits:?}");
    assert!(attempts[0]["failure"].as_str().is_some_and(|f| f.contains("simulated charge failure")), "{succeeded}");

    // A provider that fails every time: the payment gives up into a dead letter; replayed once the provider is
    // back, it goes through.
    app.simulator(json!({"latency_ms": 5, "failure_rate": 1.0, "fail_next": 0, "silent": false})).await;
    let doomed = order_id(&app.purchase(product, unlucky, None, 1).await);
    assert_eq!(app.pay(&doomed, unlucky).await.status, StatusCode::ACCEPTED);
    let letter = eventually("the payment is dead-lettered", Duration::from_secs(10), || async {
        let page = app.admin_get("/api/v1/admin/dead-letters?kind=payment&status=pending").await;
        page["items"].as_array().and_then(|items| items.iter().find(|l| l["order_id"] == doomed.as_str()).cloned())
    })
    .await;
    assert_eq!(letter["attempts"].as_array().map(Vec::len), Some(4), "{letter}");
    assert!(letter["reason"].as_str().is_some_and(|r| r.contains("declined")), "{letter}");
    assert_eq!(job(&app, "payments", &doomed).await.expect("the job")["state"], "dead_lettered");
    let alert = tokio::time::timeout(Duration::from_secs(10), alerted.recv()).await.expect("an alert").expect("a body");
    assert_eq!((alert["id"].as_i64(), alert["order_id"].as_str()), (letter["id"].as_i64(), Some(doomed.as_str())));
    #[cfg(feature = "kafka")]
    if backend == Backend::Production {
        let topic = app.scratch.overrides().into_iter().find(|(key, _)| key == "journal.kafka.topic").expect("topic").1;
        let mirrored = on_dead_letter_topic(&format!("{topic}-dlq"), &doomed).await;
        assert_eq!((mirrored["id"].as_i64(), mirrored["kind"].as_str()), (letter["id"].as_i64(), Some("payment")));
    }
    assert_eq!(app.order(&doomed, unlucky).await.body["status"], "reserved");
    let csv = app.send(app.client.get(app.url("/api/v1/admin/dead-letters.csv")).bearer_auth(&app.admin_token)).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.content_type.starts_with("text/csv"));
    let bad =
        app.send(app.client.get(app.url("/api/v1/admin/dead-letters?status=lost")).bearer_auth(&app.admin_token)).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "INVALID_INPUT"));

    app.simulator(json!({"latency_ms": 5, "failure_rate": 0.0, "fail_next": 0, "silent": false})).await;
    let id = letter["id"].as_i64().expect("letter id");
    let reprocess = app.url(&format!("/api/v1/admin/dead-letters/{id}/reprocess"));
    let replayed = app.send(app.client.post(&reprocess).bearer_auth(&app.admin_token)).await;
    assert_eq!(replayed.status, StatusCode::ACCEPTED, "{}", replayed.body);
    order_becomes(&app, &doomed, unlucky, "paid", None).await;
    let twice = app.send(app.client.post(&reprocess).bearer_auth(&app.admin_token)).await;
    assert_eq!((twice.status, twice.code()), (StatusCode::CONFLICT, "DEAD_LETTER_REPROCESSED"));
    let done = app.admin_get("/api/v1/admin/dead-letters?status=reprocessed").await;
    assert!(done["items"].as_array().is_some_and(|items| items.iter().any(|l| l["id"] == id)), "{done}");
    assert_eq!(app.send(app.client.post(&reprocess).bearer_auth(patient)).await.code(), "FORBIDDEN");
    let view = app.admin_view(product).await;
    assert_eq!((view["paid"].as_u64(), view["invariant_holds"].as_bool()), (Some(2), Some(true)), "{view}");
    app.stop().await;
}

async fn money_after_expiry_is_refunded_and_the_unit_is_sold_once(backend: Backend) {
    let app = start(backend).await;
    let product = app.create_product_with(1, 1, 1, json!({"payment_window_secs": 1})).await;
    let users = app.customers(3).await;
    let (late, next, last) = (&users[0].1, &users[1].1, &users[2].1);
    let expired = order_id(&app.purchase(product, late, None, 1).await);
    let first = order_becomes(&app, &expired, late, "released", None).await;
    assert_eq!(app.pay(&expired, late).await.code(), "ORDER_STATUS_CONFLICT", "an expired order is not charged");
    let resold = order_id(&app.purchase(product, next, None, 1).await);

    // The provider reports money for the expired order: it is refunded, and the unit stays sold to the next buyer.
    let now = Timestamp::now().unix_secs();
    let money = app.callback(&provider_key(), now, &succeeded(&first)).await;
    assert_eq!(money.status, StatusCode::OK, "{}", money.body);
    let refunded = order_becomes(&app, &expired, late, "released", Some("refunded")).await;
    assert_eq!(steps(&refunded), ["expired", "released", "refund_requested", "refunded"], "{refunded}");
    assert_eq!(app.callback(&provider_key(), now, &succeeded(&first)).await.status, StatusCode::OK, "a replay");
    assert_eq!(steps(&app.order(&expired, late).await.body).len(), 4, "the replay took no step");
    assert_eq!(app.order(&resold, next).await.body["status"], "reserved");
    assert_eq!(app.purchase(product, last, None, 1).await.code(), "SOLD_OUT", "the unit was not sold twice");

    // A refund the provider keeps failing is dead-lettered after its tiers, and replayed once the provider is back.
    app.simulator(json!({"latency_ms": 5, "failure_rate": 1.0, "fail_next": 0, "silent": false})).await;
    let next_order = order_becomes(&app, &resold, next, "released", None).await;
    app.callback(&provider_key(), Timestamp::now().unix_secs(), &succeeded(&next_order)).await;
    let letter = eventually("the refund is dead-lettered", Duration::from_secs(10), || async {
        let page = app.admin_get("/api/v1/admin/dead-letters?kind=refund").await;
        page["items"].as_array().and_then(|items| items.iter().find(|l| l["order_id"] == resold.as_str()).cloned())
    })
    .await;
    assert_eq!(letter["attempts"].as_array().map(Vec::len), Some(3), "one try and two tiers: {letter}");
    assert_eq!(app.order(&resold, next).await.body["refund"], "requested");
    let pending = [("job", "refund")];
    eventually("the dead letter shows as pending", Duration::from_secs(5), || async {
        (Scrape::of(&app).await.value("seckill_dead_letters_pending", &pending) == 1.0).then_some(())
    })
    .await;
    let scrape = Scrape::of(&app).await;
    assert_eq!(scrape.value("failed_order_archived_total", &[]), 1.0);
    assert_eq!(scrape.value("compensation_attempt_total", &[]), 4.0, "the first refund's one, and three tries");
    assert_eq!(scrape.value("compensation_success_total", &[]), 1.0);
    app.simulator(json!({"latency_ms": 5, "failure_rate": 0.0, "fail_next": 0, "silent": false})).await;
    let reprocess = app.url(&format!("/api/v1/admin/dead-letters/{}/reprocess", letter["id"]));
    assert_eq!(app.send(app.client.post(&reprocess).bearer_auth(&app.admin_token)).await.status, StatusCode::ACCEPTED);
    order_becomes(&app, &resold, next, "released", Some("refunded")).await;
    eventually("the replayed letter is no longer pending", Duration::from_secs(5), || async {
        (Scrape::of(&app).await.value("seckill_dead_letters_pending", &pending) == 0.0).then_some(())
    })
    .await;
    let scrape = Scrape::of(&app).await;
    assert_eq!(scrape.value("compensation_attempt_total", &[]), 5.0, "and the replay's");
    assert_eq!(scrape.value("compensation_success_total", &[]), 2.0);
    let refunds = [("job", "refund"), ("state", "succeeded")];
    assert_eq!(scrape.value("seckill_jobs_finished_total", &refunds), 2.0);
    let compensations = app.admin_get("/api/v1/admin/compensations").await;
    assert!(
        compensations["jobs"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().any(|j| j["order_id"] == expired.as_str() && j["state"] == "succeeded")),
        "{compensations}"
    );
    let view = app.admin_view(product).await;
    assert_eq!(
        (view["paid"].as_u64(), view["released"].as_u64(), view["invariant_holds"].as_bool()),
        (Some(0), Some(2), Some(true)),
        "{view}"
    );
    app.stop().await;
}

async fn cancels_racing_payments_end_each_order_exactly_one_way(backend: Backend) {
    let app = start(backend).await;
    let product = app.create_product(50, 1, 2).await;
    let users = app.customers(50).await;
    let mut orders = Vec::new();
    for (_, token) in &users {
        orders.push((order_id(&app.purchase(product, token, None, 1).await), token.clone()));
    }
    let races = orders.iter().map(|(order, token)| {
        let app = &app;
        async move {
            let (cancel, pay) = tokio::join!(app.cancel(order, token), app.pay(order, token));
            (cancel.status, pay.status)
        }
    });
    let answers = futures::future::join_all(races).await;
    for (cancel, pay) in &answers {
        assert!(cancel.is_success() || *cancel == StatusCode::CONFLICT, "cancel answered {cancel}");
        assert!(pay.is_success() || *pay == StatusCode::CONFLICT, "pay answered {pay}");
    }

    // Settled: every order paid, or released (and refunded if its charge went through after the cancel).
    let settled = eventually("every order has settled", Duration::from_secs(20), || async {
        let mut ended = Vec::new();
        for (order, token) in &orders {
            let body = app.order(order, token).await.body;
            let done = body["status"] == "paid" || (body["status"] == "released" && body["refund"] != "requested");
            if !done {
                return None;
            }
            ended.push(body);
        }
        Some(ended)
    })
    .await;
    let paid = settled.iter().filter(|order| order["status"] == "paid").count();
    for (order, (cancel, _)) in settled.iter().zip(&answers) {
        let taken = steps(order);
        if order["status"] == "paid" {
            assert_eq!(taken, ["paid"], "{order}");
            assert_eq!(*cancel, StatusCode::CONFLICT, "the cancel lost: {order}");
        } else {
            // Money that came after the cancel may be requested back before or after the release.
            let count = |step: &str| taken.iter().filter(|taken| **taken == step).count();
            assert_eq!((taken[0], count("released"), count("paid")), ("cancelled", 1, 0), "{order}");
            assert_eq!(count("refund_requested"), count("refunded"), "{order}");
        }
    }
    let view = app.admin_view(product).await;
    assert_eq!(view["paid"].as_u64(), Some(paid as u64), "{view}");
    assert_eq!(view["released"].as_u64(), Some(50 - paid as u64), "{view}");
    assert_eq!((view["available"].as_u64(), view["invariant_holds"].as_bool()), (Some(50 - paid as u64), Some(true)));
    app.stop().await;
}

/// The dead letter of `order` as published on `topic` (the journal's `-dlq` topic).
#[cfg(feature = "kafka")]
async fn on_dead_letter_topic(topic: &str, order: &str) -> Value {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", common::kafka_brokers())
        .set("group.id", format!("dlq-reader-{}", uuid::Uuid::now_v7().simple()))
        .create()
        .expect("a consumer");
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition_offset(topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&partitions).expect("assigned");
    let (topic, order) = (topic.to_owned(), order.to_owned());
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else { continue };
            let letter: Value = serde_json::from_slice(message.payload().unwrap_or_default()).expect("json");
            if letter["order_id"] == order.as_str() {
                return letter;
            }
        }
        panic!("no dead letter of {order} on {topic}");
    })
    .await
    .expect("reader")
}

async fn a_provider_that_accepts_and_stays_silent_is_asked_again(backend: Backend) {
    let app = start(backend).await;
    let product = app.create_product(1, 1, 1).await;
    let (_, buyer) = &app.customers(1).await[0];
    app.simulator(json!({"latency_ms": 5, "failure_rate": 0.0, "fail_next": 0, "silent": true})).await;
    let order = order_id(&app.purchase(product, buyer, None, 1).await);
    assert_eq!(app.pay(&order, buyer).await.status, StatusCode::ACCEPTED);
    let silent = |job: &Value| job["attempts"][0]["failure"].as_str().is_some_and(|f| f.contains("did not call back"));
    eventually("the silent attempt times out", Duration::from_secs(10), || async {
        job(&app, "payments", &order).await.filter(silent)
    })
    .await;
    app.simulator(json!({"latency_ms": 5, "failure_rate": 0.0, "fail_next": 0, "silent": false})).await;
    order_becomes(&app, &order, buyer, "paid", None).await;
    let paid = eventually("the job succeeds", Duration::from_secs(10), || async {
        job(&app, "payments", &order).await.filter(|job| job["state"] == "succeeded")
    })
    .await;
    assert!(paid["attempts"].as_array().is_some_and(|attempts| attempts.len() >= 2), "{paid}");
    app.stop().await;
}

on_every_backend!(a_provider_that_accepts_and_stays_silent_is_asked_again);
on_every_backend!(a_paid_order_stays_paid_and_only_signed_fresh_callbacks_count);
on_every_backend!(a_failing_provider_is_retried_with_growing_waits_and_a_dead_letter_is_replayed);
on_every_backend!(money_after_expiry_is_refunded_and_the_unit_is_sold_once);
on_every_backend!(cancels_racing_payments_end_each_order_exactly_one_way);

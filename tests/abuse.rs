//! Abuse next to a crowd that buys normally, over real HTTP: one buyer sending ten times their rate limit, and one
//! client flooding the login with wrong passwords. Each scenario runs the same crowd twice on the same service —
//! once alone and once beside the abuse — and checks that the abuse is refused (429s; 401s and 503 LOGIN_BUSY)
//! while every buyer of the crowd still gets their unit. The crowd's latency percentiles of both runs are printed
//! (run with `--nocapture`); timing is reported, never asserted, as everywhere in this suite.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_with, Backend, Scratch, TestApp, ADMIN_PASSWORD};
use futures::future::join_all;
use reqwest::StatusCode;
use seckill::http::Limit;
use serde_json::json;

const CROWD: usize = 1_000;
/// The crowd arrives evenly over this long.
const ARRIVAL: Duration = Duration::from_secs(2);

/// What a crowd was told, and how long each answer took.
struct Crowd {
    answers: Vec<(StatusCode, Duration)>,
}

impl Crowd {
    fn accepted(&self) -> usize {
        self.answers.iter().filter(|(status, _)| *status == StatusCode::ACCEPTED).count()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut latencies: Vec<Duration> = self.answers.iter().map(|(_, latency)| *latency).collect();
        latencies.sort();
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    }
}

/// `buyers` each buy one unit of `product`, arriving evenly over `ARRIVAL`, each on a task of its own; then waits
/// until their orders are projected, so that the next run does not meet this one's projection.
async fn crowd_buys(app: &TestApp, product: i64, buyers: &[(i64, String)]) -> Crowd {
    let start = tokio::time::Instant::now();
    let spacing = ARRIVAL / buyers.len() as u32;
    let url = app.url(&format!("/api/v1/products/{product}/purchase"));
    let tasks = buyers.iter().enumerate().map(|(n, (_, token))| {
        let (client, url, token) = (app.client.clone(), url.clone(), token.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(start + spacing * n as u32).await;
            let sent = Instant::now();
            let response = client.post(url).bearer_auth(token).json(&json!({"quantity": 1})).send().await;
            let status = response.expect("the service answers").status();
            (status, sent.elapsed())
        })
    });
    let answers = join_all(tasks).await.into_iter().map(|task| task.expect("buyer task")).collect();
    app.settled_orders(product).await;
    Crowd { answers }
}

fn report(scenario: &str, run: &str, crowd: &Crowd) {
    eprintln!(
        "{scenario}: {run}: {}/{} accepted, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        crowd.accepted(),
        crowd.answers.len(),
        crowd.percentile(0.50).as_secs_f64() * 1e3,
        crowd.percentile(0.95).as_secs_f64() * 1e3,
        crowd.percentile(0.99).as_secs_f64() * 1e3,
    );
}

/// A product each of `CROWD` buyers can buy one unit of, and a warm-up crowd run on another, so both measured runs
/// meet a warm service.
async fn warm(app: &TestApp, buyers: &[(i64, String)]) {
    let warm_up = app.create_product(CROWD as u32, 1, 2).await;
    assert_eq!(crowd_buys(app, warm_up, buyers).await.accepted(), CROWD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_at_ten_times_their_limit_is_refused_and_the_crowd_buys_as_before() {
    let limit = Limit { per_second: 20, burst: 20 };
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| settings.limits.user = limit).await;
    let buyers = app.customers(CROWD + 1).await;
    let (abuser, crowd) = buyers.split_last().expect("buyers");
    warm(&app, crowd).await;

    let alone = crowd_buys(&app, app.create_product(CROWD as u32, 1, 2).await, crowd).await;
    report("abuse", "crowd alone", &alone);

    let product = app.create_product(CROWD as u32 + 100, 1, 2).await;
    let done = Arc::new(AtomicBool::new(false));
    let abuse = {
        let (client, url, token) =
            (app.client.clone(), app.url(&format!("/api/v1/products/{product}/purchase")), abuser.1.clone());
        let done = Arc::clone(&done);
        let gap = Duration::from_secs(1) / (limit.per_second * 10);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(gap);
            let mut sent = Vec::new();
            while !done.load(Ordering::Relaxed) {
                ticks.tick().await;
                let request = client.post(&url).bearer_auth(&token).json(&json!({"quantity": 1}));
                sent.push(tokio::spawn(request.send()));
            }
            let mut statuses = Vec::with_capacity(sent.len());
            for answer in sent {
                statuses.push(answer.await.expect("abuser task").expect("the service answers").status());
            }
            statuses
        })
    };
    let beside = crowd_buys(&app, product, crowd).await;
    done.store(true, Ordering::Relaxed);
    let abuser_told = abuse.await.expect("abuser");
    report("abuse", "crowd beside the abuser", &beside);

    let limited = abuser_told.iter().filter(|status| **status == StatusCode::TOO_MANY_REQUESTS).count();
    eprintln!("abuse: the abuser sent {}, {limited} refused 429", abuser_told.len());
    assert!(abuser_told.len() >= 300, "the abuser kept up ten times the limit: {}", abuser_told.len());
    // Of ~400 tries in 2 s, the bucket passes its burst of 20 and 20 a second: everything else is a 429.
    let passed = abuser_told.len() - limited;
    assert!(passed <= 20 + 20 * 4, "{passed} of the abuser's tries passed the limiter");
    assert!(abuser_told.iter().all(|status| [
        StatusCode::ACCEPTED,
        StatusCode::CONFLICT,
        StatusCode::TOO_MANY_REQUESTS
    ]
    .contains(status)));
    assert_eq!((alone.accepted(), beside.accepted()), (CROWD, CROWD), "every buyer of the crowd got their unit");
    let view = app.admin_view(product).await;
    assert_eq!(view["reserved"].as_u64(), Some(CROWD as u64 + 1), "the crowd's units and the abuser's one: {view}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_leaves_the_crowd_buying_as_before() {
    // The login limits are off, so the flood reaches the password hashing: this is the hashing pool's test.
    let off = Limit { per_second: 0, burst: 0 };
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| {
        settings.limits.login_ip = off;
        settings.limits.login_user = off;
    })
    .await;
    let crowd = app.customers(CROWD).await;
    warm(&app, &crowd).await;

    let alone = crowd_buys(&app, app.create_product(CROWD as u32, 1, 2).await, &crowd).await;
    report("login flood", "crowd alone", &alone);

    let product = app.create_product(CROWD as u32, 1, 2).await;
    let done = Arc::new(AtomicBool::new(false));
    // The flood's client runs on a thread of its own, as another machine's would, not on the runtime serving.
    let flood = {
        let (url, done) = (app.url("/api/v1/auth/login"), Arc::clone(&done));
        std::thread::spawn(move || flood_logins(&url, &done))
    };
    let beside = crowd_buys(&app, product, &crowd).await;
    done.store(true, Ordering::Relaxed);
    let flood_told = flood.join().expect("flood thread");
    report("login flood", "crowd beside the flood", &beside);

    let busy = flood_told.iter().filter(|status| **status == StatusCode::SERVICE_UNAVAILABLE).count();
    let wrong = flood_told.iter().filter(|status| **status == StatusCode::UNAUTHORIZED).count();
    eprintln!(
        "login flood: {} logins sent, {wrong} checked and refused 401, {busy} refused 503 at once",
        flood_told.len()
    );
    assert_eq!(busy + wrong, flood_told.len(), "nothing but 401 and 503 LOGIN_BUSY");
    assert!(wrong > 0, "some wrong passwords were checked");
    assert_eq!((alone.accepted(), beside.accepted()), (CROWD, CROWD), "every buyer of the crowd got their unit");
    let admin = app.login("admin", ADMIN_PASSWORD).await;
    assert!(!admin.is_empty(), "the right password still logs in once the flood stops");
    app.stop().await;
}

/// Wrong-password logins for the admin on 8 connections at once (more than the hashing threads take, so the pool is
/// always full), each sending its next as soon as it is answered, until `done`; what each was told.
fn flood_logins(url: &str, done: &AtomicBool) -> Vec<StatusCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("flood runtime");
    let client = reqwest::Client::new();
    let body = json!({"username": "admin", "password": "not-the-password"});
    let senders = (0..8).map(|_| async {
        let mut statuses = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let answer = client.post(url).json(&body).send().await.expect("the service answers");
            statuses.push(answer.status());
        }
        statuses
    });
    runtime.block_on(join_all(senders)).into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_past_the_hashing_queue_are_refused_at_once() {
    let off = Limit { per_second: 0, burst: 0 };
    let app = start_with(Scratch::new(Backend::Sqlite), |settings| {
        settings.limits.login_ip = off;
        settings.limits.login_user = off;
        settings.auth.hash_threads = 1;
        settings.auth.hash_queue = 1;
    })
    .await;
    let body = json!({"username": "admin", "password": "not-the-password"});
    let logins = (0..12).map(|_| app.send(app.client.post(app.url("/api/v1/auth/login")).json(&body)));
    let answers = join_all(logins).await;
    let busy: Vec<_> = answers.iter().filter(|answer| answer.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    let checked = answers.iter().filter(|answer| answer.status == StatusCode::UNAUTHORIZED).count();
    assert_eq!(busy.len() + checked, answers.len());
    assert!(checked >= 2, "the thread's and the queue's checks ran: {checked}");
    assert!(!busy.is_empty(), "twelve at once do not fit one thread and a queue of one");
    for answer in busy {
        assert_eq!((answer.code(), answer.content_type.as_str()), ("LOGIN_BUSY", "application/problem+json"));
        assert!(answer.retry_after_secs() >= Duration::from_secs(1));
    }
    assert!(!app.login("admin", ADMIN_PASSWORD).await.is_empty(), "a login once the rush is over works");
    app.stop().await;
}

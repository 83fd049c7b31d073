//! `spawn_app()` for integration tests: the real service, in-process, on a random port. Every scenario runs on
//! each backend (see `on_every_backend!`): the embedded default (a fresh SQLite file), PostgreSQL alone (a fresh
//! database holding the journal too), and the production backends (a fresh PostgreSQL database, a Kafka topic and
//! consumer group of its own, and a Redis key prefix of its own). The servers are reached at
//! `SECKILL_TEST_POSTGRES_URL`, `SECKILL_TEST_KAFKA_BROKERS` and `SECKILL_TEST_REDIS_URL` (defaults: the local
//! ones); a server that is not there fails the test, it is never skipped.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::StatusCode;
use seckill::app::App;
use seckill::config::Settings;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// PostgreSQL, the Kafka journal and Redis snapshots: `config/production.toml`'s backends.
    Production,
}

/// Declares one `#[tokio::test]` per backend for an `async fn scenario(Backend)`.
#[macro_export]
macro_rules! on_every_backend {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::common::Backend::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn production() {
                super::$scenario($crate::common::Backend::Production).await;
            }
        }
    };
}

pub fn postgres_admin_url() -> String {
    std::env::var("SECKILL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A server process of a test's own (a broker, a Redis), which the test kills and starts again at will; it is
/// killed when dropped.
#[derive(Default)]
pub struct Server {
    child: Option<std::process::Child>,
}

impl Server {
    /// Spawns `command`, then waits until `ready` says it answers.
    pub async fn start(&mut self, command: &mut std::process::Command, what: &str, ready: impl Fn() -> bool) {
        let child = command.spawn().unwrap_or_else(|err| panic!("{what} does not start ({err})"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            assert!(Instant::now() < deadline, "{what} did not start answering");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills it the hard way, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn kafka_brokers() -> String {
    std::env::var("SECKILL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn redis_url() -> String {
    std::env::var("SECKILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Backends nobody else uses (a database, and for production a topic, a group and a key prefix), the settings
/// that point at them, and how to get rid of the database.
pub struct Scratch {
    pub url: String,
    overrides: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

impl Scratch {
    pub fn new(backend: Backend) -> Self {
        let mut scratch = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("seckill.db").display());
                Self { url, overrides: Vec::new(), dir: Some(dir), postgres_name: None }
            }
            Backend::Postgres | Backend::Production => {
                let admin_url = postgres_admin_url();
                let name = format!("seckill_test_{}", uuid::Uuid::now_v7().simple());
                let mut conn = PgConnection::establish(&admin_url)
                    .unwrap_or_else(|err| panic!("PostgreSQL is required at {admin_url} (start it first): {err}"));
                diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).expect("create database");
                let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
                Self { url: format!("{base}/{name}"), overrides: Vec::new(), dir: None, postgres_name: Some(name) }
            }
        };
        if backend == Backend::Production {
            scratch = scratch.with_production_backends();
        }
        scratch
    }

    /// The Kafka journal (a topic and group of its own) and Redis snapshots (a key prefix of its own).
    pub fn with_production_backends(mut self) -> Self {
        let own = format!("seckill-test-{}", uuid::Uuid::now_v7().simple());
        self.set("journal.backend", "kafka");
        self.set("journal.kafka.brokers", &kafka_brokers());
        self.set("journal.kafka.topic", &own);
        self.set("journal.kafka.group", &own);
        self.set("snapshots.store", "redis");
        self.set("snapshots.redis_url", &redis_url());
        self.set("snapshots.redis_prefix", &own);
        self
    }

    /// A database someone else created and will clean up.
    pub fn existing(url: String) -> Self {
        Self { url, overrides: Vec::new(), dir: None, postgres_name: None }
    }

    /// Sets dotted `key` for every service started on this scratch.
    pub fn set(&mut self, key: &str, value: &str) {
        self.overrides.push((key.to_owned(), value.to_owned()));
    }

    /// Everything that differs from `config/default.toml`, as dotted keys and values.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut all = vec![("database.url".to_owned(), self.url.clone())];
        all.extend(self.overrides.iter().cloned());
        all
    }

    /// The same, as the environment of a `seckill` process.
    pub fn env(&self) -> Vec<(String, String)> {
        self.overrides().into_iter().map(|(key, value)| (Settings::env_var(&key), value)).collect()
    }

    pub fn settings(&self) -> Settings {
        let mut overrides = self.overrides();
        overrides.extend(
            [
                ("server.listen", "127.0.0.1:0"),
                ("snapshots.every_units", "50"),
                ("snapshots.busy_max_units", "200"),
                ("projector.poll_ms", "50"),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
        );
        Settings::load_with(None, &overrides).expect("test settings")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(name) = &self.postgres_name {
            if let Ok(mut conn) = PgConnection::establish(&postgres_admin_url()) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn);
            }
        }
        let _ = self.dir.take();
    }
}

/// A running in-process service, its database, and a client for it.
pub struct TestApp {
    pub app: App,
    pub api: Api,
    pub scratch: Scratch,
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A client of a running service, logged in as the admin.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub admin_token: String,
}

/// Asks `probe` every 100 ms until it answers `Some`, and returns that; fails the test after `timeout`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(answer) = probe().await {
            return answer;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let scratch = Scratch::new(backend);
    start_on(scratch).await
}

/// Starts the service on an existing scratch database (for restart tests).
pub async fn start_on(scratch: Scratch) -> TestApp {
    start_with(scratch, |_| {}).await
}

/// Starts the service on `scratch` with settings adjusted by `adjust`.
pub async fn start_with(scratch: Scratch, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = scratch.settings();
    adjust(&mut settings);
    let app = App::start(&settings).await.expect("service starts");
    let api = Api::connect(format!("http://{}", app.addr())).await;
    TestApp { app, api, scratch }
}

/// What came back: status, `Content-Type`, and the body as JSON (`Null` when it was not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Api {
    pub async fn connect(base: String) -> Self {
        let client = reqwest::Client::builder().pool_max_idle_per_host(4096).build().expect("client");
        let mut api = Api { base, client, admin_token: String::new() };
        api.admin_token = api.login("admin", "admin-dev-password").await;
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request reaches the service");
        let status = response.status();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (content_type, retry_after) = (header("content-type").unwrap_or_default(), header("retry-after"));
        let bytes = response.bytes().await.expect("body");
        Answer { status, content_type, retry_after, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let answer = self
            .send(
                self.client
                    .post(self.url("/api/v1/auth/login"))
                    .json(&json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "login failed: {}", answer.body);
        answer.body["access_token"].as_str().expect("token").to_owned()
    }

    /// Creates an open sale and returns its id.
    pub async fn create_product(&self, stock: u32, per_user_limit: u32, shards: u32) -> i64 {
        let body = json!({
            "name": "Flash phone", "price_cents": 49_900, "stock": stock,
            "per_user_limit": per_user_limit, "shards": shards,
        });
        let answer = self
            .send(self.client.post(self.url("/api/v1/admin/products")).bearer_auth(&self.admin_token).json(&body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "create product: {}", answer.body);
        answer.body["id"].as_i64().expect("product id")
    }

    /// `count` customers, each as (user id, token).
    pub async fn customers(&self, count: usize) -> Vec<(i64, String)> {
        let mut users = Vec::with_capacity(count);
        let mut chunk = 0;
        while users.len() < count {
            let want = (count - users.len()).min(10_000);
            let prefix = format!("t{}-{chunk}", uuid::Uuid::now_v7().simple());
            let answer = self
                .send(
                    self.client
                        .post(self.url("/api/v1/admin/users/bulk"))
                        .bearer_auth(&self.admin_token)
                        .json(&json!({"prefix": prefix, "count": want})),
                )
                .await;
            assert_eq!(answer.status, StatusCode::CREATED, "bulk users: {}", answer.body);
            for user in answer.body["users"].as_array().expect("users") {
                users.push((
                    user["user_id"].as_i64().expect("id"),
                    user["access_token"].as_str().expect("token").to_owned(),
                ));
            }
            chunk += 1;
        }
        users
    }

    pub async fn purchase(&self, product: i64, token: &str, key: Option<&str>, quantity: u32) -> Answer {
        let mut request = self
            .client
            .post(self.url(&format!("/api/v1/products/{product}/purchase")))
            .bearer_auth(token)
            .json(&json!({"quantity": quantity}));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    /// A buyer who honours `Retry-After` through an outage: buys until the answer is not a 503 (for up to 30 s).
    pub async fn purchase_retrying(&self, product: i64, token: &str) -> Answer {
        for _ in 0..150 {
            let answer = self.purchase(product, token, None, 1).await;
            if answer.status != StatusCode::SERVICE_UNAVAILABLE {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("purchases did not resume after the outage");
    }

    pub async fn admin_view(&self, product: i64) -> Value {
        let answer = self
            .send(
                self.client.get(self.url(&format!("/api/v1/admin/products/{product}"))).bearer_auth(&self.admin_token),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "admin view: {}", answer.body);
        answer.body
    }

    /// Waits until every committed reservation is in the orders table, then returns the product's orders.
    pub async fn settled_orders(&self, product: i64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status =
                self.send(self.client.get(self.url("/api/v1/admin/projector")).bearer_auth(&self.admin_token)).await;
            if status.body["caught_up"] == json!(true) {
                break;
            }
            assert!(Instant::now() < deadline, "projector did not catch up: {}", status.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let answer = self
            .send(
                self.client
                    .get(self.url(&format!("/api/v1/admin/products/{product}/orders")))
                    .bearer_auth(&self.admin_token),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "orders: {}", answer.body);
        answer.body.as_array().expect("orders").clone()
    }
}

impl TestApp {
    /// Stops the service gracefully and hands back its database.
    pub async fn stop(self) -> Scratch {
        self.app.stop().await;
        self.scratch
    }
}

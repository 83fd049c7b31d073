//! `spawn_app()` for integration tests: the real service, in-process, on a random port. Every scenario runs on
//! each backend (see `on_every_backend!`): the embedded default (a fresh SQLite file), PostgreSQL alone (a fresh
//! database holding the journal too), and the production backends (a fresh PostgreSQL database, a Kafka topic and
//! consumer group of its own, and a Redis key prefix of its own). The servers are reached at
//! `SECKILL_TEST_POSTGRES_URL`, `SECKILL_TEST_KAFKA_BROKERS` and `SECKILL_TEST_REDIS_URL` (defaults: the local
//! ones); a server that is not there fails the test, it is never skipped.
//!
//! By job: `scratch` makes the backends a test owns, `servers` runs server processes a test owns, `api` talks to
//! the service, `scrape` reads its metrics, and `wait` is how every test waits for something to become true.

#![allow(dead_code, unused_imports)]

mod api;
mod scrape;
mod scratch;
mod servers;
mod wait;

pub use api::{Answer, Api};
pub use scrape::Scrape;
pub use scratch::{kafka_brokers, postgres_admin_url, redis_url, Backend, Scratch};
pub use servers::{free_port, Server};
pub use wait::{eventually, eventually_every, poll, Probe};

use seckill::app::App;
use seckill::config::Settings;

/// The admin's password in every test's service (set in its settings: the configuration files carry none).
pub const ADMIN_PASSWORD: &str = "admin-test-password";
/// The secret every test's service shares with the payment provider, so a test can sign the provider's callbacks.
pub const WEBHOOK_SECRET: &str = "test-only-webhook-secret-of-thirty-two-characters";

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

impl TestApp {
    /// Stops the service gracefully and hands back its database.
    pub async fn stop(self) -> Scratch {
        self.app.stop().await;
        self.scratch
    }
}

//! Snapshots in Redis, against real Redis servers: the store round-trips; a Redis that is down never stops a sale,
//! shows in `/readyz`, and snapshots resume when it is back; a restart while Redis is down or empty recovers from
//! the journal alone.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, free_port, Backend, Scratch, Server};
use futures::future::join_all;
use reqwest::StatusCode;
use seckill::config::SnapshotBackend;
use seckill::domain::{
    OrderId, OrderSteps, Position, ProductId, Quantity, Reservation, RestockUnits, Step, StepAt, StockAdded,
    StockSnapshot, Timestamp, UserId,
};
use seckill::persistence::{RedisSnapshots, SnapshotStore};

/// A Redis server of this test's own, so stopping it disturbs nobody else.
struct PrivateRedis {
    port: u16,
    server: Server,
}

impl PrivateRedis {
    async fn start() -> Self {
        let mut redis = Self { port: free_port(), server: Server::default() };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null());
        let url = self.url();
        let answers = || redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).is_ok();
        self.server.start(&mut command, "redis-server (scripts/test.sh installs it)", answers).await;
    }

    fn stop(&mut self) {
        self.server.kill();
    }

    fn snapshot_exists(&self, prefix: &str, product: i64) -> bool {
        let key = format!("{prefix}:snapshot:{product}");
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| redis::cmd("EXISTS").arg(key).query::<bool>(&mut conn))
            .unwrap_or(false)
    }
}

/// One reservation, cancelled and released, and one restock.
fn snapshot() -> StockSnapshot {
    let now = Timestamp::now();
    let order_id = OrderId::generate();
    StockSnapshot {
        position: Position::new(42),
        steps: vec![OrderSteps {
            order_id,
            steps: vec![StepAt { step: Step::Cancelled, at: now }, StepAt { step: Step::Released, at: now }],
        }],
        reservations: vec![Arc::new(Reservation {
            order_id,
            product_id: ProductId::try_from(1).unwrap(),
            user_id: UserId::try_from(5).unwrap(),
            quantity: Quantity::try_from(2).unwrap(),
            idempotency_key: None,
            reserved_at: now,
            pay_before: now,
        })],
        restocks: vec![StockAdded {
            restock_id: OrderId::generate(),
            product_id: ProductId::try_from(1).unwrap(),
            units: RestockUnits::try_from(3).unwrap(),
            at: now,
        }],
    }
}

#[tokio::test]
async fn redis_store_round_trips_and_fails_fast_when_down() {
    let prefix = format!("seckill-test-{}", uuid::Uuid::now_v7().simple());
    let store = RedisSnapshots::new(&common::redis_url(), &prefix, Duration::from_secs(1)).expect("store");
    let product = ProductId::try_from(7).unwrap();
    assert_eq!(store.load(product).await.expect("load from an empty redis"), None);
    let saved = snapshot();
    store.save(product, saved.clone()).await.expect("save");
    assert_eq!(store.load(product).await.expect("load"), Some(saved));
    store.ping().await.expect("ping");

    let nowhere =
        RedisSnapshots::new(&format!("redis://127.0.0.1:{}", free_port()), &prefix, Duration::from_millis(300))
            .expect("a store for a server that is not there");
    let bounded = Duration::from_secs(10);
    let save = tokio::time::timeout(bounded, nowhere.save(product, snapshot())).await.expect("save gives up");
    assert!(save.is_err());
    let load = tokio::time::timeout(bounded, nowhere.load(product)).await.expect("load gives up");
    assert!(load.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_go_on_while_redis_is_down_and_recovery_needs_no_redis() {
    let mut redis = PrivateRedis::start().await;
    let prefix = format!("seckill-test-{}", uuid::Uuid::now_v7().simple());
    let (redis_url, redis_prefix) = (redis.url(), prefix.clone());
    let use_redis = move |settings: &mut seckill::config::Settings| {
        settings.snapshots.store = SnapshotBackend::Redis;
        settings.snapshots.redis_url = redis_url.clone().into();
        settings.snapshots.redis_prefix = redis_prefix.clone();
        settings.snapshots.redis_timeout_ms = 300;
        settings.snapshots.every_units = 10;
    };
    let app = common::start_with(Scratch::new(Backend::Sqlite), use_redis.clone()).await;
    let product = app.create_product(200, 1, 2).await;
    let users = app.customers(150).await;
    assert_eq!(buy_with(&app, product, &users[0..30]).await, 30);
    eventually("a snapshot reaches redis", Duration::from_secs(20), || {
        std::future::ready(redis.snapshot_exists(&prefix, product).then_some(()))
    })
    .await;

    redis.stop();
    assert_eq!(buy_with(&app, product, &users[30..80]).await, 50, "every purchase succeeds while redis is down");
    eventually("readyz reports the failing snapshots", Duration::from_secs(20), || async {
        let ready = app.send(app.client.get(app.url("/readyz"))).await;
        assert_eq!(ready.status, StatusCode::OK, "redis being down does not make the service unready");
        let snapshots = &ready.body["snapshots"];
        if snapshots["reachable"] == false && snapshots["failed_saves"].as_u64().unwrap_or(0) > 0 {
            Ok(())
        } else {
            Err(ready.body)
        }
    })
    .await;

    // A restart while redis is down recovers from the journal alone.
    let scratch = app.stop().await;
    let app = common::start_with(scratch, use_redis.clone()).await;
    assert_eq!(app.admin_view(product).await["reserved"], 80);
    assert_eq!(buy_with(&app, product, &users[80..100]).await, 20);

    // Redis comes back empty: snapshots resume, and a restart on it recovers the same state.
    redis.restart().await;
    assert_eq!(buy_with(&app, product, &users[100..150]).await, 50);
    eventually("snapshots resume once redis is back", Duration::from_secs(20), || {
        std::future::ready(redis.snapshot_exists(&prefix, product).then_some(()))
    })
    .await;
    let scratch = app.stop().await;
    let app = common::start_with(scratch, use_redis).await;
    let view = app.admin_view(product).await;
    assert_eq!((view["reserved"].as_u64(), view["invariant_holds"].as_bool()), (Some(150), Some(true)), "{view}");
    assert_eq!(app.settled_orders(product).await.len(), 150);
    app.stop().await;
}

async fn buy_with(app: &common::TestApp, product: i64, users: &[(i64, String)]) -> usize {
    let answers = join_all(users.iter().map(|(_, token)| app.purchase(product, token, None, 1))).await;
    answers.iter().filter(|answer| answer.status == StatusCode::ACCEPTED).count()
}

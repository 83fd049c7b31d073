//! The Kafka journal's broker goes away mid-sale — a tansu broker of this test's own, killed the hard way, so that
//! appends in flight lose their answers. Buyers must get a clean `503` with `Retry-After` and the stock taken by the
//! failed appends must be back; when the broker returns (same storage), sales must resume by themselves, and in the
//! end every acknowledged order is there exactly once, nothing else is, and no unit is sold twice — including after
//! a restart that recovers every product from the journal.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{free_port, Answer, Scratch, Server};
use futures::future::join_all;
use reqwest::StatusCode;

/// A tansu broker with SQLite storage in a temp dir of its own.
struct PrivateBroker {
    dir: tempfile::TempDir,
    port: u16,
    server: Server,
}

impl PrivateBroker {
    async fn start() -> Self {
        let mut broker = Self::unstarted();
        broker.resume().await;
        broker
    }

    /// A broker with its port and storage chosen, not running yet.
    fn unstarted() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir"), port: free_port(), server: Server::default() }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn resume(&mut self) {
        let tansu = std::env::var_os("SECKILL_TEST_TANSU").map_or_else(|| PathBuf::from("tansu"), PathBuf::from);
        let listener = format!("tcp://{}", self.address());
        let mut command = Command::new(&tansu);
        command
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://broker.db"])
            .env_remove("STORAGE_ENGINE")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let what = format!("tansu at {} (scripts/test.sh installs it)", tansu.display());
        let address = self.address();
        self.server.start(&mut command, &what, || std::net::TcpStream::connect(&address).is_ok()).await;
    }

    fn kill(&mut self) {
        self.server.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_refuses_cleanly_and_sales_resume_by_themselves() {
    let mut broker = PrivateBroker::start().await;
    let mut scratch = Scratch::new(common::Backend::Production);
    scratch.set("journal.kafka.brokers", &broker.address());
    scratch.set("journal.kafka.delivery_timeout_ms", "1500");
    scratch.set("sale.purchase_timeout_ms", "4000");
    let app = common::start_on(scratch).await;
    let product = app.create_product(100, 1, 2).await;
    let users = app.customers(150).await;
    let first = join_all(users[..30].iter().map(|(_, token)| app.purchase(product, token, None, 1))).await;
    assert!(first.iter().all(|answer| answer.status == StatusCode::ACCEPTED));

    // Purchases race the kill, so some appends are in flight when the broker dies.
    let racing = join_all(users[30..50].iter().map(|(_, token)| app.purchase(product, token, None, 1)));
    let (racing, ()) = tokio::join!(racing, async { broker.kill() });
    let mut refused = 0;
    for answer in &racing {
        match answer.status {
            StatusCode::ACCEPTED => {}
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("a purchase racing the outage got {other}: {}", answer.body),
        }
    }
    for (_, token) in &users[50..55] {
        let answer = app.purchase(product, token, None, 1).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"), "{}", answer.body);
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "a 503 says when to retry");
    }
    let accepted_before = 30 + racing.iter().filter(|a| a.status == StatusCode::ACCEPTED).count() as u64;
    let view = app.admin_view(product).await;
    assert_eq!((view["reserved"].as_u64(), view["in_flight"].as_u64()), (Some(accepted_before), Some(0)), "{view}");
    assert_eq!(
        (view["available"].as_u64(), view["invariant_holds"].as_bool()),
        (Some(100 - accepted_before), Some(true)),
        "the stock of the {} refused purchases is back",
        refused + 5
    );

    broker.resume().await;
    let refused_racers = users[30..50].iter().zip(&racing).filter(|(_, answer)| answer.status != StatusCode::ACCEPTED);
    let again: Vec<&String> =
        refused_racers.map(|((_, token), _)| token).chain(users[50..].iter().map(|(_, token)| token)).collect();
    let rest = join_all(again.into_iter().map(|token| app.purchase_retrying(product, token))).await;
    let accepted: Vec<&Answer> =
        first.iter().chain(&racing).chain(&rest).filter(|a| a.status == StatusCode::ACCEPTED).collect();
    assert_eq!(accepted.len(), 100, "the whole stock sells once the broker is back");
    assert!(rest.iter().filter(|a| a.status != StatusCode::ACCEPTED).all(|a| a.code() == "SOLD_OUT"));

    let orders = app.settled_orders(product).await;
    let acknowledged: HashSet<&str> = accepted.iter().filter_map(|a| a.body["order_id"].as_str()).collect();
    let projected: HashSet<&str> = orders.iter().filter_map(|order| order["order_id"].as_str()).collect();
    assert_eq!(orders.len(), 100, "one row per acknowledged order and nothing else");
    assert_eq!(projected, acknowledged, "exactly the acknowledged orders");
    let buyers: HashSet<i64> = orders.iter().filter_map(|order| order["user_id"].as_i64()).collect();
    assert_eq!(buyers.len(), 100, "no buyer holds two units");

    // Recovery from the journal alone (the restarted service looks for snapshots under a new prefix), refused
    // appends and their voids included: the same 100 reservations come back.
    let fresh_prefix = format!("seckill-test-{}", uuid::Uuid::now_v7().simple());
    let app = common::start_with(app.stop().await, |settings| settings.snapshots.redis_prefix = fresh_prefix).await;
    let view = app.admin_view(product).await;
    assert_eq!((view["reserved"].as_u64(), view["available"].as_u64()), (Some(100), Some(0)), "{view}");
    assert_eq!(view["invariant_holds"].as_bool(), Some(true));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_before_its_broker_waits_for_it() {
    let mut broker = PrivateBroker::unstarted();
    let mut scratch = Scratch::new(common::Backend::Production);
    scratch.set("journal.kafka.brokers", &broker.address());
    scratch.set("journal.kafka.request_timeout_ms", "1000");
    let (app, ()) = tokio::join!(common::start_on(scratch), async {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        broker.resume().await;
    });
    let product = app.create_product(5, 1, 1).await;
    let (_, token) = &app.customers(1).await[0];
    assert_eq!(app.purchase(product, token, None, 1).await.status, StatusCode::ACCEPTED);
    app.stop().await;
}

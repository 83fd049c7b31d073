//! The journal's database goes away mid-sale — a PostgreSQL server of this test's own, stopped the hard way. Buyers
//! must get a clean `503` with `Retry-After` and nothing taken; the service must say it is not ready; and when the
//! database is back, sales must resume by themselves, the projector must catch up (it retried with backoff), every
//! acknowledged order must be there exactly once, and the stock must sell out exactly. With the production
//! backends the journal is Kafka, so the same outage stops only the order projection: sales go on, the projector
//! retries with backoff, and it catches up once the database is back.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Answer, Scratch};
use futures::future::join_all;
use reqwest::StatusCode;

/// A PostgreSQL cluster in a temp dir, run as the `postgres` user.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn postgres_tool(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries (scripts/test.sh relies on the machine's PostgreSQL)")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version").join("bin").join(name)
}

fn as_postgres(tool: &str, args: &[&str]) {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(postgres_tool(tool))
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("runuser");
    assert!(status.success(), "{tool} {args:?} failed");
}

impl PrivatePostgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().expect("chown");
        assert!(status.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let cluster = Self { dir, port };
        as_postgres("initdb", &["-D", &cluster.data(), "-A", "trust", "-U", "postgres"]);
        cluster.resume();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn resume(&self) {
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", self.port, self.dir.path().display());
        let log = self.dir.path().join("server.log").display().to_string();
        as_postgres("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"]);
    }

    /// Stops the server without a checkpoint, as a crash would.
    fn crash(&self) {
        as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(postgres_tool("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_outage_refuses_cleanly_and_sales_resume_by_themselves() {
    let postgres = PrivatePostgres::start();
    let app = common::start_with(Scratch::existing(postgres.url()), |settings| {
        settings.database.connect_timeout_ms = 500;
        settings.sale.purchase_timeout_ms = 3_000;
        settings.supervision.backoff_cap_ms = 500;
    })
    .await;
    let product = app.create_product(100, 1, 2).await;
    let users = app.customers(150).await;
    let first = join_all(users[..30].iter().map(|(_, token)| app.purchase(product, token, None, 1))).await;
    assert!(first.iter().all(|answer| answer.status == StatusCode::ACCEPTED));

    postgres.crash();
    for (_, token) in &users[30..40] {
        let refused = app.purchase(product, token, None, 1).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            "{}",
            refused.body
        );
        assert_eq!(refused.retry_after.as_deref(), Some("1"), "a 503 says when to retry");
    }
    let view = app.admin_view(product).await;
    assert_eq!((view["reserved"].as_u64(), view["in_flight"].as_u64()), (Some(30), Some(0)), "{view}");
    assert_eq!(
        (view["available"].as_u64(), view["invariant_holds"].as_bool()),
        (Some(70), Some(true)),
        "stock is back"
    );
    let ready = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "not ready without its database");

    postgres.resume();
    common::eventually("the service is ready again", Duration::from_secs(30), || async {
        (app.send(app.client.get(app.url("/readyz"))).await.status == StatusCode::OK).then_some(())
    })
    .await;
    let rest = join_all(users[30..].iter().map(|(_, token)| app.purchase_retrying(product, token))).await;
    let accepted: Vec<&Answer> = first.iter().chain(&rest).filter(|a| a.status == StatusCode::ACCEPTED).collect();
    assert_eq!(accepted.len(), 100, "the whole stock sells once the database is back");
    assert!(rest.iter().filter(|a| a.status != StatusCode::ACCEPTED).all(|a| a.code() == "SOLD_OUT"));

    let orders = app.settled_orders(product).await;
    assert_eq!(orders.len(), 100, "every acknowledged order, once");
    for answer in &accepted {
        assert!(orders.iter().any(|order| order["order_id"] == answer.body["order_id"]), "{} is missing", answer.body);
    }
    let projector = app.send(app.client.get(app.url("/api/v1/admin/projector")).bearer_auth(&app.admin_token)).await;
    assert!(projector.body["projector"]["failures"].as_u64() > Some(0), "the projector retried: {}", projector.body);
    let view = app.admin_view(product).await;
    assert_eq!((view["reserved"].as_u64(), view["available"].as_u64()), (Some(100), Some(0)), "{view}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_database_outage_under_the_kafka_journal_stops_only_the_projection() {
    let postgres = PrivatePostgres::start();
    let scratch = Scratch::existing(postgres.url()).with_production_backends();
    let app = common::start_with(scratch, |settings| {
        settings.database.connect_timeout_ms = 500;
        settings.supervision.backoff_cap_ms = 500;
    })
    .await;
    let product = app.create_product(100, 1, 2).await;
    let users = app.customers(100).await;
    let buy = |range: std::ops::Range<usize>| {
        join_all(users[range].iter().map(|(_, token)| app.purchase(product, token, None, 1)))
    };
    let mut answers = buy(0..30).await;

    postgres.crash();
    answers.extend(buy(30..70).await);
    common::eventually("the projector notices the outage", Duration::from_secs(30), || async {
        let projector =
            app.send(app.client.get(app.url("/api/v1/admin/projector")).bearer_auth(&app.admin_token)).await;
        if projector.body["projector"]["failures"].as_u64() > Some(0) {
            Ok(())
        } else {
            Err(projector.body)
        }
    })
    .await;

    postgres.resume();
    answers.extend(buy(70..100).await);
    assert!(answers.iter().all(|a| a.status == StatusCode::ACCEPTED), "sales never stopped");
    let orders = app.settled_orders(product).await;
    assert_eq!(orders.len(), 100, "every acknowledged order, once");
    for answer in &answers {
        assert!(orders.iter().any(|order| order["order_id"] == answer.body["order_id"]), "{} is missing", answer.body);
    }
    app.stop().await;
}

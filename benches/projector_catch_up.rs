//! How fast the OrderProjector catches up with a backlog: the journal is filled with reservations first, then the
//! real engine starts and its projector drains the backlog into `orders` while nothing else runs. The live figure
//! that `seckill bench` reports mixes in the small batches made while the projector merely keeps pace with a load;
//! this is its capacity.
//!
//! `cargo bench --bench projector_catch_up` (SQLite in a temp dir, SQL journal), with
//! `SECKILL_BENCH_DATABASE_URL=postgres://…/db` for PostgreSQL, and with `SECKILL_BENCH_CONFIG=config/production.toml`
//! for the journal that file configures (Kafka: a topic of its own per run). `SECKILL_BENCH_EVENTS` sets the backlog
//! (100000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use seckill::actors::Engine;
use seckill::app::open_journal;
use seckill::config::{JournalBackend, Settings};
use seckill::domain::{
    IdempotencyKey, JournalEvent, OrderId, ProductId, Quantity, Reservation, Timestamp, UserId, WebhookKey,
};
use seckill::gateway::SimulatedGateway;
use seckill::persistence::{Database, SqlSnapshots};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::var("SECKILL_BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let url = std::env::var("SECKILL_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("catch-up.db").display()));
    let config = std::env::var_os("SECKILL_BENCH_CONFIG").map(std::path::PathBuf::from);
    // The secrets of a folder of the run's own: the bench serves nobody, and production draws none of its own.
    let secrets = [
        ("secrets.dir".to_owned(), dir.path().join("secrets").display().to_string()),
        ("secrets.generate".to_owned(), "true".to_owned()),
    ];
    let mut settings = Settings::load_with(config.as_deref(), &secrets)?;
    settings.journal.kafka.topic = format!("{}-catch-up-{}", settings.journal.kafka.topic, uuid::Uuid::now_v7());
    let db = Database::connect(&url, settings.database.pool_size, Duration::from_secs(5))?;
    db.migrate()?;

    let journal = open_journal(&settings, &db).await?;
    let product = ProductId::try_from(1)?;
    for chunk in (1..=events).collect::<Vec<_>>().chunks(settings.journal.max_batch) {
        let batch = chunk.iter().map(|&user| reservation(product, user)).collect::<anyhow::Result<Vec<_>>>()?;
        let append = Arc::clone(&journal.append);
        tokio::task::spawn_blocking(move || append.append(&batch)).await??;
    }

    let started = Instant::now();
    let key = WebhookKey::new(settings.payments.webhook_secret.expose(), Duration::from_secs(300));
    let gateway = Arc::new(SimulatedGateway::silent(Arc::new(key)));
    let metrics = seckill::metrics::Metrics::new()?;
    let snapshots = Arc::new(SqlSnapshots::new(db.clone()));
    let engine = Engine::start(db, journal, snapshots, gateway, settings.engine(), &metrics).await?;
    loop {
        let status = engine.projector_status().await?;
        if status.projected >= events as u64 {
            let took = started.elapsed().as_secs_f64();
            let journal = match settings.journal.backend {
                JournalBackend::Sql => "sql",
                JournalBackend::Kafka => "kafka",
            };
            let backend = format!("{journal} journal into {}", url.split(':').next().unwrap_or("?"));
            println!(
                "projector catch-up ({backend}): {} orders in {took:.2} s = {:.0} orders/s \
                 (projector's own busy-time rate {:.0} orders/s)",
                status.projected,
                status.projected as f64 / took,
                status.orders_per_second
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.shutdown().await;
    Ok(())
}

fn reservation(product: ProductId, user: usize) -> anyhow::Result<JournalEvent> {
    let now = Timestamp::now();
    Ok(JournalEvent::Reserved(Reservation {
        order_id: OrderId::generate(),
        product_id: product,
        user_id: UserId::try_from(i64::try_from(user)?)?,
        quantity: Quantity::try_from(1)?,
        idempotency_key: Some(IdempotencyKey::try_from(format!("key-{user}"))?),
        reserved_at: now,
        pay_before: now.plus(Duration::from_secs(900)),
    }))
}

//! What 100,000 payment deadlines falling in the same second do to purchases of another sale. Product A is recovered
//! with 100,000 reservations that all expire at one instant; meanwhile buyers of product B purchase without pause,
//! through the same journal writer and on the same cores. Reported: B's purchase latency and rate before, during
//! and after the storm, and how long A took to expire and release every unit (each expiry and each release is a
//! journaled step).
//!
//! `cargo bench --bench expiry_storm` (SQLite in a temp dir, SQL journal); `SECKILL_BENCH_EVENTS` sets A's
//! deadlines (100000), `SECKILL_BENCH_BUYERS` B's concurrent buyers (64); `SECKILL_BENCH_TIMELINE=1` adds B's
//! purchases and slowest purchase per quarter second.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seckill::actors::Engine;
use seckill::app::open_journal;
use seckill::config::Settings;
use seckill::domain::{
    JournalEvent, OrderId, PassRefusal, PaymentWindow, PerUserLimit, ProductDraft, ProductId, Quantity, Reservation,
    SaleWindow, ShardCount, StockLevel, Timestamp, UserId, WebhookKey,
};
use seckill::gateway::SimulatedGateway;
use seckill::persistence::{Database, SqlSnapshots};

/// The deadlines fall this long after the journal starts filling (filling and recovering take a few seconds).
const DUE_AFTER: Duration = Duration::from_secs(20);
/// How long B's buyers go on after the deadlines.
const WATCH_AFTER: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let deadlines: u32 = std::env::var("SECKILL_BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let buyers: usize = std::env::var("SECKILL_BENCH_BUYERS").ok().and_then(|n| n.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("storm.db").display());
    let secrets = [("secrets.dir".to_owned(), dir.path().join("secrets").display().to_string())];
    let settings = Settings::load_with(None, &secrets)?;
    let db = Database::connect(&url, settings.database.pool_size, Duration::from_secs(5))?;
    db.migrate()?;

    // Product A, its whole stock reserved, every reservation due at the same instant.
    let product_a = db.create_product(draft(deadlines)?).await?.id;
    let journal = open_journal(&settings, &db).await?;
    let due = Timestamp::now().plus(DUE_AFTER);
    let users: Vec<i64> = (1..=i64::from(deadlines)).collect();
    for chunk in users.chunks(settings.journal.max_batch) {
        let batch = chunk.iter().map(|&user| reservation(product_a, user, due)).collect::<anyhow::Result<Vec<_>>>()?;
        let append = Arc::clone(&journal.append);
        tokio::task::spawn_blocking(move || append.append(&batch)).await??;
    }
    // Nobody pays here: the provider is never called.
    let key = WebhookKey::new(settings.payments.webhook_secret.expose(), Duration::from_secs(300));
    let gateway = Arc::new(SimulatedGateway::silent(Arc::new(key)));
    let snapshots = Arc::new(SqlSnapshots::new(db.clone()));
    let metrics = seckill::metrics::Metrics::new()?;
    let engine = Arc::new(Engine::start(db, journal, snapshots, gateway, settings.engine(), &metrics).await?);
    let product_b = engine.create_product(draft(10_000_000)?).await?.id;
    let until_due = u64::try_from(due.millis() - Timestamp::now().millis())
        .map_err(|_| anyhow::anyhow!("filling the journal and recovering took longer than {DUE_AFTER:?}"))?;
    let due_at = Instant::now() + Duration::from_millis(until_due);

    // B's buyers, each purchase timed against the instant the deadlines fall.
    let samples = Arc::new(Mutex::new(Vec::<(f64, f64)>::with_capacity(1_000_000)));
    let stop = Arc::new(AtomicBool::new(false));
    let next_user = Arc::new(AtomicI64::new(1));
    let mut tasks = Vec::new();
    for _ in 0..buyers {
        let (engine, samples, stop, next_user) =
            (Arc::clone(&engine), Arc::clone(&samples), Arc::clone(&stop), Arc::clone(&next_user));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let user = UserId::try_from(next_user.fetch_add(1, Ordering::Relaxed)).expect("user id");
                let started = Instant::now();
                let one = Quantity::try_from(1).expect("1");
                let bought = engine.purchase(product_b, user, one, None, || Err(PassRefusal::Missing)).await;
                let at = started.saturating_duration_since(due_at).as_secs_f64()
                    - due_at.saturating_duration_since(started).as_secs_f64();
                mine.push((at, if bought.is_ok() { started.elapsed().as_secs_f64() * 1e3 } else { f64::NAN }));
            }
            samples.lock().expect("samples").extend(mine);
        }));
    }

    // The storm: until every unit of A is expired and released.
    tokio::time::sleep_until((due_at).into()).await;
    let storm_ended = loop {
        let view = engine.inspect(product_a).await?;
        if view.released == u64::from(deadlines) {
            break due_at.elapsed().as_secs_f64();
        }
        anyhow::ensure!(due_at.elapsed() < WATCH_AFTER, "A released only {} units", view.released);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep_until((due_at + WATCH_AFTER).into()).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let samples = std::mem::take(&mut *samples.lock().expect("samples"));
    anyhow::ensure!(samples.iter().all(|(_, ms)| !ms.is_nan()), "a purchase of B was refused");

    println!(
        "{deadlines} deadlines due at once: every unit expired and released {storm_ended:.2} s after the deadline"
    );
    println!("purchases of another product by {buyers} buyers (in-process, SQLite journal):");
    let windows =
        [("before (last 3 s)", -3.0, 0.0), ("during the storm", 0.0, storm_ended), ("after", storm_ended, 8.0)];
    for (name, from, to) in windows {
        let mut latencies: Vec<f64> =
            samples.iter().filter(|(at, _)| (from..to).contains(at)).map(|(_, ms)| *ms).collect();
        latencies.sort_by(f64::total_cmp);
        let pick = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(f64::NAN);
        println!(
            "  {name:<18} {:>8.0} purchases/s   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>7.2} ms",
            latencies.len() as f64 / (to - from),
            pick(0.5),
            pick(0.99),
            pick(1.0)
        );
    }
    if std::env::var_os("SECKILL_BENCH_TIMELINE").is_some() {
        for bucket in -4..32 {
            let (from, to) = (f64::from(bucket) * 0.25, f64::from(bucket + 1) * 0.25);
            let mut in_bucket: Vec<f64> =
                samples.iter().filter(|(at, _)| (from..to).contains(at)).map(|(_, ms)| *ms).collect();
            in_bucket.sort_by(f64::total_cmp);
            println!(
                "  {from:>5.2} s  {:>6} purchases  max {:>7.1} ms",
                in_bucket.len(),
                in_bucket.last().copied().unwrap_or(0.0)
            );
        }
    }
    engine.shutdown().await;
    Ok(())
}

fn draft(stock: u32) -> anyhow::Result<ProductDraft> {
    let now = Timestamp::now();
    Ok(ProductDraft {
        name: "storm".into(),
        price_cents: 100,
        stock: StockLevel::try_from(i64::from(stock))?,
        per_user_limit: PerUserLimit::try_from(1)?,
        shards: ShardCount::per_core(),
        window: SaleWindow::new(now, now.plus(Duration::from_secs(3600)))?,
        payment_window: PaymentWindow::try_from(900)?,
        requires_token: false,
    })
}

fn reservation(product: ProductId, user: i64, due: Timestamp) -> anyhow::Result<JournalEvent> {
    let now = Timestamp::now();
    Ok(JournalEvent::Reserved(Reservation {
        order_id: OrderId::generate(),
        product_id: product,
        user_id: UserId::try_from(user)?,
        quantity: Quantity::try_from(1)?,
        idempotency_key: None,
        reserved_at: now,
        pay_before: due,
    }))
}

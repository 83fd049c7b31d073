//! `seckill bench`: a flash crowd driven against a running service over HTTP, reported as throughput, latency
//! percentiles and correctness counts, over the whole run and interval by interval (`--report` draws them on one
//! HTML page).
//!
//! The bench is shaped by what it must not distort:
//!
//! - Buyers are minted before the clock starts (`/admin/users/bulk`, which skips argon2), so the measured phase is
//!   nothing but purchases: each buyer sends exactly one, `--concurrency` workers pull buyers from a shared counter,
//!   and each worker keeps its own latency histogram and timeline (`timeline`), merged once the phase is over.
//! - The client must not eat the server's CPU: on a shared machine a heavy client lowers the service's throughput
//!   and lengthens every latency it reports. Each worker sends on a keep-alive connection it owns and drives itself,
//!   opened before the clock starts (`connection`).
//! - Correctness is read back from the server, not inferred from responses: after the load the bench waits for the
//!   order projector to catch up with the journal, then compares the product's order rows with every order the
//!   service acknowledged. Oversold, unsold, lost or duplicated units fail the run.
//! - The `--baseline` is measured in the same run, against the same server, with the same client and concurrency
//!   for as long as the purchase phase took, so "purchases per second" can be read as a fraction of what the HTTP
//!   stack alone delivers on this machine. It runs after the sale (its length is known only then) and after the
//!   sale's aftermath, the projection and the product's snapshot, so that neither takes CPU from it.

mod api;
mod audit;
mod connection;
mod html;
mod lifecycle;
mod load;
mod report;
mod subscribers;
mod timeline;
mod workload;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;

use api::{Api, Buyer, NewProduct, ProductView, MAX_BULK_BUYERS};
use audit::{Accepted, Correctness, Expectation};
use connection::Endpoint;
use load::{PhaseStats, Until};
use report::{Baseline, Report, Settlement};
use subscribers::Subscribers;
use workload::{Healthz, Purchase, QUANTITY};

/// How many bulk-account requests run at once while buyers are prepared.
const PREPARE_PARALLELISM: usize = 4;
/// How long any single request may take, in the measured phases and out of them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the projector is asked whether it has caught up.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// The shortest healthz baseline, however quick the purchase phase was.
const MIN_BASELINE: Duration = Duration::from_secs(1);
/// Longest the baseline waits, from the end of the load, for the server's pending snapshot of the sale.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);
/// What each unit costs; irrelevant to the bench, required by the service.
const PRICE_CENTS: i64 = 100;

/// Options of `seckill bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Base URL of the running service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin account that creates the sale and the buyers.
    #[arg(long, default_value = "admin")]
    admin_user: String,
    /// Password of the admin account (default: the one the service drew into its data folder, read from
    /// `--admin-password-file`).
    #[arg(long, env = "SECKILL_BENCH_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Where the service on the embedded default keeps the admin's password it drew at its first start.
    #[arg(long, default_value = "data/secrets/admin-password")]
    admin_password_file: std::path::PathBuf,
    /// Units on sale.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    stock: u64,
    /// Buyers in the crowd; each sends exactly one purchase.
    #[arg(long, default_value_t = 100_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    users: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    concurrency: usize,
    /// Units one buyer may hold.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    per_user_limit: u32,
    /// Stock shards of the product (the service's default if not given).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    shards: Option<u32>,
    /// Also measure GET /healthz for as long as the purchase phase took, and report the ratio.
    #[arg(long)]
    baseline: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page (charts over time, outcomes, correctness) to this file.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// A note on what the run measured (backends, commit, machine), carried in the JSON and at the top of the page.
    #[arg(long)]
    label: Option<String>,
    /// How long to wait, after the load, for the order projector to catch up.
    #[arg(long, default_value_t = 120)]
    settle_timeout_secs: u64,
    /// After the load, buyers pay this fraction of their orders and let the rest expire; fresh buyers then buy and
    /// pay for the units that came back. The run checks that every unit ended paid, once.
    #[arg(long, value_name = "FRACTION", value_parser = fraction)]
    pay: Option<f64>,
    /// The sale's payment window with `--pay`: long enough for the crowd's purchases, short enough to wait for.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pay_window_secs: u64,
    /// Clients watching the sale on /ws/stock through the purchase phase (connected before it starts); the report
    /// says whether they saw the stock only fall and how soon after the last purchase they saw its final value.
    #[arg(long, default_value_t = 0)]
    stock_subscribers: usize,
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a fraction from 0 to 1")),
    }
}

/// Runs the bench; fails (after printing the report) if the projector never caught up or a unit went astray.
pub async fn run(args: BenchArgs) -> Result<()> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let password = match &args.admin_password {
        Some(password) => password.clone(),
        None => std::fs::read_to_string(&args.admin_password_file)
            .with_context(|| format!("reading the admin's password from {}", args.admin_password_file.display()))?
            .trim_end()
            .to_owned(),
    };
    let api = Api::login(http_client()?, &args.url, &args.admin_user, &password).await?;
    let product = api.create_product(&new_product(&args)).await?;
    let shards = api.product(product).await?.shard_count;
    let buyers = prepare_buyers(&api, args.users).await?;
    let tokens: HashMap<i64, String> = match args.pay {
        Some(_) => buyers.iter().map(|buyer| (buyer.user_id, buyer.access_token.clone())).collect(),
        None => HashMap::new(),
    };

    let purchase =
        Purchase::new(Endpoint::new(&api.endpoint(&format!("/api/v1/products/{product}/purchase"))?)?, buyers)?;
    let until = purchase.until();
    let subscribers = match args.stock_subscribers {
        0 => None,
        count => Some(Subscribers::connect(&args.url, product, count).await?),
    };
    let purchases = load::drive(purchase, args.concurrency, until, "purchasing").await?;
    let load_ended = Instant::now();
    let stock_feed = match subscribers {
        Some(subscribers) => Some(subscribers.finish(api.product(product).await?.available, load_ended).await?),
        None => None,
    };
    let settlement = settle(&api, load_ended, Duration::from_secs(args.settle_timeout_secs)).await?;
    let correctness =
        if settlement.caught_up { Some(verify(&api, product, &args, &purchases.accepted).await?) } else { None };
    let lifecycle = match (args.pay, &correctness) {
        (Some(fraction), Some(_)) => {
            let window = Duration::from_secs(args.pay_window_secs);
            Some(lifecycle::run(&api, product, args.stock, &purchases.accepted, &tokens, fraction, window).await?)
        }
        _ => None,
    };
    let baseline = if args.baseline {
        let snapshot_pending = await_snapshot(&api, product, load_ended).await?;
        Some(measure_baseline(&api, args.concurrency, &purchases.stats, snapshot_pending).await?)
    } else {
        None
    };

    let report = Report {
        started_at,
        bench_version: env!("CARGO_PKG_VERSION"),
        label: args.label.clone(),
        url: args.url.clone(),
        product_id: product,
        users: args.users,
        stock: args.stock,
        concurrency: args.concurrency,
        per_user_limit: args.per_user_limit,
        shards,
        purchase: purchases.stats,
        projector: settlement,
        correctness,
        lifecycle,
        stock_feed,
        baseline,
    };
    report::emit(&report, args.json.as_deref(), args.report.as_deref())?;
    report.verdict()
}

/// The client of the unmeasured calls (admin API, read-back); the measured phases use `connection`.
fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

fn new_product(args: &BenchArgs) -> NewProduct {
    NewProduct {
        name: format!("bench {}", random_tag()),
        price_cents: PRICE_CENTS,
        stock: args.stock,
        per_user_limit: args.per_user_limit,
        shards: args.shards,
        payment_window_secs: args.pay.map(|_| args.pay_window_secs),
    }
}

/// Eight random lowercase letters and digits, so that names from different runs do not collide.
fn random_tag() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(8)
        .map(|byte| char::from(byte).to_ascii_lowercase())
        .collect()
}

/// Mints `count` buyers with tokens, in bulk requests of at most `MAX_BULK_BUYERS`, each under its own prefix.
async fn prepare_buyers(api: &Api, count: usize) -> Result<Vec<Buyer>> {
    let run = random_tag();
    let progress = progress_bar(Some(count), "preparing buyers")?;
    let batches: Vec<Vec<Buyer>> = futures::stream::iter(chunk_sizes(count, MAX_BULK_BUYERS).enumerate())
        .map(|(index, size)| {
            let prefix = format!("bench-{run}-{index}");
            let progress = &progress;
            async move {
                let buyers = api.create_buyers(&prefix, size).await?;
                progress.inc(buyers.len() as u64);
                Ok::<_, anyhow::Error>(buyers)
            }
        })
        .buffered(PREPARE_PARALLELISM)
        .try_collect()
        .await?;
    progress.finish_and_clear();
    Ok(batches.into_iter().flatten().collect())
}

/// Sizes of the batches that make up `total`, none larger than `max`.
fn chunk_sizes(total: usize, max: usize) -> impl Iterator<Item = usize> {
    (0..total).step_by(max).map(move |start| max.min(total - start))
}

/// A bar over `len` steps, or a counting spinner when the length is unknown; hidden when stderr is no terminal.
fn progress_bar(len: Option<usize>, message: &'static str) -> Result<ProgressBar> {
    let (bar, template) = match len {
        Some(len) => (ProgressBar::new(len as u64), "{msg:18} [{bar:40}] {pos}/{len} {per_sec} eta {eta}"),
        None => (ProgressBar::no_length(), "{spinner} {msg:18} {pos} requests {per_sec}"),
    };
    let style = ProgressStyle::with_template(template).context("progress bar template")?.progress_chars("=> ");
    let bar = bar.with_style(style).with_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    Ok(bar)
}

/// Waits until the projector has written every journaled order, or until `timeout` after the load ended.
async fn settle(api: &Api, load_ended: Instant, timeout: Duration) -> Result<Settlement> {
    let (status, waited) = poll(load_ended, timeout, || api.projector(), |status| status.caught_up).await?;
    Ok(Settlement {
        caught_up: status.caught_up,
        catch_up_secs: waited.as_secs_f64(),
        orders_per_second: status.projector.orders_per_second,
    })
}

/// Asks `probe` every `SETTLE_POLL` until its answer is `done`, or until `timeout` has passed since `since`; returns
/// the last answer and how long after `since` it came.
async fn poll<T, Fut>(
    since: Instant,
    timeout: Duration,
    probe: impl Fn() -> Fut,
    done: impl Fn(&T) -> bool,
) -> Result<(T, Duration)>
where
    Fut: Future<Output = Result<T>>,
{
    loop {
        let answer = probe().await?;
        let waited = since.elapsed();
        if done(&answer) || waited >= timeout {
            return Ok((answer, waited));
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Reads the product's orders and stock view back and checks them against what the purchase phase was told.
async fn verify(api: &Api, product: i64, args: &BenchArgs, accepted: &[Accepted]) -> Result<Correctness> {
    let (rows, view) = tokio::try_join!(api.orders(product), api.product(product))?;
    // The service's own total, so that a restock during the run (by an admin, beside the bench) is counted.
    let expectation = Expectation {
        stock: view.stock_total,
        buyers: args.users as u64,
        units_per_buyer: QUANTITY.min(u64::from(args.per_user_limit)),
    };
    Ok(audit::audit(&expectation, accepted, &rows, view.invariant_holds))
}

/// Waits until no snapshot of the product is pending — a sale of `snapshots.every_units` or more is snapshotted at
/// the first pause in its sales, a smaller one only by time — so that the baseline does not share the machine with
/// the sale's aftermath. Gives up `SNAPSHOT_WAIT` after the load ended; says whether one is still pending.
async fn await_snapshot(api: &Api, product: i64, load_ended: Instant) -> Result<bool> {
    let settled = |view: &ProductView| !view.snapshot_pending;
    let (view, _) = poll(load_ended, SNAPSHOT_WAIT, || api.product(product), settled).await?;
    Ok(view.snapshot_pending)
}

/// Drives GET /healthz with the purchase phase's concurrency for as long as that phase took (at least a second).
async fn measure_baseline(
    api: &Api,
    concurrency: usize,
    purchases: &PhaseStats,
    snapshot_pending: bool,
) -> Result<Baseline> {
    let healthz = Healthz::new(Endpoint::new(&api.endpoint("/healthz")?)?);
    let duration = purchases.duration.max(MIN_BASELINE);
    let phase = load::drive(healthz, concurrency, Until::Elapsed(duration), "healthz baseline").await?;
    Ok(Baseline::compare(purchases, phase.stats, snapshot_pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_total_without_exceeding_the_maximum() {
        assert_eq!(chunk_sizes(25_000, 10_000).collect::<Vec<_>>(), vec![10_000, 10_000, 5_000]);
        assert_eq!(chunk_sizes(10_000, 10_000).collect::<Vec<_>>(), vec![10_000]);
        assert_eq!(chunk_sizes(1, 10_000).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn tags_are_usable_in_usernames() {
        let tag = random_tag();
        assert_eq!(tag.len(), 8);
        assert!(tag.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }
}

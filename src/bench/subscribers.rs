//! `--stock-subscribers N`: N clients watch the sale on `/ws/stock` while the crowd buys, as a storefront's visitors
//! would. They are connected (each with its first value) before the clock starts, so the purchase phase measures
//! purchases with the feed under load, not the handshakes. Afterwards the report says what they saw: whether the
//! stock only ever fell (a rise needs a release, which a plain bench has none of), whether every subscriber reached
//! the final stock, and how long after the last purchase's answer it did.
//!
//! They run on a runtime of their own, on one thread: a thousand subscribers woken at once by an update must not
//! queue ahead of the crowd's workers on the bench's runtime, which would slow the crowd and be blamed on the
//! server. What the server spends on them is what the bench measures. They read each message only for its stock,
//! into a small read buffer: tungstenite's default (128 KiB) is zeroed before every read, which made these clients
//! cost more than the server's side of the feed (perf: `memset` 43% of the subscribers' thread).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// How long, after the load, subscribers may take to see the final stock before the bench stops waiting.
const FINAL_WAIT: Duration = Duration::from_secs(10);
/// Subscribers connecting at once.
const CONNECT_PARALLELISM: usize = 64;
/// A stock message is about 200 bytes.
const READ_BUFFER: usize = 4 * 1024;

/// What subscribers saw.
#[derive(Debug, Clone, Serialize)]
pub(super) struct FeedReport {
    pub subscribers: usize,
    /// Stock messages received, per subscriber on average (the first value included).
    pub updates_per_subscriber: f64,
    /// Times any subscriber saw the stock rise.
    pub rises: u64,
    pub all_reached_final: bool,
    /// From the last purchase's answer until a subscriber saw the final stock (0 if it saw it first).
    pub final_lag_ms: LagSummary,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct LagSummary {
    pub p50: f64,
    pub max: f64,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    updates: u64,
    rises: u64,
    last: Option<u64>,
    /// When it received the value it holds now.
    since: Option<Instant>,
}

pub(super) struct Subscribers {
    runtime: tokio::runtime::Runtime,
    watchers: Vec<JoinHandle<Seen>>,
    /// The final stock, once known; each watcher ends once it has seen it (or when the bench stops waiting).
    target: watch::Sender<Option<u64>>,
}

impl Subscribers {
    /// Opens `count` subscriptions to `product` at `url` (the service's base URL), each with its first value.
    pub async fn connect(url: &str, product: i64, count: usize) -> Result<Self> {
        let ws = format!("ws{}/ws/stock?products={product}", url.trim_end_matches('/').trim_start_matches("http"));
        let (target, _) = watch::channel(None);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stock-subscribers")
            .enable_all()
            .build()
            .context("starting the subscribers' runtime")?;
        let targets = target.clone();
        let connecting = runtime.spawn(async move {
            futures::stream::iter(0..count)
                .map(|_| {
                    let (ws, target) = (ws.clone(), targets.subscribe());
                    async move {
                        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
                        let (mut socket, _) = tokio_tungstenite::connect_async_with_config(&ws, Some(config), false)
                            .await
                            .context("subscribing")?;
                        let mut seen = Seen::default();
                        seen.take(next_available(&mut socket).await?);
                        Ok::<_, anyhow::Error>(tokio::spawn(watch(socket, seen, target)))
                    }
                })
                .buffer_unordered(CONNECT_PARALLELISM)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()
        });
        let watchers = connecting.await.context("connecting the subscribers")??;
        Ok(Self { runtime, watchers, target })
    }

    /// Waits (bounded) until every subscriber has seen `final_available`, then reports.
    pub async fn finish(self, final_available: u64, load_ended: Instant) -> Result<FeedReport> {
        self.target.send_replace(Some(final_available));
        let subscribers = self.watchers.len();
        let mut lags = Vec::with_capacity(subscribers);
        let (mut updates, mut rises, mut reached) = (0, 0, 0);
        for watcher in self.watchers {
            let seen = tokio::time::timeout(FINAL_WAIT, watcher).await.ok().transpose().context("a subscriber")?;
            let Some(seen) = seen else { continue };
            updates += seen.updates;
            rises += seen.rises;
            if seen.last == Some(final_available) {
                reached += 1;
                let at = seen.since.unwrap_or(load_ended);
                lags.push(at.saturating_duration_since(load_ended).as_secs_f64() * 1_000.0);
            }
        }
        lags.sort_by(f64::total_cmp);
        self.runtime.shutdown_background();
        Ok(FeedReport {
            subscribers,
            updates_per_subscriber: if subscribers == 0 { 0.0 } else { updates as f64 / subscribers as f64 },
            rises,
            all_reached_final: reached == subscribers,
            final_lag_ms: LagSummary {
                p50: lags.get(lags.len() / 2).copied().unwrap_or(0.0),
                max: lags.last().copied().unwrap_or(0.0),
            },
        })
    }
}

impl Seen {
    fn take(&mut self, available: u64) {
        self.updates += 1;
        if self.last.is_some_and(|last| available > last) {
            self.rises += 1;
        }
        if self.last != Some(available) {
            self.since = Some(Instant::now());
        }
        self.last = Some(available);
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads stock messages until the final value is known and seen.
async fn watch(mut socket: Socket, mut seen: Seen, mut target: watch::Receiver<Option<u64>>) -> Seen {
    loop {
        let done = |seen: &Seen, target: Option<u64>| target.is_some() && target == seen.last;
        if done(&seen, *target.borrow()) {
            break;
        }
        tokio::select! {
            available = next_available(&mut socket) => match available {
                Ok(available) => seen.take(available),
                Err(_) => break,
            },
            changed = target.changed() => if changed.is_err() { break },
        }
    }
    let _ = socket.close(None).await;
    seen
}

/// The part of a stock message the subscribers read (a heartbeat has none of it).
#[derive(serde::Deserialize)]
struct StockMessage {
    available: Option<u64>,
}

/// The `available` of the next stock message (heartbeats skipped).
async fn next_available(socket: &mut Socket) -> Result<u64> {
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message.context("reading the stock feed")? {
            let message: StockMessage = serde_json::from_str(&text).context("a stock message")?;
            if let Some(available) = message.available {
                return Ok(available);
            }
        }
    }
    bail!("the stock feed closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rise_is_counted_and_the_time_moves_only_with_the_value() {
        let mut seen = Seen::default();
        seen.take(10);
        let first = seen.since;
        seen.take(10);
        assert_eq!(seen.since, first, "a repeat is not a new value");
        seen.take(8);
        seen.take(9);
        assert_eq!((seen.updates, seen.rises, seen.last), (4, 1, Some(9)));
    }
}

//! Clients that hold connections without finishing a request, during a sale, against the `seckill` binary: a
//! thousand connections that never finish their headers are each closed within the header timeout (or, past the
//! per-address cap, refused at once with a 503 problem), the service's file descriptors stay below its cap, buyers on
//! fresh connections keep buying, and what hyper refuses before the routes (headers too large, a bad
//! `Content-Length`, control characters in a header) gets a 4xx and is logged below ERROR.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, Api, Backend, Scratch};
use futures::future::join_all;
use futures::StreamExt;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_CONNECTIONS: usize = 900;
const MAX_PER_IP: usize = 600;
const SLOW_CLIENTS: usize = 1_000;
const BUYERS: usize = 200;
/// Where the slow clients connect from; the buyers and the admin come from 127.0.0.1.
const SLOW_ADDRESS: [u8; 4] = [127, 0, 0, 3];

struct Service {
    child: Child,
    base: String,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    async fn start(scratch: &Scratch) -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_seckill"))
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .envs(scratch.env())
            .env("SECKILL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("SECKILL__SERVER__HEADER_TIMEOUT_MS", HEADER_TIMEOUT.as_millis().to_string())
            .env("SECKILL__SERVER__MAX_CONNECTIONS", MAX_CONNECTIONS.to_string())
            .env("SECKILL__SERVER__MAX_CONNECTIONS_PER_IP", MAX_PER_IP.to_string())
            .env("RUST_LOG", "debug")
            .stdout(log.reopen().expect("log file"))
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("the seckill binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let ready = || async {
            let response = client.get(format!("{base}/readyz")).send().await;
            response.is_ok_and(|response| response.status() == StatusCode::OK).then_some(())
        };
        common::eventually("the service is ready", Duration::from_secs(60), ready).await;
        Self { child, base, addr: SocketAddr::from(([127, 0, 0, 1], port)), log }
    }

    /// File descriptors the service has open.
    fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).expect("log")
    }
}

/// How a slow client's connection ended.
enum Ended {
    /// Closed by the service this long after the client stopped sending.
    Closed(Duration),
    /// Refused at once with this answer.
    Refused(String),
}

/// Opens a connection from `SLOW_ADDRESS`, sends half a request head, and waits for the service to end it.
async fn slow_client(addr: SocketAddr, product: i64, opened: &AtomicUsize) -> Ended {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((SLOW_ADDRESS, 0))).expect("bind 127.0.0.3");
    let mut stream = socket.connect(addr).await.expect("connect");
    let half = format!("POST /api/v1/products/{product}/purchase HTTP/1.1\r\nHost: localhost\r\nContent-Ty");
    let _ = stream.write_all(half.as_bytes()).await;
    let sent = Instant::now();
    opened.fetch_add(1, Ordering::Relaxed);
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HEADER_TIMEOUT * 5, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if answer.contains("TOO_MANY_CONNECTIONS") {
        Ended::Refused(answer)
    } else {
        Ended::Closed(sent.elapsed())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_buyers_keep_buying() {
    let scratch = Scratch::new(Backend::Sqlite);
    let service = Service::start(&scratch).await;
    let api = Api::connect(service.base.clone()).await;
    let product = api.create_product(BUYERS as u32, 1, 2).await;
    let buyers = api.customers(BUYERS).await;
    let baseline = service.descriptors();

    let opened = AtomicUsize::new(0);
    let slow = join_all((0..SLOW_CLIENTS).map(|_| slow_client(service.addr, product, &opened)));
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let crowd = async {
        common::eventually("the slow clients are connected", Duration::from_secs(30), || async {
            (opened.load(Ordering::Relaxed) == SLOW_CLIENTS).then_some(())
        })
        .await;
        let mut most = service.descriptors();
        let buying = futures::stream::iter(&buyers)
            .map(|(_, token)| {
                let request = fresh.post(format!("{}/api/v1/products/{product}/purchase", service.base));
                let request = request.bearer_auth(token).json(&serde_json::json!({"quantity": 1}));
                async move { request.send().await.map(|answer| answer.status()) }
            })
            .buffer_unordered(16);
        let statuses: Vec<_> = buying
            .inspect(|_| most = most.max(service.descriptors()))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|status| status.expect("a buyer's request is answered"))
            .collect();
        (statuses, most)
    };
    let (ended, (statuses, most)) = tokio::join!(slow, crowd);

    assert!(statuses.iter().all(|status| *status == StatusCode::ACCEPTED), "every buyer bought: {statuses:?}");
    assert_eq!(api.admin_view(product).await["reserved"], BUYERS, "each buyer's unit, no more");
    assert!(
        most < baseline + MAX_CONNECTIONS,
        "{most} descriptors open at most, over a baseline of {baseline}: below the cap of {MAX_CONNECTIONS}"
    );
    let refused: Vec<&String> =
        ended.iter().filter_map(|end| if let Ended::Refused(answer) = end { Some(answer) } else { None }).collect();
    let closed: Vec<Duration> =
        ended.iter().filter_map(|end| if let Ended::Closed(after) = end { Some(*after) } else { None }).collect();
    assert_eq!(refused.len(), SLOW_CLIENTS - MAX_PER_IP, "past the per-address cap, each is refused at once");
    assert!(refused.iter().all(|answer| answer.starts_with("HTTP/1.1 503")), "{:?}", refused.first());
    let slowest = closed.iter().max().copied().unwrap_or_default();
    let fastest = closed.iter().min().copied().unwrap_or_default();
    println!(
        "{} slow clients refused at once, {} cut off after {fastest:?} to {slowest:?}; at most {most} descriptors \
         open (baseline {baseline}, cap {MAX_CONNECTIONS})",
        refused.len(),
        closed.len()
    );
    assert!(
        slowest <= HEADER_TIMEOUT + Duration::from_secs(2),
        "every half-sent head is cut off within the header timeout ({HEADER_TIMEOUT:?}); the last after {slowest:?}"
    );
    common::eventually("the slow clients' descriptors are given back", Duration::from_secs(10), || async {
        (service.descriptors() < baseline + 50).then_some(())
    })
    .await;

    hyper_refusals_are_4xx_and_below_error(&service, &api, product).await;
}

/// Requests hyper refuses before any route sees them: each gets a 4xx on the spot and changes nothing, and the log
/// carries no ERROR for what a client did.
async fn hyper_refusals_are_4xx_and_below_error(service: &Service, api: &Api, product: i64) {
    let huge = "a".repeat(100 * 1024);
    let requests = [
        format!("GET /api/v1/products HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n"),
        format!("GET /api/v1/products/{huge} HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("POST /api/v1/products/{product}/purchase HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"),
        "GET /api/v1/products HTTP/1.1\r\nHost: x\r\nX-Bad: a\u{1}b\r\n\r\n".to_owned(),
        "NOT HTTP AT ALL\r\n\r\n".to_owned(),
    ];
    for request in requests {
        let mut stream = TcpStream::connect(service.addr).await.expect("connect");
        let _ = stream.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        let status: u16 = answer.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
        assert!((400..500).contains(&status), "{:.60}… is answered 4xx, not {answer:.80}", request);
    }
    assert_eq!(api.admin_view(product).await["reserved"], BUYERS, "nothing changed");
    let log = service.log();
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(errors.is_empty(), "what clients did is not an ERROR: {errors:?}");
    assert!(log.contains("did not arrive in time"), "the cut-off slow clients are logged (at DEBUG)");
}

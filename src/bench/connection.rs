//! The measured phases' HTTP client: each worker owns one keep-alive HTTP/1.1 connection, opened before the clock
//! starts and driven by the worker itself.
//!
//! The bench shares the machine with the service, so every microsecond the client spends is taken from the server
//! and added to every latency it reports. A pooled client pays for a pool lock, a hand-off to a connection task and
//! back, a URL and a timer on every request — on two cores that cost as much CPU as the service's whole purchase
//! path. A worker that holds its connection sends a request as one write and reads the answer on the same task.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpStream;

use super::REQUEST_TIMEOUT;

/// Where a phase's requests go: the service's address and one path on it.
#[derive(Clone)]
pub(super) struct Endpoint {
    addr: String,
    host: HeaderValue,
    path: Uri,
}

impl Endpoint {
    /// An `http://host:port/path` URL; the measured phases speak plain HTTP/1.1.
    pub fn new(url: &Url) -> Result<Self> {
        if url.scheme() != "http" {
            bail!("the bench measures plain http:// services, not {url}");
        }
        let host = url.host_str().context("the service URL names no host")?;
        let port = url.port_or_known_default().context("the service URL names no port")?;
        let addr = format!("{host}:{port}");
        Ok(Self {
            host: HeaderValue::try_from(addr.as_str()).context("the service's host is not a valid header")?,
            path: url.path().parse().context("the service URL's path")?,
            addr,
        })
    }

    /// A request to this endpoint; the caller adds its own headers.
    pub fn request(&self, method: Method) -> hyper::http::request::Builder {
        Request::builder().method(method).uri(self.path.clone()).header(HOST, self.host.clone())
    }
}

/// One worker's connection. A transport failure drops it, and the next request opens a new one.
pub(super) struct Connection {
    addr: String,
    link: Option<Link>,
}

struct Link {
    sender: SendRequest<Full<Bytes>>,
    driver: http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
}

impl Connection {
    /// Connects to `endpoint`'s service.
    pub async fn open(endpoint: &Endpoint) -> Result<Self> {
        let link = Link::open(&endpoint.addr).await.with_context(|| format!("connecting to {}", endpoint.addr))?;
        Ok(Self { addr: endpoint.addr.clone(), link: Some(link) })
    }

    /// Sends `request` and reads the whole answer; a transport failure comes back as its outcome label.
    pub async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, self.round_trip(request)).await {
            Ok(answer) => answer,
            Err(_) => Err("error: timeout".to_owned()),
        };
        if answer.is_err() {
            self.link = None;
        }
        answer
    }

    async fn round_trip(&mut self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        let link = match &mut self.link {
            Some(link) => link,
            empty => empty.insert(Link::open(&self.addr).await.map_err(|_| "error: connect".to_owned())?),
        };
        let Link { sender, driver } = link;
        let (answer, ended) = {
            let mut exchange = std::pin::pin!(async {
                sender.ready().await.map_err(|_| "error: request")?;
                let response = sender.send_request(request).await.map_err(|_| "error: request")?;
                let status = response.status();
                let body = response.into_body().collect().await.map_err(|_| "error: body")?.to_bytes();
                Ok::<_, &str>((status, body))
            });
            // The worker drives its connection only while it waits for an answer: between requests there is
            // nothing for it to do, and no task of its own to wake. A connection that ends has handed over all it
            // read, so the answer is still awaited.
            tokio::select! {
                biased;
                answer = &mut exchange => (answer, false),
                _ = driver => (exchange.await, true),
            }
        };
        if ended {
            self.link = None;
        }
        answer.map_err(str::to_owned)
    }
}

impl Link {
    async fn open(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Self { sender, driver })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn endpoints_take_plain_http_urls() {
        let endpoint = Endpoint::new(&Url::parse("http://127.0.0.1:8080/healthz").unwrap()).unwrap();
        assert_eq!((endpoint.addr.as_str(), endpoint.path.path()), ("127.0.0.1:8080", "/healthz"));
        assert_eq!(Endpoint::new(&Url::parse("http://localhost/x").unwrap()).unwrap().addr, "localhost:80");
        assert!(Endpoint::new(&Url::parse("https://localhost/x").unwrap()).is_err());
    }

    /// A server that answers two requests per connection, the second with `Connection: close`, then hangs up.
    async fn two_per_connection() -> (Url, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/ping", listener.local_addr().unwrap())).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    for last in [false, true] {
                        let mut line = String::new();
                        while stream.read_line(&mut line).await.unwrap() > 0 && line != "\r\n" {
                            line.clear();
                        }
                        let close = if last { "connection: close\r\n" } else { "" };
                        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{close}\r\nok");
                        stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn a_connection_is_reused_and_reopened_once_the_server_hangs_up() {
        let (url, accepted) = two_per_connection().await;
        let endpoint = Endpoint::new(&url).unwrap();
        let mut connection = Connection::open(&endpoint).await.unwrap();
        for _ in 0..3 {
            let request = endpoint.request(Method::GET).body(Full::new(Bytes::new())).unwrap();
            let (status, body) = connection.exchange(request).await.unwrap();
            assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "two requests on the first connection, the third on a new one");
    }
}

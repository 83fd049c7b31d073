//! The WebSocket handshake (RFC 6455 §4.2), done here rather than by warp's `ws()`, whose sockets each keep a
//! 128 KiB read buffer that warp offers no way to size: an idle subscriber then cost the server 134 KiB (10,000 of
//! them: 1.3 GB; 3.7 KiB each with the buffers below). Clients of this service send nothing but pongs and close
//! frames, so a 1 KiB read buffer serves them, and what the server sends goes straight to the socket.

use futures::Future;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::problem::Problem;

/// Largest message a client may send (it has nothing to say but pongs and close frames), and the read buffer.
const MAX_INCOMING: usize = 1024;
/// Messages the server sends are a few hundred bytes; a client that lets this much pile up has stopped reading.
const MAX_UNSENT: usize = 64 * 1024;

pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A WebSocket upgrade request, checked (RFC 6455 §4.2.1) and ready to be accepted or refused.
pub struct Handshake {
    key: String,
    on_upgrade: OnUpgrade,
}

/// The upgrade requests this service takes: `GET` (the route's), `Connection: upgrade`, `Upgrade: websocket`,
/// version 13 and a key; a missing header is a 400 like any other.
pub fn handshake() -> impl Filter<Extract = (Handshake,), Error = Rejection> + Clone {
    warp::header::<String>("connection")
        .and(warp::header::exact_ignore_case("upgrade", "websocket"))
        .and(warp::header::exact("sec-websocket-version", "13"))
        .and(warp::header::<String>("sec-websocket-key"))
        .and(warp::ext::optional::<OnUpgrade>())
        .and_then(|connection: String, key: String, on_upgrade: Option<OnUpgrade>| async move {
            let upgrade = connection.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
            match on_upgrade {
                Some(on_upgrade) if upgrade => Ok(Handshake { key, on_upgrade }),
                _ => Err(warp::reject::custom(Problem::invalid("this resource is a WebSocket: send an upgrade"))),
            }
        })
}

impl Handshake {
    /// Answers `101 Switching Protocols` (naming `protocol` if given) and hands the socket to `session`, which runs
    /// on `runtime`.
    pub fn accept<F>(
        self,
        runtime: &tokio::runtime::Handle,
        protocol: Option<&'static str>,
        session: impl FnOnce(Socket) -> F + Send + 'static,
    ) -> Response
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        runtime.spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let config = WebSocketConfig::default()
                .read_buffer_size(MAX_INCOMING)
                .write_buffer_size(0)
                .max_write_buffer_size(MAX_UNSENT)
                .max_message_size(Some(MAX_INCOMING))
                .max_frame_size(Some(MAX_INCOMING));
            session(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await).await;
        });
        let mut response = Response::default();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = protocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        }
        response
    }
}

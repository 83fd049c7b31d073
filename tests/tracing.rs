//! Traces, on the real binary (the tracing subscriber is the process's own): with the OTLP exporter pointed at a
//! collector stand-in run by the test — an HTTP server decoding the protobuf the service sends to `/v1/traces` — a
//! purchase's spans arrive as one trace carrying its order id, from the HTTP request through its shard and its
//! journal append to its projection, each span the child of the one before, and linked both ways with the journal
//! commit and the projection run that carried it (traces of their own). A JSON log line written in a traced request
//! carries that request span's ids, and a line written outside any span none. A graceful stop sends the spans still
//! waiting.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{free_port, Api, Backend, Scratch};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;
use serde_json::Value;

const PURCHASE_ROUTE: &str = "POST /api/v1/products/{id}/purchase";

/// One span as the collector received it, ids in hex.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    /// (trace id, span id) of each span it links to.
    links: Vec<(String, String)>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    fn links_to(&self, other: &Received) -> bool {
        self.links.contains(&(other.trace_id.clone(), other.span_id.clone()))
    }
}

/// The collector stand-in: takes `POST /v1/traces` with an OTLP protobuf body and keeps every span in it.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("collector listens");
        let addr = listener.local_addr().expect("collector address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&spans);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                let service = hyper::service::service_fn(move |request| take(request, Arc::clone(&kept)));
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { addr, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("spans").clone()
    }

    /// The spans carrying `order_id`, once there is one named each of `names`.
    async fn spans_of(&self, order_id: &str, names: &[&str]) -> Vec<Received> {
        let what = format!("spans {names:?} of order {order_id} arrive");
        common::eventually(&what, Duration::from_secs(30), || async {
            let carrying: Vec<Received> =
                self.spans().into_iter().filter(|span| span.attribute("order_id") == Some(order_id)).collect();
            let arrived: Vec<&str> = carrying.iter().map(|span| span.name.as_str()).collect();
            if names.iter().all(|name| arrived.contains(name)) {
                Ok(carrying)
            } else {
                Err(format!("{arrived:?}"))
            }
        })
        .await
    }
}

async fn take(
    request: Request<Incoming>,
    kept: Arc<Mutex<Vec<Received>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let answer = |status: StatusCode| {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        Ok(response)
    };
    if request.method() != Method::POST || request.uri().path() != "/v1/traces" {
        return answer(StatusCode::NOT_FOUND);
    }
    let Ok(body) = request.into_body().collect().await.map(|body| body.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST);
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return answer(StatusCode::BAD_REQUEST);
    };
    let mut spans = kept.lock().expect("spans");
    for resource in export.resource_spans {
        let service = resource
            .resource
            .map(|resource| attributes(&resource.attributes))
            .and_then(|mut attributes| attributes.remove("service.name"))
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            spans.push(Received {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: attributes(&span.attributes),
                links: span.links.iter().map(|link| (hex(&link.trace_id), hex(&link.span_id))).collect(),
            });
        }
    }
    // An empty ExportTraceServiceResponse: everything was taken.
    answer(StatusCode::OK)
}

fn attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    let text = |value: &AnyValue| match value {
        AnyValue::StringValue(text) => text.clone(),
        AnyValue::IntValue(number) => number.to_string(),
        AnyValue::BoolValue(flag) => flag.to_string(),
        AnyValue::DoubleValue(number) => number.to_string(),
        other => format!("{other:?}"),
    };
    attributes.iter().filter_map(|pair| Some((pair.key.clone(), text(pair.value.as_ref()?.value.as_ref()?)))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The service, exporting to `collector`, its JSON log (and anything it says on stderr) in `log`.
fn start_server(
    scratch: &Scratch,
    port: u16,
    collector: &Collector,
    export_interval_ms: u64,
    log: &std::fs::File,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_seckill"))
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(scratch.env())
        .env("SECKILL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("SECKILL__TELEMETRY__OTLP_ENDPOINT", collector.endpoint())
        .env("SECKILL__TELEMETRY__EXPORT_INTERVAL_MS", export_interval_ms.to_string())
        .env("SECKILL__LOG__FORMAT", "json")
        .env("SECKILL__PROJECTOR__POLL_MS", "50")
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().expect("log file"))
        .stderr(log.try_clone().expect("log file"))
        .spawn()
        .expect("the seckill binary starts")
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let ready = || async {
        let response = client.get(format!("{base}/readyz")).send().await;
        response.is_ok_and(|response| response.status() == reqwest::StatusCode::OK).then_some(())
    };
    common::eventually_every("the service is ready", Duration::from_secs(60), Duration::from_millis(50), ready).await;
}

/// A fresh buyer buys `quantity` of `product`: the order id.
async fn purchase(api: &Api, product: i64, quantity: u32) -> String {
    let (_, token) = api.customers(1).await.pop().expect("a buyer");
    let answer = api.purchase(product, &token, None, quantity).await;
    assert_eq!(answer.status, reqwest::StatusCode::ACCEPTED, "purchase: {}", answer.body);
    answer.body["order_id"].as_str().expect("order id").to_owned()
}

/// The spans of `order` of `product`: one trace from the request to the projection, each span the child of the one
/// before and carrying the product, and the journal commit and projection run that carried it linked both ways.
async fn assert_one_trace(collector: &Collector, order: &str, product: i64) {
    let spans =
        collector.spans_of(order, &[PURCHASE_ROUTE, "shard.purchase", "journal.append", "projector.apply"]).await;
    let request = named(&spans, PURCHASE_ROUTE);
    let shard = named(&spans, "shard.purchase");
    let append = named(&spans, "journal.append");
    let apply = named(&spans, "projector.apply");
    assert!(spans.iter().all(|span| span.service == "seckill"), "service.name: {spans:#?}");
    assert!(spans.iter().all(|span| span.trace_id == request.trace_id), "one trace: {spans:#?}");
    assert_eq!(request.parent_span_id, "", "the request starts the trace");
    assert_eq!(shard.parent_span_id, request.span_id, "the shard handles it under the request");
    assert_eq!(append.parent_span_id, shard.span_id, "its reservation goes to the journal from the shard");
    assert_eq!(apply.parent_span_id, append.span_id, "its projection follows its append");
    let product = product.to_string();
    for span in [request, shard, append, apply] {
        assert_eq!(span.attribute("product_id"), Some(product.as_str()), "{span:#?}");
    }
    assert_eq!(request.attribute("http.response.status_code"), Some("202"), "{request:#?}");
    assert_eq!(request.attribute("http.route"), Some("/api/v1/products/{id}/purchase"));
    let position = append.attribute("journal.position").expect("the append's position");
    assert_eq!(apply.attribute("journal.position"), Some(position), "the projection of that very event");

    // The journal commit and the projection run that carried it are traces of their own, linked both ways.
    for (batch_name, item) in [("journal.commit", append), ("projector.run", apply)] {
        let batch = common::eventually(
            &format!("the {batch_name} carrying the order arrives"),
            Duration::from_secs(30),
            || async { collector.spans().into_iter().find(|span| span.name == batch_name && span.links_to(item)) },
        )
        .await;
        assert!(item.links_to(&batch), "the {} links to its {batch_name}: {item:#?} {batch:#?}", item.name);
        assert_ne!(batch.trace_id, item.trace_id, "a {batch_name} is no purchase's child");
        let counted = if batch_name == "journal.commit" { "journal.events" } else { "orders" };
        let count: u64 = batch.attribute(counted).and_then(|count| count.parse().ok()).unwrap_or(0);
        assert!(count >= 1, "the {batch_name} counts what it carried: {batch:#?}");
    }
}

/// The one span named `name` among `spans`.
fn named<'a>(spans: &'a [Received], name: &str) -> &'a Received {
    let found: Vec<&Received> = spans.iter().filter(|span| span.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
    found[0]
}

fn log_lines(log: &tempfile::NamedTempFile) -> Vec<Value> {
    let text = std::fs::read_to_string(log.path()).expect("log");
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_is_one_trace_from_its_request_to_its_projection_carrying_its_order_id() {
    let collector = Collector::start().await;
    let scratch = Scratch::new(Backend::Sqlite);
    let (port, log) = (free_port(), tempfile::NamedTempFile::new().expect("log file"));
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&scratch, port, &collector, 100, log.as_file());
    wait_ready(&base).await;
    let api = Api::connect(base).await;
    // Each of the two shards starts with one unit of the pool's: a purchase of one is reserved from its shard's
    // slice at once, one of two waits in its shard for a grant from the pool and is reserved when the grant comes.
    let product = api.create_product(10, 2, 2).await;
    for quantity in [1, 2] {
        let order = purchase(&api, product, quantity).await;
        assert_one_trace(&collector, &order, product).await;
    }

    // A JSON line logged in a traced request names that request's span; one logged outside any span names none.
    let pause =
        api.client.post(api.url(&format!("/api/v1/admin/products/{product}/pause"))).bearer_auth(&api.admin_token);
    assert_eq!(api.send(pause).await.status, reqwest::StatusCode::OK);
    let line = common::eventually("the pause is logged", Duration::from_secs(10), || async {
        let switched = log_lines(&log).into_iter().find(|line| line["message"] == "sale switched");
        switched.ok_or_else(|| std::fs::read_to_string(log.path()).unwrap_or_default())
    })
    .await;
    let (trace_id, span_id) = (line["trace_id"].as_str(), line["span_id"].as_str());
    let (trace_id, span_id) = trace_id.zip(span_id).unwrap_or_else(|| panic!("the line names its span: {line}"));
    let pause_path = format!("/api/v1/admin/products/{product}/pause");
    let request = common::eventually("the pause's request span arrives", Duration::from_secs(30), || async {
        collector.spans().into_iter().find(|span| span.trace_id == trace_id && span.span_id == span_id)
    })
    .await;
    assert_eq!((request.name.as_str(), request.attribute("url.path")), ("POST", Some(pause_path.as_str())));
    let listening =
        log_lines(&log).into_iter().find(|line| line["message"] == "seckill listening").expect("start line");
    assert!(listening.get("trace_id").is_none(), "{listening}");

    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_sends_the_spans_still_waiting() {
    let collector = Collector::start().await;
    let scratch = Scratch::new(Backend::Sqlite);
    let (port, log) = (free_port(), tempfile::NamedTempFile::new().expect("log file"));
    let base = format!("http://127.0.0.1:{port}");
    // Spans are sent every ten minutes: only the stop sends them.
    let mut server = start_server(&scratch, port, &collector, 600_000, log.as_file());
    wait_ready(&base).await;
    let api = Api::connect(base).await;
    let product = api.create_product(10, 1, 2).await;
    let order = purchase(&api, product, 1).await;
    let orders = api.settled_orders(product).await;
    assert!(orders.iter().any(|row| row["order_id"] == order.as_str()), "projected: {orders:?}");
    assert!(collector.spans().is_empty(), "nothing is sent before the interval or the stop");

    // SAFETY: kill only sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) }, 0, "SIGTERM");
    let stopping = tokio::task::spawn_blocking(move || server.wait());
    let stopped = tokio::time::timeout(Duration::from_secs(60), stopping).await.expect("stops within a minute");
    let stopped = stopped.expect("waited").expect("reaped");
    assert!(stopped.success(), "a graceful stop: {stopped}");
    assert_one_trace(&collector, &order, product).await;
}

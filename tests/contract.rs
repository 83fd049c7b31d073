//! The service against its own OpenAPI document (`GET /openapi.json`), over real HTTP:
//! - schemathesis (PyPI) fuzzes every operation the document lists, once with a customer's token and once with the
//!   admin's, and must find no server error and no answer the document does not describe (status, content type,
//!   body, headers). `scripts/test.sh` installs the pinned version into a virtualenv and names its executable in
//!   `SECKILL_TEST_SCHEMATHESIS`; without it the test fails, saying so.
//! - every admin operation the document lists refuses a caller without a token (401) and a customer (403), and
//!   none of them changes anything;
//! - the document lists exactly the routes the router serves, and each of them is served.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{spawn_app, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// What schemathesis checks on every answer: no 5xx, and the status, content type, body and headers as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";
/// Test cases per operation and phase: enough to walk every operation's boundaries, few enough for a 2-core
/// machine.
const MAX_EXAMPLES: &str = "10";

/// Every operation of the API, as `METHOD /path`: kept here by hand, so that a route added to the router without its
/// operation in the document (or one documented that the router lost) fails a test. The pages (`/`, `/admin`,
/// `/assets/…`), the document itself and its viewer (`/docs`) are not API operations.
const ROUTES: [&str; 45] = [
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "POST /api/v1/auth/register",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/password",
    "GET /api/v1/products",
    "GET /api/v1/products/{id}",
    "POST /api/v1/products/{id}/purchase",
    "POST /api/v1/products/{id}/token",
    "GET /api/v1/orders",
    "GET /api/v1/orders/{id}",
    "POST /api/v1/orders/{id}/cancel",
    "POST /api/v1/orders/{id}/pay",
    "POST /api/v1/payments/callback",
    "GET /ws/stock",
    "GET /ws/orders",
    "POST /api/v1/admin/products",
    "GET /api/v1/admin/products/{id}",
    "GET /api/v1/admin/products/{id}/orders",
    "POST /api/v1/admin/products/{id}/{action}",
    "POST /api/v1/admin/products/{id}/restock",
    "PUT /api/v1/admin/products/{id}/window",
    "POST /api/v1/admin/products/{id}/preheat",
    "GET /api/v1/admin/sale",
    "PUT /api/v1/admin/sale",
    "GET /api/v1/admin/projector",
    "GET /api/v1/admin/limits",
    "PUT /api/v1/admin/limits",
    "POST /api/v1/admin/users/bulk",
    "POST /api/v1/admin/users/{id}/revoke-tokens",
    "GET /api/v1/admin/blacklist",
    "POST /api/v1/admin/blacklist",
    "DELETE /api/v1/admin/blacklist/{kind}/{subject}",
    "GET /api/v1/admin/supervision",
    "GET /api/v1/admin/actors",
    "GET /api/v1/admin/actors/{id}",
    "POST /api/v1/admin/actors/{id}/kill",
    "GET /api/v1/admin/payments",
    "GET /api/v1/admin/compensations",
    "GET /api/v1/admin/payments/simulator",
    "PUT /api/v1/admin/payments/simulator",
    "GET /api/v1/admin/dead-letters",
    "GET /api/v1/admin/dead-letters.csv",
    "POST /api/v1/admin/dead-letters/{id}/reprocess",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let app = spawn_app(Backend::Sqlite).await;
    let product = app.create_product(100, 2, 2).await;
    app.create_product_with(10, 1, 1, json!({"requires_token": true})).await;
    let (_, customer) = app.customers(1).await.remove(0);
    assert_eq!(app.purchase(product, &customer, Some("contract"), 1).await.status, StatusCode::ACCEPTED);
    let operations: BTreeSet<String> = operations(&document(&app).await).into_iter().map(|op| op.label).collect();
    let reports = tempfile::tempdir().expect("a folder for the reports");

    let as_customer = fuzz(&app, reports.path(), "customer", &customer, &[]).await;
    // The admin's run leaves for last, one at a time, the two operations that pull the rug from under it: killing
    // an actor (purchases during its restart get a 503 by the admin's own hand) and revoking tokens (its own among
    // them, after which everything it asks is a 401).
    let as_admin = [
        fuzz(&app, reports.path(), "admin", &app.admin_token, &["--exclude-path-regex", "/(kill|revoke-tokens)$"])
            .await,
        fuzz(&app, reports.path(), "admin-kill", &app.admin_token, &["--include-path-regex", "/kill$"]).await,
        fuzz(&app, reports.path(), "admin-revoke", &app.admin_token, &["--include-path-regex", "/revoke-tokens$"])
            .await,
    ];

    for run in std::iter::once(&as_customer).chain(&as_admin) {
        assert!(run.server_errors.is_empty(), "{}: server errors: {:#?}\n{}", run.name, run.server_errors, run.output);
        assert!(
            run.failures.is_empty(),
            "{}: the answers break the document: {:#?}\n{}",
            run.name,
            run.failures,
            run.output
        );
        assert!(run.exited_cleanly, "{}: schemathesis failed\n{}", run.name, run.output);
    }
    let exercised =
        |runs: &[&Fuzzed]| runs.iter().flat_map(|run| run.answered.keys().cloned()).collect::<BTreeSet<_>>();
    assert_eq!(exercised(&[&as_customer]), operations, "every operation answered the customer's run");
    assert_eq!(exercised(&as_admin.iter().collect::<Vec<_>>()), operations, "every operation answered the admin's");
    let answers: usize = std::iter::once(&as_customer).chain(&as_admin).flat_map(|run| run.answered.values()).sum();
    println!(
        "schemathesis: {answers} answers over {} operations, none a server error or off the document",
        operations.len()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_operation_refuses_anyone_but_the_admin_and_changes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let ids = Ids::make(&app).await;
    let before = state(&app, &ids).await;

    let admin_operations: Vec<Operation> = operations(&document(&app).await)
        .into_iter()
        .filter(|operation| operation.path.starts_with("/api/v1/admin/"))
        .collect();
    assert!(admin_operations.len() >= 28, "the document lists the admin's operations: {}", admin_operations.len());
    for operation in &admin_operations {
        for (who, token, status, code) in [
            ("nobody", None, StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ("a customer", Some(ids.customer_token.as_str()), StatusCode::FORBIDDEN, "FORBIDDEN"),
        ] {
            let answer = app.send(request(&app, operation, &ids, token)).await;
            assert_eq!(
                (answer.status, answer.code(), answer.content_type.as_str()),
                (status, code, "application/problem+json"),
                "{} by {who}: {}",
                operation.label,
                answer.body
            );
        }
    }

    assert_eq!(state(&app, &ids).await, before, "no refused admin operation changed anything");
    let bulk = json!({"prefix": "intruder", "count": 1});
    let made =
        app.send(app.client.post(app.url("/api/v1/admin/users/bulk")).bearer_auth(&app.admin_token).json(&bulk)).await;
    assert_eq!(made.status, StatusCode::CREATED, "the refused bulk request made no account: {}", made.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let app = spawn_app(Backend::Sqlite).await;
    let ids = Ids::make(&app).await;
    let operations = operations(&document(&app).await);
    let documented: BTreeSet<&str> = operations.iter().map(|operation| operation.label.as_str()).collect();
    assert_eq!(documented, BTreeSet::from(ROUTES), "the document's operations are the router's routes");
    for operation in &operations {
        let answer = app.send(request(&app, operation, &ids, None)).await;
        assert!(
            ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&answer.status),
            "{} is documented but not served: {} {}",
            operation.label,
            answer.status,
            answer.body
        );
    }
    let document = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(document.content_type, "application/json");
    assert!(document.body["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")), "OpenAPI 3.1");
    app.stop().await;
}

/// One operation of the document.
struct Operation {
    method: Method,
    path: String,
    /// `METHOD /path`, as schemathesis labels it.
    label: String,
    /// Each path parameter's name and the schema it refers to (`ProductId`), if any.
    path_params: Vec<(String, Option<String>)>,
    has_body: bool,
}

async fn document(app: &TestApp) -> Value {
    let answer = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(answer.status, StatusCode::OK, "the document is served");
    answer.body
}

fn operations(document: &Value) -> Vec<Operation> {
    let paths = document["paths"].as_object().expect("the document has paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            let parameters = operation["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
            let path_params = parameters
                .iter()
                .filter(|parameter| parameter["in"] == "path")
                .map(|parameter| {
                    let name = parameter["name"].as_str().expect("a parameter's name").to_owned();
                    let schema = parameter["schema"]["$ref"].as_str().and_then(|to| to.rsplit('/').next());
                    (name, schema.map(str::to_owned))
                })
                .collect();
            let method: Method = method.to_uppercase().parse().expect("an HTTP method");
            operations.push(Operation {
                label: format!("{method} {path}"),
                method,
                path: path.clone(),
                path_params,
                has_body: operation.get("requestBody").is_some(),
            });
        }
    }
    operations
}

/// Things that exist, for the path parameters: a product, a customer, their order, a running actor.
struct Ids {
    product: i64,
    customer: i64,
    customer_token: String,
    order: String,
    actor: u64,
}

impl Ids {
    async fn make(app: &TestApp) -> Self {
        let product = app.create_product(10, 1, 2).await;
        let (customer, customer_token) = app.customers(1).await.remove(0);
        let bought = app.purchase(product, &customer_token, None, 1).await;
        assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.body);
        let order = bought.body["order_id"].as_str().expect("an order id").to_owned();
        let tree = app.admin_get("/api/v1/admin/actors").await;
        let actor = tree["children"][0]["id"].as_u64().expect("the root supervises actors");
        Self { product, customer, customer_token, order, actor }
    }

    /// A valid value for a path parameter, by the schema it refers to or its name.
    fn of(&self, name: &str, schema: Option<&str>) -> String {
        match (schema, name) {
            (Some("ProductId"), _) => self.product.to_string(),
            (Some("UserId"), _) | (None, "subject") => self.customer.to_string(),
            (Some("OrderId"), _) => self.order.clone(),
            (Some("DeadLetterId"), _) => "1".to_owned(),
            (None, "id") => self.actor.to_string(),
            (None, "action") => "pause".to_owned(),
            (None, "kind") => "user".to_owned(),
            other => panic!("no value for the path parameter {other:?}: add one"),
        }
    }
}

/// A body each operation that takes one would act on, were it allowed: the refusal must not be the body's fault.
fn body(operation: &Operation, ids: &Ids) -> Value {
    let later = |hours| (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339();
    let off = json!({"per_second": 1, "burst": 1});
    match operation.label.as_str() {
        "POST /api/v1/admin/products" => json!({"name": "Not yours", "price_cents": 1, "stock": 1}),
        "POST /api/v1/admin/products/{id}/restock" => json!({"units": 5}),
        "PUT /api/v1/admin/products/{id}/window" => json!({"starts_at": later(1), "ends_at": later(2)}),
        "PUT /api/v1/admin/sale" => json!({"state": "paused"}),
        "PUT /api/v1/admin/limits" => {
            json!({"global": off, "user": off, "ip": off, "login_ip": off, "login_user": off})
        }
        "POST /api/v1/admin/users/bulk" => json!({"prefix": "intruder", "count": 1}),
        "POST /api/v1/admin/blacklist" => json!({"user_id": ids.customer}),
        "PUT /api/v1/admin/payments/simulator" => {
            json!({"latency_ms": 1, "failure_rate": 1.0, "fail_next": 3, "silent": true})
        }
        "POST /api/v1/auth/register" | "POST /api/v1/auth/login" => {
            json!({"username": "someone", "password": "a password"})
        }
        "POST /api/v1/auth/password" => json!({"current_password": "a password", "new_password": "another one"}),
        "POST /api/v1/products/{id}/purchase" => json!({"quantity": 1}),
        "POST /api/v1/payments/callback" => json!({
            "order_id": ids.order, "product_id": ids.product, "user_id": ids.customer, "amount_cents": 1,
            "result": "succeeded",
        }),
        other => panic!("{other} takes a body: add one here"),
    }
}

/// `operation` with its path filled in, by `token`'s holder (or nobody), with a body if it takes one.
fn request(app: &TestApp, operation: &Operation, ids: &Ids, token: Option<&str>) -> reqwest::RequestBuilder {
    let mut path = operation.path.clone();
    for (name, schema) in &operation.path_params {
        path = path.replace(&format!("{{{name}}}"), &ids.of(name, schema.as_deref()));
    }
    if operation.path == "/ws/stock" {
        path.push_str(&format!("?products={}", ids.product));
    }
    let mut request = app.client.request(operation.method.clone(), app.url(&path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if operation.has_body {
        request = request.json(&body(operation, ids));
    }
    request
}

/// Everything an admin operation could change, read as the admin: the sale, its stock and orders, the switches,
/// limits, bans, the payment provider's knobs, dead letters, the actor tree and its restarts, and the customer's
/// token (still taken).
async fn state(app: &TestApp, ids: &Ids) -> Value {
    let mut view = app.admin_view(ids.product).await;
    for moving in ["snapshot_age_seconds", "snapshot_position", "snapshot_pending"] {
        view.as_object_mut().expect("an object").remove(moving);
    }
    let supervision = app.admin_get("/api/v1/admin/supervision").await;
    let restarts: BTreeMap<&str, (&Value, &Value)> = ["root", "products", "payments", "compensations"]
        .into_iter()
        .map(|supervisor| (supervisor, (&supervision[supervisor]["restarts"], &supervision[supervisor]["gave_up"])))
        .collect();
    let mine = app.send(app.client.get(app.url("/api/v1/orders")).bearer_auth(&ids.customer_token)).await;
    json!({
        "products": app.send(app.client.get(app.url("/api/v1/products"))).await.body,
        "view": view,
        "orders": app.settled_orders(ids.product).await,
        "sale": app.admin_get("/api/v1/admin/sale").await,
        "limits": app.admin_get("/api/v1/admin/limits").await,
        "blacklist": app.admin_get("/api/v1/admin/blacklist").await,
        "simulator": app.admin_get("/api/v1/admin/payments/simulator").await,
        "dead_letters": app.admin_get("/api/v1/admin/dead-letters").await,
        "actors": actors(&app.admin_get("/api/v1/admin/actors").await),
        "restarts": restarts,
        "customer": [mine.status.as_u16(), mine.body],
    })
}

/// The actor tree's ids, kinds and restarts: a killed actor comes back under another id.
fn actors(node: &Value) -> Value {
    let children: Vec<Value> =
        node["children"].as_array().map(|all| all.iter().map(actors).collect()).unwrap_or_default();
    json!([node["id"], node["kind"], node["restarts"], children])
}

/// What one schemathesis run saw.
struct Fuzzed {
    name: String,
    exited_cleanly: bool,
    /// Answers per operation (`METHOD /path`).
    answered: BTreeMap<String, usize>,
    server_errors: Vec<String>,
    /// Each failed check once: the operation, the check and what it said.
    failures: BTreeSet<String>,
    output: String,
}

/// The schemathesis executable: `SECKILL_TEST_SCHEMATHESIS`, else where `scripts/test.sh` installs it.
fn schemathesis() -> PathBuf {
    std::env::var_os("SECKILL_TEST_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").expect("HOME is set");
        PathBuf::from(home).join(".cache/seckill/schemathesis/bin/schemathesis")
    })
}

/// Runs schemathesis against the service's document as `token`'s holder, on the operations `filters` select, and
/// reads what it saw from its NDJSON report.
async fn fuzz(app: &TestApp, reports: &Path, name: &str, token: &str, filters: &[&str]) -> Fuzzed {
    let executable = schemathesis();
    let report = reports.join(format!("{name}.ndjson"));
    let mut command = tokio::process::Command::new(&executable);
    command
        .current_dir(reports)
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS, "--max-examples", MAX_EXAMPLES, "--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--no-color", "--report", "ndjson", "--report-ndjson-path"])
        .arg(&report)
        .args(filters)
        .kill_on_drop(true);
    let ran = tokio::time::timeout(Duration::from_secs(300), command.output()).await;
    let output =
        ran.unwrap_or_else(|_| panic!("{name}: schemathesis did not finish within 5 minutes")).unwrap_or_else(|err| {
            panic!(
                "schemathesis does not run at {} ({err}): scripts/test.sh installs it, or set \
                 SECKILL_TEST_SCHEMATHESIS to its executable",
                executable.display()
            )
        });
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let events = std::fs::read_to_string(&report).unwrap_or_else(|err| panic!("{name}: no report ({err})\n{text}"));
    let mut fuzzed = Fuzzed {
        name: name.to_owned(),
        exited_cleanly: output.status.success(),
        answered: BTreeMap::new(),
        server_errors: Vec::new(),
        failures: BTreeSet::new(),
        output: text,
    };
    for line in events.lines() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{name}: a report line ({err})"));
        if let Some(error) = event.get("NonFatalError").or_else(|| event.get("FatalError")) {
            fuzzed.failures.insert(format!("error: {error}"));
        }
        let Some(finished) = event.get("ScenarioFinished") else { continue };
        let recorder = &finished["recorder"];
        let label = recorder["label"].as_str().unwrap_or_default().to_owned();
        // A stateful scenario chains several operations under one label; the other phases test one each.
        let one_operation = finished["phase"] != "stateful";
        for interaction in recorder["interactions"].as_object().into_iter().flat_map(|all| all.values()) {
            let Some(status) = interaction["response"]["status_code"].as_u64() else { continue };
            if one_operation {
                *fuzzed.answered.entry(label.clone()).or_default() += 1;
            }
            if status >= 500 {
                let request = &interaction["request"];
                fuzzed.server_errors.push(format!("{status} for {} {}", request["method"], request["uri"]));
            }
        }
        for check in recorder["checks"]
            .as_object()
            .into_iter()
            .flat_map(|all| all.values())
            .flat_map(|checks| checks.as_array().into_iter().flatten().filter(|check| check["status"] == "failure"))
        {
            let failure = &check["failure_info"]["failure"];
            fuzzed.failures.insert(format!("{label}: {}: {} {}", check["name"], failure["title"], failure["message"]));
        }
    }
    fuzzed
}

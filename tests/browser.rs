//! The pages in a real headless Chromium (Debian's `chromium`, driven over WebDriver by Debian's `chromedriver`):
//! a buyer opens the storefront, sees the countdown and the live stock, logs in, buys (a sale that requires a
//! seckill token, which the page fetches first) and sees the order reserved (then paid); an admin opens the admin
//! page, sees the actor tree, and watches a shard's stock fall while a crowd buys; the API docs (`/docs`) render
//! every operation of `/openapi.json` from files the service serves itself. Screenshots go to
//! `target/tmp/browser/`, where CI keeps them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, free_port, spawn_app, Backend, Server, TestApp, ADMIN_PASSWORD};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::future::join_all;
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A ChromeDriver of the test's own, and a headless Chromium session through it (a new profile each time).
struct Browser {
    client: Client,
    _driver: Server,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    async fn open(test: &str) -> Self {
        let port = free_port();
        let mut driver = Server::default();
        let mut command = Command::new(CHROMEDRIVER);
        command.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
        let address = format!("127.0.0.1:{port}");
        driver.start(&mut command, "chromedriver", || std::net::TcpStream::connect(&address).is_ok()).await;
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            // Tall enough for the admin page's whole actor tree in one screenshot.
            "--window-size=1280,2200",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let capabilities = capabilities.as_object().expect("an object").clone();
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser").join(test);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Self { client, _driver: driver, _profile: profile, shots }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("writing the screenshot");
    }

    async fn find(&self, css: &str) -> Element {
        let found = || async { self.client.find(Locator::Css(css)).await.map_err(|err| err.to_string()) };
        eventually(&format!("{css} is on the page"), Duration::from_secs(15), found).await
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    async fn text_of(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let probe = || async {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.map_err(|err| err.to_string())?,
                Err(err) => return Err(err.to_string()),
            };
            if ok(&text) {
                Ok(text)
            } else {
                Err(format!("{css} reads {text:?}"))
            }
        };
        eventually(what, Duration::from_secs(20), probe).await
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn close(self) {
        self.client.close().await.expect("the session ends");
    }
}

async fn register(app: &TestApp, username: &str, password: &str) {
    let body = json!({"username": username, "password": password});
    let answer = app.send(app.client.post(app.url("/api/v1/auth/register")).json(&body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_watches_the_countdown_logs_in_buys_and_sees_the_order_reserved_then_paid() {
    let app = spawn_app(Backend::Sqlite).await;
    register(&app, "alice", "correct-horse-battery").await;
    let browser = Browser::open("storefront").await;
    // The sale opens a little after the page does, however long the browser took to start.
    let starts_at = chrono::Utc::now() + chrono::Duration::seconds(8);
    let product =
        app.create_product_with(25, 1, 2, json!({"starts_at": starts_at.to_rfc3339(), "requires_token": true})).await;
    browser.client.goto(&app.base).await.expect("the storefront opens");

    let card = format!("article.product[data-product-id=\"{product}\"]");
    let countdown =
        browser.text_of(&format!("{card} .countdown"), "the countdown shows", |text| text.contains(':')).await;
    browser.text_of(&format!("{card} .stock-text"), "the stock shows", |text| text.contains("25")).await;
    browser.screenshot("1-countdown").await;

    browser.fill("#username", "alice").await;
    browser.fill("#password", "correct-horse-battery").await;
    browser.click("#login-button").await;
    browser.text_of("#signed-in", "alice is signed in", |text| text.contains("alice")).await;

    let buy = format!("{card} button.buy");
    eventually("the sale opens and Buy is enabled", Duration::from_secs(20), || async {
        let button = browser.find(&buy).await;
        button.is_enabled().await.ok().filter(|enabled| *enabled)
    })
    .await;
    browser.click(&buy).await;
    let status = browser.text_of("#orders li.order .status", "the order shows", |text| text == "reserved").await;
    assert_eq!(status, "reserved");
    browser.text_of(&format!("{card} .stock-text"), "the live stock fell", |text| text.contains("24")).await;
    browser.screenshot("2-reserved").await;

    browser.click("#orders li.order button.pay").await;
    browser.text_of("#orders li.order .status", "the order turns paid, live", |text| text == "paid").await;
    browser.screenshot("3-paid").await;
    println!("countdown read {countdown:?}; screenshots in {}", browser.shots.display());
    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_the_actor_tree_and_a_shards_stock_fall_while_a_crowd_buys() {
    let app = spawn_app(Backend::Sqlite).await;
    let product = app.create_product(3_000, 1, 4).await;
    let buyers = app.customers(3_000).await;
    let browser = Browser::open("admin").await;
    browser.client.goto(&app.url("/admin")).await.expect("the admin page opens");
    browser.fill("#username", "admin").await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("#login-button").await;

    browser.find("#actor-tree [data-kind=\"root\"]").await;
    let shards = eventually("the tree lists the four shards", Duration::from_secs(15), || async {
        let found = browser.client.find_all(Locator::Css("#actor-tree [data-kind=\"shard\"]")).await.ok()?;
        (found.len() == 4).then_some(found)
    })
    .await;
    let first = shards[0].attr("data-actor-id").await.expect("attr").expect("an actor id");
    let slice = format!("#actor-tree [data-actor-id=\"{first}\"] .available");
    let before: u64 = browser
        .text_of(&slice, "the shard's stock shows", |text| text.trim().parse::<u64>().is_ok())
        .await
        .trim()
        .parse()
        .expect("a number");
    browser.screenshot("1-tree").await;

    let crowd = join_all(buyers.chunks(buyers.len() / 16).map(|chunk| {
        let app = &app;
        async move {
            for (_, token) in chunk {
                app.purchase(product, token, None, 1).await;
            }
        }
    }));
    let watching = async {
        let fell = |text: &str| text.trim().parse::<u64>().is_ok_and(|now| now < before);
        browser.text_of(&slice, "the shard's stock falls while the crowd buys", fell).await;
        browser.screenshot("2-selling").await;
    };
    tokio::join!(crowd, watching);
    let product_row = format!("#products [data-product-id=\"{product}\"] .available");
    browser.text_of(&product_row, "the product shows it sold out", |text| text.trim() == "0").await;
    browser.screenshot("3-sold-out").await;

    // The admin's hands: pause and resume a sale, and create one.
    let row = format!("#products [data-product-id=\"{product}\"]");
    browser.click(&format!("{row} button.pause")).await;
    browser.text_of(&format!("{row} .sale"), "the sale shows paused", |text| text.trim() == "paused").await;
    assert_eq!(app.purchase(product, &buyers[0].1, None, 1).await.code(), "SALE_PAUSED", "the button paused it");
    browser.click(&format!("{row} button.resume")).await;
    browser.text_of(&format!("{row} .sale"), "the sale shows open again", |text| text.trim() == "open").await;
    browser.fill("#name", "Limited sneakers").await;
    browser.fill("#price", "120").await;
    browser.fill("#stock", "50").await;
    browser.click("#create-button").await;
    let created = "#products [data-product-id=\"2\"] .available";
    browser.text_of(created, "the new sale is listed, live", |text| text.trim() == "50").await;
    let sale = app.admin_view(2).await;
    assert_eq!((sale["name"].as_str(), sale["price_cents"].as_i64()), (Some("Limited sneakers"), Some(12_000)));
    browser.screenshot("4-created").await;
    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_docs_list_every_operation_of_the_document_and_load_nothing_from_elsewhere() {
    let app = spawn_app(Backend::Sqlite).await;
    let document = app.send(app.client.get(app.url("/openapi.json"))).await.body;
    let operations: usize =
        document["paths"].as_object().expect("paths").values().map(|item| item.as_object().expect("ops").len()).sum();
    let browser = Browser::open("docs").await;
    browser.client.goto(&app.url("/docs")).await.expect("the docs open");

    browser.find(".opblock-post [data-path=\"/api/v1/products/{id}/purchase\"]").await;
    let rendered = eventually("every operation is listed", Duration::from_secs(15), || async {
        let found = browser.client.find_all(Locator::Css(".opblock")).await.map_err(|err| err.to_string())?;
        if found.len() == operations {
            Ok(found.len())
        } else {
            Err(format!("{} of {operations} operations listed", found.len()))
        }
    })
    .await;
    assert_eq!(rendered, operations);
    let loaded = browser
        .client
        .execute("return performance.getEntriesByType('resource').map(entry => entry.name)", Vec::new())
        .await
        .expect("the page's resources");
    let loaded: Vec<String> = serde_json::from_value(loaded).expect("a list of addresses");
    assert!(loaded.iter().any(|url| url.ends_with("/openapi.json")), "the page read the document: {loaded:?}");
    let elsewhere: Vec<&String> = loaded.iter().filter(|url| !url.starts_with(&app.base)).collect();
    assert!(elsewhere.is_empty(), "the docs loaded from elsewhere: {elsewhere:?}");
    browser.screenshot("1-operations").await;
    browser.close().await;
    app.stop().await;
}

//! The service's admin API as the bench uses it, outside the measured path: log in, open the sale, mint buyers,
//! and read back what happened. Every call either returns the parsed body or fails with the problem's `code`.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use reqwest::{Client, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::audit::OrderRow;

/// The most buyers one `/admin/users/bulk` request may mint.
pub(super) const MAX_BULK_BUYERS: usize = 10_000;

/// The sale the bench opens; it starts now and ends when the service's default says.
#[derive(Serialize)]
pub(super) struct NewProduct {
    pub name: String,
    pub price_cents: i64,
    pub stock: u64,
    pub per_user_limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Seconds a buyer has to pay (the service's default if not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_window_secs: Option<u64>,
}

/// A prepared buyer: an account and a token to purchase with.
#[derive(Clone, Deserialize)]
pub(super) struct Buyer {
    pub user_id: i64,
    pub access_token: String,
}

/// The projector's state as `/admin/projector` reports it.
#[derive(Deserialize)]
pub(super) struct ProjectorView {
    pub projector: ProjectorStats,
    pub caught_up: bool,
}

#[derive(Deserialize)]
pub(super) struct ProjectorStats {
    pub orders_per_second: f64,
}

/// The part of `/admin/products/{id}` the bench checks.
#[derive(Deserialize)]
pub(super) struct ProductView {
    pub invariant_holds: bool,
    pub shard_count: u32,
    /// The sale's stock with every restock, as the service counts it.
    pub stock_total: u64,
    #[serde(default)]
    pub in_flight: u64,
    #[serde(default)]
    pub reserved: u64,
    #[serde(default)]
    pub paid: u64,
    #[serde(default)]
    pub released: u64,
    #[serde(default)]
    pub available: u64,
    /// A snapshot of the product is due (at the first pause in its sales) or being saved.
    pub snapshot_pending: bool,
}

/// An `application/problem+json` body, as far as the bench reads it.
#[derive(Deserialize)]
pub(super) struct ProblemBody {
    pub code: String,
    #[serde(default)]
    pub detail: Option<String>,
}

impl ProblemBody {
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }
}

#[derive(Deserialize)]
struct Login {
    access_token: String,
}

#[derive(Deserialize)]
struct CreatedProduct {
    id: i64,
}

#[derive(Deserialize)]
struct BulkBuyers {
    users: Vec<Buyer>,
}

/// A logged-in admin session against one service.
pub(super) struct Api {
    http: Client,
    base: String,
    admin_token: String,
}

impl Api {
    /// Logs in as the admin at `base` (e.g. `http://127.0.0.1:8080`).
    pub async fn login(http: Client, base: &str, username: &str, password: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        let body = serde_json::json!({ "username": username, "password": password });
        let request = http.post(join_url(&base, "/api/v1/auth/login")?).json(&body);
        let login: Login = call(request, "logging in as the admin").await?;
        Ok(Self { http, base, admin_token: login.access_token })
    }

    /// The absolute URL of `path` on the service.
    pub fn endpoint(&self, path: &str) -> Result<Url> {
        join_url(&self.base, path)
    }

    /// Opens the sale and returns the product's id.
    pub async fn create_product(&self, product: &NewProduct) -> Result<i64> {
        let request = self.admin_post("/api/v1/admin/products")?.json(product);
        let created: CreatedProduct = call(request, "creating the product").await?;
        Ok(created.id)
    }

    /// Mints `count` buyers named `{prefix}-1` … `{prefix}-{count}`.
    pub async fn create_buyers(&self, prefix: &str, count: usize) -> Result<Vec<Buyer>> {
        let body = serde_json::json!({ "prefix": prefix, "count": count });
        let request = self.admin_post("/api/v1/admin/users/bulk")?.json(&body);
        let created: BulkBuyers = call(request, "creating buyers").await?;
        if created.users.len() != count {
            bail!("creating buyers: asked for {count}, got {}", created.users.len());
        }
        Ok(created.users)
    }

    pub async fn projector(&self) -> Result<ProjectorView> {
        call(self.admin_get("/api/v1/admin/projector")?, "reading the projector status").await
    }

    pub async fn product(&self, id: i64) -> Result<ProductView> {
        call(self.admin_get(&format!("/api/v1/admin/products/{id}"))?, "reading the product").await
    }

    pub async fn orders(&self, id: i64) -> Result<Vec<OrderRow>> {
        call(self.admin_get(&format!("/api/v1/admin/products/{id}/orders"))?, "reading the product's orders").await
    }

    /// Sends `request` as the buyer with `token`; returns the status and the body.
    pub async fn as_buyer(&self, request: RequestBuilder, token: &str) -> Result<(reqwest::StatusCode, Bytes)> {
        let response = request.bearer_auth(token).send().await.context("a buyer's request failed")?;
        let status = response.status();
        Ok((status, response.bytes().await.context("reading a buyer's answer")?))
    }

    pub fn http(&self) -> &Client {
        &self.http
    }

    fn admin_get(&self, path: &str) -> Result<RequestBuilder> {
        Ok(self.http.get(self.endpoint(path)?).bearer_auth(&self.admin_token))
    }

    fn admin_post(&self, path: &str) -> Result<RequestBuilder> {
        Ok(self.http.post(self.endpoint(path)?).bearer_auth(&self.admin_token))
    }
}

fn join_url(base: &str, path: &str) -> Result<Url> {
    Url::parse(&format!("{base}{path}")).with_context(|| format!("invalid service URL {base:?}"))
}

/// Sends `request` and parses a successful answer; a refusal becomes an error naming its status and problem code.
async fn call<T: DeserializeOwned>(request: RequestBuilder, what: &str) -> Result<T> {
    let response = request.send().await.with_context(|| format!("{what}: request failed"))?;
    let status = response.status();
    let body: Bytes = response.bytes().await.with_context(|| format!("{what}: reading the response failed"))?;
    if !status.is_success() {
        match ProblemBody::parse(&body) {
            Some(problem) => bail!("{what}: HTTP {status} {}: {}", problem.code, problem.detail.unwrap_or_default()),
            None => bail!("{what}: HTTP {status}"),
        }
    }
    serde_json::from_slice(&body).with_context(|| format!("{what}: unexpected response body"))
}

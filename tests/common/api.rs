//! A client of a running service, logged in as the admin, with the requests the tests make.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::wait::eventually_every;
use super::ADMIN_PASSWORD;

/// A client of a running service, logged in as the admin.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub admin_token: String,
}

/// What came back: status, `Content-Type`, and the body as JSON (`Null` when it was not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// How long a 503 asks the client to wait: its `Retry-After`, in seconds, which every 503 of this service has.
    pub fn retry_after_secs(&self) -> Duration {
        let header = self
            .retry_after
            .as_deref()
            .unwrap_or_else(|| panic!("a {} says when to retry: {}", self.status, self.body));
        let secs = header.parse().unwrap_or_else(|_| panic!("Retry-After is a number of seconds, not {header:?}"));
        Duration::from_secs(secs)
    }
}

impl Api {
    pub async fn connect(base: String) -> Self {
        let client = reqwest::Client::builder().pool_max_idle_per_host(4096).build().expect("client");
        let mut api = Api { base, client, admin_token: String::new() };
        api.admin_token = api.login("admin", ADMIN_PASSWORD).await;
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request reaches the service");
        let status = response.status();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (content_type, retry_after) = (header("content-type").unwrap_or_default(), header("retry-after"));
        let bytes = response.bytes().await.expect("body");
        Answer { status, content_type, retry_after, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let answer = self
            .send(
                self.client
                    .post(self.url("/api/v1/auth/login"))
                    .json(&json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "login failed: {}", answer.body);
        answer.body["access_token"].as_str().expect("token").to_owned()
    }

    /// Creates an open sale and returns its id.
    pub async fn create_product(&self, stock: u32, per_user_limit: u32, shards: u32) -> i64 {
        self.create_product_with(stock, per_user_limit, shards, json!({})).await
    }

    /// A product with more of its fields set in `extra` (an object).
    pub async fn create_product_with(&self, stock: u32, per_user_limit: u32, shards: u32, extra: Value) -> i64 {
        let mut body = json!({
            "name": "Flash phone", "price_cents": 49_900, "stock": stock,
            "per_user_limit": per_user_limit, "shards": shards,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let answer = self
            .send(self.client.post(self.url("/api/v1/admin/products")).bearer_auth(&self.admin_token).json(&body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "create product: {}", answer.body);
        answer.body["id"].as_i64().expect("product id")
    }

    /// `count` customers, each as (user id, token).
    pub async fn customers(&self, count: usize) -> Vec<(i64, String)> {
        let mut users = Vec::with_capacity(count);
        let mut chunk = 0;
        while users.len() < count {
            let want = (count - users.len()).min(10_000);
            let prefix = format!("t{}-{chunk}", uuid::Uuid::now_v7().simple());
            let answer = self
                .send(
                    self.client
                        .post(self.url("/api/v1/admin/users/bulk"))
                        .bearer_auth(&self.admin_token)
                        .json(&json!({"prefix": prefix, "count": want})),
                )
                .await;
            assert_eq!(answer.status, StatusCode::CREATED, "bulk users: {}", answer.body);
            for user in answer.body["users"].as_array().expect("users") {
                users.push((
                    user["user_id"].as_i64().expect("id"),
                    user["access_token"].as_str().expect("token").to_owned(),
                ));
            }
            chunk += 1;
        }
        users
    }

    pub async fn purchase(&self, product: i64, token: &str, key: Option<&str>, quantity: u32) -> Answer {
        let mut request = self
            .client
            .post(self.url(&format!("/api/v1/products/{product}/purchase")))
            .bearer_auth(token)
            .json(&json!({"quantity": quantity}));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    pub async fn cancel(&self, order: &str, token: &str) -> Answer {
        self.send(self.client.post(self.url(&format!("/api/v1/orders/{order}/cancel"))).bearer_auth(token)).await
    }

    pub async fn pay(&self, order: &str, token: &str) -> Answer {
        self.send(self.client.post(self.url(&format!("/api/v1/orders/{order}/pay"))).bearer_auth(token)).await
    }

    /// GET an admin resource; it must answer 200.
    pub async fn admin_get(&self, path: &str) -> Value {
        let answer = self.send(self.client.get(self.url(path)).bearer_auth(&self.admin_token)).await;
        assert_eq!(answer.status, StatusCode::OK, "GET {path}: {}", answer.body);
        answer.body
    }

    /// Sets the simulated payment provider's knobs.
    pub async fn simulator(&self, knobs: Value) {
        let url = self.url("/api/v1/admin/payments/simulator");
        let answer = self.send(self.client.put(url).bearer_auth(&self.admin_token).json(&knobs)).await;
        assert_eq!(answer.status, StatusCode::OK, "simulator: {}", answer.body);
    }

    /// Posts a payment callback as the provider would, signed with `key` at `sent_secs`.
    pub async fn callback(&self, key: &seckill::domain::WebhookKey, sent_secs: i64, body: &Value) -> Answer {
        self.send(self.callback_request(key, sent_secs, body)).await
    }

    /// A payment callback as the provider sends it, signed with `key` at `sent_secs`.
    pub fn callback_request(
        &self,
        key: &seckill::domain::WebhookKey,
        sent_secs: i64,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let body = serde_json::to_vec(body).expect("json");
        self.client
            .post(self.url("/api/v1/payments/callback"))
            .header("content-type", "application/json")
            .header("seckill-timestamp", sent_secs.to_string())
            .header("seckill-signature", key.sign(sent_secs, &body))
            .body(body)
    }

    pub async fn order(&self, order: &str, token: &str) -> Answer {
        self.send(self.client.get(self.url(&format!("/api/v1/orders/{order}"))).bearer_auth(token)).await
    }

    /// A buyer who honours `Retry-After` through an outage: buys until the answer is not a 503, each time waiting
    /// as long as the 503's `Retry-After` says before trying again (for up to 30 s in all).
    pub async fn purchase_retrying(&self, product: i64, token: &str) -> Answer {
        let purchases_resume = || async {
            let answer = self.purchase(product, token, None, 1).await;
            if answer.status != StatusCode::SERVICE_UNAVAILABLE {
                return Some(answer);
            }
            tokio::time::sleep(answer.retry_after_secs()).await;
            None
        };
        eventually_every("purchases resume after the outage", Duration::from_secs(30), Duration::ZERO, purchases_resume)
            .await
    }

    pub async fn admin_view(&self, product: i64) -> Value {
        let answer = self
            .send(
                self.client.get(self.url(&format!("/api/v1/admin/products/{product}"))).bearer_auth(&self.admin_token),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "admin view: {}", answer.body);
        answer.body
    }

    /// Waits until every committed reservation is in the orders table, then returns the product's orders.
    pub async fn settled_orders(&self, product: i64) -> Vec<Value> {
        let caught_up = || async {
            let status =
                self.send(self.client.get(self.url("/api/v1/admin/projector")).bearer_auth(&self.admin_token)).await;
            if status.body["caught_up"] == json!(true) {
                Ok(())
            } else {
                Err(status.body)
            }
        };
        eventually_every("the projector catches up", Duration::from_secs(60), Duration::from_millis(50), caught_up)
            .await;
        let answer = self
            .send(
                self.client
                    .get(self.url(&format!("/api/v1/admin/products/{product}/orders")))
                    .bearer_auth(&self.admin_token),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "orders: {}", answer.body);
        answer.body.as_array().expect("orders").clone()
    }
}

//! No secret ships with the code: the `seckill` binary, started as the README starts it, draws its own secrets into
//! a fresh data folder (owner-only), prints the admin's password once, keeps it across restarts whatever the
//! configuration says, and the production configuration refuses to start without them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use common::{eventually, free_port};
use reqwest::StatusCode;
use serde_json::json;

fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name)
}

/// `seckill serve` on the embedded default, run from `folder` as from a checkout: its data folder is `folder/data`.
/// Its log and whatever it prints go to one file, read when it stops.
struct Service {
    child: Child,
    base: String,
    output: PathBuf,
}

impl Service {
    async fn start(folder: &Path, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let output = folder.join(format!("output-{port}"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_seckill"));
        command
            .args(["--config", config("default.toml").to_str().expect("utf-8 path"), "serve"])
            .current_dir(folder)
            .env("SECKILL__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("SECKILL__AUTH__JWT_SECRET")
            .env_remove("SECKILL__ADMIN__PASSWORD")
            .env_remove("SECKILL__PAYMENTS__WEBHOOK_SECRET")
            .env("SECKILL__DATABASE__URL", "sqlite://data/seckill.db");
        let file = std::fs::File::create(&output).expect("output file");
        command.stdout(file.try_clone().expect("output file")).stderr(file);
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("seckill starts");
        let base = format!("http://127.0.0.1:{port}");
        let probe = format!("{base}/readyz");
        eventually("the service is ready", Duration::from_secs(60), || async {
            reqwest::get(&probe).await.ok().filter(|answer| answer.status() == StatusCode::OK)
        })
        .await;
        Self { child, base, output }
    }

    async fn login(&self, password: &str) -> Result<String, StatusCode> {
        let answer = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .expect("login answers");
        match answer.status() {
            StatusCode::OK => {
                let body: serde_json::Value = answer.json().await.expect("json");
                Ok(body["access_token"].as_str().expect("a token").to_owned())
            }
            status => Err(status),
        }
    }

    async fn as_admin(&self, token: &str) -> StatusCode {
        let answer = reqwest::Client::new()
            .get(format!("{}/api/v1/admin/limits", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("answers");
        answer.status()
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.output).expect("output")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_folder_draws_its_own_secrets_and_keeps_the_admins_password() {
    let (one, two) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let first = Service::start(one.path(), &[]).await;
    let secrets = one.path().join("data/secrets");
    let password = std::fs::read_to_string(secrets.join("admin-password")).expect("the admin's password is kept");
    assert!(password.len() >= 20, "a drawn password, not a word: {} characters", password.len());
    assert_eq!(mode(&secrets), 0o700, "the folder is the owner's only");
    for file in ["admin-password", "jwt-secret", "webhook-secret"] {
        assert_eq!(mode(&secrets.join(file)), 0o600, "{file} is readable by the owner only");
    }
    let token = first.login(&password).await.expect("the admin logs in with the kept password");
    assert_eq!(first.as_admin(&token).await, StatusCode::OK);

    let second = Service::start(two.path(), &[]).await;
    let jwt = |folder: &Path| std::fs::read_to_string(folder.join("data/secrets/jwt-secret")).expect("kept");
    assert_ne!(jwt(one.path()), jwt(two.path()), "two fresh starts, two secrets");
    let other = std::fs::read_to_string(two.path().join("data/secrets/admin-password")).expect("kept");
    assert_ne!(other, password, "two fresh starts, two admin passwords");
    assert_eq!(second.as_admin(&token).await, StatusCode::UNAUTHORIZED, "one service's token means nothing to another");
    let printed = second.stop();
    assert!(printed.contains(&other), "the drawn password is printed on the first start");

    let printed = first.stop();
    assert_eq!(printed.matches(password.as_str()).count(), 1, "printed once, and never logged");
    let restarted = Service::start(one.path(), &[("SECKILL__ADMIN__PASSWORD", "a-password-set-later")]).await;
    assert_eq!(restarted.as_admin(&token).await, StatusCode::OK, "the same secret: tokens live across a restart");
    assert_eq!(restarted.login("a-password-set-later").await, Err(StatusCode::UNAUTHORIZED), "never reset at start");
    restarted.login(&password).await.expect("the admin's password is as it was");
    let printed = restarted.stop();
    assert!(!printed.contains(&password), "a restart prints no password");
}

fn production(without: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seckill"));
    command
        .args(["--config", config("production.toml").to_str().expect("utf-8 path"), "migrate"])
        .env("SECKILL__DATABASE__URL", "postgres://nobody@127.0.0.1:1/none")
        .env("SECKILL__AUTH__JWT_SECRET", "a-jwt-secret-of-thirty-two-characters-at-least")
        .env("SECKILL__ADMIN__PASSWORD", "an-admin-password")
        .env("SECKILL__PAYMENTS__WEBHOOK_SECRET", "a-webhook-secret-of-thirty-two-characters-or-so");
    if let Some(variable) = without {
        command.env_remove(variable);
    }
    command.output().expect("seckill runs")
}

#[test]
fn production_refuses_to_start_without_each_secret_and_names_it() {
    for variable in ["SECKILL__AUTH__JWT_SECRET", "SECKILL__ADMIN__PASSWORD", "SECKILL__PAYMENTS__WEBHOOK_SECRET"] {
        let refused = production(Some(variable));
        assert!(!refused.status.success(), "no {variable}: no start");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(variable), "the refusal names {variable}: {said}");
        assert!(!said.contains("an-admin-password"), "and prints no secret: {said}");
    }
    let all = production(None);
    let said = String::from_utf8_lossy(&all.stderr);
    assert!(!said.contains("secrets.generate"), "with every secret set, the start goes past the secrets: {said}");
}

//! `seckill bench --report` against a running service on the embedded default: a small crowd with the /healthz
//! baseline, run by the real binary. The bench must pass its own correctness check, and write a JSON report whose
//! timelines add up to the requests it counted and an HTML page with its charts and correctness table.

mod common;

use common::{spawn_app, Backend, ADMIN_PASSWORD};
use serde_json::Value;

const USERS: u64 = 300;
const STOCK: u64 = 100;

/// The requests of a timeline's intervals, summed.
fn requests_over_time(timeline: &Value) -> u64 {
    timeline["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|point| point["requests"].as_u64().expect("requests"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_writes_a_self_contained_report() {
    let app = spawn_app(Backend::Sqlite).await;
    let folder = tempfile::tempdir().expect("temp dir");
    let (html, json) = (folder.path().join("report.html"), folder.path().join("report.json"));
    let bench = tokio::process::Command::new(env!("CARGO_BIN_EXE_seckill"))
        .arg("bench")
        .args(["--url", &format!("http://{}", app.app.addr()), "--admin-password", ADMIN_PASSWORD])
        .args(["--users", &USERS.to_string(), "--stock", &STOCK.to_string(), "--concurrency", "8", "--baseline"])
        .args(["--label", "bench_report <test>"])
        .arg("--report")
        .arg(&html)
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .expect("the bench runs");
    assert!(bench.status.success(), "the bench failed: {}", String::from_utf8_lossy(&bench.stderr));

    let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    assert_eq!(report["requests"], USERS);
    assert_eq!(requests_over_time(&report["timeline"]), USERS, "every purchase is in the timeline");
    let baseline = &report["baseline"];
    assert_eq!(
        requests_over_time(&baseline["healthz_timeline"]),
        baseline["healthz_requests"].as_u64().expect("count")
    );
    assert_eq!(report["correctness"]["units_ordered"], STOCK);
    assert_eq!(report["label"], "bench_report <test>");

    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.contains(r#"<p class="verdict pass"><strong>PASS</strong>"#));
    assert!(page.contains("bench_report &lt;test&gt;"));
    assert_eq!(page.matches("<svg ").count(), 5, "purchases and healthz over time (2 each), and the outcomes");
    assert!(page.contains("<caption>Correctness counts</caption>"));
    assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));
    app.stop().await;
}

//! Searches on a read replica, on the production path: an embedded cluster of the test's own,
//! a streaming replica of it made by `kb db replica` (pg_basebackup), and the real `kb serve`
//! given the printed `KB_READ_DATABASE_URL`. Searches go to the replica while it is current,
//! to the primary while its replay is paused past the allowed lag and while it is down;
//! a document's status is read on the primary, so an upload is `ready` there at once.

use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant};

use kb::cluster::Cluster;
use kb::store;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::faults::{ServerProcess, free_port, serve_args, upload, user_with_bucket};
use super::startup::StopOnDrop;

const METRICS_TOKEN: &str = "replica-test-metrics";

/// `kb_reads_total{database="<database>"}` as `/metrics` shows it (0 before the first).
async fn reads(client: &reqwest::Client, base: &str, database: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let prefix = format!("kb_reads_total{{database=\"{database}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.trim().parse().expect("a number"))
}

/// The ids of the documents a search for `query` returns.
async fn search(client: &reqwest::Client, base: &str, token: &str, query: &str) -> Vec<String> {
    let response = client
        .post(format!("{base}/v1/search"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "limit": 5, "threshold": 0.0 }))
        .send()
        .await
        .expect("search");
    assert_eq!(response.status(), 200, "search answered");
    let body: Value = response.json().await.expect("search JSON");
    body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["document_id"].as_str().expect("document id").to_string())
        .collect()
}

async fn wait_ready(admin: &PgPool, name: &str) {
    let started = Instant::now();
    loop {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM knowledge_documents WHERE file_name = $1")
            .bind(name)
            .fetch_optional(admin)
            .await
            .expect("status");
        match status.as_deref() {
            Some("ready") => return,
            Some("failed") => panic!("{name} failed"),
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{name} not ready after 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` every 100 ms until it holds, for at most `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn searches_run_on_a_current_replica_and_on_the_primary_when_it_lags_or_is_down() {
    let root = tempfile::tempdir().expect("tempdir");
    let primary_dir = root.path().join("primary");
    let replica_dir = root.path().join("replica");
    let primary = Cluster::new(&primary_dir).expect("cluster binaries (run scripts/setup.sh)");
    let _stop_primary = StopOnDrop(primary.clone());
    let replica = Cluster::new(&replica_dir).expect("cluster binaries");
    let _stop_replica = StopOnDrop(replica.clone());

    // Schema and the server's login on the primary first, as `kb serve` would make them.
    let out = Command::new(env!("CARGO_BIN_EXE_kb"))
        .args(["migrate", "--data-dir"])
        .arg(&primary_dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("kb migrate");
    assert!(out.status.success(), "kb migrate: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_kb"))
        .args(["db", "replica", "--data-dir"])
        .arg(&primary_dir)
        .arg(&replica_dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("kb db replica");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kb db replica: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let read_url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("KB_READ_DATABASE_URL="))
        .expect("the replica's URL is printed")
        .to_string();
    assert!(read_url.starts_with("postgres://kb_app@"), "the replica is read as the server's login: {read_url}");
    let replica_admin = store::connect(&replica.database_url("kb"), 1).await.expect("replica superuser");
    let in_recovery: bool =
        sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&replica_admin).await.expect("recovery");
    assert!(in_recovery, "the replica is a standby");

    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{addr}");
    let extra = [
        "--workers",
        "1",
        "--metrics-token",
        METRICS_TOKEN,
        "--read-database-url",
        &read_url,
        "--read-max-lag-ms",
        "1000",
    ];
    let args = serve_args(&primary_dir, &addr, &extra);
    let log = root.path().join("serve.log");
    File::create(&log).expect("server log");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut server = ServerProcess::spawn(&args, &log);
    server.wait_ready(&client, &base).await;

    let admin = store::connect(&primary.database_url("kb"), 2).await.expect("primary superuser");
    let (token, bucket) = user_with_bucket(&admin, &client, &base, "replica@example.com", "replicated").await;

    // Current replica: the search runs there and finds what the primary wrote.
    let sla = upload(&client, &base, &token, &bucket, "sample_docs/customer-support-sla.txt").await.to_string();
    wait_ready(&admin, "customer-support-sla.txt").await;
    let on_replica = reads(&client, &base, "replica").await;
    eventually(20, "the replica serves the new document", || async {
        search(&client, &base, &token, "how fast do we answer support tickets?").await.contains(&sla)
    })
    .await;
    assert!(reads(&client, &base, "replica").await > on_replica, "searches ran on the replica:\n{}", server.log_text());
    let on_primary = reads(&client, &base, "primary").await;
    search(&client, &base, &token, "support ticket response times").await;
    assert_eq!(reads(&client, &base, "primary").await, on_primary, "a current replica takes every search");

    // Replay paused: the replica falls behind, searches move to the primary and see the new
    // document; its status is read on the primary, ready as soon as it is.
    sqlx::query("SELECT pg_wal_replay_pause()").execute(&replica_admin).await.expect("pause replay");
    let press = upload(&client, &base, &token, &bucket, "sample_docs/press-and-pr-guidelines.txt").await.to_string();
    wait_ready(&admin, "press-and-pr-guidelines.txt").await;
    let status: Value = client
        .get(format!("{base}/v1/documents/{press}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(status["status"], "ready", "the status comes from the primary: {status}");
    let on_primary = reads(&client, &base, "primary").await;
    eventually(20, "a lagging replica's searches move to the primary", || async {
        search(&client, &base, &token, "press release guidelines for journalists").await.contains(&press)
    })
    .await;
    assert!(reads(&client, &base, "primary").await > on_primary, "searches ran on the primary:\n{}", server.log_text());

    // Replay resumed: the replica catches up and takes the searches again.
    sqlx::query("SELECT pg_wal_replay_resume()").execute(&replica_admin).await.expect("resume replay");
    eventually(20, "the replica takes searches again once current", || async {
        let before = reads(&client, &base, "replica").await;
        search(&client, &base, &token, "press release guidelines").await;
        reads(&client, &base, "replica").await > before
    })
    .await;
    replica_admin.close().await;

    // Replica down: every search still answers, from the primary.
    replica.stop().await.expect("stop the replica");
    for _ in 0..5 {
        let found = search(&client, &base, &token, "press release guidelines for journalists").await;
        assert!(found.contains(&press), "the primary answers: {found:?}");
    }
    server.assert_running();
    server.kill();
    admin.close().await;
}

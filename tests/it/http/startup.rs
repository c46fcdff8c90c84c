//! Start-up and shutdown: the server's database login, graceful shutdown that lets in-flight
//! requests finish, and the timeouts that protect against slow clients and slow work.

use std::time::{Duration, Instant};

use clap::Parser;
use kb::http::Limits;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{FakeEmbedder, Setup, TestServer, error_code};
use crate::helpers::TestDb;

/// Stops a test's own cluster however the test ends.
pub(super) struct StopOnDrop(pub(super) kb::cluster::Cluster);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let cluster = self.0.clone();
        // Drop runs inside the test's runtime: stop on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(cluster.stop());
            }
        })
        .join();
    }
}

#[tokio::test]
async fn the_embedded_cluster_serves_through_the_kb_app_login() {
    // A cluster of its own: `kb` always serves the database named `kb` of its data dir.
    let data = tempfile::tempdir().expect("tempdir");
    let cluster = kb::cluster::Cluster::new(data.path()).expect("cluster");
    let _stop = StopOnDrop(cluster.clone());
    let dir = data.path().display().to_string();
    let cli = kb::cli::Cli::try_parse_from(["kb", "--data-dir", &dir, "migrate"]).expect("arguments");
    let dbs = kb::runtime::databases(&cli.config, 2).await.expect("databases");
    let (login, privileged): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&dbs.app)
    .await
    .expect("query");
    assert_eq!(login, "kb_app");
    assert!(!privileged);
    // A second start (another process) finds the login in place.
    kb::runtime::databases(&cli.config, 2).await.expect("databases again");
}

#[tokio::test]
async fn a_superuser_database_url_is_refused() {
    let url = TestDb::new().await.url;
    let cli = kb::cli::Cli::try_parse_from(["kb", "--database-url", &url, "migrate"]).expect("arguments");
    let refused = kb::runtime::databases(&cli.config, 2).await;
    let message = format!("{:#}", refused.err().expect("a superuser login is refused"));
    assert!(message.contains("superuser"), "{message}");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let setup = Setup { embedder: FakeEmbedder::slow(Duration::from_millis(800)), workers: 0, ..Setup::fake() };
    let mut server = TestServer::start(setup).await;
    let (_user, token) = server.user("a@example.com").await;
    let request = server
        .client
        .post(server.url("/v1/search"))
        .bearer_auth(&token)
        .json(&json!({ "query": "in flight", "threshold": 0.0 }))
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = server.shutdown();

    let response = in_flight.await.expect("task").expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), stopped).await.expect("serve returns").expect("task").expect("io");
    let refused = reqwest::Client::new().get(server.url("/healthz")).timeout(Duration::from_secs(2)).send().await;
    assert!(refused.is_err(), "a stopped server accepts no new requests");
}

#[tokio::test]
async fn slow_headers_and_slow_requests_time_out() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let setup = Setup { embedder: FakeEmbedder::slow(Duration::from_secs(2)), limits, workers: 0, ..Setup::fake() };
    let server = TestServer::start(setup).await;
    let (_user, token) = server.user("a@example.com").await;

    // A client that starts its headers and never finishes them is disconnected.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    let started = Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the connection was closed by the server");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A request whose work outlives the request timeout gets 503 + Retry-After.
    let started = Instant::now();
    let response = server
        .client
        .post(server.url("/v1/search"))
        .bearer_auth(&token)
        .json(&json!({ "query": "slow", "threshold": 0.0 }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn shutdown_ends_status_streams_instead_of_waiting_for_them() {
    let mut server = TestServer::start(Setup { workers: 0, ..Setup::fake() }).await;
    let (_user, token) = server.user("a@example.com").await;
    let bucket = server.create_bucket(&token, "b").await;
    // No workers: the document stays `processing`, so its stream would never end by itself.
    let doc = server.upload_text(&token, bucket["id"].as_str().expect("id"), "a.txt", "some text").await;
    let mut stream = server.call(reqwest::Method::GET, &format!("/v1/documents/{doc}/events"), &token).await;
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.expect("stream").expect("first event");
    assert!(String::from_utf8_lossy(&first).contains("processing"));

    let started = Instant::now();
    let stopped = server.shutdown();
    while stream.chunk().await.expect("stream ends cleanly").is_some() {}
    tokio::time::timeout(Duration::from_secs(5), stopped).await.expect("serve returns").expect("task").expect("io");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited for the stream");
}

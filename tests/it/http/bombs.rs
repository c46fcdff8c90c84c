//! Hostile but legal uploads cannot stall ingestion: a 10 MB HTML file of 2,000,000 nested
//! `<div>` and a 50 MB text with no line or sentence break, each uploaded twice, fail within
//! their limit with a clear reason, while a small text uploaded after them becomes ready and
//! the API answers throughout. Real server, real database, real model.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kb::http::Limits;

use super::{Setup, TestServer};
use crate::helpers::local_embedder;

const LIMIT: Duration = Duration::from_secs(15);

async fn upload_file(server: &TestServer, token: &str, bucket: &str, name: &str, mime: &str, body: Vec<u8>) -> String {
    let part = reqwest::multipart::Part::bytes(body).file_name(name.to_string()).mime_str(mime).expect("mime");
    let (status, body) = server.upload_form(token, bucket, reqwest::multipart::Form::new().part("file", part)).await;
    assert_eq!(status, 202, "{name}");
    body["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn bombs_fail_within_their_limit_and_a_small_file_still_becomes_ready() {
    let limits = Limits { max_upload_bytes: 60_000_000, ..Limits::default() };
    let setup = Setup { embedder: local_embedder().await, workers: 2, limits, extract_timeout: LIMIT, ..Setup::fake() };
    let server = Arc::new(TestServer::start(setup).await);
    let (_, token) = server.user("bomber@example.com").await;
    let bucket = server.create_bucket(&token, "bombs").await;
    let bucket = bucket["id"].as_str().expect("id").to_string();

    // The API keeps answering: the slowest of many small requests while the bombs go off.
    let slowest = Arc::new(AtomicU64::new(0));
    let probe = {
        let (server, token, slowest) = (server.clone(), token.clone(), slowest.clone());
        tokio::spawn(async move {
            loop {
                let started = Instant::now();
                let response = server.call(reqwest::Method::GET, "/v1/buckets", &token).await;
                assert_eq!(response.status(), 200);
                slowest.fetch_max(started.elapsed().as_millis() as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let nested = "<div>".repeat(2_000_000).into_bytes();
    let line = "the quick brown fox jumps over the lazy dog ".repeat(50_000_000 / 44).into_bytes();
    assert!(line.len() > 49_000_000 && !line.contains(&b'\n'));
    let mut bombs = Vec::new();
    for copy in 1..=2 {
        let html =
            upload_file(&server, &token, &bucket, &format!("nested-{copy}.html"), "text/html", nested.clone()).await;
        bombs.push((html, Instant::now()));
        let text = upload_file(&server, &token, &bucket, &format!("line-{copy}.txt"), "text/plain", line.clone()).await;
        bombs.push((text, Instant::now()));
    }
    let small_at = Instant::now();
    let small = server.upload_text(&token, &bucket, "small.txt", "Refunds are issued within thirty days.").await;

    let done = server.wait_done(&token, &small).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert!(small_at.elapsed() < Duration::from_secs(60), "the small file took {:?}", small_at.elapsed());
    for (id, uploaded) in &bombs {
        let done = server.wait_done(&token, id).await;
        let took = uploaded.elapsed();
        assert_eq!(done["status"], "failed", "{done}");
        let reason = done["processing_error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("within 15 seconds") || reason.contains("more than") || reason.contains("crashed"),
            "a clear reason: {reason:?}"
        );
        eprintln!("bomb {} failed after {took:?}: {reason}", done["file_name"]);
    }
    probe.abort();
    let slowest = Duration::from_millis(slowest.load(Ordering::SeqCst));
    eprintln!("slowest API answer during the bombs: {slowest:?}");
    assert!(slowest < Duration::from_secs(5), "the API stalled for {slowest:?}");
    assert_eq!(server.count("SELECT count(*) FROM knowledge_chunks WHERE document_id IN (SELECT id FROM knowledge_documents WHERE status = 'failed')").await, 0);
}

//! The full journey over HTTP: user, token, bucket, uploads, the status stream to `ready`,
//! search finds the uploaded passage, delete, search no longer finds it. Plus the
//! operations endpoints (health, readiness, metrics, OpenAPI, docs).

use std::time::Duration;

use kb::http::metrics::Metered;
use kb::store::Role;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use super::{FakeEmbedder, Setup, TestServer};
use crate::helpers::{local_embedder, repo_path};

/// Follows `/v1/documents/{id}/events` until the server ends the stream; returns the
/// statuses it announced, in order.
async fn follow_events(server: &TestServer, token: &str, document: &str) -> Vec<Value> {
    let mut response = server
        .client
        .get(server.url(&format!("/v1/documents/{document}/events")))
        .bearer_auth(token)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("test step").starts_with("text/event-stream"));
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("event stream") {
        buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8 events"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = "";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if name == "status" {
                events.push(serde_json::from_str(&data).expect("status event JSON"));
            }
        }
    }
    events
}

fn statuses(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["status"].as_str().expect("test step").to_string()).collect()
}

/// A distinctive line of a sample document, to search for: long, and free of markup, so
/// extraction keeps it as it is.
fn passage_of(path: &str) -> String {
    let text = std::fs::read_to_string(repo_path(path)).expect("test step");
    text.lines()
        .filter(|l| l.len() > 120 && !l.contains(['*', '_', '`', '[', '#', '|', '<']))
        .nth(1)
        .expect("a long line")
        .trim()
        .to_string()
}

/// Whether a search hit's text holds the passage (whitespace aside).
fn holds(hit: &Value, passage: &str) -> bool {
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    words(hit["chunk_content"].as_str().expect("test step")).contains(&words(passage))
}

async fn search(server: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let response = server
        .client
        .post(server.url("/v1/search"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "limit": 5, "threshold": 0.0 }))
        .send()
        .await
        .expect("test step");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON body");
    assert!(body["timings"]["search_ms"].is_number());
    body["hits"].as_array().expect("test step").clone()
}

async fn upload_file(server: &TestServer, token: &str, bucket: &str, path: &str, mime: &str) -> String {
    let bytes = std::fs::read(repo_path(path)).expect("test step");
    let name = std::path::Path::new(path).file_name().expect("test step").to_str().expect("test step").to_string();
    let form = Form::new()
        .part("file", Part::bytes(bytes).file_name(name).mime_str(mime).expect("test step"))
        .text("title", format!("uploaded {path}"));
    let (status, body) = server.upload_form(token, bucket, form).await;
    assert_eq!(status, 202, "{path}");
    assert_eq!(body["status"], "processing");
    body["id"].as_str().expect("test step").to_string()
}

/// The journey with the real local model, on a markdown and a PDF sample document.
#[tokio::test]
async fn journey_with_the_local_model() {
    let server = TestServer::start(Setup { embedder: local_embedder().await, workers: 2, ..Setup::fake() }).await;
    let (_user, token) = server.user("journey@example.com").await;
    let bucket = server.create_bucket(&token, "brand").await;
    let bucket_id = bucket["id"].as_str().expect("test step");
    assert_eq!(bucket["embedding_model"], server.embedder.model());

    let pdf = std::fs::read_dir(repo_path("sample_docs"))
        .expect("test step")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pdf"))
        .expect("a PDF in sample_docs");
    let pdf = format!("sample_docs/{}", pdf.file_name().expect("test step").to_str().expect("test step"));
    let md = "sample_docs/brand-voice-and-tone.md";
    let md_doc = upload_file(&server, &token, bucket_id, md, "text/markdown").await;
    let pdf_doc = upload_file(&server, &token, bucket_id, &pdf, "application/pdf").await;
    for doc in [&md_doc, &pdf_doc] {
        let events = follow_events(&server, &token, doc).await;
        assert_eq!(statuses(&events).last().map(String::as_str), Some("ready"), "{events:?}");
    }

    let passage = passage_of(md);
    let hits = search(&server, &token, &passage).await;
    assert_eq!(hits[0]["document_id"], md_doc.as_str(), "the passage's document ranks first: {hits:?}");
    assert!(holds(&hits[0], &passage), "the first hit holds the passage {passage:?}: {hits:?}");

    let response = server.call(reqwest::Method::DELETE, &format!("/v1/documents/{md_doc}"), &token).await;
    assert_eq!(response.status(), 204);
    let hits = search(&server, &token, &passage).await;
    assert!(hits.iter().all(|h| h["document_id"] != md_doc.as_str()), "deleted document still found");
    let listed: Vec<Value> = server.get_json(&format!("/v1/buckets/{bucket_id}/documents"), &token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], pdf_doc.as_str());
    assert!(listed[0]["chunk_count"].as_i64().expect("test step") > 0);
}

/// The same journey with the test-only embedder, on a text document; also re-ingestion,
/// a failing document, and the operations endpoints.
#[tokio::test]
async fn journey_with_the_fake_embedder_and_ops_endpoints() {
    let server = TestServer::start(Setup { embedder: Metered::wrap(FakeEmbedder::shared()), ..Setup::fake() }).await;
    let (_user, token) = server.user("journey@example.com").await;
    let bucket = server.create_bucket(&token, "support").await;
    let bucket_id = bucket["id"].as_str().expect("test step");

    let txt = "sample_docs/customer-support-sla.txt";
    let doc = upload_file(&server, &token, bucket_id, txt, "text/plain").await;
    let events = follow_events(&server, &token, &doc).await;
    // `processing` may already be over when the stream starts; `ready` always ends it.
    let seen = statuses(&events);
    assert_eq!(seen.last().map(String::as_str), Some("ready"), "{events:?}");
    assert!(seen[..seen.len() - 1].iter().all(|s| s == "processing"), "{events:?}");

    let passage = passage_of(txt);
    let hits = search(&server, &token, &passage).await;
    assert_eq!(hits[0]["document_id"], doc.as_str(), "{hits:?}");
    assert!(holds(&hits[0], &passage), "the first hit holds the passage {passage:?}: {hits:?}");

    // Re-ingest: back to processing, then ready again with the same chunks.
    let response = server
        .client
        .post(server.url(&format!("/v1/documents/{doc}/reingest")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("test step");
    assert_eq!(response.status(), 202);
    let done = server.wait_done(&token, &doc).await;
    assert_eq!(done["status"], "ready");
    assert!(done["chunk_count"].as_i64().expect("test step") > 0);

    // An empty document fails with a reason, and the stream says so.
    let empty = server.upload_text(&token, bucket_id, "empty.txt", "   ").await;
    let events = follow_events(&server, &token, &empty).await;
    let last = events.last().expect("test step");
    assert_eq!(last["status"], "failed");
    assert!(last["processing_error"].as_str().is_some_and(|e| !e.is_empty()));

    // Delete; the passage is gone from search, and the chunks from the table.
    let response = server.call(reqwest::Method::DELETE, &format!("/v1/documents/{doc}"), &token).await;
    assert_eq!(response.status(), 204);
    let hits = search(&server, &token, &passage).await;
    assert!(hits.iter().all(|h| h["document_id"] != doc.as_str()));
    assert_eq!(server.count("SELECT count(*) FROM public.knowledge_chunks").await, 0);
    let response = server.call(reqwest::Method::GET, &format!("/v1/documents/{doc}"), &token).await;
    assert_eq!(response.status(), 404);

    // Operations endpoints.
    let c = &server.client;
    assert_eq!(c.get(server.url("/healthz")).send().await.expect("request").status(), 200);
    let ready: Value = c.get(server.url("/readyz")).send().await.expect("request").json().await.expect("JSON body");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["model"], server.embedder.model());
    // Metrics are the operator's: refused without a token and for a user's token.
    assert_eq!(c.get(server.url("/metrics")).send().await.expect("request").status(), 401);
    assert_eq!(server.call(reqwest::Method::GET, "/metrics", &token).await.status(), 403);
    let service = server.token(None, Role::ServiceRole);
    let response = server.call(reqwest::Method::GET, "/metrics", &service).await;
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.expect("body");
    for name in [
        "kb_http_request_duration_seconds_bucket",
        "kb_ingest_queue_depth",
        "kb_embedding_calls_total",
        "kb_uploads_total",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}");
    }
    assert!(metrics.contains("route=\"/v1/search\""), "latency is labelled by route");
    let spec: Value =
        c.get(server.url("/openapi.json")).send().await.expect("request").json().await.expect("JSON body");
    assert!(spec["openapi"].as_str().expect("test step").starts_with("3."));
    assert_eq!(spec["externalDocs"]["url"], "/rest/v1/", "kb's document links the PostgREST-compatible one");
    let rest: Value = c.get(server.url("/rest/v1/")).send().await.expect("request").json().await.expect("JSON body");
    assert_eq!(rest["swagger"], "2.0");
    let docs = c.get(server.url("/docs")).send().await.expect("request");
    assert!(docs.headers()["content-type"].to_str().expect("test step").starts_with("text/html"));

    // Responses carry a request id; unknown routes are JSON 404s.
    let response = c.get(server.url("/nope")).send().await.expect("request");
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    let service = server.token(None, Role::ServiceRole);
    let response = c.get(server.url("/v1/buckets")).bearer_auth(&service).send().await.expect("request");
    assert_eq!(response.status(), 200);
}

//! Upload semantics: the same file uploaded many times at once stays one document with one
//! active job, and a job that keeps failing ends `failed` with its reason after its attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kb::chunk::Tokenizer;
use kb::embed::{EmbedError, Embedder};

use super::{FAKE_MODEL, Setup, TestServer};

#[tokio::test]
async fn the_same_file_uploaded_concurrently_ends_as_one_document() {
    let server = TestServer::start(Setup::fake()).await;
    let (_, token) = server.user("racer@example.com").await;
    let bucket = server.create_bucket(&token, "race").await;
    let bucket = bucket["id"].as_str().expect("id").to_string();
    let content = "Our brand voice is warm, clear and confident. ".repeat(40);

    let uploads = (0..8).map(|_| server.upload_text(&token, &bucket, "voice.md", &content));
    let ids: Vec<String> = futures::future::join_all(uploads).await;
    assert!(ids.iter().all(|id| id == &ids[0]), "one document for one file: {ids:?}");

    let done = server.wait_done(&token, &ids[0]).await;
    assert_eq!(done["status"], "ready", "{done}");
    // A re-run queued by an upload that arrived while the job ran may still be in flight.
    for _ in 0..100 {
        if server.count("SELECT count(*) FROM ingest_jobs WHERE status IN ('queued', 'running')").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(server.count("SELECT count(*) FROM ingest_jobs WHERE status IN ('queued', 'running')").await, 0);
    assert_eq!(server.count("SELECT count(*) FROM knowledge_documents").await, 1);
    assert_eq!(server.count("SELECT count(*) FROM knowledge_document_sources").await, 1);
    let chunks = server.count("SELECT count(*) FROM knowledge_chunks").await;
    let distinct = server.count("SELECT count(DISTINCT chunk_index) FROM knowledge_chunks").await;
    let max_index = server.count("SELECT coalesce(max(chunk_index), -1)::bigint FROM knowledge_chunks").await;
    assert!(chunks > 0);
    assert_eq!((distinct, max_index + 1), (chunks, chunks), "chunks duplicated or missing");

    // Then different bytes for the same path, all at once: one version wins whole, with no
    // chunk of any other, no version left pending and one stored source.
    let versions: Vec<String> = (0..8).map(|v| format!("Version {v} of the voice. ").repeat(30 + v)).collect();
    let uploads = versions.iter().map(|content| server.upload_text(&token, &bucket, "voice.md", content));
    let again: Vec<String> = futures::future::join_all(uploads).await;
    assert!(again.iter().all(|id| id == &ids[0]), "one document for one path: {again:?}");
    for _ in 0..300 {
        if server.count("SELECT count(*) FROM ingest_jobs WHERE status IN ('queued', 'running')").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let done = server.wait_done(&token, &ids[0]).await;
    assert_eq!(done["status"], "ready", "{done}");
    let winners: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT substring(content from 'Version [0-9]+') FROM knowledge_chunks")
            .fetch_all(&server.admin)
            .await
            .expect("versions");
    assert_eq!(winners.len(), 1, "chunks of several versions: {winners:?}");
    let winner = versions.iter().find(|v| v.starts_with(&format!("{} ", winners[0]))).expect("a submitted version");
    let (hash, pending): (String, Option<String>) =
        sqlx::query_as("SELECT content_hash, pending_hash FROM knowledge_documents")
            .fetch_one(&server.admin)
            .await
            .expect("document");
    assert_eq!(hash, kb::hash::bytes_hash(winner.as_bytes()), "the document is the version its chunks are");
    assert_eq!(pending, None, "a version left pending");
    assert_eq!(server.count("SELECT count(*) FROM knowledge_document_sources").await, 1);
}

/// An embedder whose provider is always down: every call is a transient failure.
struct Unavailable {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Embedder for Unavailable {
    fn model(&self) -> &str {
        FAKE_MODEL
    }
    fn dimensions(&self) -> usize {
        384
    }
    fn max_input_tokens(&self) -> usize {
        512
    }
    fn tokenizer(&self) -> Tokenizer {
        Tokenizer::cl100k().expect("cl100k tokenizer")
    }
    async fn embed(&self, _: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(EmbedError::Transient("stand-in provider unavailable (503)".into()))
    }
}

#[tokio::test]
async fn a_job_that_keeps_failing_ends_failed_with_the_reason() {
    let embedder = Arc::new(Unavailable { calls: AtomicUsize::new(0) });
    let server = TestServer::start(Setup { embedder: embedder.clone(), ..Setup::fake() }).await;
    let (_, token) = server.user("unlucky@example.com").await;
    let bucket = server.create_bucket(&token, "outage").await;
    let bucket = bucket["id"].as_str().expect("id").to_string();
    let id = server.upload_text(&token, &bucket, "note.txt", "A short note about campaign budgets.").await;

    let done = server.wait_done(&token, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["processing_error"].as_str().unwrap_or_default();
    assert!(error.contains("unavailable"), "the reason is kept: {error:?}");
    assert_eq!(embedder.calls.load(Ordering::SeqCst), 3, "tried max_attempts times, then gave up");
    assert_eq!(server.count("SELECT count(*) FROM ingest_jobs WHERE status = 'failed' AND attempts = 3").await, 1);
    assert_eq!(server.count("SELECT count(*) FROM knowledge_chunks").await, 0);
}

async fn upload_at(
    server: &TestServer,
    token: &str,
    bucket: &str,
    path: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let name = path.rsplit('/').next().unwrap_or(path).to_string();
    let part = reqwest::multipart::Part::bytes(body.to_vec()).file_name(name);
    let form = reqwest::multipart::Form::new().part("file", part).text("path", path.to_string());
    server.upload_form(token, bucket, form).await
}

#[tokio::test]
async fn files_that_share_a_base_name_are_two_documents_and_an_identical_upload_changes_nothing() {
    let server = TestServer::start(Setup::fake()).await;
    let (_, token) = server.user("folders@example.com").await;
    let bucket = server.create_bucket(&token, "folders").await;
    let bucket = bucket["id"].as_str().expect("id").to_string();
    let (a_status, a) = upload_at(&server, &token, &bucket, "docs/a/README.md", b"# A\n\nAlpha team notes.").await;
    let (b_status, b) = upload_at(&server, &token, &bucket, "docs/b/README.md", b"# B\n\nBeta team notes.").await;
    assert_eq!((a_status, b_status), (202, 202));
    assert_ne!(a["id"], b["id"], "two folders, two documents");
    let a_id = a["id"].as_str().expect("id");
    assert_eq!(server.wait_done(&token, a_id).await["status"], "ready");
    let record: serde_json::Value = server.get_json(&format!("/v1/documents/{a_id}"), &token).await;
    assert_eq!(record["path"], "upload/docs/a/README.md");

    let (status, again) = upload_at(&server, &token, &bucket, "docs/a/README.md", b"# A\n\nAlpha team notes.").await;
    assert_eq!((status, again["outcome"].as_str()), (200, Some("unchanged")), "{again}");
    let record: serde_json::Value = server.get_json(&format!("/v1/documents/{a_id}"), &token).await;
    assert_eq!((record["status"].as_str(), record["processing"].as_bool()), (Some("ready"), Some(false)), "{record}");
}

#[tokio::test]
async fn a_failed_reupload_keeps_the_old_version_searchable() {
    let server = TestServer::start(Setup::fake()).await;
    let (_, token) = server.user("reupload@example.com").await;
    let bucket = server.create_bucket(&token, "reupload").await;
    let bucket = bucket["id"].as_str().expect("id").to_string();
    let good = b"# Refunds\n\nAnnual plans are refunded in full within thirty days.";
    let (_, first) = upload_at(&server, &token, &bucket, "policy/refunds.md", good).await;
    let id = first["id"].as_str().expect("id").to_string();
    assert_eq!(server.wait_done(&token, &id).await["status"], "ready");
    let chunks = server.count("SELECT count(*) FROM knowledge_chunks").await;
    assert!(chunks > 0);

    let (status, second) =
        upload_at(&server, &token, &bucket, "policy/refunds.md", b"# Refunds\n\nbroken \xff bytes").await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["id"].as_str(), Some(id.as_str()), "the same document");
    let done = server.wait_done(&token, &id).await;
    assert_eq!(done["status"], "ready", "the good version stays: {done}");
    assert!(done["processing_error"].as_str().is_some_and(|e| e.contains("UTF-8")), "{done}");
    assert!(done["processing_error_at"].is_string(), "{done}");
    assert_eq!(server.count("SELECT count(*) FROM knowledge_chunks").await, chunks);

    let search = server
        .client
        .post(server.url("/v1/search"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({ "query": "Annual plans are refunded in full within thirty days.", "threshold": 0.0 }),
        )
        .send()
        .await
        .expect("search");
    let body: serde_json::Value = search.json().await.expect("json");
    let found = body["hits"].as_array().is_some_and(|hits| hits.iter().any(|h| h["document_id"] == id.as_str()));
    assert!(found, "the old version is still searchable: {body}");
}

#[tokio::test]
async fn the_newest_of_many_quick_uploads_wins() {
    let server = TestServer::start(Setup { workers: 2, ..Setup::fake() }).await;
    let (_, token) = server.user("newest@example.com").await;
    let bucket = server.create_bucket(&token, "newest").await;
    let bucket = bucket["id"].as_str().expect("id").to_string();
    let mut id = String::new();
    for version in 0..8 {
        let content = format!("Version {version} of the plan. ").repeat(30 + version);
        id = server.upload_text(&token, &bucket, "plan.md", &content).await;
    }
    for _ in 0..300 {
        if server.count("SELECT count(*) FROM ingest_jobs WHERE status IN ('queued', 'running')").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let done = server.wait_done(&token, &id).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(server.count("SELECT count(*) FROM knowledge_documents").await, 1);
    assert_eq!(server.count("SELECT count(*) FROM knowledge_document_sources").await, 1);
    assert_eq!(server.count("SELECT count(*) FROM knowledge_chunks WHERE content NOT LIKE 'Version 7 %'").await, 0);
    assert!(server.count("SELECT count(*) FROM knowledge_chunks").await > 0);
}

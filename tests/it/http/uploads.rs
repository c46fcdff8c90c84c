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

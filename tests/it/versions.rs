//! Document versions and fenced jobs: a new version never destroys the ready one, a worker
//! that lost its claim writes nothing, and the database refuses what the API refuses. Real
//! files, real model, real database.

use std::sync::Arc;
use std::time::Duration;

use kb::embed::Embedder;
use kb::ingest::{Outcome, Pass, Pipeline, WorkerSettings, job};
use kb::search::{Mode, SearchRequest};
use kb::store::{self, Role, documents, jobs};
use uuid::Uuid;

use crate::helpers::{Counting, Kb};

const GOOD: &str = "# Refunds\n\nAnnual plans are refunded in full within thirty days of purchase.\n";
const NEWER: &str = "# Refunds\n\nMonthly plans renew automatically and are never refunded after renewal.\n";

/// The chunk texts a search for `query` returns to the bucket's owner.
async fn hits(kb: &Kb, query: &str) -> Vec<String> {
    let request = SearchRequest {
        query: query.to_string(),
        bucket_id: Some(kb.bucket.id),
        bucket_type: None,
        campaign_id: None,
        limit: 5,
        threshold: 0.0,
        mode: Mode::Vector,
    };
    let response = kb::search::search(&kb.db.pool, kb.embedder.as_ref(), kb.owner, Role::Authenticated, &request)
        .await
        .expect("search");
    response.hits.into_iter().map(|h| h.chunk_content).collect()
}

async fn count(kb: &Kb, sql: &str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(id).fetch_one(&kb.db.pool).await.expect("count")
}

fn document_of(summary: &kb::ingest::Summary) -> Uuid {
    summary.documents[0].document_id.expect("a document")
}

#[tokio::test]
async fn a_failed_new_version_leaves_the_ready_one_searchable_and_shows_the_failure() {
    let kb = Kb::new("failed-version").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("refunds.md");
    std::fs::write(&path, GOOD).expect("write");
    let first = kb.ingest(std::slice::from_ref(&path)).await;
    assert!(matches!(first.documents[0].outcome, Outcome::Ready { .. }), "{first:?}");
    let id = document_of(&first);
    let chunks_before = count(&kb, "SELECT count(*) FROM knowledge_chunks WHERE document_id = $1", id).await;

    // New bytes that cannot be read: the version fails, the document does not.
    std::fs::write(&path, b"# Refunds\n\ninvalid \xff\xfe bytes").expect("write");
    let second = kb.ingest(std::slice::from_ref(&path)).await;
    let Outcome::Failed { error } = &second.documents[0].outcome else { panic!("{second:?}") };
    assert!(error.contains("UTF-8"), "{error}");

    let (status, failure, failed_at, processing): (
        String,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
        bool,
    ) = sqlx::query_as(
        "SELECT status, processing_error, processing_error_at, pending_hash IS NOT NULL
             FROM knowledge_documents WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&kb.db.pool)
    .await
    .expect("document");
    assert_eq!(status, "ready");
    assert!(failure.as_deref().is_some_and(|f| f.contains("UTF-8")), "{failure:?}");
    assert!(failed_at.is_some());
    assert!(!processing);
    assert_eq!(count(&kb, "SELECT count(*) FROM knowledge_chunks WHERE document_id = $1", id).await, chunks_before);
    assert!(hits(&kb, "refund of annual plans").await.iter().any(|h| h.contains("refunded in full")));
    // Only the ready version's bytes are kept.
    assert_eq!(count(&kb, "SELECT count(*) FROM knowledge_document_sources WHERE document_id = $1", id).await, 1);

    // Fixed bytes: the new version replaces the old, and the failure is cleared.
    std::fs::write(&path, NEWER).expect("write");
    let third = kb.ingest(std::slice::from_ref(&path)).await;
    assert!(matches!(third.documents[0].outcome, Outcome::Ready { .. }), "{third:?}");
    let texts = hits(&kb, "refund of plans").await;
    assert!(texts.iter().any(|h| h.contains("never refunded after renewal")), "{texts:?}");
    assert!(!texts.iter().any(|h| h.contains("refunded in full")), "the old version is gone: {texts:?}");
    let failure: Option<String> = sqlx::query_scalar("SELECT processing_error FROM knowledge_documents WHERE id = $1")
        .bind(id)
        .fetch_one(&kb.db.pool)
        .await
        .expect("document");
    assert_eq!(failure, None);
}

#[tokio::test]
async fn a_pending_version_keeps_the_ready_one_searchable_until_it_is_swapped_in() {
    let kb = Kb::new("pending-version").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("refunds.md");
    std::fs::write(&path, GOOD).expect("write");
    let id = document_of(&kb.ingest(std::slice::from_ref(&path)).await);

    // A new version submitted, not yet processed.
    let key = path.display().to_string();
    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    let submission = documents::Submission {
        bucket_id: kb.bucket.id,
        key: &key,
        file_name: "refunds.md",
        file_type: Some("md"),
        body: NEWER.as_bytes(),
        title: None,
    };
    let submitted = documents::submit(&mut tx, &submission).await.expect("submit");
    tx.commit().await.expect("commit");
    let documents::Submitted::Queued { document_id, .. } = submitted else { panic!("{submitted:?}") };
    assert_eq!(document_id, id, "the same document, a new version");

    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    let record = documents::document_record(&mut tx, id).await.expect("read").expect("visible");
    tx.commit().await.expect("commit");
    assert_eq!(record.status, "ready");
    assert!(record.processing, "a newer version is being processed");
    assert!(hits(&kb, "refund of annual plans").await.iter().any(|h| h.contains("refunded in full")));

    // The same bytes as the ready version again: the newest submission wins, nothing to do.
    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    let same = documents::Submission { body: GOOD.as_bytes(), ..submission.clone() };
    assert_eq!(
        documents::submit(&mut tx, &same).await.expect("submit"),
        documents::Submitted::Unchanged { document_id: id }
    );
    tx.commit().await.expect("commit");
    let settings = WorkerSettings::new(Duration::from_secs(30), Duration::from_secs(600));
    let pass = job::run_once(&kb.pipeline, &settings).await.expect("pass");
    assert_eq!(pass, Pass::Nothing { document_id: id });
    assert!(hits(&kb, "refund of annual plans").await.iter().any(|h| h.contains("refunded in full")));
    assert_eq!(count(&kb, "SELECT count(*) FROM knowledge_document_sources WHERE document_id = $1", id).await, 1);

    // The new version again, processed: swapped in whole.
    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    documents::submit(&mut tx, &submission).await.expect("submit");
    tx.commit().await.expect("commit");
    let pass = job::run_once(&kb.pipeline, &settings).await.expect("pass");
    assert!(matches!(pass, Pass::Done { document_id, .. } if document_id == id), "{pass:?}");
    let texts = hits(&kb, "refund of plans").await;
    assert!(texts.iter().any(|h| h.contains("never refunded after renewal")), "{texts:?}");
    assert!(!texts.iter().any(|h| h.contains("refunded in full")), "{texts:?}");
}

#[tokio::test]
async fn editing_a_file_into_a_copy_of_another_leaves_no_stale_chunks() {
    let kb = Kb::new("edited-duplicate").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.md"), dir.path().join("b.md"));
    std::fs::write(&a, GOOD).expect("write");
    std::fs::write(&b, NEWER).expect("write");
    let first = kb.ingest(&[a.clone(), b.clone()]).await;
    assert_eq!(first.documents_ready, 2, "{first:?}");

    std::fs::write(&b, GOOD).expect("write");
    let second = kb.ingest(std::slice::from_ref(&b)).await;
    let Outcome::Duplicate { of_path, .. } = &second.documents[0].outcome else { panic!("{second:?}") };
    assert_eq!(of_path.as_deref(), Some(a.display().to_string().as_str()));
    let texts = hits(&kb, "refund of plans").await;
    assert!(!texts.iter().any(|h| h.contains("never refunded after renewal")), "stale chunks of b: {texts:?}");
    let documents: i64 = sqlx::query_scalar("SELECT count(*) FROM knowledge_documents WHERE bucket_id = $1")
        .bind(kb.bucket.id)
        .fetch_one(&kb.db.pool)
        .await
        .expect("count");
    assert_eq!(documents, 1);
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_writes_nothing_and_the_document_is_ready_once() {
    let kb = Kb::new("fenced").await;
    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    let body = "Leases expire. ".repeat(400);
    let submission = documents::Submission {
        bucket_id: kb.bucket.id,
        key: "upload/leases.txt",
        file_name: "leases.txt",
        file_type: Some("txt"),
        body: body.as_bytes(),
        title: None,
    };
    let documents::Submitted::Queued { document_id, job_id } =
        documents::submit(&mut tx, &submission).await.expect("submit")
    else {
        panic!("queued")
    };
    tx.commit().await.expect("commit");

    // Worker A: a 1 s lease it never renews, and an embedder slower than that.
    let slow = Pipeline { embedder: Arc::new(Counting::new(Duration::from_secs(3)).await), ..kb.pipeline.clone() };
    let mut stuck = WorkerSettings::new(Duration::from_secs(1), Duration::from_secs(600));
    stuck.renew_every = Duration::from_secs(3600);
    let a = tokio::spawn(async move { job::run_once(&slow, &stuck).await });

    // Worker B takes the job over once A's lease has expired, and finishes first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fast = Pipeline { embedder: Arc::new(Counting::new(Duration::ZERO).await), ..kb.pipeline.clone() };
    let settings = WorkerSettings::new(Duration::from_secs(30), Duration::from_secs(600));
    let b = job::run_once(&fast, &settings).await.expect("pass");
    assert!(matches!(b, Pass::Done { .. }), "B: {b:?}");
    let a = a.await.expect("join").expect("pass");
    assert_eq!(a, Pass::Lost { document_id }, "A lost its claim and wrote nothing");

    let (status, failure): (String, Option<String>) =
        sqlx::query_as("SELECT status, processing_error FROM knowledge_documents WHERE id = $1")
            .bind(document_id)
            .fetch_one(&kb.db.pool)
            .await
            .expect("document");
    assert_eq!((status.as_str(), failure), ("ready", None));
    let (chunks, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT chunk_index) FROM knowledge_chunks WHERE document_id = $1")
            .bind(document_id)
            .fetch_one(&kb.db.pool)
            .await
            .expect("chunks");
    assert!(chunks > 1 && chunks == distinct, "{chunks} chunks, {distinct} distinct");
    let job_status: String = sqlx::query_scalar("SELECT status FROM ingest_jobs WHERE id = $1")
        .bind(job_id)
        .fetch_one(&kb.db.pool)
        .await
        .expect("job");
    assert_eq!(job_status, "done");
}

#[tokio::test]
async fn application_users_cannot_write_processing_state_or_chunks_and_bad_vectors_are_refused() {
    let kb = Kb::new("refusals").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("refunds.md");
    std::fs::write(&path, GOOD).expect("write");
    let id = document_of(&kb.ingest(std::slice::from_ref(&path)).await);

    let refused = |sql: &'static str| {
        let pool = kb.db.pool.clone();
        let owner = kb.owner;
        async move {
            let mut tx = store::begin_as(&pool, owner, Role::Authenticated).await.expect("begin");
            let result = sqlx::query(sql).bind(id).execute(&mut *tx).await;
            let code = match result {
                Err(sqlx::Error::Database(db)) => db.code().map(|c| c.to_string()),
                other => panic!("{sql}: allowed ({other:?})"),
            };
            assert_eq!(code.as_deref(), Some("42501"), "{sql}");
        }
    };
    refused("UPDATE knowledge_documents SET status = 'ready' WHERE id = $1").await;
    refused("UPDATE knowledge_documents SET content_hash = 'x' WHERE id = $1").await;
    refused("UPDATE knowledge_documents SET processing_error = NULL WHERE id = $1").await;
    refused(
        "INSERT INTO knowledge_chunks (document_id, bucket_id, embedding_model, chunk_index, content, content_hash, embedding)
         SELECT id, bucket_id, 'sentence-transformers/all-MiniLM-L6-v2', 99, 'x', 'x', '[1,2,3]' FROM knowledge_documents WHERE id = $1",
    )
    .await;
    refused("DELETE FROM knowledge_chunks WHERE document_id = $1").await;
    refused("INSERT INTO knowledge_document_sources (document_id, content_hash, body) VALUES ($1, 'x', 'x')").await;
    // What users may change: the title and metadata.
    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    sqlx::query("UPDATE knowledge_documents SET title = 'Renamed' WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("a title is the user's");
    tx.commit().await.expect("commit");

    // Whoever writes (service_role bypasses RLS), a vector must have its model's dimensions.
    let mut tx = store::begin_as(&kb.db.pool, Uuid::nil(), Role::ServiceRole).await.expect("begin");
    let bad = sqlx::query(
        "INSERT INTO knowledge_chunks (document_id, bucket_id, embedding_model, chunk_index, content, content_hash, embedding)
         SELECT id, bucket_id, $2, 99, 'x', 'x', '[1,2,3]' FROM knowledge_documents WHERE id = $1",
    )
    .bind(id)
    .bind(kb.embedder.model())
    .execute(&mut *tx)
    .await;
    let Err(sqlx::Error::Database(db)) = bad else { panic!("a 3-dimension vector was accepted: {bad:?}") };
    assert_eq!(db.code().as_deref(), Some("22000"), "{}", db.message());
    drop(tx);

    // A second model's chunks beside the first: every model's index builds.
    let mut conn = kb.db.pool.acquire().await.expect("conn");
    store::index::register_model(&mut conn, "test/three-dims", 3).await.expect("model");
    drop(conn);
    let other = crate::helpers::bucket(&kb.db.pool, kb.owner, "three", "general", "test/three-dims").await;
    let mut tx = store::begin_as(&kb.db.pool, Uuid::nil(), Role::ServiceRole).await.expect("begin");
    let new = documents::NewDocument {
        bucket_id: other.id,
        title: "three",
        file_name: "three.txt",
        file_type: Some("txt"),
        file_size: 0,
        upload_path: "three.txt",
        content_hash: "three",
        created_by: kb.owner,
    };
    let doc = documents::insert_ready(&mut tx, &new).await.expect("doc");
    let chunk = store::chunks::NewChunk {
        chunk_index: 0,
        content: "three".into(),
        content_hash: "three".into(),
        token_count: 1,
        embedding: pgvector::Vector::from(vec![1.0, 0.0, 0.0]),
        metadata: serde_json::json!({}),
    };
    store::chunks::replace_chunks(&mut tx, doc, other.id, "test/three-dims", &[chunk]).await.expect("chunk");
    tx.commit().await.expect("commit");
    let done =
        store::index::ensure_indexes(&kb.db.pool, Some(store::index::IndexMethod::Ivfflat)).await.expect("index");
    assert!(done.failures.is_empty(), "{:?}", done.failures);
    assert_eq!(done.builds.len(), 2, "{:?}", done.builds);

    let mut tx = store::begin_as(&kb.db.pool, Uuid::nil(), Role::ServiceRole).await.expect("begin");
    assert_eq!(jobs::queue_depth(&mut tx).await.expect("depth"), 0);
}

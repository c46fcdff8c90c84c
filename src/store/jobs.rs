//! Ingestion jobs: uploaded bytes stored with their document, and a queue of processing
//! requests claimed by workers with `FOR UPDATE SKIP LOCKED` and a lease. Uploads run as
//! the uploader (RLS); claiming and finishing run as `service_role`.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use super::documents::{self, NewDocument};

/// An uploaded file, about to become a `processing` document with a queued job.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub bucket_id: Uuid,
    pub title: &'a str,
    pub file_name: &'a str,
    pub file_type: Option<&'a str>,
    pub body: &'a [u8],
    pub uploaded_by: Uuid,
}

/// Records the upload durably, in the caller's transaction: the document (one per bucket and
/// file name, so the same file uploaded twice stays one document), its bytes, and a job.
/// Returns the document id; commit, and the upload survives any crash after.
pub async fn submit_upload(conn: &mut PgConnection, upload: &Upload<'_>) -> Result<Uuid, sqlx::Error> {
    let upload_path = format!("upload/{}", upload.file_name);
    let hash = crate::hash::bytes_hash(upload.body);
    let new = NewDocument {
        bucket_id: upload.bucket_id,
        title: upload.title,
        file_name: upload.file_name,
        file_type: upload.file_type,
        file_size: i64::try_from(upload.body.len()).unwrap_or(i64::MAX),
        upload_path: &upload_path,
        content_hash: &hash,
        created_by: upload.uploaded_by,
    };
    let id = documents::start_processing(&mut *conn, &new).await?;
    sqlx::query(
        "INSERT INTO public.knowledge_document_sources (document_id, body) VALUES ($1, $2)
         ON CONFLICT (document_id) DO UPDATE SET body = EXCLUDED.body, created_at = now()",
    )
    .bind(id)
    .bind(upload.body)
    .execute(&mut *conn)
    .await?;
    enqueue(conn, id).await?;
    Ok(id)
}

/// Queues a processing of a document the caller may see (see `enqueue_ingest_job`).
pub async fn enqueue(conn: &mut PgConnection, document_id: Uuid) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("SELECT public.enqueue_ingest_job($1)").bind(document_id).fetch_one(conn).await
}

/// The stored bytes of an uploaded document.
pub async fn source_of(conn: &mut PgConnection, document_id: Uuid) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT body FROM public.knowledge_document_sources WHERE document_id = $1")
        .bind(document_id)
        .fetch_optional(conn)
        .await
}

/// A job a worker holds the lease of.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub document_id: Uuid,
    pub requested_by: Uuid,
    /// Including this one.
    pub attempts: i32,
    pub max_attempts: i32,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Claims the oldest runnable job: queued and due, or running with an expired lease (its
/// worker died). Run as `service_role`.
pub async fn claim(
    conn: &mut PgConnection,
    worker_id: &str,
    lease: Duration,
) -> Result<Option<ClaimedJob>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE public.ingest_jobs j
         SET status = 'running', attempts = j.attempts + 1, worker_id = $1,
             lease_until = now() + make_interval(secs => $2)
         WHERE j.id = (
           SELECT id FROM public.ingest_jobs
           WHERE (status = 'queued' AND run_after <= now()) OR (status = 'running' AND lease_until < now())
           ORDER BY run_after
           LIMIT 1
           FOR UPDATE SKIP LOCKED)
         RETURNING j.id, j.document_id, j.requested_by, j.attempts, j.max_attempts",
    )
    .bind(worker_id)
    .bind(seconds(lease))
    .fetch_optional(conn)
    .await
}

/// Extends the lease of a job this worker still holds; false if it lost it.
pub async fn extend_lease(
    conn: &mut PgConnection,
    job_id: Uuid,
    worker_id: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE public.ingest_jobs SET lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND worker_id = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(worker_id)
    .bind(seconds(lease))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the job this worker holds done; if the document was submitted again meanwhile,
/// queues it once more.
pub async fn finish(conn: &mut PgConnection, job_id: Uuid, worker_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.ingest_jobs
         SET status = CASE WHEN rerun THEN 'queued' ELSE 'done' END,
             attempts = CASE WHEN rerun THEN 0 ELSE attempts END,
             rerun = false, lease_until = NULL, run_after = now(), last_error = NULL
         WHERE id = $1 AND worker_id = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(worker_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives the job up for good, with the reason.
/// What giving a job up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    /// The job failed for good: its document should be marked failed.
    Failed,
    /// The document was submitted again meanwhile: the job is queued for the new version.
    Requeued,
    /// This worker no longer holds the job (its lease expired and another took it).
    Lost,
}

/// Gives up the job this worker holds, with the reason.
pub async fn fail(conn: &mut PgConnection, job_id: Uuid, worker_id: &str, error: &str) -> Result<Given, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE public.ingest_jobs
         SET status = CASE WHEN rerun THEN 'queued' ELSE 'failed' END,
             attempts = CASE WHEN rerun THEN 0 ELSE attempts END,
             rerun = false, lease_until = NULL, last_error = $3, run_after = now()
         WHERE id = $1 AND worker_id = $2 AND status = 'running'
         RETURNING status",
    )
    .bind(job_id)
    .bind(worker_id)
    .bind(error)
    .fetch_optional(conn)
    .await?;
    Ok(match status.as_deref() {
        Some("failed") => Given::Failed,
        Some(_) => Given::Requeued,
        None => Given::Lost,
    })
}

/// Puts the job back in the queue to be tried again after `delay`.
/// Puts the job this worker holds back in the queue, to be tried again after `delay`.
pub async fn retry_later(
    conn: &mut PgConnection,
    job_id: Uuid,
    worker_id: &str,
    error: &str,
    delay: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.ingest_jobs
         SET status = 'queued', lease_until = NULL, last_error = $3,
             run_after = now() + make_interval(secs => $4)
         WHERE id = $1 AND worker_id = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(worker_id)
    .bind(error)
    .bind(seconds(delay))
    .execute(conn)
    .await?;
    Ok(())
}

/// Hands the running jobs of a stopping worker back to the queue, not counting the attempt.
pub async fn release(conn: &mut PgConnection, worker_id: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE public.ingest_jobs
         SET status = 'queued', attempts = greatest(attempts - 1, 0), lease_until = NULL, run_after = now()
         WHERE worker_id = $1 AND status = 'running'",
    )
    .bind(worker_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Jobs waiting or running.
pub async fn queue_depth(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM public.ingest_jobs WHERE status IN ('queued', 'running')")
        .fetch_one(conn)
        .await
}

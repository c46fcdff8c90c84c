//! Ingestion jobs: a queue of processing requests claimed by workers with
//! `FOR UPDATE SKIP LOCKED`, a lease, and a fencing token per claim (`hold`). Submissions
//! (`documents::submit`) queue them as the uploader; claiming and finishing run as
//! `service_role`.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

/// Queues a processing of a document the caller may see (see `enqueue_ingest_job`).
pub async fn enqueue(conn: &mut PgConnection, document_id: Uuid) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("SELECT public.enqueue_ingest_job($1)").bind(document_id).fetch_one(conn).await
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
    /// This claim's fencing token: the job's writes commit only while it is the job's.
    pub token: Uuid,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Claims a runnable job — queued and due, or running with an expired lease (its worker
/// died) — fairly across owners: the owner with the fewest jobs running goes first, then the
/// oldest job. Run as `service_role`.
pub async fn claim(
    conn: &mut PgConnection,
    worker_id: &str,
    lease: Duration,
) -> Result<Option<ClaimedJob>, sqlx::Error> {
    let pick = "SELECT c.id FROM public.ingest_jobs c
           LEFT JOIN (SELECT requested_by, count(*) AS n FROM public.ingest_jobs
                      WHERE status = 'running' AND lease_until >= now() GROUP BY requested_by) r
             ON r.requested_by = c.requested_by
           WHERE (c.status = 'queued' AND c.run_after <= now()) OR (c.status = 'running' AND c.lease_until < now())
           ORDER BY coalesce(r.n, 0), c.run_after
           LIMIT 1
           FOR UPDATE OF c SKIP LOCKED";
    claim_picked(conn, pick, worker_id, lease, None).await
}

/// Claims one given job if it is runnable (the command line processes the jobs it submitted).
pub async fn claim_job(
    conn: &mut PgConnection,
    job_id: Uuid,
    worker_id: &str,
    lease: Duration,
) -> Result<Option<ClaimedJob>, sqlx::Error> {
    let pick = "SELECT c.id FROM public.ingest_jobs c
           WHERE c.id = $3 AND (c.status = 'queued' OR (c.status = 'running' AND c.lease_until < now()))
           FOR UPDATE SKIP LOCKED";
    claim_picked(conn, pick, worker_id, lease, Some(job_id)).await
}

/// Claims the job `pick` selects ($3: `job_id`): a new fencing token and a lease.
async fn claim_picked(
    conn: &mut PgConnection,
    pick: &str,
    worker_id: &str,
    lease: Duration,
    job_id: Option<Uuid>,
) -> Result<Option<ClaimedJob>, sqlx::Error> {
    let sql = format!(
        "UPDATE public.ingest_jobs j
         SET status = 'running', attempts = j.attempts + 1, worker_id = $1, claim_token = gen_random_uuid(),
             lease_until = now() + make_interval(secs => $2)
         WHERE j.id = ({pick})
         RETURNING j.id, j.document_id, j.requested_by, j.attempts, j.max_attempts, j.claim_token AS token"
    );
    let query = sqlx::query_as(&sql).bind(worker_id).bind(seconds(lease));
    match job_id {
        Some(id) => query.bind(id).fetch_optional(conn).await,
        None => query.fetch_optional(conn).await,
    }
}

/// Locks the job for the rest of this transaction if the claim still holds: every write a
/// job makes runs after this in the same transaction, so a worker whose lease was lost (and
/// the job claimed again) writes nothing. Run as `service_role`.
pub async fn hold(conn: &mut PgConnection, job: &ClaimedJob) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT public.hold_ingest_claim($1, $2)").bind(job.id).bind(job.token).fetch_one(conn).await
}

/// A job's state, for a caller waiting on it: (status, last_error).
pub async fn job_status(
    conn: &mut PgConnection,
    job_id: Uuid,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT status, last_error FROM public.ingest_jobs WHERE id = $1")
        .bind(job_id)
        .fetch_optional(conn)
        .await
}

/// Extends the lease of a job this worker still holds; false if it lost it.
pub async fn extend_lease(conn: &mut PgConnection, job: &ClaimedJob, lease: Duration) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE public.ingest_jobs SET lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND claim_token = $2 AND status = 'running'",
    )
    .bind(job.id)
    .bind(job.token)
    .bind(seconds(lease))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the job this claim holds done; if the document was submitted again meanwhile,
/// queues it once more.
pub async fn finish(conn: &mut PgConnection, job: &ClaimedJob) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.ingest_jobs
         SET status = CASE WHEN rerun THEN 'queued' ELSE 'done' END,
             attempts = CASE WHEN rerun THEN 0 ELSE attempts END,
             finished_at = CASE WHEN rerun THEN NULL ELSE now() END,
             rerun = false, lease_until = NULL, run_after = now(), last_error = NULL
         WHERE id = $1 AND claim_token = $2 AND status = 'running'",
    )
    .bind(job.id)
    .bind(job.token)
    .execute(conn)
    .await?;
    Ok(())
}

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

/// Gives up the job this claim holds, with the reason.
pub async fn fail(conn: &mut PgConnection, job: &ClaimedJob, error: &str) -> Result<Given, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE public.ingest_jobs
         SET status = CASE WHEN rerun THEN 'queued' ELSE 'failed' END,
             attempts = CASE WHEN rerun THEN 0 ELSE attempts END,
             finished_at = CASE WHEN rerun THEN NULL ELSE now() END,
             rerun = false, lease_until = NULL, last_error = $3, run_after = now()
         WHERE id = $1 AND claim_token = $2 AND status = 'running'
         RETURNING status",
    )
    .bind(job.id)
    .bind(job.token)
    .bind(error)
    .fetch_optional(conn)
    .await?;
    Ok(match status.as_deref() {
        Some("failed") => Given::Failed,
        Some(_) => Given::Requeued,
        None => Given::Lost,
    })
}

/// Puts the job this claim holds back in the queue, to be tried again after `delay`.
pub async fn retry_later(
    conn: &mut PgConnection,
    job: &ClaimedJob,
    error: &str,
    delay: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.ingest_jobs
         SET status = 'queued', lease_until = NULL, last_error = $3,
             run_after = now() + make_interval(secs => $4)
         WHERE id = $1 AND claim_token = $2 AND status = 'running'",
    )
    .bind(job.id)
    .bind(job.token)
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

/// Deletes jobs that finished (done or failed) longer than `older_than` ago.
pub async fn delete_finished(conn: &mut PgConnection, older_than: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM public.ingest_jobs
         WHERE status IN ('done', 'failed') AND finished_at < now() - make_interval(secs => $1)",
    )
    .bind(seconds(older_than))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// What an owner holds: documents, stored bytes, and jobs queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Usage {
    pub documents: i64,
    pub stored_bytes: i64,
    pub active_jobs: i64,
}

/// The usage of `owner`, counted for quotas. Run as `service_role` or the owner.
pub async fn usage(conn: &mut PgConnection, owner: Uuid) -> Result<Usage, sqlx::Error> {
    sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM public.knowledge_documents d
            JOIN public.knowledge_buckets b ON b.id = d.bucket_id WHERE b.created_by = $1) AS documents,
           (SELECT coalesce(sum(octet_length(s.body)), 0)::bigint FROM public.knowledge_document_sources s
            JOIN public.knowledge_documents d ON d.id = s.document_id
            JOIN public.knowledge_buckets b ON b.id = d.bucket_id WHERE b.created_by = $1) AS stored_bytes,
           (SELECT count(*) FROM public.ingest_jobs j
            WHERE j.requested_by = $1 AND j.status IN ('queued', 'running')) AS active_jobs",
    )
    .bind(owner)
    .fetch_one(conn)
    .await
}

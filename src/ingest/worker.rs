//! Ingestion workers: claim queued jobs (uploads over HTTP, re-ingestion requests), process
//! the stored bytes through the pipeline as the document's owner, and record the outcome.
//! A job holds a lease that the worker keeps extending while it works; a worker that dies
//! stops extending it, and another worker claims the job once it expires. Transient failures
//! are retried with backoff up to the job's `max_attempts`; the rest fail the document.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::{IngestError, Pipeline, Source};
use crate::store::{self, Role, buckets, documents, jobs};

/// How a worker polls and leases.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Identifies this worker in `ingest_jobs.worker_id`.
    pub id: String,
    pub lease: Duration,
    /// Wait between polls of an empty queue.
    pub idle_poll: Duration,
}

impl WorkerSettings {
    pub fn new(lease: Duration) -> WorkerSettings {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "kb".into());
        WorkerSettings {
            id: format!("{host}:{}:{}", std::process::id(), Uuid::new_v4().simple()),
            lease,
            idle_poll: Duration::from_millis(250),
        }
    }
}

/// What one pass of a worker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    Idle,
    Done { document_id: Uuid },
    Failed { document_id: Uuid, error: String },
    Retrying { document_id: Uuid, error: String },
}

impl Pass {
    /// The label of this pass in the `kb_ingest_jobs_total` metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Pass::Idle => "idle",
            Pass::Done { .. } => "done",
            Pass::Failed { .. } => "failed",
            Pass::Retrying { .. } => "retrying",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Runs jobs until `shutdown` turns true; then hands the job in hand (if its processing is
/// cut short) back to the queue.
pub async fn run(pipeline: Pipeline, settings: WorkerSettings, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(worker = %settings.id, "ingestion worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let pass = tokio::select! {
            pass = run_once(&pipeline, &settings) => pass,
            _ = shutdown.changed() => break,
        };
        match pass {
            Ok(Pass::Idle) => {
                tokio::select! {
                    _ = tokio::time::sleep(settings.idle_poll) => {}
                    _ = shutdown.changed() => break,
                }
            }
            Ok(pass) => {
                metrics::counter!("kb_ingest_jobs_total", "outcome" => pass.outcome()).increment(1);
                tracing::debug!(?pass, "job finished");
            }
            Err(e) => {
                tracing::warn!(error = %e, "worker pass failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    match release(&pipeline.pool, &settings.id).await {
        Ok(n) if n > 0 => tracing::info!(jobs = n, "handed running jobs back to the queue"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not hand jobs back; their leases will expire"),
    }
}

async fn service_tx(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    store::begin_as(pool, Uuid::nil(), Role::ServiceRole).await
}

async fn release(pool: &PgPool, worker_id: &str) -> Result<u64, sqlx::Error> {
    let mut tx = service_tx(pool).await?;
    let n = jobs::release(&mut tx, worker_id).await?;
    tx.commit().await?;
    Ok(n)
}

/// Claims and processes at most one job.
pub async fn run_once(pipeline: &Pipeline, settings: &WorkerSettings) -> Result<Pass, WorkerError> {
    let pool = &pipeline.pool;
    let job = {
        let mut tx = service_tx(pool).await?;
        let job = jobs::claim(&mut tx, &settings.id, settings.lease).await?;
        tx.commit().await?;
        match job {
            Some(job) => job,
            None => return Ok(Pass::Idle),
        }
    };
    let document_id = job.document_id;
    let owner = job.requested_by;

    if job.attempts > job.max_attempts {
        let error = format!("gave up after {} attempts", job.max_attempts);
        fail(pipeline, settings, &job, &error).await?;
        return Ok(Pass::Failed { document_id, error });
    }

    let loaded = {
        let mut tx = store::begin_as(pool, owner, Role::Authenticated).await?;
        let document = documents::document_by_id(&mut tx, document_id).await?;
        let bucket = match &document {
            Some(d) => buckets::bucket_by_id(&mut tx, d.bucket_id).await?,
            None => None,
        };
        let body = jobs::source_of(&mut tx, document_id).await?;
        tx.commit().await?;
        match (document, bucket, body) {
            (Some(d), Some(b), Some(body)) => Some((d, b, body)),
            _ => None,
        }
    };
    let Some((document, bucket, body)) = loaded else {
        // Deleted meanwhile, or uploaded without stored bytes: nothing to process.
        let error = "the document or its uploaded bytes no longer exist".to_string();
        fail(pipeline, settings, &job, &error).await?;
        return Ok(Pass::Failed { document_id, error });
    };
    if bucket.embedding_model != pipeline.embedder.model() {
        let error = format!(
            "bucket {:?} is embedded with {}, but this worker runs {}",
            bucket.name,
            bucket.embedding_model,
            pipeline.embedder.model()
        );
        fail(pipeline, settings, &job, &error).await?;
        return Ok(Pass::Failed { document_id, error });
    }

    // A title the uploader gave wins over the one extraction finds; the file-name default
    // does not.
    let file_name = document.file_name.as_deref().unwrap_or("");
    let given = document.title != Source::named(file_name, None).default_title();
    let source = Source::named(file_name, given.then(|| document.title.clone()));
    let processing = pipeline.process(owner, &bucket, document_id, &source, body);
    let outcome = with_lease(pool, &job, settings, processing).await;
    match outcome {
        Some(Ok(_)) => {
            let mut tx = service_tx(pool).await?;
            jobs::finish(&mut tx, job.id, &settings.id).await?;
            tx.commit().await?;
            Ok(Pass::Done { document_id })
        }
        Some(Err(IngestError::Superseded)) => {
            // A newer upload replaced the bytes: the job's rerun flag queues it again.
            let mut tx = service_tx(pool).await?;
            jobs::finish(&mut tx, job.id, &settings.id).await?;
            tx.commit().await?;
            Ok(Pass::Retrying { document_id, error: IngestError::Superseded.to_string() })
        }
        Some(Err(e)) if e.is_transient() && job.attempts < job.max_attempts => {
            let error = e.to_string();
            let delay = Duration::from_secs(2u64.pow(job.attempts.clamp(1, 8) as u32));
            tracing::warn!(%error, ?delay, attempt = job.attempts, "transient failure; retrying later");
            let mut tx = service_tx(pool).await?;
            jobs::retry_later(&mut tx, job.id, &settings.id, &error, delay).await?;
            tx.commit().await?;
            Ok(Pass::Retrying { document_id, error })
        }
        Some(Err(e)) => {
            let error = e.to_string();
            fail(pipeline, settings, &job, &error).await?;
            Ok(Pass::Failed { document_id, error })
        }
        None => {
            // The lease was lost (another worker took the job over): leave the job to it.
            let error = "lease lost".to_string();
            Ok(Pass::Retrying { document_id, error })
        }
    }
}

/// Gives the job up and, in the same transaction, marks its document failed, unless this
/// worker lost the job to another or a newer version of the document is queued.
async fn fail(
    pipeline: &Pipeline,
    settings: &WorkerSettings,
    job: &jobs::ClaimedJob,
    error: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = service_tx(&pipeline.pool).await?;
    if jobs::fail(&mut tx, job.id, &settings.id, error).await? == jobs::Given::Failed {
        documents::mark_failed(&mut tx, job.document_id, error).await?;
    }
    tx.commit().await
}

/// Runs `work` while extending the job's lease every third of its length. None if the lease
/// was lost, in which case `work` is dropped unfinished (its transaction rolls back).
async fn with_lease<T>(
    pool: &PgPool,
    job: &jobs::ClaimedJob,
    settings: &WorkerSettings,
    work: impl std::future::Future<Output = Result<T, IngestError>>,
) -> Option<Result<T, IngestError>> {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(settings.lease / 3);
    ticker.tick().await;
    loop {
        tokio::select! {
            result = &mut work => return Some(result),
            _ = ticker.tick() => {
                let extended = async {
                    let mut tx = service_tx(pool).await?;
                    let held = jobs::extend_lease(&mut tx, job.id, &settings.id, settings.lease).await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(held)
                };
                match extended.await {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(e) => tracing::warn!(error = %e, "could not extend the job lease"),
                }
            }
        }
    }
}

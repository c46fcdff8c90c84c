//! Processing one claimed job: the document's pending version -> prepared chunks -> vectors
//! (reused by hash, or embedded) -> the version made ready, its chunks swapped in atomically.
//! The one way a document is ingested: workers run it on the jobs they claim, `kb ingest` on
//! the jobs its submissions queued.
//!
//! Every write runs as `service_role` in a transaction that first holds the claim
//! (`jobs::hold`): a worker whose lease was lost writes nothing, whatever it computed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pgvector::Vector;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{IngestError, Pipeline, Source};
use crate::extract::ExtractError;
use crate::store::{self, Bucket, Role, buckets, chunks::NewChunk, documents, jobs};

/// How a worker leases the jobs it claims.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Identifies this worker in `ingest_jobs.worker_id`.
    pub id: String,
    pub lease: Duration,
    /// How often the lease is renewed while a job runs (a third of the lease by default).
    pub renew_every: Duration,
    /// Wall-clock limit of one job: past it the job fails and its lease is not renewed.
    pub job_timeout: Duration,
    /// Wait between polls of an empty queue.
    pub idle_poll: Duration,
}

impl WorkerSettings {
    pub fn new(lease: Duration, job_timeout: Duration) -> WorkerSettings {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "kb".into());
        WorkerSettings {
            id: format!("{host}:{}:{}", std::process::id(), Uuid::new_v4().simple()),
            lease,
            renew_every: lease / 3,
            job_timeout,
            idle_poll: Duration::from_millis(250),
        }
    }
}

/// What processing a job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// The queue had nothing to run.
    Idle,
    /// The version is ready and searchable.
    Done { document_id: Uuid, chunks: usize, embedded: usize, reused: usize },
    /// Nothing was pending any more (a newer submission restored the ready version).
    Nothing { document_id: Uuid },
    /// The version failed for good; a ready document keeps its ready version.
    Failed { document_id: Uuid, error: String },
    /// A transient failure: the job runs again after `delay`.
    Retrying { document_id: Uuid, error: String, delay: Duration },
    /// A newer version was submitted meanwhile; the job runs again for it.
    Superseded { document_id: Uuid },
    /// The claim was lost (the lease expired and another worker took the job): nothing written.
    Lost { document_id: Uuid },
}

impl Pass {
    /// The label of this pass in the `kb_ingest_jobs_total` metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Pass::Idle => "idle",
            Pass::Done { .. } => "done",
            Pass::Nothing { .. } => "nothing",
            Pass::Failed { .. } => "failed",
            Pass::Retrying { .. } => "retrying",
            Pass::Superseded { .. } => "superseded",
            Pass::Lost { .. } => "lost",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

async fn service_tx(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    store::begin_as(pool, Uuid::nil(), Role::ServiceRole).await
}

/// What a version's processing produced, before it is written.
struct Written {
    chunks: usize,
    embedded: usize,
    reused: usize,
}

/// Processes a job this worker claimed, to its end: ready, failed, retried later, or given
/// up because the claim was lost.
pub async fn process(
    pipeline: &Pipeline,
    settings: &WorkerSettings,
    job: &jobs::ClaimedJob,
) -> Result<Pass, WorkerError> {
    let document_id = job.document_id;
    if job.attempts > job.max_attempts {
        let error = format!("gave up after {} attempts", job.max_attempts);
        return fail(pipeline, job, None, &error).await;
    }
    let loaded = {
        let mut tx = service_tx(&pipeline.pool).await?;
        let pending = documents::pending_version(&mut tx, document_id).await?;
        let bucket = match &pending {
            Some(p) => buckets::bucket_by_id(&mut tx, p.bucket_id).await?,
            None => None,
        };
        tx.commit().await?;
        pending.zip(bucket)
    };
    let Some((pending, bucket)) = loaded else {
        // Deleted meanwhile, or nothing pending (a newer submission restored the ready bytes).
        let mut tx = service_tx(&pipeline.pool).await?;
        if !jobs::hold(&mut tx, job).await? {
            return Ok(Pass::Lost { document_id });
        }
        jobs::finish(&mut tx, job).await?;
        tx.commit().await?;
        return Ok(Pass::Nothing { document_id });
    };
    let hash = pending.content_hash.clone();
    if bucket.embedding_model != pipeline.embedder.model() {
        let error = format!(
            "bucket {:?} is embedded with {}, but this worker runs {}",
            bucket.name,
            bucket.embedding_model,
            pipeline.embedder.model()
        );
        return fail(pipeline, job, Some(&hash), &error).await;
    }

    let work = write_version(pipeline, job, &bucket, pending);
    match with_lease(&pipeline.pool, job, settings, work).await {
        Leased::Finished(Ok(w)) => {
            Ok(Pass::Done { document_id, chunks: w.chunks, embedded: w.embedded, reused: w.reused })
        }
        Leased::Finished(Err(IngestError::Superseded)) => {
            let mut tx = service_tx(&pipeline.pool).await?;
            if !jobs::hold(&mut tx, job).await? {
                return Ok(Pass::Lost { document_id });
            }
            // The rerun flag queues the job again for the newer version.
            jobs::finish(&mut tx, job).await?;
            tx.commit().await?;
            Ok(Pass::Superseded { document_id })
        }
        Leased::Finished(Err(IngestError::LeaseLost)) | Leased::Lost => Ok(Pass::Lost { document_id }),
        Leased::Finished(Err(e)) if e.is_transient() && job.attempts < job.max_attempts => {
            tracing::debug!(document = %document_id, error = ?e, "transient failure");
            let error = e.to_string();
            let delay = Duration::from_secs(2u64.pow(job.attempts.clamp(1, 8) as u32));
            tracing::warn!(%error, ?delay, attempt = job.attempts, "transient failure; retrying later");
            let mut tx = service_tx(&pipeline.pool).await?;
            if !jobs::hold(&mut tx, job).await? {
                return Ok(Pass::Lost { document_id });
            }
            jobs::retry_later(&mut tx, job, &error, delay).await?;
            tx.commit().await?;
            Ok(Pass::Retrying { document_id, error, delay })
        }
        Leased::Finished(Err(e)) => {
            tracing::warn!(document = %document_id, error = ?e, "processing failed");
            fail(pipeline, job, Some(&hash), &e.to_string()).await
        }
        Leased::TimedOut => {
            let error = format!("processing took longer than {} s", settings.job_timeout.as_secs());
            fail(pipeline, job, Some(&hash), &error).await
        }
    }
}

/// Gives the job up and records the failure on its version, in one transaction, unless the
/// claim was lost or a newer version is queued (then the document is left alone).
async fn fail(
    pipeline: &Pipeline,
    job: &jobs::ClaimedJob,
    hash: Option<&str>,
    error: &str,
) -> Result<Pass, WorkerError> {
    let document_id = job.document_id;
    tracing::warn!(document = %document_id, %error, "document failed");
    let mut tx = service_tx(&pipeline.pool).await?;
    if !jobs::hold(&mut tx, job).await? {
        return Ok(Pass::Lost { document_id });
    }
    match jobs::fail(&mut tx, job, error).await? {
        jobs::Given::Failed => documents::record_failure(&mut tx, document_id, hash, error).await?,
        jobs::Given::Requeued => {
            tx.commit().await?;
            return Ok(Pass::Superseded { document_id });
        }
        jobs::Given::Lost => return Ok(Pass::Lost { document_id }),
    }
    tx.commit().await?;
    Ok(Pass::Failed { document_id, error: error.to_string() })
}

/// Extracts, chunks, embeds and writes the pending version, making it the ready one.
async fn write_version(
    pipeline: &Pipeline,
    job: &jobs::ClaimedJob,
    bucket: &Bucket,
    pending: documents::PendingVersion,
) -> Result<Written, IngestError> {
    let file_name = pending.file_name.clone().unwrap_or_default();
    let source = Source::named(&file_name, pending.title.clone());
    let prepared = pipeline.prepare(&source, pending.body).await?;
    if prepared.chunks.is_empty() {
        return Err(ExtractError::Empty.into());
    }

    let model = pipeline.embedder.model().to_string();
    let hashes: Vec<String> = prepared.chunks.iter().map(|c| c.hash.clone()).collect();
    let mut vectors: HashMap<String, Vector> = {
        let mut tx = service_tx(&pipeline.pool).await?;
        let known = store::chunks::embeddings_by_hash(&mut tx, bucket.id, &model, &hashes).await?;
        tx.commit().await?;
        known
    };
    let reused = prepared.chunks.iter().filter(|c| vectors.contains_key(&c.hash)).count();

    // Each distinct new text is embedded once, even if it repeats within the document.
    let mut seen = HashSet::new();
    let missing: Vec<(String, String)> = prepared
        .chunks
        .iter()
        .filter(|c| !vectors.contains_key(&c.hash) && seen.insert(c.hash.clone()))
        .map(|c| (c.hash.clone(), c.chunk.text.clone()))
        .collect();
    let texts: Vec<String> = missing.iter().map(|(_, text)| text.clone()).collect();
    let embedded = texts.len();
    if !texts.is_empty() {
        let fresh = pipeline.embedder.embed(&texts).await?;
        let expected = pipeline.embedder.dimensions();
        if fresh.len() != texts.len() || fresh.iter().any(|v| v.len() != expected) {
            let dims = fresh.iter().map(Vec::len).find(|&d| d != expected).unwrap_or(expected);
            return Err(IngestError::EmbeddingShape { got: fresh.len(), dims, want: texts.len(), expected });
        }
        for ((hash, _), vector) in missing.into_iter().zip(fresh) {
            vectors.insert(hash, Vector::from(vector));
        }
    }

    let mut rows = Vec::with_capacity(prepared.chunks.len());
    for c in &prepared.chunks {
        let Some(embedding) = vectors.get(&c.hash) else {
            unreachable!("every chunk hash was either found or embedded above")
        };
        rows.push(NewChunk {
            chunk_index: i32::try_from(c.chunk.index).unwrap_or(i32::MAX),
            content: c.chunk.text.clone(),
            content_hash: c.hash.clone(),
            token_count: i32::try_from(c.chunk.token_count).unwrap_or(i32::MAX),
            embedding: embedding.clone(),
            metadata: c.chunk.metadata.clone(),
        });
    }

    let title = match (&source.title, prepared.title.clone()) {
        (Some(given), _) => given.clone(),
        (None, Some(found)) => found,
        (None, None) => source.default_title(),
    };
    let mut tx = service_tx(&pipeline.pool).await?;
    if !jobs::hold(&mut tx, job).await? {
        return Err(IngestError::LeaseLost);
    }
    let ready = documents::ReadyDocument {
        title: &title,
        content: &prepared.content,
        summary: &prepared.summary,
        metadata: serde_json::json!({ "chunks": rows.len(), "embedding_model": model }),
        source_hash: &pending.content_hash,
    };
    // The version check first: a superseded version writes no chunks at all.
    if !documents::make_ready(&mut tx, pending.document_id, &ready).await? {
        return Err(IngestError::Superseded);
    }
    store::chunks::replace_chunks(&mut tx, pending.document_id, bucket.id, &model, &rows).await?;
    jobs::finish(&mut tx, job).await?;
    tx.commit().await?;
    tracing::debug!(chunks = rows.len(), embedded, reused, "document ready");
    Ok(Written { chunks: rows.len(), embedded, reused })
}

enum Leased<T> {
    Finished(T),
    /// The lease could not be renewed: another worker holds the job now.
    Lost,
    /// The job ran past its time limit.
    TimedOut,
}

/// Runs `work` while renewing the job's lease, up to the job's time limit. The lease is
/// never renewed past that limit; when it is lost or the limit passes, `work` is dropped
/// unfinished (its open transaction rolls back).
async fn with_lease<T>(
    pool: &PgPool,
    job: &jobs::ClaimedJob,
    settings: &WorkerSettings,
    work: impl std::future::Future<Output = T>,
) -> Leased<T> {
    tokio::pin!(work);
    let deadline = tokio::time::Instant::from_std(Instant::now() + settings.job_timeout);
    let mut ticker = tokio::time::interval(settings.renew_every);
    ticker.tick().await;
    loop {
        tokio::select! {
            result = &mut work => return Leased::Finished(result),
            _ = tokio::time::sleep_until(deadline) => return Leased::TimedOut,
            _ = ticker.tick() => {
                let extended = async {
                    let mut tx = service_tx(pool).await?;
                    let held = jobs::extend_lease(&mut tx, job, settings.lease).await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(held)
                };
                tokio::pin!(extended);
                // The work keeps running while the lease is renewed: its last transaction
                // holds the job's row, so the renewal can wait for the work to commit.
                let extended = tokio::select! {
                    result = &mut work => return Leased::Finished(result),
                    _ = tokio::time::sleep_until(deadline) => return Leased::TimedOut,
                    extended = &mut extended => extended,
                };
                match extended {
                    Ok(true) => {}
                    Ok(false) => return Leased::Lost,
                    Err(e) => tracing::warn!(error = %e, "could not extend the job lease"),
                }
            }
        }
    }
}

/// Claims a runnable job and processes it.
pub async fn run_once(pipeline: &Pipeline, settings: &WorkerSettings) -> Result<Pass, WorkerError> {
    let job = {
        let mut tx = service_tx(&pipeline.pool).await?;
        let job = jobs::claim(&mut tx, &settings.id, settings.lease).await?;
        tx.commit().await?;
        job
    };
    match job {
        Some(job) => process(pipeline, settings, &job).await,
        None => Ok(Pass::Idle),
    }
}

/// Hands the running jobs of a stopping worker back to the queue.
pub async fn release(pool: &PgPool, worker_id: &str) -> Result<u64, sqlx::Error> {
    let mut tx = service_tx(pool).await?;
    let n = jobs::release(&mut tx, worker_id).await?;
    tx.commit().await?;
    Ok(n)
}

/// Deletes jobs that finished longer than `older_than` ago.
pub async fn delete_finished(pool: &PgPool, older_than: Duration) -> Result<u64, sqlx::Error> {
    let mut tx = service_tx(pool).await?;
    let n = jobs::delete_finished(&mut tx, older_than).await?;
    tx.commit().await?;
    Ok(n)
}

/// Claims the given job (queued by this process) if no one else runs it.
pub async fn claim_job(
    pool: &PgPool,
    settings: &WorkerSettings,
    job_id: Uuid,
) -> Result<Option<jobs::ClaimedJob>, sqlx::Error> {
    let mut tx = service_tx(pool).await?;
    let job = jobs::claim_job(&mut tx, job_id, &settings.id, settings.lease).await?;
    tx.commit().await?;
    Ok(job)
}

/// The state of a job someone else runs: (status, last_error).
pub async fn job_status(pool: &PgPool, job_id: Uuid) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    let mut tx = service_tx(pool).await?;
    let status = jobs::job_status(&mut tx, job_id).await?;
    tx.commit().await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pass_has_a_metric_label() {
        let id = Uuid::nil();
        let passes = [
            Pass::Idle,
            Pass::Done { document_id: id, chunks: 1, embedded: 1, reused: 0 },
            Pass::Nothing { document_id: id },
            Pass::Failed { document_id: id, error: "x".into() },
            Pass::Retrying { document_id: id, error: "x".into(), delay: Duration::from_secs(1) },
            Pass::Superseded { document_id: id },
            Pass::Lost { document_id: id },
        ];
        let labels: HashSet<&str> = passes.iter().map(Pass::outcome).collect();
        assert_eq!(labels.len(), passes.len());
    }
}

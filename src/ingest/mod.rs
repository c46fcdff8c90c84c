//! Ingestion: source bytes -> `ready` (or `failed`) documents with embedded chunks.
//!
//! Per document: submit its bytes as a pending version (`store::documents::submit`: unchanged,
//! duplicate, or queued with a job; committed first, so it is never lost) -> a worker claims
//! the job (`job`) -> extract, split and hash, bounded in time and memory (`prepare`) -> reuse
//! the vectors of chunks already embedded in the bucket with the same hash and model -> embed
//! the rest in batches -> swap the version's chunks in and make it ready in one transaction.
//! A failure fails the version; a document that was ready stays ready with its old content.
//! HTTP uploads and `kb ingest` take the same path: the command line runs the jobs it queued.

pub mod job;
pub mod prepare;
pub mod quota;
pub mod sources;
pub mod upload;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::chunk::TokenBudget;
use crate::embed::{EmbedError, Embedder};
use crate::extract::{ExtractError, ExtractLimits};
use crate::store::{self, Bucket, Role, documents};

pub use job::{Pass, WorkerSettings};
pub use prepare::Prepared;
pub use quota::{QuotaError, Quotas};
pub use sources::{Source, SourceError, collect};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Extract(#[from] ExtractError),
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    #[error(
        "the embedder returned {got} vectors of {dims} dimensions for {want} texts of a {expected}-dimension model"
    )]
    EmbeddingShape { got: usize, dims: usize, want: usize, expected: usize },
    #[error("cannot read the file: {0}")]
    Read(std::io::Error),
    /// Its detail goes to the log, never into `processing_error` (which users read).
    #[error("a database error stopped the processing (the server log has the detail)")]
    Database(#[from] sqlx::Error),
    #[error("the preparation task was lost")]
    Worker,
    #[error("extracting the text failed unexpectedly: {0}")]
    Panicked(String),
    #[error("the document was replaced while it was processed; the newer version is processed next")]
    Superseded,
    #[error("the job's lease was lost to another worker")]
    LeaseLost,
}

/// Connection loss, serialization failures and deadlocks, lack of resources, shutdowns and
/// lock timeouts pass; a constraint or data error would fail the same way again.
fn is_transient_database_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class)) || code == "55P03"
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

impl IngestError {
    /// Whether trying the same document again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Embed(e) => e.is_retryable(),
            IngestError::Database(e) => is_transient_database_error(e),
            IngestError::Worker | IngestError::Superseded | IngestError::LeaseLost => true,
            IngestError::Extract(_)
            | IngestError::EmbeddingShape { .. }
            | IngestError::Read(_)
            | IngestError::Panicked(_) => false,
        }
    }
}

/// What became of one source file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Extracted, embedded and written: searchable now.
    Ready { chunks: usize, embedded: usize, reused: usize },
    /// Same bytes as the ready document already at this path: nothing done.
    Unchanged,
    /// Same bytes as another ready document of the bucket: not stored twice.
    Duplicate { of_document: Uuid, of_path: Option<String> },
    /// Marked `failed`; `error` is its `processing_error`.
    Failed { error: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentReport {
    pub path: String,
    pub document_id: Option<Uuid>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The result of one ingestion run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub bucket_id: Uuid,
    pub documents_ready: usize,
    pub documents_unchanged: usize,
    pub documents_duplicate: usize,
    pub documents_failed: usize,
    pub chunks_written: usize,
    pub embeddings_computed: usize,
    pub embeddings_reused: usize,
    pub seconds: f64,
    pub documents: Vec<DocumentReport>,
}

impl Summary {
    fn add(&mut self, report: DocumentReport) {
        match &report.outcome {
            Outcome::Ready { chunks, embedded, reused } => {
                self.documents_ready += 1;
                self.chunks_written += chunks;
                self.embeddings_computed += embedded;
                self.embeddings_reused += reused;
            }
            Outcome::Unchanged => self.documents_unchanged += 1,
            Outcome::Duplicate { .. } => self.documents_duplicate += 1,
            Outcome::Failed { .. } => self.documents_failed += 1,
        }
        self.documents.push(report);
    }
}

/// Reports progress as documents finish.
pub trait Progress: Send + Sync {
    fn document_done(&self, report: &DocumentReport);
}

/// No progress reporting.
pub struct Silent;

impl Progress for Silent {
    fn document_done(&self, _: &DocumentReport) {}
}

/// Everything ingestion needs, built once per process.
#[derive(Clone)]
pub struct Pipeline {
    pub pool: PgPool,
    pub embedder: Arc<dyn Embedder>,
    pub budget: TokenBudget,
    pub extract: ExtractLimits,
    /// Documents processed at once.
    pub parallelism: usize,
}

impl Pipeline {
    /// Extracts, splits and hashes a version's bytes on the rayon pool, within the
    /// extraction limits (time, memory, chunks).
    pub async fn prepare(&self, source: &Source, bytes: Vec<u8>) -> Result<Prepared, IngestError> {
        let (format, extension) = (source.format, source.extension());
        let tokenizer = self.embedder.tokenizer();
        let (budget, limits) = (self.budget, self.extract.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            // A panic on a rayon thread aborts the process: catch it, so a document that
            // trips a parser bug fails alone.
            let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                prepare::prepare(format, &extension, &bytes, &tokenizer, budget, &limits)
            }));
            let _ = tx.send(prepared.map_err(|panic| panic_message(panic.as_ref())));
        });
        match rx.await {
            Ok(Ok(prepared)) => Ok(prepared?),
            Ok(Err(message)) => Err(IngestError::Panicked(message)),
            Err(_) => Err(IngestError::Worker),
        }
    }

    /// Ingests `sources` into `bucket`, acting as `owner`, and runs the jobs this queues
    /// (leased as `settings` says). Every source ends in the summary; a failing document
    /// never stops the others.
    pub async fn ingest(
        &self,
        owner: Uuid,
        bucket: &Bucket,
        sources: Vec<Source>,
        settings: &WorkerSettings,
        progress: &dyn Progress,
    ) -> Summary {
        let started = Instant::now();
        let mut summary = Summary { bucket_id: bucket.id, ..Summary::default() };
        let mut reports = futures::stream::iter(sources)
            .map(|source| self.ingest_one(owner, bucket, source, settings))
            .buffer_unordered(self.parallelism.max(1));
        while let Some(report) = reports.next().await {
            progress.document_done(&report);
            summary.add(report);
        }
        summary.documents.sort_by(|a, b| a.path.cmp(&b.path));
        summary.seconds = started.elapsed().as_secs_f64();
        summary
    }

    #[tracing::instrument(skip_all, fields(path = %source.path.display()))]
    async fn ingest_one(
        &self,
        owner: Uuid,
        bucket: &Bucket,
        source: Source,
        settings: &WorkerSettings,
    ) -> DocumentReport {
        let path = source.path.display().to_string();
        let (document_id, outcome) = match self.try_ingest(owner, bucket, &source, settings).await {
            Ok(done) => done,
            Err((document_id, error)) => {
                let error = error.to_string();
                tracing::warn!(%error, "document failed");
                (document_id, Outcome::Failed { error })
            }
        };
        DocumentReport { path, document_id, outcome }
    }

    async fn try_ingest(
        &self,
        owner: Uuid,
        bucket: &Bucket,
        source: &Source,
        settings: &WorkerSettings,
    ) -> Result<(Option<Uuid>, Outcome), (Option<Uuid>, IngestError)> {
        let bytes = tokio::fs::read(&source.path).await.map_err(|e| (None, IngestError::Read(e)))?;
        let key = source.path.display().to_string();
        let submitted = async {
            let mut tx = store::begin_as(&self.pool, owner, Role::Authenticated).await?;
            // The source file stays on disk: if a crash loses this commit, nothing is lost
            // that the next run will not redo, so it need not wait for its WAL flush.
            store::relax_durability(&mut tx).await?;
            let submission = documents::Submission {
                bucket_id: bucket.id,
                key: &key,
                file_name: &source.file_name(),
                file_type: source.format.map(|f| f.as_str()),
                body: &bytes,
                title: source.title.as_deref(),
            };
            let submitted = documents::submit(&mut tx, &submission).await?;
            let of_path = match submitted {
                documents::Submitted::Duplicate { of_document } => {
                    documents::document_by_id(&mut tx, of_document).await?.and_then(|d| d.upload_path)
                }
                _ => None,
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>((submitted, of_path))
        };
        let (submitted, of_path) = submitted.await.map_err(|e| (None, e.into()))?;
        let (document_id, job_id) = match submitted {
            documents::Submitted::Unchanged { document_id } => return Ok((Some(document_id), Outcome::Unchanged)),
            documents::Submitted::Duplicate { of_document } => {
                return Ok((Some(of_document), Outcome::Duplicate { of_document, of_path }));
            }
            documents::Submitted::Queued { document_id, job_id } => (document_id, job_id),
        };
        let outcome = self.run_job(job_id, settings).await.map_err(|e| (Some(document_id), e))?;
        Ok((Some(document_id), outcome))
    }

    /// Runs a job this process queued to its end, the way a worker would; if another worker
    /// (a `kb serve` on the same database) holds it, waits for that one.
    async fn run_job(&self, job_id: Uuid, settings: &WorkerSettings) -> Result<Outcome, IngestError> {
        loop {
            let Some(job) = job::claim_job(&self.pool, settings, job_id).await? else {
                match job::job_status(&self.pool, job_id).await? {
                    Some((status, _)) if status == "done" => {
                        return Ok(Outcome::Ready { chunks: 0, embedded: 0, reused: 0 });
                    }
                    Some((status, error)) if status == "failed" => {
                        return Ok(Outcome::Failed { error: error.unwrap_or_else(|| "failed".into()) });
                    }
                    Some(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    None => return Ok(Outcome::Failed { error: "the document was deleted meanwhile".into() }),
                }
            };
            let pass = job::process(self, settings, &job).await.map_err(|job::WorkerError::Database(e)| e)?;
            match pass {
                Pass::Done { chunks, embedded, reused, .. } => return Ok(Outcome::Ready { chunks, embedded, reused }),
                Pass::Nothing { .. } => return Ok(Outcome::Unchanged),
                Pass::Failed { error, .. } => return Ok(Outcome::Failed { error }),
                Pass::Retrying { delay, .. } => tokio::time::sleep(delay).await,
                Pass::Superseded { .. } | Pass::Lost { .. } | Pass::Idle => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

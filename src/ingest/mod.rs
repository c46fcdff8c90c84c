//! Ingestion: source files -> `ready` (or `failed`) documents with embedded chunks.
//!
//! Per document: record it as `processing` (committed first, so it is never lost) -> extract,
//! split and hash on the rayon pool -> reuse the vectors of chunks already embedded in the
//! bucket with the same hash and model -> embed the rest in batches -> write every chunk and
//! mark the document `ready` in one transaction. Any failure marks it `failed` with the
//! reason and leaves no chunks. All reads and writes act as the bucket's owner under RLS.

pub mod prepare;
pub mod sources;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use pgvector::Vector;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::chunk::TokenBudget;
use crate::embed::{EmbedError, Embedder};
use crate::extract::{ExtractError, PdfLimits};
use crate::store::{self, Bucket, Role, chunks::NewChunk, documents};

pub use prepare::Prepared;
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
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the preparation task was lost")]
    Worker,
    #[error("extracting the text failed unexpectedly: {0}")]
    Panicked(String),
    #[error("the document was replaced while it was processed; the newer version is processed next")]
    Superseded,
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
            IngestError::Worker | IngestError::Superseded => true,
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
    pub pdf: PdfLimits,
    /// Documents processed at once.
    pub parallelism: usize,
}

impl Pipeline {
    /// Ingests `sources` into `bucket`, acting as `owner`. Every source ends in the summary;
    /// a failing document never stops the others.
    pub async fn ingest(&self, owner: Uuid, bucket: &Bucket, sources: Vec<Source>, progress: &dyn Progress) -> Summary {
        let started = Instant::now();
        let mut summary = Summary { bucket_id: bucket.id, ..Summary::default() };
        let mut reports = futures::stream::iter(sources)
            .map(|source| self.ingest_one(owner, bucket, source))
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
    async fn ingest_one(&self, owner: Uuid, bucket: &Bucket, source: Source) -> DocumentReport {
        let path = source.path.display().to_string();
        let (document_id, outcome) = match self.try_ingest(owner, bucket, &source).await {
            Ok(done) => done,
            Err((document_id, error)) => {
                // A superseded document is not failed: its newer version is on its way.
                let superseded = matches!(error, IngestError::Superseded);
                let error = error.to_string();
                tracing::warn!(%error, "document failed");
                if let Some(id) = document_id
                    && !superseded
                    && let Err(e) = self.record_failure(owner, id, &error).await
                {
                    tracing::error!(error = %e, "could not mark the document failed");
                }
                (document_id, Outcome::Failed { error })
            }
        };
        DocumentReport { path, document_id, outcome }
    }

    async fn record_failure(&self, owner: Uuid, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
        let mut tx = store::begin_as(&self.pool, owner, Role::Authenticated).await?;
        documents::mark_failed(&mut tx, id, error).await?;
        tx.commit().await
    }

    async fn try_ingest(
        &self,
        owner: Uuid,
        bucket: &Bucket,
        source: &Source,
    ) -> Result<(Option<Uuid>, Outcome), (Option<Uuid>, IngestError)> {
        let bytes = tokio::fs::read(&source.path).await.map_err(|e| (None, IngestError::Read(e)))?;
        let source_hash = crate::hash::bytes_hash(&bytes);
        let upload_path = source.path.display().to_string();

        let id = {
            let started = async {
                let mut tx = store::begin_as(&self.pool, owner, Role::Authenticated).await?;
                // The source file stays on disk: if a crash loses this commit, nothing is lost
                // that the next run will not redo, so it need not wait for its WAL flush.
                store::relax_durability(&mut tx).await?;
                if let Some(doc) = documents::document_by_path(&mut tx, bucket.id, &upload_path).await?
                    && doc.status == "ready"
                    && doc.content_hash.as_deref() == Some(source_hash.as_str())
                {
                    return Ok::<_, sqlx::Error>(Err((doc.id, Outcome::Unchanged)));
                }
                if let Some(dup) = documents::ready_duplicate(&mut tx, bucket.id, &source_hash, &upload_path).await? {
                    let outcome = Outcome::Duplicate { of_document: dup.id, of_path: dup.upload_path };
                    return Ok(Err((dup.id, outcome)));
                }
                let title = source.default_title();
                let new = documents::NewDocument {
                    bucket_id: bucket.id,
                    title: &title,
                    file_name: &source.file_name(),
                    file_type: source.format.map(|f| f.as_str()),
                    file_size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                    upload_path: &upload_path,
                    content_hash: &source_hash,
                    created_by: owner,
                };
                let id = documents::start_processing(&mut tx, &new).await?;
                tx.commit().await?;
                Ok(Ok(id))
            };
            match started.await {
                Ok(Ok(id)) => id,
                Ok(Err((id, outcome))) => return Ok((Some(id), outcome)),
                Err(e) => return Err((None, e.into())),
            }
        };

        let outcome = self.process(owner, bucket, id, source, bytes).await.map_err(|e| (Some(id), e))?;
        Ok((Some(id), outcome))
    }

    /// Extracts, chunks, embeds and writes a document recorded as `processing`, acting as
    /// `owner`; the caller marks it `failed` on error.
    pub async fn process(
        &self,
        owner: Uuid,
        bucket: &Bucket,
        id: Uuid,
        source: &Source,
        bytes: Vec<u8>,
    ) -> Result<Outcome, IngestError> {
        let source_hash = crate::hash::bytes_hash(&bytes);
        let prepared = {
            let (format, extension) = (source.format, source.extension());
            let tokenizer = self.embedder.tokenizer();
            let (budget, pdf) = (self.budget, self.pdf.clone());
            let (tx, rx) = tokio::sync::oneshot::channel();
            rayon::spawn(move || {
                // A panic on a rayon thread aborts the process: catch it, so a document that
                // trips a parser bug fails alone.
                let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    prepare::prepare(format, &extension, &bytes, &tokenizer, budget, &pdf)
                }));
                let _ = tx.send(prepared.map_err(|panic| panic_message(panic.as_ref())));
            });
            match rx.await {
                Ok(Ok(prepared)) => prepared?,
                Ok(Err(message)) => return Err(IngestError::Panicked(message)),
                Err(_) => return Err(IngestError::Worker),
            }
        };
        if prepared.chunks.is_empty() {
            return Err(ExtractError::Empty.into());
        }

        let model = self.embedder.model().to_string();
        let hashes: Vec<String> = prepared.chunks.iter().map(|c| c.hash.clone()).collect();
        let mut vectors: HashMap<String, Vector> = {
            let mut tx = store::begin_as(&self.pool, owner, Role::Authenticated).await?;
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
            let fresh = self.embedder.embed(&texts).await?;
            let expected = self.embedder.dimensions();
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
        let mut tx = store::begin_as(&self.pool, owner, Role::Authenticated).await?;
        let written = store::chunks::replace_chunks(&mut tx, id, bucket.id, &model, &rows).await?;
        let ready = documents::ReadyDocument {
            title: &title,
            content: &prepared.content,
            summary: &prepared.summary,
            metadata: serde_json::json!({ "chunks": rows.len(), "embedding_model": model }),
            source_hash: &source_hash,
        };
        if !documents::mark_ready(&mut tx, id, &ready).await? {
            // Dropping the transaction rolls the chunk write back.
            return Err(IngestError::Superseded);
        }
        tx.commit().await?;
        tracing::debug!(chunks = written, embedded, reused, "document ready");
        Ok(Outcome::Ready { chunks: rows.len(), embedded, reused })
    }
}

//! Knowledge documents: one row per source file in a bucket, with its processing status.

use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Document {
    pub id: Uuid,
    pub bucket_id: Uuid,
    pub title: String,
    pub status: String,
    pub processing_error: Option<String>,
    pub content_hash: Option<String>,
    pub upload_path: Option<String>,
    pub file_name: Option<String>,
}

const COLUMNS: &str = "id, bucket_id, title, status, processing_error, content_hash, upload_path, file_name";

/// The document with this id, if the caller may see it.
pub async fn document_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<Document>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM public.knowledge_documents WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A document written whole, already `ready` (synthetic data for benches and tests; run as
/// the service role or the database owner).
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    pub bucket_id: Uuid,
    pub title: &'a str,
    pub file_name: &'a str,
    pub file_type: Option<&'a str>,
    pub file_size: i64,
    /// The document's key in its bucket.
    pub upload_path: &'a str,
    /// sha256 of the source bytes.
    pub content_hash: &'a str,
    pub created_by: Uuid,
}

/// The id of the document under `key` in the bucket, if the caller may see it.
pub async fn document_id_by_key(
    conn: &mut PgConnection,
    bucket_id: Uuid,
    key: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM public.knowledge_documents WHERE bucket_id = $1 AND upload_path = $2")
        .bind(bucket_id)
        .bind(key)
        .fetch_optional(conn)
        .await
}

/// Inserts a `ready` document without bytes or a job; its chunks are written with
/// `chunks::replace_chunks`.
pub async fn insert_ready(conn: &mut PgConnection, new: &NewDocument<'_>) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO public.knowledge_documents
           (bucket_id, title, content, file_name, file_type, file_size, upload_path, content_hash,
            status, created_by)
         VALUES ($1, $2, '', $3, $4, $5, $6, $7, 'ready', $8)
         RETURNING id",
    )
    .bind(new.bucket_id)
    .bind(new.title)
    .bind(new.file_name)
    .bind(new.file_type)
    .bind(new.file_size)
    .bind(new.upload_path)
    .bind(new.content_hash)
    .bind(new.created_by)
    .fetch_one(conn)
    .await
}

/// New bytes for the document under `key` in a bucket.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    pub bucket_id: Uuid,
    /// The document's identity in its bucket: a client-given path or key, or the absolute
    /// path of a file ingested from the command line.
    pub key: &'a str,
    pub file_name: &'a str,
    pub file_type: Option<&'a str>,
    pub body: &'a [u8],
    /// A title the submitter gave; None: the one extraction finds.
    pub title: Option<&'a str>,
}

/// What a submission became (see `public.submit_document`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// The bytes are the document's ready version: nothing to do.
    Unchanged { document_id: Uuid },
    /// Another ready document of the bucket has these bytes.
    Duplicate { of_document: Uuid },
    /// Stored as the document's pending version, with a job to process it.
    Queued { document_id: Uuid, job_id: Uuid },
}

impl Submitted {
    pub fn document_id(&self) -> Uuid {
        match *self {
            Submitted::Unchanged { document_id } | Submitted::Queued { document_id, .. } => document_id,
            Submitted::Duplicate { of_document } => of_document,
        }
    }
}

/// Submits new bytes for a document as the caller (its bucket's owner, or service_role):
/// commit, and the submission survives any crash after.
pub async fn submit(conn: &mut PgConnection, s: &Submission<'_>) -> Result<Submitted, sqlx::Error> {
    let (document_id, outcome, job_id): (Uuid, String, Option<Uuid>) =
        sqlx::query_as("SELECT document_id, outcome, job_id FROM public.submit_document($1, $2, $3, $4, $5, $6)")
            .bind(s.bucket_id)
            .bind(s.key)
            .bind(s.file_name)
            .bind(s.file_type)
            .bind(s.body)
            .bind(s.title)
            .fetch_one(conn)
            .await?;
    Ok(match (outcome.as_str(), job_id) {
        ("unchanged", _) => Submitted::Unchanged { document_id },
        ("duplicate", _) => Submitted::Duplicate { of_document: document_id },
        (_, Some(job_id)) => Submitted::Queued { document_id, job_id },
        (other, None) => {
            return Err(sqlx::Error::Protocol(format!("submit_document answered {other:?} without a job")));
        }
    })
}

/// The version of a document that is waiting to be processed, with its bytes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingVersion {
    pub document_id: Uuid,
    pub bucket_id: Uuid,
    pub content_hash: String,
    pub body: Vec<u8>,
    pub file_name: Option<String>,
    pub file_type: Option<String>,
    /// A title the submitter gave.
    pub title: Option<String>,
}

/// The pending version of a document, if it has one whose bytes are stored.
pub async fn pending_version(conn: &mut PgConnection, id: Uuid) -> Result<Option<PendingVersion>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id AS document_id, d.bucket_id, s.content_hash, s.body, s.file_name, s.file_type, s.title
         FROM public.knowledge_documents d
         JOIN public.knowledge_document_sources s ON s.document_id = d.id AND s.content_hash = d.pending_hash
         WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// What extraction learned about a version, written when it becomes the ready one.
#[derive(Debug, Clone)]
pub struct ReadyDocument<'a> {
    pub title: &'a str,
    pub content: &'a str,
    pub summary: &'a str,
    pub metadata: serde_json::Value,
    /// sha256 of the source bytes that were processed.
    pub source_hash: &'a str,
}

/// Makes the processed version the document's ready one, if it is still the pending one
/// (false if a newer submission superseded it, or the document is gone), and drops the bytes
/// of every other version. Call in the transaction that writes the version's chunks.
pub async fn make_ready(conn: &mut PgConnection, id: Uuid, ready: &ReadyDocument<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE public.knowledge_documents d
         SET status = 'ready', processing_error = NULL, processing_error_at = NULL,
             content_hash = d.pending_hash, pending_hash = NULL,
             title = $2, content = $3, summary = $4, metadata = $5,
             file_name = coalesce(s.file_name, d.file_name), file_type = coalesce(s.file_type, d.file_type),
             file_size = octet_length(s.body)
         FROM public.knowledge_document_sources s
         WHERE d.id = $1 AND d.pending_hash = $6 AND s.document_id = d.id AND s.content_hash = d.pending_hash",
    )
    .bind(id)
    .bind(ready.title)
    .bind(ready.content)
    .bind(ready.summary)
    .bind(&ready.metadata)
    .bind(ready.source_hash)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM public.knowledge_document_sources WHERE document_id = $1 AND content_hash <> $2")
        .bind(id)
        .bind(ready.source_hash)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Records that the pending version `source_hash` failed (None: whatever is pending), if it
/// is still the pending one. A document with a ready version stays `ready`, searchable with
/// it, and shows the failure in `processing_error` (the failed bytes are dropped); one without
/// becomes `failed`, keeping its bytes so it can be processed again.
pub async fn record_failure(
    conn: &mut PgConnection,
    id: Uuid,
    source_hash: Option<&str>,
    error: &str,
) -> Result<(), sqlx::Error> {
    // The bytes of a failed version of a ready document go first, while `pending_hash` still
    // names them; a never-ready document keeps its bytes.
    sqlx::query(
        "DELETE FROM public.knowledge_document_sources s USING public.knowledge_documents d
         WHERE d.id = $1 AND d.status = 'ready' AND ($2::text IS NULL OR d.pending_hash = $2)
           AND s.document_id = d.id AND s.content_hash = d.pending_hash
           AND s.content_hash IS DISTINCT FROM d.content_hash",
    )
    .bind(id)
    .bind(source_hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE public.knowledge_documents d
         SET status = CASE WHEN d.status = 'ready' THEN 'ready' ELSE 'failed' END,
             pending_hash = CASE WHEN d.status = 'ready' THEN NULL ELSE d.pending_hash END,
             processing_error = $3, processing_error_at = now()
         WHERE d.id = $1 AND ($2::text IS NULL OR d.pending_hash = $2)",
    )
    .bind(id)
    .bind(source_hash)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Number of documents per status in a bucket: (processing, ready, failed).
pub async fn status_counts(conn: &mut PgConnection, bucket_id: Uuid) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'processing'),
                count(*) FILTER (WHERE status = 'ready'),
                count(*) FILTER (WHERE status = 'failed')
         FROM public.knowledge_documents WHERE bucket_id = $1",
    )
    .bind(bucket_id)
    .fetch_one(conn)
    .await
}

/// A document as the API shows it: its state, not its text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Document)]
pub struct DocumentRecord {
    pub id: Uuid,
    pub bucket_id: Uuid,
    pub title: String,
    /// `processing`, `ready` or `failed`.
    #[schema(schema_with = document_status_schema)]
    pub status: String,
    /// Why the last processing failed; on a `ready` document, a newer version that failed
    /// (the ready one stays searchable).
    pub processing_error: Option<String>,
    pub processing_error_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A newer version is being processed; the ready one is searched until it is done.
    pub processing: bool,
    /// The document's key in its bucket (client path, or the ingested file's path).
    pub path: Option<String>,
    pub file_name: Option<String>,
    pub file_type: Option<String>,
    pub file_size: Option<i64>,
    pub summary: Option<String>,
    pub chunk_count: i64,
    pub created_by: Uuid,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn document_status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["processing", "ready", "failed"]))
        .description(Some("`processing`, `ready` or `failed` (the database's check constraint)."))
        .build()
}

const RECORD_SELECT: &str = "SELECT d.id, d.bucket_id, d.title, d.status, d.processing_error,
        d.processing_error_at, (d.pending_hash IS NOT NULL AND d.status <> 'failed') AS processing, d.upload_path AS path, d.file_name,
        d.file_type, d.file_size, d.summary,
        (SELECT count(*) FROM public.knowledge_chunks c WHERE c.document_id = d.id) AS chunk_count,
        d.created_by, d.created_at, d.updated_at
 FROM public.knowledge_documents d";

/// The documents of a bucket the caller may see, newest first.
pub async fn list_documents(conn: &mut PgConnection, bucket_id: Uuid) -> Result<Vec<DocumentRecord>, sqlx::Error> {
    sqlx::query_as(&format!("{RECORD_SELECT} WHERE d.bucket_id = $1 ORDER BY d.created_at DESC, d.id"))
        .bind(bucket_id)
        .fetch_all(conn)
        .await
}

/// One document's state with its chunk count, if the caller may see it.
pub async fn document_record(conn: &mut PgConnection, id: Uuid) -> Result<Option<DocumentRecord>, sqlx::Error> {
    sqlx::query_as(&format!("{RECORD_SELECT} WHERE d.id = $1")).bind(id).fetch_optional(conn).await
}

/// A document's processing state, as a status stream shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatusView {
    pub status: String,
    pub processing_error: Option<String>,
    /// A version is being processed (on a `ready` document: a newer one).
    pub processing: bool,
}

/// A document's status, error and whether a version is being processed.
pub async fn document_status(conn: &mut PgConnection, id: Uuid) -> Result<Option<StatusView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, processing_error, (pending_hash IS NOT NULL AND status <> 'failed') AS processing
         FROM public.knowledge_documents WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Deletes the document; its chunks, stored bytes and jobs go with it (foreign keys
/// cascade). False if the caller may not see it.
pub async fn delete_document(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM public.knowledge_documents WHERE id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

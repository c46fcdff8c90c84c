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

/// A source file about to be processed.
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    pub bucket_id: Uuid,
    pub title: &'a str,
    pub file_name: &'a str,
    pub file_type: Option<&'a str>,
    pub file_size: i64,
    /// Where the source came from; a document is identified by (bucket, upload_path).
    pub upload_path: &'a str,
    /// sha256 of the source bytes.
    pub content_hash: &'a str,
    pub created_by: Uuid,
}

/// The document at `upload_path` in the bucket, if there is one.
pub async fn document_by_path(
    conn: &mut PgConnection,
    bucket_id: Uuid,
    upload_path: &str,
) -> Result<Option<Document>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM public.knowledge_documents WHERE bucket_id = $1 AND upload_path = $2"
    ))
    .bind(bucket_id)
    .bind(upload_path)
    .fetch_optional(conn)
    .await
}

/// A ready document of the bucket with the same source bytes at another path, if any.
pub async fn ready_duplicate(
    conn: &mut PgConnection,
    bucket_id: Uuid,
    content_hash: &str,
    upload_path: &str,
) -> Result<Option<Document>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM public.knowledge_documents
         WHERE bucket_id = $1 AND content_hash = $2 AND status = 'ready'
           AND upload_path IS DISTINCT FROM $3
         ORDER BY created_at LIMIT 1"
    ))
    .bind(bucket_id)
    .bind(content_hash)
    .bind(upload_path)
    .fetch_optional(conn)
    .await
}

/// Records the document as `processing` (created, or reset if it exists) and returns its id.
/// Its content stays empty until the text is extracted.
pub async fn start_processing(conn: &mut PgConnection, new: &NewDocument<'_>) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO public.knowledge_documents
           (bucket_id, title, content, file_name, file_type, file_size, upload_path, content_hash,
            status, created_by)
         VALUES ($1, $2, '', $3, $4, $5, $6, $7, 'processing', $8)
         ON CONFLICT (bucket_id, upload_path) WHERE upload_path IS NOT NULL DO UPDATE
           SET title = EXCLUDED.title, file_name = EXCLUDED.file_name, file_type = EXCLUDED.file_type,
               file_size = EXCLUDED.file_size, content_hash = EXCLUDED.content_hash,
               status = 'processing', processing_error = NULL
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

/// What extraction learned about a document, written when it becomes `ready`.
#[derive(Debug, Clone)]
pub struct ReadyDocument<'a> {
    pub title: &'a str,
    pub content: &'a str,
    pub summary: &'a str,
    pub metadata: serde_json::Value,
    /// sha256 of the source bytes that were processed.
    pub source_hash: &'a str,
}

/// Marks the document `ready` if its source is still the one that was processed (sha256
/// `source_hash`); false if a newer version replaced it meanwhile, whose processing follows.
pub async fn mark_ready(conn: &mut PgConnection, id: Uuid, ready: &ReadyDocument<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE public.knowledge_documents
         SET status = 'ready', processing_error = NULL, title = $2, content = $3, summary = $4,
             metadata = $5
         WHERE id = $1 AND content_hash IS NOT DISTINCT FROM $6",
    )
    .bind(id)
    .bind(ready.title)
    .bind(ready.content)
    .bind(ready.summary)
    .bind(&ready.metadata)
    .bind(ready.source_hash)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the document `failed` with the reason, and drops any chunks it had: a failed
/// document has nothing searchable.
pub async fn mark_failed(conn: &mut PgConnection, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM public.knowledge_chunks WHERE document_id = $1").bind(id).execute(&mut *conn).await?;
    sqlx::query("UPDATE public.knowledge_documents SET status = 'failed', processing_error = $2 WHERE id = $1")
        .bind(id)
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct DocumentRecord {
    pub id: Uuid,
    pub bucket_id: Uuid,
    pub title: String,
    pub status: String,
    pub processing_error: Option<String>,
    pub file_name: Option<String>,
    pub file_type: Option<String>,
    pub file_size: Option<i64>,
    pub summary: Option<String>,
    pub chunk_count: i64,
    pub created_by: Uuid,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

const RECORD_SELECT: &str = "SELECT d.id, d.bucket_id, d.title, d.status, d.processing_error, d.file_name,
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

/// A document's status and error only: what a status stream polls.
pub async fn document_status(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT status, processing_error FROM public.knowledge_documents WHERE id = $1")
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

/// Puts a document back to `processing` before it is queued again; false if the caller may
/// not change it.
pub async fn mark_processing(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE public.knowledge_documents SET status = 'processing', processing_error = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the uploaded bytes of a document are stored (documents ingested from the command
/// line have none, so there is nothing to process again).
pub async fn has_source(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM public.knowledge_document_sources WHERE document_id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

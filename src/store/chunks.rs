//! Knowledge chunks: the embedded pieces of documents, written in bulk.

use std::collections::HashMap;

use pgvector::Vector;
use sqlx::PgConnection;
use uuid::Uuid;

/// A chunk ready to be written, with its embedding.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub chunk_index: i32,
    pub content: String,
    pub content_hash: String,
    pub token_count: i32,
    pub embedding: Vector,
    pub metadata: serde_json::Value,
}

/// Embeddings already stored in the bucket for these content hashes with this model.
#[tracing::instrument(skip_all, fields(bucket = %bucket_id, hashes = hashes.len()))]
pub async fn embeddings_by_hash(
    conn: &mut PgConnection,
    bucket_id: Uuid,
    model: &str,
    hashes: &[String],
) -> Result<HashMap<String, Vector>, sqlx::Error> {
    let rows: Vec<(String, Vector)> = sqlx::query_as(
        "SELECT DISTINCT ON (content_hash) content_hash, embedding
         FROM public.knowledge_chunks
         WHERE bucket_id = $1 AND embedding_model = $2 AND content_hash = ANY($3)
           AND embedding IS NOT NULL",
    )
    .bind(bucket_id)
    .bind(model)
    .bind(hashes)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Replaces every chunk of the document with `chunks`, in one statement for all rows
/// (UNNEST of arrays, not one INSERT per row). Call inside the transaction that marks the
/// document ready, so readers see the old chunks or the new ones, never a mix.
#[tracing::instrument(skip_all, fields(document = %document_id, chunks = chunks.len()))]
pub async fn replace_chunks(
    conn: &mut PgConnection,
    document_id: Uuid,
    bucket_id: Uuid,
    model: &str,
    chunks: &[NewChunk],
) -> Result<u64, sqlx::Error> {
    // This commit need not wait for its WAL flush: the document's `processing` state was
    // committed durably before, so if a crash loses this commit the document is simply still
    // `processing` and is processed again (its job's lease expires; the CLI re-runs it). A
    // later synchronous commit (the job's `done`) flushes this one too.
    super::relax_durability(&mut *conn).await?;
    sqlx::query("DELETE FROM public.knowledge_chunks WHERE document_id = $1")
        .bind(document_id)
        .execute(&mut *conn)
        .await?;
    if chunks.is_empty() {
        return Ok(0);
    }
    let mut indexes = Vec::with_capacity(chunks.len());
    let mut contents = Vec::with_capacity(chunks.len());
    let mut hashes = Vec::with_capacity(chunks.len());
    let mut token_counts = Vec::with_capacity(chunks.len());
    let mut embeddings = Vec::with_capacity(chunks.len());
    let mut metadata = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        indexes.push(chunk.chunk_index);
        contents.push(chunk.content.as_str());
        hashes.push(chunk.content_hash.as_str());
        token_counts.push(chunk.token_count);
        embeddings.push(chunk.embedding.clone());
        metadata.push(chunk.metadata.clone());
    }
    let written = sqlx::query(
        "INSERT INTO public.knowledge_chunks
           (document_id, bucket_id, embedding_model, chunk_index, content, content_hash,
            token_count, embedding, metadata)
         SELECT $1, $2, $3, u.chunk_index, u.content, u.content_hash, u.token_count, u.embedding,
                u.metadata
         FROM unnest($4::int[], $5::text[], $6::text[], $7::int[], $8::vector[], $9::jsonb[])
           AS u(chunk_index, content, content_hash, token_count, embedding, metadata)",
    )
    .bind(document_id)
    .bind(bucket_id)
    .bind(model)
    .bind(&indexes)
    .bind(&contents)
    .bind(&hashes)
    .bind(&token_counts)
    .bind(&embeddings)
    .bind(&metadata)
    .execute(conn)
    .await?;
    Ok(written.rows_affected())
}

/// A stored chunk's text and provenance.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredChunk {
    pub document_id: Uuid,
    pub chunk_index: i32,
    pub content: String,
    pub metadata: Option<serde_json::Value>,
}

/// The chunks at these (document, index) positions that the caller may read (under its row
/// level security); positions that do not exist are left out.
pub async fn chunks_at(conn: &mut PgConnection, positions: &[(Uuid, i32)]) -> Result<Vec<StoredChunk>, sqlx::Error> {
    let (documents, indexes): (Vec<Uuid>, Vec<i32>) = positions.iter().copied().unzip();
    sqlx::query_as(
        "SELECT c.document_id, c.chunk_index, c.content, c.metadata
         FROM unnest($1::uuid[], $2::int[]) AS p(document_id, chunk_index)
         JOIN public.knowledge_chunks c ON c.document_id = p.document_id AND c.chunk_index = p.chunk_index",
    )
    .bind(&documents)
    .bind(&indexes)
    .fetch_all(conn)
    .await
}

/// The chunks of one document with indexes `first..=last`, in order, that the caller may
/// read (under its row level security).
pub async fn document_chunks(
    conn: &mut PgConnection,
    document_id: Uuid,
    first: i32,
    last: i32,
) -> Result<Vec<StoredChunk>, sqlx::Error> {
    sqlx::query_as(
        "SELECT document_id, chunk_index, content, metadata FROM public.knowledge_chunks
         WHERE document_id = $1 AND chunk_index BETWEEN $2 AND $3 ORDER BY chunk_index",
    )
    .bind(document_id)
    .bind(first)
    .bind(last)
    .fetch_all(conn)
    .await
}

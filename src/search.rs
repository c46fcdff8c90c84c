//! Search: query text -> query embedding (the bucket's model) -> the nearest visible chunks
//! through `search_knowledge_chunks` (vector) or `hybrid_search_knowledge_chunks` (vector +
//! full text, reciprocal rank fusion), inside the caller's row-level-security context.

use std::time::Instant;

use pgvector::Vector;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::embed::{EmbedError, Embedder};
use crate::store::{self, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Nearest chunks by cosine similarity.
    #[default]
    Vector,
    /// Vector ranking fused with full-text ranking (reciprocal rank fusion).
    Hybrid,
}

/// A search, as a caller asks for it.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub bucket_id: Option<Uuid>,
    pub bucket_type: Option<String>,
    pub campaign_id: Option<Uuid>,
    pub limit: u32,
    /// Minimum cosine similarity of a hit.
    pub threshold: f64,
    pub mode: Mode,
}

/// One retrieved chunk with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SearchHit {
    pub chunk_id: Uuid,
    pub bucket_id: Uuid,
    pub document_id: Uuid,
    pub bucket_name: String,
    pub document_title: String,
    pub document_summary: Option<String>,
    pub chunk_content: String,
    pub chunk_index: i32,
    pub similarity_score: f64,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Timings {
    pub embed_ms: f64,
    pub search_ms: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    pub query: String,
    pub mode: Mode,
    pub model: String,
    pub hits: Vec<SearchHit>,
    pub timings: Timings,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the query is empty")]
    EmptyQuery,
    #[error("limit must be between 1 and 1000 (got {0})")]
    Limit(u32),
    #[error("embedding the query failed: {0}")]
    Embed(#[from] EmbedError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

pub const MAX_LIMIT: u32 = 1000;

/// Embeds the query and returns the best chunks visible to `user`.
pub async fn search(
    pool: &PgPool,
    embedder: &dyn Embedder,
    user: Uuid,
    role: Role,
    request: &SearchRequest,
) -> Result<SearchResponse, SearchError> {
    if request.query.trim().is_empty() {
        return Err(SearchError::EmptyQuery);
    }
    if request.limit == 0 || request.limit > MAX_LIMIT {
        return Err(SearchError::Limit(request.limit));
    }
    let started = Instant::now();
    let mut vectors = embedder.embed(std::slice::from_ref(&request.query)).await?;
    let embedding = Vector::from(vectors.pop().unwrap_or_default());
    let embed_ms = started.elapsed().as_secs_f64() * 1000.0;

    let started = Instant::now();
    let mut tx = store::begin_as(pool, user, role).await?;
    let hits = nearest(&mut tx, embedder.model(), &embedding, request).await?;
    tx.commit().await?;
    let search_ms = started.elapsed().as_secs_f64() * 1000.0;

    Ok(SearchResponse {
        query: request.query.clone(),
        mode: request.mode,
        model: embedder.model().to_string(),
        hits,
        timings: Timings { embed_ms, search_ms },
    })
}

/// Runs the search function of the request's mode with a ready query embedding, in the
/// caller's transaction.
pub async fn nearest(
    conn: &mut PgConnection,
    model: &str,
    embedding: &Vector,
    request: &SearchRequest,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let limit = i32::try_from(request.limit).unwrap_or(i32::MAX);
    // Both functions share their parameters; only hybrid reads the query text ($8).
    let function = match request.mode {
        Mode::Vector => "search_knowledge_chunks(",
        Mode::Hybrid => "hybrid_search_knowledge_chunks(p_query_text => $8, ",
    };
    sqlx::query_as(&format!(
        "SELECT chunk_id, bucket_id, document_id, bucket_name, document_title, document_summary,
                chunk_content, chunk_index, similarity_score, metadata
         FROM public.{function}
           p_user_id => NULL, p_query_embedding => $1, p_bucket_type => $2, p_campaign_id => $3,
           p_limit => $4, p_similarity_threshold => $5, p_bucket_id => $6, p_embedding_model => $7)"
    ))
    .bind(embedding)
    .bind(&request.bucket_type)
    .bind(request.campaign_id)
    .bind(limit)
    .bind(request.threshold)
    .bind(request.bucket_id)
    .bind(model)
    .bind(&request.query)
    .fetch_all(conn)
    .await
}

/// `search_knowledge_chunks` called with its own parameters, as supabase-js `rpc()` callers
/// pass them. `None` takes the function's default.
#[derive(Debug, Clone)]
pub struct RpcSearch {
    pub user_id: Option<Uuid>,
    pub embedding: Vector,
    pub bucket_type: Option<String>,
    pub campaign_id: Option<Uuid>,
    pub limit: Option<i32>,
    pub threshold: Option<f64>,
    pub bucket_id: Option<Uuid>,
    pub embedding_model: Option<String>,
}

/// Runs `search_knowledge_chunks` in the caller's transaction. The function itself returns
/// nothing for a `p_user_id` that is not the caller's (service role excepted).
pub async fn search_knowledge_chunks(conn: &mut PgConnection, p: &RpcSearch) -> Result<Vec<SearchHit>, sqlx::Error> {
    sqlx::query_as(
        "SELECT chunk_id, bucket_id, document_id, bucket_name, document_title, document_summary,
                chunk_content, chunk_index, similarity_score, metadata
         FROM public.search_knowledge_chunks(
           p_user_id => $1, p_query_embedding => $2, p_bucket_type => $3, p_campaign_id => $4,
           p_limit => coalesce($5, 10), p_similarity_threshold => coalesce($6, 0.7),
           p_bucket_id => $7, p_embedding_model => $8)",
    )
    .bind(p.user_id)
    .bind(&p.embedding)
    .bind(&p.bucket_type)
    .bind(p.campaign_id)
    .bind(p.limit)
    .bind(p.threshold)
    .bind(p.bucket_id)
    .bind(&p.embedding_model)
    .fetch_all(conn)
    .await
}

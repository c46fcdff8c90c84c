//! Search: query text -> query embedding (the bucket's model) -> the best visible chunks
//! through `search_knowledge_chunks` (vector), `lexical_search_knowledge_chunks` (BM25 over
//! per-bucket term statistics) or `hybrid_search_knowledge_chunks` (both, normalised scores
//! fused with weight `alpha`), inside the caller's row-level-security context; optionally the
//! best chunk per document only.

use std::time::Instant;

use pgvector::Vector;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::embed::{EmbedError, Embedder};
use crate::store::{self, Role};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Nearest chunks by cosine similarity.
    #[default]
    Vector,
    /// Vector and BM25 scores, each min-max normalised over the candidates of both, fused as
    /// `alpha * vector + (1 - alpha) * lexical`.
    Hybrid,
    /// BM25 over the chunks that contain any query term.
    Lexical,
}

/// What one hit stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Every chunk ranks on its own.
    #[default]
    Chunk,
    /// The best chunk of each document only.
    Document,
}

/// Options beyond the filters of `SearchRequest`; `Default` is what callers get unasked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SearchOptions {
    /// Hybrid only: weight of the vector score, 0 to 1 (`None`: the default, `DEFAULT_ALPHA`).
    pub alpha: Option<f64>,
    /// Hybrid only: candidates taken from each ranking (`None`: `DEFAULT_CANDIDATES`).
    pub candidates: Option<u32>,
    pub group_by: GroupBy,
}

/// The hybrid weight of the vector score when a request names none: measured with `kb eval`
/// on NFCorpus (BENCHMARKS.md). The SQL function has the same default.
pub const DEFAULT_ALPHA: f64 = 0.5;
/// Candidates each ranking gives a hybrid search (the SQL function's default).
pub const DEFAULT_CANDIDATES: u32 = 100;
/// With `group_by = document`, chunks fetched per document wanted: documents with several
/// matching chunks would otherwise leave fewer than `limit` documents.
const CHUNKS_PER_DOCUMENT: u32 = 4;

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
    /// The score the hit was ranked by: cosine similarity (vector), BM25 (lexical) or the
    /// fused score (hybrid). Absent from `search_knowledge_chunks` (rpc) results.
    #[sqlx(default)]
    pub score: Option<f64>,
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
    search_with(pool, embedder, user, role, request, &SearchOptions::default()).await
}

/// Whether `alpha` is a hybrid weight (0 to 1; NaN is not). Checked where requests are
/// parsed; the SQL function clamps whatever reaches it.
pub fn is_weight(alpha: f64) -> bool {
    (0.0..=1.0).contains(&alpha)
}

/// `search` with options (hybrid weight and depth, grouping by document).
pub async fn search_with(
    pool: &PgPool,
    embedder: &dyn Embedder,
    user: Uuid,
    role: Role,
    request: &SearchRequest,
    options: &SearchOptions,
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
    let hits = nearest_with(&mut tx, embedder.model(), &embedding, request, options).await?;
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
    nearest_with(conn, model, embedding, request, &SearchOptions::default()).await
}

/// `nearest` with options. Grouped by document, more chunks are fetched than `limit` and the
/// first (best) chunk of each document is kept.
pub async fn nearest_with(
    conn: &mut PgConnection,
    model: &str,
    embedding: &Vector,
    request: &SearchRequest,
    options: &SearchOptions,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let fetch = match options.group_by {
        GroupBy::Chunk => request.limit,
        GroupBy::Document => request.limit.saturating_mul(CHUNKS_PER_DOCUMENT).min(MAX_LIMIT),
    };
    let limit = i32::try_from(fetch).unwrap_or(i32::MAX);
    let candidates = options.candidates.map(|c| i32::try_from(c).unwrap_or(i32::MAX));
    let query = sqlx::query_as::<_, SearchHit>(match request.mode {
        Mode::Vector => SQL_VECTOR,
        Mode::Hybrid => SQL_HYBRID,
        Mode::Lexical => SQL_LEXICAL,
    })
    .bind(embedding)
    .bind(&request.bucket_type)
    .bind(request.campaign_id)
    .bind(limit)
    .bind(request.bucket_id)
    .bind(model);
    let query = match request.mode {
        Mode::Vector => query.bind(request.threshold),
        Mode::Hybrid => query.bind(request.threshold).bind(&request.query).bind(options.alpha).bind(candidates),
        Mode::Lexical => query.bind(&request.query),
    };
    let mut hits = query.fetch_all(conn).await?;
    if options.group_by == GroupBy::Document {
        hits = best_per_document(hits);
        hits.truncate(request.limit as usize);
    }
    Ok(hits)
}

// $1 embedding, $2 bucket type, $3 campaign, $4 limit, $5 bucket, $6 model, then per mode.
const SQL_VECTOR: &str = "SELECT chunk_id, bucket_id, document_id, bucket_name, document_title, document_summary,
            chunk_content, chunk_index, similarity_score, metadata, similarity_score AS score
     FROM public.search_knowledge_chunks(
       p_user_id => NULL, p_query_embedding => $1, p_bucket_type => $2, p_campaign_id => $3,
       p_limit => $4, p_bucket_id => $5, p_embedding_model => $6, p_similarity_threshold => $7)";

const SQL_HYBRID: &str = "SELECT chunk_id, bucket_id, document_id, bucket_name, document_title, document_summary,
            chunk_content, chunk_index, similarity_score, metadata, fused_score AS score
     FROM public.hybrid_search_knowledge_chunks(
       p_user_id => NULL, p_query_embedding => $1, p_bucket_type => $2, p_campaign_id => $3,
       p_limit => $4, p_bucket_id => $5, p_embedding_model => $6, p_similarity_threshold => $7,
       p_query_text => $8, p_alpha => $9, p_candidates => $10)";

// BM25 ranks alone: no similarity threshold (a lexical hit may share no direction with the
// query's vector). The embedding only reports each hit's cosine similarity.
const SQL_LEXICAL: &str = "SELECT chunk_id, bucket_id, document_id, bucket_name, document_title, document_summary,
            chunk_content, chunk_index, coalesce(similarity_score, 'NaN'::float) AS similarity_score,
            metadata, score
     FROM public.lexical_search_knowledge_chunks(
       p_user_id => NULL, p_query_embedding => $1, p_bucket_type => $2, p_campaign_id => $3,
       p_limit => $4, p_bucket_id => $5, p_embedding_model => $6, p_query_text => $7)";

/// The first hit of each document, in order (hits come best first).
fn best_per_document(hits: Vec<SearchHit>) -> Vec<SearchHit> {
    let mut seen = std::collections::HashSet::new();
    hits.into_iter().filter(|hit| seen.insert(hit.document_id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(document: u128, chunk: u128) -> SearchHit {
        SearchHit {
            chunk_id: Uuid::from_u128(chunk),
            bucket_id: Uuid::nil(),
            document_id: Uuid::from_u128(document),
            bucket_name: String::new(),
            document_title: String::new(),
            document_summary: None,
            chunk_content: String::new(),
            chunk_index: 0,
            similarity_score: 0.0,
            metadata: None,
            score: None,
        }
    }

    #[test]
    fn grouping_by_document_keeps_each_documents_best_chunk_in_order() {
        let hits = vec![hit(1, 10), hit(2, 20), hit(1, 11), hit(3, 30), hit(2, 21)];
        let chunks: Vec<u128> = best_per_document(hits).iter().map(|h| h.chunk_id.as_u128()).collect();
        assert_eq!(chunks, vec![10, 20, 30]);
    }

    #[test]
    fn alpha_must_be_a_weight() {
        for (alpha, ok) in [(0.0, true), (0.7, true), (1.0, true), (1.5, false), (-0.1, false), (f64::NAN, false)] {
            assert_eq!(is_weight(alpha), ok, "{alpha}");
        }
    }
}

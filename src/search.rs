//! Search: query text -> query embedding (the bucket's model) -> the best visible chunks
//! through `search_knowledge_chunks` (vector), `lexical_search_knowledge_chunks` (BM25 over
//! per-bucket term statistics) or a hybrid search (the vector and BM25 candidates, taken side
//! by side on two connections, then `fuse_knowledge_chunks`: normalised scores fused with
//! weight `alpha`), inside the caller's row-level-security context; optionally the best chunk
//! per document only.

use std::time::{Duration, Instant};

use pgvector::Vector;
use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
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
    /// BM25's k1 and b (`None`: the database's settings, else 1.2 and 0.75).
    pub bm25_k1: Option<f64>,
    pub bm25_b: Option<f64>,
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

impl crate::store::replicas::Unreachable for SearchError {
    fn unreachable(&self) -> bool {
        matches!(self, SearchError::Database(e) if e.unreachable())
    }
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
    let hits = nearest_as(pool, user, role, embedder.model(), &embedding, request, options).await?;
    let search_ms = started.elapsed().as_secs_f64() * 1000.0;

    Ok(SearchResponse {
        query: request.query.clone(),
        mode: request.mode,
        model: embedder.model().to_string(),
        hits,
        timings: Timings { embed_ms, search_ms },
    })
}

/// How long a hybrid search waits for a second connection before it runs its two rankings
/// one after the other on its first.
const SPARE_CONNECTION_WAIT: Duration = Duration::from_millis(20);

/// The best chunks for a ready query embedding, as `user` in `role`. A hybrid search runs its
/// vector and BM25 rankings at the same time on two connections acting as the same caller
/// (one after the other when the pool has no spare connection), then fuses them.
pub async fn nearest_as(
    pool: &PgPool,
    user: Uuid,
    role: Role,
    model: &str,
    embedding: &Vector,
    request: &SearchRequest,
    options: &SearchOptions,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let mut tx = store::begin_as(pool, user, role).await?;
    store::lexical::set_bm25_parameters(&mut tx, options.bm25_k1, options.bm25_b).await?;
    let hits = if request.mode == Mode::Hybrid {
        let mut conn = spare_connection(pool).await;
        let mut spare = match conn.as_mut() {
            Some(conn) => {
                let mut spare = conn.begin().await?;
                store::act_as(&mut spare, user, role).await?;
                store::lexical::set_bm25_parameters(&mut spare, options.bm25_k1, options.bm25_b).await?;
                Some(spare)
            }
            None => None,
        };
        let hits = hybrid(&mut tx, spare.as_deref_mut(), model, embedding, request, options).await?;
        if let Some(spare) = spare {
            spare.commit().await?;
        }
        group(hits, request, options)
    } else {
        nearest_with(&mut tx, model, embedding, request, options).await?
    };
    tx.commit().await?;
    Ok(hits)
}

/// An idle connection of the pool, or a new one while the pool is below its size; `None`
/// rather than waiting for another request to give one back.
async fn spare_connection(pool: &PgPool) -> Option<PoolConnection<Postgres>> {
    if let Some(conn) = pool.try_acquire() {
        return Some(conn);
    }
    if pool.size() >= pool.options().get_max_connections() {
        return None;
    }
    tokio::time::timeout(SPARE_CONNECTION_WAIT, pool.acquire()).await.ok()?.ok()
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

/// `nearest` with options, on one connection (a hybrid search's rankings one after the
/// other). Grouped by document, more chunks are fetched than `limit` and the first (best)
/// chunk of each document is kept.
pub async fn nearest_with(
    conn: &mut PgConnection,
    model: &str,
    embedding: &Vector,
    request: &SearchRequest,
    options: &SearchOptions,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let limit = fetch_limit(request, options);
    let hits = match request.mode {
        Mode::Hybrid => hybrid(conn, None, model, embedding, request, options).await?,
        Mode::Vector => {
            filtered(sqlx::query_as::<_, SearchHit>(SQL_VECTOR).bind(embedding), request, limit, model)
                .bind(request.threshold)
                .fetch_all(conn)
                .await?
        }
        Mode::Lexical => {
            filtered(sqlx::query_as::<_, SearchHit>(SQL_LEXICAL).bind(embedding), request, limit, model)
                .bind(&request.query)
                .fetch_all(conn)
                .await?
        }
    };
    Ok(group(hits, request, options))
}

/// Chunks to fetch for a request: grouped by document, several per document wanted.
fn fetch_limit(request: &SearchRequest, options: &SearchOptions) -> i32 {
    let fetch = match options.group_by {
        GroupBy::Chunk => request.limit,
        GroupBy::Document => request.limit.saturating_mul(CHUNKS_PER_DOCUMENT).min(MAX_LIMIT),
    };
    i32::try_from(fetch).unwrap_or(i32::MAX)
}

/// Binds the filters every search takes, in their order ($2 to $6).
fn filtered<'q>(
    query: QueryAs<'q, Postgres, SearchHit, PgArguments>,
    request: &'q SearchRequest,
    limit: i32,
    model: &'q str,
) -> QueryAs<'q, Postgres, SearchHit, PgArguments> {
    query.bind(&request.bucket_type).bind(request.campaign_id).bind(limit).bind(request.bucket_id).bind(model)
}

/// Grouped by document: the first hit of each document, up to the request's limit.
fn group(hits: Vec<SearchHit>, request: &SearchRequest, options: &SearchOptions) -> Vec<SearchHit> {
    match options.group_by {
        GroupBy::Chunk => hits,
        GroupBy::Document => {
            let mut hits = best_per_document(hits);
            hits.truncate(request.limit as usize);
            hits
        }
    }
}

/// A hybrid search's three steps, as `hybrid_search_knowledge_chunks` runs them: the vector
/// and the BM25 candidates (on `first` and `second` at the same time, or both on `first`),
/// then their fusion on `first`.
async fn hybrid(
    first: &mut PgConnection,
    second: Option<&mut PgConnection>,
    model: &str,
    embedding: &Vector,
    request: &SearchRequest,
    options: &SearchOptions,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let limit = fetch_limit(request, options);
    let candidates = options.candidates.map(|c| i32::try_from(c).unwrap_or(i32::MAX));
    let dense = sqlx::query_scalar::<_, Vec<Uuid>>(SQL_DENSE_CANDIDATES)
        .bind(embedding)
        .bind(&request.bucket_type)
        .bind(request.campaign_id)
        .bind(limit)
        .bind(request.bucket_id)
        .bind(model)
        .bind(candidates);
    let lexical = sqlx::query_as::<_, (Vec<Uuid>, Vec<f64>)>(SQL_LEXICAL_CANDIDATES)
        .bind(&request.query)
        .bind(&request.bucket_type)
        .bind(request.campaign_id)
        .bind(limit)
        .bind(request.bucket_id)
        .bind(model)
        .bind(candidates);
    let (dense, (lexical, lexical_scores)) = match second {
        Some(second) => tokio::try_join!(dense.fetch_one(&mut *first), lexical.fetch_one(second))?,
        None => (dense.fetch_one(&mut *first).await?, lexical.fetch_one(&mut *first).await?),
    };
    sqlx::query_as::<_, SearchHit>(SQL_FUSE)
        .bind(embedding)
        .bind(model)
        .bind(dense)
        .bind(lexical)
        .bind(lexical_scores)
        .bind(limit)
        .bind(request.threshold)
        .bind(options.alpha)
        .fetch_all(first)
        .await
}

// $1 embedding, $2 bucket type, $3 campaign, $4 limit, $5 bucket, $6 model, then per mode.
const SQL_VECTOR: &str = "SELECT chunk_id, bucket_id, document_id, bucket_name, document_title, document_summary,
            chunk_content, chunk_index, similarity_score, metadata, similarity_score AS score
     FROM public.search_knowledge_chunks(
       p_user_id => NULL, p_query_embedding => $1, p_bucket_type => $2, p_campaign_id => $3,
       p_limit => $4, p_bucket_id => $5, p_embedding_model => $6, p_similarity_threshold => $7)";

// A hybrid search's candidates ($7: the depth asked for, NULL for the database's default):
// the vector ranking's ...
const SQL_DENSE_CANDIDATES: &str = "SELECT coalesce(array_agg(chunk_id), '{}')
     FROM public.nearest_knowledge_chunks(NULL, $1, $2, $3, public.hybrid_candidate_depth($4, $7), $5, $6)";

// ... and BM25's, with their scores.
const SQL_LEXICAL_CANDIDATES: &str = "SELECT coalesce(array_agg(chunk_id), '{}'), coalesce(array_agg(score), '{}')
     FROM public.lexical_knowledge_chunks($1, $6, NULL, $2, $3, $5, public.hybrid_candidate_depth($4, $7))";

const SQL_FUSE: &str = "SELECT chunk_id, bucket_id, document_id, bucket_name, document_title, document_summary,
            chunk_content, chunk_index, similarity_score, metadata, fused_score AS score
     FROM public.fuse_knowledge_chunks(
       p_query_embedding => $1, p_embedding_model => $2, p_dense => $3, p_lexical => $4,
       p_lexical_scores => $5, p_limit => $6, p_similarity_threshold => $7, p_alpha => $8)";

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

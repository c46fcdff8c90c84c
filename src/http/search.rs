//! Search endpoints: `POST /v1/search` (query text embedded server-side, or a ready
//! embedding; vector or hybrid ranking) and `POST /rest/v1/rpc/search_knowledge_chunks`, the
//! SQL function called with its own parameter names so supabase-js `rpc()` works unchanged.

use std::time::Instant;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use pgvector::Vector;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody};
use crate::search::{self, MAX_LIMIT, Mode, RpcSearch, SearchHit, SearchRequest, SearchResponse, Timings};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/search", post(search_v1))
        .route("/rest/v1/rpc/search_knowledge_chunks", post(rpc_search_knowledge_chunks))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    #[serde(default)]
    pub bucket_id: Option<Uuid>,
    #[serde(default)]
    pub bucket_type: Option<String>,
    #[serde(default)]
    pub campaign_id: Option<Uuid>,
    #[serde(default = "default_limit")]
    pub limit: u32,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub mode: Option<String>,
}

fn default_limit() -> u32 {
    10
}

fn default_threshold() -> f64 {
    0.2
}

fn parse_mode(mode: Option<&str>) -> Result<Mode, ApiError> {
    match mode {
        None | Some("vector") => Ok(Mode::Vector),
        Some("hybrid") => Ok(Mode::Hybrid),
        Some(other) => Err(ApiError::InvalidInput(format!("mode must be `vector` or `hybrid` (got {other:?})"))),
    }
}

fn check_embedding(state: &AppState, embedding: &[f32]) -> Result<(), ApiError> {
    if embedding.len() != state.embedder.dimensions() {
        return Err(ApiError::InvalidInput(format!(
            "the embedding has {} dimensions; the server's model {} has {}",
            embedding.len(),
            state.embedder.model(),
            state.embedder.dimensions()
        )));
    }
    if embedding.iter().any(|x| !x.is_finite()) {
        return Err(ApiError::InvalidInput("the embedding has non-finite values".into()));
    }
    Ok(())
}

async fn search_v1(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SearchBody>,
) -> Result<Json<SearchResponse>, ApiError> {
    let mode = parse_mode(body.mode.as_deref())?;
    if !(-1.0..=1.0).contains(&body.threshold) {
        return Err(ApiError::InvalidInput("threshold must be between -1 and 1".into()));
    }
    if body.limit == 0 || body.limit > MAX_LIMIT {
        return Err(ApiError::InvalidInput(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let request = SearchRequest {
        query: body.query.clone().unwrap_or_default(),
        bucket_id: body.bucket_id,
        bucket_type: body.bucket_type,
        campaign_id: body.campaign_id,
        limit: body.limit,
        threshold: body.threshold,
        mode,
    };
    match (body.query, body.embedding) {
        (Some(_), Some(_)) => Err(ApiError::InvalidInput("send `query` or `embedding`, not both".into())),
        (None, None) => Err(ApiError::InvalidInput("send `query` (text) or `embedding` (numbers)".into())),
        (Some(_), None) => {
            let response =
                search::search(&state.pool, state.embedder.as_ref(), caller.user, caller.role, &request).await?;
            Ok(Json(response))
        }
        (None, Some(embedding)) => {
            if mode == Mode::Hybrid {
                return Err(ApiError::InvalidInput("hybrid mode needs the query text".into()));
            }
            check_embedding(&state, &embedding)?;
            let started = Instant::now();
            let mut tx = caller.begin(&state.pool).await?;
            let hits = search::nearest(&mut tx, state.embedder.model(), &Vector::from(embedding), &request).await?;
            tx.commit().await?;
            Ok(Json(SearchResponse {
                query: String::new(),
                mode,
                model: state.embedder.model().to_string(),
                hits,
                timings: Timings { embed_ms: 0.0, search_ms: started.elapsed().as_secs_f64() * 1000.0 },
            }))
        }
    }
}

/// A query embedding as PostgREST accepts it: a JSON array, or pgvector's text form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingParam {
    Numbers(Vec<f32>),
    Text(String),
}

impl EmbeddingParam {
    fn into_vec(self) -> Result<Vec<f32>, ApiError> {
        match self {
            EmbeddingParam::Numbers(v) => Ok(v),
            EmbeddingParam::Text(text) => {
                let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
                inner
                    .split(',')
                    .map(|x| x.trim().parse::<f32>())
                    .collect::<Result<Vec<f32>, _>>()
                    .map_err(|_| ApiError::InvalidInput("p_query_embedding is not a vector".into()))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcBody {
    #[serde(default)]
    pub p_user_id: Option<Uuid>,
    pub p_query_embedding: EmbeddingParam,
    #[serde(default)]
    pub p_bucket_type: Option<String>,
    #[serde(default)]
    pub p_campaign_id: Option<Uuid>,
    #[serde(default)]
    pub p_limit: Option<i32>,
    #[serde(default)]
    pub p_similarity_threshold: Option<f64>,
    #[serde(default)]
    pub p_bucket_id: Option<Uuid>,
    #[serde(default)]
    pub p_embedding_model: Option<String>,
}

async fn rpc_search_knowledge_chunks(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<RpcBody>,
) -> Result<Json<Vec<SearchHit>>, ApiError> {
    let embedding = body.p_query_embedding.into_vec()?;
    if embedding.is_empty() || embedding.len() > 16_000 || embedding.iter().any(|x| !x.is_finite()) {
        return Err(ApiError::InvalidInput("p_query_embedding must hold 1 to 16000 finite numbers".into()));
    }
    if let Some(limit) = body.p_limit
        && !(1..=MAX_LIMIT as i32).contains(&limit)
    {
        return Err(ApiError::InvalidInput(format!("p_limit must be between 1 and {MAX_LIMIT}")));
    }
    let params = RpcSearch {
        user_id: body.p_user_id,
        embedding: Vector::from(embedding),
        bucket_type: body.p_bucket_type,
        campaign_id: body.p_campaign_id,
        limit: body.p_limit,
        threshold: body.p_similarity_threshold,
        bucket_id: body.p_bucket_id,
        embedding_model: body.p_embedding_model,
    };
    let mut tx = caller.begin(&state.pool).await?;
    let hits = search::search_knowledge_chunks(&mut tx, &params).await?;
    tx.commit().await?;
    Ok(Json(hits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedding_can_be_pgvector_text() {
        let p: EmbeddingParam = serde_json::from_str(r#""[0.5, -1,2e-1]""#).expect("test step");
        assert_eq!(p.into_vec().expect("test step"), vec![0.5, -1.0, 0.2]);
        let p: EmbeddingParam = serde_json::from_str("[1, 2]").expect("test step");
        assert_eq!(p.into_vec().expect("test step"), vec![1.0, 2.0]);
        let p: EmbeddingParam = serde_json::from_str(r#""[a]""#).expect("test step");
        assert!(p.into_vec().is_err());
    }

    #[test]
    fn modes_are_vector_or_hybrid() {
        assert_eq!(parse_mode(None).expect("test step"), Mode::Vector);
        assert_eq!(parse_mode(Some("hybrid")).expect("test step"), Mode::Hybrid);
        assert!(parse_mode(Some("fuzzy")).is_err());
    }
}

//! `POST /v1/search`: query text embedded server-side, or a ready embedding; vector, lexical
//! (BM25) or hybrid ranking; chunks or the best chunk per document. (The SQL function
//! `search_knowledge_chunks` itself is served by `/rest/v1/rpc/`, as supabase-js calls it.)

use std::time::Instant;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use pgvector::Vector;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Object, RefOr};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody};
use super::openapi::{self, ErrorBody, NO_NUL, NOT_BLANK};
use crate::search::{self, GroupBy, MAX_LIMIT, Mode, SearchHit, SearchOptions, SearchRequest, SearchResponse, Timings};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/search", post(search_v1))
}

/// A search by `query` text (embedded with the server's model), or by a ready `embedding`
/// (vector mode only): exactly one of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    #[serde(default)]
    #[schema(schema_with = query_schema)]
    pub query: Option<String>,
    #[serde(default)]
    #[schema(schema_with = embedding_schema)]
    pub embedding: Option<Vec<f32>>,
    /// Only this bucket.
    #[serde(default)]
    pub bucket_id: Option<Uuid>,
    /// Only buckets of this type.
    #[serde(default)]
    #[schema(schema_with = filter_schema)]
    pub bucket_type: Option<String>,
    /// Only buckets of this campaign.
    #[serde(default)]
    pub campaign_id: Option<Uuid>,
    /// Most hits returned.
    #[serde(default = "default_limit", deserialize_with = "whole")]
    #[schema(minimum = 1, maximum = 1000, default = 10)]
    pub limit: u32,
    /// Minimum cosine similarity of a hit.
    #[serde(default = "default_threshold")]
    #[schema(minimum = -1.0, maximum = 1.0, default = 0.2)]
    pub threshold: f64,
    /// `vector` (default), `lexical` (BM25 alone; needs `query`; `threshold` does not apply) or
    /// `hybrid` (vector and BM25 scores fused; needs `query`).
    #[serde(default)]
    #[schema(value_type = Option<Mode>)]
    pub mode: Option<String>,
    /// Hybrid mode: weight of the vector score against the BM25 score, from 0 (BM25 only) to 1
    /// (vector only). Default 0.5, measured on NFCorpus.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0, default = 0.5)]
    pub alpha: Option<f64>,
    /// `chunk` (default: every chunk ranks) or `document` (the best chunk of each document only).
    #[serde(default)]
    #[schema(value_type = Option<GroupBy>)]
    pub group_by: Option<String>,
}

fn query_schema() -> Object {
    query_text(true)
}

fn query_text(nullable: bool) -> Object {
    let mut schema = openapi::text(NOT_BLANK, None, nullable);
    schema.description = Some(
        "The question; not blank. It must fit the model's input window (all-MiniLM-L6-v2: 254 tokens), else 422."
            .into(),
    );
    schema
}

fn filter_schema() -> Object {
    openapi::text(NO_NUL, None, true)
}

/// The largest float a query vector may hold (`f32::MAX`; larger numbers are not finite).
const MAX_COMPONENT: f64 = f32::MAX as f64;

fn embedding_items() -> Object {
    ObjectBuilder::new().schema_type(Type::Number).minimum(Some(-MAX_COMPONENT)).maximum(Some(MAX_COMPONENT)).build()
}

fn embedding_schema() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new().schema_type(SchemaType::from_iter([Type::Array, Type::Null])).items(embedding_items()).build()
}

/// Search's rule no field carries: `query` (any mode) or `embedding` (vector mode, with the
/// server model's `dimensions`), exactly one of them.
pub(super) fn describe_search_body(doc: &mut utoipa::openapi::OpenApi, dimensions: usize) {
    let Some(components) = doc.components.as_mut() else { return };
    let Some(RefOr::T(Schema::Object(body))) = components.schemas.get("SearchBody").cloned() else { return };
    let mut by_text = body.clone();
    by_text.properties.remove("embedding");
    by_text.properties.insert("query".into(), query_text(false).into());
    by_text.required.push("query".into());
    by_text.title = Some("By query text".into());
    by_text.description = None;
    let mut by_vector = body.clone();
    by_vector.properties.remove("query");
    let vector = ArrayBuilder::new()
        .items(embedding_items())
        .min_items(Some(dimensions))
        .max_items(Some(dimensions))
        .description(Some("A query vector with the dimensions of the server's model."));
    by_vector.properties.insert("embedding".into(), vector.into());
    let vector_mode = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["vector"]));
    by_vector.properties.insert("mode".into(), vector_mode.into());
    by_vector.required.push("embedding".into());
    by_vector.title = Some("By embedding".into());
    by_vector.description = None;
    let one_of = OneOfBuilder::new().item(by_text).item(by_vector).description(body.description.clone());
    components.schemas.insert("SearchBody".into(), one_of.into());
}

fn default_limit() -> u32 {
    10
}

fn default_threshold() -> f64 {
    0.2
}

pub(super) fn parse_mode(mode: Option<&str>) -> Result<Mode, ApiError> {
    match mode {
        None | Some("vector") => Ok(Mode::Vector),
        Some("hybrid") => Ok(Mode::Hybrid),
        Some("lexical") => Ok(Mode::Lexical),
        Some(other) => {
            Err(ApiError::InvalidInput(format!("mode must be `vector`, `lexical` or `hybrid` (got {other:?})")))
        }
    }
}

fn parse_group_by(group_by: Option<&str>) -> Result<GroupBy, ApiError> {
    match group_by {
        None | Some("chunk") => Ok(GroupBy::Chunk),
        Some("document") => Ok(GroupBy::Document),
        Some(other) => Err(ApiError::InvalidInput(format!("group_by must be `chunk` or `document` (got {other:?})"))),
    }
}

fn parse_alpha(alpha: Option<f64>) -> Result<Option<f64>, ApiError> {
    match alpha {
        Some(alpha) if !search::is_weight(alpha) => Err(ApiError::InvalidInput("alpha must be between 0 and 1".into())),
        alpha => Ok(alpha),
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

/// Search chunks by query text or embedding.
#[utoipa::path(post, path = "/v1/search", operation_id = "search", tag = "search",
    request_body = SearchBody,
    responses(
        (status = 200, description = "The best chunks the caller may see", body = SearchResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is larger than the JSON limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "A field breaks its rules, or the query is too long for the model", body = ErrorBody),
    ))]
async fn search_v1(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SearchBody>,
) -> Result<Json<SearchResponse>, ApiError> {
    let mode = parse_mode(body.mode.as_deref())?;
    let options = SearchOptions {
        alpha: parse_alpha(body.alpha)?,
        group_by: parse_group_by(body.group_by.as_deref())?,
        ..SearchOptions::default()
    };
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
            let embedder = state.embedder.as_ref();
            let mut response = state
                .reads
                .run(|pool| {
                    let (request, options) = (&request, &options);
                    async move { search::search_with(&pool, embedder, caller.user, caller.role, request, options).await }
                })
                .await?;
            response.hits.retain(has_similarity);
            Ok(Json(response))
        }
        (None, Some(embedding)) => {
            if mode != Mode::Vector {
                return Err(ApiError::InvalidInput("lexical and hybrid modes need the query text".into()));
            }
            check_embedding(&state, &embedding)?;
            let started = Instant::now();
            let (model, embedding) = (state.embedder.model(), Vector::from(embedding));
            let mut hits = state
                .reads
                .run(|pool| {
                    let (embedding, request, options) = (&embedding, &request, &options);
                    async move {
                        search::nearest_as(&pool, caller.user, caller.role, model, embedding, request, options).await
                    }
                })
                .await?;
            hits.retain(has_similarity);
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

/// Whether a hit has a similarity at all. A query vector without a direction (all zeros, or
/// too small or too large for float arithmetic) has none: pgvector's cosine distance is NaN,
/// which PostgreSQL sorts above every threshold, and JSON cannot carry. Such a query matches
/// nothing.
fn has_similarity(hit: &SearchHit) -> bool {
    hit.similarity_score.is_finite()
}

/// A JSON integer, also when written with a zero fraction (`10.0`): JSON Schema, and so the
/// OpenAPI document, counts that as an integer too.
fn whole_number<T: TryFrom<i64>, E: serde::de::Error>(number: serde_json::Number) -> Result<T, E> {
    let whole = number.as_i64().or_else(|| number.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64));
    let whole = whole.ok_or_else(|| E::custom(format!("expected an integer, got {number}")))?;
    T::try_from(whole).map_err(|_| E::custom(format!("{number} is out of range")))
}

pub(super) fn whole<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    whole_number(serde_json::Number::deserialize(d)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_may_carry_a_zero_fraction() {
        let body: SearchBody = serde_json::from_str(r#"{"query": "q", "limit": 25.0}"#).expect("test step");
        assert_eq!(body.limit, 25);
        assert!(serde_json::from_str::<SearchBody>(r#"{"query": "q", "limit": 2.5}"#).is_err());
        assert!(serde_json::from_str::<SearchBody>(r#"{"query": "q", "limit": -1}"#).is_err());
    }

    #[test]
    fn the_document_states_the_limits_the_handlers_check() {
        let doc = serde_json::to_value(super::openapi::document(3)).expect("test step");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["SearchBody"]["oneOf"][0]["properties"]["limit"]["maximum"], MAX_LIMIT);
        assert_eq!(schemas["SearchBody"]["oneOf"][1]["properties"]["embedding"]["maxItems"], 3);
    }

    #[test]
    fn modes_are_vector_lexical_or_hybrid() {
        assert_eq!(parse_mode(None).expect("test step"), Mode::Vector);
        assert_eq!(parse_mode(Some("hybrid")).expect("test step"), Mode::Hybrid);
        assert_eq!(parse_mode(Some("lexical")).expect("test step"), Mode::Lexical);
        assert!(parse_mode(Some("fuzzy")).is_err());
    }

    #[test]
    fn group_by_is_chunk_or_document_and_alpha_a_weight() {
        assert_eq!(parse_group_by(None).expect("test step"), GroupBy::Chunk);
        assert_eq!(parse_group_by(Some("document")).expect("test step"), GroupBy::Document);
        assert!(parse_group_by(Some("bucket")).is_err());
        assert_eq!(parse_alpha(Some(0.25)).expect("test step"), Some(0.25));
        assert!(parse_alpha(Some(1.5)).is_err());
        assert!(parse_alpha(Some(f64::NAN)).is_err());
    }
}

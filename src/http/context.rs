//! `POST /v1/context`: the best passages for a question, packed into a token budget with
//! numbered citations, for an AI agent's prompt (`crate::context`).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody};
use super::openapi::{self, ErrorBody, NO_NUL, NOT_BLANK};
use crate::context::{self, Context, ContextError, ContextRequest, Encoding, MAX_BUDGET, MIN_BUDGET};
use crate::search::Mode;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/context", post(build_context))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextBody {
    #[schema(schema_with = question_schema)]
    pub question: String,
    /// Most tokens the context may take, counted in `encoding`.
    #[serde(default = "default_budget", deserialize_with = "super::search::whole")]
    #[schema(minimum = 16, maximum = 1000000, default = 2000)]
    pub budget: usize,
    /// The chat model's tokenizer: `cl100k_base` (default) or `o200k_base`.
    #[serde(default)]
    pub encoding: Encoding,
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
    /// How passages are found: `vector` (default), `lexical` or `hybrid`.
    #[serde(default)]
    #[schema(value_type = Option<Mode>)]
    pub mode: Option<String>,
    /// Minimum cosine similarity of a passage (vector and hybrid modes).
    #[serde(default = "default_threshold")]
    #[schema(minimum = -1.0, maximum = 1.0, default = 0.2)]
    pub threshold: f64,
}

fn question_schema() -> utoipa::openapi::Object {
    let mut schema = openapi::text(NOT_BLANK, None, false);
    schema.description = Some(
        "The question; not blank. It must fit the embedding model's input window (all-MiniLM-L6-v2: 254 tokens), else 422."
            .into(),
    );
    schema
}

fn filter_schema() -> utoipa::openapi::Object {
    openapi::text(NO_NUL, None, true)
}

fn default_budget() -> usize {
    2000
}

fn default_threshold() -> f64 {
    0.2
}

impl From<ContextError> for ApiError {
    fn from(e: ContextError) -> ApiError {
        match e {
            ContextError::Budget(_) => ApiError::InvalidInput(e.to_string()),
            ContextError::Search(e) => e.into(),
            ContextError::Database(e) => e.into(),
        }
    }
}

/// The best passages for `question` that fit `budget` tokens, merged where adjacent, ordered
/// by document and position, each cited by number; `text` is them as one block to paste
/// into a prompt, `tokens` its size (never over the budget).
#[utoipa::path(
    post,
    path = "/v1/context",
    tag = "search",
    request_body = ContextBody,
    responses(
        (status = 200, description = "The context", body = Context),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is larger than the JSON limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "A field is invalid, or the question does not fit the model", body = ErrorBody),
        (status = 503, description = "The embedding model is unavailable", body = ErrorBody),
    )
)]
pub async fn build_context(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<ContextBody>,
) -> Result<Json<Context>, ApiError> {
    let mode = super::search::parse_mode(body.mode.as_deref())?;
    if !(MIN_BUDGET..=MAX_BUDGET).contains(&body.budget) {
        return Err(ContextError::Budget(body.budget).into());
    }
    if !(-1.0..=1.0).contains(&body.threshold) {
        return Err(ApiError::InvalidInput("threshold must be between -1 and 1".into()));
    }
    if body.bucket_type.as_deref().is_some_and(|t| t.contains('\0')) {
        return Err(ApiError::InvalidInput("bucket_type must not contain NUL".into()));
    }
    let question = body.question.trim();
    if question.is_empty() || question.contains('\0') {
        return Err(ApiError::InvalidInput("question must be non-blank text without NUL".into()));
    }
    let request = ContextRequest {
        question: question.to_string(),
        budget: body.budget,
        encoding: body.encoding,
        bucket_id: body.bucket_id,
        bucket_type: body.bucket_type,
        campaign_id: body.campaign_id,
        mode,
        threshold: body.threshold,
    };
    let embedder = state.embedder.as_ref();
    let context = state
        .reads
        .run(|pool| {
            let request = &request;
            async move { context::build(&pool, embedder, caller.user, caller.role, request).await }
        })
        .await?;
    Ok(Json(context))
}

//! `/v1/buckets`: create, list, read, change and delete knowledge buckets. A bucket created
//! here is embedded with the server's model; row level security scopes every statement.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody, Path};
use crate::store::buckets::{self, BucketChanges, BucketRecord, BucketSpec};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/buckets", get(list).post(create))
        .route("/v1/buckets/{id}", get(read).patch(update).delete(remove))
}

/// Longest name, type or description accepted.
const MAX_TEXT: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBucket {
    pub name: String,
    #[serde(default = "general")]
    pub bucket_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub campaign_id: Option<Uuid>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

fn general() -> String {
    "general".to_string()
}

/// A field that is absent (`None`), explicitly null (`Some(None)`), or set.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBucket {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub bucket_type: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub campaign_id: Option<Option<Uuid>>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::InvalidInput(format!("{field} must not be empty")));
    }
    if value.len() > MAX_TEXT {
        return Err(ApiError::InvalidInput(format!("{field} is longer than {MAX_TEXT} bytes")));
    }
    Ok(())
}

fn check_metadata(metadata: Option<&serde_json::Value>) -> Result<(), ApiError> {
    match metadata {
        None | Some(serde_json::Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::InvalidInput("metadata must be a JSON object".into())),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateBucket>,
) -> Result<(StatusCode, Json<BucketRecord>), ApiError> {
    check_text("name", &body.name)?;
    check_text("bucket_type", &body.bucket_type)?;
    check_metadata(body.metadata.as_ref())?;
    let metadata = body.metadata.unwrap_or_else(|| serde_json::json!({}));
    let spec = BucketSpec {
        name: body.name.trim(),
        description: body.description.as_deref(),
        bucket_type: body.bucket_type.trim(),
        campaign_id: body.campaign_id,
        metadata: &metadata,
        embedding_model: state.embedder.model(),
        created_by: caller.user,
    };
    let mut tx = caller.begin(&state.pool).await?;
    let bucket = buckets::create_bucket(&mut tx, &spec).await.map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("you already have a bucket named {:?}", spec.name)),
        other => other,
    })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(bucket)))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<BucketRecord>>, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    let all = buckets::list_buckets(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<BucketRecord>, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    let bucket = buckets::bucket_record(&mut tx, id).await?.ok_or(ApiError::NotFound("bucket"))?;
    tx.commit().await?;
    Ok(Json(bucket))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    JsonBody(body): JsonBody<UpdateBucket>,
) -> Result<Json<BucketRecord>, ApiError> {
    if let Some(name) = &body.name {
        check_text("name", name)?;
    }
    if let Some(bucket_type) = &body.bucket_type {
        check_text("bucket_type", bucket_type)?;
    }
    check_metadata(body.metadata.as_ref())?;
    let changes = BucketChanges {
        name: body.name.map(|n| n.trim().to_string()),
        description: body.description,
        bucket_type: body.bucket_type.map(|t| t.trim().to_string()),
        campaign_id: body.campaign_id,
        metadata: body.metadata,
    };
    let mut tx = caller.begin(&state.pool).await?;
    let bucket = buckets::update_bucket(&mut tx, id, &changes).await?.ok_or(ApiError::NotFound("bucket"))?;
    tx.commit().await?;
    Ok(Json(bucket))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<Uuid>) -> Result<StatusCode, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    if !buckets::delete_bucket(&mut tx, id).await? {
        return Err(ApiError::NotFound("bucket"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

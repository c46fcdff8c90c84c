//! `/v1/buckets`: create, list, read, change and delete knowledge buckets. A bucket created
//! here is embedded with the server's model; row level security scopes every statement.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use utoipa::openapi::Object;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody, Path};
use super::openapi::{self, ErrorBody, NO_NUL, NOT_BLANK};
use crate::store::buckets::{self, BucketChanges, BucketRecord, BucketSpec};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/buckets", get(list).post(create))
        .route("/v1/buckets/{id}", get(read).patch(update).delete(remove))
}

/// Longest name or type accepted, in characters. Both are indexed, and an index entry must
/// stay well under PostgreSQL's btree limit (2704 bytes): 255 characters are at most 1020.
const MAX_NAME: usize = 255;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBucket {
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[serde(default = "general")]
    #[schema(schema_with = bucket_type_schema)]
    pub bucket_type: String,
    #[serde(default)]
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
    /// A campaign of the caller's (422 if there is no such campaign).
    #[serde(default)]
    pub campaign_id: Option<Uuid>,
    #[serde(default)]
    #[schema(schema_with = metadata_schema)]
    pub metadata: Option<serde_json::Value>,
}

fn name_schema() -> Object {
    let mut schema = openapi::text(NOT_BLANK, Some(MAX_NAME), false);
    schema.description = Some("Unique among the caller's buckets; trimmed; not blank.".into());
    schema
}

fn bucket_type_schema() -> Object {
    let mut schema = openapi::text(NOT_BLANK, Some(MAX_NAME), false);
    schema.description = Some("A free-form kind, such as `brand`; trimmed; not blank.".into());
    schema.default = Some(serde_json::json!("general"));
    schema
}

fn new_name_schema() -> Object {
    let mut schema = openapi::text(NOT_BLANK, Some(MAX_NAME), true);
    schema.description = Some("A new name or type; trimmed; not blank; null keeps it.".into());
    schema
}

fn description_schema() -> Object {
    let mut schema = openapi::text(NO_NUL, None, true);
    schema.description = Some("Free text; in a change, null clears it.".into());
    schema
}

fn metadata_schema() -> Object {
    openapi::metadata_object(true)
}

fn general() -> String {
    "general".to_string()
}

/// A field that is absent (`None`), explicitly null (`Some(None)`), or set.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The fields to change; an absent field keeps its value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBucket {
    #[serde(default)]
    #[schema(schema_with = new_name_schema)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = description_schema)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    #[schema(schema_with = new_name_schema)]
    pub bucket_type: Option<String>,
    /// A campaign of the caller's (422 if there is no such campaign); null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub campaign_id: Option<Option<Uuid>>,
    /// Replaces the metadata; null keeps it.
    #[serde(default)]
    #[schema(schema_with = metadata_schema)]
    pub metadata: Option<serde_json::Value>,
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::InvalidInput(format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_NAME {
        return Err(ApiError::InvalidInput(format!("{field} is longer than {MAX_NAME} characters")));
    }
    Ok(())
}

fn check_metadata(metadata: Option<&serde_json::Value>) -> Result<(), ApiError> {
    match metadata {
        None => Ok(()),
        Some(object @ serde_json::Value::Object(_)) => match unstorable(object) {
            Some(why) => Err(ApiError::InvalidInput(why.into())),
            None => Ok(()),
        },
        Some(_) => Err(ApiError::InvalidInput("metadata must be a JSON object".into())),
    }
}

/// Largest magnitude of a number in metadata. jsonb keeps any number exactly, but it must
/// read back as an f64: serde_json's reading of a number within a few units of `f64::MAX`
/// can overflow, and the bucket could no longer be answered.
pub const MAX_METADATA_NUMBER: f64 = 1e308;

/// Why `value` cannot be stored as jsonb and read back, if it cannot: U+0000 in a key or
/// string (jsonb cannot hold it), or a number too large. JSON bodies are at most 128 levels
/// deep (serde_json's limit), so the recursion is bounded.
fn unstorable(value: &serde_json::Value) -> Option<&'static str> {
    const NUL: &str = "metadata must not contain U+0000 in its keys or strings";
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(NUL),
        serde_json::Value::Number(n) if n.as_f64().is_some_and(|x| x.abs() > MAX_METADATA_NUMBER) => {
            Some("metadata numbers must lie within -1e308 and 1e308")
        }
        serde_json::Value::Array(items) => items.iter().find_map(unstorable),
        serde_json::Value::Object(map) => {
            map.iter().find_map(|(key, value)| if key.contains('\0') { Some(NUL) } else { unstorable(value) })
        }
        serde_json::Value::Null
        | serde_json::Value::Bool(_)
        | serde_json::Value::Number(_)
        | serde_json::Value::String(_) => None,
    }
}

/// Create a bucket (embedded with the server's model).
#[utoipa::path(post, path = "/v1/buckets", operation_id = "create_bucket", tag = "buckets",
    request_body = CreateBucket,
    responses(
        (status = 201, description = "Created", body = BucketRecord),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "The caller already has a bucket with this name", body = ErrorBody),
        (status = 413, description = "The body is larger than the JSON limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "A field breaks its rules, or the campaign does not exist", body = ErrorBody),
    ))]
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

/// List the caller's buckets, newest first.
#[utoipa::path(get, path = "/v1/buckets", operation_id = "list_buckets", tag = "buckets",
    responses((status = 200, description = "The buckets", body = Vec<BucketRecord>)))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<BucketRecord>>, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    let all = buckets::list_buckets(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all))
}

/// Read a bucket.
#[utoipa::path(get, path = "/v1/buckets/{id}", operation_id = "read_bucket", tag = "buckets",
    params(("id" = Uuid, Path, description = "The bucket's id")),
    responses(
        (status = 200, description = "The bucket", body = BucketRecord),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 404, description = "No such bucket visible to the caller", body = ErrorBody),
    ))]
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

/// Change a bucket's name, type, description, campaign or metadata.
#[utoipa::path(patch, path = "/v1/buckets/{id}", operation_id = "update_bucket", tag = "buckets",
    params(("id" = Uuid, Path, description = "The bucket's id")),
    request_body = UpdateBucket,
    responses(
        (status = 200, description = "The changed bucket", body = BucketRecord),
        (status = 400, description = "The id is not a UUID, or the body is not JSON", body = ErrorBody),
        (status = 404, description = "No such bucket visible to the caller", body = ErrorBody),
        (status = 409, description = "The caller already has a bucket with this name", body = ErrorBody),
        (status = 413, description = "The body is larger than the JSON limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "A field breaks its rules, or the campaign does not exist", body = ErrorBody),
    ))]
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

/// Delete a bucket with its documents and chunks.
#[utoipa::path(delete, path = "/v1/buckets/{id}", operation_id = "delete_bucket", tag = "buckets",
    params(("id" = Uuid, Path, description = "The bucket's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 404, description = "No such bucket visible to the caller", body = ErrorBody),
    ))]
async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<Uuid>) -> Result<StatusCode, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    if !buckets::delete_bucket(&mut tx, id).await? {
        return Err(ApiError::NotFound("bucket"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_is_an_object_jsonb_can_hold_and_give_back() {
        assert!(check_metadata(Some(&json!({ "a": [1, { "b": "x" }] }))).is_ok());
        assert!(check_metadata(Some(&json!({ "a": [1, { "b": "x\u{0}" }] }))).is_err());
        assert!(check_metadata(Some(&json!({ "a\u{0}": 1 }))).is_err());
        assert!(check_metadata(Some(&json!([1]))).is_err());
        assert!(check_metadata(None).is_ok());
        assert!(check_metadata(Some(&json!({ "a": [-1e308, 1e308, 5e-324] }))).is_ok());
        assert!(check_metadata(Some(&json!({ "a": { "b": 1.7976931348623155e308 } }))).is_err());
    }

    #[test]
    fn names_are_measured_in_characters_and_must_not_be_blank() {
        assert!(check_text("name", &"é".repeat(MAX_NAME)).is_ok());
        assert!(check_text("name", &"é".repeat(MAX_NAME + 1)).is_err());
        assert!(check_text("name", " \t").is_err());
    }
}

//! Knowledge buckets: named collections of documents, each tied to one embedding model.

use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Bucket {
    pub id: Uuid,
    pub name: String,
    pub bucket_type: String,
    pub campaign_id: Option<Uuid>,
    pub embedding_model: String,
    pub created_by: Uuid,
}

const COLUMNS: &str = "id, name, bucket_type, campaign_id, embedding_model, created_by";

/// What a bucket is created with when it does not exist yet.
#[derive(Debug, Clone)]
pub struct NewBucket<'a> {
    pub name: &'a str,
    pub bucket_type: &'a str,
    pub campaign_id: Option<Uuid>,
    pub embedding_model: &'a str,
    pub created_by: Uuid,
}

/// The caller's bucket with this name, if it has one (row level security scopes the look-up).
pub async fn bucket_by_name(conn: &mut PgConnection, owner: Uuid, name: &str) -> Result<Option<Bucket>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM public.knowledge_buckets WHERE created_by = $1 AND name = $2"))
        .bind(owner)
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// The bucket with this id, if the caller may see it.
pub async fn bucket_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<Bucket>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM public.knowledge_buckets WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The caller's bucket named `new.name`, created if missing.
pub async fn ensure_bucket(conn: &mut PgConnection, new: &NewBucket<'_>) -> Result<Bucket, sqlx::Error> {
    let inserted = sqlx::query_as(&format!(
        "INSERT INTO public.knowledge_buckets (name, bucket_type, campaign_id, embedding_model, created_by)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (created_by, name) DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(new.name)
    .bind(new.bucket_type)
    .bind(new.campaign_id)
    .bind(new.embedding_model)
    .bind(new.created_by)
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(bucket) => Ok(bucket),
        None => bucket_by_name(conn, new.created_by, new.name).await?.ok_or(sqlx::Error::RowNotFound),
    }
}

/// Every column of a bucket, as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Bucket)]
pub struct BucketRecord {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub bucket_type: String,
    pub campaign_id: Option<Uuid>,
    pub embedding_model: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub created_by: Uuid,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

const RECORD_COLUMNS: &str =
    "id, name, description, bucket_type, campaign_id, embedding_model, metadata, created_by, created_at, updated_at";

/// A bucket to create, with everything the caller may set.
#[derive(Debug, Clone)]
pub struct BucketSpec<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub bucket_type: &'a str,
    pub campaign_id: Option<Uuid>,
    pub metadata: &'a serde_json::Value,
    pub embedding_model: &'a str,
    pub created_by: Uuid,
}

/// Creates a bucket; a name the owner already uses fails with a unique violation.
pub async fn create_bucket(conn: &mut PgConnection, spec: &BucketSpec<'_>) -> Result<BucketRecord, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO public.knowledge_buckets
           (name, description, bucket_type, campaign_id, metadata, embedding_model, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING {RECORD_COLUMNS}"
    ))
    .bind(spec.name)
    .bind(spec.description)
    .bind(spec.bucket_type)
    .bind(spec.campaign_id)
    .bind(spec.metadata)
    .bind(spec.embedding_model)
    .bind(spec.created_by)
    .fetch_one(conn)
    .await
}

/// The buckets the caller may see, newest first.
pub async fn list_buckets(conn: &mut PgConnection) -> Result<Vec<BucketRecord>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {RECORD_COLUMNS} FROM public.knowledge_buckets ORDER BY created_at DESC, id"))
        .fetch_all(conn)
        .await
}

/// The bucket with this id, every column, if the caller may see it.
pub async fn bucket_record(conn: &mut PgConnection, id: Uuid) -> Result<Option<BucketRecord>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {RECORD_COLUMNS} FROM public.knowledge_buckets WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The fields of a bucket to change; `None` leaves a field as it is. `campaign_id` and
/// `description` can be cleared with `Some(None)`.
#[derive(Debug, Clone, Default)]
pub struct BucketChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub bucket_type: Option<String>,
    pub campaign_id: Option<Option<Uuid>>,
    pub metadata: Option<serde_json::Value>,
}

/// Applies `changes` to the bucket if the caller may change it; None if it may not (or the
/// bucket does not exist).
pub async fn update_bucket(
    conn: &mut PgConnection,
    id: Uuid,
    changes: &BucketChanges,
) -> Result<Option<BucketRecord>, sqlx::Error> {
    // Each optional field carries a "was it given" flag, so one static statement covers
    // every combination and NULL can still be written on purpose.
    sqlx::query_as(&format!(
        "UPDATE public.knowledge_buckets SET
           name = CASE WHEN $2 THEN $3 ELSE name END,
           description = CASE WHEN $4 THEN $5 ELSE description END,
           bucket_type = CASE WHEN $6 THEN $7 ELSE bucket_type END,
           campaign_id = CASE WHEN $8 THEN $9 ELSE campaign_id END,
           metadata = CASE WHEN $10 THEN $11 ELSE metadata END
         WHERE id = $1
         RETURNING {RECORD_COLUMNS}"
    ))
    .bind(id)
    .bind(changes.name.is_some())
    .bind(changes.name.as_deref())
    .bind(changes.description.is_some())
    .bind(changes.description.clone().flatten())
    .bind(changes.bucket_type.is_some())
    .bind(changes.bucket_type.as_deref())
    .bind(changes.campaign_id.is_some())
    .bind(changes.campaign_id.flatten())
    .bind(changes.metadata.is_some())
    .bind(&changes.metadata)
    .fetch_optional(conn)
    .await
}

/// Deletes the bucket with its documents and chunks (foreign keys cascade); false if the
/// caller may not see it.
pub async fn delete_bucket(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM public.knowledge_buckets WHERE id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

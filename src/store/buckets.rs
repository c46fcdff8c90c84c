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

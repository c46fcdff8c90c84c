//! Lexical search's data: a bucket's text search configuration, and the BM25 term statistics
//! that triggers keep per bucket (`migrations/0008_lexical_search.sql`), read and recounted.

use sqlx::PgConnection;
use uuid::Uuid;

use super::buckets::{self, Bucket, NewBucket};

/// How a bucket's text is split into terms; fixed when the bucket is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextSearchConfig {
    /// English stemming and stop words.
    #[default]
    English,
    /// Lower-cased words, no stemming or stop words: for other languages.
    Simple,
}

impl TextSearchConfig {
    pub fn as_str(self) -> &'static str {
        match self {
            TextSearchConfig::English => "english",
            TextSearchConfig::Simple => "simple",
        }
    }
}

/// The caller's bucket named `new.name`, created with `config` if missing (an existing bucket
/// keeps the configuration it was created with).
pub async fn ensure_bucket_with_config(
    conn: &mut PgConnection,
    new: &NewBucket<'_>,
    config: TextSearchConfig,
) -> Result<Bucket, sqlx::Error> {
    sqlx::query(
        "INSERT INTO public.knowledge_buckets
           (name, bucket_type, campaign_id, embedding_model, created_by, text_search_config)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (created_by, name) DO NOTHING",
    )
    .bind(new.name)
    .bind(new.bucket_type)
    .bind(new.campaign_id)
    .bind(new.embedding_model)
    .bind(new.created_by)
    .bind(config.as_str())
    .execute(&mut *conn)
    .await?;
    buckets::bucket_by_name(conn, new.created_by, new.name).await?.ok_or(sqlx::Error::RowNotFound)
}

/// A bucket's configuration, if the caller may see the bucket.
pub async fn text_search_config(conn: &mut PgConnection, bucket_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT text_search_config FROM public.knowledge_buckets WHERE id = $1")
        .bind(bucket_id)
        .fetch_optional(conn)
        .await
}

/// What BM25 knows of a bucket: its chunks, their total length, and each term's document
/// frequency (sorted by term).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermStatistics {
    pub chunks: i64,
    pub total_length: i64,
    pub terms: Vec<(String, i64)>,
}

/// The statistics the triggers keep for `bucket_id` (visible under the caller's RLS).
pub async fn term_statistics(conn: &mut PgConnection, bucket_id: Uuid) -> Result<TermStatistics, sqlx::Error> {
    let totals: Option<(i64, i64)> =
        sqlx::query_as("SELECT chunk_count, total_length FROM public.knowledge_lexical_buckets WHERE bucket_id = $1")
            .bind(bucket_id)
            .fetch_optional(&mut *conn)
            .await?;
    let terms =
        sqlx::query_as("SELECT term, doc_freq FROM public.knowledge_lexical_terms WHERE bucket_id = $1 ORDER BY term")
            .bind(bucket_id)
            .fetch_all(conn)
            .await?;
    let (chunks, total_length) = totals.unwrap_or_default();
    Ok(TermStatistics { chunks, total_length, terms })
}

/// The same statistics counted afresh from the bucket's chunks (slow: reads every chunk).
pub async fn recount_term_statistics(conn: &mut PgConnection, bucket_id: Uuid) -> Result<TermStatistics, sqlx::Error> {
    let (chunks, total_length): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(public.tsvector_token_count(fts)), 0)::bigint
         FROM public.knowledge_chunks WHERE bucket_id = $1",
    )
    .bind(bucket_id)
    .fetch_one(&mut *conn)
    .await?;
    let terms = sqlx::query_as(
        "SELECT l.term, count(*) FROM public.knowledge_chunks kc
         CROSS JOIN LATERAL unnest(tsvector_to_array(kc.fts)) l(term)
         WHERE kc.bucket_id = $1 GROUP BY l.term ORDER BY l.term",
    )
    .bind(bucket_id)
    .fetch_all(conn)
    .await?;
    Ok(TermStatistics { chunks, total_length, terms })
}

/// Sets BM25's k1 and b for the rest of the transaction (`None` keeps the defaults, 1.2 and
/// 0.75, or the database's settings).
pub async fn set_bm25_parameters(conn: &mut PgConnection, k1: Option<f64>, b: Option<f64>) -> Result<(), sqlx::Error> {
    if k1.is_none() && b.is_none() {
        return Ok(());
    }
    sqlx::query(
        "SELECT set_config('kb.bm25_k1', coalesce($1::float8::text, current_setting('kb.bm25_k1', true), ''), true),
                set_config('kb.bm25_b', coalesce($2::float8::text, current_setting('kb.bm25_b', true), ''), true)",
    )
    .bind(k1)
    .bind(b)
    .execute(conn)
    .await?;
    Ok(())
}

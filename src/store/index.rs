//! Embedding models and their vector indexes. One partial index per model, on
//! `(embedding::vector(N)) WHERE embedding_model = '<model>'`, built once data exists (an
//! ivfflat index built on an empty table has useless clusters), with `lists` sized to the row
//! count, and rebuilt when the table outgrows it. Runs as kb's own login, which owns the tables.

use sqlx::{PgConnection, PgPool};

/// Below this many chunks an exact scan is as fast as any index, and ivfflat clusters
/// trained on so few rows would be poor.
pub const MIN_INDEXED_ROWS: i64 = 1_000;

/// Rebuild once the table holds this many times the rows the index was built for.
const GROWTH_FACTOR: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMethod {
    Ivfflat,
    Hnsw,
}

impl IndexMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexMethod::Ivfflat => "ivfflat",
            IndexMethod::Hnsw => "hnsw",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("embedding model {model} is registered with {registered} dimensions, but produces {actual}")]
    Dimensions { model: String, registered: i32, actual: i32 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Records an embedding model (name and dimensions) so buckets can refer to it.
pub async fn register_model(conn: &mut PgConnection, model: &str, dimensions: usize) -> Result<(), ModelError> {
    let actual = i32::try_from(dimensions).unwrap_or(i32::MAX);
    sqlx::query("INSERT INTO public.embedding_models (name, dimensions) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(model)
        .bind(actual)
        .execute(&mut *conn)
        .await?;
    let registered: i32 = sqlx::query_scalar("SELECT dimensions FROM public.embedding_models WHERE name = $1")
        .bind(model)
        .fetch_one(conn)
        .await?;
    if registered != actual {
        return Err(ModelError::Dimensions { model: model.to_string(), registered, actual });
    }
    Ok(())
}

/// A model's vector index as recorded in `embedding_models`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IndexState {
    pub name: String,
    pub dimensions: i32,
    pub index_method: Option<String>,
    pub index_lists: Option<i32>,
    pub indexed_rows: Option<i64>,
}

/// What an index (re)build did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexBuild {
    pub model: String,
    pub method: &'static str,
    pub rows: i64,
    pub lists: Option<i32>,
    pub seconds: u64,
}

/// `lists` for an ivfflat index over `rows` vectors: rows / 1000 up to 1M rows, then
/// sqrt(rows), as pgvector recommends.
pub fn ivfflat_lists(rows: i64) -> i32 {
    let lists = if rows <= 1_000_000 { rows / 1000 } else { (rows as f64).sqrt() as i64 };
    i32::try_from(lists.clamp(1, 32_768)).unwrap_or(32_768)
}

/// The index name of a model: derived from a hash, since model names hold `/` and `-`.
pub fn index_name(model: &str) -> String {
    format!("knowledge_chunks_embedding_{}", &crate::hash::bytes_hash(model.as_bytes())[..12])
}

/// The index of a model's vectors in `content_embeddings`.
pub fn content_index_name(model: &str) -> String {
    format!("content_embeddings_embedding_{}", &crate::hash::bytes_hash(model.as_bytes())[..12])
}

/// A model whose index build failed; the other models' builds went ahead.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexFailure {
    pub model: String,
    pub error: String,
}

/// What one round of index maintenance did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Maintenance {
    pub builds: Vec<IndexBuild>,
    pub failures: Vec<IndexFailure>,
}

/// Builds or rebuilds the vector index of every model whose chunks have outgrown theirs.
/// With `force`, rebuilds every model's index with that method. One model's failure is
/// reported and does not stop the others.
pub async fn ensure_indexes(pool: &PgPool, force: Option<IndexMethod>) -> Result<Maintenance, sqlx::Error> {
    ensure_indexes_with(pool, force, HnswParams::default()).await
}

/// hnsw's graph: links per vector (`m`) and the candidates its build weighs (`ef_construction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    pub m: u32,
    pub ef_construction: u32,
}

impl Default for HnswParams {
    /// Twice pgvector's defaults (16, 64): on real embeddings at 100k rows (`kb bench
    /// search`, BENCHMARKS.md) recall@10 0.968 at ef_search 320 where (16, 64) gave 0.932,
    /// for a build 3.6x as long (75 s instead of 21 s on 2 cores).
    fn default() -> HnswParams {
        HnswParams { m: 32, ef_construction: 128 }
    }
}

/// [`ensure_indexes`] building hnsw indexes with `hnsw` (`kb bench search` sweeps them).
pub async fn ensure_indexes_with(
    pool: &PgPool,
    force: Option<IndexMethod>,
    hnsw: HnswParams,
) -> Result<Maintenance, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    // One builder at a time across processes: two would drop each other's staging index.
    // A session lock, since CREATE INDEX CONCURRENTLY runs outside any transaction.
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('kb:vector-indexes'))").fetch_one(&mut *conn).await?;
    if !locked {
        return Ok(Maintenance::default());
    }
    let built = build_outgrown(&mut conn, force, hnsw).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext('kb:vector-indexes'))").execute(&mut *conn).await;
    let built = built?;
    unlocked?;
    Ok(built)
}

async fn build_outgrown(
    conn: &mut PgConnection,
    force: Option<IndexMethod>,
    hnsw: HnswParams,
) -> Result<Maintenance, sqlx::Error> {
    let models: Vec<IndexState> = sqlx::query_as(
        "SELECT name, dimensions, index_method, index_lists, indexed_rows FROM public.embedding_models ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut done = Maintenance::default();
    for model in &models {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.knowledge_chunks WHERE embedding_model = $1")
            .bind(&model.name)
            .fetch_one(&mut *conn)
            .await?;
        let method = match (force, model.index_method.as_deref()) {
            (Some(method), _) => method,
            (None, Some("hnsw")) => {
                // hnsw grows with the data and needs no rebuild; its row count sets the
                // search's effort (`nearest_knowledge_chunks`).
                record_rows(&mut *conn, &model.name, rows).await?;
                continue;
            }
            (None, Some(_)) if rows < model.indexed_rows.unwrap_or(0).max(MIN_INDEXED_ROWS) * GROWTH_FACTOR => continue,
            // An ivfflat index that the data outgrew is rebuilt as ivfflat (`kb reindex
            // --method hnsw` moves it).
            (None, Some(_)) => IndexMethod::Ivfflat,
            (None, None) if rows < MIN_INDEXED_ROWS => continue,
            // hnsw by default: on real embeddings (`kb bench search`, 100k rows) it reaches
            // recall@10 0.95 at about half ivfflat's latency, and needs no rebuilds.
            (None, None) => IndexMethod::Hnsw,
        };
        if rows == 0 {
            continue;
        }
        match build_index(&mut *conn, model, method, rows, hnsw).await {
            Ok(build) => done.builds.push(build),
            Err(e) => {
                tracing::warn!(model = %model.name, error = %e, "vector index build failed");
                // A failed CONCURRENTLY build leaves an invalid index; the next round drops it.
                let _ = sqlx::query("RESET ALL").execute(&mut *conn).await;
                done.failures.push(IndexFailure { model: model.name.clone(), error: e.to_string() });
            }
        }
    }
    for model in &models {
        match build_content_index(&mut *conn, model).await {
            Ok(Some(build)) => done.builds.push(build),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(model = %model.name, error = %e, "content vector index build failed");
                let _ = sqlx::query("RESET ALL").execute(&mut *conn).await;
                done.failures.push(IndexFailure { model: model.name.clone(), error: e.to_string() });
            }
        }
    }
    Ok(done)
}

/// `content_embeddings` gets one hnsw index per model that has rows there: hnsw needs no
/// training data and grows with the table, so it is built once and never rebuilt.
async fn build_content_index(conn: &mut PgConnection, model: &IndexState) -> Result<Option<IndexBuild>, sqlx::Error> {
    let name = content_index_name(&model.name);
    let valid: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
                        WHERE c.relname = $1 AND c.relnamespace = 'public'::regnamespace AND i.indisvalid)",
    )
    .bind(&name)
    .fetch_one(&mut *conn)
    .await?;
    if valid {
        return Ok(None);
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.content_embeddings WHERE embedding_model = $1")
        .bind(&model.name)
        .fetch_one(&mut *conn)
        .await?;
    if rows == 0 {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    // An invalid index from a killed build: clear it first.
    sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS public.{name}")).execute(&mut *conn).await?;
    let ddl: String = sqlx::query_scalar(
        "SELECT format('CREATE INDEX CONCURRENTLY %I ON public.content_embeddings USING hnsw
                        ((embedding::vector(%s)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
                        WHERE embedding_model = %L', $1::text, $2::int, $3::text)",
    )
    .bind(&name)
    .bind(model.dimensions)
    .bind(&model.name)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(&ddl).execute(&mut *conn).await?;
    Ok(Some(IndexBuild {
        model: model.name.clone(),
        method: IndexMethod::Hnsw.as_str(),
        rows,
        lists: None,
        seconds: started.elapsed().as_secs(),
    }))
}

/// Records the rows a model's hnsw graph holds now.
async fn record_rows(conn: &mut PgConnection, model: &str, rows: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.embedding_models SET indexed_rows = $2 WHERE name = $1 AND indexed_rows IS DISTINCT FROM $2",
    )
    .bind(model)
    .bind(rows)
    .execute(conn)
    .await?;
    Ok(())
}

/// The `maintenance_work_mem` (kB) of a vector index build. An hnsw graph that outgrows it
/// is finished on disk, many times slower (pgvector's "hnsw graph no longer fits into
/// maintenance_work_mem"): 1M rows of 384 dimensions at m 32 need ~2.8 GB. So an hnsw build
/// gets its graph's size (4 bytes per dimension and ~40 per link, measured with pgvector 0.8:
/// 2,830 bytes per 384-d row at m 32), plus a tenth, at least 512 MB, at most a quarter of
/// this machine's memory (the embedded cluster's; an external server is assumed to be no
/// smaller), and never less than the server's own setting. ivfflat needs only its sample.
fn build_memory_kb(
    method: IndexMethod,
    rows: i64,
    dimensions: i32,
    hnsw: HnswParams,
    current_kb: i64,
    host_kb: Option<i64>,
) -> i64 {
    const FLOOR_KB: i64 = 512 * 1024;
    let wanted = match method {
        IndexMethod::Ivfflat => FLOOR_KB,
        IndexMethod::Hnsw => {
            let row_bytes = 4 * i64::from(dimensions) + 40 * i64::from(hnsw.m) + 64;
            let graph_kb = rows.saturating_mul(row_bytes) / 1024;
            let cap = host_kb.map_or(2 * 1024 * 1024, |kb| kb / 4).max(FLOOR_KB);
            (graph_kb + graph_kb / 10).clamp(FLOOR_KB, cap)
        }
    };
    wanted.max(current_kb)
}

#[tracing::instrument(skip(conn, model), fields(model = %model.name))]
async fn build_index(
    conn: &mut PgConnection,
    model: &IndexState,
    method: IndexMethod,
    rows: i64,
    hnsw: HnswParams,
) -> Result<IndexBuild, sqlx::Error> {
    let started = std::time::Instant::now();
    let name = index_name(&model.name);
    let staging = format!("{name}_new");
    let lists = (method == IndexMethod::Ivfflat).then(|| ivfflat_lists(rows));
    let with = match lists {
        Some(lists) => format!("lists = {lists}"),
        None => format!("m = {}, ef_construction = {}", hnsw.m, hnsw.ef_construction),
    };
    tracing::info!(method = method.as_str(), rows, ?lists, "building vector index");
    // A killed build leaves an invalid staging index behind: clear it first.
    sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS public.{staging}")).execute(&mut *conn).await?;
    let current: i64 =
        sqlx::query_scalar("SELECT setting::bigint FROM pg_settings WHERE name = 'maintenance_work_mem'")
            .fetch_one(&mut *conn)
            .await?;
    let memory_kb = build_memory_kb(method, rows, model.dimensions, hnsw, current, crate::host::memory_kb());
    tracing::info!(memory_mb = memory_kb / 1024, "index build memory (maintenance_work_mem)");
    sqlx::query(&format!("SET maintenance_work_mem = '{memory_kb}kB'")).execute(&mut *conn).await?;
    // Identifiers are ours; the model name is quoted by the server with %L.
    let ddl: String = sqlx::query_scalar(
        "SELECT format('CREATE INDEX CONCURRENTLY %I ON public.knowledge_chunks USING %s
                        ((embedding::vector(%s)) vector_cosine_ops) WITH (%s) WHERE embedding_model = %L',
                       $1::text, $2::text, $3::int, $4::text, $5::text)",
    )
    .bind(&staging)
    .bind(method.as_str())
    .bind(model.dimensions)
    .bind(&with)
    .bind(&model.name)
    .fetch_one(&mut *conn)
    .await?;
    let built = sqlx::query(&ddl).execute(&mut *conn).await;
    sqlx::query("RESET maintenance_work_mem").execute(&mut *conn).await?;
    built?;

    // The swap never queues searches: the old index goes CONCURRENTLY (waiting for the
    // transactions that use it, blocking none), and the rename takes only a short lock, with
    // a lock timeout so it never waits in line in front of readers.
    sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS public.{name}")).execute(&mut *conn).await?;
    rename_with_retry(&mut *conn, &staging, &name).await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query(
        "UPDATE public.embedding_models
         SET index_method = $2, index_lists = $3, indexed_rows = $4, indexed_at = now()
         WHERE name = $1",
    )
    .bind(&model.name)
    .bind(method.as_str())
    .bind(lists)
    .bind(rows)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE public.knowledge_buckets, public.knowledge_documents, public.knowledge_chunks")
        .execute(&mut *conn)
        .await?;
    Ok(IndexBuild {
        model: model.name.clone(),
        method: method.as_str(),
        rows,
        lists,
        seconds: started.elapsed().as_secs(),
    })
}

/// Renames an index under a short lock timeout, retrying a few times.
async fn rename_with_retry(conn: &mut PgConnection, from: &str, to: &str) -> Result<(), sqlx::Error> {
    let mut attempt = 0;
    loop {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("SET LOCAL lock_timeout = '500ms'").execute(&mut *tx).await?;
        let renamed = sqlx::query(&format!("ALTER INDEX public.{from} RENAME TO {to}")).execute(&mut *tx).await;
        match renamed {
            Ok(_) => return tx.commit().await,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") && attempt < 20 => {
                drop(tx);
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_grow_with_the_row_count() {
        assert_eq!(ivfflat_lists(0), 1);
        assert_eq!(ivfflat_lists(5_000), 5);
        assert_eq!(ivfflat_lists(100_000), 100);
        assert_eq!(ivfflat_lists(1_000_000), 1000);
        assert_eq!(ivfflat_lists(4_000_000), 2000);
    }

    #[test]
    fn each_model_has_its_own_index_name() {
        let a = index_name("sentence-transformers/all-MiniLM-L6-v2");
        let b = index_name("text-embedding-3-small");
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert!(a.len() < 63);
    }

    #[test]
    fn an_hnsw_build_gets_memory_for_its_graph() {
        let hnsw = HnswParams::default();
        let gib = 1024 * 1024;
        let host = Some(24 * gib);
        // Small tables keep the 512 MB floor; ivfflat never needs more.
        assert_eq!(build_memory_kb(IndexMethod::Hnsw, 10_000, 384, hnsw, 65_536, host), 512 * 1024);
        assert_eq!(build_memory_kb(IndexMethod::Ivfflat, 10_000_000, 384, hnsw, 65_536, host), 512 * 1024);
        // 1M rows of 384-d at m 32: ~2.9 GB with the tenth added, under the 6 GB cap.
        let million = build_memory_kb(IndexMethod::Hnsw, 1_000_000, 384, hnsw, 65_536, host);
        assert!((2_900_000..3_300_000).contains(&million), "{million}");
        // Capped at a quarter of the machine, or 2 GB when its memory is unknown.
        assert_eq!(build_memory_kb(IndexMethod::Hnsw, 100_000_000, 384, hnsw, 65_536, host), 6 * gib);
        assert_eq!(build_memory_kb(IndexMethod::Hnsw, 100_000_000, 384, hnsw, 65_536, None), 2 * gib);
        // A server configured higher keeps its setting.
        assert_eq!(build_memory_kb(IndexMethod::Hnsw, 10_000, 384, hnsw, 8 * gib, host), 8 * gib);
    }
}

//! The spec's monitoring queries ("Database Monitoring", "Database Health Checks"), for
//! `kb db stats` and `GET /v1/admin/stats`: the slowest statements (pg_stat_statements;
//! `total_time`/`mean_time` are `total_exec_time`/`mean_exec_time` since PostgreSQL 13), table
//! sizes, index usage, connections by state and locks. Connections are those of the current
//! database (the spec's `datname = 'postgres'` is Supabase's database name).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use tracing::instrument;
use utoipa::ToSchema;

/// How many of the slowest statements are listed.
pub const SLOWEST_STATEMENTS: i64 = 10;

/// The figures of one database, read at one moment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DatabaseStats {
    /// The database they are about.
    pub database: String,
    /// When they were read (the database's clock).
    pub collected_at: DateTime<Utc>,
    /// The statements of this database with the highest mean execution time; null when
    /// pg_stat_statements is not available (see `statements_unavailable`).
    pub slowest_statements: Option<Vec<StatementStats>>,
    /// Why `slowest_statements` is null.
    pub statements_unavailable: Option<String>,
    /// Tables of the `public` schema, largest first (with their indexes and TOAST).
    pub table_sizes: Vec<TableSize>,
    /// Every index of the database's own tables, most scanned first.
    pub index_usage: Vec<IndexUsage>,
    /// Connections to this database by state (`active`, `idle`, ...; null for background
    /// processes and for other logins' sessions the reader may not see).
    pub connections: Vec<ConnectionCount>,
    /// Locks held or awaited in the whole server, by mode and type.
    pub locks: Vec<LockCount>,
}

/// One statement of pg_stat_statements.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct StatementStats {
    /// The normalised statement (`<insufficient privilege>` for other logins' statements
    /// unless the reader has pg_read_all_stats).
    pub query: String,
    pub calls: i64,
    /// Milliseconds, all calls together.
    pub total_exec_time: f64,
    /// Milliseconds per call.
    pub mean_exec_time: f64,
    /// Rows returned or affected, all calls together.
    pub rows: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TableSize {
    pub schema: String,
    pub table: String,
    /// Bytes of the table, its indexes and TOAST.
    pub bytes: i64,
    /// The same, for people (`pg_size_pretty`).
    pub size: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct IndexUsage {
    pub schema: String,
    pub table: String,
    pub index: String,
    /// Index scans since the statistics were last reset.
    pub idx_scan: i64,
    pub idx_tup_read: i64,
    pub idx_tup_fetch: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ConnectionCount {
    pub state: Option<String>,
    pub connections: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct LockCount {
    pub mode: String,
    pub locktype: String,
    pub locks: i64,
}

/// Creates the pg_stat_statements extension in this database when the server has loaded its
/// library and the extension is installed. Returns whether the extension exists afterwards.
/// Needs a login allowed to create it (a superuser); others get the database's error.
pub async fn enable_statement_stats(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let (loaded, installed, created): (bool, bool, bool) = sqlx::query_as(
        "SELECT 'pg_stat_statements' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')),
                EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'),
                EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if created {
        return Ok(true);
    }
    if !(loaded && installed) {
        return Ok(false);
    }
    match sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&mut *conn).await {
        Ok(_) => Ok(true),
        // Another session created it at the same moment.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23505") | Some("42710")) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Reads every section. The slowest statements are optional: without pg_stat_statements
/// (not installed, not created in this database, or not loaded by the server) the reason is
/// given instead.
#[instrument(skip_all)]
pub async fn collect(conn: &mut PgConnection) -> Result<DatabaseStats, sqlx::Error> {
    let (database, collected_at): (String, DateTime<Utc>) =
        sqlx::query_as("SELECT current_database()::text, now()").fetch_one(&mut *conn).await?;
    let (slowest_statements, statements_unavailable) = match slowest_statements(conn).await? {
        Ok(rows) => (Some(rows), None),
        Err(reason) => (None, Some(reason)),
    };
    Ok(DatabaseStats {
        database,
        collected_at,
        slowest_statements,
        statements_unavailable,
        table_sizes: table_sizes(conn).await?,
        index_usage: index_usage(conn).await?,
        connections: connections(conn).await?,
        locks: locks(conn).await?,
    })
}

/// The spec's "Query performance analysis", for this database. `Ok(Err(reason))` when
/// pg_stat_statements cannot answer.
pub async fn slowest_statements(conn: &mut PgConnection) -> Result<Result<Vec<StatementStats>, String>, sqlx::Error> {
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pg_stat_statements'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(schema) = schema else {
        return Ok(Err("the pg_stat_statements extension is not created in this database \
                       (kb's embedded cluster creates it; elsewhere: CREATE EXTENSION pg_stat_statements)"
            .into()));
    };
    // The schema comes from the catalog, quoted as an identifier; no value is formatted in.
    let sql = format!(
        "SELECT coalesce(query, '') AS query, calls, total_exec_time, mean_exec_time, rows
         FROM {}.pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY mean_exec_time DESC
         LIMIT $1",
        quote_ident(&schema)
    );
    match sqlx::query_as::<_, StatementStats>(&sql).bind(SLOWEST_STATEMENTS).fetch_all(&mut *conn).await {
        Ok(rows) => Ok(Ok(rows)),
        // 55000: "pg_stat_statements must be loaded via shared_preload_libraries".
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55000") => {
            Ok(Err("pg_stat_statements is not loaded by the server (shared_preload_libraries); kb's embedded \
             cluster loads it from its next start (kb db stop && kb db start)"
                .into()))
        }
        Err(e) => Err(e),
    }
}

/// The spec's "Table size monitoring": tables of `public`, largest first.
pub async fn table_sizes(conn: &mut PgConnection) -> Result<Vec<TableSize>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.nspname::text AS schema, c.relname::text AS table,
                pg_total_relation_size(c.oid) AS bytes, pg_size_pretty(pg_total_relation_size(c.oid)) AS size
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
         ORDER BY bytes DESC, c.relname",
    )
    .fetch_all(conn)
    .await
}

/// The spec's "Index usage analysis".
pub async fn index_usage(conn: &mut PgConnection) -> Result<Vec<IndexUsage>, sqlx::Error> {
    sqlx::query_as(
        "SELECT schemaname::text AS schema, relname::text AS table, indexrelname::text AS index,
                coalesce(idx_scan, 0) AS idx_scan, coalesce(idx_tup_read, 0) AS idx_tup_read,
                coalesce(idx_tup_fetch, 0) AS idx_tup_fetch
         FROM pg_stat_user_indexes
         ORDER BY idx_scan DESC, schemaname, indexrelname",
    )
    .fetch_all(conn)
    .await
}

/// The spec's "Connection monitoring", for the current database.
pub async fn connections(conn: &mut PgConnection) -> Result<Vec<ConnectionCount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT state, count(*) AS connections
         FROM pg_stat_activity
         WHERE datname = current_database()
         GROUP BY state
         ORDER BY connections DESC, state",
    )
    .fetch_all(conn)
    .await
}

/// The spec's "Lock monitoring".
pub async fn locks(conn: &mut PgConnection) -> Result<Vec<LockCount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT mode, locktype, count(*) AS locks
         FROM pg_locks
         GROUP BY mode, locktype
         ORDER BY locks DESC, mode, locktype",
    )
    .fetch_all(conn)
    .await
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

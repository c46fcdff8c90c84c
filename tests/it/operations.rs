//! The spec's operations as kb commands, run as the real `kb` binary against real
//! PostgreSQL: backup and restore (logical, and point-in-time for an embedded cluster of its
//! own), monitoring (`kb db stats` and `GET /v1/admin/stats`), maintenance and cleanup; and
//! the spec's own monitoring, maintenance and cleanup SQL against kb's schema.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use kb::cluster::Cluster;
use kb::store::{self, Role, chunks, documents, users};
use pgvector::Vector;
use serde_json::Value;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::helpers::{TestDb, bucket, empty_database};
use crate::http::{Setup, TestServer};

const MODEL: &str = "test/operations-3";

/// Runs `kb` with these arguments and environment (no `DATABASE_URL` unless given).
async fn kb(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kb"));
    cmd.args(args).env_remove("DATABASE_URL").env("KB_LOG", "warn");
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().await.expect("run kb")
}

/// `kb ...` that must succeed; its stdout.
async fn kb_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = kb(args, env).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kb {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout
}

/// Exact row counts of every table of `public` and `auth`.
async fn row_counts(pool: &PgPool) -> BTreeMap<String, i64> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
         WHERE table_schema IN ('public', 'auth') AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    let mut counts = BTreeMap::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.expect("count");
        counts.insert(table, n);
    }
    counts
}

/// A user with a bucket of documents whose chunks carry 3-dimension vectors, a campaign
/// with metrics (and so audit log rows). Returns the owner.
async fn seed(pool: &PgPool) -> Uuid {
    let mut conn = pool.acquire().await.expect("conn");
    let owner = users::ensure_user(&mut conn, "ops-owner@example.com").await.expect("user");
    store::index::register_model(&mut conn, MODEL, 3).await.expect("model");
    drop(conn);
    let bucket = bucket(pool, owner, "ops", "general", MODEL).await;
    let mut tx = store::begin_as(pool, Uuid::nil(), Role::ServiceRole).await.expect("begin");
    for d in 0..4 {
        let title = format!("doc {d}");
        let path = format!("doc-{d}.txt");
        let new = documents::NewDocument {
            bucket_id: bucket.id,
            title: &title,
            file_name: &path,
            file_type: Some("txt"),
            file_size: 10,
            upload_path: &path,
            content_hash: &path,
            created_by: owner,
        };
        let doc = documents::insert_ready(&mut tx, &new).await.expect("document");
        let chunks: Vec<chunks::NewChunk> = (0..5)
            .map(|i| {
                let angle = (d * 5 + i) as f32 * 0.13;
                chunks::NewChunk {
                    chunk_index: i,
                    content: format!("chunk {i} of document {d} about refunds and campaigns"),
                    content_hash: format!("{d}-{i}"),
                    token_count: 8,
                    embedding: Vector::from(vec![angle.cos(), angle.sin(), 0.1 * d as f32]),
                    metadata: serde_json::json!({ "page": i + 1 }),
                }
            })
            .collect();
        chunks::replace_chunks(&mut tx, doc, bucket.id, MODEL, &chunks).await.expect("chunks");
    }
    tx.commit().await.expect("commit");
    let campaign: Uuid = sqlx::query_scalar(
        "INSERT INTO campaigns (name, type, channel, status, created_by) VALUES ('spring', 'email', 'email', 'active', $1)
         RETURNING id",
    )
    .bind(owner)
    .fetch_one(pool)
    .await
    .expect("campaign");
    sqlx::query(
        "INSERT INTO campaign_metrics (campaign_id, metric_type, metric_value, metric_date)
         SELECT $1, 'opens', g, current_date - g FROM generate_series(1, 7) g",
    )
    .bind(campaign)
    .execute(pool)
    .await
    .expect("metrics");
    owner
}

/// The owner's nearest chunks to a fixed vector, with their scores.
async fn search(pool: &PgPool, owner: Uuid) -> Vec<(Uuid, String, f64)> {
    let mut tx = store::begin_as(pool, owner, Role::Authenticated).await.expect("begin");
    let hits: Vec<(Uuid, String, f64)> = sqlx::query_as(
        "SELECT chunk_id, chunk_content, similarity_score
         FROM search_knowledge_chunks($1, $2, NULL, NULL, 8, -1)",
    )
    .bind(owner)
    .bind(Vector::from(vec![0.8f32, 0.6, 0.1]))
    .fetch_all(&mut *tx)
    .await
    .expect("search");
    tx.rollback().await.expect("rollback");
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_an_empty_database_with_the_same_rows_and_search_results() {
    let source = TestDb::new().await;
    let owner = seed(&source.pool).await;
    let counts = row_counts(&source.pool).await;
    assert_eq!(counts["public.knowledge_chunks"], 20);
    assert!(counts["public.audit_log"] > 0, "the audit trigger recorded the seed");
    let hits = search(&source.pool, owner).await;
    assert_eq!(hits.len(), 8);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kb.dump");
    let file_arg = file.to_str().expect("utf-8 path");
    let out = kb_ok(&["db", "backup", "--file", file_arg], &[("DATABASE_URL", &source.url)]).await;
    assert!(out.contains("custom format"), "{out}");
    let mode = std::fs::metadata(&file).expect("backup file").permissions().mode();
    assert_eq!(mode & 0o077, 0, "the backup is readable by its owner only");

    // The whole database into an empty one: same rows everywhere, same search answer.
    let empty = empty_database().await;
    let out = kb_ok(&["db", "restore", "--file", file_arg], &[("DATABASE_URL", &empty)]).await;
    assert!(out.contains("restored"), "{out}");
    let restored = store::connect(&empty, 2).await.expect("connect restored");
    assert_eq!(row_counts(&restored).await, counts);
    assert_eq!(search(&restored, owner).await, hits);

    // Restoring a full backup over the same objects fails and changes nothing.
    let again = kb(&["db", "restore", "--file", file_arg], &[("DATABASE_URL", &empty)]).await;
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(row_counts(&restored).await, counts);
    // With --clean, over its own objects: written rows since are gone again.
    sqlx::query("DELETE FROM campaign_metrics").execute(&restored).await.expect("delete");
    kb_ok(&["db", "restore", "--clean", "--file", file_arg], &[("DATABASE_URL", &empty)]).await;
    // New connections: the recreated `vector` type has a new oid, which sessions cache.
    restored.close().await;
    let restored = store::connect(&empty, 2).await.expect("connect restored");
    assert_eq!(row_counts(&restored).await, counts);
    assert_eq!(search(&restored, owner).await, hits);

    // Chosen tables, rows only, as plain SQL (the spec's manual backup), into a migrated
    // database: those tables' rows arrive, and no trigger fires for them.
    let sql = dir.path().join("campaigns.sql");
    let sql_arg = sql.to_str().expect("utf-8 path");
    let tables = ["--table", "auth.users", "--table", "public.campaigns", "--table", "public.campaign_metrics"];
    let mut args = vec!["db", "backup", "--data-only", "--file", sql_arg];
    args.extend(tables);
    kb_ok(&args, &[("DATABASE_URL", &source.url)]).await;
    let text = std::fs::read_to_string(&sql).expect("sql backup");
    assert!(text.contains("COPY public.campaign_metrics") && !text.contains("CREATE TABLE"), "rows only");
    let target = TestDb::new().await;
    kb_ok(&["db", "restore", "--file", sql_arg], &[("DATABASE_URL", &target.url)]).await;
    let after = row_counts(&target.pool).await;
    for table in ["auth.users", "public.campaigns", "public.campaign_metrics"] {
        assert_eq!(after[table], counts[table], "{table}");
    }
    assert_eq!(after["public.audit_log"], 0, "triggers were disabled while rows were restored");
    assert_eq!(after["public.knowledge_chunks"], 0, "only the chosen tables");

    // Rows of one table (schema-qualified) out of the full custom backup.
    let users_only = TestDb::new().await;
    let args = ["db", "restore", "--data-only", "--table", "auth.users", "--file", file_arg];
    kb_ok(&args, &[("DATABASE_URL", &users_only.url)]).await;
    let after = row_counts(&users_only.pool).await;
    assert_eq!(after["auth.users"], counts["auth.users"]);
    assert_eq!(after["public.campaigns"], 0, "only the chosen table");

    // A table that does not exist is an error, not an empty backup.
    let missing =
        kb(&["db", "backup", "--table", "no_such_table", "--file", sql_arg], &[("DATABASE_URL", &source.url)]).await;
    assert!(!missing.status.success());
}

/// Stops the cluster even when an assertion fails halfway.
struct StopOnDrop(Cluster);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let cluster = self.0.clone();
        let _ = std::thread::spawn(move || tokio::runtime::Runtime::new().expect("runtime").block_on(cluster.stop()))
            .join();
    }
}

async fn labels(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let labels =
        sqlx::query_scalar("SELECT label FROM pitr_probe ORDER BY id").fetch_all(&mut conn).await.expect("rows");
    conn.close().await.expect("close");
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_recovery_keeps_what_was_committed_before_the_moment_and_nothing_after() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The `postgres` user must traverse it when the tests run as root.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data_dir = tmp.path().join("kb-data");
    let data_arg = data_dir.to_str().expect("utf-8 path");
    let env = [("KB_DATA_DIR", data_arg)];
    let cluster = Cluster::new(&data_dir).expect("cluster");
    let _stop = StopOnDrop(cluster.clone());

    // A cluster made before kb managed these settings gets them, once, at its next start.
    cluster.ensure_running("kb").await.expect("first start");
    cluster.stop().await.expect("stop");
    let conf = cluster.pg_dir().join("postgresql.conf");
    let text = std::fs::read_to_string(&conf).expect("postgresql.conf");
    let old: String = text.lines().filter(|l| !l.contains("kb.conf")).fold(String::new(), |out, l| out + l + "\n");
    std::fs::write(&conf, old).expect("strip kb's include lines");
    std::fs::remove_file(cluster.pg_dir().join("kb.conf")).expect("remove kb.conf");
    kb_ok(&["db", "start"], &env).await;
    kb_ok(&["db", "start"], &env).await;
    let text = std::fs::read_to_string(&conf).expect("postgresql.conf");
    assert_eq!(text.matches("include_if_exists = 'kb.conf'").count(), 1, "{text}");
    let url = cluster.database_url("kb");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let (archive_mode, preload): (String, String) =
        sqlx::query_as("SELECT current_setting('archive_mode'), current_setting('shared_preload_libraries')")
            .fetch_one(&mut conn)
            .await
            .expect("settings");
    assert_eq!(archive_mode, "on");
    assert!(preload.contains("pg_stat_statements"), "{preload}");

    sqlx::raw_sql(
        "CREATE TABLE pitr_probe (id serial PRIMARY KEY, label text NOT NULL);
         INSERT INTO pitr_probe (label) VALUES ('before the base backup');",
    )
    .execute(&mut conn)
    .await
    .expect("probe table");
    let out = kb_ok(&["db", "backup", "--base"], &env).await;
    assert!(out.contains("base backup"), "{out}");
    assert_eq!(cluster.base_backups().expect("backups").len(), 1);

    sqlx::query("INSERT INTO pitr_probe (label) VALUES ('before the moment')").execute(&mut conn).await.expect("row");
    let moment: String = sqlx::query_scalar("SELECT now()::text").fetch_one(&mut conn).await.expect("now");
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("INSERT INTO pitr_probe (label) VALUES ('after the moment')").execute(&mut conn).await.expect("row");
    // Complete the segment and wait until it is archived.
    let segment: String =
        sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())").fetch_one(&mut conn).await.expect("switch");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let archived: Option<String> = sqlx::query_scalar("SELECT last_archived_wal FROM pg_stat_archiver")
            .fetch_one(&mut conn)
            .await
            .expect("archiver");
        if archived.is_some_and(|a| a >= segment) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{segment} was not archived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.wal_archive_dir().join(&segment).is_file());

    // The monitoring of the embedded cluster, pg_stat_statements included; the spec's query
    // (with PostgreSQL 13's column names) runs as written.
    let stats: Value = serde_json::from_str(&kb_ok(&["db", "stats", "--json"], &env).await).expect("stats json");
    let slowest = stats["slowest_statements"].as_array().expect("pg_stat_statements is loaded");
    assert!(!slowest.is_empty(), "{stats}");
    assert!(slowest[0]["mean_exec_time"].is_number() && slowest[0]["calls"].is_number());
    let spec: Vec<(String, i64, f64, f64, i64)> = sqlx::query_as(
        "SELECT query, calls, total_exec_time, mean_exec_time, rows FROM pg_stat_statements
         ORDER BY mean_exec_time DESC LIMIT 10",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the spec's query performance analysis");
    assert!(!spec.is_empty());
    conn.close().await.expect("close");

    assert_eq!(labels(&url).await, ["before the base backup", "before the moment", "after the moment"]);
    let out = kb_ok(&["db", "restore", "--to", &moment], &env).await;
    assert!(out.contains("previous data directory"), "{out}");
    assert_eq!(labels(&url).await, ["before the base backup", "before the moment"]);

    // Promoted: it takes writes again, and the replaced data directory was kept.
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await.expect("state");
    assert!(!in_recovery);
    sqlx::query("INSERT INTO pitr_probe (label) VALUES ('after the restore')").execute(&mut conn).await.expect("write");
    conn.close().await.expect("close");
    let kept = std::fs::read_dir(data_dir.as_path())
        .expect("data dir")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("pg.before-restore-"));
    assert!(kept, "the old data directory is kept aside");
    let settings = std::fs::read_to_string(cluster.pg_dir().join("kb.conf")).expect("kb.conf");
    assert!(!settings.contains("recovery_target_time"), "recovery settings are removed: {settings}");

    // A logical backup of the embedded cluster's database, restored into another of its databases.
    let dump = tmp.path().join("kb.dump");
    let dump_arg = dump.to_str().expect("utf-8 path");
    kb_ok(&["db", "backup", "--file", dump_arg], &env).await;
    kb_ok(&["db", "restore", "--file", dump_arg, "--database", "kb_copy"], &env).await;
    let copy = labels(&cluster.database_url("kb_copy")).await;
    assert_eq!(copy, ["before the base backup", "before the moment", "after the restore"]);

    // A moment before every base backup cannot be reached.
    let early = kb(&["db", "restore", "--to", "2000-01-01T00:00:00Z"], &env).await;
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("no base backup finished before"));
    // Point-in-time recovery is the embedded cluster's.
    let refused = kb(&["db", "backup", "--base"], &[("KB_DATA_DIR", data_arg), ("DATABASE_URL", &url)]).await;
    assert!(!refused.status.success());
}

#[tokio::test]
async fn the_stats_endpoint_is_for_service_role_only_and_has_every_section() {
    let server = TestServer::start(Setup::fake()).await;
    let url = server.url("/v1/admin/stats");
    let anonymous = server.client.get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), 401);
    let anon = server.client.get(&url).bearer_auth(server.token(None, Role::Anon)).send().await.expect("request");
    assert_eq!(anon.status(), 403);
    let (_, user_token) = server.user("stats-user@example.com").await;
    let user = server.client.get(&url).bearer_auth(&user_token).send().await.expect("request");
    assert_eq!(user.status(), 403);
    let body: Value = user.json().await.expect("error json");
    assert_eq!(body["code"], "forbidden");

    let service = server.client.get(&url).bearer_auth(server.token(None, Role::ServiceRole)).send().await.expect("ok");
    assert_eq!(service.status(), 200);
    let stats: Value = service.json().await.expect("stats json");
    let tables: Vec<&str> =
        stats["table_sizes"].as_array().expect("table sizes").iter().filter_map(|t| t["table"].as_str()).collect();
    assert!(tables.contains(&"knowledge_chunks") && tables.contains(&"audit_log"), "{tables:?}");
    assert!(stats["table_sizes"][0]["bytes"].as_i64().expect("bytes") > 0);
    let indexes = stats["index_usage"].as_array().expect("index usage");
    assert!(indexes.iter().any(|i| i["index"] == "idx_campaigns_created_by"), "{indexes:?}");
    let connections = stats["connections"].as_array().expect("connections");
    assert!(connections.iter().any(|c| c["state"] == "active"), "this request's own session: {connections:?}");
    assert!(!stats["locks"].as_array().expect("locks").is_empty());
    assert!(
        stats["slowest_statements"].is_array() || stats["statements_unavailable"].is_string(),
        "either the statements or why not: {stats}"
    );
}

#[tokio::test]
async fn cleanup_moves_and_deletes_exactly_the_rows_past_their_retention() {
    let db = TestDb::new().await;
    let mut conn = db.pool.acquire().await.expect("conn");
    let owner = users::ensure_user(&mut conn, "cleanup@example.com").await.expect("user");
    drop(conn);
    let campaign = |status: &'static str, ended_days_ago: i32| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "INSERT INTO campaigns (name, type, channel, status, start_date, end_date, created_by)
                 VALUES ('c', 'email', 'email', $1::campaign_status, now() - interval '90 days',
                         now() - make_interval(days => $2), $3)
                 RETURNING id",
            )
            .bind(status)
            .bind(ended_days_ago)
            .bind(owner)
            .fetch_one(&pool)
            .await
            .expect("campaign")
        }
    };
    let finished_long_ago = campaign("completed", 40).await;
    let finished_lately = campaign("completed", 10).await;
    let active_long_ago = campaign("active", 40).await;
    let metric = |days_ago: i32| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "INSERT INTO campaign_metrics (campaign_id, metric_type, metric_value, metric_date, recorded_at)
                 VALUES ($1, 'clicks', 3, current_date, now() - make_interval(days => $2)) RETURNING id",
            )
            .bind(active_long_ago)
            .bind(days_ago)
            .fetch_one(&pool)
            .await
            .expect("metric")
        }
    };
    let year_old = [metric(400).await, metric(366).await, metric(500).await];
    let months_old = [metric(100).await, metric(200).await];
    let audit = |days_ago: i32| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "INSERT INTO audit_log (table_name, record_id, operation, timestamp)
                 VALUES ('campaigns', gen_random_uuid(), 'UPDATE', now() - make_interval(days => $1)) RETURNING id",
            )
            .bind(days_ago)
            .fetch_one(&pool)
            .await
            .expect("audit row")
        }
    };
    let old_audit = [audit(91).await, audit(365).await, audit(1000).await];
    let recent_audit = [audit(89).await, audit(1).await];

    let env = [("DATABASE_URL", db.url.as_str())];
    let out = kb_ok(&["db", "cleanup", "--json"], &env).await;
    let done: Value = serde_json::from_str(&out).expect("cleanup json");
    assert_eq!(done["campaigns_archived"], 1, "{done}");
    assert_eq!(done["campaign_metrics_archived"], 3, "{done}");
    assert_eq!(done["audit_log_deleted"], 3, "{done}");

    let status = |id: Uuid| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status::text FROM campaigns WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("status")
        }
    };
    assert_eq!(status(finished_long_ago).await, "archived");
    assert_eq!(status(finished_lately).await, "completed");
    assert_eq!(status(active_long_ago).await, "active");
    let ids = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            let mut ids: Vec<Uuid> = sqlx::query_scalar(sql).fetch_all(&pool).await.expect("ids");
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<Uuid>| {
        v.sort();
        v
    };
    assert_eq!(ids("SELECT id FROM campaign_metrics_archive").await, sorted(year_old.to_vec()));
    assert_eq!(ids("SELECT id FROM campaign_metrics").await, sorted(months_old.to_vec()));
    let audit_left = ids("SELECT id FROM audit_log").await;
    assert!(old_audit.iter().all(|id| !audit_left.contains(id)), "old audit rows are gone");
    assert!(recent_audit.iter().all(|id| audit_left.contains(id)), "recent audit rows stay");

    // Retention periods come from flags or KB_* variables.
    let out = kb_ok(
        &["db", "cleanup", "--audit-days", "30"],
        &[("DATABASE_URL", &db.url), ("KB_METRICS_RETENTION_DAYS", "150")],
    )
    .await;
    assert!(out.contains("campaign metrics: 1 rows"), "{out}");
    assert!(out.contains("audit log: 1 rows older than 30 days"), "{out}");
    assert_eq!(ids("SELECT id FROM campaign_metrics").await, vec![months_old[0]]);
    let refused = kb(&["db", "cleanup", "--audit-days", "0"], &env).await;
    assert!(!refused.status.success(), "a retention of 0 days is refused");
}

#[tokio::test]
async fn the_specs_monitoring_maintenance_and_cleanup_sql_runs_against_kbs_database() {
    let db = TestDb::new().await;
    let owner = seed(&db.pool).await;
    let pool = &db.pool;

    // Monitoring (pg_stat_statements is checked with the embedded cluster of the PITR test).
    let sizes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT schemaname::text, tablename::text,
           pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) as size
         FROM pg_tables WHERE schemaname = 'public'
         ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC",
    )
    .fetch_all(pool)
    .await
    .expect("table size monitoring");
    assert!(sizes.iter().any(|(_, t, _)| t == "knowledge_chunks"));
    let indexes: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT indexrelname::text, idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes ORDER BY idx_scan DESC",
    )
    .fetch_all(pool)
    .await
    .expect("index usage analysis");
    assert!(indexes.iter().any(|(name, ..)| name == "idx_leads_email"));
    let _: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) as connection_count FROM pg_stat_activity WHERE datname = 'postgres' GROUP BY state",
    )
    .fetch_all(pool)
    .await
    .expect("connection monitoring");
    let locks: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT mode, locktype, COUNT(*) as lock_count FROM pg_locks GROUP BY mode, locktype ORDER BY lock_count DESC",
    )
    .fetch_all(pool)
    .await
    .expect("lock monitoring");
    assert!(!locks.is_empty());

    // Maintenance, one statement at a time (VACUUM cannot run in a transaction block).
    for statement in [
        "VACUUM ANALYZE campaigns",
        "VACUUM ANALYZE leads",
        "VACUUM ANALYZE lead_activities",
        "REINDEX INDEX idx_campaigns_created_by",
        "REINDEX INDEX idx_leads_email",
        "ANALYZE campaigns",
        "ANALYZE leads",
    ] {
        sqlx::raw_sql(statement).execute(pool).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    // Cleanup scripts, as written, on one old and one new row of each table.
    let campaign: Uuid = sqlx::query_scalar("SELECT id FROM campaigns WHERE created_by = $1")
        .bind(owner)
        .fetch_one(pool)
        .await
        .expect("id");
    sqlx::query(
        "INSERT INTO campaign_metrics (campaign_id, metric_type, metric_value, metric_date, recorded_at)
         VALUES ($1, 'old', 1, current_date, now() - interval '2 years')",
    )
    .bind(campaign)
    .execute(pool)
    .await
    .expect("old metric");
    sqlx::query(
        "INSERT INTO audit_log (table_name, record_id, operation, timestamp)
         VALUES ('campaigns', gen_random_uuid(), 'DELETE', now() - interval '100 days')",
    )
    .execute(pool)
    .await
    .expect("old audit row");
    let metrics_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM campaign_metrics").fetch_one(pool).await.expect("n");
    let audit_before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(pool).await.expect("n");
    for statement in [
        "DELETE FROM audit_log WHERE timestamp < NOW() - INTERVAL '90 days'",
        "INSERT INTO campaign_metrics_archive SELECT * FROM campaign_metrics WHERE recorded_at < NOW() - INTERVAL '1 year'",
        "DELETE FROM campaign_metrics WHERE recorded_at < NOW() - INTERVAL '1 year'",
    ] {
        sqlx::raw_sql(statement).execute(pool).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let metrics_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM campaign_metrics").fetch_one(pool).await.expect("n");
    let archived: Vec<String> =
        sqlx::query_scalar("SELECT metric_type FROM campaign_metrics_archive").fetch_all(pool).await.expect("archive");
    let audit_after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(pool).await.expect("n");
    assert_eq!((metrics_after, archived, audit_after), (metrics_before - 1, vec!["old".to_string()], audit_before - 1));

    // The same through kb: maintenance of chosen tables, and the statistics as JSON.
    let env = [("DATABASE_URL", db.url.as_str())];
    let out = kb_ok(&["db", "maintain", "--table", "campaigns", "--table", "public.leads"], &env).await;
    assert!(out.contains("VACUUM ANALYZE public.campaigns") && out.contains("VACUUM ANALYZE public.leads"), "{out}");
    let vacuumed: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'leads'")
            .fetch_one(pool)
            .await
            .expect("last vacuum");
    assert!(vacuumed.is_some(), "leads was vacuumed");
    let missing = kb(&["db", "maintain", "--table", "no_such_table"], &env).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no table \"no_such_table\""));
    let stats: Value = serde_json::from_str(&kb_ok(&["db", "stats", "--json"], &env).await).expect("stats json");
    for section in ["table_sizes", "index_usage", "connections", "locks"] {
        assert!(!stats[section].as_array().expect(section).is_empty(), "{section}: {stats}");
    }
    let text = kb_ok(&["db", "stats"], &env).await;
    assert!(text.contains("table sizes (public)") && text.contains("knowledge_chunks"), "{text}");
    assert!(Path::new(env!("CARGO_BIN_EXE_kb")).is_file());
}

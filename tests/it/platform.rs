//! The platform schema beyond row level security (that is `rls_matrix.rs`): the spec's own
//! SQL runs against it, lead scores stay current, the audit log records the actor and never
//! a secret, secrets are stored encrypted with a configured key, and the migrations apply on
//! a database that already has Supabase's `auth` schema.

use kb::store::{self, Role, users};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::helpers::{TestDb, empty_database};

async fn user(pool: &PgPool, email: &str) -> Uuid {
    let mut conn = pool.acquire().await.expect("connection");
    users::ensure_user(&mut conn, email).await.expect("user")
}

/// A company whose admin is `admin`.
async fn company(pool: &PgPool, name: &str, admin: Uuid) -> Uuid {
    sqlx::query_scalar("INSERT INTO companies (name, created_by) VALUES ($1, $2) RETURNING id")
        .bind(name)
        .bind(admin)
        .fetch_one(pool)
        .await
        .expect("company")
}

async fn scores(pool: &PgPool, lead: Uuid) -> (i32, i32, i32, i32) {
    let row = sqlx::query(
        "SELECT demographic_score, behavioral_score, engagement_score, lead_score FROM leads WHERE id = $1",
    )
    .bind(lead)
    .fetch_one(pool)
    .await
    .expect("lead");
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn lead_scores_are_the_specs_and_follow_every_activity() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let sales = user(pool, "sales@example.com").await;
    let acme = company(pool, "Acme", sales).await;

    let lead: Uuid = sqlx::query_scalar(
        "INSERT INTO leads (company_id, email, source, company_size, created_by)
         VALUES ($1, 'ann@example.com', 'web', 'enterprise', $2) RETURNING id",
    )
    .bind(acme)
    .bind(sales)
    .fetch_one(pool)
    .await
    .expect("lead");
    assert_eq!(scores(pool, lead).await, (25, 0, 0, 25), "demographic score of an enterprise");

    // As a sales member, through row level security: scores follow the activities.
    let mut tx = store::begin_as(pool, sales, Role::Authenticated).await.expect("tx");
    for kind in ["email_opened", "link_clicked", "email_opened", "page_viewed"] {
        sqlx::query("INSERT INTO lead_activities (lead_id, activity_type) VALUES ($1, $2)")
            .bind(lead)
            .bind(kind)
            .execute(&mut *tx)
            .await
            .expect("activity");
    }
    tx.commit().await.expect("commit");
    // Scores are the triggers' to write.
    let mut tx = store::begin_as(pool, sales, Role::Authenticated).await.expect("tx");
    let refused = sqlx::query("UPDATE leads SET lead_score = 1000 WHERE id = $1").bind(lead).execute(&mut *tx).await;
    assert!(refused.is_err(), "a user wrote a score");
    tx.rollback().await.expect("rollback");
    assert_eq!(scores(pool, lead).await, (25, 15, 0, 40), "5 points per open or click");

    // The company's scoring rules give engagement points, for past and future activities.
    sqlx::query(
        "INSERT INTO lead_scoring_rules (company_id, name, activity_type, points, created_by)
         VALUES ($1, 'page views', 'page_viewed', 7, $2)",
    )
    .bind(acme)
    .bind(sales)
    .execute(pool)
    .await
    .expect("rule");
    assert_eq!(scores(pool, lead).await, (25, 15, 7, 47));
    sqlx::query("DELETE FROM lead_activities WHERE lead_id = $1 AND activity_type = 'link_clicked'")
        .bind(lead)
        .execute(pool)
        .await
        .expect("delete activity");
    assert_eq!(scores(pool, lead).await, (25, 10, 7, 42));
    sqlx::query("UPDATE leads SET company_size = 'medium' WHERE id = $1").bind(lead).execute(pool).await.expect("size");
    assert_eq!(scores(pool, lead).await, (15, 10, 7, 32));

    // The spec's own scoring migration computes what the triggers keep.
    let spec = "UPDATE leads SET
          demographic_score = CASE
            WHEN company_size = 'enterprise' THEN 25
            WHEN company_size = 'large' THEN 20
            WHEN company_size = 'medium' THEN 15
            ELSE 10
          END,
          behavioral_score = (
            SELECT COUNT(*) * 5
            FROM lead_activities
            WHERE lead_id = leads.id
            AND activity_type IN ('email_opened', 'link_clicked')
          );
        UPDATE leads SET lead_score = COALESCE(demographic_score, 0) + COALESCE(behavioral_score, 0) + COALESCE(engagement_score, 0);";
    sqlx::raw_sql(spec).execute(pool).await.expect("the spec's lead scoring migration");
    assert_eq!(scores(pool, lead).await, (15, 10, 7, 32));
}

#[tokio::test]
async fn the_specs_campaign_archive_rule_and_cleanup_sql_run() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let owner = user(pool, "owner@example.com").await;
    let insert = "INSERT INTO campaigns (name, type, channel, status, end_date, created_by)
                  VALUES ($1, 'email', 'newsletter', $2::campaign_status, now() - make_interval(days => $3), $4)";
    for (name, status, days) in [("old", "completed", 45), ("recent", "completed", 5), ("live", "active", 90)] {
        sqlx::query(insert).bind(name).bind(status).bind(days).bind(owner).execute(pool).await.expect("campaign");
    }
    let archived: i64 =
        sqlx::query_scalar("SELECT public.archive_finished_campaigns()").fetch_one(pool).await.expect("archive");
    assert_eq!(archived, 1);
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT name, status::text FROM campaigns ORDER BY name").fetch_all(pool).await.expect("rows");
    assert_eq!(
        statuses,
        [("live".into(), "active".into()), ("old".into(), "archived".into()), ("recent".into(), "completed".into())]
    );
    // The spec's statements, as written.
    sqlx::raw_sql(
        "UPDATE campaigns SET status = 'archived' WHERE status = 'completed' AND end_date < NOW() - INTERVAL '30 days';
         UPDATE campaigns SET status = 'error' WHERE name = 'live';",
    )
    .execute(pool)
    .await
    .expect("the spec's campaign status migration");

    let campaign: Uuid =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE name = 'old'").fetch_one(pool).await.expect("id");
    sqlx::query(
        "INSERT INTO campaign_metrics (campaign_id, metric_type, metric_value, metric_date, recorded_at)
         VALUES ($1, 'clicks', 1, current_date, now() - interval '400 days'), ($1, 'clicks', 2, current_date, now())",
    )
    .bind(campaign)
    .execute(pool)
    .await
    .expect("metrics");
    sqlx::raw_sql(
        "DELETE FROM audit_log WHERE timestamp < NOW() - INTERVAL '90 days';
         INSERT INTO campaign_metrics_archive
         SELECT * FROM campaign_metrics WHERE recorded_at < NOW() - INTERVAL '1 year';
         DELETE FROM campaign_metrics WHERE recorded_at < NOW() - INTERVAL '1 year';",
    )
    .execute(pool)
    .await
    .expect("the spec's cleanup scripts");
    let moved: i64 =
        sqlx::query_scalar("SELECT count(*) FROM campaign_metrics_archive").fetch_one(pool).await.expect("n");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM campaign_metrics").fetch_one(pool).await.expect("n");
    assert_eq!((moved, kept), (1, 1));

    // The spec's monitoring and health-check queries, with PostgreSQL 13's column names.
    for query in [
        "SELECT schemaname, tablename, pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) as size
         FROM pg_tables WHERE schemaname = 'public' ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC",
        "SELECT indexrelname, idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes ORDER BY idx_scan DESC",
        "SELECT state, COUNT(*) as connection_count FROM pg_stat_activity WHERE datname = current_database() GROUP BY state",
        "SELECT mode, locktype, COUNT(*) as lock_count FROM pg_locks GROUP BY mode, locktype ORDER BY lock_count DESC",
    ] {
        sqlx::query(query).fetch_all(pool).await.unwrap_or_else(|e| panic!("{query}: {e}"));
    }
}

#[tokio::test]
async fn secrets_are_stored_encrypted_and_never_given_back_to_a_client() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let admin = user(pool, "admin@example.com").await;
    let acme = company(pool, "Acme", admin).await;
    let connection: Uuid = sqlx::query_scalar(
        "INSERT INTO oauth_connections (company_id, provider, account_id, created_by)
         VALUES ($1, 'google', 'acct-1', $2) RETURNING id",
    )
    .bind(acme)
    .bind(admin)
    .fetch_one(pool)
    .await
    .expect("connection");
    const TOKEN: &str = "ya29.very-secret-access-token";
    const KEY: &str = "a key from kb's configuration, not from SQL";
    let with_key = |key: &'static str| async move {
        let mut tx = store::begin_as(pool, admin, Role::Authenticated).await.expect("tx");
        sqlx::query("SELECT set_config('kb.secrets_key', $1, true), set_config('kb.secrets_key_id', 'k1', true)")
            .bind(key)
            .execute(&mut *tx)
            .await
            .expect("key");
        tx
    };

    // Without a key nothing is stored.
    let mut tx = store::begin_as(pool, admin, Role::Authenticated).await.expect("tx");
    let refused = sqlx::query("SELECT public.set_connection_secret($1, 'access_token', $2)")
        .bind(connection)
        .bind(TOKEN)
        .execute(&mut *tx)
        .await;
    assert!(refused.is_err(), "a secret stored without a key");
    tx.rollback().await.expect("rollback");

    let mut tx = with_key(KEY).await;
    sqlx::query("SELECT public.set_connection_secret($1, 'access_token', $2)")
        .bind(connection)
        .bind(TOKEN)
        .execute(&mut *tx)
        .await
        .expect("set secret");
    // The admin cannot read the ciphertext back, nor decrypt it.
    let row = sqlx::query("SELECT provider, secret_key_id FROM oauth_connections WHERE id = $1")
        .bind(connection)
        .fetch_one(&mut *tx)
        .await
        .expect("visible columns");
    assert_eq!(row.get::<Option<String>, _>(1).as_deref(), Some("k1"));
    tx.commit().await.expect("commit");
    let mut tx = with_key(KEY).await;
    let denied = sqlx::query("SELECT access_token_encrypted FROM oauth_connections").fetch_all(&mut *tx).await;
    assert!(denied.is_err(), "a client read the ciphertext column");
    tx.rollback().await.expect("rollback");
    let mut tx = with_key(KEY).await;
    let denied = sqlx::query_scalar::<_, Option<String>>("SELECT public.read_connection_secret($1, 'access_token')")
        .bind(connection)
        .fetch_one(&mut *tx)
        .await;
    assert!(denied.is_err(), "a client decrypted a secret");
    tx.rollback().await.expect("rollback");

    // Stored as ciphertext: the token's bytes are nowhere in the row or the audit log.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT access_token_encrypted FROM oauth_connections WHERE id = $1")
        .bind(connection)
        .fetch_one(pool)
        .await
        .expect("ciphertext");
    assert!(!stored.is_empty() && !stored.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
    let audit: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(old_values::text, '') || coalesce(new_values::text, '') FROM audit_log WHERE table_name = 'oauth_connections'")
            .fetch_all(pool)
            .await
            .expect("audit rows");
    assert!(!audit.is_empty(), "the connection's changes are audited");
    assert!(audit.iter().all(|a| !a.contains("access_token_encrypted") && !a.contains("very-secret")), "{audit:?}");

    // kb's own processes (service_role) read it with the key, and only with the key.
    let read = |key: &'static str| async move {
        let mut tx = store::begin_as(pool, Uuid::nil(), Role::ServiceRole).await.expect("tx");
        sqlx::query("SELECT set_config('kb.secrets_key', $1, true)").bind(key).execute(&mut *tx).await.expect("key");
        let secret =
            sqlx::query_scalar::<_, Option<String>>("SELECT public.read_connection_secret($1, 'access_token')")
                .bind(connection)
                .fetch_one(&mut *tx)
                .await;
        let _ = tx.commit().await;
        secret
    };
    assert_eq!(read(KEY).await.expect("decrypted").as_deref(), Some(TOKEN));
    assert!(read("the wrong key").await.is_err(), "decrypted with the wrong key");

    // Who set and read it is logged, without the secret; the company's admin reads the log.
    let mut tx = store::begin_as(pool, admin, Role::Authenticated).await.expect("tx");
    let actions: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT action, key_id FROM secret_audit_logs ORDER BY created_at")
            .fetch_all(&mut *tx)
            .await
            .expect("secret log");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        actions,
        [("set".to_string(), Some("k1".to_string())), ("read".to_string(), Some("default".to_string()))]
    );
}

#[tokio::test]
async fn the_audit_log_records_the_actor_and_only_the_companys_admins_read_it() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let admin = user(pool, "admin@example.com").await;
    let manager = user(pool, "manager@example.com").await;
    let acme = company(pool, "Acme", admin).await;
    sqlx::query("INSERT INTO user_roles (user_id, company_id, role) VALUES ($1, $2, 'manager')")
        .bind(manager)
        .bind(acme)
        .execute(pool)
        .await
        .expect("role");

    let mut tx = store::begin_as(pool, manager, Role::Authenticated).await.expect("tx");
    let campaign: Uuid = sqlx::query_scalar(
        "INSERT INTO campaigns (name, type, channel, company_id) VALUES ('Launch', 'email', 'newsletter', $1) RETURNING id",
    )
    .bind(acme)
    .fetch_one(&mut *tx)
    .await
    .expect("campaign");
    sqlx::query("UPDATE campaigns SET status = 'active' WHERE id = $1")
        .bind(campaign)
        .execute(&mut *tx)
        .await
        .expect("update");
    // The manager cannot read the log, nor erase it.
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&mut *tx).await.expect("count");
    assert_eq!(seen, 0);
    tx.commit().await.expect("commit");
    let mut tx = store::begin_as(pool, manager, Role::Authenticated).await.expect("tx");
    assert!(sqlx::query("DELETE FROM audit_log").execute(&mut *tx).await.is_err(), "the log was deletable");
    tx.rollback().await.expect("rollback");

    let mut tx = store::begin_as(pool, admin, Role::Authenticated).await.expect("tx");
    type AuditRow = (String, Option<Uuid>, Option<Uuid>, Option<String>);
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT operation, user_id, company_id, new_values ->> 'status' FROM audit_log
         WHERE table_name = 'campaigns' AND record_id = $1 ORDER BY timestamp, operation",
    )
    .bind(campaign)
    .fetch_all(&mut *tx)
    .await
    .expect("audit rows");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        rows,
        [
            ("INSERT".to_string(), Some(manager), Some(acme), Some("draft".to_string())),
            ("UPDATE".to_string(), Some(manager), Some(acme), Some("active".to_string())),
        ]
    );
}

#[tokio::test]
async fn the_migrations_apply_on_a_database_that_already_has_supabases_auth_schema() {
    let url = empty_database().await;
    let pool = store::connect(&url, 4).await.expect("connect");
    // What a Supabase project has before kb's migrations: its own auth schema, with more
    // columns and its own definitions of the helper functions.
    sqlx::raw_sql(
        "CREATE SCHEMA auth;
         CREATE TABLE auth.users (
           instance_id uuid, id uuid NOT NULL PRIMARY KEY, aud varchar(255), role varchar(255),
           email varchar(255), encrypted_password varchar(255), email_confirmed_at timestamptz,
           raw_app_meta_data jsonb, raw_user_meta_data jsonb, is_super_admin bool,
           created_at timestamptz, updated_at timestamptz, phone text UNIQUE, is_sso_user boolean NOT NULL DEFAULT false);
         CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
           select coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                           (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid $$;
         CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
           select coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                           (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text $$;
         CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
           select coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                           nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$;
         COMMENT ON FUNCTION auth.uid() IS 'Supabase''s own';",
    )
    .execute(&pool)
    .await
    .expect("a Supabase-like auth schema");
    store::migrate(&pool).await.expect("kb's migrations on a Supabase database");
    let comment: Option<String> = sqlx::query_scalar("SELECT obj_description('auth.uid()'::regprocedure)")
        .fetch_one(&pool)
        .await
        .expect("comment");
    assert_eq!(comment.as_deref(), Some("Supabase's own"), "kb replaced Supabase's auth.uid()");
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(&pool)
        .await
        .expect("tables");
    assert!(tables >= 40, "only {tables} tables");
    // And the schema works there: a user of Supabase's table owns a company.
    let user: Uuid = sqlx::query_scalar(
        "INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'u@example.com') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("user");
    company(&pool, "Acme", user).await;
    let role: String = sqlx::query_scalar("SELECT role::text FROM user_roles WHERE user_id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await
        .expect("role");
    assert_eq!(role, "admin");
}

#[tokio::test]
async fn content_embeddings_get_a_vector_index_per_model_and_refuse_wrong_dimensions() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let owner = user(pool, "owner@example.com").await;
    sqlx::query("INSERT INTO embedding_models (name, dimensions) VALUES ('test/three', 3), ('test/four', 4)")
        .execute(pool)
        .await
        .expect("models");
    let insert = "INSERT INTO content_embeddings (content_type, content_id, content, content_hash, embedding_model, embedding, created_by)
                  SELECT 'campaign', gen_random_uuid(), 'text', 'h', $1, $2::vector, $3 FROM generate_series(1, 20)";
    sqlx::query(insert).bind("test/three").bind("[1,0,0]").bind(owner).execute(pool).await.expect("3-d rows");
    let wrong = sqlx::query(insert).bind("test/four").bind("[1,0,0]").bind(owner).execute(pool).await;
    assert!(wrong.is_err(), "a 3-d vector was stored for a 4-d model");

    let maintenance = kb::store::index::ensure_indexes(pool, None).await.expect("index maintenance");
    assert!(maintenance.failures.is_empty(), "{:?}", maintenance.failures);
    let name = kb::store::index::content_index_name("test/three");
    let definition: String = sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE indexname = $1")
        .bind(&name)
        .fetch_one(pool)
        .await
        .expect("the model's content index");
    assert!(definition.contains("hnsw") && definition.contains("test/three"), "{definition}");
    let absent: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE indexname = $1")
        .bind(kb::store::index::content_index_name("test/four"))
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(absent, 0, "an index for a model without rows");
    // Built once: the next round leaves it alone.
    let again = kb::store::index::ensure_indexes(pool, None).await.expect("index maintenance");
    assert!(again.builds.is_empty(), "{:?}", again.builds);
}

#[tokio::test]
async fn removing_a_user_removes_their_personal_rows_and_keeps_their_companys() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let leaving = user(pool, "leaving@example.com").await;
    let staying = user(pool, "staying@example.com").await;
    let acme = company(pool, "Acme", leaving).await;
    let insert = "INSERT INTO campaigns (name, type, channel, company_id, created_by) VALUES ($1, 'email', 'newsletter', $2, $3)";
    for (name, company, creator) in
        [("personal", None, leaving), ("company", Some(acme), leaving), ("someone else's", None, staying)]
    {
        sqlx::query(insert).bind(name).bind(company).bind(creator).execute(pool).await.expect("campaign");
    }
    sqlx::query("INSERT INTO content_templates (name, content_type, created_by) VALUES ('mine', 'blog', $1)")
        .bind(leaving)
        .execute(pool)
        .await
        .expect("template");

    let mut conn = pool.acquire().await.expect("connection");
    assert!(users::remove_user(&mut conn, "leaving@example.com").await.expect("remove"));
    let campaigns: Vec<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT name, created_by FROM campaigns ORDER BY name").fetch_all(pool).await.expect("rows");
    assert_eq!(campaigns, [("company".to_string(), None), ("someone else's".to_string(), Some(staying))]);
    let templates: i64 = sqlx::query_scalar("SELECT count(*) FROM content_templates").fetch_one(pool).await.expect("n");
    assert_eq!(templates, 0, "a personal row outlived its owner");
    let company_left: Option<Uuid> = sqlx::query_scalar("SELECT created_by FROM companies WHERE id = $1")
        .bind(acme)
        .fetch_one(pool)
        .await
        .expect("company");
    assert_eq!(company_left, None);
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM user_roles").fetch_one(pool).await.expect("n");
    assert_eq!(roles, 0, "the user's roles went with the user");
}

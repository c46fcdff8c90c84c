//! The row level security matrix: every table of the platform's schema x every command
//! (select, insert, update, delete) x every kind of caller, asserted from one table of
//! expectations (`CASES` and `allowed`), against the real policies and privileges.
//!
//! Company A holds every fixture row, created by `Owner` (a sales member of A). Callers: the
//! owner; another sales member, an admin, a manager and a viewer of A; the same four roles in
//! company B; a signed-in user of no company; anon; and the service role. A command is
//! allowed when it succeeds and touches the fixture row (or inserts one); denied when it
//! fails (privilege or policy) or touches nothing. Each attempt runs in its own transaction,
//! rolled back.

use std::collections::HashMap;

use kb::store::{self, Role, users};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::TestDb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    Owner,
    ASales,
    AAdmin,
    AManager,
    AViewer,
    BAdmin,
    BManager,
    BSales,
    BViewer,
    Outsider,
    Anon,
    Service,
}

const CALLERS: [Caller; 12] = [
    Caller::Owner,
    Caller::ASales,
    Caller::AAdmin,
    Caller::AManager,
    Caller::AViewer,
    Caller::BAdmin,
    Caller::BManager,
    Caller::BSales,
    Caller::BViewer,
    Caller::Outsider,
    Caller::Anon,
    Caller::Service,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Select,
    Insert,
    Update,
    Delete,
}

const COMMANDS: [Command; 4] = [Command::Select, Command::Insert, Command::Update, Command::Delete];

/// The access rules a table follows (migrations/README.md names each table's kind).
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Every member reads; admins and managers write any row; sales write their own.
    Company,
    /// Every member reads; only admins and managers write.
    CompanyManaged,
    /// Personal data (leads, contacts): admins, managers and sales only, all commands.
    Team,
    /// Connections holding secrets: the company's admins only.
    AdminOnly,
    /// Rows of a `Company` parent: read with the parent, written by whoever may write it.
    ChildOfCompany,
    /// Rows of a `Team` parent.
    ChildOfTeam,
    /// Archived rows of a `Company` parent: read with the parent, written by the service.
    Archive,
    /// Audit and secret logs: the company's admins read; only kb's triggers write.
    AdminLog,
    /// Security events: members append, admins read, nobody changes.
    SecurityLog,
    Companies,
    UserRoles,
    Profiles,
    /// A user's own rows (chats, knowledge buckets): anyone signed in makes their own.
    Personal,
    /// Rows of a `Personal` parent (a chat's messages): its owner's alone.
    PersonalChild,
    /// Documents: their owner reads, renames and deletes; only the workers create them.
    KnowledgeDocuments,
    /// Chunks: their owner reads; only the workers write.
    KnowledgeChunks,
}

fn allowed(kind: Kind, command: Command, caller: Caller) -> bool {
    use Caller::*;
    use Command::*;
    let a_members = [Owner, ASales, AAdmin, AManager, AViewer];
    let any_user = [Owner, ASales, AAdmin, AManager, AViewer, BAdmin, BManager, BSales, BViewer, Outsider];
    let set: &[Caller] = match (kind, command) {
        (Kind::Company | Kind::CompanyManaged | Kind::ChildOfCompany | Kind::Archive, Select) => &a_members,
        (Kind::Company, Insert) => &[Owner, ASales, AAdmin, AManager],
        (Kind::Company | Kind::ChildOfCompany, _) => &[Owner, AAdmin, AManager],
        (Kind::CompanyManaged, _) => &[AAdmin, AManager],
        (Kind::Team | Kind::ChildOfTeam, _) => &[Owner, ASales, AAdmin, AManager],
        (Kind::AdminOnly, _) => &[AAdmin],
        (Kind::Archive, _) => &[],
        (Kind::AdminLog, Select) => &[AAdmin],
        (Kind::AdminLog, Insert) => &[],
        (Kind::AdminLog, Update | Delete) => return false,
        (Kind::SecurityLog, Select) => &[AAdmin],
        (Kind::SecurityLog, Insert) => &a_members,
        (Kind::SecurityLog, Update | Delete) => return false,
        (Kind::Companies, Select) => &[Owner, ASales, AAdmin, AManager, AViewer],
        (Kind::Companies, Insert) => &any_user,
        (Kind::Companies, Update | Delete) => &[AAdmin],
        (Kind::UserRoles, Select) => &a_members,
        (Kind::UserRoles, _) => &[AAdmin],
        (Kind::Profiles, Select) => &a_members,
        // Each user inserts their own profile; the owner has one already.
        (Kind::Profiles, Insert) => &[ASales, AAdmin, AManager, AViewer, BAdmin, BManager, BSales, BViewer, Outsider],
        (Kind::Profiles, Update | Delete) => &[Owner],
        (Kind::Personal, Insert) => &any_user,
        (Kind::Personal | Kind::PersonalChild, _) => &[Owner],
        (Kind::KnowledgeDocuments, Insert) => &[],
        (Kind::KnowledgeDocuments, _) => &[Owner],
        (Kind::KnowledgeChunks, Select) => &[Owner],
        (Kind::KnowledgeChunks, _) => &[],
    };
    // The service role bypasses row level security wherever it holds the privilege.
    caller == Service || set.contains(&caller)
}

/// One table: how its fixture row (and each insert attempt) is made, and a column update
/// that every allowed writer may make. SQL parameters: $1 company A, $2 the acting user
/// (the owner for the fixture), $3 the parent fixture row; an `INSERT .. SELECT` that the
/// harness completes with `WHERE .. RETURNING id`.
struct Case {
    table: &'static str,
    kind: Kind,
    parent: Option<&'static str>,
    insert: &'static str,
    update: &'static str,
}

const CASES: &[Case] = &[
    Case {
        table: "companies",
        kind: Kind::Companies,
        parent: None,
        insert: "INSERT INTO companies (name, created_by) SELECT 'c-' || gen_random_uuid(), $2",
        update: "name = name || '!'",
    },
    Case {
        table: "user_roles",
        kind: Kind::UserRoles,
        parent: None,
        insert: "INSERT INTO user_roles (user_id, company_id, role, created_by) SELECT $3, $1, 'viewer', $2",
        update: "role = 'sales'",
    },
    Case {
        table: "profiles",
        kind: Kind::Profiles,
        parent: None,
        insert: "INSERT INTO profiles (user_id, first_name) SELECT $2, 'P'",
        update: "first_name = 'Q'",
    },
    Case {
        table: "campaigns",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO campaigns (name, type, channel, company_id, created_by) SELECT 'camp', 'email', 'newsletter', $1, $2",
        update: "name = name || '!'",
    },
    Case {
        table: "campaign_metrics",
        kind: Kind::ChildOfCompany,
        parent: Some("campaigns"),
        insert: "INSERT INTO campaign_metrics (campaign_id, metric_type, metric_value, metric_date) SELECT $3, 'clicks', 3, current_date",
        update: "metric_value = metric_value + 1",
    },
    Case {
        table: "campaign_performance_metrics",
        kind: Kind::ChildOfCompany,
        parent: Some("campaigns"),
        insert: "INSERT INTO campaign_performance_metrics (campaign_id, period_start, period_end) SELECT $3, now() - random() * interval '100 days', now()",
        update: "clicks = clicks + 1",
    },
    Case {
        table: "campaign_metrics_archive",
        kind: Kind::Archive,
        parent: Some("campaigns"),
        insert: "INSERT INTO campaign_metrics_archive (id, campaign_id, metric_type, metric_value, metric_date, recorded_at) SELECT gen_random_uuid(), $3, 'clicks', 3, current_date, now()",
        update: "metric_value = metric_value + 1",
    },
    Case {
        table: "leads",
        kind: Kind::Team,
        parent: None,
        insert: "INSERT INTO leads (company_id, email, source, created_by) SELECT $1, gen_random_uuid() || '@example.com', 'web', $2",
        update: "status = 'qualified'",
    },
    Case {
        table: "lead_activities",
        kind: Kind::ChildOfTeam,
        parent: Some("leads"),
        insert: "INSERT INTO lead_activities (lead_id, activity_type) SELECT $3, 'email_opened'",
        update: "source = 'x'",
    },
    Case {
        table: "customer_journeys",
        kind: Kind::ChildOfTeam,
        parent: Some("leads"),
        insert: "INSERT INTO customer_journeys (lead_id, stage) SELECT $3, 'awareness'",
        update: "stage = 'interest'",
    },
    Case {
        table: "lead_scoring_rules",
        kind: Kind::CompanyManaged,
        parent: None,
        insert: "INSERT INTO lead_scoring_rules (company_id, name, activity_type, points, created_by) SELECT $1, 'r-' || gen_random_uuid(), 'webinar', 10, $2",
        update: "points = points + 1",
    },
    Case {
        table: "folders",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO folders (company_id, name, created_by) SELECT $1, 'f-' || gen_random_uuid(), $2",
        update: "name = name || '!'",
    },
    Case {
        table: "content_calendar",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO content_calendar (company_id, title, content_type, created_by) SELECT $1, 'post', 'blog', $2",
        update: "title = 'post!'",
    },
    Case {
        table: "content_templates",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO content_templates (company_id, name, content_type, created_by) SELECT $1, 'tpl', 'blog', $2",
        update: "name = 'tpl!'",
    },
    Case {
        table: "digital_assets",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO digital_assets (company_id, name, file_path, asset_type, uploaded_by) SELECT $1, 'logo', '/a/logo.png', 'image', $2",
        update: "name = 'logo!'",
    },
    Case {
        table: "email_templates",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO email_templates (company_id, name, created_by) SELECT $1, 'welcome', $2",
        update: "subject = 'hi'",
    },
    Case {
        table: "email_campaigns",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO email_campaigns (company_id, name, created_by) SELECT $1, 'launch', $2",
        update: "subject = 'hi'",
    },
    Case {
        table: "email_contacts",
        kind: Kind::Team,
        parent: None,
        insert: "INSERT INTO email_contacts (company_id, email, created_by) SELECT $1, gen_random_uuid() || '@example.com', $2",
        update: "first_name = 'Ann'",
    },
    Case {
        table: "email_automation_rules",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO email_automation_rules (company_id, name, trigger_event, created_by) SELECT $1, 'drip', 'signup', $2",
        update: "delay_minutes = 5",
    },
    Case {
        table: "performance_analytics",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO performance_analytics (company_id, metric_name, metric_value, period_start, period_end, created_by) SELECT $1, 'ctr', 0.1, now(), now(), $2",
        update: "metric_value = 0.2",
    },
    Case {
        table: "real_time_metrics",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO real_time_metrics (company_id, metric_name, metric_value, created_by) SELECT $1, 'visitors', 7, $2",
        update: "metric_value = 8",
    },
    Case {
        table: "analytics_reports",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO analytics_reports (company_id, name, report_type, created_by) SELECT $1, 'weekly', 'summary', $2",
        update: "name = 'weekly!'",
    },
    Case {
        table: "oauth_connections",
        kind: Kind::AdminOnly,
        parent: None,
        insert: "INSERT INTO oauth_connections (company_id, provider, account_id, created_by) SELECT $1, 'google', gen_random_uuid()::text, $2",
        update: "status = 'expired'",
    },
    Case {
        table: "integration_connections",
        kind: Kind::AdminOnly,
        parent: None,
        insert: "INSERT INTO integration_connections (company_id, integration_type, name, created_by) SELECT $1, 'crm', 'i-' || gen_random_uuid(), $2",
        update: "status = 'paused'",
    },
    Case {
        table: "social_platform_connections",
        kind: Kind::AdminOnly,
        parent: None,
        insert: "INSERT INTO social_platform_connections (company_id, platform, account_handle, created_by) SELECT $1, 'linkedin', 'h-' || gen_random_uuid(), $2",
        update: "status = 'paused'",
    },
    Case {
        table: "audit_log",
        kind: Kind::AdminLog,
        parent: None,
        insert: "INSERT INTO audit_log (table_name, record_id, operation, user_id, company_id) SELECT 'leads', gen_random_uuid(), 'INSERT', $2, $1",
        update: "operation = 'DELETE'",
    },
    Case {
        table: "security_logs",
        kind: Kind::SecurityLog,
        parent: None,
        insert: "INSERT INTO security_logs (company_id, user_id, event_type) SELECT $1, $2, 'login'",
        update: "severity = 'critical'",
    },
    Case {
        table: "secret_audit_logs",
        kind: Kind::AdminLog,
        parent: None,
        insert: "INSERT INTO secret_audit_logs (company_id, user_id, table_name, record_id, action) SELECT $1, $2, 'oauth_connections', gen_random_uuid(), 'set'",
        update: "action = 'read'",
    },
    Case {
        table: "agents",
        kind: Kind::CompanyManaged,
        parent: None,
        insert: "INSERT INTO agents (company_id, name, model, created_by) SELECT $1, 'helper', 'gpt', $2",
        update: "name = 'helper!'",
    },
    Case {
        table: "automation_rules",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO automation_rules (company_id, name, trigger_type, created_by) SELECT $1, 'nightly', 'schedule', $2",
        update: "is_active = false",
    },
    Case {
        table: "content_embeddings",
        kind: Kind::Company,
        parent: None,
        insert: "INSERT INTO content_embeddings (company_id, content_type, content_id, content, content_hash, embedding_model, embedding, created_by) SELECT $1, 'campaign', gen_random_uuid(), 'text', 'h', 'test/matrix-3', '[1,0,0]', $2",
        update: "content = 'text!'",
    },
    Case {
        table: "chat_sessions",
        kind: Kind::Personal,
        parent: None,
        insert: "INSERT INTO chat_sessions (title, created_by) SELECT 'chat', $2",
        update: "title = 'chat!'",
    },
    Case {
        table: "chat_messages",
        kind: Kind::PersonalChild,
        parent: Some("chat_sessions"),
        insert: "INSERT INTO chat_messages (session_id, role, content) SELECT $3, 'user', 'hello'",
        update: "content = 'hello!'",
    },
    Case {
        table: "knowledge_buckets",
        kind: Kind::Personal,
        parent: None,
        insert: "INSERT INTO knowledge_buckets (name, bucket_type, embedding_model, created_by) SELECT 'b-' || gen_random_uuid(), 'brand', 'test/matrix-3', $2",
        update: "description = 'd'",
    },
    Case {
        table: "knowledge_documents",
        kind: Kind::KnowledgeDocuments,
        parent: Some("knowledge_buckets"),
        insert: "INSERT INTO knowledge_documents (bucket_id, title, content, status, created_by) SELECT $3, 'doc', 'text', 'ready', $2",
        update: "title = 'doc!'",
    },
    Case {
        table: "knowledge_chunks",
        kind: Kind::KnowledgeChunks,
        parent: Some("knowledge_documents"),
        insert: "INSERT INTO knowledge_chunks (document_id, bucket_id, chunk_index, content, content_hash, embedding_model, embedding, token_count) SELECT d.id, d.bucket_id, (SELECT count(*) FROM knowledge_chunks), 'text', 'h', 'test/matrix-3', '[1,0,0]', 1 FROM knowledge_documents d WHERE d.id = $3",
        update: "content = 'text!'",
    },
];

struct World {
    company_a: Uuid,
    users: HashMap<Caller, Uuid>,
    newcomer: Uuid,
    fixtures: HashMap<&'static str, Uuid>,
}

async fn user(pool: &PgPool, email: &str) -> Uuid {
    let mut conn = pool.acquire().await.expect("connection");
    users::ensure_user(&mut conn, email).await.expect("user")
}

/// A case's insert, completed: with `RETURNING id` for fixtures; without for attempts, since
/// a caller may append a row it may not read back (security_logs).
fn insert_sql(case: &Case, returning: bool) -> String {
    let target = if case.insert.contains(" FROM knowledge_documents d") { " AND" } else { " WHERE" };
    let returning = if returning { format!(" RETURNING {}.id", case.table) } else { String::new() };
    format!("{}{target} coalesce($3::uuid, $1::uuid, $2::uuid) IS NOT NULL{returning}", case.insert)
}

/// The case's third parameter: its parent fixture, or for user_roles the user given a role.
fn third(case: &Case, fixtures: &HashMap<&'static str, Uuid>, newcomer: Uuid) -> Option<Uuid> {
    match case.parent {
        Some(parent) => Some(fixtures[parent]),
        None if case.table == "user_roles" => Some(newcomer),
        None => None,
    }
}

async fn build_world(pool: &PgPool) -> World {
    let mut users = HashMap::new();
    for (caller, email) in [
        (Caller::Owner, "owner@a.example"),
        (Caller::ASales, "sales@a.example"),
        (Caller::AAdmin, "admin@a.example"),
        (Caller::AManager, "manager@a.example"),
        (Caller::AViewer, "viewer@a.example"),
        (Caller::BAdmin, "admin@b.example"),
        (Caller::BManager, "manager@b.example"),
        (Caller::BSales, "sales@b.example"),
        (Caller::BViewer, "viewer@b.example"),
        (Caller::Outsider, "outsider@example.com"),
    ] {
        users.insert(caller, user(pool, email).await);
    }
    let newcomer = user(pool, "newcomer@example.com").await;
    sqlx::query("INSERT INTO embedding_models (name, dimensions) VALUES ('test/matrix-3', 3)")
        .execute(pool)
        .await
        .expect("model");
    let company = |name: &'static str, admin: Uuid| async move {
        sqlx::query_scalar::<_, Uuid>("INSERT INTO companies (name, created_by) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(admin)
            .fetch_one(pool)
            .await
            .expect("company")
    };
    let company_a = company("A", users[&Caller::AAdmin]).await;
    let company_b = company("B", users[&Caller::BAdmin]).await;
    for (caller, company, role) in [
        (Caller::Owner, company_a, "sales"),
        (Caller::ASales, company_a, "sales"),
        (Caller::AManager, company_a, "manager"),
        (Caller::AViewer, company_a, "viewer"),
        (Caller::BManager, company_b, "manager"),
        (Caller::BSales, company_b, "sales"),
        (Caller::BViewer, company_b, "viewer"),
    ] {
        sqlx::query("INSERT INTO user_roles (user_id, company_id, role) VALUES ($1, $2, $3::app_role)")
            .bind(users[&caller])
            .bind(company)
            .bind(role)
            .execute(pool)
            .await
            .expect("role");
    }
    let mut fixtures = HashMap::new();
    fixtures.insert("companies", company_a);
    let viewer_role: Uuid = sqlx::query_scalar("SELECT id FROM user_roles WHERE user_id = $1")
        .bind(users[&Caller::AViewer])
        .fetch_one(pool)
        .await
        .expect("viewer role");
    fixtures.insert("user_roles", viewer_role);
    for case in CASES {
        if fixtures.contains_key(case.table) {
            continue;
        }
        let parent = third(case, &fixtures, newcomer);
        let id: Uuid = sqlx::query_scalar(&insert_sql(case, true))
            .bind(company_a)
            .bind(users[&Caller::Owner])
            .bind(parent)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("fixture of {}: {e}", case.table));
        fixtures.insert(case.table, id);
    }
    World { company_a, users, newcomer, fixtures }
}

/// Whether `caller` may run `command` on the case's table.
async fn attempt(pool: &PgPool, world: &World, case: &Case, caller: Caller, command: Command) -> Result<bool, String> {
    let (user, role) = match caller {
        Caller::Anon => (Uuid::nil(), Role::Anon),
        // The service role acts for a user of no company (it bypasses row level security).
        Caller::Service => (Uuid::nil(), Role::ServiceRole),
        other => (world.users[&other], Role::Authenticated),
    };
    let actor = if caller == Caller::Service || caller == Caller::Anon { world.newcomer } else { user };
    let fixture = world.fixtures[case.table];
    let mut tx = store::begin_as(pool, user, role).await.map_err(|e| e.to_string())?;
    let outcome = match command {
        Command::Select => sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {} WHERE id = $1", case.table))
            .bind(fixture)
            .fetch_one(&mut *tx)
            .await
            .map(|n| n == 1),
        Command::Insert => sqlx::query(&insert_sql(case, false))
            .bind(world.company_a)
            .bind(actor)
            .bind(third(case, &world.fixtures, world.newcomer))
            .execute(&mut *tx)
            .await
            .map(|done| done.rows_affected() == 1),
        Command::Update => sqlx::query(&format!("UPDATE {} SET {} WHERE id = $1", case.table, case.update))
            .bind(fixture)
            .execute(&mut *tx)
            .await
            .map(|done| done.rows_affected() == 1),
        Command::Delete => sqlx::query(&format!("DELETE FROM {} WHERE id = $1", case.table))
            .bind(fixture)
            .execute(&mut *tx)
            .await
            .map(|done| done.rows_affected() == 1),
    };
    tx.rollback().await.map_err(|e| e.to_string())?;
    match outcome {
        Ok(done) => Ok(done),
        // Refused by a privilege or a policy: denied; a second profile of one user is refused
        // by its uniqueness. Anything else is a broken case.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42501" | "23505")) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn every_table_command_and_caller_gets_exactly_the_access_of_its_kind() {
    let db = TestDb::new().await;
    // Every company policy looks the caller's companies up once per statement (0020), none
    // calls has_company_role per row.
    let per_row: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_policy
         WHERE coalesce(pg_get_expr(polqual, polrelid), '') || coalesce(pg_get_expr(polwithcheck, polrelid), '')
               LIKE '%has_company_role(%'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("policies");
    assert_eq!(per_row, 0, "policies still calling has_company_role per row");
    // And the generators write that form for tables still to come.
    let mut tx = db.pool.begin().await.expect("begin");
    sqlx::raw_sql(
        "CREATE TABLE public.rls_generated (id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
           company_id UUID REFERENCES public.companies(id), created_by UUID DEFAULT auth.uid(),
           updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
         SELECT kb_private.company_policies('public.rls_generated', '{admin,manager}', '{admin}', '{sales}', true);",
    )
    .execute(&mut *tx)
    .await
    .expect("generated policies");
    let generated: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(pg_get_expr(polqual, polrelid), '') || ' ' || coalesce(pg_get_expr(polwithcheck, polrelid), '')
         FROM pg_policy WHERE polrelid = 'public.rls_generated'::regclass",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("policies");
    assert_eq!(generated.len(), 4);
    assert!(
        generated.iter().all(|p| p.contains("company_ids_with_role") && !p.contains("has_company_role")),
        "{generated:?}"
    );
    tx.rollback().await.expect("rollback");
    let world = build_world(&db.pool).await;
    let mut checked = 0;
    let mut wrong = Vec::new();
    for case in CASES {
        for command in COMMANDS {
            for caller in CALLERS {
                let expected = allowed(case.kind, command, caller);
                match attempt(&db.pool, &world, case, caller, command).await {
                    Ok(got) if got == expected => {}
                    Ok(got) => {
                        wrong.push(format!("{} {command:?} by {caller:?}: got {got}, expected {expected}", case.table))
                    }
                    Err(e) => wrong.push(format!("{} {command:?} by {caller:?}: error {e}", case.table)),
                }
                checked += 1;
            }
        }
    }
    eprintln!(
        "RLS matrix: {} tables x {} commands x {} callers = {checked} assertions",
        CASES.len(),
        COMMANDS.len(),
        CALLERS.len()
    );
    assert!(wrong.is_empty(), "{} of {checked} wrong:\n{}", wrong.len(), wrong.join("\n"));

    // Every table of the public schema is in the matrix, except kb's internal queue tables.
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .expect("tables");
    // kb's own tables: the migrations, the job queue and stored uploads (the workers' and the
    // uploader's functions'), the model registry (keyed by name; written only by kb's login)
    // and the lexical statistics (kept by triggers, per bucket).
    let internal = [
        "_sqlx_migrations",
        "ingest_jobs",
        "knowledge_document_sources",
        "embedding_models",
        "knowledge_lexical_buckets",
        "knowledge_lexical_terms",
    ];
    let missing: Vec<&String> =
        tables.iter().filter(|t| !internal.contains(&t.as_str()) && !CASES.iter().any(|c| c.table == *t)).collect();
    assert!(missing.is_empty(), "tables without a row in the matrix: {missing:?}");
    let without_rls: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity
           AND c.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&db.pool)
    .await
    .expect("rls flags");
    assert!(without_rls.is_empty(), "tables without row level security: {without_rls:?}");
}

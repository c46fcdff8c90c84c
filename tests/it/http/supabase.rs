//! supabase-js (the npm package, `tests/supabase/client.mjs`, installed by
//! `scripts/node-clients.sh`) against the real server's `/rest/v1`, as two users (A and B,
//! each the admin of a company) and as anon: every operation on companies, leads,
//! lead_activities, campaigns and a test-only many-to-many trio, with row level security
//! deciding what each caller sees. The script asserts every step and exits non-zero on the
//! first failure; this test fails with its output, then checks the rows it left behind the
//! API's back.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kb::store::Role;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::repo_path;
use crate::http::{Setup, TestServer};

/// Longest the client script may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The Node.js major version supabase-js (as pinned) needs.
const NODE_MAJOR: u32 = 20;

/// Test-only objects: a many-to-many trio (no exposed junction of the schema has its foreign
/// keys in a key, as PostgREST requires) owned per user, and two set-returning functions.
const SETUP_SQL: &[&str] = &[
    "CREATE TABLE public.rest_test_people (
       id INTEGER PRIMARY KEY, name TEXT NOT NULL,
       owner UUID NOT NULL DEFAULT auth.uid() REFERENCES auth.users(id))",
    "CREATE TABLE public.rest_test_teams (
       id INTEGER PRIMARY KEY, name TEXT NOT NULL,
       owner UUID NOT NULL DEFAULT auth.uid() REFERENCES auth.users(id))",
    "CREATE TABLE public.rest_test_memberships (
       person_id INTEGER NOT NULL REFERENCES public.rest_test_people(id),
       team_id INTEGER NOT NULL REFERENCES public.rest_test_teams(id),
       owner UUID NOT NULL DEFAULT auth.uid() REFERENCES auth.users(id),
       PRIMARY KEY (person_id, team_id))",
    // Numbers 1..n, their squares and parity.
    "CREATE FUNCTION public.rest_test_numbers(n INTEGER)
     RETURNS TABLE(value INTEGER, square INTEGER, parity TEXT)
     LANGUAGE sql IMMUTABLE
     AS $$ SELECT i, i * i, CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END FROM generate_series(1, n) AS i $$",
    // The caller's leads scoring at least min_score (SECURITY INVOKER: row level security applies).
    "CREATE FUNCTION public.rest_test_leads_over(min_score INTEGER)
     RETURNS SETOF public.leads
     LANGUAGE sql STABLE
     AS $$ SELECT * FROM public.leads WHERE lead_score >= min_score $$",
];

/// A lead as the database holds it: first name, email, status, country, score.
type LeadRow = (String, Option<String>, String, Option<String>, i32);

/// `node` (new enough) and supabase-js, or a clear failure saying how to install them (never
/// a skip).
fn client_script() -> PathBuf {
    let dir = repo_path("tests/supabase");
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is not installed (Node >= {NODE_MAJOR} is needed for the supabase-js test; \
         `bash scripts/node-clients.sh` installs it): {node:?}"
    );
    let version = node.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    let major: u32 = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(major >= NODE_MAJOR, "node {version} is too old: supabase-js needs Node >= {NODE_MAJOR}");
    assert!(
        dir.join("node_modules/@supabase/supabase-js/package.json").exists(),
        "supabase-js is not installed in tests/supabase: run `bash scripts/node-clients.sh` (npm ci), \
         as scripts/test.sh does"
    );
    dir.join("client.mjs")
}

#[tokio::test]
async fn supabase_js_reads_and_writes_through_row_level_security() {
    let script = client_script();
    let server = TestServer::start(Setup::fake()).await;
    let (a, token_a) = server.user("supabase-a@example.com").await;
    let (b, token_b) = server.user("supabase-b@example.com").await;
    let anon_key = server.token(None, Role::Anon);

    // Before the first /rest/v1 request, which loads the schema cache.
    for statement in SETUP_SQL {
        sqlx::query(statement).execute(&server.admin).await.expect("test schema");
    }
    for table in ["rest_test_people", "rest_test_teams", "rest_test_memberships"] {
        for statement in [
            format!("ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY"),
            format!(
                "CREATE POLICY {table}_owner ON public.{table} FOR ALL TO authenticated
                 USING (owner = (select auth.uid())) WITH CHECK (owner = (select auth.uid()))"
            ),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON public.{table} TO authenticated"),
        ] {
            sqlx::query(&statement).execute(&server.admin).await.expect("test table policy");
        }
    }

    let config = serde_json::json!({
        "url": server.base,
        "anonKey": anon_key,
        "a": { "id": a, "token": token_a },
        "b": { "id": b, "token": token_b },
    });
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(repo_path("tests/supabase"))
        .env("KB_SUPABASE_TEST", config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .expect("the supabase-js client script finished in time")
        .expect("the supabase-js client script ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(output.status.success(), "the supabase-js client failed ({}):\n{stdout}\n{stderr}", output.status);

    // The last line: what the script created.
    let seen: Value = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).expect("the client's report");
    assert!(seen["checks"].as_u64().is_some_and(|n| n >= 50), "{seen}");
    let id = |key: &str| -> Uuid { seen[key].as_str().and_then(|s| s.parse().ok()).expect(key) };

    let creators: Vec<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT name, created_by FROM public.companies ORDER BY name")
            .fetch_all(&server.admin)
            .await
            .expect("companies");
    assert_eq!(creators, [("Acme A".to_owned(), Some(a)), ("Bolt B".to_owned(), Some(b))]);

    // A's leads as A left them: Cyd deleted, web leads qualified, Dee moved to DE; nothing of
    // B's attempts (status lost, first name Hacked) got through.
    let leads: Vec<LeadRow> = sqlx::query_as(
        "SELECT first_name, email, status::text, country, lead_score FROM public.leads
         WHERE company_id = $1 ORDER BY first_name",
    )
    .bind(id("companyA"))
    .fetch_all(&server.admin)
    .await
    .expect("A's leads");
    let expected: Vec<LeadRow> = vec![
        ("Ada".into(), Some("ada@a.example".into()), "qualified".into(), Some("UK".into()), 35),
        ("Bob".into(), Some("bob@a.example".into()), "new".into(), Some("US".into()), 20),
        ("Dee".into(), None, "new".into(), Some("DE".into()), 10),
    ];
    assert_eq!(leads, expected);

    let campaign: (String, f64) =
        sqlx::query_as("SELECT name, budget_allocated::float8 FROM public.campaigns WHERE id = $1")
            .bind(id("campaign1"))
            .fetch_one(&server.admin)
            .await
            .expect("A's upserted campaign");
    assert_eq!(campaign, ("Spring launch v2".to_owned(), 1500.0), "B's upsert left A's campaign as A made it");
    let b_leads: i64 = sqlx::query_scalar("SELECT count(*) FROM public.leads WHERE company_id = $1")
        .bind(id("companyB"))
        .fetch_one(&server.admin)
        .await
        .expect("B's leads");
    assert_eq!(b_leads, 2, "B's leads");
}

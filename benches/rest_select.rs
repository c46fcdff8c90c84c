//! What `/rest/v1` adds to a read: a 100-row select of the platform's `leads` table through
//! `GET /rest/v1/leads?select=...&company_id=eq...&order=...&limit=100` (supabase-js's
//! `from('leads').select(...).eq(...).order(...).limit(100)`) against the same rows read by
//! SQL directly: the same columns, filter, order and limit, the rows shaped as JSON by the
//! database as PostgREST does, in a transaction acting as the same user (`store::begin_as`)
//! on a pool of the same `kb_app` login. Target: p99 within 1.3x of SQL p99.
//!
//! Server: `kb::http::serve` in this process on 127.0.0.1:0 (the local model is loaded, not
//! used), a keep-alive reqwest client that reads each body whole. Data: one company of the
//! user with $KB_BENCH_ROWS leads (default 5000). Calls run one at a time, HTTP and SQL
//! alternating, after a warm-up. Run:
//!     cargo bench --bench rest_select
//! Not a criterion bench: it reports latency percentiles of one run.

mod common;

use std::time::{Duration, Instant};

use kb::http::auth::JwtKeys;
use kb::http::{AppState, Limits};
use kb::store::{self, Role, login};

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!";
const WARM_UP: usize = 50;
const COLUMNS: &str = "id,email,first_name,last_name,source,lead_score,status,tags,created_at";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes bench binaries; nothing to list or test here.
    }
    let rows = env_number("KB_BENCH_ROWS", 5_000);
    let calls = env_number("KB_BENCH_CALLS", 1_000);
    let embedder = kb::embed::from_config(&kb::embed::EmbedConfig::default()).await.expect("local model");
    let db = common::bench_db(embedder.model(), embedder.dimensions()).await;

    // A company of the user (its creator becomes its admin) and its leads.
    let mut tx = store::begin_as(&db.pool, db.owner, Role::Authenticated).await.expect("tx");
    let company: uuid::Uuid = sqlx::query_scalar("INSERT INTO public.companies (name) VALUES ('Bench') RETURNING id")
        .fetch_one(&mut *tx)
        .await
        .expect("company");
    sqlx::query(
        "INSERT INTO public.leads (company_id, email, first_name, last_name, source, tags)
         SELECT $1, 'lead' || n || '@example.com', 'First' || n, 'Last' || n, 'web', ARRAY['t' || (n % 7)]
         FROM generate_series(1, $2) n",
    )
    .bind(company)
    .bind(rows as i32)
    .execute(&mut *tx)
    .await
    .expect("leads");
    tx.commit().await.expect("commit");
    sqlx::query("ANALYZE public.leads").execute(&db.pool).await.expect("analyze");

    let mut conn = db.pool.acquire().await.expect("conn");
    login::ensure_app_login(&mut conn).await.expect("kb_app login");
    drop(conn);
    let options = (*db.pool.connect_options()).clone().username(login::APP_LOGIN);
    let app = kb::runtime::connect_app(options, 16).await.expect("kb_app pool");

    let keys = JwtKeys::new(SECRET).expect("keys");
    let token = keys.mint(Some(db.owner), Role::Authenticated, Duration::from_secs(3600)).expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/rest/v1/leads?select={COLUMNS}&company_id=eq.{company}&order=created_at.desc,id&limit=100",
        listener.local_addr().expect("addr")
    );
    let state = AppState::new(app.clone(), embedder.clone(), JwtKeys::new(SECRET).expect("keys"), Limits::default());
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kb::http::serve(listener, state, async move {
        let _ = stopping.await;
    }));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");

    let over_http = || {
        let request = client.get(&url).bearer_auth(&token).header("apikey", &token);
        async move {
            let t = Instant::now();
            let response = request.send().await.expect("select request");
            assert_eq!(response.status(), 200, "select over /rest/v1");
            let body = response.bytes().await.expect("select response");
            (t.elapsed(), body.len())
        }
    };
    let sql = format!(
        "SELECT coalesce(json_agg(t), '[]')::text FROM (
           SELECT {COLUMNS} FROM public.leads WHERE company_id = $1 ORDER BY created_at DESC, id LIMIT 100) t"
    );
    let over_sql = || {
        let (app, sql) = (&app, &sql);
        async move {
            let t = Instant::now();
            let mut tx = store::begin_as(app, db.owner, Role::Authenticated).await.expect("begin");
            let body: String = sqlx::query_scalar(sql).bind(company).fetch_one(&mut *tx).await.expect("select");
            tx.commit().await.expect("commit");
            (t.elapsed(), body.len())
        }
    };

    for _ in 0..WARM_UP {
        let (_, http_bytes) = over_http().await;
        let (_, sql_bytes) = over_sql().await;
        let rows_http = http_bytes > 1000;
        assert!(rows_http && sql_bytes > 1000, "both read the 100 rows");
    }
    let mut http = Vec::with_capacity(calls);
    let mut direct = Vec::with_capacity(calls);
    for _ in 0..calls {
        http.push(over_http().await.0);
        direct.push(over_sql().await.0);
    }
    http.sort();
    direct.sort();

    println!(
        "leads: {rows}, calls: {calls} each (after {WARM_UP} warm-up), 100 rows of {} columns per call",
        COLUMNS.split(',').count()
    );
    for (name, times) in [("GET /rest/v1/leads", &http), ("SQL directly", &direct)] {
        println!(
            "{name:<20} ms: p50 {:.3}  p99 {:.3}  max {:.3}",
            percentile(times, 0.5),
            percentile(times, 0.99),
            percentile(times, 1.0)
        );
    }
    let p50_ratio = percentile(&http, 0.5) / percentile(&direct, 0.5);
    let p99_ratio = percentile(&http, 0.99) / percentile(&direct, 0.99);
    println!("REST/SQL ratio: p50 {p50_ratio:.2}x, p99 {p99_ratio:.2}x (target: p99 within 1.3x)");

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

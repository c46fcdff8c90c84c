//! What the HTTP layer adds to a search: `POST /v1/search` with a precomputed query
//! `embedding` (so the model is not timed) against the SQL the handler runs — the same
//! `search::nearest` call with the same parameters, in a transaction opened by
//! `store::begin_as` as the same user, on a pool of the same `kb_app` login — called directly.
//! Target: HTTP p99 within 1.5x of SQL p99.
//!
//! Server: `kb::http::serve` in this process on 127.0.0.1:0, the real local model loaded (it
//! only names the model here), a keep-alive reqwest client. Data: $KB_BENCH_ROWS rows (default
//! 20000), each a mix of real all-MiniLM-L6-v2 embeddings of `sample_docs/` chunks plus small
//! noise, under an ivfflat index; queries are real embeddings of 30 natural questions.
//! Calls run one at a time, HTTP and SQL alternating, after a warm-up. Run:
//!     cargo bench --bench http_search
//!     KB_BENCH_ROWS=100000 KB_BENCH_CALLS=1000 cargo bench --bench http_search
//! Not a criterion bench: it reports latency percentiles of one run.

mod common;

use std::time::{Duration, Instant};

use kb::http::auth::JwtKeys;
use kb::http::{AppState, Limits};
use kb::search::{Mode, SearchRequest};
use kb::store::{self, Role, login};
use pgvector::Vector;
use serde_json::{Value, json};

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!";
const LIMIT: u32 = 10;
const THRESHOLD: f64 = 0.2;
const WARM_UP: usize = 50;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn mean(times: &[Duration]) -> f64 {
    times.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / times.len() as f64
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes bench binaries; nothing to list or test here.
    }
    let rows = env_number("KB_BENCH_ROWS", 20_000);
    let calls = env_number("KB_BENCH_CALLS", 300);
    let embedder = kb::embed::from_config(&kb::embed::EmbedConfig::default()).await.expect("local model");
    let model = embedder.model().to_string();

    let base = common::sample_embeddings(embedder.as_ref()).await;
    let questions: Vec<String> = common::QUESTIONS.iter().map(|q| q.to_string()).collect();
    let queries = embedder.embed(&questions).await.expect("embed questions");

    let db = common::bench_db(&model, embedder.dimensions()).await;
    let started = Instant::now();
    common::load_corpus(&db, &model, &base, rows).await;
    eprintln!("loaded {rows} rows in {:.1} s", started.elapsed().as_secs_f64());

    // The server's login, as `kb serve` connects: unprivileged, row level security applies.
    let mut conn = db.pool.acquire().await.expect("conn");
    login::ensure_app_login(&mut conn).await.expect("kb_app login");
    drop(conn);
    let options = (*db.pool.connect_options()).clone().username(login::APP_LOGIN);
    let app = kb::runtime::connect_app(options, 16).await.expect("kb_app pool");

    let keys = JwtKeys::new(SECRET).expect("keys");
    let token = keys.mint(Some(db.owner), Role::Authenticated, Duration::from_secs(3600)).expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/search", listener.local_addr().expect("addr"));
    let state = AppState::new(app.clone(), embedder.clone(), JwtKeys::new(SECRET).expect("keys"), Limits::default());
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kb::http::serve(listener, state, async move {
        let _ = stopping.await;
    }));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");

    let request = SearchRequest {
        query: String::new(),
        bucket_id: None,
        bucket_type: None,
        campaign_id: None,
        limit: LIMIT,
        threshold: THRESHOLD,
        mode: Mode::Vector,
    };
    let bodies: Vec<Value> =
        queries.iter().map(|q| json!({ "embedding": q, "limit": LIMIT, "threshold": THRESHOLD })).collect();
    let vectors: Vec<Vector> = queries.iter().map(|q| Vector::from(q.clone())).collect();

    let over_http = |i: usize| {
        let request = client.post(&url).bearer_auth(&token).json(&bodies[i % bodies.len()]);
        async move {
            let t = Instant::now();
            let response = request.send().await.expect("search request");
            assert_eq!(response.status(), 200, "search over HTTP");
            let body = response.bytes().await.expect("search response");
            let elapsed = t.elapsed();
            let parsed: Value = serde_json::from_slice(&body).expect("JSON");
            (elapsed, parsed["hits"].as_array().map_or(0, Vec::len))
        }
    };
    let over_sql = |i: usize| {
        let (app, model, request, vector) = (&app, &model, &request, &vectors[i % vectors.len()]);
        async move {
            let t = Instant::now();
            let mut tx = store::begin_as(app, db.owner, Role::Authenticated).await.expect("begin");
            let hits = kb::search::nearest(&mut tx, model, vector, request).await.expect("search");
            tx.commit().await.expect("commit");
            (t.elapsed(), hits.len())
        }
    };

    for i in 0..WARM_UP {
        let (_, http_hits) = over_http(i).await;
        let (_, sql_hits) = over_sql(i).await;
        assert_eq!(http_hits, sql_hits, "HTTP and SQL find the same number of hits");
    }
    let mut http = Vec::with_capacity(calls);
    let mut sql = Vec::with_capacity(calls);
    let mut hits = 0;
    for i in 0..calls {
        let (t, n) = over_http(i).await;
        http.push(t);
        hits += n;
        let (t, _) = over_sql(i).await;
        sql.push(t);
    }
    http.sort();
    sql.sort();

    println!("rows: {rows}, calls: {calls} each (after {WARM_UP} warm-up), limit {LIMIT}, threshold {THRESHOLD}");
    println!("mean hits per search: {:.1}", hits as f64 / calls as f64);
    for (name, times) in [("HTTP POST /v1/search", &http), ("SQL search::nearest", &sql)] {
        println!(
            "{name:<22} ms: p50 {:.3}  p99 {:.3}  mean {:.3}  max {:.3}",
            percentile(times, 0.5),
            percentile(times, 0.99),
            mean(times),
            percentile(times, 1.0)
        );
    }
    let p50_ratio = percentile(&http, 0.5) / percentile(&sql, 0.5);
    let p99_ratio = percentile(&http, 0.99) / percentile(&sql, 0.99);
    println!("HTTP/SQL ratio: p50 {p50_ratio:.2}x, p99 {p99_ratio:.2}x (target: p99 within 1.5x)");

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

//! Search quality and latency at scale: recall@10 of `search_knowledge_chunks` (through the
//! ivfflat index, inside RLS as the owner) against exact search, its latency, and the
//! latency of the spec's function as written (threshold in WHERE, ORDER BY the score: a
//! full scan), on the same data.
//!
//! Data: realistic vectors — every row is a mix of real all-MiniLM-L6-v2 embeddings of
//! `sample_docs/` chunks plus small noise; queries are real embeddings of natural questions.
//! Rows: $KB_BENCH_ROWS (default 100000). Run:
//!     cargo bench --bench search                      # 100k
//!     KB_BENCH_ROWS=1000000 cargo bench --bench search
//! Not a criterion bench: it reports recall and latency percentiles, one run.

mod common;

use std::time::{Duration, Instant};

use kb::store::{self, Role};
use pgvector::Vector;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes bench binaries; nothing to list or test here.
    }
    let rows: usize = std::env::var("KB_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let embedder = kb::embed::from_config(&kb::embed::EmbedConfig::default()).await.expect("local model");
    let model = embedder.model().to_string();
    let dims = embedder.dimensions();

    // Real embeddings of the sample documents' chunks, and of the questions.
    let started = Instant::now();
    let base = common::sample_embeddings(embedder.as_ref()).await;
    let questions: Vec<String> = common::QUESTIONS.iter().map(|q| q.to_string()).collect();
    let queries = embedder.embed(&questions).await.expect("embed questions");
    eprintln!(
        "embedded {} chunks and {} questions in {:.1} s",
        base.len(),
        queries.len(),
        started.elapsed().as_secs_f64()
    );

    let db = common::bench_db(&model, dims).await;
    common::load_corpus(&db, &model, &base, rows).await;

    // The spec's function as written, for comparison.
    sqlx::raw_sql(include_str!("spec_search.sql")).execute(&db.pool).await.expect("spec function");

    let mut recall = 0.0;
    let mut indexed = Vec::new();
    let mut exact_times = Vec::new();
    for q in &queries {
        let q = Vector::from(q.clone());
        let mut tx = store::begin_as(&db.pool, db.owner, Role::Authenticated).await.expect("tx");
        let t = Instant::now();
        let got: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT chunk_id FROM search_knowledge_chunks(NULL, $1, NULL, NULL, 10, -1)")
                .bind(&q)
                .fetch_all(&mut *tx)
                .await
                .expect("search");
        indexed.push(t.elapsed());
        tx.commit().await.expect("commit");

        let t = Instant::now();
        let exact: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM knowledge_chunks ORDER BY (embedding <=> $1) + 0 LIMIT 10")
                .bind(&q)
                .fetch_all(&db.pool)
                .await
                .expect("exact");
        exact_times.push(t.elapsed());
        recall += got.iter().filter(|id| exact.contains(id)).count() as f64 / 10.0;
    }
    recall /= queries.len() as f64;

    let mut spec = Vec::new();
    for q in queries.iter().take(10) {
        let mut tx = store::begin_as(&db.pool, db.owner, Role::Authenticated).await.expect("tx");
        let t = Instant::now();
        let _: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT chunk_id FROM spec_search_knowledge_chunks($1, $2, NULL, NULL, 10, 0.0)")
                .bind(db.owner)
                .bind(Vector::from(q.clone()))
                .fetch_all(&mut *tx)
                .await
                .expect("spec search");
        spec.push(t.elapsed());
        tx.commit().await.expect("commit");
    }
    indexed.sort();
    exact_times.sort();
    spec.sort();
    println!("rows: {rows}, queries: {}", queries.len());
    println!("recall@10 (search_knowledge_chunks vs exact): {recall:.3}");
    println!(
        "search_knowledge_chunks latency ms: p50 {:.2}, p99 {:.2}",
        percentile(&indexed, 0.5),
        percentile(&indexed, 0.99)
    );
    println!("exact scan latency ms: p50 {:.2}", percentile(&exact_times, 0.5));
    println!(
        "spec function as written latency ms: p50 {:.2} ({} queries); speed-up {:.0}x",
        percentile(&spec, 0.5),
        spec.len(),
        percentile(&spec, 0.5) / percentile(&indexed, 0.5)
    );
}

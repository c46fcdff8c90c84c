//! Hybrid search latency against vector search (and lexical alone) at 100k chunks, the
//! default search of each mode (`limit` 10, default candidate depth and weight), as the
//! `/v1/search` handler runs it: `search::nearest_as`, acting as the user (a hybrid search's two
//! rankings side by side on two connections).
//! Target (issue 9): hybrid p99 within 2x of vector p99.
//!
//! Data: $KB_BENCH_ROWS chunks (default 100,000). Their text is real: each a window of up to
//! 120 words of an NFCorpus abstract (`../shared/data/nfcorpus`, or $KB_NFCORPUS), so term
//! frequencies and document frequencies are those of real prose (each abstract appears in
//! ~30 chunks); their vectors are mixes of real all-MiniLM-L6-v2 embeddings plus noise (as
//! the search bench's), under the ivfflat index. Queries: the first $KB_BENCH_CALLS (default
//! 200) NFCorpus queries, embedded with the local model. Modes alternate per query after a
//! warm-up. Run:
//!     cargo bench --bench hybrid
//! Not a criterion bench: it reports latency percentiles of one run.

mod common;

use std::time::{Duration, Instant};

use kb::search::{Mode, SearchOptions, SearchRequest};
use kb::store::Role;
use pgvector::Vector;

const WARM_UP: usize = 30;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The `text` field of each line of a BEIR JSONL file.
fn texts(path: &std::path::Path) -> Vec<String> {
    let body = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    body.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .filter(|t| !t.trim().is_empty())
        .collect()
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes bench binaries; nothing to list or test here.
    }
    let rows = env_number("KB_BENCH_ROWS", 100_000);
    let calls = env_number("KB_BENCH_CALLS", 200);
    let corpus = std::env::var_os("KB_NFCORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nfcorpus"));
    let abstracts: Vec<Vec<String>> =
        texts(&corpus.join("corpus.jsonl")).iter().map(|t| t.split_whitespace().map(str::to_owned).collect()).collect();
    let questions: Vec<String> = texts(&corpus.join("queries.jsonl")).into_iter().take(calls).collect();

    let embedder = kb::embed::from_config(&kb::embed::EmbedConfig::default()).await.expect("local model");
    let model = embedder.model().to_string();
    let base = common::sample_embeddings(embedder.as_ref()).await;
    let queries = embedder.embed(&questions).await.expect("embed queries");
    let db = common::bench_db(&model, embedder.dimensions()).await;
    let window = |i: usize, _: (usize, usize, usize)| {
        let words = &abstracts[i.wrapping_mul(2_654_435_761) % abstracts.len()];
        let start = if words.len() > 120 { (i / abstracts.len()) * 37 % (words.len() - 120) } else { 0 };
        words[start..words.len().min(start + 120)].join(" ")
    };
    let write_s = common::load_corpus_with(&db, &model, &base, rows, window).await;
    eprintln!("loaded {rows} chunks of NFCorpus text in {write_s:.1} s");

    let run = |mode: Mode, i: usize| {
        let (pool, model) = (&db.pool, &model);
        let request = SearchRequest {
            query: questions[i % questions.len()].clone(),
            bucket_id: None,
            bucket_type: None,
            campaign_id: None,
            limit: 10,
            threshold: -1.0,
            mode,
        };
        let embedding = Vector::from(queries[i % queries.len()].clone());
        async move {
            let t = Instant::now();
            let hits = kb::search::nearest_as(
                pool,
                db.owner,
                Role::Authenticated,
                model,
                &embedding,
                &request,
                &SearchOptions::default(),
            )
            .await
            .expect("search");
            (t.elapsed(), hits.len())
        }
    };
    let modes = [Mode::Vector, Mode::Lexical, Mode::Hybrid];
    for i in 0..WARM_UP {
        for mode in modes {
            run(mode, i).await;
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(calls); modes.len()];
    let mut hits = [0usize; 3];
    for i in 0..calls {
        for (m, mode) in modes.iter().enumerate() {
            let (t, n) = run(*mode, i).await;
            times[m].push(t);
            hits[m] += n;
        }
    }
    println!("chunks: {rows}, queries: {calls} per mode (after {WARM_UP} warm-up), limit 10");
    for (m, mode) in modes.iter().enumerate() {
        times[m].sort();
        println!(
            "{:<8} ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  (mean hits {:.1})",
            format!("{mode:?}").to_lowercase(),
            percentile(&times[m], 0.5),
            percentile(&times[m], 0.95),
            percentile(&times[m], 0.99),
            percentile(&times[m], 1.0),
            hits[m] as f64 / calls as f64
        );
    }
    println!(
        "hybrid / vector: p50 {:.2}x, p99 {:.2}x (target: p99 within 2x)",
        percentile(&times[2], 0.5) / percentile(&times[0], 0.5),
        percentile(&times[2], 0.99) / percentile(&times[0], 0.99)
    );
}

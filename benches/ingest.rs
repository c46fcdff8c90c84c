//! End-to-end ingestion of `sample_docs/` into a fresh database of kb's embedded cluster:
//! 1. with the real local model: first ingest, then a re-ingest of the unchanged corpus
//!    (DESIGN.md: zero embedding calls and under 5% of the first ingest's time);
//! 2. pipeline overhead with `FakeEmbedder` (a bench-only stand-in that returns constant
//!    vectors instantly, so only extract + chunk + hash + dedup + write are timed) on the
//!    corpus copied to 2,000+ chunks (DESIGN.md: >= 2,000 chunks/s).
//!
//! Not a criterion bench: each figure is one run. `cargo bench --bench ingest`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kb::chunk::{TokenBudget, Tokenizer};
use kb::embed::{EmbedError, Embedder};
use kb::extract::ExtractLimits;
use kb::ingest::{Pipeline, Silent};
use kb::store::{self, Role, buckets};

/// Bench-only embedder: same tokenizer and dimensions as the real one, no model.
struct FakeEmbedder {
    tokenizer: Tokenizer,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Embedder for FakeEmbedder {
    fn model(&self) -> &str {
        "bench/fake-384"
    }
    fn dimensions(&self) -> usize {
        384
    }
    fn max_input_tokens(&self) -> usize {
        254
    }
    fn tokenizer(&self) -> Tokenizer {
        self.tokenizer.clone()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.calls.fetch_add(texts.len(), Ordering::Relaxed);
        Ok(texts
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let mut v = vec![0.0f32; 384];
                v[i % 384] = 1.0;
                v
            })
            .collect())
    }
}

async fn run(
    embedder: Arc<dyn Embedder>,
    paths: &[std::path::PathBuf],
    label: &str,
) -> (kb::ingest::Summary, kb::ingest::Summary) {
    let db = common::bench_db(embedder.model(), embedder.dimensions()).await;
    let bucket = {
        let mut tx = store::begin_as(&db.pool, db.owner, Role::Authenticated).await.expect("tx");
        let new = buckets::NewBucket {
            name: label,
            bucket_type: "general",
            campaign_id: None,
            embedding_model: embedder.model(),
            created_by: db.owner,
        };
        let b = buckets::ensure_bucket(&mut tx, &new).await.expect("bucket");
        tx.commit().await.expect("commit");
        b
    };
    let pipeline = Pipeline {
        pool: db.pool.clone(),
        budget: TokenBudget::new(200, 32, embedder.max_input_tokens()).expect("budget"),
        embedder,
        extract: ExtractLimits { worker: Some(env!("CARGO_BIN_EXE_kb").into()), ..ExtractLimits::default() },
        parallelism: kb::config::default_parallelism(),
    };
    let settings =
        kb::ingest::WorkerSettings::new(std::time::Duration::from_secs(60), std::time::Duration::from_secs(600));
    let first =
        pipeline.ingest(db.owner, &bucket, kb::ingest::collect(paths).expect("sources"), &settings, &Silent).await;
    let second =
        pipeline.ingest(db.owner, &bucket, kb::ingest::collect(paths).expect("sources"), &settings, &Silent).await;
    (first, second)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let samples = vec![root.join("sample_docs")];

    let real = kb::embed::from_config(&kb::embed::EmbedConfig::default()).await.expect("local model");
    let (first, second) = run(real, &samples, "real").await;
    println!(
        "real model: first ingest {} documents, {} chunks in {:.2} s ({:.1} chunks/s); {} failed",
        first.documents_ready,
        first.chunks_written,
        first.seconds,
        first.chunks_written as f64 / first.seconds,
        first.documents_failed
    );
    println!(
        "re-ingest unchanged: {} unchanged, {} embeddings computed, {:.3} s = {:.2}% of the first",
        second.documents_unchanged,
        second.embeddings_computed,
        second.seconds,
        100.0 * second.seconds / first.seconds
    );

    // Overhead: many copies of the text documents (PDFs excluded: their parse time is
    // the parser's), each a distinct file so nothing is deduplicated away.
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = Tokenizer::from_file(&kb::embed::default_model_dir().join("tokenizer.json")).expect("tokenizer");
    let mut copies = 0;
    for copy in 0..12 {
        for entry in std::fs::read_dir(root.join("sample_docs")).expect("dir").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pdf") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let name = format!("{copy}-{}", path.file_name().expect("name").to_string_lossy());
            // A copy marker per paragraph keeps every chunk's hash distinct.
            let text = text.replace("\n\n", &format!("\n\ncopy {copy}. "));
            std::fs::write(dir.path().join(name), text).expect("write");
            copies += 1;
        }
    }
    let fake = Arc::new(FakeEmbedder { tokenizer, calls: AtomicUsize::new(0) });
    let (first, _) = run(fake.clone(), &[dir.path().to_path_buf()], "overhead").await;
    if let Some(failed) = first.documents.iter().find(|d| matches!(d.outcome, kb::ingest::Outcome::Failed { .. })) {
        println!("{} documents failed, for example {failed:?}", first.documents_failed);
    }
    println!(
        "pipeline overhead (FakeEmbedder): {copies} documents, {} chunks in {:.2} s = {:.0} chunks/s ({} texts sent to the fake model)",
        first.chunks_written,
        first.seconds,
        first.chunks_written as f64 / first.seconds,
        fake.calls.load(Ordering::Relaxed)
    );
}

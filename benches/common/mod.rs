//! Shared bench set-up: a fresh migrated database in kb's embedded cluster
//! ($KB_BENCH_DATA_DIR, default /tmp/kb-bench-cluster), with a user, a model and a bucket;
//! earlier runs' databases are dropped.

// Each bench binary uses a part of this module.
#![allow(dead_code)]

use kb::chunk::TokenBudget;
use kb::cluster::Cluster;
use kb::extract::{ExtractLimits, Format, extract};
use kb::store::{self, chunks::NewChunk, documents, index::IndexMethod, users};
use pgvector::Vector;
use sqlx::PgPool;
use uuid::Uuid;

pub struct BenchDb {
    pub pool: PgPool,
    pub owner: Uuid,
    pub bucket: Uuid,
}

pub async fn bench_db(model: &str, dimensions: usize) -> BenchDb {
    let dir = std::env::var_os("KB_BENCH_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kb-bench-cluster"));
    let cluster = Cluster::new(&dir).expect("cluster (run scripts/setup.sh)");
    let admin = store::connect(&cluster.ensure_running("postgres").await.expect("running"), 1).await.expect("admin");
    // Earlier runs' databases (~600 MB each at 100k chunks) go; one still open is skipped.
    let old: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'kb\\_bench\\_%'")
        .fetch_all(&admin)
        .await
        .expect("list bench databases");
    for name in old {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&admin).await;
    }
    let name = format!("kb_bench_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create db");
    let pool = store::connect(&cluster.database_url(&name), 20).await.expect("connect");
    store::migrate(&pool).await.expect("migrate");
    let mut conn = pool.acquire().await.expect("conn");
    let owner = users::ensure_user(&mut conn, "bench@example.com").await.expect("user");
    store::index::register_model(&mut conn, model, dimensions).await.expect("model");
    drop(conn);
    let mut tx = store::begin_as(&pool, owner, store::Role::Authenticated).await.expect("tx");
    let new = store::buckets::NewBucket {
        name: "bench",
        bucket_type: "general",
        campaign_id: None,
        embedding_model: model,
        created_by: owner,
    };
    let bucket = store::buckets::ensure_bucket(&mut tx, &new).await.expect("bucket").id;
    tx.commit().await.expect("commit");
    BenchDb { pool, owner, bucket }
}

impl BenchDb {
    /// A new `ready` document in the bench bucket, without chunks.
    pub async fn document(&self, path: &str) -> Uuid {
        let mut conn = self.pool.acquire().await.expect("conn");
        let new = documents::NewDocument {
            bucket_id: self.bucket,
            title: path,
            file_name: path,
            file_type: Some("txt"),
            file_size: 0,
            upload_path: path,
            content_hash: path,
            created_by: self.owner,
        };
        documents::insert_ready(&mut conn, &new).await.expect("doc")
    }
}

/// Seeded xorshift in [-0.5, 0.5): benches are repeatable.
pub struct Noise(pub u64);

impl Noise {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// Natural questions about `sample_docs/`: the queries of the search benches.
pub const QUESTIONS: [&str; 30] = [
    "What tone should we use on LinkedIn?",
    "Can I get a refund on an annual subscription?",
    "How much does the Starter plan cost?",
    "How does double opt-in work?",
    "Who may speak to journalists?",
    "How much clear space does the logo need?",
    "How fast does support answer urgent tickets?",
    "What are my rights under GDPR?",
    "Which certifications does Lighthouse hold?",
    "When are affiliate commissions paid?",
    "When should webinar promotion start?",
    "How do I invite my team?",
    "How do we research keywords?",
    "How often should we post on social media?",
    "What words do we avoid in our copy?",
    "What is the uptime commitment?",
    "How are seats counted on invoices?",
    "What happens to my data after cancellation?",
    "How is customer data encrypted?",
    "How do partners register a referral?",
    "What makes a good press release?",
    "How do we measure email campaign success?",
    "What colours are in the brand palette?",
    "How should articles be structured for SEO?",
    "What happens during a reputational crisis?",
    "How do I connect my social channels?",
    "How do I import contacts from a CSV file?",
    "What is the escalation path for a critical incident?",
    "How do we follow up after an event?",
    "What payment methods are accepted?",
];

/// Real embeddings of the sample documents' text chunks (PDFs left out: no parser child here).
pub async fn sample_embeddings(embedder: &dyn kb::embed::Embedder) -> Vec<Vec<f32>> {
    let budget = TokenBudget::new(200, 32, embedder.max_input_tokens()).expect("budget");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_docs");
    let mut paths: Vec<_> = std::fs::read_dir(dir).expect("sample_docs").flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut texts = Vec::new();
    for path in paths {
        let Some(format) = Format::from_path(&path) else { continue };
        if format == Format::Pdf {
            continue;
        }
        let doc = extract(
            format,
            &std::fs::read(&path).expect("read"),
            &ExtractLimits { worker: Some(env!("CARGO_BIN_EXE_kb").into()), ..ExtractLimits::default() },
        )
        .expect("extract");
        texts.extend(
            kb::chunk::split(&doc, &embedder.tokenizer(), budget, kb::chunk::ChunkLimits::unbounded())
                .expect("split")
                .into_iter()
                .map(|c| c.text),
        );
    }
    embedder.embed(&texts).await.expect("embed chunks")
}

/// Writes `rows` synthetic chunks (mixes of real embeddings plus noise) as ready documents,
/// builds the ivfflat index and analyzes; returns the seconds the writes took.
pub async fn load_corpus(db: &BenchDb, model: &str, base: &[Vec<f32>], rows: usize) -> f64 {
    load_corpus_with(db, model, base, rows, |i, (a, b, c)| format!("synthetic chunk {i} mixing {a}, {b} and {c}")).await
}

/// `load_corpus` with each chunk's text from `content(row, the three base vectors mixed)`.
pub async fn load_corpus_with(
    db: &BenchDb,
    model: &str,
    base: &[Vec<f32>],
    rows: usize,
    content: impl Fn(usize, (usize, usize, usize)) -> String,
) -> f64 {
    let dims = base[0].len();
    let mut noise = Noise(0x2545_F491_4F6C_DD1D);
    let per_doc = 10_000;
    let started = std::time::Instant::now();
    let mut written = 0;
    while written < rows {
        let n = per_doc.min(rows - written);
        let doc = db.document(&format!("synthetic-{written}.txt")).await;
        let chunks: Vec<NewChunk> = (0..n)
            .map(|i| {
                let pick = |noise: &mut Noise| ((noise.next() + 0.5) * base.len() as f32) as usize % base.len();
                let (a, b, c) = (pick(&mut noise), pick(&mut noise), pick(&mut noise));
                let mut v: Vec<f32> =
                    (0..dims).map(|d| base[a][d] + 0.6 * base[b][d] + 0.3 * base[c][d] + 0.05 * noise.next()).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                NewChunk {
                    chunk_index: i as i32,
                    content: content(written + i, (a, b, c)),
                    content_hash: format!("{:064x}", written + i),
                    token_count: 200,
                    embedding: Vector::from(v),
                    metadata: serde_json::json!({}),
                }
            })
            .collect();
        let mut tx = db.pool.begin().await.expect("tx");
        store::chunks::replace_chunks(&mut tx, doc, db.bucket, model, &chunks).await.expect("write");
        sqlx::query("UPDATE knowledge_documents SET status = 'ready' WHERE id = $1")
            .bind(doc)
            .execute(&mut *tx)
            .await
            .expect("ready");
        tx.commit().await.expect("commit");
        written += n;
    }
    let write_s = started.elapsed().as_secs_f64();
    eprintln!("wrote {rows} rows in {write_s:.1} s ({:.0} rows/s)", rows as f64 / write_s);
    let builds = store::index::ensure_indexes(&db.pool, Some(IndexMethod::Ivfflat)).await.expect("index");
    eprintln!("index: {builds:?}");
    sqlx::query("VACUUM ANALYZE knowledge_chunks").execute(&db.pool).await.expect("analyze");
    write_s
}

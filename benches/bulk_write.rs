//! Vector writes: rows/s of `store::chunks::replace_chunks` (one `INSERT .. SELECT FROM
//! unnest(..)` per document) against the baseline of one INSERT per row, with 384-dimension
//! vectors, on kb's embedded PostgreSQL (a cluster in $KB_BENCH_DATA_DIR, default
//! /tmp/kb-bench-cluster). DESIGN.md target: ~45-50k rows/s bulk against ~4k/s per row.
//! Vectors are seeded pseudo-random: their values do not affect write speed. Each chunk's
//! text is ~900 characters of `sample_docs/` prose, as a 200-token chunk has.

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kb::store::{self, chunks::NewChunk};
use pgvector::Vector;
use sqlx::PgPool;
use uuid::Uuid;

const MODEL: &str = "bench/384";

/// The text of `sample_docs/`'s text documents, for chunk-sized windows of real prose.
fn sample_text() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_docs");
    let mut names: Vec<_> = std::fs::read_dir(dir).expect("sample_docs").flatten().map(|e| e.path()).collect();
    names.sort();
    names
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md" || e == "txt"))
        .map(|p| std::fs::read_to_string(p).expect("sample document"))
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `n` chunks of ~900 characters of real prose (a 200-token chunk's size; the full-text
/// columns' cost grows with it), each with a 384-d vector.
fn rows(n: usize, seed: u64) -> Vec<NewChunk> {
    let mut noise = common::Noise(seed | 1);
    let text = sample_text();
    let words: Vec<&str> = text.split(' ').collect();
    (0..n)
        .map(|i| NewChunk {
            chunk_index: i as i32,
            content: words.iter().cycle().skip(i * 37 % words.len()).take(150).copied().collect::<Vec<_>>().join(" "),
            content_hash: format!("{:064x}", seed.wrapping_mul(1_000_003) + i as u64),
            token_count: 200,
            embedding: Vector::from((0..384).map(|_| noise.next()).collect::<Vec<f32>>()),
            metadata: serde_json::json!({"page": i / 10}),
        })
        .collect()
}

async fn setup() -> (PgPool, Uuid, Uuid) {
    let db = common::bench_db(MODEL, 384).await;
    let doc = db.document("bench.txt").await;
    (db.pool, db.bucket, doc)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (pool, bucket, doc) = rt.block_on(setup());

    let mut group = c.benchmark_group("bulk_write");
    group.sample_size(10);
    const BULK: usize = 10_000;
    group.throughput(Throughput::Elements(BULK as u64));
    group.bench_function("replace_chunks_unnest_10k", |b| {
        b.to_async(&rt).iter_batched(
            || rows(BULK, 7),
            |chunks| {
                let pool = pool.clone();
                async move {
                    let mut tx = pool.begin().await.expect("tx");
                    store::chunks::replace_chunks(&mut tx, doc, bucket, MODEL, &chunks).await.expect("write");
                    tx.commit().await.expect("commit");
                }
            },
            BatchSize::PerIteration,
        )
    });

    const SINGLE: usize = 2_000;
    group.throughput(Throughput::Elements(SINGLE as u64));
    group.bench_function("baseline_one_insert_per_row_2k", |b| {
        b.to_async(&rt).iter_batched(
            || rows(SINGLE, 11),
            |chunks| {
                let pool = pool.clone();
                async move {
                    let mut tx = pool.begin().await.expect("tx");
                    sqlx::query("DELETE FROM knowledge_chunks WHERE document_id = $1")
                        .bind(doc)
                        .execute(&mut *tx)
                        .await
                        .expect("delete");
                    for c in &chunks {
                        sqlx::query(
                            "INSERT INTO knowledge_chunks (document_id, bucket_id, embedding_model, chunk_index,
                               content, content_hash, token_count, embedding, metadata)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(doc)
                        .bind(bucket)
                        .bind(MODEL)
                        .bind(c.chunk_index)
                        .bind(&c.content)
                        .bind(&c.content_hash)
                        .bind(c.token_count)
                        .bind(&c.embedding)
                        .bind(&c.metadata)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                    }
                    tx.commit().await.expect("commit");
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(bulk_write, benches);
criterion_main!(bulk_write);

//! Shared bench set-up: a fresh migrated database in kb's embedded cluster
//! ($KB_BENCH_DATA_DIR, default /tmp/kb-bench-cluster), with a user, a model and a bucket.

// Each bench binary uses a part of this module.
#![allow(dead_code)]

use kb::cluster::Cluster;
use kb::store::{self, documents, users};
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
    /// A new `processing` document in the bench bucket.
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
        documents::start_processing(&mut conn, &new).await.expect("doc")
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

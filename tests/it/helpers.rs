//! Shared set-up: a fresh database per test in one embedded cluster, the real local model
//! loaded once per test binary, and an ingestion pipeline that counts embedding calls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kb::chunk::Tokenizer;
use kb::cluster::Cluster;
use kb::embed::{EmbedError, Embedder};
use kb::extract::ExtractLimits;
use kb::ingest::{Pipeline, Silent, Summary, WorkerSettings};
use kb::store::{self, Bucket, Role, buckets, users};
use sqlx::PgPool;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// The cluster every test database lives in, shared by all test binaries and runs.
pub fn test_cluster() -> Cluster {
    let dir = std::env::var_os("KB_TEST_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kb-test-cluster"));
    Cluster::new(&dir).expect("embedded cluster binaries (run scripts/setup.sh)")
}

/// A new, migrated database of its own.
pub struct TestDb {
    pub pool: PgPool,
    /// The cluster superuser's URL of this database.
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let url = empty_database().await;
        let pool = store::connect(&url, 8).await.expect("connect to test db");
        store::migrate(&pool).await.expect("migrations");
        TestDb { pool, url }
    }
}

/// Test databases are named `kb_test_<unix seconds>_<random>`; the first test of each run
/// drops those older than this, so the shared cluster does not grow run after run.
const STALE_AFTER_SECS: u64 = 2 * 60 * 60;

static SWEPT: OnceCell<()> = OnceCell::const_new();

/// A new, empty database (no migrations) in the shared test cluster; its superuser URL.
pub async fn empty_database() -> String {
    let cluster = test_cluster();
    let admin_url = cluster.ensure_running("postgres").await.expect("cluster running");
    let admin = store::connect(&admin_url, 1).await.expect("connect to postgres db");
    SWEPT.get_or_init(|| drop_stale_databases(&admin)).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let name = format!("kb_test_{now}_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create database");
    admin.close().await;
    cluster.database_url(&name)
}

/// Drops the test databases earlier runs left behind. One still open (another run's) refuses
/// to be dropped and is skipped; an unnamed-by-time one is from before the sweep existed.
async fn drop_stale_databases(admin: &PgPool) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'kb\\_test\\_%'")
        .fetch_all(admin)
        .await
        .expect("list test databases");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    for name in names {
        let created = name
            .strip_prefix("kb_test_")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(secs, _)| secs.parse::<u64>().ok());
        if created.is_some_and(|secs| now.saturating_sub(secs) < STALE_AFTER_SECS) {
            continue;
        }
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(admin).await;
    }
}

static EMBEDDER: OnceCell<Arc<dyn Embedder>> = OnceCell::const_new();

/// The real local model (all-MiniLM-L6-v2), loaded once per test binary.
pub async fn local_embedder() -> Arc<dyn Embedder> {
    EMBEDDER
        .get_or_init(|| async {
            kb::embed::from_config(&kb::embed::EmbedConfig::default())
                .await
                .expect("local model (run scripts/setup.sh)")
        })
        .await
        .clone()
}

/// A real embedder that counts the texts it is asked to embed, and can pause before each
/// call (a job that outlives its lease).
pub struct Counting {
    pub inner: Arc<dyn Embedder>,
    pub texts: AtomicUsize,
    pub pause: Duration,
}

impl Counting {
    pub async fn new(pause: Duration) -> Counting {
        Counting { inner: local_embedder().await, texts: AtomicUsize::new(0), pause }
    }

    pub fn count(&self) -> usize {
        self.texts.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Embedder for Counting {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }
    fn tokenizer(&self) -> Tokenizer {
        self.inner.tokenizer()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        tokio::time::sleep(self.pause).await;
        self.inner.embed(texts).await
    }
}

/// A database, a user owning one bucket, and a pipeline over the real model.
pub struct Kb {
    pub db: TestDb,
    pub owner: Uuid,
    pub bucket: Bucket,
    pub embedder: Arc<Counting>,
    pub pipeline: Pipeline,
}

impl Kb {
    pub async fn new(bucket_name: &str) -> Kb {
        let db = TestDb::new().await;
        let embedder = Arc::new(Counting::new(Duration::ZERO).await);
        let owner = user(&db.pool, &format!("{bucket_name}-owner@example.com")).await;
        let bucket = bucket(&db.pool, owner, bucket_name, "general", embedder.model()).await;
        let pipeline = Pipeline {
            pool: db.pool.clone(),
            embedder: embedder.clone(),
            budget: kb::chunk::TokenBudget::new(200, 32, embedder.max_input_tokens()).expect("budget"),
            extract: extract_limits(),
            parallelism: 2,
        };
        Kb { db, owner, bucket, embedder, pipeline }
    }

    pub async fn ingest(&self, paths: &[PathBuf]) -> Summary {
        let sources = kb::ingest::collect(paths).expect("sources");
        let settings = WorkerSettings::new(Duration::from_secs(30), Duration::from_secs(600));
        self.pipeline.ingest(self.owner, &self.bucket, sources, &settings, &Silent).await
    }
}

/// Extraction limits with the real `kb` binary as the extraction worker.
pub fn extract_limits() -> ExtractLimits {
    ExtractLimits {
        worker: Some(PathBuf::from(env!("CARGO_BIN_EXE_kb"))),
        timeout: Duration::from_secs(60),
        ..ExtractLimits::default()
    }
}

/// A user (auth.users row) with this e-mail; registers the local model too.
pub async fn user(pool: &PgPool, email: &str) -> Uuid {
    let mut conn = pool.acquire().await.expect("conn");
    let id = users::ensure_user(&mut conn, email).await.expect("user");
    let embedder = local_embedder().await;
    store::index::register_model(&mut conn, embedder.model(), embedder.dimensions()).await.expect("model");
    id
}

/// A bucket owned by `owner`, created through RLS as that user.
pub async fn bucket(pool: &PgPool, owner: Uuid, name: &str, bucket_type: &str, model: &str) -> Bucket {
    let mut tx = store::begin_as(pool, owner, Role::Authenticated).await.expect("begin");
    let new = buckets::NewBucket { name, bucket_type, campaign_id: None, embedding_model: model, created_by: owner };
    let bucket = buckets::ensure_bucket(&mut tx, &new).await.expect("bucket");
    tx.commit().await.expect("commit");
    bucket
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

//! `kb bench search`: recall@10 against exact search, latency and throughput of kb's vector
//! search on realistic rows (`vectors.rs`), in a fresh database of the embedded cluster, in
//! one run on the same queries: kb's SQL (`search::nearest_as`, as the caller under RLS) over
//! an index-effort sweep per method, kb's HTTP endpoint (embedding given, and text query), the
//! spec's function as written, and filters of 1% and 10% selectivity. Writes the rows and
//! queries as `.npy` and every run as JSON (`runs`, the schema `benches/side_by_side.py`
//! writes too), so the same vectors go to FAISS and Chroma.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvector::Vector;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

use super::vectors::{self, Dataset};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::http::auth::JwtKeys;
use crate::http::{self, AppState, Limits};
use crate::runtime;
use crate::search::{self, Mode, SearchOptions, SearchRequest};
use crate::store::index::{HnswParams, IndexMethod};
use crate::store::{self, Role, buckets, chunks::NewChunk, documents, login, users};

const K: usize = 10;
/// Rows of the bench are spread over this many buckets: row i is in bucket i % BUCKETS, so a
/// search in one bucket sees 1% of the rows, and one in the `ten` bucket type (the first ten
/// buckets) 10%.
const BUCKETS: usize = 100;
/// Chunks per document.
const DOCUMENT_CHUNKS: usize = 1000;
/// Queries the spec's function runs (it scans every row).
const SPEC_QUERIES: usize = 20;

#[derive(Debug, clap::Args)]
pub struct SearchBenchArgs {
    /// Rows to load: the base's real embeddings first, then rows derived from them.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// A BEIR-layout collection whose abstracts join the base and whose queries join the
    /// queries (e.g. ../shared/data/nfcorpus).
    #[arg(long)]
    pub nfcorpus: Option<PathBuf>,
    /// Concurrent clients of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub clients: Vec<usize>,
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Indexes measured, one after the other: `ivfflat`, or `hnsw:M:EF_CONSTRUCTION`.
    #[arg(long, value_delimiter = ',', default_value = "ivfflat,hnsw:16:64,hnsw:32:128")]
    pub methods: Vec<String>,
    /// Where the rows (`vectors.npy`), queries (`queries.npy`) and results (`kb.json`) go.
    #[arg(long, default_value = "target/bench-search")]
    pub out: PathBuf,
    /// Where the embeddings of the texts are cached [default: ~/.cache/kb/bench].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Keep the bench's database afterwards (it is dropped by default).
    #[arg(long)]
    pub keep: bool,
}

/// One measured configuration, in the schema `benches/side_by_side.py` writes.
#[derive(Debug, Serialize)]
struct Run {
    engine: String,
    setting: String,
    filter_percent: Option<u32>,
    build_seconds: Option<f64>,
    recall: Option<f64>,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    qps: serde_json::Map<String, serde_json::Value>,
}

/// Which rows a query may see.
#[derive(Debug, Clone, Copy)]
enum Filter {
    None,
    /// One bucket: 1% of the rows.
    OnePercent,
    /// The `ten` bucket type: 10%.
    TenPercent,
}

impl Filter {
    fn percent(self) -> Option<u32> {
        match self {
            Filter::None => None,
            Filter::OnePercent => Some(1),
            Filter::TenPercent => Some(10),
        }
    }

    fn keeps(self, row: usize) -> bool {
        match self {
            Filter::None => true,
            Filter::OnePercent => row.is_multiple_of(BUCKETS),
            Filter::TenPercent => row % BUCKETS < 10,
        }
    }
}

/// The bench's database and who searches it.
struct Bench {
    admin: PgPool,
    /// The server's unprivileged login (`kb_app`), as `kb serve` connects.
    app_options: PgConnectOptions,
    owner: Uuid,
    model: String,
    first_bucket: Uuid,
    /// chunk id -> row number.
    rows: std::collections::HashMap<Uuid, u32>,
    queries: Vec<Vector>,
    truth: Vec<Vec<Vec<(u32, f32)>>>,
}

impl Bench {
    fn request(&self, filter: Filter) -> SearchRequest {
        SearchRequest {
            query: String::new(),
            bucket_id: matches!(filter, Filter::OnePercent).then_some(self.first_bucket),
            bucket_type: matches!(filter, Filter::TenPercent).then(|| "ten".to_string()),
            campaign_id: None,
            limit: K as u32,
            threshold: -1.0,
            mode: Mode::Vector,
        }
    }

    fn truth(&self, filter: Filter) -> &[Vec<(u32, f32)>] {
        &self.truth[match filter {
            Filter::None => 0,
            Filter::OnePercent => 1,
            Filter::TenPercent => 2,
        }]
    }

    fn recall(&self, filter: Filter, query: usize, got: &[Uuid]) -> f64 {
        let truth = &self.truth(filter)[query];
        let found = got.iter().filter_map(|id| self.rows.get(id)).filter(|r| truth.iter().any(|t| t.0 == **r)).count();
        found as f64 / truth.len().max(1) as f64
    }

    async fn app_pool(&self, settings: &[(&str, String)]) -> anyhow::Result<PgPool> {
        let mut options = self.app_options.clone();
        for (name, value) in settings {
            options = options.options([(*name, value.as_str())]);
        }
        runtime::connect_app(options, 40).await
    }
}

pub async fn run(config: &Config, args: SearchBenchArgs) -> anyhow::Result<()> {
    if config.database_url.is_some() {
        bail!("kb bench search makes a database of its own in the embedded cluster: unset DATABASE_URL");
    }
    let embedder = runtime::load_embedder(config).await?;
    let cache =
        args.cache.clone().unwrap_or_else(|| crate::embed::cache_dir().join("bench")).join(slug(embedder.model()));
    let data = vectors::load(embedder.as_ref(), &cache, args.nfcorpus.as_deref()).await?;
    if data.base.len() <= 8 {
        bail!("only {} base texts: the bench needs thousands", data.base.len());
    }
    let started = Instant::now();
    let neighbours = vectors::neighbours(&data.base)?;
    let (rows, parents) = vectors::derive(&data.base, &neighbours, args.rows, 42);
    eprintln!(
        "{} rows ({} real, {} derived) in {:.1} s",
        rows.len(),
        data.base.len().min(rows.len()),
        rows.len().saturating_sub(data.base.len()),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let truth = vec![
        vectors::exact_top_k(&rows, &data.queries, K, |r| Filter::None.keeps(r))?,
        vectors::exact_top_k(&rows, &data.queries, K, |r| Filter::OnePercent.keeps(r))?,
        vectors::exact_top_k(&rows, &data.queries, K, |r| Filter::TenPercent.keeps(r))?,
    ];
    let base_truth = vectors::exact_top_k(&data.base, &data.queries, K, |_| true)?;
    eprintln!("exact top {K} of {} queries in {:.1} s", data.queries.len(), started.elapsed().as_secs_f64());
    let derivation = json!({
        "base_texts": data.base.len(),
        "derived_rows": rows.len().saturating_sub(data.base.len()),
        "neighbours_mixed": "2 or 3 (a base vector and 1-2 of its 8 nearest)",
        "noise_per_dimension": vectors::NOISE,
        "query_top1_cosine_base": mean_cosine(&base_truth, 1),
        "query_top1_cosine_rows": mean_cosine(&truth[0], 1),
        "query_top10_cosine_base": mean_cosine(&base_truth, K),
        "query_top10_cosine_rows": mean_cosine(&truth[0], K),
    });
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    vectors::write_npy(&args.out.join("vectors.npy"), &rows)?;
    vectors::write_npy(&args.out.join("queries.npy"), &data.queries)?;

    let cluster = Cluster::new(&config.data_dir())?;
    let postgres = store::connect(&cluster.ensure_running("postgres").await?, 1).await?;
    let old: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'kb\\_bench\\_%'")
        .fetch_all(&postgres)
        .await?;
    for name in old {
        // One still open elsewhere stays.
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&postgres).await;
    }
    let name = format!("kb_bench_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&postgres).await?;
    let result = bench_in(&cluster, &name, &args, embedder, &data, &rows, &parents, truth, derivation).await;
    if !args.keep {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&postgres).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn bench_in(
    cluster: &Cluster,
    database: &str,
    args: &SearchBenchArgs,
    embedder: Arc<dyn crate::embed::Embedder>,
    data: &Dataset,
    rows: &[Vec<f32>],
    parents: &[u32],
    truth: Vec<Vec<Vec<(u32, f32)>>>,
    derivation: serde_json::Value,
) -> anyhow::Result<()> {
    let admin = store::connect(&cluster.database_url(database), 4).await?;
    store::migrate(&admin).await?;
    let model = embedder.model().to_string();
    let mut conn = admin.acquire().await?;
    login::ensure_app_login(&mut conn).await?;
    store::index::register_model(&mut conn, &model, embedder.dimensions()).await?;
    let owner = users::ensure_user(&mut conn, "bench@kb.local").await?;
    drop(conn);

    let started = Instant::now();
    let buckets = load(&admin, owner, &model, &data.texts, rows, parents).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    eprintln!("loaded {} rows in {load_seconds:.1} s ({:.0} rows/s)", rows.len(), rows.len() as f64 / load_seconds);
    // Statistics for the planner before anything is timed (autovacuum would take them later).
    sqlx::query("ANALYZE public.knowledge_buckets, public.knowledge_documents, public.knowledge_chunks")
        .execute(&admin)
        .await?;
    let ids: Vec<(Uuid, i32)> =
        sqlx::query_as("SELECT id, (metadata->>'row')::int FROM public.knowledge_chunks").fetch_all(&admin).await?;
    let app_options: PgConnectOptions = cluster.database_url(database).parse()?;
    let bench = Bench {
        app_options: app_options.username(login::APP_LOGIN),
        admin: admin.clone(),
        owner,
        model: model.clone(),
        first_bucket: buckets[0],
        rows: ids.into_iter().map(|(id, row)| (id, row as u32)).collect(),
        queries: data.queries.iter().map(|q| Vector::from(q.clone())).collect(),
        truth,
    };

    let mut runs = Vec::new();
    runs.push(spec_function(&bench).await?);
    for method in &args.methods {
        let (method, hnsw) = parse_method(method)?;
        let started = Instant::now();
        eprintln!("building the {} index...", method.as_str());
        let built = store::index::ensure_indexes_with(&admin, Some(method), hnsw).await?;
        let build_seconds = started.elapsed().as_secs_f64();
        let lists = built.builds.first().and_then(|b| b.lists);
        eprintln!("  built in {build_seconds:.1} s");
        let index = match lists {
            Some(lists) => format!("ivfflat lists={lists}"),
            None => format!("hnsw m={} ef_construction={}", hnsw.m, hnsw.ef_construction),
        };
        let (setting, sweep): (&str, Vec<u32>) = match method {
            IndexMethod::Ivfflat => (
                "kb.ivfflat_probes",
                [1, 2, 4, 8, 16, 32, 64].into_iter().filter(|p| *p <= lists.unwrap_or(1) as u32).collect(),
            ),
            IndexMethod::Hnsw => ("kb.hnsw_ef_search", vec![10, 20, 40, 80, 160, 320, 640, 1000]),
        };
        for value in sweep {
            let pool = bench.app_pool(&[(setting, value.to_string())]).await?;
            let short = setting.trim_start_matches("kb.").trim_start_matches(match method {
                IndexMethod::Ivfflat => "ivfflat_",
                IndexMethod::Hnsw => "hnsw_",
            });
            let mut run = sql_run(&bench, &pool, Filter::None, &[], args.seconds).await?;
            run.setting = format!("{index} {short}={value}");
            report(&run);
            runs.push(run);
            pool.close().await;
        }
        // kb's defaults: SQL, HTTP with the embedding, HTTP with the text; and under filters.
        let pool = bench.app_pool(&[]).await?;
        let mut run = sql_run(&bench, &pool, Filter::None, &args.clients, args.seconds).await?;
        run.setting = format!("{index} (kb default effort)");
        run.build_seconds = Some(build_seconds);
        report(&run);
        runs.push(run);
        for filter in [Filter::OnePercent, Filter::TenPercent] {
            let mut run = sql_run(&bench, &pool, filter, &args.clients, args.seconds).await?;
            run.setting = format!("{index} (kb default effort)");
            report(&run);
            runs.push(run);
        }
        for with_text in [false, true] {
            let mut run =
                http_run(&bench, &pool, embedder.clone(), data, with_text, &args.clients, args.seconds).await?;
            run.setting = format!("{index} (kb default effort)");
            report(&run);
            runs.push(run);
        }
        pool.close().await;
    }

    let out = json!({
        "machine": machine(),
        "rows": rows.len(),
        "queries": data.queries.len(),
        "k": K,
        "model": model,
        "derivation": derivation,
        "load": { "rows_per_second": rows.len() as f64 / load_seconds, "seconds": load_seconds },
        "runs": runs,
        "notes": [
            "kb-sql: search::nearest_as on the server's login as the owner under row level security, one transaction per query",
            "kb-http: POST /v1/search of an in-process server (embedding given); kb-http-text: the query text, embedded by the server's model",
            "spec-function: the spec's search_knowledge_chunks as written (a full scan), on the first 20 queries",
            "p50/p95/p99: one client, every query once; qps: that many clients for the run's seconds",
        ],
    });
    let path = args.out.join("kb.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "wrote {}, {} and {}",
        path.display(),
        args.out.join("vectors.npy").display(),
        args.out.join("queries.npy").display()
    );
    admin.close().await;
    Ok(())
}

/// `ivfflat`, `hnsw` (pgvector's m and ef_construction) or `hnsw:M:EF_CONSTRUCTION`.
fn parse_method(text: &str) -> anyhow::Result<(IndexMethod, HnswParams)> {
    let mut parts = text.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ivfflat"), None, None, None) => Ok((IndexMethod::Ivfflat, HnswParams::default())),
        (Some("hnsw"), None, None, None) => Ok((IndexMethod::Hnsw, HnswParams::default())),
        (Some("hnsw"), Some(m), Some(ef), None) => {
            let params = HnswParams { m: m.parse()?, ef_construction: ef.parse()? };
            Ok((IndexMethod::Hnsw, params))
        }
        _ => bail!("unknown index {text:?}: ivfflat, hnsw or hnsw:M:EF_CONSTRUCTION"),
    }
}

/// Writes the rows: BUCKETS buckets of the owner (the first ten of type `ten`), documents of
/// DOCUMENT_CHUNKS chunks, two writers at once. Returns the bucket ids.
async fn load(
    admin: &PgPool,
    owner: Uuid,
    model: &str,
    texts: &[String],
    rows: &[Vec<f32>],
    parents: &[u32],
) -> anyhow::Result<Vec<Uuid>> {
    let mut bucket_ids = Vec::with_capacity(BUCKETS);
    let mut conn = admin.acquire().await?;
    for b in 0..BUCKETS {
        let name = format!("bench-{b:02}");
        let new = buckets::NewBucket {
            name: &name,
            bucket_type: if b < 10 { "ten" } else { "rest" },
            campaign_id: None,
            embedding_model: model,
            created_by: owner,
        };
        bucket_ids.push(buckets::ensure_bucket(&mut conn, &new).await?.id);
    }
    drop(conn);
    // (bucket, its rows in order), cut into documents.
    let mut work = Vec::new();
    for (b, bucket) in bucket_ids.iter().enumerate() {
        let mine: Vec<usize> = (b..rows.len()).step_by(BUCKETS).collect();
        for (d, part) in mine.chunks(DOCUMENT_CHUNKS).enumerate() {
            work.push((*bucket, format!("bench-{b:02}-{d:04}.txt"), part.to_vec()));
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = rows.len();
    let write = |(bucket, path, part): (Uuid, String, Vec<usize>)| {
        let done = &done;
        async move {
            let chunks: Vec<NewChunk> = part
                .iter()
                .enumerate()
                .map(|(i, &row)| NewChunk {
                    chunk_index: i as i32,
                    content: texts[parents[row] as usize].clone(),
                    content_hash: format!("{row:064x}"),
                    token_count: 0,
                    embedding: Vector::from(rows[row].clone()),
                    metadata: json!({ "row": row }),
                })
                .collect();
            let mut tx = admin.begin().await?;
            let new = documents::NewDocument {
                bucket_id: bucket,
                title: &path,
                file_name: &path,
                file_type: Some("txt"),
                file_size: 0,
                upload_path: &path,
                content_hash: &path,
                created_by: owner,
            };
            let document = documents::insert_ready(&mut tx, &new).await?;
            store::chunks::replace_chunks(&mut tx, document, bucket, model, &chunks).await?;
            tx.commit().await?;
            let n = done.fetch_add(part.len(), std::sync::atomic::Ordering::Relaxed) + part.len();
            if n * 10 / total != (n - part.len()) * 10 / total {
                eprintln!("  {n}/{total} rows written");
            }
            anyhow::Ok(())
        }
    };
    use futures::StreamExt;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(work).map(write).buffer_unordered(2).collect().await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(bucket_ids)
}

/// The spec's function as written, as the owner, unfiltered.
async fn spec_function(bench: &Bench) -> anyhow::Result<Run> {
    sqlx::raw_sql(include_str!("../../../benches/spec_search.sql")).execute(&bench.admin).await?;
    let pool = bench.app_pool(&[]).await?;
    let mut times = Vec::new();
    let mut recall = 0.0;
    let n = SPEC_QUERIES.min(bench.queries.len());
    for (i, q) in bench.queries.iter().take(n).enumerate() {
        let mut tx = store::begin_as(&pool, bench.owner, Role::Authenticated).await?;
        let t = Instant::now();
        let got: Vec<Uuid> =
            sqlx::query_scalar("SELECT chunk_id FROM spec_search_knowledge_chunks($1, $2, NULL, NULL, 10, -1)")
                .bind(bench.owner)
                .bind(q)
                .fetch_all(&mut *tx)
                .await?;
        times.push(t.elapsed());
        tx.commit().await?;
        recall += bench.recall(Filter::None, i, &got);
    }
    pool.close().await;
    let run =
        summary("spec-function", "as written (full scan)", None, Some(recall / n as f64), times, Default::default());
    report(&run);
    Ok(run)
}

/// kb's SQL search: every query once on one client (recall, latency), then throughput at
/// each of `clients`.
async fn sql_run(bench: &Bench, pool: &PgPool, filter: Filter, clients: &[usize], seconds: u64) -> anyhow::Result<Run> {
    let request = bench.request(filter);
    let options = SearchOptions::default();
    let search = |i: usize| {
        let request = &request;
        let options = &options;
        async move {
            let hits = search::nearest_as(
                pool,
                bench.owner,
                Role::Authenticated,
                &bench.model,
                &bench.queries[i],
                request,
                options,
            )
            .await?;
            anyhow::Ok(hits.into_iter().map(|h| h.chunk_id).collect::<Vec<Uuid>>())
        }
    };
    let (recall, times) = once_each(bench, filter, &search).await?;
    let qps = throughput(bench.queries.len(), clients, Duration::from_secs(seconds), &search).await?;
    Ok(summary("kb-sql", "", filter.percent(), Some(recall), times, qps))
}

/// kb's HTTP endpoint, in process on a loopback port, with the embedding or the text.
async fn http_run(
    bench: &Bench,
    pool: &PgPool,
    embedder: Arc<dyn crate::embed::Embedder>,
    data: &Dataset,
    with_text: bool,
    clients: &[usize],
    seconds: u64,
) -> anyhow::Result<Run> {
    let secret = Uuid::new_v4().simple().to_string().repeat(2);
    let keys = JwtKeys::new(secret.as_bytes())?;
    let token = keys.mint(Some(bench.owner), Role::Authenticated, Duration::from_secs(3600))?;
    let state = AppState::new(pool.clone(), embedder, JwtKeys::new(secret.as_bytes())?, Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/search", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let search = |i: usize| {
        let body = if with_text {
            json!({ "query": data.query_texts[i], "limit": K, "threshold": -1.0 })
        } else {
            json!({ "embedding": bench.queries[i].as_slice(), "limit": K, "threshold": -1.0 })
        };
        let (client, url, token) = (&client, &url, &token);
        async move {
            let response = client.post(url).bearer_auth(token).json(&body).send().await?;
            if !response.status().is_success() {
                bail!("search answered {}: {}", response.status(), response.text().await.unwrap_or_default());
            }
            let body: serde_json::Value = response.json().await?;
            let ids = body["hits"].as_array().map(Vec::as_slice).unwrap_or_default();
            anyhow::Ok(ids.iter().filter_map(|h| h["chunk_id"].as_str()?.parse().ok()).collect::<Vec<Uuid>>())
        }
    };
    let (recall, times) = once_each(bench, Filter::None, &search).await?;
    let qps = throughput(bench.queries.len(), clients, Duration::from_secs(seconds), &search).await?;
    let _ = stop.send(());
    server.await??;
    let engine = if with_text { "kb-http-text" } else { "kb-http" };
    Ok(summary(engine, "", None, Some(recall), times, qps))
}

/// Every query once, one at a time: mean recall@K and each query's time.
async fn once_each<F, Fut>(bench: &Bench, filter: Filter, search: &F) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Uuid>>>,
{
    let mut times = Vec::with_capacity(bench.queries.len());
    let mut recall = 0.0;
    for i in 0..bench.queries.len() {
        let t = Instant::now();
        let got = search(i).await?;
        times.push(t.elapsed());
        recall += bench.recall(filter, i, &got);
    }
    Ok((recall / bench.queries.len() as f64, times))
}

/// Queries per second with each number of concurrent clients, each client going through the
/// queries from its own offset for `length`.
async fn throughput<F, Fut>(
    queries: usize,
    clients: &[usize],
    length: Duration,
    search: &F,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Uuid>>>,
{
    let mut out = serde_json::Map::new();
    for &n in clients {
        let deadline = Instant::now() + length;
        let started = Instant::now();
        let one = |c: usize| async move {
            let mut done = 0usize;
            let mut i = c * queries / n.max(1);
            while Instant::now() < deadline {
                search(i % queries).await?;
                done += 1;
                i += 1;
            }
            anyhow::Ok(done)
        };
        let counts = futures::future::try_join_all((0..n).map(one)).await?;
        let qps = counts.iter().sum::<usize>() as f64 / started.elapsed().as_secs_f64();
        out.insert(n.to_string(), json!((qps * 10.0).round() / 10.0));
    }
    Ok(out)
}

fn summary(
    engine: &str,
    setting: &str,
    filter_percent: Option<u32>,
    recall: Option<f64>,
    mut times: Vec<Duration>,
    qps: serde_json::Map<String, serde_json::Value>,
) -> Run {
    times.sort();
    let at = |p: f64| {
        let i = ((times.len().max(1) - 1) as f64 * p).round() as usize;
        times.get(i).map_or(0.0, |t| (t.as_secs_f64() * 1e5).round() / 100.0)
    };
    Run {
        engine: engine.to_string(),
        setting: setting.to_string(),
        filter_percent,
        build_seconds: None,
        recall: recall.map(|r| (r * 10_000.0).round() / 10_000.0),
        p50_ms: at(0.5),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        qps,
    }
}

fn report(run: &Run) {
    let filter = run.filter_percent.map(|p| format!(" filter {p}%")).unwrap_or_default();
    let qps: Vec<String> = run.qps.iter().map(|(c, q)| format!("{c}:{q}")).collect();
    eprintln!(
        "{:<14} {:<48} recall {:>6} p50 {:>7.2} p95 {:>7.2} p99 {:>7.2} ms  qps {}{filter}",
        run.engine,
        run.setting,
        run.recall.map_or("-".into(), |r| format!("{r:.3}")),
        run.p50_ms,
        run.p95_ms,
        run.p99_ms,
        if qps.is_empty() { "-".to_string() } else { qps.join(" ") }
    );
}

fn mean_cosine(truth: &[Vec<(u32, f32)>], k: usize) -> f64 {
    let values: Vec<f64> = truth.iter().flat_map(|t| t.iter().take(k).map(|x| x.1 as f64)).collect();
    (values.iter().sum::<f64>() / values.len().max(1) as f64 * 10_000.0).round() / 10_000.0
}

/// A model name as a directory name.
fn slug(model: &str) -> String {
    model.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
    });
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "kb": env!("CARGO_PKG_VERSION"),
    })
}

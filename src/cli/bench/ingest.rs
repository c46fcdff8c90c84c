//! `kb bench ingest`: end-to-end ingestion throughput (documents/s, chunks/s, MB/s) and the
//! re-ingest of the unchanged corpus, with three embedders:
//!
//! - `zero`: a bench-only embedder that returns vectors at no cost, run in this process: the
//!   pipeline's own overhead (extract, chunk, hash, dedup, write), never an embedding figure;
//! - `stand-in`: an OpenAI-compatible server in this process that answers after
//!   `--latency-ms`, used by a child `kb ingest` exactly as users run it (1536-d vectors of
//!   text-embedding-3-small);
//! - `local`: a child `kb ingest` with the configured local model.
//!
//! Then ingestion throughput by worker count: the documents are queued, and 1, 2, 4 ... `kb
//! worker` processes (one worker each, the stand-in embedder) drain the queue of the
//! embedded cluster's database. The child processes' peak memory (VmHWM) is sampled every
//! 50 ms. Last, `kb serve` under load: uploads over HTTP while clients search, with the
//! server's peak memory. Every run has a bucket of its own in the data dir's database, deleted afterwards:
//! run it on a data dir of its own (`KB_DATA_DIR=/tmp/kb-bench`), where no `kb serve` runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_openai::types::embeddings::{
    CreateEmbeddingRequest, CreateEmbeddingResponse, Embedding, EmbeddingInput, EmbeddingUsage,
};
use axum::routing::post;
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::chunk::Tokenizer;
use crate::config::Config;
use crate::embed::{EmbedError, Embedder};
use crate::ingest::{Silent, WorkerSettings, collect};
use crate::runtime;
use crate::store::{self, Role, buckets, documents, users};

/// The OpenAI model the stand-in plays, with its native vector length.
const STAND_IN_MODEL: &str = "text-embedding-3-small";
const STAND_IN_DIMENSIONS: usize = 1536;

#[derive(Debug, clap::Args)]
pub struct IngestBenchArgs {
    /// Files or directories to ingest [default: sample_docs]
    #[arg(long = "corpus")]
    pub corpus: Vec<PathBuf>,
    /// Copies of each text document (each distinct: a copy marker starts every paragraph),
    /// so that a run is long enough to measure; PDFs go in once.
    #[arg(long, default_value_t = 12)]
    pub copies: usize,
    /// Embedders measured: zero (overhead only), stand-in, local.
    #[arg(long, value_delimiter = ',', default_value = "zero,stand-in,local")]
    pub embedders: Vec<String>,
    /// Milliseconds the stand-in takes to answer one request (OpenAI's are ~100-300 ms).
    #[arg(long, default_value_t = 150)]
    pub latency_ms: u64,
    /// `kb worker` processes of each scaling run (stand-in embedder); 0 for none.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub workers: Vec<usize>,
    /// Search clients of the `kb serve` run (the server's peak memory under load); 0 skips it.
    #[arg(long, default_value_t = 16)]
    pub serve_clients: usize,
    /// Where the results (`ingest.json`) go.
    #[arg(long, default_value = "target/bench-ingest")]
    pub out: PathBuf,
}

pub async fn run(config: &Config, args: IngestBenchArgs) -> anyhow::Result<()> {
    if config.database_url.is_some() {
        bail!(
            "kb bench ingest runs on an embedded cluster (its `kb ingest` and `kb worker` children too): unset DATABASE_URL"
        );
    }
    let corpus = std::env::temp_dir().join(format!("kb-bench-ingest-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&corpus)?;
    let result = measure(config, &args, &corpus).await;
    let _ = std::fs::remove_dir_all(&corpus);
    result
}

async fn measure(config: &Config, args: &IngestBenchArgs, corpus: &Path) -> anyhow::Result<()> {
    let sources = if args.corpus.is_empty() { vec![PathBuf::from("sample_docs")] } else { args.corpus.clone() };
    let (files, bytes) = copy_corpus(&sources, args.copies, corpus)?;
    eprintln!("corpus: {files} files, {:.2} MB in {}", bytes as f64 / 1e6, corpus.display());
    let admin = runtime::connect(config).await?;
    let stand_in = StandIn::start(Duration::from_millis(args.latency_ms)).await?;
    let mut runs = Vec::new();
    for embedder in &args.embedders {
        let run = match embedder.as_str() {
            "zero" => zero(config, &admin, corpus, bytes).await?,
            "stand-in" => child_ingest(config, &admin, corpus, bytes, Some(&stand_in)).await?,
            "local" => child_ingest(config, &admin, corpus, bytes, None).await?,
            other => bail!("unknown embedder {other:?} (zero, stand-in, local)"),
        };
        eprintln!("{}", serde_json::to_string(&run)?);
        runs.push(run);
    }
    let mut scaling = Vec::new();
    for &workers in args.workers.iter().filter(|&&w| w > 0) {
        let run = worker_scaling(config, &admin, corpus, workers, &stand_in).await?;
        eprintln!("{}", serde_json::to_string(&run)?);
        scaling.push(run);
    }
    let serve = if args.serve_clients > 0 {
        let run = serve_under_load(config, &admin, corpus, args.serve_clients).await?;
        eprintln!("{}", serde_json::to_string(&run)?);
        Some(run)
    } else {
        None
    };
    let out = json!({
        "corpus": { "files": files, "bytes": bytes, "copies": args.copies },
        "serve": serve,
        "stand_in_latency_ms": args.latency_ms,
        "runs": runs,
        "workers": scaling,
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) },
    });
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("ingest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    eprintln!("wrote {}", path.display());
    admin.close().await;
    Ok(())
}

/// Copies the sources into `to`: every text document `copies` times, a copy marker starting
/// each paragraph so that no chunk is a duplicate; PDFs once. Returns (files, bytes).
fn copy_corpus(sources: &[PathBuf], copies: usize, to: &Path) -> anyhow::Result<(usize, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for source in collect(sources).context("reading the corpus")? {
        let path = &source.path;
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let is_pdf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf"));
        let original = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for copy in 0..if is_pdf { 1 } else { copies.max(1) } {
            let body = if is_pdf {
                original.clone()
            } else {
                String::from_utf8_lossy(&original).replace("\n\n", &format!("\n\ncopy {copy}. ")).into_bytes()
            };
            bytes += body.len() as u64;
            std::fs::write(to.join(format!("{copy}-{files}-{name}")), body)?;
            files += 1;
        }
    }
    Ok((files, bytes))
}

/// One run's figures.
#[derive(Debug, serde::Serialize)]
struct Run {
    embedder: String,
    documents: usize,
    chunks: usize,
    seconds: f64,
    documents_per_second: f64,
    chunks_per_second: f64,
    megabytes_per_second: f64,
    reingest_seconds: f64,
    reingest_embedded: usize,
    reingest_percent_of_first: f64,
    /// Peak resident memory of the `kb ingest` process (MiB), where it was a child.
    peak_memory_mib: Option<f64>,
}

fn run_of(embedder: &str, first: &serde_json::Value, second: &serde_json::Value, bytes: u64, peak: Option<u64>) -> Run {
    let seconds = first["seconds"].as_f64().unwrap_or(0.0).max(1e-9);
    let chunks = first["chunks_written"].as_u64().unwrap_or(0) as usize;
    let documents = first["documents_ready"].as_u64().unwrap_or(0) as usize;
    let again = second["seconds"].as_f64().unwrap_or(0.0);
    Run {
        embedder: embedder.to_string(),
        documents,
        chunks,
        seconds: round(seconds),
        documents_per_second: round(documents as f64 / seconds),
        chunks_per_second: round(chunks as f64 / seconds),
        megabytes_per_second: round(bytes as f64 / 1e6 / seconds),
        reingest_seconds: round(again),
        reingest_embedded: second["embeddings_computed"].as_u64().unwrap_or(0) as usize,
        reingest_percent_of_first: round(100.0 * again / seconds),
        peak_memory_mib: peak.map(|kib| round(kib as f64 / 1024.0)),
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The pipeline in this process with the zero-cost embedder, twice.
async fn zero(config: &Config, admin: &sqlx::PgPool, corpus: &Path, bytes: u64) -> anyhow::Result<Run> {
    let local = runtime::load_embedder(config).await?;
    let embedder: Arc<dyn Embedder> = Arc::new(ZeroEmbedder {
        tokenizer: local.tokenizer(),
        dimensions: local.dimensions(),
        max_input_tokens: local.max_input_tokens(),
    });
    drop(local);
    runtime::register_model(admin, embedder.as_ref()).await?;
    let owner = users::ensure_user(&mut *admin.acquire().await?, "bench@kb.local").await?;
    let bucket = new_bucket(admin, owner, embedder.model()).await?;
    let pipeline = runtime::pipeline(config, admin.clone(), embedder).await?;
    let settings = WorkerSettings::new(Duration::from_secs(60), config.job_timeout());
    let first = pipeline.ingest(owner, &bucket, collect(&[corpus.to_path_buf()])?, &settings, &Silent).await;
    let second = pipeline.ingest(owner, &bucket, collect(&[corpus.to_path_buf()])?, &settings, &Silent).await;
    delete_bucket(admin, bucket.id).await?;
    if first.documents_failed > 0 {
        bail!(
            "{} documents failed: {:?}",
            first.documents_failed,
            first.documents.iter().find(|d| matches!(d.outcome, crate::ingest::Outcome::Failed { .. }))
        );
    }
    Ok(run_of("zero (overhead only)", &serde_json::to_value(&first)?, &serde_json::to_value(&second)?, bytes, None))
}

/// `kb ingest --json` as a child process, twice (the second finds everything unchanged).
async fn child_ingest(
    config: &Config,
    admin: &sqlx::PgPool,
    corpus: &Path,
    bytes: u64,
    stand_in: Option<&StandIn>,
) -> anyhow::Result<Run> {
    let bucket = format!("bench-ingest-{}", Uuid::new_v4().simple());
    let mut summaries = Vec::new();
    let mut peak = 0;
    for _ in 0..2 {
        let mut command = kb_command(config, stand_in)?;
        command.args(["ingest", "--json", "--bucket", &bucket]).arg(corpus);
        let (out, child_peak) = run_sampled(command).await?;
        peak = peak.max(child_peak);
        let summary: serde_json::Value = serde_json::from_slice(&out).context("kb ingest --json printed no summary")?;
        summaries.push(summary);
    }
    let id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM public.knowledge_buckets WHERE name = $1")
        .bind(&bucket)
        .fetch_optional(admin)
        .await?;
    if let Some(id) = id {
        delete_bucket(admin, id).await?;
    }
    let name = if stand_in.is_some() { "stand-in (OpenAI-compatible, kb ingest)" } else { "local model (kb ingest)" };
    Ok(run_of(name, &summaries[0], &summaries[1], bytes, Some(peak)))
}

/// The corpus queued in a new bucket, then `workers` `kb worker` processes until the queue
/// is empty.
async fn worker_scaling(
    config: &Config,
    admin: &sqlx::PgPool,
    corpus: &Path,
    workers: usize,
    stand_in: &StandIn,
) -> anyhow::Result<serde_json::Value> {
    let owner = users::ensure_user(&mut *admin.acquire().await?, "bench@kb.local").await?;
    store::index::register_model(&mut *admin.acquire().await?, STAND_IN_MODEL, STAND_IN_DIMENSIONS).await?;
    let bucket = new_bucket(admin, owner, STAND_IN_MODEL).await?;
    let sources = collect(&[corpus.to_path_buf()])?;
    for source in &sources {
        let body = std::fs::read(&source.path)?;
        let key = source.path.display().to_string();
        let mut tx = store::begin_as(admin, owner, Role::Authenticated).await?;
        let submission = documents::Submission {
            bucket_id: bucket.id,
            key: &key,
            file_name: &source.file_name(),
            file_type: source.format.map(|f| f.as_str()),
            body: &body,
            title: None,
        };
        documents::submit(&mut tx, &submission).await?;
        tx.commit().await?;
    }
    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..workers {
        let mut command = kb_command(config, Some(stand_in))?;
        command.args(["worker", "--workers", "1"]).stdout(Stdio::null()).stderr(Stdio::null());
        children.push(command.spawn().context("starting kb worker")?);
    }
    let mut peak = 0;
    let outcome = loop {
        for child in &children {
            if let Some(pid) = child.id() {
                peak = peak.max(vm_hwm(pid));
            }
        }
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM public.ingest_jobs j JOIN public.knowledge_documents d ON d.id = j.document_id
             WHERE d.bucket_id = $1 AND j.status IN ('queued', 'running')",
        )
        .bind(bucket.id)
        .fetch_one(admin)
        .await?;
        if pending == 0 {
            break Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            break Err(anyhow::anyhow!("the queue was not drained in 30 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for child in &mut children {
        let _ = child.kill().await;
    }
    let seconds = outcome?;
    let (ready, chunks) = ready_and_chunks(admin, bucket.id).await?;
    delete_bucket(admin, bucket.id).await?;
    Ok(json!({
        "worker_processes": workers,
        "documents_ready": ready,
        "documents": sources.len(),
        "chunks": chunks,
        "seconds": round(seconds),
        "chunks_per_second": round(chunks as f64 / seconds),
        "peak_memory_mib_per_worker": round(peak as f64 / 1024.0),
    }))
}

/// `kb serve` under load, as users run it (the local model, its in-process workers): the
/// corpus's text documents uploaded over HTTP, 8 at a time, while `clients` clients search by
/// text until every document is ready. The server's peak memory (VmHWM, sampled every 50
/// ms), the time to ready, and the searches answered meanwhile with their latency.
async fn serve_under_load(
    config: &Config,
    admin: &sqlx::PgPool,
    corpus: &Path,
    clients: usize,
) -> anyhow::Result<serde_json::Value> {
    let texts: Vec<(String, String)> = collect(&[corpus.to_path_buf()])?
        .into_iter()
        .filter(|s| s.path.extension().is_some_and(|e| e != "pdf"))
        .map(|s| Ok((s.file_name(), std::fs::read_to_string(&s.path)?)))
        .collect::<anyhow::Result<_>>()?;
    // A query per paragraph start: real phrases of the corpus.
    let queries: Vec<String> = texts
        .iter()
        .flat_map(|(_, text)| text.split("\n\n").filter_map(|p| p.get(..p.len().min(120))).map(str::to_string))
        .filter(|q| q.split_whitespace().count() > 4)
        .take(64)
        .collect();
    if queries.is_empty() {
        bail!("the corpus has no text documents to upload");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let mut command = kb_command(config, None)?;
    command
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--jwt-secret", &secret])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut server = command.spawn().context("starting kb serve")?;
    let pid = server.id().context("kb serve's pid")?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        if let Some(status) = server.try_wait()? {
            bail!("kb serve exited with {status}");
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("kb serve was not ready in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_mib = vm_hwm(pid) as f64 / 1024.0;

    let owner = users::ensure_user(&mut *admin.acquire().await?, "bench@kb.local").await?;
    let token = crate::http::auth::JwtKeys::new(secret.as_bytes())?.mint(
        Some(owner),
        Role::Authenticated,
        Duration::from_secs(3600),
    )?;
    let name = format!("bench-serve-{}", Uuid::new_v4().simple());
    let bucket: serde_json::Value = http
        .post(format!("{base}/v1/buckets"))
        .bearer_auth(&token)
        .json(&json!({ "name": name, "bucket_type": "general" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let bucket_id: Uuid = bucket["id"].as_str().and_then(|id| id.parse().ok()).context("bucket id")?;

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searchers: Vec<_> = (0..clients)
        .map(|client| {
            let (http, base, token, done, queries) =
                (http.clone(), base.clone(), token.clone(), done.clone(), queries.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut errors = 0usize;
                let mut i = client;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let query = &queries[i % queries.len()];
                    i += clients;
                    let sent = Instant::now();
                    let answer = http
                        .post(format!("{base}/v1/search"))
                        .bearer_auth(&token)
                        .json(&json!({ "query": query, "limit": 10 }))
                        .send()
                        .await;
                    let answered = match answer {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if answered {
                        times.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (times, errors)
            })
        })
        .collect();

    let started = Instant::now();
    let uploads = futures::stream::iter(texts.iter().map(|(file_name, content)| {
        let request = http
            .post(format!("{base}/v1/buckets/{bucket_id}/documents"))
            .bearer_auth(&token)
            .json(&json!({ "file_name": file_name, "content": content }));
        async move { request.send().await?.error_for_status().map(|_| ()) }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    let failed_uploads = uploads.iter().filter(|u| u.is_err()).count();
    let mut peak = 0;
    let outcome = loop {
        peak = peak.max(vm_hwm(pid));
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM public.knowledge_documents WHERE bucket_id = $1 AND status NOT IN ('ready', 'failed')",
        )
        .bind(bucket_id)
        .fetch_one(admin)
        .await?;
        if pending == 0 {
            break Ok(started.elapsed().as_secs_f64());
        }
        if let Some(status) = server.try_wait()? {
            break Err(anyhow::anyhow!("kb serve exited with {status} under load"));
        }
        if started.elapsed() > Duration::from_secs(1800) {
            break Err(anyhow::anyhow!("the uploads were not ready in 30 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut times = Vec::new();
    let mut search_errors = 0;
    for searcher in searchers {
        let (t, e) = searcher.await?;
        times.extend(t);
        search_errors += e;
    }
    peak = peak.max(vm_hwm(pid));
    let _ = server.kill().await;
    let seconds = outcome?;
    let (ready, chunks) = ready_and_chunks(admin, bucket_id).await?;
    delete_bucket(admin, bucket_id).await?;
    times.sort();
    let ms = |p: f64| {
        times.get(((times.len().max(1) - 1) as f64 * p).round() as usize).map(|t| round(t.as_secs_f64() * 1e3))
    };
    Ok(json!({
        "clients": clients,
        "documents": texts.len(),
        "failed_uploads": failed_uploads,
        "documents_ready": ready,
        "chunks": chunks,
        "seconds": round(seconds),
        "chunks_per_second": round(chunks as f64 / seconds),
        "searches": times.len(),
        "search_errors": search_errors,
        "searches_per_second": round(times.len() as f64 / seconds),
        "search_p50_ms": ms(0.5),
        "search_p99_ms": ms(0.99),
        "peak_memory_mib_idle": round(idle_mib),
        "peak_memory_mib": round(peak as f64 / 1024.0),
    }))
}

/// A bucket's documents ready and its chunks.
async fn ready_and_chunks(admin: &sqlx::PgPool, bucket: Uuid) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(DISTINCT d.id) FILTER (WHERE d.status = 'ready'), count(c.id)
         FROM public.knowledge_documents d LEFT JOIN public.knowledge_chunks c ON c.document_id = d.id
         WHERE d.bucket_id = $1",
    )
    .bind(bucket)
    .fetch_one(admin)
    .await?)
}

async fn new_bucket(admin: &sqlx::PgPool, owner: Uuid, model: &str) -> anyhow::Result<store::Bucket> {
    let name = format!("bench-ingest-{}", Uuid::new_v4().simple());
    let mut tx = store::begin_as(admin, owner, Role::Authenticated).await?;
    let new = buckets::NewBucket {
        name: &name,
        bucket_type: "general",
        campaign_id: None,
        embedding_model: model,
        created_by: owner,
    };
    let bucket = buckets::ensure_bucket(&mut tx, &new).await?;
    tx.commit().await?;
    Ok(bucket)
}

async fn delete_bucket(admin: &sqlx::PgPool, id: Uuid) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM public.knowledge_buckets WHERE id = $1").bind(id).execute(admin).await?;
    Ok(())
}

/// A `kb` child on the same data dir, with the stand-in as its embedder when given.
fn kb_command(config: &Config, stand_in: Option<&StandIn>) -> anyhow::Result<tokio::process::Command> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.env("KB_DATA_DIR", config.data_dir()).env("KB_LOG", "warn").env_remove("DATABASE_URL").stdin(Stdio::null());
    match stand_in {
        Some(s) => {
            command
                .env("OPENAI_API_KEY", "bench")
                .env("OPENAI_BASE_URL", &s.base_url)
                .env("KB_OPENAI_MODEL", STAND_IN_MODEL);
        }
        None => {
            command.env_remove("OPENAI_API_KEY");
        }
    }
    Ok(command)
}

/// Runs the command to its end, sampling its peak memory; returns its stdout and the peak (KiB).
async fn run_sampled(mut command: tokio::process::Command) -> anyhow::Result<(Vec<u8>, u64)> {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("starting kb")?;
    let mut stdout = child.stdout.take().context("child stdout")?;
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out).await.map(|_| out)
    });
    let mut peak = 0;
    let status = loop {
        if let Some(pid) = child.id() {
            peak = peak.max(vm_hwm(pid));
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = reader.await??;
    // 0: all in; 2: some documents failed (the summary says which).
    if !matches!(status.code(), Some(0 | 2)) {
        bail!("kb exited with {status}");
    }
    Ok((out, peak))
}

/// The process's peak resident memory so far (KiB), 0 when unknown.
fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Bench only: vectors at no cost (a unit vector picked by the text's hash), so that a run
/// measures the pipeline around the model. Its figures are overhead, never embedding speed.
struct ZeroEmbedder {
    tokenizer: Tokenizer,
    dimensions: usize,
    max_input_tokens: usize,
}

#[async_trait::async_trait]
impl Embedder for ZeroEmbedder {
    fn model(&self) -> &str {
        "bench/zero-cost"
    }
    fn dimensions(&self) -> usize {
        self.dimensions
    }
    fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }
    fn tokenizer(&self) -> Tokenizer {
        self.tokenizer.clone()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| unit_vector(t, self.dimensions)).collect())
    }
}

/// A unit vector along the axis the text's sha256 picks.
fn unit_vector(text: &str, dimensions: usize) -> Vec<f32> {
    let hash = Sha256::digest(text.as_bytes());
    let axis = u64::from_le_bytes([hash[0], hash[1], hash[2], hash[3], hash[4], hash[5], hash[6], hash[7]]) as usize
        % dimensions;
    let mut v = vec![0.0; dimensions];
    v[axis] = 1.0;
    v
}

/// An OpenAI-compatible `POST /v1/embeddings` on a loopback port that answers after a fixed
/// latency with 1536-d unit vectors.
struct StandIn {
    base_url: String,
}

impl StandIn {
    async fn start(latency: Duration) -> anyhow::Result<StandIn> {
        let app = Router::new().route(
            "/v1/embeddings",
            post(move |Json(request): Json<CreateEmbeddingRequest>| async move {
                tokio::time::sleep(latency).await;
                let inputs = match request.input {
                    EmbeddingInput::StringArray(inputs) => inputs,
                    EmbeddingInput::String(input) => vec![input],
                    _ => Vec::new(),
                };
                let data = inputs
                    .iter()
                    .enumerate()
                    .map(|(i, text)| Embedding {
                        index: i as u32,
                        object: "embedding".into(),
                        embedding: unit_vector(text, STAND_IN_DIMENSIONS),
                    })
                    .collect();
                Json(CreateEmbeddingResponse {
                    object: "list".into(),
                    model: request.model,
                    data,
                    usage: EmbeddingUsage { prompt_tokens: 0, total_tokens: 0 },
                })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}/v1", listener.local_addr()?);
        tokio::spawn(
            async move { axum::serve(listener, app.layer(axum::extract::DefaultBodyLimit::max(64 << 20))).await },
        );
        Ok(StandIn { base_url })
    }
}

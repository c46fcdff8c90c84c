//! The `kb` command line: parses arguments into commands, each with a `run`. Commands call
//! `ingest`, `search` and `store` through `runtime`'s wiring; they hold no SQL and no pipeline
//! logic of their own. Clap types live here only.

pub mod bench;
pub mod context;
pub mod db;
pub mod eval;
pub mod mcp;
pub mod serve;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::Config;
use crate::embed::Embedder;
use crate::ingest::{self, DocumentReport, Outcome, Pipeline, Progress, WorkerSettings};
use crate::runtime;
use crate::search::{self, GroupBy, Mode, SearchOptions, SearchRequest};
use crate::store::{self, Role, buckets, index::IndexMethod, users};

/// kb: ingest documents into PostgreSQL + pgvector and search them.
#[derive(Debug, clap::Parser)]
#[command(name = "kb", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply database migrations (also done by every other command).
    Migrate,
    /// Ingest files and directories (recursively) into a bucket.
    Ingest(IngestArgs),
    /// Search the knowledge base.
    Search(SearchArgs),
    /// The best passages for a question within a token budget, with citations (for a prompt).
    Context(context::ContextArgs),
    /// Build or rebuild the vector indexes.
    Reindex(ReindexArgs),
    /// The database: the embedded cluster, backups, monitoring, maintenance, retention.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Serve the HTTP API, with ingestion workers.
    Serve(serve::ServeArgs),
    /// Run ingestion workers only (against the same database as a server).
    Worker(serve::WorkerArgs),
    /// Manage users (as the database owner).
    #[command(subcommand)]
    User(serve::UserCommand),
    /// Print a signed JWT for a user, for development.
    Token(serve::TokenArgs),
    /// Measure retrieval quality on a BEIR-layout collection (nDCG@10, recall, MRR per mode).
    Eval(eval::EvalArgs),
    /// Serve kb to an AI agent over the Model Context Protocol on stdin/stdout (as the local owner).
    Mcp(mcp::McpArgs),
    /// Benchmarks: `kb bench search` (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Files or directories to ingest (.txt, .md, .html, .pdf).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Bucket to ingest into; created if it does not exist.
    #[arg(long)]
    pub bucket: String,
    /// Type of a new bucket (for example brand, campaign, product).
    #[arg(long, default_value = "general")]
    pub bucket_type: String,
    /// Campaign a new bucket belongs to.
    #[arg(long)]
    pub campaign: Option<Uuid>,
    /// Print the summary as JSON (see README: "JSON output").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The question or keywords.
    pub query: String,
    /// Only this bucket.
    #[arg(long)]
    pub bucket: Option<String>,
    /// Only buckets of this type.
    #[arg(long)]
    pub bucket_type: Option<String>,
    /// Only buckets of this campaign.
    #[arg(long)]
    pub campaign: Option<Uuid>,
    /// Number of results.
    #[arg(long, default_value_t = 5)]
    pub limit: u32,
    /// Minimum cosine similarity of a result.
    #[arg(long, default_value_t = 0.2)]
    pub threshold: f64,
    /// Ranking: vector similarity, BM25 (lexical) alone, or both fused (hybrid).
    #[arg(long, value_enum, default_value_t = ModeArg::Vector)]
    pub mode: ModeArg,
    /// Hybrid: weight of the vector score, 0 (BM25 only) to 1 (vector only); default 0.5.
    #[arg(long, value_parser = eval::parse_weight)]
    pub alpha: Option<f64>,
    /// `document`: only the best chunk of each document.
    #[arg(long, value_enum, default_value_t = GroupByArg::Chunk)]
    pub group_by: GroupByArg,
    /// Print the results as JSON (see README: "JSON output").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReindexArgs {
    /// Index method; without it, a model without an index gets hnsw and an outgrown ivfflat index is rebuilt.
    #[arg(long, value_enum)]
    pub method: Option<IndexMethodArg>,
}

/// `--mode` of `kb search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Vector,
    Hybrid,
    Lexical,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Vector => Mode::Vector,
            ModeArg::Hybrid => Mode::Hybrid,
            ModeArg::Lexical => Mode::Lexical,
        }
    }
}

/// `--group-by` of `kb search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupByArg {
    Chunk,
    Document,
}

impl From<GroupByArg> for GroupBy {
    fn from(group_by: GroupByArg) -> GroupBy {
        match group_by {
            GroupByArg::Chunk => GroupBy::Chunk,
            GroupByArg::Document => GroupBy::Document,
        }
    }
}

/// `--method` of `kb reindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexMethodArg {
    Ivfflat,
    Hnsw,
}

impl From<IndexMethodArg> for IndexMethod {
    fn from(method: IndexMethodArg) -> IndexMethod {
        match method {
            IndexMethodArg::Ivfflat => IndexMethod::Ivfflat,
            IndexMethodArg::Hnsw => IndexMethod::Hnsw,
        }
    }
}

/// The lease `kb ingest` holds on the jobs it runs: were it killed, a server's workers would
/// take them over after this long.
const CLI_JOB_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// Exit code of `kb ingest` when some documents failed (the others are in; see the summary).
pub const EXIT_DOCUMENTS_FAILED: u8 = 2;
/// Exit code of `kb ingest` and `kb reindex` when a vector index could not be built: the
/// documents are in and searchable (by exact scan), but `kb reindex` should be run.
pub const EXIT_INDEX_FAILED: u8 = 3;

impl Cli {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let config = self.config;
        match self.command {
            Command::Migrate => {
                runtime::connect(&config).await?;
                println!("migrations applied");
                Ok(ExitCode::SUCCESS)
            }
            Command::Ingest(args) => run_ingest(&config, args).await,
            Command::Search(args) => run_search(&config, args).await.map(|()| ExitCode::SUCCESS),
            Command::Context(args) => context::run(&config, args).await.map(|()| ExitCode::SUCCESS),
            Command::Reindex(args) => {
                let pool = runtime::connect(&config).await?;
                let done = store::index::ensure_indexes(&pool, args.method.map(IndexMethod::from))
                    .await
                    .context("building vector indexes")?;
                if done.builds.is_empty() && done.failures.is_empty() {
                    println!("vector indexes are up to date");
                }
                for b in &done.builds {
                    println!(
                        "{}: {} index over {} chunks (lists: {:?}) in {} s",
                        b.model, b.method, b.rows, b.lists, b.seconds
                    );
                }
                for f in &done.failures {
                    eprintln!("warning: the vector index of {} could not be built: {}", f.model, f.error);
                }
                Ok(if done.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INDEX_FAILED) })
            }
            Command::Db(command) => db::run(&config, command).await,
            Command::Serve(args) => serve::serve(&config, args).await.map(|()| ExitCode::SUCCESS),
            Command::Worker(args) => serve::worker(&config, args).await.map(|()| ExitCode::SUCCESS),
            Command::User(command) => serve::user(&config, command).await.map(|()| ExitCode::SUCCESS),
            Command::Token(args) => serve::token(&config, args).await.map(|()| ExitCode::SUCCESS),
            Command::Eval(args) => eval::run(&config, args).await.map(|()| ExitCode::SUCCESS),
            Command::Mcp(args) => mcp::run(&config, args).await.map(|()| ExitCode::SUCCESS),
            Command::Bench(command) => bench::run(&config, command).await.map(|()| ExitCode::SUCCESS),
        }
    }
}

/// The local owner the CLI acts as, and the embedding model registered for its buckets.
async fn owner(pool: &PgPool, embedder: &dyn Embedder) -> anyhow::Result<Uuid> {
    let mut conn = pool.acquire().await?;
    let owner = users::ensure_user(&mut conn, users::LOCAL_OWNER_EMAIL).await.context("creating the local owner")?;
    store::index::register_model(&mut conn, embedder.model(), embedder.dimensions()).await?;
    Ok(owner)
}

async fn run_ingest(config: &Config, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let sources = ingest::collect(&args.paths)?;
    if sources.is_empty() {
        bail!("no .txt, .md, .html or .pdf files found under {:?}", args.paths);
    }
    let pool = runtime::connect(config).await?;
    let embedder = runtime::load_embedder(config).await?;
    let budget = config.budget(embedder.max_input_tokens())?;
    let owner = owner(&pool, embedder.as_ref()).await?;

    let bucket = {
        let mut tx = store::begin_as(&pool, owner, Role::Authenticated).await?;
        let new = buckets::NewBucket {
            name: &args.bucket,
            bucket_type: &args.bucket_type,
            campaign_id: args.campaign,
            embedding_model: embedder.model(),
            created_by: owner,
        };
        let bucket = buckets::ensure_bucket(&mut tx, &new).await.context("creating the bucket")?;
        tx.commit().await?;
        bucket
    };
    if bucket.embedding_model != embedder.model() {
        bail!(
            "bucket {:?} holds embeddings of {}, but the configured model is {}: a bucket never mixes models",
            bucket.name,
            bucket.embedding_model,
            embedder.model()
        );
    }

    let pipeline = Pipeline {
        pool: pool.clone(),
        embedder,
        budget,
        extract: config.extract_limits(),
        parallelism: config.parallelism,
    };
    let bar = ProgressBar::new(sources.len() as u64, !args.json && std::io::stderr().is_terminal());
    let settings = WorkerSettings::new(CLI_JOB_LEASE, config.job_timeout());
    let summary = pipeline.ingest(owner, &bucket, sources, &settings, &bar).await;
    bar.finish();
    // The summary is printed whatever index maintenance does: the documents are in.
    let maintenance = store::index::ensure_indexes(&pool, None).await;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "bucket {:?}: {} ready, {} unchanged, {} duplicate, {} failed",
            bucket.name,
            summary.documents_ready,
            summary.documents_unchanged,
            summary.documents_duplicate,
            summary.documents_failed
        );
        println!(
            "chunks written {}; embeddings computed {}, reused {}; {:.1} s",
            summary.chunks_written, summary.embeddings_computed, summary.embeddings_reused, summary.seconds
        );
        for report in &summary.documents {
            match &report.outcome {
                Outcome::Failed { error } => println!("  failed    {}: {error}", report.path),
                Outcome::Duplicate { of_path, .. } => {
                    println!("  duplicate {} (same content as {})", report.path, of_path.as_deref().unwrap_or("?"))
                }
                _ => {}
            }
        }
    }
    let index_failed = match maintenance {
        Ok(done) => {
            if !args.json {
                for b in &done.builds {
                    println!("vector index: {} over {} chunks of {}", b.method, b.rows, b.model);
                }
            }
            for f in &done.failures {
                eprintln!("warning: the vector index of {} could not be built: {}; run `kb reindex`", f.model, f.error);
            }
            !done.failures.is_empty()
        }
        Err(e) => {
            eprintln!("warning: vector index maintenance failed: {e}; run `kb reindex`");
            true
        }
    };
    Ok(if summary.documents_failed > 0 {
        ExitCode::from(EXIT_DOCUMENTS_FAILED)
    } else if index_failed {
        ExitCode::from(EXIT_INDEX_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The id of the owner's bucket of this name, checked to be of the configured model.
async fn bucket_named(
    pool: &PgPool,
    owner: Uuid,
    embedder: &dyn Embedder,
    name: Option<&str>,
) -> anyhow::Result<Option<Uuid>> {
    let Some(name) = name else { return Ok(None) };
    let mut tx = store::begin_as(pool, owner, Role::Authenticated).await?;
    let bucket = buckets::bucket_by_name(&mut tx, owner, name).await?;
    tx.commit().await?;
    let bucket = bucket.with_context(|| format!("no bucket named {name:?}"))?;
    if bucket.embedding_model != embedder.model() {
        bail!(
            "bucket {name:?} is embedded with {}, but the configured model is {}",
            bucket.embedding_model,
            embedder.model()
        );
    }
    Ok(Some(bucket.id))
}

async fn run_search(config: &Config, args: SearchArgs) -> anyhow::Result<()> {
    let pool = runtime::connect(config).await?;
    let embedder = runtime::load_embedder(config).await?;
    let owner = owner(&pool, embedder.as_ref()).await?;
    let bucket_id = bucket_named(&pool, owner, embedder.as_ref(), args.bucket.as_deref()).await?;
    let request = SearchRequest {
        query: args.query,
        bucket_id,
        bucket_type: args.bucket_type,
        campaign_id: args.campaign,
        limit: args.limit,
        threshold: args.threshold,
        mode: args.mode.into(),
    };
    let options = SearchOptions { alpha: args.alpha, group_by: args.group_by.into(), ..SearchOptions::default() };
    let response =
        search::search_with(&pool, embedder.as_ref(), owner, Role::Authenticated, &request, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(());
    }
    if response.hits.is_empty() {
        println!("no results above similarity {}", args.threshold);
    }
    for (rank, hit) in response.hits.iter().enumerate() {
        let place = hit
            .metadata
            .as_ref()
            .and_then(|m| {
                m.get("page").map(|p| format!("page {p}")).or_else(|| {
                    m.get("headings")
                        .and_then(|h| h.as_array())
                        .map(|h| h.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(" > "))
                })
            })
            .unwrap_or_default();
        println!(
            "{}. [{:.3}] {} — {} (chunk {}{}{})",
            rank + 1,
            hit.similarity_score,
            hit.document_title,
            hit.bucket_name,
            hit.chunk_index,
            if place.is_empty() { "" } else { ", " },
            place
        );
        println!("   {}", snippet(&hit.chunk_content, 240));
    }
    println!("({} ms embedding, {} ms search)", response.timings.embed_ms.round(), response.timings.search_ms.round());
    Ok(())
}

fn snippet(text: &str, max_chars: usize) -> String {
    let flat = crate::hash::normalise(text);
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let mut cut: String = flat.chars().take(max_chars).collect();
    cut.push('…');
    cut
}

/// The ingest progress bar: documents done, with chunks and chunks per second.
struct ProgressBar {
    bar: indicatif::ProgressBar,
    chunks: std::sync::atomic::AtomicUsize,
    started: std::time::Instant,
}

impl ProgressBar {
    fn new(documents: u64, visible: bool) -> ProgressBar {
        let bar = if visible { indicatif::ProgressBar::new(documents) } else { indicatif::ProgressBar::hidden() };
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} documents ({per_sec}) {msg} [{elapsed}]")
        {
            bar.set_style(style);
        }
        ProgressBar { bar, chunks: 0.into(), started: std::time::Instant::now() }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for ProgressBar {
    fn document_done(&self, report: &DocumentReport) {
        if let Outcome::Ready { chunks, .. } = report.outcome {
            self.chunks.fetch_add(chunks, std::sync::atomic::Ordering::Relaxed);
        }
        let chunks = self.chunks.load(std::sync::atomic::Ordering::Relaxed);
        let rate = chunks as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!("{chunks} chunks, {rate:.0} chunks/s"));
        self.bar.inc(1);
    }
}

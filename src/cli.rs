//! The `kb` command line: parses arguments into commands, each with a `run`. Commands call
//! `ingest`, `search` and `store`; they hold no SQL and no pipeline logic of their own.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::embed::{self, Embedder};
use crate::ingest::{self, DocumentReport, Outcome, Pipeline, Progress};
use crate::search::{self, Mode, SearchRequest};
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
    /// Build or rebuild the vector indexes.
    Reindex(ReindexArgs),
    /// Manage the embedded PostgreSQL cluster.
    #[command(subcommand)]
    Db(DbCommand),
    /// Serve the HTTP API, with ingestion workers.
    Serve(crate::app::ServeArgs),
    /// Run ingestion workers only (against the same database as a server).
    Worker(crate::app::WorkerArgs),
    /// Manage users (as the database owner).
    #[command(subcommand)]
    User(crate::app::UserCommand),
    /// Print a signed JWT for a user, for development.
    Token(crate::app::TokenArgs),
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
    /// Ranking: vector similarity alone, or fused with full-text search.
    #[arg(long, value_enum, default_value_t = Mode::Vector)]
    pub mode: Mode,
    /// Print the results as JSON (see README: "JSON output").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReindexArgs {
    /// Index method; without it, only indexes the data has outgrown are rebuilt (ivfflat).
    #[arg(long, value_enum)]
    pub method: Option<IndexMethod>,
}

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Start the embedded cluster (creating it if needed).
    Start,
    /// Stop the embedded cluster.
    Stop,
    /// Show whether the embedded cluster is running.
    Status,
}

/// The database the embedded cluster serves kb from.
const EMBEDDED_DATABASE: &str = "kb";

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.config;
        match self.command {
            Command::Migrate => {
                connect(&config).await?;
                println!("migrations applied");
                Ok(())
            }
            Command::Ingest(args) => run_ingest(&config, args).await,
            Command::Search(args) => run_search(&config, args).await,
            Command::Reindex(args) => {
                let pool = connect(&config).await?;
                let builds =
                    store::index::ensure_indexes(&pool, args.method).await.context("building vector indexes")?;
                if builds.is_empty() {
                    println!("vector indexes are up to date");
                }
                for b in builds {
                    println!(
                        "{}: {} index over {} chunks (lists: {:?}) in {} s",
                        b.model, b.method, b.rows, b.lists, b.seconds
                    );
                }
                Ok(())
            }
            Command::Db(command) => run_db(&config, command).await,
            Command::Serve(args) => crate::app::serve(&config, args).await,
            Command::Worker(args) => crate::app::worker(&config, args).await,
            Command::User(command) => crate::app::user(&config, command).await,
            Command::Token(args) => crate::app::token(&config, args).await,
        }
    }
}

/// Connects to the configured database (starting the embedded cluster if that is the one)
/// and applies pending migrations.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let url = database_url(config).await?;
    // One connection per document in flight, and a few for everything else.
    let pool = store::connect(&url, config.parallelism as u32 + 4).await.context("connecting to PostgreSQL")?;
    store::migrate(&pool).await.context("applying migrations")?;
    Ok(pool)
}

/// The URL of the configured database: `DATABASE_URL`, or the embedded cluster's superuser
/// URL (starting the cluster if needed).
pub async fn database_url(config: &Config) -> anyhow::Result<String> {
    match &config.database_url {
        Some(url) => Ok(url.expose_secret().to_string()),
        None => {
            let cluster = Cluster::new(&config.data_dir()).context("embedded PostgreSQL")?;
            cluster.ensure_running(EMBEDDED_DATABASE).await.context("starting the embedded PostgreSQL cluster")
        }
    }
}

pub async fn load_embedder(config: &Config) -> anyhow::Result<Arc<dyn Embedder>> {
    embed::from_config(&config.embed_config()).await.context("loading the embedding model")
}

/// The local owner the CLI acts as, and the embedding model registered for its buckets.
async fn owner(pool: &PgPool, embedder: &dyn Embedder) -> anyhow::Result<Uuid> {
    let mut conn = pool.acquire().await?;
    let owner = users::ensure_user(&mut conn, users::LOCAL_OWNER_EMAIL).await.context("creating the local owner")?;
    store::index::register_model(&mut conn, embedder.model(), embedder.dimensions()).await?;
    Ok(owner)
}

async fn run_ingest(config: &Config, args: IngestArgs) -> anyhow::Result<()> {
    let sources = ingest::collect(&args.paths)?;
    if sources.is_empty() {
        bail!("no .txt, .md, .html or .pdf files found under {:?}", args.paths);
    }
    let pool = connect(config).await?;
    let embedder = load_embedder(config).await?;
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

    let pipeline =
        Pipeline { pool: pool.clone(), embedder, budget, pdf: config.pdf_limits(), parallelism: config.parallelism };
    let bar = ProgressBar::new(sources.len() as u64, !args.json && std::io::stderr().is_terminal());
    let summary = pipeline.ingest(owner, &bucket, sources, &bar).await;
    bar.finish();
    let builds = store::index::ensure_indexes(&pool, None).await.context("updating vector indexes")?;

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
        for b in builds {
            println!("vector index: {} over {} chunks of {}", b.method, b.rows, b.model);
        }
    }
    Ok(())
}

async fn run_search(config: &Config, args: SearchArgs) -> anyhow::Result<()> {
    let pool = connect(config).await?;
    let embedder = load_embedder(config).await?;
    let owner = owner(&pool, embedder.as_ref()).await?;
    let bucket_id = match &args.bucket {
        None => None,
        Some(name) => {
            let mut tx = store::begin_as(&pool, owner, Role::Authenticated).await?;
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
            Some(bucket.id)
        }
    };
    let request = SearchRequest {
        query: args.query,
        bucket_id,
        bucket_type: args.bucket_type,
        campaign_id: args.campaign,
        limit: args.limit,
        threshold: args.threshold,
        mode: args.mode,
    };
    let response = search::search(&pool, embedder.as_ref(), owner, Role::Authenticated, &request).await?;
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

async fn run_db(config: &Config, command: DbCommand) -> anyhow::Result<()> {
    if config.database_url.is_some() {
        bail!("DATABASE_URL is set: kb uses that database, not its embedded cluster");
    }
    let cluster = Cluster::new(&config.data_dir())?;
    match command {
        DbCommand::Start => {
            let url = cluster.ensure_running(EMBEDDED_DATABASE).await?;
            println!("running: {url}");
        }
        DbCommand::Stop => {
            cluster.stop().await?;
            println!("stopped");
        }
        DbCommand::Status => println!("{}", cluster.status().await?),
    }
    Ok(())
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

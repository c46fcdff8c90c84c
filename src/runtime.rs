//! Process wiring shared by every command: the database (the embedded cluster or
//! `DATABASE_URL`), the server's unprivileged pool, the embedder, the ingestion pipeline,
//! workers, periodic maintenance and shutdown signals. Task glue: errors are `anyhow`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::embed::{self, Embedder};
use crate::ingest::{Pipeline, WorkerSettings, worker};
use crate::store::{self, login};

/// The database the embedded cluster serves kb from.
pub const EMBEDDED_DATABASE: &str = "kb";

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

/// The owner connection (migrations and admin work) and the server's own pool, whose login
/// row level security constrains.
pub struct Databases {
    pub admin: PgPool,
    pub app: PgPool,
}

/// Connects both pools. Embedded cluster: creates the `kb_app` login as the superuser and
/// connects the server as it. `DATABASE_URL`: uses that login as given. Either way, refuses
/// a server login that is a superuser or has BYPASSRLS.
pub async fn databases(config: &Config, app_connections: u32) -> anyhow::Result<Databases> {
    let admin = connect(config).await?;
    let url = database_url(config).await?;
    let mut options: PgConnectOptions = url.parse().context("parsing the database URL")?;
    if config.database_url.is_none() {
        let mut conn = admin.acquire().await?;
        login::ensure_app_login(&mut conn).await.context("creating the kb_app login")?;
        // Trust authentication on the cluster's private unix socket: no password needed.
        options = options.username(login::APP_LOGIN);
    }
    let app = connect_app(options, app_connections).await?;
    let mut conn = app.acquire().await.context("connecting as the server's login")?;
    login::check_app_login(&mut conn).await?;
    drop(conn);
    Ok(Databases { admin, app })
}

/// Pools for the read replicas at `urls`, connected lazily: a replica that is down when the
/// server starts is used once it is up (`store::replicas` checks it). As for the primary, the
/// embedded cluster's replicas are reached as `kb_app`; a URL's own login otherwise.
pub fn read_replicas(
    config: &Config,
    urls: &[secrecy::SecretString],
    connections: u32,
) -> anyhow::Result<Vec<(String, PgPool)>> {
    let mut replicas = Vec::with_capacity(urls.len());
    for url in urls {
        let mut options: PgConnectOptions =
            url.expose_secret().trim().parse().context("parsing KB_READ_DATABASE_URL")?;
        if config.database_url.is_none() {
            options = options.username(login::APP_LOGIN);
        }
        let name =
            format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or_default());
        replicas.push((
            name,
            PgPoolOptions::new()
                .max_connections(connections.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(app_options(options)),
        ));
    }
    Ok(replicas)
}

/// Longest one statement of the server's pool may run (index builds run on the owner's pool).
const STATEMENT_TIMEOUT: &str = "60s";
/// Longest a transaction of the server's pool may sit idle: a stuck handler or worker never
/// holds locks and a connection for long.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "60s";

/// The server's pool. A short acquire timeout: a request that cannot get a connection soon
/// is better answered 503 than queued. Statements and idle transactions time out.
pub async fn connect_app(options: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(app_options(options))
        .await
        .context("connecting to PostgreSQL as the server's login")
}

/// The server's session settings: its name in `pg_stat_activity`, and time limits.
fn app_options(options: PgConnectOptions) -> PgConnectOptions {
    options.application_name("kb-server").options([
        ("statement_timeout", STATEMENT_TIMEOUT),
        ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT),
        // As `store::connect`: no JIT for kb's short statements.
        ("jit", "off"),
    ])
}

pub async fn pipeline(config: &Config, pool: PgPool, embedder: Arc<dyn Embedder>) -> anyhow::Result<Pipeline> {
    let budget = config.budget(embedder.max_input_tokens())?;
    Ok(Pipeline { pool, embedder, budget, extract: config.extract_limits(), parallelism: config.parallelism })
}

pub async fn register_model(admin: &PgPool, embedder: &dyn Embedder) -> anyhow::Result<()> {
    let mut conn = admin.acquire().await?;
    store::index::register_model(&mut conn, embedder.model(), embedder.dimensions())
        .await
        .context("registering the embedding model")?;
    Ok(())
}

pub fn spawn_workers(
    pipeline: &Pipeline,
    n: usize,
    lease: Duration,
    job_timeout: Duration,
    stop: &watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let settings = WorkerSettings::new(lease, job_timeout);
        set.spawn(worker::run(pipeline.clone(), settings, stop.clone()));
    }
    set
}

/// How long finished ingestion jobs (done or failed) are kept, for inspection.
const FINISHED_JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often a serving process checks whether a vector index needs (re)building.
const INDEX_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Builds or rebuilds vector indexes as uploads grow the data (as `kb ingest` does after a
/// run), on the owner connection, since the server's login may not run DDL.
pub fn spawn_maintenance(set: &mut JoinSet<()>, admin: PgPool, mut stop: watch::Receiver<bool>) {
    set.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(INDEX_CHECK_INTERVAL) => {}
                _ = stop.changed() => return,
            }
            match store::index::ensure_indexes(&admin, None).await {
                Ok(done) => {
                    for b in done.builds {
                        tracing::info!(model = %b.model, method = b.method, rows = b.rows, "vector index built");
                    }
                    for f in done.failures {
                        tracing::warn!(model = %f.model, error = %f.error, "vector index build failed; run `kb reindex`");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "vector index maintenance failed; run `kb reindex`"),
            }
            if let Err(e) = crate::ingest::job::delete_finished(&admin, FINISHED_JOB_RETENTION).await {
                tracing::warn!(error = %e, "could not delete finished jobs");
            }
        }
    });
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

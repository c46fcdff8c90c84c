//! Process wiring of the long-running and admin commands: the server's database login (never
//! superuser, never BYPASSRLS), the JWT secret, `kb serve` (API + workers, graceful shutdown),
//! `kb worker`, `kb user ...` and `kb token`. Task glue: errors are `anyhow`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::{connect, database_url, load_embedder};
use crate::config::Config;
use crate::embed::Embedder;
use crate::http::{self, AppState, Limits, auth::JwtKeys};
use crate::ingest::Pipeline;
use crate::ingest::worker::{self, WorkerSettings};
use crate::store::{self, Role, login, users};

/// The JWT secret, shared by `kb serve` and `kb token`.
#[derive(Debug, Clone, clap::Args)]
pub struct JwtArgs {
    /// HS256 secret of the API's JWTs (Supabase: the project's JWT secret). Unset: a random
    /// secret generated once and kept (mode 0600) in the data directory.
    #[arg(long, env = "KB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KB_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Ingestion workers run by this process (0: none; run `kb worker` elsewhere).
    #[arg(long, env = "KB_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Seconds an ingestion job's lease lasts; a worker extends it while it works, and a job
    /// whose worker died is taken over by another once it expires.
    #[arg(long, env = "KB_JOB_LEASE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub job_lease_secs: u64,
    /// Largest document upload, in bytes.
    #[arg(long, env = "KB_MAX_UPLOAD_BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Largest JSON body of other requests, in bytes.
    #[arg(long, env = "KB_MAX_JSON_BYTES", default_value_t = 1024 * 1024)]
    pub max_json_bytes: usize,
    /// Requests handled at once; beyond it requests get 503 with Retry-After at once.
    #[arg(long, env = "KB_MAX_CONCURRENT_REQUESTS", default_value_t = 64)]
    pub max_concurrent_requests: usize,
    /// Seconds a request may take before its response starts.
    #[arg(long, env = "KB_REQUEST_TIMEOUT_SECS", default_value_t = 60)]
    pub request_timeout_secs: u64,
    /// Seconds a client may take to send its request headers.
    #[arg(long, env = "KB_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Database connections of the server's pool.
    #[arg(long, env = "KB_DB_CONNECTIONS", default_value_t = 16)]
    pub db_connections: u32,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

impl ServeArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_upload_bytes: self.max_upload_bytes,
            max_json_bytes: self.max_json_bytes,
            max_concurrent_requests: self.max_concurrent_requests.max(1),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            ..Limits::default()
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Ingestion workers to run.
    #[arg(long, env = "KB_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Seconds an ingestion job's lease lasts; a worker extends it while it works, and a job
    /// whose worker died is taken over by another once it expires.
    #[arg(long, env = "KB_JOB_LEASE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub job_lease_secs: u64,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user (prints its id; no-op if it exists).
    Add { email: String },
    /// List users.
    List,
    /// Remove a user with every bucket, document and chunk the user owns.
    Remove { email: String },
}

#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The user the token is for.
    pub email: String,
    /// Role claim of the token.
    #[arg(long, value_enum, default_value_t = TokenRole::Authenticated)]
    pub role: TokenRole,
    /// Lifetime, like 3600, 90m, 12h or 30d.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    Anon,
    Authenticated,
    ServiceRole,
}

impl From<TokenRole> for Role {
    fn from(role: TokenRole) -> Role {
        match role {
            TokenRole::Anon => Role::Anon,
            TokenRole::Authenticated => Role::Authenticated,
            TokenRole::ServiceRole => Role::ServiceRole,
        }
    }
}

/// A duration in seconds, or with an `s`, `m`, `h` or `d` suffix.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 3600, 90m, 12h or 30d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(unit)))
}

fn jwt_keys(config: &Config, args: &JwtArgs) -> anyhow::Result<JwtKeys> {
    let secret = match &args.jwt_secret {
        Some(secret) => secret.expose_secret().as_bytes().to_vec(),
        None => http::auth::load_or_create_secret(&config.data_dir())?,
    };
    Ok(JwtKeys::new(&secret)?)
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

/// The server's pool. A short acquire timeout: a request that cannot get a connection soon
/// is better answered 503 than queued.
pub async fn connect_app(options: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.application_name("kb-server"))
        .await
        .context("connecting to PostgreSQL as the server's login")
}

async fn pipeline(config: &Config, pool: PgPool, embedder: Arc<dyn Embedder>) -> anyhow::Result<Pipeline> {
    let budget = config.budget(embedder.max_input_tokens())?;
    Ok(Pipeline { pool, embedder, budget, pdf: config.pdf_limits(), parallelism: config.parallelism })
}

async fn register_model(admin: &PgPool, embedder: &dyn Embedder) -> anyhow::Result<()> {
    let mut conn = admin.acquire().await?;
    store::index::register_model(&mut conn, embedder.model(), embedder.dimensions())
        .await
        .context("registering the embedding model")?;
    Ok(())
}

fn spawn_workers(pipeline: &Pipeline, n: usize, lease: Duration, stop: &watch::Receiver<bool>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let settings = WorkerSettings::new(lease);
        set.spawn(worker::run(pipeline.clone(), settings, stop.clone()));
    }
    set
}

/// How often a serving process checks whether a vector index needs (re)building.
const INDEX_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Builds or rebuilds vector indexes as uploads grow the data (as `kb ingest` does after a
/// run), on the owner connection, since the server's login may not run DDL.
fn spawn_index_maintenance(set: &mut JoinSet<()>, admin: PgPool, mut stop: watch::Receiver<bool>) {
    set.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(INDEX_CHECK_INTERVAL) => {}
                _ = stop.changed() => return,
            }
            match store::index::ensure_indexes(&admin, None).await {
                Ok(builds) => {
                    for b in builds {
                        tracing::info!(model = %b.model, method = b.method, rows = b.rows, "vector index built");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "vector index maintenance failed; run `kb reindex`"),
            }
        }
    });
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
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

pub async fn serve(config: &Config, args: ServeArgs) -> anyhow::Result<()> {
    let dbs = databases(config, args.db_connections).await?;
    let embedder = http::metrics::Metered::wrap(load_embedder(config).await?);
    register_model(&dbs.admin, embedder.as_ref()).await?;
    let jwt = jwt_keys(config, &args.jwt)?;
    let pipeline = pipeline(config, dbs.app.clone(), embedder.clone()).await?;
    // Install the recorder before the first metric is recorded.
    let _ = http::metrics::handle();

    let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
    let (stop, stopped) = watch::channel(false);
    let mut workers = spawn_workers(&pipeline, args.workers, Duration::from_secs(args.job_lease_secs), &stopped);
    spawn_index_maintenance(&mut workers, dbs.admin.clone(), stopped.clone());
    let state = AppState::new(dbs.app.clone(), embedder, jwt, args.limits());
    tracing::info!(addr = %listener.local_addr()?, workers = args.workers, "serving");
    http::serve(listener, state, shutdown_signal()).await?;
    // Workers hand their running jobs back to the queue as they stop.
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    dbs.app.close().await;
    dbs.admin.close().await;
    tracing::info!("stopped");
    Ok(())
}

pub async fn worker(config: &Config, args: WorkerArgs) -> anyhow::Result<()> {
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let dbs = databases(config, (args.workers as u32) * 2 + 1).await?;
    let embedder = http::metrics::Metered::wrap(load_embedder(config).await?);
    register_model(&dbs.admin, embedder.as_ref()).await?;
    let pipeline = pipeline(config, dbs.app.clone(), embedder).await?;
    let (stop, stopped) = watch::channel(false);
    let mut workers = spawn_workers(&pipeline, args.workers, Duration::from_secs(args.job_lease_secs), &stopped);
    spawn_index_maintenance(&mut workers, dbs.admin.clone(), stopped.clone());
    tracing::info!(workers = args.workers, "ingestion workers running");
    shutdown_signal().await;
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    Ok(())
}

pub async fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let admin = connect(config).await?;
    let mut conn = admin.acquire().await?;
    match command {
        UserCommand::Add { email } => {
            let id = users::ensure_user(&mut conn, &email).await.context("creating the user")?;
            println!("{id}\t{email}");
        }
        UserCommand::List => {
            for user in users::list_users(&mut conn).await? {
                println!("{}\t{}", user.id, user.email.unwrap_or_default());
            }
        }
        UserCommand::Remove { email } => {
            if !users::remove_user(&mut conn, &email).await.context("removing the user")? {
                bail!("no user with e-mail {email:?}");
            }
            println!("removed {email}");
        }
    }
    Ok(())
}

pub async fn token(config: &Config, args: TokenArgs) -> anyhow::Result<()> {
    let keys = jwt_keys(config, &args.jwt)?;
    let admin = connect(config).await?;
    let mut conn = admin.acquire().await?;
    let user = users::user_by_email(&mut conn, &args.email)
        .await?
        .with_context(|| format!("no user with e-mail {:?}: run `kb user add {}`", args.email, args.email))?;
    println!("{}", keys.mint(Some(user), args.role.into(), args.ttl)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_units() {
        assert_eq!(parse_ttl("3600").expect("test step"), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90m").expect("test step"), Duration::from_secs(5400));
        assert_eq!(parse_ttl("2d").expect("test step"), Duration::from_secs(172_800));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}

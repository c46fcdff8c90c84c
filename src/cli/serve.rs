//! The long-running and admin commands: `kb serve` (API + workers, graceful shutdown),
//! `kb worker`, `kb user ...` and `kb token`, with their arguments and the JWT secret.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::config::Config;
use crate::http::{self, AppState, Limits, auth::JwtKeys};
use crate::ingest::Quotas;
use crate::runtime;
use crate::store::{self, Role, users};

/// The JWT secret, shared by `kb serve` and `kb token`.
#[derive(Debug, Clone, clap::Args)]
pub struct JwtArgs {
    /// HS256 secret of the API's JWTs (Supabase: the project's JWT secret). Unset: a random
    /// secret generated once and kept (mode 0600) in the data directory.
    #[arg(long, env = "KB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// Public keys that may also sign the API's JWTs (ES256, RS256, ...; Supabase's signing
    /// keys): a JSON Web Key Set, or the path of a file holding one.
    #[arg(long, env = "KB_JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// Audiences a token's `aud` must contain one of (comma-separated; Supabase:
    /// `authenticated`). Unset: `aud` is not checked.
    #[arg(long, env = "KB_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// Issuer a token's `iss` must be (Supabase: `https://<project>.supabase.co/auth/v1`).
    /// Unset: `iss` is not checked.
    #[arg(long, env = "KB_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Longest validity (`exp - iat`) a token may have, like 3600, 90m, 12h or 30d. Unset: no limit.
    #[arg(long, env = "KB_JWT_MAX_LIFETIME", value_parser = parse_ttl)]
    pub jwt_max_lifetime: Option<Duration>,
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
    /// Documents one user may hold (uploads beyond it get 429 `quota_exceeded`).
    #[arg(long, env = "KB_QUOTA_DOCUMENTS", default_value_t = Quotas::default().max_documents)]
    pub quota_documents: i64,
    /// Bytes of uploaded files one user may have stored (beyond it: 413 `storage_quota_exceeded`).
    #[arg(long, env = "KB_QUOTA_BYTES", default_value_t = Quotas::default().max_stored_bytes)]
    pub quota_bytes: i64,
    /// Documents of one user waiting or being processed at once (beyond it: 429 `quota_exceeded`).
    #[arg(long, env = "KB_QUOTA_QUEUED", default_value_t = Quotas::default().max_active_jobs)]
    pub quota_queued: i64,
    /// Document status streams (server-sent events) open at once on this server.
    #[arg(long, env = "KB_MAX_STATUS_STREAMS", default_value_t = Limits::default().max_status_streams)]
    pub max_status_streams: usize,
    /// Document status streams one user may have open at once.
    #[arg(long, env = "KB_MAX_STATUS_STREAMS_PER_USER", default_value_t = Limits::default().max_status_streams_per_user)]
    pub max_status_streams_per_user: usize,
    /// Seconds a status stream stays open at most (it then ends with an `end` event).
    #[arg(long, env = "KB_STATUS_STREAM_MAX_SECS", default_value_t = Limits::default().status_stream_lifetime.as_secs())]
    pub status_stream_max_secs: u64,
    /// Bearer token that may read `/metrics` (a service_role JWT may too). Unset: only that JWT.
    #[arg(long, env = "KB_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<SecretString>,
    /// Database connections of the server's pool.
    #[arg(long, env = "KB_DB_CONNECTIONS", default_value_t = 16)]
    pub db_connections: u32,
    /// Read replicas of the database that searches run on (comma-separated PostgreSQL URLs,
    /// e.g. streaming replicas made with `kb db replica`); writes and every other read stay on
    /// the primary. With the embedded cluster kb connects to them as its own login, `kb_app`.
    #[arg(long, env = "KB_READ_DATABASE_URL", value_delimiter = ',', hide_env_values = true)]
    pub read_database_url: Vec<SecretString>,
    /// Milliseconds a replica may lag behind the primary and still serve searches.
    #[arg(long, env = "KB_READ_MAX_LAG_MS", default_value_t = 5000)]
    pub read_max_lag_ms: u64,
    /// Schemas `/rest/v1` serves (comma-separated; the first is the default profile).
    #[arg(long, env = "KB_REST_SCHEMAS", value_delimiter = ',', default_value = "public")]
    pub rest_schemas: Vec<String>,
    /// Most rows one `/rest/v1` read returns (0: no limit). Supabase's default is 1000.
    #[arg(long, env = "KB_REST_MAX_ROWS", default_value_t = 1000)]
    pub rest_max_rows: u64,
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
            quotas: Quotas {
                max_documents: self.quota_documents,
                max_stored_bytes: self.quota_bytes,
                max_active_jobs: self.quota_queued,
            },
            max_status_streams: self.max_status_streams,
            max_status_streams_per_user: self.max_status_streams_per_user,
            status_stream_lifetime: Duration::from_secs(self.status_stream_max_secs.max(1)),
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
    /// Remove a user with every bucket, document and chunk the user owns, and their rows of no
    /// company (the rows of a company stay, with no creator).
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
    let mut keys = JwtKeys::new(&secret)?.with_audience(&args.jwt_audience);
    if let Some(jwks) = &args.jwt_jwks {
        let jwks = if jwks.trim_start().starts_with('{') {
            jwks.clone()
        } else {
            std::fs::read_to_string(jwks).with_context(|| format!("reading the JWKS file {jwks}"))?
        };
        keys = keys.with_jwks(&jwks).context("KB_JWT_JWKS")?;
    }
    if let Some(issuer) = &args.jwt_issuer {
        keys = keys.with_issuer(issuer);
    }
    if let Some(max) = args.jwt_max_lifetime {
        keys = keys.with_max_lifetime(max);
    }
    Ok(keys)
}

pub async fn serve(config: &Config, args: ServeArgs) -> anyhow::Result<()> {
    let dbs = runtime::databases(config, args.db_connections).await?;
    let embedder = http::metrics::Metered::wrap(runtime::load_embedder(config).await?);
    runtime::register_model(&dbs.admin, embedder.as_ref()).await?;
    let jwt = jwt_keys(config, &args.jwt)?;
    let pipeline = runtime::pipeline(config, dbs.app.clone(), embedder.clone()).await?;
    // Install the recorder before the first metric is recorded.
    let _ = http::metrics::handle();

    let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
    let (stop, stopped) = watch::channel(false);
    let lease = Duration::from_secs(args.job_lease_secs);
    let mut workers = runtime::spawn_workers(&pipeline, args.workers, lease, config.job_timeout(), &stopped);
    runtime::spawn_maintenance(&mut workers, dbs.admin.clone(), stopped.clone());
    let replicas = runtime::read_replicas(config, &args.read_database_url, args.db_connections)?;
    let reads = store::replicas::Reads::new(dbs.app.clone(), replicas, Duration::from_millis(args.read_max_lag_ms));
    reads.spawn_monitor(stopped.clone());
    let mut state = AppState::new(dbs.app.clone(), embedder, jwt, args.limits());
    state.reads = reads;
    state.metrics_token = args.metrics_token.clone().map(std::sync::Arc::new);
    let schemas = args.rest_schemas.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    state.rest = http::rest::Rest::new(schemas, (args.rest_max_rows > 0).then_some(args.rest_max_rows));
    tracing::info!(addr = %listener.local_addr()?, workers = args.workers, "serving");
    http::serve(listener, state, runtime::shutdown_signal()).await?;
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
    let dbs = runtime::databases(config, (args.workers as u32) * 2 + 1).await?;
    let embedder = http::metrics::Metered::wrap(runtime::load_embedder(config).await?);
    runtime::register_model(&dbs.admin, embedder.as_ref()).await?;
    let pipeline = runtime::pipeline(config, dbs.app.clone(), embedder).await?;
    let (stop, stopped) = watch::channel(false);
    let lease = Duration::from_secs(args.job_lease_secs);
    let mut workers = runtime::spawn_workers(&pipeline, args.workers, lease, config.job_timeout(), &stopped);
    runtime::spawn_maintenance(&mut workers, dbs.admin.clone(), stopped.clone());
    tracing::info!(workers = args.workers, "ingestion workers running");
    runtime::shutdown_signal().await;
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    Ok(())
}

pub async fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let admin = runtime::connect(config).await?;
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
    if let Some(max) = args.jwt.jwt_max_lifetime.filter(|max| args.ttl > *max) {
        bail!(
            "--ttl {}s is longer than KB_JWT_MAX_LIFETIME ({}s): the server would refuse the token",
            args.ttl.as_secs(),
            max.as_secs()
        );
    }
    let keys = jwt_keys(config, &args.jwt)?;
    let admin = runtime::connect(config).await?;
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

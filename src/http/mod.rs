//! The HTTP API: a JSON API under `/v1`, a PostgREST-compatible API over the schema under `/rest/v1`,
//! and operations endpoints (health, readiness, metrics, OpenAPI, docs). Every data request
//! runs in one transaction acting as its caller, so row level security decides what it sees.
//!
//! Protection against overload and slow clients: a global concurrency limit that sheds
//! excess requests at once (503 + Retry-After, never an unbounded queue), a per-request
//! timeout, a header-read timeout, and body limits (JSON and uploads separately).

pub mod admin;
pub mod auth;
pub mod buckets;
pub mod context;
pub mod documents;
pub mod error;
pub mod events;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod rest;
pub mod search;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::embed::Embedder;
use crate::store;
use auth::JwtKeys;
use error::ApiError;

/// Request and body limits of a server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest upload body (multipart or JSON) on the upload route.
    pub max_upload_bytes: usize,
    /// Largest body on every other route.
    pub max_json_bytes: usize,
    /// Requests handled at once; more are refused with 503 at once.
    pub max_concurrent_requests: usize,
    /// Longest a request may take until its response starts.
    pub request_timeout: Duration,
    /// Longest a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Longest shutdown waits for in-flight requests (and status streams) to finish.
    pub shutdown_grace: Duration,
    /// What one user's uploads may hold.
    pub quotas: crate::ingest::Quotas,
    /// Status streams open at once on this server; beyond it 429 `too_many_streams`.
    pub max_status_streams: usize,
    /// Status streams one user may have open at once.
    pub max_status_streams_per_user: usize,
    /// Longest a status stream stays open (it ends with an `end` event; clients reconnect).
    pub status_stream_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_upload_bytes: 50 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            max_concurrent_requests: 64,
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            quotas: crate::ingest::Quotas::default(),
            max_status_streams: 512,
            max_status_streams_per_user: 16,
            status_stream_lifetime: Duration::from_secs(900),
        }
    }
}

/// What every handler reaches through `State`.
#[derive(Clone)]
pub struct AppState {
    /// Connects as the server's login: no superuser, no BYPASSRLS.
    pub pool: PgPool,
    /// The model queries are embedded with, and the model of every bucket created here.
    pub embedder: Arc<dyn Embedder>,
    pub jwt: Arc<JwtKeys>,
    pub limits: Limits,
    /// The status streams: their database listener and their count.
    pub status_hub: Arc<events::StatusHub>,
    /// A bearer token that may read `/metrics` (besides a service_role JWT).
    pub metrics_token: Option<Arc<secrecy::SecretString>>,
    /// Recent answers of the operations endpoints, so probes and scrapes stay cheap.
    pub ops_cache: Arc<ops::OpsCache>,
    /// Turns true when the server begins to shut down: long-lived status streams end then,
    /// instead of holding shutdown for the whole grace period.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// `/rest/v1`: its exposed schemas, row limit and schema cache.
    pub rest: rest::Rest,
    /// Where searches run: a current read replica, or the primary (`pool`).
    pub reads: Arc<store::replicas::Reads>,
}

impl AppState {
    pub fn new(pool: PgPool, embedder: Arc<dyn Embedder>, jwt: JwtKeys, limits: Limits) -> AppState {
        AppState {
            reads: store::replicas::Reads::primary_only(pool.clone()),
            pool,
            embedder,
            jwt: Arc::new(jwt),
            limits,
            status_hub: Arc::default(),
            metrics_token: None,
            ops_cache: Arc::default(),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            rest: rest::Rest::default(),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API. Data routes sit behind the concurrency limit and timeout; operations
/// routes stay reachable when the server is saturated (a probe must not be shed).
pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    // Install the recorder before the first request records anything.
    let _ = metrics::handle();
    let guarded = Router::new()
        .merge(buckets::router())
        .merge(documents::router(&limits))
        .merge(search::router())
        .merge(rest::router())
        .merge(crate::mcp::http::router(&state))
        .merge(context::router())
        .merge(admin::router())
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(shed_or_timeout))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(limits.max_concurrent_requests))
                .timeout(limits.request_timeout),
        );
    Router::new()
        .merge(guarded)
        .merge(ops::router())
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(DefaultBodyLimit::max(limits.max_json_bytes))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request<_>| {
                            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                            tracing::info_span!("request", method = %request.method(), uri = %request.uri(),
                                request_id = %id, user = tracing::field::Empty)
                        })
                        // One access-log line per request, under kb's own log target.
                        .on_response(|response: &axum::http::Response<_>, latency: Duration, _: &tracing::Span| {
                            let status = response.status().as_u16();
                            let latency_ms = latency.as_secs_f64() * 1000.0;
                            tracing::info!(status, latency_ms, "request done");
                        }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // A panicking handler drops its transaction (rolled back) and answers a plain 500.
                .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
                    ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
                })),
        )
        .with_state(state)
}

async fn shed_or_timeout(error: BoxError) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        ApiError::Internal(anyhow::anyhow!("middleware error: {error}"))
    }
}

/// Serves the API on a bound listener until `shutdown` resolves; then stops accepting and
/// lets in-flight requests finish (up to `limits.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits.clone();
    let stopping = state.stopping.clone();
    let app = router(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Slow-loris defence: a client that does not finish its headers in time is dropped.
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.send_replace(true);
    tracing::info!("stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?limits.shutdown_grace, "in-flight requests outlived the shutdown grace period");
    }
    Ok(())
}

//! Operations endpoints, outside the concurrency limit so probes are never shed: `/healthz`
//! (the process answers), `/readyz` (database reachable, migrations applied, model loaded;
//! answered from a 2 s cache), `/metrics` (Prometheus, for `KB_METRICS_TOKEN` or a
//! service_role JWT), `/openapi.json` (OpenAPI 3) and `/docs` (a page listing it).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::openapi::ErrorBody;
use crate::store::{self, Role, jobs, login};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs))
}

/// `{"status": "ok"}` from `/healthz`; `/readyz` adds what it checked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (healthz) or `ready` (readyz).
    pub status: &'static str,
    /// The newest applied migration (readyz).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<i64>,
    /// The embedding model queries are embedded with (readyz).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its dimensions (readyz).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", migration: None, model: None, dimensions: None })
}

/// How long a readiness answer or a queue depth is reused: probes and scrapes at any rate
/// cost the database at most one query per interval.
const CACHE_FOR: Duration = Duration::from_secs(2);

/// The last readiness answer and queue depth, each refreshed by one caller at a time.
#[derive(Debug, Default)]
pub struct OpsCache {
    ready: tokio::sync::Mutex<Option<(Instant, Result<Health, String>)>>,
    queue_depth: tokio::sync::Mutex<Option<Instant>>,
}

/// Database reachable, migrations applied, model loaded.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready (`not_ready`), and why", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let mut cached = state.ops_cache.ready.lock().await;
    let answer = match cached.as_ref() {
        Some((at, answer)) if at.elapsed() < CACHE_FOR => answer.clone(),
        _ => {
            let answer = readiness(&state).await;
            *cached = Some((Instant::now(), answer.clone()));
            answer
        }
    };
    answer.map(Json).map_err(ApiError::NotReady)
}

/// Database reachable and migrated, model loaded.
async fn readiness(state: &AppState) -> Result<Health, String> {
    let mut conn = state.pool.acquire().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: database unreachable");
        "the database is unreachable".to_string()
    })?;
    let applied = login::applied_migration(&mut conn).await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: cannot read the migrations table");
        "cannot read the applied migrations".to_string()
    })?;
    let expected = login::latest_migration();
    if applied < expected {
        return Err(format!("migrations applied up to {applied:?}, expected {expected:?}"));
    }
    // The embedder is loaded before the state is built: holding one means the model is there.
    Ok(Health {
        status: "ready",
        migration: applied,
        model: Some(state.embedder.model().to_string()),
        dimensions: Some(state.embedder.dimensions()),
    })
}

/// `/metrics` is for the operator: `KB_METRICS_TOKEN` as a bearer token, or a service_role JWT.
fn may_read_metrics(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(ApiError::MissingToken)?;
    if let Some(expected) = &state.metrics_token {
        let expected = expected.expose_secret().as_bytes();
        // Constant time in the token's content: no byte-by-byte timing to learn it from.
        let same =
            token.len() == expected.len() && token.bytes().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            return Ok(());
        }
    }
    match state.jwt.verify(token)? {
        caller if caller.role == Role::ServiceRole => Ok(()),
        _ => Err(ApiError::Forbidden("/metrics needs KB_METRICS_TOKEN or a service_role token")),
    }
}

/// Prometheus metrics, for `KB_METRICS_TOKEN` or a service_role JWT.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "Neither `KB_METRICS_TOKEN` nor a service_role token", body = ErrorBody),
    ))]
async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    may_read_metrics(&state, &headers)?;
    // Queue depth is read at most once per CACHE_FOR, as the service role (jobs are the
    // workers' table).
    let mut read_at = state.ops_cache.queue_depth.lock().await;
    if read_at.is_none_or(|at| at.elapsed() >= CACHE_FOR) {
        let depth = async {
            let mut tx = store::begin_as(&state.pool, Uuid::nil(), Role::ServiceRole).await?;
            let depth = jobs::queue_depth(&mut tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(depth)
        };
        match depth.await {
            Ok(depth) => metrics::gauge!(super::metrics::QUEUE_DEPTH).set(depth as f64),
            Err(e) => tracing::warn!(error = %e, "cannot read the queue depth"),
        }
        *read_at = Some(Instant::now());
    }
    drop(read_at);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], super::metrics::handle().render()).into_response())
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "ops",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi_json(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(super::openapi::document(state.embedder.dimensions()))
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kb API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .3em}.m{display:inline-block;width:4.5em;font-weight:bold}
li{margin:.4em 0}</style></head>
<body><h1>kb API</h1>
<p>Send <code>Authorization: Bearer &lt;JWT&gt;</code> (HS256, <code>sub</code> = user id,
<code>role</code> = authenticated or service_role). Errors are <code>{"code","message"}</code>.
The machine-readable spec is <a href="/openapi.json">/openapi.json</a>.</p>
<ul id="ops">loading /openapi.json…</ul>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const ul = document.getElementById('ops'); ul.textContent = '';
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const li = document.createElement('li');
      li.innerHTML = '<span class="m"></span><code></code> — <span></span>';
      li.children[0].textContent = method.toUpperCase();
      li.children[1].textContent = path;
      li.children[2].textContent = op.summary || '';
      ul.appendChild(li);
    }
  }
});
</script></body></html>"#;

/// A page listing the operations of `/openapi.json`.
#[utoipa::path(get, path = "/docs", operation_id = "docs", tag = "ops",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

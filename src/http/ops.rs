//! Operations endpoints, outside the concurrency limit so probes are never shed: `/healthz`
//! (the process answers), `/readyz` (database reachable, migrations applied, model loaded),
//! `/metrics` (Prometheus), `/openapi.json` (OpenAPI 3) and `/docs` (a page listing it).

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::store::{self, Role, jobs, login};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut conn = state.pool.acquire().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: database unreachable");
        ApiError::NotReady("the database is unreachable".into())
    })?;
    let applied = login::applied_migration(&mut conn).await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: cannot read the migrations table");
        ApiError::NotReady("cannot read the applied migrations".into())
    })?;
    let expected = login::latest_migration();
    if applied < expected {
        return Err(ApiError::NotReady(format!("migrations applied up to {applied:?}, expected {expected:?}")));
    }
    // The embedder is loaded before the state is built: holding one means the model is there.
    Ok(Json(json!({
        "status": "ready",
        "migration": applied,
        "model": state.embedder.model(),
        "dimensions": state.embedder.dimensions(),
    })))
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    // Queue depth is read at scrape time, as the service role (jobs are the workers' table).
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], super::metrics::handle().render()).into_response()
}

async fn openapi_json() -> Json<Value> {
    Json(openapi())
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

async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

fn op(summary: &str, ok: &str, body: Option<&str>, secured: bool) -> Value {
    let mut operation = json!({
        "summary": summary,
        "responses": {
            ok: { "description": "success" },
            "default": { "description": "error", "content": { "application/json": {
                "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
    });
    if let Some(schema) = body {
        operation["requestBody"] = json!({ "required": true, "content": { "application/json": {
            "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    }
    if !secured {
        operation["security"] = json!([]);
    }
    operation
}

/// The OpenAPI 3 description of the API.
pub fn openapi() -> Value {
    let mut upload = op("Upload a document (202: stored and queued)", "202", Some("UploadJson"), true);
    upload["requestBody"]["content"]["multipart/form-data"] = json!({ "schema": { "type": "object",
        "required": ["file"],
        "properties": { "file": { "type": "string", "format": "binary" }, "title": { "type": "string" } } } });
    json!({
        "openapi": "3.0.3",
        "info": { "title": "kb", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Knowledge-base ingestion and semantic search on PostgreSQL + pgvector" },
        "security": [ { "bearer": [] }, { "apikey": [] } ],
        "paths": {
            "/healthz": { "get": op("The process is alive", "200", None, false) },
            "/readyz": { "get": op("Database reachable, migrations applied, model loaded", "200", None, false) },
            "/metrics": { "get": op("Prometheus metrics", "200", None, false) },
            "/openapi.json": { "get": op("This document", "200", None, false) },
            "/docs": { "get": op("Human-readable API page", "200", None, false) },
            "/v1/buckets": {
                "get": op("List your buckets", "200", None, true),
                "post": op("Create a bucket (embedded with the server's model)", "201", Some("CreateBucket"), true)
            },
            "/v1/buckets/{id}": {
                "get": op("Read a bucket", "200", None, true),
                "patch": op("Change a bucket", "200", Some("UpdateBucket"), true),
                "delete": op("Delete a bucket with its documents and chunks", "204", None, true)
            },
            "/v1/buckets/{id}/documents": {
                "get": op("List a bucket's documents with their status", "200", None, true),
                "post": upload
            },
            "/v1/documents/{id}": {
                "get": op("Read a document's status, error and chunk count", "200", None, true),
                "delete": op("Delete a document and its chunks", "204", None, true)
            },
            "/v1/documents/{id}/reingest": { "post": op("Process a document again", "202", None, true) },
            "/v1/documents/{id}/events": {
                "get": op("Server-sent events: the document's status until ready or failed", "200", None, true)
            },
            "/v1/search": { "post": op("Search chunks by query text or embedding", "200", Some("Search"), true) },
            "/rest/v1/rpc/search_knowledge_chunks": {
                "post": op("search_knowledge_chunks with its SQL parameter names (supabase-js rpc)", "200",
                           Some("SearchKnowledgeChunks"), true)
            }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "apikey": { "type": "apiKey", "in": "header", "name": "apikey" }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["code", "message"], "properties": {
                    "code": { "type": "string" }, "message": { "type": "string" } } },
                "CreateBucket": { "type": "object", "required": ["name"], "properties": {
                    "name": { "type": "string" }, "bucket_type": { "type": "string", "default": "general" },
                    "description": { "type": "string" }, "campaign_id": { "type": "string", "format": "uuid" },
                    "metadata": { "type": "object" } } },
                "UpdateBucket": { "type": "object", "properties": {
                    "name": { "type": "string" }, "bucket_type": { "type": "string" },
                    "description": { "type": "string", "nullable": true },
                    "campaign_id": { "type": "string", "format": "uuid", "nullable": true },
                    "metadata": { "type": "object" } } },
                "UploadJson": { "type": "object", "required": ["content"], "properties": {
                    "title": { "type": "string" }, "content": { "type": "string" },
                    "file_name": { "type": "string", "description": ".txt, .md or .html" } } },
                "Search": { "type": "object", "properties": {
                    "query": { "type": "string" },
                    "embedding": { "type": "array", "items": { "type": "number" } },
                    "bucket_id": { "type": "string", "format": "uuid" }, "bucket_type": { "type": "string" },
                    "campaign_id": { "type": "string", "format": "uuid" },
                    "limit": { "type": "integer", "default": 10, "minimum": 1, "maximum": 1000 },
                    "threshold": { "type": "number", "default": 0.2 },
                    "mode": { "type": "string", "enum": ["vector", "hybrid"], "default": "vector" } } },
                "SearchKnowledgeChunks": { "type": "object", "required": ["p_query_embedding"], "properties": {
                    "p_user_id": { "type": "string", "format": "uuid" },
                    "p_query_embedding": { "oneOf": [ { "type": "array", "items": { "type": "number" } },
                                                      { "type": "string" } ] },
                    "p_bucket_type": { "type": "string" }, "p_campaign_id": { "type": "string", "format": "uuid" },
                    "p_limit": { "type": "integer", "default": 10 },
                    "p_similarity_threshold": { "type": "number", "default": 0.7 } } }
            }
        }
    })
}

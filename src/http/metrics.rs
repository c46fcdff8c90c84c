//! Prometheus metrics: request latency by route and status, uploads, ingestion outcomes
//! (recorded by the workers), queue depth (read at scrape time), embedding calls and latency.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::chunk::Tokenizer;
use crate::embed::{EmbedError, Embedder};

pub const HTTP_REQUEST_SECONDS: &str = "kb_http_request_duration_seconds";
pub const UPLOADS: &str = "kb_uploads_total";
pub const QUEUE_DEPTH: &str = "kb_ingest_queue_depth";
pub const EMBED_CALLS: &str = "kb_embedding_calls_total";
pub const EMBED_TEXTS: &str = "kb_embedding_texts_total";
pub const EMBED_SECONDS: &str = "kb_embedding_duration_seconds";

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process-wide Prometheus recorder, installed on first use. The `metrics` facade has one
/// global recorder per process, so every server in the process (tests start many) shares it.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "latency buckets refused; using summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// Middleware: one latency observation per request, labelled by matched route (not the raw
/// path, whose ids would explode the label set), method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_REQUEST_SECONDS, "route" => route, "method" => method, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// An embedder that counts its calls and times them.
pub struct Metered {
    pub inner: Arc<dyn Embedder>,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Embedder>) -> Arc<dyn Embedder> {
        Arc::new(Metered { inner })
    }
}

#[async_trait::async_trait]
impl Embedder for Metered {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }
    fn tokenizer(&self) -> Tokenizer {
        self.inner.tokenizer()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let result = self.inner.embed(texts).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(EMBED_CALLS, "outcome" => outcome).increment(1);
        metrics::counter!(EMBED_TEXTS).increment(texts.len() as u64);
        metrics::histogram!(EMBED_SECONDS).record(started.elapsed().as_secs_f64());
        result
    }
}

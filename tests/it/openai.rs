//! The OpenAI embedder against a local stand-in for `POST /v1/embeddings` (axum on port 0) that
//! records every request and can be told to fail: request splitting, retries and their limits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_openai::types::embeddings::{
    CreateEmbeddingRequest, CreateEmbeddingResponse, Embedding, EmbeddingInput, EmbeddingUsage,
};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kb::embed::{EmbedError, Embedder, OpenAiEmbedder, OpenAiOptions, RetryPolicy};
use secrecy::SecretString;
use serde_json::json;

const DIMS: usize = 8;

/// One scripted failure the stand-in answers with before it starts succeeding.
#[derive(Clone)]
struct Failure {
    status: StatusCode,
    retry_after: Option<&'static str>,
    code: &'static str,
}

/// What the stand-in saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    inputs: usize,
    tokens: usize,
    authorization: Option<String>,
    dimensions: Option<u32>,
}

struct Server {
    script: Mutex<VecDeque<Failure>>,
    /// Answer given once the script is used up; `None` means success.
    otherwise: Option<Failure>,
    seen: Mutex<Vec<Seen>>,
    bpe: tiktoken_rs::CoreBPE,
}

/// A deterministic vector per text, so the client's ordering can be checked.
fn vector_of(text: &str) -> Vec<f32> {
    let mut v = vec![0.0; DIMS];
    v[0] = text.len() as f32;
    v[1] = text.bytes().map(u32::from).sum::<u32>() as f32;
    v
}

async fn embeddings(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Json(request): Json<CreateEmbeddingRequest>,
) -> Response {
    let inputs = match request.input {
        EmbeddingInput::StringArray(inputs) => inputs,
        EmbeddingInput::String(input) => vec![input],
        _ => return (StatusCode::BAD_REQUEST, "token arrays are not expected").into_response(),
    };
    let tokens = inputs.iter().map(|t| server.bpe.encode_ordinary(t).len()).sum();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    server.seen.lock().expect("lock").push(Seen {
        inputs: inputs.len(),
        tokens,
        authorization,
        dimensions: request.dimensions,
    });

    let failure = server.script.lock().expect("lock").pop_front().or_else(|| server.otherwise.clone());
    if let Some(failure) = failure {
        let body = json!({"error": {"message": "scripted failure", "type": failure.code, "param": null, "code": failure.code}});
        let mut response = (failure.status, Json(body)).into_response();
        if let Some(wait) = failure.retry_after {
            response.headers_mut().insert("retry-after", wait.parse().expect("header value"));
        }
        return response;
    }
    if inputs.len() > 2048 || tokens > 300_000 {
        return (StatusCode::BAD_REQUEST, "over the API limits").into_response();
    }
    let data = inputs
        .iter()
        .enumerate()
        // Reversed, as nothing in the API promises the data comes back in input order.
        .rev()
        .map(|(i, text)| Embedding { index: i as u32, object: "embedding".into(), embedding: vector_of(text) })
        .collect();
    Json(CreateEmbeddingResponse {
        object: "list".into(),
        model: request.model,
        data,
        usage: EmbeddingUsage { prompt_tokens: tokens as u32, total_tokens: tokens as u32 },
    })
    .into_response()
}

struct StandIn {
    server: Arc<Server>,
    base_url: String,
}

impl StandIn {
    async fn start(script: Vec<Failure>, otherwise: Option<Failure>) -> StandIn {
        let server = Arc::new(Server {
            script: Mutex::new(script.into()),
            otherwise,
            seen: Mutex::new(Vec::new()),
            bpe: tiktoken_rs::cl100k_base().expect("cl100k"),
        });
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .layer(DefaultBodyLimit::disable())
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        StandIn { server, base_url: format!("http://{address}/v1") }
    }

    fn embedder(&self) -> OpenAiEmbedder {
        let mut options = OpenAiOptions::new(SecretString::from("sk-test-key"));
        options.base_url = self.base_url.clone();
        options.dimensions = Some(DIMS);
        options.retry = RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(10),
        };
        OpenAiEmbedder::new(options).expect("embedder")
    }

    fn seen(&self) -> Vec<Seen> {
        self.server.seen.lock().expect("lock").clone()
    }
}

fn failure(status: u16, code: &'static str, retry_after: Option<&'static str>) -> Failure {
    Failure { status: StatusCode::from_u16(status).expect("status"), retry_after, code }
}

#[tokio::test]
async fn many_inputs_are_split_into_requests_within_the_api_limits() {
    let stand_in = StandIn::start(vec![], None).await;
    let embedder = stand_in.embedder();
    // 5000 short texts (over 2048 per request) and 80 long ones (~400k tokens, over 300k).
    let mut texts: Vec<String> = (0..5000).map(|i| format!("short text number {i}")).collect();
    texts.extend((0..80).map(|i| format!("long text {i}:{}", " hello".repeat(5000))));

    let vectors = embedder.embed(&texts).await.expect("embed");

    assert_eq!(vectors.len(), texts.len());
    for (text, vector) in texts.iter().zip(&vectors) {
        assert_eq!(vector, &vector_of(text), "vector out of order for {:?}", &text[..20]);
    }
    let seen = stand_in.seen();
    // Both limits had to bite: more inputs than one request holds, more tokens than one request holds.
    assert!(seen.iter().map(|r| r.tokens).sum::<usize>() > 300_000);
    assert!(seen.len() >= 3, "{seen:?}");
    for request in &seen {
        assert!(request.inputs <= 2048, "{request:?}");
        assert!(request.tokens <= 300_000, "{request:?}");
        assert_eq!(request.authorization.as_deref(), Some("Bearer sk-test-key"));
        assert_eq!(request.dimensions, Some(DIMS as u32));
    }
    assert_eq!(seen.iter().map(|r| r.inputs).sum::<usize>(), texts.len());
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_the_wait() {
    let stand_in = StandIn::start(vec![failure(429, "rate_limit_exceeded", Some("1"))], None).await;
    let started = Instant::now();
    let vectors = stand_in.embedder().embed(&["hello".to_string()]).await.expect("succeeds on retry");
    assert_eq!(vectors, vec![vector_of("hello")]);
    assert_eq!(stand_in.seen().len(), 2);
    // Our own backoff starts at 20 ms: only honouring Retry-After makes it wait a second.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let script = vec![failure(500, "server_error", None), failure(503, "overloaded", None)];
    let stand_in = StandIn::start(script, None).await;
    let vectors = stand_in.embedder().embed(&["hello".to_string()]).await.expect("succeeds on the third try");
    assert_eq!(vectors.len(), 1);
    assert_eq!(stand_in.seen().len(), 3);
}

#[tokio::test]
async fn a_bad_key_fails_at_once_with_one_request() {
    let stand_in = StandIn::start(vec![], Some(failure(401, "invalid_api_key", None))).await;
    let result = stand_in.embedder().embed(&["hello".to_string()]).await;
    match result {
        Err(error @ EmbedError::Permanent(_)) => assert!(!error.is_retryable()),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(stand_in.seen().len(), 1);
}

#[tokio::test]
async fn an_exhausted_quota_is_not_retried() {
    let stand_in = StandIn::start(vec![], Some(failure(429, "insufficient_quota", None))).await;
    let result = stand_in.embedder().embed(&["hello".to_string()]).await;
    assert!(matches!(result, Err(EmbedError::Permanent(_))), "{result:?}");
    assert_eq!(stand_in.seen().len(), 1);
}

#[tokio::test]
async fn retries_stop_when_the_retry_budget_is_spent() {
    let stand_in = StandIn::start(vec![], Some(failure(503, "overloaded", None))).await;
    let mut options = OpenAiOptions::new(SecretString::from("sk-test-key"));
    options.base_url = stand_in.base_url.clone();
    options.dimensions = Some(DIMS);
    options.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        max_elapsed: Duration::from_millis(500),
    };
    let embedder = OpenAiEmbedder::new(options).expect("embedder");
    let started = Instant::now();
    let result = embedder.embed(&["hello".to_string()]).await;
    assert!(matches!(result, Err(EmbedError::Transient(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(stand_in.seen().len() >= 3, "{:?}", stand_in.seen());
}

#[tokio::test]
async fn a_retry_after_longer_than_the_budget_gives_up_without_waiting() {
    let stand_in = StandIn::start(vec![], Some(failure(429, "rate_limit_exceeded", Some("3600")))).await;
    let started = Instant::now();
    let result = stand_in.embedder().embed(&["hello".to_string()]).await;
    assert!(matches!(result, Err(EmbedError::Transient(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(stand_in.seen().len(), 1);
}

#[tokio::test]
async fn an_input_over_8191_tokens_is_refused_without_any_request() {
    let stand_in = StandIn::start(vec![], None).await;
    let embedder = stand_in.embedder();
    let texts = vec!["fine".to_string(), " hello".repeat(9000)];
    match embedder.embed(&texts).await {
        Err(EmbedError::InputTooLong { index, tokens, max }) => {
            assert_eq!(index, 1);
            assert_eq!(max, 8191);
            assert_eq!(tokens, 9000);
        }
        other => panic!("expected InputTooLong, got {other:?}"),
    }
    assert!(stand_in.seen().is_empty());
}

#[tokio::test]
async fn vectors_of_the_wrong_length_are_a_permanent_error() {
    let stand_in = StandIn::start(vec![], None).await;
    let mut options = OpenAiOptions::new(SecretString::from("sk-test-key"));
    options.base_url = stand_in.base_url.clone();
    // The stand-in returns 8 dimensions whatever is asked; the client expects 1536.
    options.dimensions = None;
    let embedder = OpenAiEmbedder::new(options).expect("embedder");
    let result = embedder.embed(&["hello".to_string()]).await;
    assert!(matches!(result, Err(EmbedError::Permanent(_))), "{result:?}");
}

//! OpenAI embeddings (`text-embedding-3-small` by default, or any OpenAI-compatible server):
//! texts are measured with cl100k, packed into requests within the API's limits, sent with
//! bounded concurrency and retried under kb's own [`RetryPolicy`].
//!
//! Requests and responses are async-openai's types, but the HTTP call is made with reqwest
//! directly: async-openai's client runs its own retry layer, and its errors drop the response
//! headers, so it can neither leave retrying to us nor tell us the server's `Retry-After`.

use std::ops::Range;
use std::time::{Duration, Instant};

use async_openai::error::WrappedError;
use async_openai::types::embeddings::{
    CreateEmbeddingRequest, CreateEmbeddingResponse, EmbeddingInput, EncodingFormat,
};
use futures::{StreamExt, TryStreamExt};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, instrument, warn};

use super::retry::{is_retryable_status, is_retryable_transport, retry_after};
use super::{DEFAULT_OPENAI_MODEL, EmbedError, Embedder, RetryPolicy};
use crate::chunk::Tokenizer;

/// Most inputs the embeddings endpoint accepts in one request.
pub const MAX_INPUTS_PER_REQUEST: usize = 2048;
/// Most tokens, summed over all inputs, the endpoint accepts in one request.
pub const MAX_TOKENS_PER_REQUEST: usize = 300_000;
/// Most tokens of one input. The API documents 8192; kb keeps one token of margin, as the
/// [`Embedder`] contract promises 8191.
pub const MAX_INPUT_TOKENS: usize = 8191;

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// How to reach the endpoint and how hard to push it.
#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    pub api_key: SecretString,
    /// Base URL of the API, e.g. "https://api.openai.com/v1"; "/embeddings" is appended.
    pub base_url: String,
    pub model: String,
    /// Requested vector length (`text-embedding-3-*` can shorten their output); `None` takes the
    /// model's native length.
    pub dimensions: Option<usize>,
    /// Most inputs per request, at most [`MAX_INPUTS_PER_REQUEST`].
    pub max_inputs_per_request: usize,
    /// Most tokens per request, at most [`MAX_TOKENS_PER_REQUEST`].
    pub max_tokens_per_request: usize,
    /// Most requests in flight at once.
    pub max_concurrency: usize,
    /// Longest a single attempt may take before it counts as a (retryable) timeout.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl OpenAiOptions {
    /// Defaults for OpenAI itself: `text-embedding-3-small`, 2048 inputs / 300k tokens per request,
    /// 4 requests in flight, 60 s per attempt.
    pub fn new(api_key: SecretString) -> OpenAiOptions {
        OpenAiOptions {
            api_key,
            base_url: DEFAULT_BASE_URL.to_string(),
            model: DEFAULT_OPENAI_MODEL.to_string(),
            dimensions: None,
            max_inputs_per_request: MAX_INPUTS_PER_REQUEST,
            max_tokens_per_request: MAX_TOKENS_PER_REQUEST,
            max_concurrency: 4,
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// Embeds through an OpenAI-compatible `/embeddings` endpoint.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    url: String,
    api_key: SecretString,
    model: String,
    dimensions: usize,
    /// Sent only when the caller asked for a length, so that servers without the parameter work.
    requested_dimensions: Option<u32>,
    tokenizer: Tokenizer,
    max_inputs: usize,
    max_tokens: usize,
    max_concurrency: usize,
    retry: RetryPolicy,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

/// Vector length of the models kb knows; others need an explicit `dimensions`.
fn native_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

impl OpenAiEmbedder {
    pub fn new(options: OpenAiOptions) -> Result<OpenAiEmbedder, EmbedError> {
        let dimensions = match (options.dimensions, native_dimensions(&options.model)) {
            (Some(0), _) => return Err(EmbedError::Config("dimensions must be at least 1".into())),
            (Some(requested), _) => requested,
            (None, Some(native)) => native,
            (None, None) => {
                return Err(EmbedError::Config(format!(
                    "unknown OpenAI model {:?}: set its vector length (dimensions)",
                    options.model
                )));
            }
        };
        let requested_dimensions = options
            .dimensions
            .map(|d| u32::try_from(d).map_err(|_| EmbedError::Config(format!("dimensions {d} is too large"))))
            .transpose()?;
        let tokenizer = Tokenizer::cl100k().map_err(|e| EmbedError::Config(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(OpenAiEmbedder {
            http,
            url: format!("{}/embeddings", options.base_url.trim_end_matches('/')),
            api_key: options.api_key,
            model: options.model,
            dimensions,
            requested_dimensions,
            tokenizer,
            max_inputs: options.max_inputs_per_request.clamp(1, MAX_INPUTS_PER_REQUEST),
            max_tokens: options.max_tokens_per_request.clamp(1, MAX_TOKENS_PER_REQUEST),
            max_concurrency: options.max_concurrency.max(1),
            retry: options.retry,
        })
    }

    /// Sends one request, retrying what can pass until the retry budget is spent.
    async fn embed_request(&self, texts: &[String], range: Range<usize>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let request = CreateEmbeddingRequest {
            model: self.model.clone(),
            input: EmbeddingInput::StringArray(texts[range.clone()].to_vec()),
            encoding_format: Some(EncodingFormat::Float),
            user: None,
            dimensions: self.requested_dimensions,
        };
        // Serialised once: every attempt sends the same bytes.
        let body = serde_json::to_vec(&request)
            .map_err(|e| EmbedError::Permanent(format!("cannot encode the request: {e}")))?;
        let started = Instant::now();
        let mut retries = 0;
        loop {
            let failure = match self.send_once(body.clone(), range.len()).await {
                Ok(vectors) => return Ok(vectors),
                Err(failure) => failure,
            };
            if !failure.error.is_retryable() {
                return Err(failure.error);
            }
            retries += 1;
            let wait = self.retry.delay(retries, failure.retry_after);
            if started.elapsed() + wait > self.retry.max_elapsed {
                return Err(EmbedError::Transient(format!(
                    "gave up after {retries} attempts in {:.1}s (next wait {:.1}s exceeds the {:.0}s retry budget): {}",
                    started.elapsed().as_secs_f64(),
                    wait.as_secs_f64(),
                    self.retry.max_elapsed.as_secs_f64(),
                    failure.error
                )));
            }
            warn!(
                first = range.start,
                inputs = range.len(),
                retry = retries,
                wait_ms = wait.as_millis() as u64,
                error = %failure.error,
                "embedding request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: the vectors in input order, or why not and how long the server asked to wait.
    async fn send_once(&self, body: Vec<u8>, expected: usize) -> Result<Vec<Vec<f32>>, Failure> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(self.api_key.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(Failure::transport)?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(Failure::transport)?;
        if !status.is_success() {
            // The error body is OpenAI's `{"error": {...}}` when the server follows the API;
            // anything else is reported as raw text.
            let api_error = serde_json::from_slice::<WrappedError>(&bytes).ok().map(|w| w.error);
            let code = api_error.as_ref().and_then(|e| e.code.as_deref().or(e.r#type.as_deref()));
            let detail = match &api_error {
                Some(e) => e.to_string(),
                None => String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned(),
            };
            let message = format!("HTTP {status}: {detail}");
            let error = if is_retryable_status(status, code) {
                EmbedError::Transient(message)
            } else {
                EmbedError::Permanent(message)
            };
            return Err(Failure { error, retry_after: wait });
        }
        let response: CreateEmbeddingResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::permanent(format!("the embeddings response is not valid: {e}")))?;
        order_vectors(response, expected, self.dimensions).map_err(Failure::permanent)
    }
}

/// A failed attempt, with the server's requested wait if it gave one.
struct Failure {
    error: EmbedError,
    retry_after: Option<Duration>,
}

impl Failure {
    fn permanent(message: String) -> Failure {
        Failure { error: EmbedError::Permanent(message), retry_after: None }
    }

    fn transport(error: reqwest::Error) -> Failure {
        let message = format!("request to the embeddings endpoint failed: {error}");
        let error = if is_retryable_transport(&error) {
            EmbedError::Transient(message)
        } else {
            EmbedError::Permanent(message)
        };
        Failure { error, retry_after: None }
    }
}

/// The response's vectors in input order, after checking there is exactly one of the right
/// length per input: a short or misshapen answer would otherwise pair texts with wrong vectors.
fn order_vectors(
    response: CreateEmbeddingResponse,
    expected: usize,
    dimensions: usize,
) -> Result<Vec<Vec<f32>>, String> {
    if response.data.len() != expected {
        return Err(format!("asked for {expected} embeddings, got {}", response.data.len()));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in response.data {
        let index = item.index as usize;
        if item.embedding.len() != dimensions {
            return Err(format!("embedding {index} has {} dimensions, expected {dimensions}", item.embedding.len()));
        }
        match slots.get_mut(index) {
            Some(slot @ None) => *slot = Some(item.embedding),
            Some(Some(_)) => return Err(format!("embedding index {index} appears twice")),
            None => return Err(format!("embedding index {index} is out of range for {expected} inputs")),
        }
    }
    // Every slot is filled: `expected` items with distinct in-range indices.
    Ok(slots.into_iter().flatten().collect())
}

/// Splits inputs (given by token count) into consecutive requests of at most `max_inputs`
/// inputs and `max_tokens` tokens each. Every single count must already be <= `max_tokens`.
pub(crate) fn plan_requests(token_counts: &[usize], max_inputs: usize, max_tokens: usize) -> Vec<Range<usize>> {
    let mut requests = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    for (i, &count) in token_counts.iter().enumerate() {
        let full = i - start == max_inputs || tokens + count > max_tokens;
        if full && i > start {
            requests.push(start..i);
            start = i;
            tokens = 0;
        }
        tokens += count;
    }
    if start < token_counts.len() {
        requests.push(start..token_counts.len());
    }
    requests
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_input_tokens(&self) -> usize {
        MAX_INPUT_TOKENS
    }

    fn tokenizer(&self) -> Tokenizer {
        self.tokenizer.clone()
    }

    #[instrument(skip_all, fields(model = %self.model, texts = texts.len()))]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Counting 2048 long texts with cl100k takes a noticeable slice of CPU; keep it off the
        // async workers.
        let tokenizer = self.tokenizer.clone();
        let owned = texts.to_vec();
        let counts = tokio::task::spawn_blocking(move || owned.iter().map(|t| tokenizer.count(t)).collect::<Vec<_>>())
            .await
            .map_err(|e| EmbedError::Permanent(format!("token counting failed: {e}")))?;
        for (index, (&tokens, text)) in counts.iter().zip(texts).enumerate() {
            if tokens > MAX_INPUT_TOKENS {
                return Err(EmbedError::InputTooLong { index, tokens, max: MAX_INPUT_TOKENS });
            }
            // The API rejects empty strings; say which text instead of failing the whole request.
            if text.is_empty() {
                return Err(EmbedError::Permanent(format!("text {index} is empty")));
            }
        }
        let requests = plan_requests(&counts, self.max_inputs, self.max_tokens);
        debug!(requests = requests.len(), tokens = counts.iter().sum::<usize>(), "sending embedding requests");
        let batches: Vec<Vec<Vec<f32>>> = futures::stream::iter(requests)
            .map(|range| self.embed_request(texts, range))
            .buffered(self.max_concurrency)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use async_openai::types::embeddings::{Embedding, EmbeddingUsage};

    use super::*;

    fn sizes(plan: &[Range<usize>]) -> Vec<usize> {
        plan.iter().map(|r| r.len()).collect()
    }

    fn assert_covers_in_order(plan: &[Range<usize>], n: usize) {
        let mut next = 0;
        for range in plan {
            assert_eq!(range.start, next);
            assert!(!range.is_empty());
            next = range.end;
        }
        assert_eq!(next, n);
    }

    #[test]
    fn requests_hold_at_most_2048_inputs() {
        let counts = vec![10; 5000];
        let plan = plan_requests(&counts, MAX_INPUTS_PER_REQUEST, MAX_TOKENS_PER_REQUEST);
        assert_eq!(sizes(&plan), vec![2048, 2048, 904]);
        assert_covers_in_order(&plan, 5000);
    }

    #[test]
    fn requests_hold_at_most_300k_tokens() {
        // 8000-token texts: 37 fit in 300k (296k), the 38th would not.
        let counts = vec![8000; 100];
        let plan = plan_requests(&counts, MAX_INPUTS_PER_REQUEST, MAX_TOKENS_PER_REQUEST);
        assert_eq!(sizes(&plan), vec![37, 37, 26]);
        assert_covers_in_order(&plan, 100);
        for range in &plan {
            assert!(counts[range.clone()].iter().sum::<usize>() <= MAX_TOKENS_PER_REQUEST);
        }
    }

    #[test]
    fn a_request_exactly_at_the_token_limit_is_not_split() {
        let plan = plan_requests(&[100_000, 100_000, 100_000, 1], 2048, 300_000);
        assert_eq!(sizes(&plan), vec![3, 1]);
    }

    #[test]
    fn mixed_sizes_respect_both_limits() {
        let counts: Vec<usize> = (0..10_000).map(|i| (i * 7919) % 8191 + 1).collect();
        let plan = plan_requests(&counts, 2048, 300_000);
        assert_covers_in_order(&plan, counts.len());
        for range in &plan {
            assert!(range.len() <= 2048);
            assert!(counts[range.clone()].iter().sum::<usize>() <= 300_000);
        }
    }

    #[test]
    fn no_inputs_means_no_requests() {
        assert!(plan_requests(&[], 2048, 300_000).is_empty());
    }

    fn response(items: Vec<(u32, Vec<f32>)>) -> CreateEmbeddingResponse {
        CreateEmbeddingResponse {
            object: "list".into(),
            model: "m".into(),
            data: items
                .into_iter()
                .map(|(index, embedding)| Embedding { index, object: "embedding".into(), embedding })
                .collect(),
            usage: EmbeddingUsage::default(),
        }
    }

    #[test]
    fn vectors_are_put_back_in_input_order() {
        let got = order_vectors(response(vec![(1, vec![1.0, 1.0]), (0, vec![0.0, 0.0])]), 2, 2).expect("valid");
        assert_eq!(got, vec![vec![0.0, 0.0], vec![1.0, 1.0]]);
    }

    #[test]
    fn a_wrong_count_length_or_index_is_rejected() {
        assert!(order_vectors(response(vec![(0, vec![0.0, 0.0])]), 2, 2).is_err());
        assert!(order_vectors(response(vec![(0, vec![0.0]), (1, vec![0.0])]), 2, 2).is_err());
        assert!(order_vectors(response(vec![(0, vec![0.0, 0.0]), (0, vec![0.0, 0.0])]), 2, 2).is_err());
        assert!(order_vectors(response(vec![(0, vec![0.0, 0.0]), (5, vec![0.0, 0.0])]), 2, 2).is_err());
    }

    #[test]
    fn unknown_models_need_explicit_dimensions() {
        let mut options = OpenAiOptions::new(SecretString::from("sk-test"));
        options.model = "my-own-model".into();
        assert!(matches!(OpenAiEmbedder::new(options.clone()), Err(EmbedError::Config(_))));
        options.dimensions = Some(768);
        let embedder = OpenAiEmbedder::new(options).expect("explicit dimensions");
        assert_eq!(embedder.dimensions(), 768);
    }

    #[test]
    fn the_default_model_has_1536_dimensions_and_an_8191_token_limit() {
        let embedder = OpenAiEmbedder::new(OpenAiOptions::new(SecretString::from("sk-test"))).expect("defaults");
        assert_eq!(embedder.model(), "text-embedding-3-small");
        assert_eq!(embedder.dimensions(), 1536);
        assert_eq!(embedder.max_input_tokens(), 8191);
        assert!(!format!("{embedder:?}").contains("sk-test"));
    }
}

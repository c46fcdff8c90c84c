//! Embedding: chunk texts -> vectors, behind one small trait ([`Embedder`]) with two providers:
//! the local sentence-transformers model run by kb's own BERT encoder ([`local`]) and OpenAI's
//! embeddings endpoint ([`openai`]). Callers hold the chosen provider as `Arc<dyn Embedder>`,
//! built once per process by [`from_config`].

mod bert;
pub mod local;
pub mod openai;
mod retry;

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;

use crate::chunk::Tokenizer;

pub(crate) use bert::simd_name;
pub use local::LocalEmbedder;
pub use openai::{OpenAiEmbedder, OpenAiOptions};
pub use retry::RetryPolicy;

/// The local model kb embeds with when no OpenAI key is configured.
pub const DEFAULT_LOCAL_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The OpenAI model kb embeds with when an OpenAI key is configured.
pub const DEFAULT_OPENAI_MODEL: &str = "text-embedding-3-small";

/// Turns texts into vectors with one fixed model.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    /// Model name stored with every vector, e.g. "sentence-transformers/all-MiniLM-L6-v2" or
    /// "text-embedding-3-small". Vectors of different models are never compared.
    fn model(&self) -> &str;
    /// Length of every vector this embedder returns.
    fn dimensions(&self) -> usize;
    /// Most tokens of text (special tokens excluded) the model reads without truncating: 254 for
    /// MiniLM (256 window minus [CLS]/[SEP]), 8191 for OpenAI.
    fn max_input_tokens(&self) -> usize;
    /// The tokenizer chunks are measured with, so that chunks fit [`Embedder::max_input_tokens`].
    fn tokenizer(&self) -> Tokenizer;
    /// One vector per text, in the same order. Batches internally. Never silently truncates: a
    /// text over [`Embedder::max_input_tokens`] is [`EmbedError::InputTooLong`], and nothing is
    /// embedded.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Why embedding failed, and so whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A failure that may pass: rate limit, server error, timeout, lost connection. Retries inside
    /// the provider were already spent; a later attempt (e.g. the next job run) may succeed.
    #[error("embedding failed, may succeed later: {0}")]
    Transient(String),
    /// A failure that retrying cannot fix: bad key, invalid request, exhausted quota, a response
    /// of the wrong shape, a model that fails to run.
    #[error("embedding failed: {0}")]
    Permanent(String),
    /// Text number `index` has more tokens than the model reads; kb never truncates silently.
    #[error("text {index} has {tokens} tokens, more than the model's limit of {max}")]
    InputTooLong { index: usize, tokens: usize, max: usize },
    /// The embedder could not be built: missing model files, unknown model, missing key.
    #[error("cannot set up the embedder: {0}")]
    Config(String),
}

impl EmbedError {
    /// Whether the same call may succeed if made again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            EmbedError::Transient(_) => true,
            EmbedError::Permanent(_) | EmbedError::InputTooLong { .. } | EmbedError::Config(_) => false,
        }
    }
}

/// Which provider embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    /// The local sentence-transformers model, run on this machine's CPU.
    #[default]
    Local,
    /// OpenAI's (or an OpenAI-compatible server's) embeddings endpoint.
    OpenAi,
}

/// Everything needed to build an embedder. The CLI fills it from flags and environment.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    pub provider: Provider,
    /// A directory in Hugging Face layout, or a hub id such as "sentence-transformers/all-MiniLM-L6-v2".
    pub local_model: String,
    pub openai_model: String,
    pub openai_api_key: Option<SecretString>,
    /// Base URL of an OpenAI-compatible API, e.g. "https://api.openai.com/v1".
    pub openai_base_url: Option<String>,
    /// Requested vector length for models that can shorten their output (`text-embedding-3-*`).
    pub openai_dimensions: Option<usize>,
    /// Most texts per forward pass of the local model (long texts get fewer; see `local`).
    /// OpenAI requests are always packed up to the API's limits instead: fewer, larger requests.
    pub batch_size: usize,
    /// Most OpenAI requests in flight at once.
    pub max_concurrency: usize,
    /// Backoff and the total time spent retrying one OpenAI request.
    pub retry: RetryPolicy,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            provider: Provider::Local,
            local_model: default_model_dir().display().to_string(),
            openai_model: DEFAULT_OPENAI_MODEL.to_string(),
            openai_api_key: None,
            openai_base_url: None,
            openai_dimensions: None,
            batch_size: 32,
            max_concurrency: 4,
            retry: RetryPolicy::default(),
        }
    }
}

impl EmbedConfig {
    /// The defaults, with an OpenAI key (which also selects the OpenAI provider) and base URL
    /// taken from `OPENAI_API_KEY` and `OPENAI_BASE_URL` when they are set and not empty.
    pub fn from_env() -> EmbedConfig {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        EmbedConfig::default()
            .with_openai_key(non_empty("OPENAI_API_KEY").map(SecretString::from))
            .with_openai_base_url(non_empty("OPENAI_BASE_URL"))
    }

    /// Sets the OpenAI key; a key selects the OpenAI provider, no key the local model.
    pub fn with_openai_key(mut self, key: Option<SecretString>) -> EmbedConfig {
        self.provider = if key.is_some() { Provider::OpenAi } else { Provider::Local };
        self.openai_api_key = key;
        self
    }

    pub fn with_openai_base_url(mut self, url: Option<String>) -> EmbedConfig {
        self.openai_base_url = url;
        self
    }
}

/// Where the local model lives: `KB_MODEL_DIR`, else `$XDG_CACHE_HOME/kb/models/all-MiniLM-L6-v2`,
/// else `~/.cache/kb/models/all-MiniLM-L6-v2` (where `scripts/setup.sh` installs it).
pub fn default_model_dir() -> PathBuf {
    let env_dir = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env_dir("KB_MODEL_DIR") {
        return dir;
    }
    cache_dir().join("models").join("all-MiniLM-L6-v2")
}

/// kb's cache: `$XDG_CACHE_HOME/kb`, else `~/.cache/kb` (the model, the benches' embeddings).
pub fn cache_dir() -> PathBuf {
    let env_dir = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = env_dir("XDG_CACHE_HOME")
        .or_else(|| env_dir("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("kb")
}

/// Builds the configured embedder. Loading the local model takes a second or two and ~100 MB,
/// so call this once per process and share the `Arc`.
pub async fn from_config(cfg: &EmbedConfig) -> Result<Arc<dyn Embedder>, EmbedError> {
    match cfg.provider {
        Provider::Local => {
            let embedder = LocalEmbedder::load(&cfg.local_model, cfg.batch_size).await?;
            Ok(Arc::new(embedder))
        }
        Provider::OpenAi => {
            let Some(api_key) = cfg.openai_api_key.clone() else {
                return Err(EmbedError::Config("the OpenAI provider needs an API key (OPENAI_API_KEY)".into()));
            };
            let mut options = OpenAiOptions::new(api_key);
            options.model = cfg.openai_model.clone();
            if let Some(url) = &cfg.openai_base_url {
                options.base_url = url.clone();
            }
            options.dimensions = cfg.openai_dimensions;
            options.max_concurrency = cfg.max_concurrency.max(1);
            options.retry = cfg.retry.clone();
            Ok(Arc::new(OpenAiEmbedder::new(options)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(EmbedError::Transient("503".into()).is_retryable());
        assert!(!EmbedError::Permanent("401".into()).is_retryable());
        assert!(!EmbedError::InputTooLong { index: 0, tokens: 300, max: 254 }.is_retryable());
        assert!(!EmbedError::Config("no key".into()).is_retryable());
    }

    #[test]
    fn a_key_selects_openai_and_no_key_the_local_model() {
        let with_key = EmbedConfig::default().with_openai_key(Some(SecretString::from("sk-test")));
        assert_eq!(with_key.provider, Provider::OpenAi);
        let without = with_key.with_openai_key(None);
        assert_eq!(without.provider, Provider::Local);
    }

    #[test]
    fn the_config_debug_output_hides_the_key() {
        let cfg = EmbedConfig::default().with_openai_key(Some(SecretString::from("sk-very-secret")));
        assert!(!format!("{cfg:?}").contains("sk-very-secret"));
    }
}

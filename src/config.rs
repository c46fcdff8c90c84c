//! Configuration shared by every command: where the database is, which embedder to use, how
//! to chunk. Each field reads a flag or an environment variable; see `.env.example`.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::chunk::{BudgetError, TokenBudget};
use crate::embed::EmbedConfig;
use crate::extract::ExtractLimits;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// PostgreSQL URL (with pgvector 0.8+). Unset: kb runs its own cluster in --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<SecretString>,

    /// Where kb keeps its embedded PostgreSQL cluster [default: $XDG_DATA_HOME/kb or ~/.local/share/kb]
    #[arg(long, env = "KB_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Local embedding model: a directory in Hugging Face layout, or a hub id
    /// [default: ~/.cache/kb/models/all-MiniLM-L6-v2, installed by scripts/setup.sh]
    #[arg(long, env = "KB_MODEL", global = true)]
    pub model: Option<String>,

    /// Embed with OpenAI (or a compatible server) using this key instead of the local model.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, global = true)]
    pub openai_api_key: Option<SecretString>,

    /// Base URL of an OpenAI-compatible API.
    #[arg(long, env = "OPENAI_BASE_URL", global = true)]
    pub openai_base_url: Option<String>,

    /// OpenAI embedding model.
    #[arg(long, env = "KB_OPENAI_MODEL", default_value = "text-embedding-3-small", global = true)]
    pub openai_model: String,

    /// Largest chunk, in tokens of the embedding model's tokenizer.
    #[arg(long, env = "KB_CHUNK_TOKENS", default_value_t = 200, global = true)]
    pub chunk_tokens: usize,

    /// Tokens each chunk shares with the one before it.
    #[arg(long, env = "KB_CHUNK_OVERLAP", default_value_t = 32, global = true)]
    pub chunk_overlap: usize,

    /// Seconds extracting and chunking one document may take before it is stopped and fails.
    #[arg(long, env = "KB_EXTRACT_TIMEOUT_SECS", default_value_t = 60, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub extract_timeout_secs: u64,

    /// Memory (address space, MiB) of the process that parses PDF, HTML and large documents.
    #[arg(long, env = "KB_EXTRACT_MAX_MEMORY_MB", default_value_t = 1024, global = true,
          value_parser = clap::value_parser!(u64).range(64..))]
    pub extract_max_memory_mb: u64,

    /// Most chunks one document may have; a document with more fails.
    #[arg(long, env = "KB_MAX_CHUNKS_PER_DOCUMENT", default_value_t = 20_000, global = true)]
    pub max_chunks_per_document: usize,

    /// Wall-clock limit of one document's processing (extraction, embedding, writing); a
    /// document that takes longer fails, and its job's lease is not renewed past it.
    #[arg(long, env = "KB_JOB_TIMEOUT_SECS", default_value_t = 1800, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub job_timeout_secs: u64,

    /// Documents processed at once.
    #[arg(long, env = "KB_PARALLELISM", default_value_t = default_parallelism(), global = true)]
    pub parallelism: usize,

    /// Log as JSON lines (for production) instead of text.
    #[arg(long, env = "KB_LOG_JSON", global = true)]
    pub log_json: bool,
}

/// Four documents per core: most of a document's time outside the model is spent waiting on
/// the database, and CPU work goes to the rayon pool anyway (measured with `kb bench ingest`).
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map(|n| n.get() * 4).unwrap_or(8).clamp(4, 16)
}

impl Config {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(crate::cluster::Cluster::default_data_dir)
    }

    /// The chunk budget, checked against the embedding model's window.
    pub fn budget(&self, window: usize) -> Result<TokenBudget, BudgetError> {
        TokenBudget::new(self.chunk_tokens, self.chunk_overlap, window)
    }

    /// Which embedder to build: OpenAI when a key is configured, else the local model.
    pub fn embed_config(&self) -> EmbedConfig {
        let mut cfg = EmbedConfig::default()
            .with_openai_key(self.openai_api_key.clone())
            .with_openai_base_url(self.openai_base_url.clone());
        if let Some(model) = &self.model {
            cfg.local_model = model.clone();
        }
        cfg.openai_model = self.openai_model.clone();
        cfg
    }

    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs(self.job_timeout_secs)
    }

    pub fn extract_limits(&self) -> ExtractLimits {
        ExtractLimits {
            worker: None,
            timeout: Duration::from_secs(self.extract_timeout_secs),
            max_memory_bytes: self.extract_max_memory_mb.saturating_mul(1024 * 1024),
            max_chunks: self.max_chunks_per_document.max(1),
        }
    }
}

//! Configuration shared by every command: where the database is, which embedder to use, how
//! to chunk. Each field reads a flag or an environment variable; see `.env.example`.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::chunk::{BudgetError, TokenBudget};
use crate::embed::EmbedConfig;
use crate::extract::PdfLimits;

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

    /// Seconds the PDF parser may run on one file before it is stopped.
    #[arg(long, env = "KB_PDF_TIMEOUT_SECS", default_value_t = 60, global = true)]
    pub pdf_timeout_secs: u64,

    /// Documents processed at once.
    #[arg(long, env = "KB_PARALLELISM", default_value_t = default_parallelism(), global = true)]
    pub parallelism: usize,

    /// Log as JSON lines (for production) instead of text.
    #[arg(long, env = "KB_LOG_JSON", global = true)]
    pub log_json: bool,
}

/// Four documents per core: most of a document's time outside the model is spent waiting on
/// the database, and CPU work goes to the rayon pool anyway (measured in benches/ingest.rs).
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

    pub fn pdf_limits(&self) -> PdfLimits {
        PdfLimits { timeout: Duration::from_secs(self.pdf_timeout_secs), ..PdfLimits::default() }
    }
}

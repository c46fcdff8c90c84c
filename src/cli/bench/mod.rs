//! `kb bench`: measurements an operator can reproduce on their own machine.

mod embed;
mod ingest;
mod search;
mod vectors;

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Vector search on realistic rows: recall@10 against exact search, latency and
    /// throughput of kb's SQL and HTTP search and of the spec's function, an index-effort
    /// sweep, filtered queries; writes the rows for the side-by-side engines.
    Search(search::SearchBenchArgs),
    /// Ingestion throughput (documents/s, chunks/s, MB/s) with a zero-cost embedder (the
    /// pipeline's overhead), an OpenAI-compatible stand-in with latency and the local model;
    /// re-ingest; throughput by `kb worker` process count; peak memory.
    Ingest(ingest::IngestBenchArgs),
    /// The local embedder over stdin/stdout (JSON lines), for `benches/embed_side_by_side.sh`,
    /// which times it against sentence-transformers in turns.
    Embed(embed::EmbedBenchArgs),
}

pub async fn run(config: &Config, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Search(args) => search::run(config, args).await,
        BenchCommand::Ingest(args) => ingest::run(config, args).await,
        BenchCommand::Embed(args) => embed::run(args).await,
    }
}

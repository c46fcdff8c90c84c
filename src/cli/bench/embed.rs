//! `kb bench embed`: kb's local embedder driven over stdin/stdout, so that a side-by-side
//! script (`benches/embed_side_by_side.sh`) can time it and sentence-transformers in turns, in
//! one run, on the same texts. Each input line is a JSON request `{"texts": [...], "reps":
//! n, "batch": b}`; each output line answers it with the seconds of every repetition, the
//! vectors of the last one and the instruction set of the encoder's kernels (`simd`). The model is loaded once, before the first request.

use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

use crate::embed::{self, Embedder, LocalEmbedder};

#[derive(Debug, clap::Args)]
pub struct EmbedBenchArgs {
    /// The model directory (default: the local model `scripts/setup.sh` installs).
    #[arg(long)]
    pub model_dir: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
struct Request {
    texts: Vec<String>,
    #[serde(default = "one")]
    reps: usize,
    /// Most texts per forward pass (the embedder's batch size); default the server's.
    batch: Option<usize>,
}

fn one() -> usize {
    1
}

pub async fn run(args: EmbedBenchArgs) -> anyhow::Result<()> {
    let dir = args.model_dir.unwrap_or_else(embed::default_model_dir);
    let dir = dir.to_str().context("the model directory is not UTF-8")?.to_string();
    let mut models: Vec<(usize, LocalEmbedder)> = Vec::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("reading a request")?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = serde_json::from_str(&line).context("a request is not valid JSON")?;
        let batch = request.batch.unwrap_or(embed::EmbedConfig::default().batch_size);
        if !models.iter().any(|(b, _)| *b == batch) {
            models.push((batch, LocalEmbedder::load(&dir, batch).await.context("loading the local model")?));
        }
        let model = models.iter().find(|(b, _)| *b == batch).map(|(_, m)| m).context("the model is loaded")?;
        let mut seconds = Vec::with_capacity(request.reps);
        let mut vectors = Vec::new();
        for _ in 0..request.reps.max(1) {
            let started = Instant::now();
            vectors = model.embed(&request.texts).await.context("embedding")?;
            seconds.push(started.elapsed().as_secs_f64());
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", json!({ "seconds": seconds, "vectors": vectors, "simd": embed::simd_name() }))?;
        out.flush()?;
    }
    Ok(())
}

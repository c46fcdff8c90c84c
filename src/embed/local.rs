//! The local embedder: a sentence-transformers BERT model (all-MiniLM-L6-v2 by default) run on
//! the CPU by kb's own encoder (`bert.rs`), reproducing sentence-transformers' output: the
//! model's own tokenizer, mean (or CLS) pooling over each text's tokens, and L2 normalisation
//! when the model declares it. A batch packs its texts without padding.
//!
//! One thread runs the model for the whole process. Calls that arrive while it is busy wait in
//! its queue and then share forward passes (up to the batch size in texts): ingestion embeds a
//! document's few chunks per call, several documents at once, and small passes that compete
//! for the cores waste most of them. Queries (calls of one text, as a search makes) go first:
//! ahead of the waiting calls, and between the passes of a call that needs several.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{debug, instrument};

use super::bert::{Config as BertConfig, Encoder};
use super::{DEFAULT_LOCAL_MODEL, EmbedError, Embedder};
use crate::chunk::Tokenizer;

/// How token vectors become one text vector (sentence-transformers' `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average of the token vectors, padding excluded.
    Mean,
    /// The [CLS] token's vector.
    Cls,
}

/// A sentence-transformers model loaded once and shared; the model runs on its own thread,
/// fed through `queue`.
pub struct LocalEmbedder {
    name: String,
    model: Arc<Model>,
    tokenizer: Tokenizer,
    queue: mpsc::Sender<Request>,
}

/// One `embed` call waiting for the model's thread.
struct Request {
    texts: Vec<String>,
    /// The caller's span, so that batch logs nest under the call.
    span: tracing::Span,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("name", &self.name)
            .field("dimensions", &self.model.dimensions)
            .field("max_input_tokens", &self.model.max_input_tokens)
            .field("pooling", &self.model.pooling)
            .field("normalize", &self.model.normalize)
            .finish_non_exhaustive()
    }
}

/// What runs on the model's thread.
struct Model {
    encoder: Encoder,
    tokenizer: Arc<tokenizers::Tokenizer>,
    pooling: Pooling,
    normalize: bool,
    dimensions: usize,
    max_input_tokens: usize,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

/// The files a model directory in Hugging Face layout provides. The sentence-transformers
/// files are optional: a plain BERT checkpoint gets mean pooling, no normalisation and the
/// position-embedding window.
struct ModelFiles {
    config: PathBuf,
    tokenizer: PathBuf,
    weights: PathBuf,
    pooling: Option<PathBuf>,
    modules: Option<PathBuf>,
    sentence_bert: Option<PathBuf>,
}

impl ModelFiles {
    fn in_dir(dir: &Path) -> ModelFiles {
        let optional = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        ModelFiles {
            config: dir.join("config.json"),
            tokenizer: dir.join("tokenizer.json"),
            weights: dir.join("model.safetensors"),
            pooling: optional("1_Pooling/config.json"),
            modules: optional("modules.json"),
            sentence_bert: optional("sentence_bert_config.json"),
        }
    }

    /// The first 12 hex digits of a sha256 over every file that decides the vectors (weights,
    /// config, tokenizer, pooling and modules), each with its role and length: two models
    /// share a name only when they would give the same vectors.
    fn fingerprint(&self) -> Result<String, EmbedError> {
        let mut hasher = Sha256::new();
        let files = [
            ("config", Some(&self.config)),
            ("tokenizer", Some(&self.tokenizer)),
            ("weights", Some(&self.weights)),
            ("pooling", self.pooling.as_ref()),
            ("modules", self.modules.as_ref()),
            ("sentence_bert", self.sentence_bert.as_ref()),
        ];
        for (role, path) in files {
            let Some(path) = path else { continue };
            let unreadable = |e: std::io::Error| EmbedError::Config(format!("cannot read {}: {e}", path.display()));
            let mut file = std::fs::File::open(path).map_err(unreadable)?;
            let len = file.metadata().map_err(unreadable)?.len();
            hasher.update(role.as_bytes());
            hasher.update(len.to_le_bytes());
            // Streamed: the weights are not read into memory a second time.
            std::io::copy(&mut file, &mut hasher).map_err(unreadable)?;
        }
        let digest = hasher.finalize();
        Ok(digest.iter().take(6).map(|b| format!("{b:02x}")).collect())
    }

    /// Fetches (or finds in the hub cache) the files of a model on the Hugging Face hub.
    async fn from_hub(id: &str) -> Result<ModelFiles, EmbedError> {
        let api = hf_hub::api::tokio::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot reach the Hugging Face hub: {e}")))?;
        let repo = api.model(id.to_string());
        let required = |name: &'static str| {
            let repo = &repo;
            async move {
                repo.get(name).await.map_err(|e| {
                    EmbedError::Config(format!("cannot fetch {name} of {id:?} from the Hugging Face hub: {e}"))
                })
            }
        };
        // Optional files: a model without them is still a valid BERT model.
        let optional = |name: &'static str| {
            let repo = &repo;
            async move { repo.get(name).await.ok() }
        };
        Ok(ModelFiles {
            config: required("config.json").await?,
            tokenizer: required("tokenizer.json").await?,
            weights: required("model.safetensors").await?,
            pooling: optional("1_Pooling/config.json").await,
            modules: optional("modules.json").await,
            sentence_bert: optional("sentence_bert_config.json").await,
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let bytes = std::fs::read(path).map_err(|e| EmbedError::Config(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| EmbedError::Config(format!("{} is not valid: {e}", path.display())))
}

impl LocalEmbedder {
    /// Loads a model from a directory in Hugging Face layout or, when `source` is not an existing
    /// directory, by hub id (e.g. "sentence-transformers/all-MiniLM-L6-v2"). `batch_size` is the
    /// most texts per forward pass.
    pub async fn load(source: &str, batch_size: usize) -> Result<LocalEmbedder, EmbedError> {
        let dir = Path::new(source);
        let (files, base_name) = if dir.is_dir() {
            (ModelFiles::in_dir(dir), model_name_of_dir(dir))
        } else {
            (ModelFiles::from_hub(source).await?, source.to_string())
        };
        // Reading 90 MB of weights, hashing them and building the model is blocking work.
        let (model, fingerprint) = tokio::task::spawn_blocking(move || {
            let fingerprint = files.fingerprint()?;
            Ok::<_, EmbedError>((Model::load(&files)?, fingerprint))
        })
        .await
        .map_err(|e| EmbedError::Config(format!("loading the model panicked: {e}")))??;
        let name = format!("{base_name}@{fingerprint}");
        debug!(
            model = %name,
            dimensions = model.dimensions,
            max_input_tokens = model.max_input_tokens,
            pooling = ?model.pooling,
            normalize = model.normalize,
            "loaded local embedding model"
        );
        let model = Arc::new(model);
        let (queue, requests) = mpsc::channel();
        let runner = model.clone();
        let batch_size = batch_size.max(1);
        // The thread ends when the embedder (the queue's only sender) is dropped.
        std::thread::Builder::new()
            .name("kb-embed".into())
            .spawn(move || Queue { model: &runner, requests: &requests, waiting: VecDeque::new(), batch_size }.run())
            .map_err(|e| EmbedError::Config(format!("cannot start the embedding thread: {e}")))?;
        Ok(LocalEmbedder { name, tokenizer: Tokenizer::HuggingFace(model.tokenizer.clone()), model, queue })
    }

    /// How token vectors are pooled into a text vector.
    pub fn pooling(&self) -> Pooling {
        self.model.pooling
    }

    /// Whether vectors are L2-normalised (unit length).
    pub fn normalizes(&self) -> bool {
        self.model.normalize
    }
}

/// The model's thread: its queue, and the calls taken from it and not yet answered.
struct Queue<'a> {
    model: &'a Model,
    requests: &'a mpsc::Receiver<Request>,
    waiting: VecDeque<Request>,
    batch_size: usize,
}

impl Queue<'_> {
    /// Answers calls until the embedder (the queue's only sender) is dropped.
    fn run(mut self) {
        loop {
            if self.waiting.is_empty() {
                match self.requests.recv() {
                    Ok(request) => self.waiting.push_back(request),
                    Err(_) => return,
                }
            }
            self.receive();
            let group = self.next_group();
            let model = self.model;
            let batch_size = self.batch_size;
            // A panic fails the calls of this group (their replies are dropped), not the thread.
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                answer(model, group, batch_size, &mut || self.answer_queries())
            }));
            if answered.is_err() {
                tracing::error!("the embedding model panicked; its callers got an error");
            }
        }
    }

    /// Moves the calls that have arrived into `waiting`, without blocking.
    fn receive(&mut self) {
        while let Ok(request) = self.requests.try_recv() {
            self.waiting.push_back(request);
        }
    }

    /// The calls to run together next, up to the batch size in texts: the waiting queries
    /// (calls of one text, as a search makes) before anything else, else the oldest calls.
    fn next_group(&mut self) -> Vec<Request> {
        let queries = self.take_queries();
        if !queries.is_empty() {
            return queries;
        }
        let mut group = Vec::new();
        let mut texts = 0;
        while texts < self.batch_size {
            let Some(next) = self.waiting.pop_front() else { break };
            texts += next.texts.len();
            group.push(next);
        }
        group
    }

    /// Takes the waiting calls of one text, in arrival order, up to the batch size.
    fn take_queries(&mut self) -> Vec<Request> {
        let mut queries = Vec::new();
        let mut rest = VecDeque::with_capacity(self.waiting.len());
        for request in self.waiting.drain(..) {
            if request.texts.len() == 1 && queries.len() < self.batch_size {
                queries.push(request);
            } else {
                rest.push_back(request);
            }
        }
        self.waiting = rest;
        queries
    }

    /// Between two passes of a call that needs several: the queries that arrived meanwhile,
    /// so that a search waits for one pass of ingestion, not for a whole document.
    fn answer_queries(&mut self) {
        self.receive();
        let queries = self.take_queries();
        if !queries.is_empty() {
            answer(self.model, queries, self.batch_size, &mut || {});
        }
    }
}

/// Answers `group` from shared forward passes; `between_passes` runs after each pass.
fn answer(model: &Model, mut group: Vec<Request>, batch_size: usize, between_passes: &mut dyn FnMut()) {
    if group.len() == 1 {
        answer_alone(model, group.remove(0), batch_size, between_passes);
        return;
    }
    let texts: Vec<String> = group.iter().flat_map(|r| r.texts.iter().cloned()).collect();
    match model.embed(&texts, batch_size, between_passes) {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            for request in group {
                let own: Vec<Vec<f32>> = vectors.by_ref().take(request.texts.len()).collect();
                let _ = request.reply.send(Ok(own));
            }
        }
        // One call's bad input (a text over the window) must not fail the others, and its
        // error must name its own text: each call runs alone. Lengths are checked before any
        // forward pass, so the failed group cost only its tokenization.
        Err(_) => group.into_iter().for_each(|request| answer_alone(model, request, batch_size, between_passes)),
    }
}

fn answer_alone(model: &Model, request: Request, batch_size: usize, between_passes: &mut dyn FnMut()) {
    let result = request.span.in_scope(|| model.embed(&request.texts, batch_size, between_passes));
    let _ = request.reply.send(result);
}

/// The readable part of the name stored with vectors of a model loaded from a directory: the
/// directory's name, so the same model gives the same name wherever it is installed; the
/// default model's directory maps to its hub id, which is also its name from the hub. The
/// stored name adds the model's fingerprint: `<name>@<12 hex digits>`.
fn model_name_of_dir(dir: &Path) -> String {
    let dir_name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    match DEFAULT_LOCAL_MODEL.split_once('/') {
        Some((_, default_name)) if dir_name == default_name => DEFAULT_LOCAL_MODEL.to_string(),
        _ => dir_name,
    }
}

impl Model {
    fn load(files: &ModelFiles) -> Result<Model, EmbedError> {
        let config: BertConfig = read_json(&files.config)?;
        let pooling = match &files.pooling {
            Some(path) => pooling_mode(&read_json(path)?)?,
            None => Pooling::Mean,
        };
        let normalize = match &files.modules {
            Some(path) => {
                let modules: Vec<ModuleEntry> = read_json(path)?;
                modules.iter().any(|m| m.kind.ends_with("models.Normalize"))
            }
            None => false,
        };
        let seq_len = match &files.sentence_bert {
            Some(path) => read_json::<SentenceBertConfig>(path)?.max_seq_length,
            None => None,
        };
        // The model reads at most max_seq_length tokens (sentence-transformers truncates there),
        // never more than it has positions for; [CLS] and [SEP] take two of them.
        let window = seq_len.unwrap_or(config.max_position_embeddings).min(config.max_position_embeddings);
        let max_input_tokens = window.saturating_sub(2);

        // Truncation and padding off: truncation would hide over-long texts, and we pad per batch.
        let tokenizer = match Tokenizer::from_file(&files.tokenizer) {
            Ok(Tokenizer::HuggingFace(t)) => t,
            Ok(Tokenizer::Tiktoken(_)) => return Err(EmbedError::Config("expected a Hugging Face tokenizer".into())),
            Err(e) => return Err(EmbedError::Config(e.to_string())),
        };

        // Read into memory rather than mmap: mmap is `unsafe`, which this crate forbids, and 90 MB
        // is read once per process.
        let weights = std::fs::read(&files.weights)
            .map_err(|e| EmbedError::Config(format!("cannot read {}: {e}", files.weights.display())))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| EmbedError::Config(format!("{} is not valid safetensors: {e}", files.weights.display())))?;
        let encoder =
            Encoder::load(vb, &config).map_err(|e| EmbedError::Config(format!("cannot build the model: {e}")))?;
        Ok(Model { encoder, tokenizer, pooling, normalize, dimensions: config.hidden_size, max_input_tokens })
    }

    /// Tokenises, checks lengths, and embeds in batches of similar length, running
    /// `between_passes` after each. Blocking.
    fn embed(
        &self,
        texts: &[String],
        batch_size: usize,
        between_passes: &mut dyn FnMut(),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Permanent(format!("tokenising failed: {e}")))?;
        for (index, encoding) in encodings.iter().enumerate() {
            let special = encoding.get_special_tokens_mask().iter().filter(|&&m| m == 1).count();
            let tokens = encoding.len() - special;
            if tokens > self.max_input_tokens {
                return Err(EmbedError::InputTooLong { index, tokens, max: self.max_input_tokens });
            }
        }
        let lengths: Vec<usize> = encodings.iter().map(|e| e.len()).collect();
        embed_in_length_batches(&lengths, batch_size, MAX_BATCH_TOKENS, |batch| {
            let batch: Vec<&tokenizers::Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
            let vectors = self.embed_batch(&batch);
            between_passes();
            vectors
        })
    }

    /// One forward pass over a batch of texts, packed without padding.
    fn embed_batch(&self, batch: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = std::time::Instant::now();
        let ids: Vec<&[u32]> = batch.iter().map(|e| e.get_ids()).collect();
        let vectors = self
            .encoder
            .forward(&ids, |rows| self.pool(rows))
            .map_err(|e| EmbedError::Permanent(format!("running the model: {e}")))?;
        debug!(
            texts = batch.len(),
            tokens = ids.iter().map(|t| t.len()).sum::<usize>(),
            ms = started.elapsed().as_millis() as u64,
            "embedded batch"
        );
        Ok(vectors)
    }

    /// One text's token vectors (`[tokens, dimensions]`, row-major) -> its vector.
    fn pool(&self, tokens: &[f32]) -> Vec<f32> {
        let mut pooled = vec![0f32; self.dimensions];
        let rows = tokens.chunks_exact(self.dimensions);
        let count = rows.len().max(1) as f32;
        match self.pooling {
            Pooling::Cls => {
                if let Some(first) = tokens.get(..self.dimensions) {
                    pooled.copy_from_slice(first);
                }
            }
            Pooling::Mean => {
                for token in rows {
                    pooled.iter_mut().zip(token).for_each(|(p, t)| *p += t);
                }
                pooled.iter_mut().for_each(|p| *p /= count);
            }
        }
        if self.normalize {
            // As torch.nn.functional.normalize: divide by max(norm, 1e-12).
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|p| *p /= norm);
        }
        pooled
    }
}

fn pooling_mode(config: &PoolingConfig) -> Result<Pooling, EmbedError> {
    if config.pooling_mode_max_tokens || config.pooling_mode_mean_sqrt_len_tokens {
        return Err(EmbedError::Config("only mean and CLS pooling are supported".into()));
    }
    match (config.pooling_mode_mean_tokens, config.pooling_mode_cls_token) {
        (true, false) => Ok(Pooling::Mean),
        (false, true) => Ok(Pooling::Cls),
        _ => Err(EmbedError::Config("the pooling config must select exactly one of mean or CLS pooling".into())),
    }
}

/// Most tokens in one forward pass. A pass holds a few `[tokens, 4·hidden]` activations
/// (6 KB per token for all-MiniLM-L6-v2's 1536-wide feed-forward layer): about 12 MB each at
/// 2,048 tokens. 1,024, 2,048 and 4,096 measured the same within this machine's noise.
pub(crate) const MAX_BATCH_TOKENS: usize = 2048;

/// Groups item indices into batches of similar length: sorted by length, at most `max_texts`
/// and at most `max_tokens` tokens per batch. A single item always forms a batch, whatever
/// its length.
pub(crate) fn length_batches(lengths: &[usize], max_texts: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable sort: equal lengths keep their input order, which keeps runs reproducible.
    order.sort_by_key(|&i| lengths[i]);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut tokens = 0;
    for index in order {
        if !current.is_empty() && (current.len() == max_texts.max(1) || tokens + lengths[index] > max_tokens) {
            batches.push(std::mem::take(&mut current));
            tokens = 0;
        }
        tokens += lengths[index];
        current.push(index);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Embeds items in [`length_batches`] and returns the vectors in the original order.
/// `embed_batch` gets item indices and returns one vector per index, in that order.
pub(crate) fn embed_in_length_batches<F>(
    lengths: &[usize],
    max_texts: usize,
    max_cells: usize,
    mut embed_batch: F,
) -> Result<Vec<Vec<f32>>, EmbedError>
where
    F: FnMut(&[usize]) -> Result<Vec<Vec<f32>>, EmbedError>,
{
    let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); lengths.len()];
    for batch in length_batches(lengths, max_texts, max_cells) {
        let embedded = embed_batch(&batch)?;
        if embedded.len() != batch.len() {
            return Err(EmbedError::Permanent(format!(
                "the model returned {} vectors for {} texts",
                embedded.len(),
                batch.len()
            )));
        }
        for (&index, vector) in batch.iter().zip(embedded) {
            vectors[index] = vector;
        }
    }
    Ok(vectors)
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.model.dimensions
    }

    fn max_input_tokens(&self) -> usize {
        self.model.max_input_tokens
    }

    fn tokenizer(&self) -> Tokenizer {
        self.tokenizer.clone()
    }

    #[instrument(skip_all, fields(model = %self.name, texts = texts.len()))]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // The forward passes keep the cores busy for up to seconds: never on the async workers.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = Request { texts: texts.to_vec(), span: tracing::Span::current(), reply };
        self.queue.send(request).map_err(|_| EmbedError::Permanent("the embedding thread stopped".into()))?;
        answer
            .await
            .map_err(|_| EmbedError::Permanent("the embedding model failed on this call (see the log)".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake model for the batching tests: each item's vector is `[index, batch_width]`.
    fn fake_embed_batch(lengths: &[usize], batch: &[usize], seen: &mut Vec<Vec<usize>>) -> Vec<Vec<f32>> {
        seen.push(batch.to_vec());
        let width = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
        batch.iter().map(|&i| vec![i as f32, width as f32]).collect()
    }

    #[test]
    fn length_batching_restores_the_input_order() {
        let lengths = [50, 3, 200, 7, 3, 120, 9, 64, 2, 180];
        let mut seen = Vec::new();
        let vectors =
            embed_in_length_batches(&lengths, 3, usize::MAX, |batch| Ok(fake_embed_batch(&lengths, batch, &mut seen)))
                .expect("fake model never fails");
        let indices: Vec<f32> = vectors.iter().map(|v| v[0]).collect();
        assert_eq!(indices, (0..lengths.len()).map(|i| i as f32).collect::<Vec<_>>());
        assert!(seen.iter().all(|b| b.len() <= 3));
        assert_eq!(seen.iter().map(Vec::len).sum::<usize>(), lengths.len());
    }

    #[test]
    fn batches_group_similar_lengths_so_short_texts_are_not_padded_to_long_ones() {
        let lengths = [250, 5, 240, 6, 230, 4];
        let mut seen = Vec::new();
        let vectors =
            embed_in_length_batches(&lengths, 3, usize::MAX, |batch| Ok(fake_embed_batch(&lengths, batch, &mut seen)))
                .expect("fake model never fails");
        // Each short text is padded only to 6, not to 250.
        for i in [1, 3, 5] {
            assert_eq!(vectors[i][1], 6.0);
        }
        assert_eq!(seen, vec![vec![5, 1, 3], vec![4, 2, 0]]);
    }

    #[test]
    fn long_texts_get_smaller_batches_than_short_ones() {
        let mut lengths = vec![256; 40];
        lengths.extend(vec![30; 40]);
        let batches = length_batches(&lengths, 32, MAX_BATCH_TOKENS);
        let mut seen: Vec<usize> = batches.concat();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>(), "every text in exactly one batch");
        // The short texts fill a batch of 32; the long ones as many as the token budget holds.
        assert_eq!(batches[0].len(), 32);
        assert!(batches.iter().all(|b| b.len() <= 32));
        for batch in &batches {
            assert!(batch.iter().map(|&i| lengths[i]).sum::<usize>() <= MAX_BATCH_TOKENS);
        }
    }

    #[test]
    fn a_text_too_long_for_the_token_budget_still_gets_a_batch_of_its_own() {
        assert_eq!(length_batches(&[5, 1000, 6], 32, 100), vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn a_model_returning_too_few_vectors_is_an_error() {
        let result = embed_in_length_batches(&[1, 2, 3], 8, usize::MAX, |batch| Ok(vec![vec![0.0]; batch.len() - 1]));
        assert!(matches!(result, Err(EmbedError::Permanent(_))));
    }

    #[test]
    fn pooling_config_selects_mean_or_cls() {
        let config = |mean, cls, max| PoolingConfig {
            pooling_mode_cls_token: cls,
            pooling_mode_mean_tokens: mean,
            pooling_mode_max_tokens: max,
            pooling_mode_mean_sqrt_len_tokens: false,
        };
        assert_eq!(pooling_mode(&config(true, false, false)).ok(), Some(Pooling::Mean));
        assert_eq!(pooling_mode(&config(false, true, false)).ok(), Some(Pooling::Cls));
        assert!(pooling_mode(&config(false, false, true)).is_err());
        assert!(pooling_mode(&config(true, true, false)).is_err());
    }

    #[test]
    fn the_default_model_directory_is_named_by_its_hub_id() {
        let parent = tempfile::tempdir().expect("temp dir");
        let dir = parent.path().join("all-MiniLM-L6-v2");
        std::fs::create_dir(&dir).expect("create dir");
        assert_eq!(model_name_of_dir(&dir), DEFAULT_LOCAL_MODEL);
        let other = parent.path().join("bge-small-en-v1.5");
        std::fs::create_dir(&other).expect("create dir");
        assert_eq!(model_name_of_dir(&other), "bge-small-en-v1.5");
    }
}

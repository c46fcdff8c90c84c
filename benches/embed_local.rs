//! Local embedding throughput: texts per second of all-MiniLM-L6-v2 through kb's encoder on the
//! CPU, for texts of exactly 32, 128 and 256 tokens ([CLS]/[SEP] included), 64 texts per `embed`
//! call (batches of 32 inside). Absolute figures move with the machine's load; the comparison
//! with Python sentence-transformers on the same texts is `benches/embed_side_by_side.sh`,
//! which alternates the two in one run. Needs the model installed by `scripts/setup.sh` (or
//! `KB_MODEL_DIR`).
//!
//!     cargo bench --bench embed_local            # full run
//!     cargo bench --bench embed_local -- --quick # a rough number in a minute or two

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kb::chunk::Tokenizer;
use kb::embed::{self, Embedder, LocalEmbedder};

/// The same paragraph `benches/embed_side_by_side.py` cuts its texts from.
const PARAGRAPH: &str = "When you open a project after a few months away, the hardest part is remembering where things \
live. The notes you took are scattered across markdown files, issue comments and commit messages, \
and a plain text search only helps if you remember the exact words you used at the time. A local \
semantic index solves this by splitting every file into passages, turning each passage into a \
vector with a small language model, and storing the vectors next to the original text. Later, a \
question such as how did we handle retries when the upload failed finds the paragraph about the \
exponential backoff policy, even though it never mentions the word retry. Because the model runs \
on the laptop itself, nothing is sent to a remote service, indexing can happen in the background \
while you work, and the results stay available on a plane or in a basement without a network \
connection. The trade off is speed: a transformer is far slower than a keyword index, so the \
engine only re-embeds the chunks whose content actually changed since the last run.";

const TEXTS_PER_CALL: usize = 64;

// The allocator the `kb` binary uses (see src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `count` distinct texts of exactly `tokens` tokens with [CLS]/[SEP] (each starts at a
/// different offset into the paragraph, as in the Python baseline).
fn texts_of_exact_tokens(tokenizer: &Tokenizer, tokens: usize, count: usize) -> Vec<String> {
    let Tokenizer::HuggingFace(hf) = tokenizer else { panic!("the local model has a Hugging Face tokenizer") };
    let body: Vec<u32> = hf.encode(PARAGRAPH, false).expect("tokenise").get_ids().to_vec();
    let content = tokens - 2;
    (0..count)
        .map(|i| {
            let start = (i * 7) % body.len();
            let ids: Vec<u32> = body.iter().cycle().skip(start).copied().take(content + 16).collect();
            // Decoding and re-encoding can merge or split word pieces: nudge until exact.
            let mut take = content;
            loop {
                let text = hf.decode(&ids[..take], true).expect("decode");
                let got = tokenizer.count(&text);
                if got == content {
                    return text;
                }
                take = if got > content { take - 1 } else { take + 1 };
            }
        })
        .collect()
}

fn bench_embed_local(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = embed::default_model_dir();
    let model = runtime
        .block_on(LocalEmbedder::load(dir.to_str().expect("UTF-8 model dir"), 32))
        .expect("load the local model (run scripts/setup.sh)");
    let tokenizer = model.tokenizer();

    let mut group = c.benchmark_group("embed_local");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.warm_up_time(Duration::from_secs(3));
    for tokens in [32, 128, 256] {
        let texts = texts_of_exact_tokens(&tokenizer, tokens, TEXTS_PER_CALL);
        group.throughput(Throughput::Elements(texts.len() as u64));
        group.bench_with_input(BenchmarkId::new("tokens", tokens), &texts, |b, texts| {
            b.to_async(&runtime).iter(|| async { model.embed(texts).await.expect("embed") });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_embed_local);
criterion_main!(benches);

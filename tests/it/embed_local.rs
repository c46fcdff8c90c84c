//! The local model (all-MiniLM-L6-v2 through kb's encoder) against sentence-transformers' own output
//! in `tests/fixtures/reference_embeddings.json` (made by `scripts/reference_embeddings.py`).
//! Needs the model installed by `scripts/setup.sh` (or `KB_MODEL_DIR`).

use kb::embed::{self, EmbedError, Embedder, LocalEmbedder};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    model: String,
    dims: usize,
    items: Vec<ReferenceItem>,
}

#[derive(Deserialize)]
struct ReferenceItem {
    label: String,
    text: String,
    embedding: Vec<f32>,
    /// sentence-transformers cut this text at 256 tokens; kb must refuse it instead.
    truncated: bool,
}

fn reference() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference_embeddings.json");
    let bytes = std::fs::read(path).expect("read the reference embeddings");
    serde_json::from_slice(&bytes).expect("parse the reference embeddings")
}

async fn load_model() -> LocalEmbedder {
    let dir = embed::default_model_dir();
    let dir = dir.to_str().expect("model dir is UTF-8");
    LocalEmbedder::load(dir, 32).await.expect("load the local model (run scripts/setup.sh)")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn the_local_model_matches_sentence_transformers_with_texts_batched_together() {
    let reference = reference();
    let model = load_model().await;
    // The name is the hub id plus the fingerprint of the model's files.
    let (name, fingerprint) = model.model().split_once('@').expect("a fingerprinted name");
    assert_eq!(name, reference.model);
    assert!(fingerprint.len() == 12 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()), "{fingerprint}");
    assert_eq!(model.dimensions(), reference.dims);

    let items: Vec<&ReferenceItem> = reference.items.iter().filter(|i| !i.truncated).collect();
    assert!(items.len() >= 5, "the fixture should hold several texts of different lengths");
    let texts: Vec<String> = items.iter().map(|i| i.text.clone()).collect();
    // All in one call with a batch size above their number: one padded batch.
    let vectors = model.embed(&texts).await.expect("embed the reference texts");
    assert_eq!(vectors.len(), texts.len());

    let mut min = f32::MAX;
    for (item, vector) in items.iter().zip(&vectors) {
        assert_eq!(vector.len(), reference.dims);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{}: not normalised ({norm})", item.label);
        let similarity = cosine(vector, &item.embedding);
        min = min.min(similarity);
        assert!(similarity >= 0.999, "{}: cosine {similarity} < 0.999", item.label);
    }
    eprintln!("min cosine to sentence-transformers over {} texts: {min:.7}", items.len());
}

/// The reference texts' vectors from `kb bench embed` run by `command` (a child process, since
/// the instruction set is chosen once per process), with the instruction set it reports.
fn embed_in_child(mut command: std::process::Command, texts: &[&str]) -> (Vec<Vec<f32>>, String) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let mut child = command
        .args(["bench", "embed"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kb bench embed");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{}", serde_json::json!({ "texts": texts, "reps": 1, "batch": 4 })).expect("request");
    drop(stdin);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("answer");
    assert!(child.wait().expect("kb bench embed exits").success());
    let answer: serde_json::Value = serde_json::from_str(&line).expect("a JSON answer");
    let vectors = serde_json::from_value(answer["vectors"].clone()).expect("vectors");
    (vectors, answer["simd"].as_str().expect("the instruction set").to_owned())
}

fn assert_matches_the_reference(items: &[&ReferenceItem], vectors: &[Vec<f32>], how: &str) {
    assert_eq!(vectors.len(), items.len());
    for (item, vector) in items.iter().zip(vectors) {
        let similarity = cosine(vector, &item.embedding);
        assert!(similarity >= 0.999, "{}: cosine {similarity} < 0.999 {how}", item.label);
    }
}

/// The encoder's own kernels with their SIMD dispatch off (`KB_EMBED_SIMD=scalar`: the
/// baseline instructions any CPU of the architecture has).
#[tokio::test]
async fn the_kernels_without_wide_simd_give_the_same_vectors() {
    let reference = reference();
    let items: Vec<&ReferenceItem> = reference.items.iter().filter(|i| !i.truncated).collect();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kb"));
    command.env("KB_EMBED_SIMD", "scalar");
    let (vectors, simd) = embed_in_child(command, &texts);
    assert_eq!(simd, "Scalar");
    assert_matches_the_reference(&items, &vectors, "with KB_EMBED_SIMD=scalar");
}

/// The whole embedder, matrix products included, on an x86-64 CPU without AVX: kb emulated
/// by `qemu-x86_64` as a Nehalem (SSE4.2), so every run-time check (kb's kernels' and faer's)
/// finds no wide instructions and takes its portable path. `scripts/setup.sh` installs qemu.
#[cfg(target_arch = "x86_64")]
#[tokio::test]
async fn on_a_cpu_without_avx_the_whole_embedder_gives_the_same_vectors() {
    let reference = reference();
    // Short texts only: emulation is slow.
    let items: Vec<&ReferenceItem> =
        reference.items.iter().filter(|i| !i.truncated && i.text.len() < 400).take(3).collect();
    assert!(!items.is_empty(), "the fixture has short texts");
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let qemu = std::process::Command::new("qemu-x86_64").arg("-version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-x86_64 not found: install it with scripts/setup.sh (Debian package qemu-user)"
    );
    let mut command = std::process::Command::new("qemu-x86_64");
    command.args(["-cpu", "Nehalem", env!("CARGO_BIN_EXE_kb")]);
    let (vectors, simd) = embed_in_child(command, &texts);
    assert_eq!(simd, "Scalar", "the emulated CPU has no AVX");
    assert_matches_the_reference(&items, &vectors, "on a CPU without AVX");
}

#[tokio::test]
async fn padding_in_a_batch_does_not_change_a_text_s_vector() {
    let reference = reference();
    let model = load_model().await;
    let texts: Vec<String> = reference.items.iter().filter(|i| !i.truncated).map(|i| i.text.clone()).collect();
    let together = model.embed(&texts).await.expect("embed together");
    for (text, batched) in texts.iter().zip(&together) {
        let alone = model.embed(std::slice::from_ref(text)).await.expect("embed alone");
        let similarity = cosine(&alone[0], batched);
        assert!(similarity >= 0.9999, "cosine alone vs batched {similarity}");
    }
}

#[tokio::test]
async fn a_text_over_the_model_window_is_refused_not_truncated() {
    let reference = reference();
    let model = load_model().await;
    let long = reference.items.iter().find(|i| i.truncated).expect("the fixture has a truncated text");
    let texts = vec!["a short text".to_string(), long.text.clone()];
    match model.embed(&texts).await {
        Err(EmbedError::InputTooLong { index, tokens, max }) => {
            assert_eq!(index, 1);
            assert_eq!(max, 254);
            assert_eq!(tokens, model.tokenizer().count(&long.text));
            assert!(tokens > max);
        }
        other => panic!("expected InputTooLong, got {other:?}"),
    }
}

#[tokio::test]
async fn exactly_max_input_tokens_fits_and_one_more_does_not() {
    let model = load_model().await;
    assert_eq!(model.max_input_tokens(), 254);
    let tokenizer = model.tokenizer();
    let fits = "hello ".repeat(254);
    assert_eq!(tokenizer.count(&fits), 254);
    let vectors = model.embed(&[fits]).await.expect("254 tokens fit");
    assert_eq!(vectors[0].len(), 384);

    let over = "hello ".repeat(255);
    assert_eq!(tokenizer.count(&over), 255);
    let result = model.embed(&[over]).await;
    assert!(matches!(result, Err(EmbedError::InputTooLong { index: 0, tokens: 255, max: 254 })), "{result:?}");
}

#[tokio::test]
async fn many_texts_of_mixed_lengths_come_back_in_order() {
    let model = load_model().await;
    let texts: Vec<String> =
        (0..70).map(|i| format!("document {i}: {}", "refund policy and billing ".repeat(i % 13 + 1))).collect();
    let batched = model.embed(&texts).await.expect("embed 70 texts");
    assert_eq!(batched.len(), texts.len());
    for i in [0, 13, 41, 69] {
        let alone = model.embed(std::slice::from_ref(&texts[i])).await.expect("embed alone");
        assert!(cosine(&alone[0], &batched[i]) >= 0.9999, "text {i} got another text's vector");
    }
}

#[tokio::test]
async fn no_texts_need_no_work() {
    let model = load_model().await;
    assert!(model.embed(&[]).await.expect("empty input").is_empty());
}

/// Concurrent calls share the model's forward passes; each still gets its own vectors, and one
/// call's text over the window fails that call alone, with the index of its own text.
#[tokio::test]
async fn concurrent_calls_share_passes_and_keep_their_own_answers_and_errors() {
    let reference = reference();
    let model = std::sync::Arc::new(load_model().await);
    let long = reference.items.iter().find(|i| i.truncated).expect("the fixture has a truncated text");
    let calls: Vec<Vec<String>> = (0..12)
        .map(|i| match i {
            5 => vec!["a short text".to_string(), long.text.clone()],
            _ => (0..=i % 3)
                .map(|j| format!("call {i} text {j}: {}", "billing and refunds ".repeat(i + j + 1)))
                .collect(),
        })
        .collect();
    let tasks: Vec<_> = calls
        .iter()
        .cloned()
        .map(|texts| {
            let model = model.clone();
            tokio::spawn(async move { model.embed(&texts).await })
        })
        .collect();
    for (i, (task, texts)) in tasks.into_iter().zip(&calls).enumerate() {
        let result = task.await.expect("the call's task");
        if i == 5 {
            assert!(matches!(result, Err(EmbedError::InputTooLong { index: 1, .. })), "call 5: {result:?}");
            continue;
        }
        let vectors = result.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(vectors.len(), texts.len(), "call {i}");
        for (text, vector) in texts.iter().zip(&vectors) {
            let alone = model.embed(std::slice::from_ref(text)).await.expect("embed alone");
            assert!(cosine(&alone[0], vector) >= 0.9999, "call {i} got another call's vector");
        }
    }
}

/// A query (one text, as a search embeds it) that arrives while a call of many texts runs is
/// answered between that call's forward passes, not after all of them.
#[tokio::test]
async fn a_query_is_answered_between_the_passes_of_a_long_call() {
    let model = std::sync::Arc::new(load_model().await);
    // About 4,800 tokens: three passes of at most 2,048.
    let bulk: Vec<String> = (0..24)
        .map(|i| format!("document {i}: {}", "billing and refunds for the enterprise plan ".repeat(25)))
        .collect();
    let long = {
        let (model, bulk) = (model.clone(), bulk.clone());
        tokio::spawn(async move { (model.embed(&bulk).await, std::time::Instant::now()) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let query = "how do refunds work?".to_string();
    let vector = model.embed(std::slice::from_ref(&query)).await.expect("the query");
    let query_done = std::time::Instant::now();
    let (vectors, long_done) = long.await.expect("the long call's task");
    assert_eq!(vectors.expect("the long call").len(), bulk.len());
    assert!(query_done < long_done, "the query waited for the whole long call");
    let alone = model.embed(std::slice::from_ref(&query)).await.expect("the query alone");
    assert!(cosine(&alone[0], &vector[0]) >= 0.9999);
}

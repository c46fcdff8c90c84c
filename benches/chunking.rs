//! Chunking and hashing throughput: the CPU part of ingestion besides the model.
//!
//! Input: the text of every `sample_docs/` document (txt, md, html; PDFs are parsed in a
//! child process and measured in the ingest bench), repeated to ~1 MB. Chunks are measured
//! with the real all-MiniLM-L6-v2 WordPiece tokenizer, 200 tokens with 32 overlap, as
//! `kb ingest` does. Baseline: DESIGN.md asks >= 2,000 chunks/s of ~250 tokens for the
//! whole pipeline overhead; one chunk of 200 tokens is ~1 KB, so >= 2 MB/s here.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kb::chunk::{ChunkLimits, TokenBudget, Tokenizer, split};
use kb::extract::{ExtractLimits, Extracted, Format, extract};
use rayon::prelude::*;

fn corpus() -> Vec<Extracted> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_docs");
    let mut docs = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("sample_docs").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let Some(format) = Format::from_path(&path) else { continue };
        if format == Format::Pdf {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        docs.push(
            extract(
                format,
                &bytes,
                &ExtractLimits { worker: Some(env!("CARGO_BIN_EXE_kb").into()), ..ExtractLimits::default() },
            )
            .expect("extract"),
        );
    }
    docs
}

fn bytes_of(docs: &[Extracted]) -> u64 {
    docs.iter().map(|d| d.text().len() as u64).sum()
}

fn benches(c: &mut Criterion) {
    let model_dir = kb::embed::default_model_dir();
    let tokenizer = Tokenizer::from_file(&model_dir.join("tokenizer.json")).expect("tokenizer (run scripts/setup.sh)");
    let budget = TokenBudget::new(200, 32, 254).expect("budget");
    let base = corpus();
    let mut docs = Vec::new();
    while bytes_of(&docs) < 1_000_000 {
        docs.extend(base.iter().cloned());
    }
    let total = bytes_of(&docs);
    let chunks: usize =
        docs.iter().map(|d| split(d, &tokenizer, budget, ChunkLimits::unbounded()).expect("split").len()).sum();
    eprintln!("corpus: {} documents, {total} bytes, {chunks} chunks", docs.len());

    // Sums the hashes' lengths so the optimiser cannot drop the hashing.
    let split_and_hash = |d: &Extracted| -> usize {
        split(d, &tokenizer, budget, ChunkLimits::unbounded())
            .expect("split")
            .iter()
            .map(|c| kb::hash::chunk_hash(&c.text).len())
            .sum()
    };
    let mut group = c.benchmark_group("chunking");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(total));
    group.bench_function("split_one_thread", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| split(d, &tokenizer, budget, ChunkLimits::unbounded()).expect("split").len())
                .sum::<usize>()
        })
    });
    group.bench_function("split_and_hash_rayon", |b| b.iter(|| docs.par_iter().map(split_and_hash).sum::<usize>()));
    group.finish();

    // One phrase repeated with no line or sentence break, at two sizes: time per byte stays
    // flat when splitting is linear (it once rescanned the rest of the text for every chunk).
    let mut group = c.benchmark_group("single_line");
    group.sample_size(10);
    for mb in [1usize, 8] {
        let line = "the quick brown fox jumps over the lazy dog ".repeat(mb * 1_000_000 / 44);
        let doc = Extracted {
            format: Format::Text,
            title: None,
            sections: vec![kb::extract::Section { text: line.clone(), location: kb::extract::Location::Whole }],
        };
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(format!("split_{mb}mb"), |b| {
            b.iter(|| split(&doc, &tokenizer, budget, ChunkLimits::unbounded()).expect("split").len())
        });
    }
    group.finish();

    let texts: Vec<String> = docs
        .iter()
        .flat_map(|d| split(d, &tokenizer, budget, ChunkLimits::unbounded()).expect("split"))
        .map(|c| c.text)
        .collect();
    let text_bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    let mut group = c.benchmark_group("hashing");
    group.throughput(Throughput::Bytes(text_bytes));
    group.bench_function("chunk_hash", |b| {
        b.iter(|| texts.iter().map(|x| kb::hash::chunk_hash(x).len()).sum::<usize>())
    });
    group.finish();
}

criterion_group!(chunking, benches);
criterion_main!(chunking);

//! Chunking with the real WordPiece tokenizer of the local model: every chunk of every sample
//! document fits the budget when measured exactly, and together the chunks cover the text.

use kb::chunk::{TokenBudget, Tokenizer, split};
use kb::extract::{Format, extract};

use crate::helpers::{extract_limits, repo_path};

#[test]
fn every_sample_chunk_fits_the_budget_measured_exactly() {
    let tokenizer =
        Tokenizer::from_file(&kb::embed::default_model_dir().join("tokenizer.json")).expect("tokenizer (setup.sh)");
    for (max, overlap) in [(200, 32), (64, 8), (254, 0)] {
        let budget = TokenBudget::new(max, overlap, 254).expect("budget");
        let mut entries: Vec<_> =
            std::fs::read_dir(repo_path("sample_docs")).expect("dir").flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            let format = Format::from_path(&path).expect("supported");
            let doc = extract(format, &std::fs::read(&path).expect("read"), &extract_limits()).expect("extract");
            let chunks = split(&doc, &tokenizer, budget, kb::chunk::ChunkLimits::unbounded()).expect("split");
            assert!(!chunks.is_empty(), "{path:?}");
            for chunk in &chunks {
                let exact = tokenizer.count(&chunk.text);
                assert_eq!(chunk.token_count, exact, "{path:?} chunk {}", chunk.index);
                assert!(exact <= max, "{path:?} chunk {} has {exact} tokens > {max}", chunk.index);
            }
            if overlap == 0 {
                let joined: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
                assert_eq!(
                    kb::hash::normalise(&joined.join(" ")),
                    kb::hash::normalise(&doc.text()),
                    "{path:?}: text lost or repeated"
                );
            }
        }
    }
}

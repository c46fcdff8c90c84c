//! Chunking: the sections of an extracted document -> chunks that fit the embedding model's
//! token window, measured with the model's own tokenizer, with a configurable overlap.
//! Pure: no database, no network.

use std::path::Path;
use std::sync::Arc;

use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};

use crate::extract::{Extracted, Format};

/// Counts tokens the way an embedding model does, without the special tokens it adds.
#[derive(Clone)]
pub enum Tokenizer {
    /// A Hugging Face tokenizer (WordPiece for the local BERT model).
    HuggingFace(Arc<tokenizers::Tokenizer>),
    /// A tiktoken BPE (`cl100k_base` for OpenAI embedding models).
    Tiktoken(Arc<tiktoken_rs::CoreBPE>),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot load tokenizer {path}: {message}")]
    Load { path: String, message: String },
    #[error("cannot build the cl100k_base tokenizer: {0}")]
    Tiktoken(String),
}

impl Tokenizer {
    /// Loads a `tokenizer.json`, with truncation and padding turned off so that counts are
    /// the true length of a text (a truncating tokenizer would hide over-long chunks).
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let mut tokenizer = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Load { path: path.display().to_string(), message: e.to_string() })?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| TokenizerError::Load { path: path.display().to_string(), message: e.to_string() })?;
        tokenizer.with_padding(None);
        Ok(Tokenizer::HuggingFace(Arc::new(tokenizer)))
    }

    /// The tokenizer of OpenAI's `text-embedding-3-*` models.
    pub fn cl100k() -> Result<Tokenizer, TokenizerError> {
        let bpe = tiktoken_rs::cl100k_base().map_err(|e| TokenizerError::Tiktoken(e.to_string()))?;
        Ok(Tokenizer::Tiktoken(Arc::new(bpe)))
    }

    /// Number of tokens in `text`, special tokens excluded.
    pub fn count(&self, text: &str) -> usize {
        match self {
            Tokenizer::HuggingFace(t) => t.size(text),
            Tokenizer::Tiktoken(t) => t.size(text),
        }
    }
}

impl ChunkSizer for Tokenizer {
    fn size(&self, chunk: &str) -> usize {
        self.count(chunk)
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::HuggingFace(_) => f.write_str("Tokenizer::HuggingFace"),
            Tokenizer::Tiktoken(_) => f.write_str("Tokenizer::Tiktoken"),
        }
    }
}

/// How big chunks may be, in tokens. Parsed once, so the splitter can trust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBudget {
    max_tokens: usize,
    overlap: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error("chunk size must be at least 16 tokens (got {0})")]
    TooSmall(usize),
    #[error("chunk size {max} exceeds the model's window of {window} tokens")]
    OverWindow { max: usize, window: usize },
    #[error("chunk overlap {overlap} must be less than half the chunk size {max}")]
    Overlap { overlap: usize, max: usize },
}

impl TokenBudget {
    /// A budget of at most `max_tokens` per chunk, sharing `overlap` tokens with the chunk
    /// before it, for a model that reads at most `window` tokens.
    pub fn new(max_tokens: usize, overlap: usize, window: usize) -> Result<TokenBudget, BudgetError> {
        if max_tokens < 16 {
            return Err(BudgetError::TooSmall(max_tokens));
        }
        if max_tokens > window {
            return Err(BudgetError::OverWindow { max: max_tokens, window });
        }
        if overlap * 2 >= max_tokens {
            return Err(BudgetError::Overlap { overlap, max: max_tokens });
        }
        Ok(TokenBudget { max_tokens, overlap })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn overlap(&self) -> usize {
        self.overlap
    }
}

/// One piece of a document, ready to be hashed and embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Position in the document, from 0, in reading order.
    pub index: usize,
    pub text: String,
    pub token_count: usize,
    /// Provenance: PDF page or heading path.
    pub metadata: serde_json::Value,
}

/// Splits every section of a document into chunks of at most `budget.max_tokens()` tokens.
/// Chunks never cross sections; markdown is split at its structure first.
pub fn split(doc: &Extracted, tokenizer: &Tokenizer, budget: TokenBudget) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for section in &doc.sections {
        let metadata = section.location.to_metadata();
        let pieces = match SectionSizer::new(&section.text, tokenizer) {
            Some(sizer) => split_with(doc.format, &section.text, sizer, budget),
            None => split_with(doc.format, &section.text, tokenizer.clone(), budget),
        };
        for piece in pieces {
            let mut push = |text: &str, token_count: usize| {
                chunks.push(Chunk {
                    index: chunks.len(),
                    text: text.to_string(),
                    token_count,
                    metadata: metadata.clone(),
                });
            };
            let token_count = tokenizer.count(piece);
            if token_count <= budget.max_tokens {
                push(piece, token_count);
                continue;
            }
            // The section sizer can undercount a piece that cuts through a word: such a piece
            // is split again, measured exactly, so no chunk ever exceeds the budget.
            for exact in split_with(Format::Text, piece, tokenizer.clone(), budget) {
                push(exact, tokenizer.count(exact));
            }
        }
    }
    chunks
}

fn split_with<S: ChunkSizer>(format: Format, text: &str, sizer: S, budget: TokenBudget) -> Vec<&str> {
    let config = ChunkConfig::new(budget.max_tokens).with_sizer(sizer).with_overlap(budget.overlap);
    // TokenBudget::new guarantees overlap < max_tokens, the only way with_overlap fails.
    let Ok(config) = config.map(|c| c.with_trim(true)) else {
        unreachable!("TokenBudget keeps overlap below max_tokens")
    };
    match format {
        Format::Markdown => MarkdownSplitter::new(config).chunks(text).collect(),
        Format::Text | Format::Html | Format::Pdf => TextSplitter::new(config).chunks(text).collect(),
    }
}

/// Sizes slices of one section from a single tokenization of the whole section. The splitter
/// measures many overlapping candidates, and tokenizing each one again made chunking slow;
/// here a size is two binary searches over token offsets. It counts the tokens lying wholly
/// inside the slice, which is exact for slices cut at whitespace (WordPiece never joins
/// across it) and can undercount one that cuts a word, which `split` checks.
struct SectionSizer<'a> {
    text: &'a str,
    starts: Vec<usize>,
    ends: Vec<usize>,
    exact: &'a Tokenizer,
}

impl<'a> SectionSizer<'a> {
    /// None where offsets are not available (tiktoken): sizes are then measured exactly.
    fn new(text: &'a str, tokenizer: &'a Tokenizer) -> Option<SectionSizer<'a>> {
        let Tokenizer::HuggingFace(hf) = tokenizer else { return None };
        let encoding = hf.encode(text, false).ok()?;
        let (starts, ends): (Vec<usize>, Vec<usize>) = encoding.get_offsets().iter().copied().unzip();
        let sorted = starts.is_sorted() && ends.is_sorted();
        sorted.then_some(SectionSizer { text, starts, ends, exact: tokenizer })
    }
}

impl ChunkSizer for SectionSizer<'_> {
    fn size(&self, chunk: &str) -> usize {
        let base = self.text.as_ptr() as usize;
        let at = (chunk.as_ptr() as usize).wrapping_sub(base);
        if at > self.text.len() || at + chunk.len() > self.text.len() {
            // Not a slice of this section (the splitter passes slices): measure it exactly.
            return self.exact.count(chunk);
        }
        let end = at + chunk.len();
        let first = self.starts.partition_point(|&s| s < at);
        let last = self.ends.partition_point(|&e| e <= end);
        last.saturating_sub(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{Location, Section};

    fn cl100k() -> Tokenizer {
        Tokenizer::cl100k().expect("cl100k")
    }

    fn doc(format: Format, sections: Vec<(&str, Location)>) -> Extracted {
        Extracted {
            format,
            title: None,
            sections: sections
                .into_iter()
                .map(|(text, location)| Section { text: text.to_string(), location })
                .collect(),
        }
    }

    fn long_text(sentences: usize) -> String {
        (0..sentences)
            .map(|i| format!("Sentence number {i} talks about campaign budgets and brand voice on social media."))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_chunk_never_exceeds_the_token_budget() {
        let tokenizer = cl100k();
        let budget = TokenBudget::new(64, 8, 8191).expect("budget");
        let chunks = split(&doc(Format::Text, vec![(&long_text(200), Location::Whole)]), &tokenizer, budget);
        assert!(chunks.len() > 10, "expected many chunks, got {}", chunks.len());
        for chunk in &chunks {
            assert!(chunk.token_count <= 64, "chunk {} has {} tokens", chunk.index, chunk.token_count);
            assert_eq!(chunk.token_count, tokenizer.count(&chunk.text));
        }
    }

    #[test]
    fn consecutive_chunks_overlap() {
        let tokenizer = cl100k();
        let budget = TokenBudget::new(64, 16, 8191).expect("budget");
        let chunks = split(&doc(Format::Text, vec![(&long_text(100), Location::Whole)]), &tokenizer, budget);
        assert!(chunks.len() > 3);
        for pair in chunks.windows(2) {
            // The next chunk starts with words the previous one ended with.
            let first_words: Vec<&str> = pair[1].text.split_whitespace().take(3).collect();
            let prefix = first_words.join(" ");
            assert!(pair[0].text.contains(&prefix), "no overlap between {:?} and {:?}", pair[0].text, pair[1].text);
        }
    }

    #[test]
    fn without_overlap_no_text_is_repeated_or_lost() {
        let tokenizer = cl100k();
        let budget = TokenBudget::new(32, 0, 8191).expect("budget");
        let text = long_text(40);
        let chunks = split(&doc(Format::Text, vec![(&text, Location::Whole)]), &tokenizer, budget);
        let joined: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        assert_eq!(crate::hash::normalise(&joined.join(" ")), crate::hash::normalise(&text));
    }

    #[test]
    fn chunks_keep_their_sections_provenance_and_are_numbered_in_order() {
        let tokenizer = cl100k();
        let budget = TokenBudget::new(32, 0, 8191).expect("budget");
        let chunks = split(
            &doc(Format::Pdf, vec![("First page words.", Location::Page(1)), (&long_text(10), Location::Page(2))]),
            &tokenizer,
            budget,
        );
        assert_eq!(chunks[0].text, "First page words.");
        assert_eq!(chunks[0].metadata, serde_json::json!({"page": 1}));
        assert!(chunks[1..].iter().all(|c| c.metadata == serde_json::json!({"page": 2})));
        let indices: Vec<usize> = chunks.iter().map(|c| c.index).collect();
        assert_eq!(indices, (0..chunks.len()).collect::<Vec<_>>());
    }

    #[test]
    fn markdown_is_split_at_block_boundaries_before_sentences() {
        let tokenizer = cl100k();
        let budget = TokenBudget::new(40, 0, 8191).expect("budget");
        let paragraph = long_text(2);
        let list = "- first item about refunds and credits\n- second item about refunds and credits";
        let text = format!("{paragraph}\n\n{list}");
        assert!(tokenizer.count(&text) > 40 && tokenizer.count(&paragraph) <= 40 && tokenizer.count(list) <= 40);
        let chunks = split(&doc(Format::Markdown, vec![(&text, Location::Whole)]), &tokenizer, budget);
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec![paragraph.as_str(), list]);
    }

    #[test]
    fn budgets_outside_the_model_window_are_refused() {
        assert_eq!(TokenBudget::new(300, 0, 254), Err(BudgetError::OverWindow { max: 300, window: 254 }));
        assert_eq!(TokenBudget::new(8, 0, 254), Err(BudgetError::TooSmall(8)));
        assert_eq!(TokenBudget::new(100, 50, 254), Err(BudgetError::Overlap { overlap: 50, max: 100 }));
        assert!(TokenBudget::new(200, 30, 254).is_ok());
    }
}

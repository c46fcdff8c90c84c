//! Chunking: the sections of an extracted document -> chunks that fit the embedding model's
//! token window, measured with the model's own tokenizer, with a configurable overlap.
//! Pure: no database, no network.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

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

/// Bounds on splitting one document.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Most chunks the document may have.
    pub max_chunks: usize,
    /// When splitting must have finished.
    pub deadline: Option<Instant>,
}

impl ChunkLimits {
    /// No bound on the chunk count or the time (tests and benches of small inputs).
    pub fn unbounded() -> ChunkLimits {
        ChunkLimits { max_chunks: usize::MAX, deadline: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("the document has more than {0} chunks")]
    TooManyChunks(usize),
    #[error("splitting the document ran past its time limit")]
    TimedOut,
}

/// Splits every section of a document into chunks of at most `budget.max_tokens()` tokens.
/// Chunks never cross sections; markdown is split at its structure first. Time is linear in
/// the text: a long section is cut into blocks of a bounded size first (at a paragraph, line,
/// sentence or word boundary), and each block is split on its own.
pub fn split(
    doc: &Extracted,
    tokenizer: &Tokenizer,
    budget: TokenBudget,
    limits: ChunkLimits,
) -> Result<Vec<Chunk>, ChunkError> {
    let mut chunks = Vec::new();
    let block_bytes = budget.max_tokens * BLOCK_BYTES_PER_TOKEN;
    for section in &doc.sections {
        let metadata = section.location.to_metadata();
        for block in blocks(&section.text, block_bytes) {
            if limits.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ChunkError::TimedOut);
            }
            let pieces = match SectionSizer::new(block, tokenizer) {
                Some(sizer) => split_with(doc.format, block, sizer, budget),
                None => split_with(doc.format, block, tokenizer.clone(), budget),
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
                } else {
                    // The section sizer can undercount a piece that cuts through a word: such a
                    // piece is split again, measured exactly, so no chunk ever exceeds the budget.
                    for exact in split_with(Format::Text, piece, tokenizer.clone(), budget) {
                        push(exact, tokenizer.count(exact));
                    }
                }
            }
            if chunks.len() > limits.max_chunks {
                return Err(ChunkError::TooManyChunks(limits.max_chunks));
            }
        }
    }
    Ok(chunks)
}

/// The size of the blocks a long section is cut into, in bytes per token of the budget: some
/// 30 chunks of ordinary prose. The splitter's work on a block grows faster than its size
/// (it measures candidates from every boundary to the block's end); bounded blocks make the
/// whole linear.
const BLOCK_BYTES_PER_TOKEN: usize = 128;

/// Cuts `text` into consecutive blocks of at most `max` bytes (or one unbreakable run), each
/// ending at the best boundary in the back half of its window: a blank line, a line end, a
/// sentence end, then any whitespace.
fn blocks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= max {
            return Some(std::mem::take(&mut rest));
        }
        let window = floor_char_boundary(rest, max);
        let back = &rest[floor_char_boundary(rest, max / 2)..window];
        let offset = window - back.len();
        let cut = [back.rfind("\n\n").map(|i| i + 2), back.rfind('\n').map(|i| i + 1), back.rfind(". ").map(|i| i + 2)]
            .into_iter()
            .flatten()
            .next()
            .or_else(|| back.rfind(char::is_whitespace).map(|i| i + 1))
            .map(|i| offset + i)
            .filter(|&i| i > 0)
            .unwrap_or(window.max(next_char_boundary(rest, 1)));
        let (block, tail) = rest.split_at(cut);
        rest = tail;
        Some(block)
    })
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn next_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
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
        let chunks = split(
            &doc(Format::Text, vec![(&long_text(200), Location::Whole)]),
            &tokenizer,
            budget,
            ChunkLimits::unbounded(),
        )
        .expect("split");
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
        let chunks = split(
            &doc(Format::Text, vec![(&long_text(100), Location::Whole)]),
            &tokenizer,
            budget,
            ChunkLimits::unbounded(),
        )
        .expect("split");
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
        let chunks =
            split(&doc(Format::Text, vec![(&text, Location::Whole)]), &tokenizer, budget, ChunkLimits::unbounded())
                .expect("split");
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
            ChunkLimits::unbounded(),
        )
        .expect("split");
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
        let chunks =
            split(&doc(Format::Markdown, vec![(&text, Location::Whole)]), &tokenizer, budget, ChunkLimits::unbounded())
                .expect("split");
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec![paragraph.as_str(), list]);
    }

    #[test]
    fn blocks_cut_at_the_best_boundary_and_lose_nothing() {
        let text = format!("{}\n\n{}", "a".repeat(70), "b. c d ".repeat(20));
        let cut: Vec<&str> = blocks(&text, 100).collect();
        assert_eq!(cut.concat(), text);
        assert_eq!(cut[0], format!("{}\n\n", "a".repeat(70)));
        assert!(cut.iter().all(|b| b.len() <= 100));
        let run = "é".repeat(300);
        let cut: Vec<&str> = blocks(&run, 101).collect();
        assert_eq!(cut.concat(), run, "an unbreakable run is cut at character boundaries");
        assert!(cut.iter().all(|b| b.len() <= 101));
    }

    #[test]
    fn the_chunk_cap_and_the_deadline_stop_splitting() {
        let tokenizer = cl100k();
        let budget = TokenBudget::new(32, 0, 8191).expect("budget");
        let text = long_text(400);
        let capped = ChunkLimits { max_chunks: 5, deadline: None };
        let d = doc(Format::Text, vec![(&text, Location::Whole)]);
        assert_eq!(split(&d, &tokenizer, budget, capped), Err(ChunkError::TooManyChunks(5)));
        let late = ChunkLimits { max_chunks: usize::MAX, deadline: Some(Instant::now()) };
        assert_eq!(split(&d, &tokenizer, budget, late), Err(ChunkError::TimedOut));
    }

    #[test]
    fn budgets_outside_the_model_window_are_refused() {
        assert_eq!(TokenBudget::new(300, 0, 254), Err(BudgetError::OverWindow { max: 300, window: 254 }));
        assert_eq!(TokenBudget::new(8, 0, 254), Err(BudgetError::TooSmall(8)));
        assert_eq!(TokenBudget::new(100, 50, 254), Err(BudgetError::Overlap { overlap: 50, max: 100 }));
        assert!(TokenBudget::new(200, 30, 254).is_ok());
    }
}

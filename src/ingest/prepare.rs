//! The CPU half of ingestion, run on the rayon pool: source bytes -> extracted text ->
//! chunks -> content hashes. Pure: no database, no network.

use rayon::prelude::*;

use std::time::Instant;

use crate::chunk::{self, ChunkError, ChunkLimits, TokenBudget, Tokenizer};
use crate::extract::{self, ExtractError, ExtractLimits, Format};
use crate::hash;

/// A document's text and chunks, ready for deduplication and embedding.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub title: Option<String>,
    pub content: String,
    pub summary: String,
    pub chunks: Vec<HashedChunk>,
}

#[derive(Debug, Clone)]
pub struct HashedChunk {
    pub chunk: chunk::Chunk,
    pub hash: String,
}

/// Extracts, splits and hashes one document, within `limits`: extraction and splitting
/// together get `limits.timeout`, and the document at most `limits.max_chunks` chunks.
pub fn prepare(
    format: Option<Format>,
    extension: &str,
    bytes: &[u8],
    tokenizer: &Tokenizer,
    budget: TokenBudget,
    limits: &ExtractLimits,
) -> Result<Prepared, ExtractError> {
    let deadline = Instant::now() + limits.timeout;
    let format = format.ok_or_else(|| ExtractError::Unsupported(extension.to_string()))?;
    let extracted = extract::extract(format, bytes, limits)?;
    let content = extracted.text();
    let chunk_limits = ChunkLimits { max_chunks: limits.max_chunks, deadline: Some(deadline) };
    let chunks = chunk::split(&extracted, tokenizer, budget, chunk_limits)
        .map_err(|e| match e {
            ChunkError::TooManyChunks(max) => ExtractError::TooManyChunks(max),
            ChunkError::TimedOut => ExtractError::Timeout(limits.timeout.as_secs().max(1)),
        })?
        .into_par_iter()
        .map(|chunk| HashedChunk { hash: hash::chunk_hash(&chunk.text), chunk })
        .collect();
    let title = extracted.title.clone().or_else(|| first_line_title(&content));
    Ok(Prepared { summary: summarise(&content, title.as_deref()), title, content, chunks })
}

/// For formats without title markup (plain text, PDF): the first line, when it reads like a
/// title — short, and not a sentence.
fn first_line_title(content: &str) -> Option<String> {
    let line = content.lines().map(str::trim).find(|l| !l.is_empty())?;
    let plausible = (3..=100).contains(&line.chars().count()) && !line.ends_with(['.', ',', ';', ':']);
    plausible.then(|| line.to_string())
}

/// The document's opening: its first paragraphs (the title excepted), cut at a word
/// boundary near 300 characters.
pub fn summarise(content: &str, title: Option<&str>) -> String {
    const MIN: usize = 80;
    const MAX: usize = 300;
    let mut flat = String::new();
    for paragraph in content.split("\n\n").map(hash::normalise).filter(|p| !p.is_empty()) {
        if flat.is_empty() && Some(paragraph.as_str()) == title.map(str::trim) {
            continue;
        }
        if !flat.is_empty() {
            flat.push(' ');
        }
        flat.push_str(&paragraph);
        if flat.chars().count() >= MIN {
            break;
        }
    }
    if flat.chars().count() <= MAX {
        return flat;
    }
    let mut cut: String = flat.chars().take(MAX).collect();
    if let Some(space) = cut.rfind(' ') {
        cut.truncate(space);
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_the_opening_without_the_title() {
        let body = "Refunds are issued within thirty days of purchase for every annual plan we sell.";
        let text = format!("Refund Policy\n\n{body}\n\nSecond paragraph.");
        assert_eq!(summarise(&text, Some("Refund Policy")), body);
        assert_eq!(summarise("Short.\n\nAlso short.", None), "Short. Also short.");
    }

    #[test]
    fn a_long_summary_is_cut_at_a_word() {
        let text = "word ".repeat(200);
        let summary = summarise(&text, None);
        assert!(summary.chars().count() <= 301);
        assert!(summary.ends_with("word…"));
    }

    #[test]
    fn a_short_first_line_is_the_title_of_untitled_formats() {
        assert_eq!(first_line_title("\n  Refund Policy \nBody text."), Some("Refund Policy".into()));
        assert_eq!(first_line_title("This document starts with a sentence."), None);
        assert_eq!(first_line_title(&"word ".repeat(40)), None);
    }

    #[test]
    fn unknown_formats_are_a_clear_error() {
        let tokenizer = Tokenizer::cl100k().expect("cl100k");
        let budget = TokenBudget::new(100, 10, 8191).expect("budget");
        let err = prepare(None, "docx", b"x", &tokenizer, budget, &ExtractLimits::default()).err();
        assert_eq!(err, Some(ExtractError::Unsupported("docx".into())));
    }

    #[test]
    fn every_chunk_carries_the_hash_of_its_text() {
        let tokenizer = Tokenizer::cl100k().expect("cl100k");
        let budget = TokenBudget::new(20, 0, 8191).expect("budget");
        let text = "Refunds are issued within 30 days. ".repeat(20);
        let prepared =
            prepare(Some(Format::Text), "txt", text.as_bytes(), &tokenizer, budget, &ExtractLimits::default())
                .expect("ok");
        assert!(prepared.chunks.len() > 1);
        for c in &prepared.chunks {
            assert_eq!(c.hash, hash::chunk_hash(&c.chunk.text));
        }
    }
}

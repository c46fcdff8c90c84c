//! Context for an AI agent: the best passages for a question, packed into a token budget
//! with numbered citations. Search (any mode) -> near-duplicates dropped -> chunks taken in
//! rank order while they fit -> neighbouring chunks added where the budget allows ->
//! adjacent chunks merged into passages (their overlap removed) -> passages ordered by
//! document and position -> one text block that carries the citation numbers, counted with
//! the chat model's tokenizer and never over the budget.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tiktoken_rs::CoreBPE;
use uuid::Uuid;

use crate::embed::Embedder;
use crate::search::{self, Mode, SearchError, SearchHit, SearchRequest};
use crate::store::{self, Role};

/// The tokenizer the budget is counted in: the chat model's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub enum Encoding {
    /// GPT-4, GPT-3.5 and OpenAI's embedding models.
    #[default]
    #[serde(rename = "cl100k_base")]
    Cl100k,
    /// GPT-4o and later.
    #[serde(rename = "o200k_base")]
    O200k,
}

impl Encoding {
    fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
        }
    }

    /// Tokens of `text` in this encoding.
    pub fn count(self, text: &str) -> usize {
        self.bpe().encode_ordinary(text).len()
    }
}

/// Chunks a search gives the packer to choose from.
pub const CANDIDATES: u32 = 24;
/// The smallest budget a context can be built in.
pub const MIN_BUDGET: usize = 16;
/// The largest budget (the longest context windows, with room to spare).
pub const MAX_BUDGET: usize = 1_000_000;
/// Word-trigram overlap above which a chunk repeats a better one.
const NEAR_DUPLICATE: f64 = 0.8;

#[derive(Debug, Clone)]
pub struct ContextRequest {
    pub question: String,
    pub budget: usize,
    pub encoding: Encoding,
    pub bucket_id: Option<Uuid>,
    pub bucket_type: Option<String>,
    pub campaign_id: Option<Uuid>,
    pub mode: Mode,
    /// Minimum cosine similarity of a chunk (vector and hybrid modes).
    pub threshold: f64,
}

/// Consecutive chunks of one document, cited as one source.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Passage {
    /// The number the text block cites it by (`[1]`).
    pub citation: usize,
    pub document_id: Uuid,
    pub document_title: String,
    pub chunk_indexes: Vec<i32>,
    /// The heading path of its first chunk (Markdown, HTML), if any.
    pub headings: Vec<String>,
    /// The PDF pages it spans, if any.
    pub pages: Vec<i64>,
    /// The best cosine similarity of its chunks to the question (0 for neighbours only).
    pub score: f64,
    pub text: String,
    pub tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Context {
    pub passages: Vec<Passage>,
    /// The passages as one block to paste into a prompt, each under its citation number.
    pub text: String,
    /// Tokens of `text` in `encoding`; never more than `budget`.
    pub tokens: usize,
    pub budget: usize,
    pub encoding: Encoding,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("the budget must be between {MIN_BUDGET} and {MAX_BUDGET} tokens (got {0})")]
    Budget(usize),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl crate::store::replicas::Unreachable for ContextError {
    fn unreachable(&self) -> bool {
        match self {
            ContextError::Search(e) => e.unreachable(),
            ContextError::Database(e) => e.unreachable(),
            ContextError::Budget(_) => false,
        }
    }
}

/// One chunk the packer holds.
#[derive(Debug, Clone)]
struct Piece {
    document_id: Uuid,
    document_title: String,
    index: i32,
    text: String,
    metadata: Option<serde_json::Value>,
    /// Rank of the search hit (0 is best); neighbours take their passage's rank.
    rank: usize,
    score: f64,
}

/// Builds the context for `request` from what `user` may see.
pub async fn build(
    pool: &PgPool,
    embedder: &dyn Embedder,
    user: Uuid,
    role: Role,
    request: &ContextRequest,
) -> Result<Context, ContextError> {
    if !(MIN_BUDGET..=MAX_BUDGET).contains(&request.budget) {
        return Err(ContextError::Budget(request.budget));
    }
    let found = search::search(
        pool,
        embedder,
        user,
        role,
        &SearchRequest {
            query: request.question.clone(),
            bucket_id: request.bucket_id,
            bucket_type: request.bucket_type.clone(),
            campaign_id: request.campaign_id,
            limit: CANDIDATES,
            threshold: request.threshold,
            mode: request.mode,
        },
    )
    .await?;
    let ranked = drop_near_duplicates(found.hits);
    let mut chosen = choose(&ranked, request.budget, request.encoding);

    // Neighbours of the chosen chunks, best passage first, while they fit.
    let wanted: Vec<(Uuid, i32, usize)> = neighbours(&chosen);
    if !wanted.is_empty() {
        let mut tx = store::begin_as(pool, user, role).await?;
        let fetched = store::chunks::chunks_at(&mut tx, &wanted.iter().map(|w| (w.0, w.1)).collect::<Vec<_>>()).await?;
        tx.commit().await?;
        for (document_id, index, rank) in wanted {
            let Some(found) = fetched.iter().find(|c| c.document_id == document_id && c.chunk_index == index) else {
                continue;
            };
            let Some(title) = chosen.iter().find(|p| p.document_id == document_id).map(|p| p.document_title.clone())
            else {
                continue;
            };
            let piece = Piece {
                document_id,
                document_title: title,
                index,
                text: found.content.clone(),
                metadata: found.metadata.clone(),
                rank,
                score: 0.0,
            };
            chosen.push(piece);
            if render(&chosen, request.encoding).tokens > request.budget {
                chosen.pop();
            }
        }
    }
    let mut context = render(&chosen, request.encoding);
    context.budget = request.budget;
    Ok(context)
}

/// Hits in rank order without those whose words mostly repeat a better hit's.
fn drop_near_duplicates(hits: Vec<SearchHit>) -> Vec<SearchHit> {
    let mut kept: Vec<(SearchHit, HashSet<String>)> = Vec::new();
    for hit in hits {
        let shingles = trigrams(&hit.chunk_content);
        if kept.iter().any(|(_, other)| jaccard(&shingles, other) >= NEAR_DUPLICATE) {
            continue;
        }
        kept.push((hit, shingles));
    }
    kept.into_iter().map(|(hit, _)| hit).collect()
}

fn trigrams(text: &str) -> HashSet<String> {
    let words: Vec<String> = text.split_whitespace().map(|w| w.to_lowercase()).collect();
    if words.len() < 3 {
        return std::iter::once(words.join(" ")).collect();
    }
    words.windows(3).map(|w| w.join(" ")).collect()
}

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// Hits in rank order while the rendered context fits the budget. If not even the best fits,
/// the best, cut at its last sentence that fits.
fn choose(ranked: &[SearchHit], budget: usize, encoding: Encoding) -> Vec<Piece> {
    let mut chosen: Vec<Piece> = Vec::new();
    for (rank, hit) in ranked.iter().enumerate() {
        let piece = Piece {
            document_id: hit.document_id,
            document_title: hit.document_title.clone(),
            index: hit.chunk_index,
            text: hit.chunk_content.clone(),
            metadata: hit.metadata.clone(),
            rank,
            score: hit.similarity_score,
        };
        chosen.push(piece);
        if render(&chosen, encoding).tokens > budget {
            let dropped = chosen.pop();
            if chosen.is_empty()
                && let Some(mut best) = dropped
            {
                best.text = fit_sentences(&best, budget, encoding);
                if !best.text.is_empty() {
                    chosen.push(best);
                }
                break;
            }
        }
    }
    chosen
}

/// The longest run of whole sentences from the start of the piece's text whose passage fits.
fn fit_sentences(piece: &Piece, budget: usize, encoding: Encoding) -> String {
    let text = &piece.text;
    let ends: Vec<usize> = text
        .char_indices()
        .filter(|&(i, c)| {
            matches!(c, '.' | '!' | '?' | '\n')
                && text[i + c.len_utf8()..].chars().next().is_none_or(char::is_whitespace)
        })
        .map(|(i, c)| i + c.len_utf8())
        .collect();
    let mut best = String::new();
    for end in ends {
        let candidate = Piece { text: text[..end].trim_end().to_string(), ..piece.clone() };
        if render(std::slice::from_ref(&candidate), encoding).tokens > budget {
            break;
        }
        best = candidate.text;
    }
    best
}

/// The chunks just before and after each chosen run, in the order of the runs' ranks.
fn neighbours(chosen: &[Piece]) -> Vec<(Uuid, i32, usize)> {
    let have: HashSet<(Uuid, i32)> = chosen.iter().map(|p| (p.document_id, p.index)).collect();
    let mut by_rank: Vec<&Piece> = chosen.iter().collect();
    by_rank.sort_by_key(|p| p.rank);
    let mut wanted = Vec::new();
    let mut seen = HashSet::new();
    for piece in by_rank {
        for index in [piece.index - 1, piece.index + 1] {
            let key = (piece.document_id, index);
            if index >= 0 && !have.contains(&key) && seen.insert(key) {
                wanted.push((piece.document_id, index, piece.rank));
            }
        }
    }
    wanted
}

/// The passages of the chosen chunks and their text block: documents in the order of their
/// best rank, chunks in document order, adjacent chunks merged into one passage.
fn render(pieces: &[Piece], encoding: Encoding) -> Context {
    let mut documents: BTreeMap<(usize, Uuid), BTreeMap<i32, &Piece>> = BTreeMap::new();
    let mut best_rank: BTreeMap<Uuid, usize> = BTreeMap::new();
    for piece in pieces {
        let rank = best_rank.entry(piece.document_id).or_insert(piece.rank);
        *rank = (*rank).min(piece.rank);
    }
    for piece in pieces {
        documents.entry((best_rank[&piece.document_id], piece.document_id)).or_default().insert(piece.index, piece);
    }
    let mut passages: Vec<Passage> = Vec::new();
    for chunks in documents.values() {
        let mut run: Vec<&Piece> = Vec::new();
        for piece in chunks.values() {
            if run.last().is_some_and(|last| last.index + 1 != piece.index) {
                passages.push(passage(&run, passages.len() + 1, encoding));
                run.clear();
            }
            run.push(piece);
        }
        if !run.is_empty() {
            passages.push(passage(&run, passages.len() + 1, encoding));
        }
    }
    let text = passages.iter().map(block).collect::<Vec<_>>().join("\n\n");
    let tokens = encoding.count(&text);
    Context { passages, text, tokens, budget: 0, encoding }
}

fn passage(run: &[&Piece], citation: usize, encoding: Encoding) -> Passage {
    let mut text = String::new();
    for piece in run {
        join_overlapping(&mut text, &piece.text);
    }
    let first = run.first().map(|p| p.metadata.clone()).unwrap_or_default();
    let headings = first
        .as_ref()
        .and_then(|m| m.get("headings"))
        .and_then(|h| h.as_array())
        .map(|h| h.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut pages: Vec<i64> =
        run.iter().filter_map(|p| p.metadata.as_ref().and_then(|m| m.get("page")).and_then(|p| p.as_i64())).collect();
    pages.dedup();
    Passage {
        citation,
        document_id: run.first().map(|p| p.document_id).unwrap_or_default(),
        document_title: run.first().map(|p| p.document_title.clone()).unwrap_or_default(),
        chunk_indexes: run.iter().map(|p| p.index).collect(),
        headings,
        pages,
        score: run.iter().map(|p| p.score).fold(0.0, f64::max),
        tokens: encoding.count(&text),
        text,
    }
}

/// A passage under its citation: `[1] Title › Heading (p. 2)`, then its text.
fn block(passage: &Passage) -> String {
    let mut header = format!("[{}] {}", passage.citation, passage.document_title);
    for heading in &passage.headings {
        header.push_str(" › ");
        header.push_str(heading);
    }
    match passage.pages.as_slice() {
        [] => {}
        [page] => header.push_str(&format!(" (p. {page})")),
        [first, .., last] => header.push_str(&format!(" (pp. {first}-{last})")),
    }
    format!("{header}\n{}", passage.text)
}

/// `a` then `b` without the text `b` repeats from the end of `a`: chunks overlap by a few
/// tokens, so a run of chunks (or a document) is its chunks with the overlaps removed.
pub fn join_overlapping(a: &mut String, b: &str) {
    let longest = a.len().min(b.len());
    let overlap = (8..=longest)
        .rev()
        .filter(|&n| b.is_char_boundary(n) && a.is_char_boundary(a.len() - n))
        .find(|&n| a.ends_with(&b[..n]))
        .unwrap_or(0);
    if overlap == 0 && !a.is_empty() {
        a.push('\n');
    }
    a.push_str(&b[overlap..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(document: u128, index: i32, rank: usize, text: &str) -> Piece {
        Piece {
            document_id: Uuid::from_u128(document),
            document_title: format!("Doc {document}"),
            index,
            text: text.to_string(),
            metadata: None,
            rank,
            score: 1.0 / (rank as f64 + 1.0),
        }
    }

    #[test]
    fn adjacent_chunks_merge_into_one_passage_without_their_overlap() {
        let pieces = [
            piece(1, 4, 0, "Refunds are issued within 14 days. Annual plans are prorated"),
            piece(1, 5, 3, "Annual plans are prorated by the month. Contact support to cancel."),
            piece(2, 0, 1, "Unrelated passage."),
        ];
        let context = render(&pieces, Encoding::Cl100k);
        assert_eq!(context.passages.len(), 2);
        let first = &context.passages[0];
        assert_eq!(first.chunk_indexes, [4, 5]);
        assert_eq!(
            first.text,
            "Refunds are issued within 14 days. Annual plans are prorated by the month. Contact support to cancel."
        );
        assert!(context.text.starts_with("[1] Doc 1\nRefunds"));
        assert!(context.text.contains("\n\n[2] Doc 2\nUnrelated passage."));
        assert_eq!(context.tokens, Encoding::Cl100k.count(&context.text));
    }

    #[test]
    fn documents_come_in_the_order_of_their_best_chunk_and_chunks_in_document_order() {
        let pieces = [piece(2, 9, 2, "c"), piece(1, 3, 1, "b"), piece(2, 1, 0, "a")];
        let context = render(&pieces, Encoding::Cl100k);
        let order: Vec<(u128, Vec<i32>)> =
            context.passages.iter().map(|p| (p.document_id.as_u128(), p.chunk_indexes.clone())).collect();
        assert_eq!(order, [(2, vec![1]), (2, vec![9]), (1, vec![3])]);
        assert_eq!(context.passages.iter().map(|p| p.citation).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_chunk_too_long_for_the_budget_is_cut_at_a_sentence_end() {
        let long = "First sentence is short. ".repeat(3) + &"word ".repeat(400);
        let fitted = fit_sentences(&piece(1, 0, 0, &long), 40, Encoding::Cl100k);
        assert_eq!(fitted, "First sentence is short. First sentence is short. First sentence is short.");
        let none = fit_sentences(&piece(1, 0, 0, &"word ".repeat(400)), 40, Encoding::Cl100k);
        assert!(none.is_empty());
    }

    #[test]
    fn near_duplicates_are_recognised_by_their_words() {
        let a = trigrams("The brand voice is warm, clear and confident in every channel we use.");
        let b = trigrams("The brand voice is warm, clear and confident in every channel we use!");
        let c = trigrams("Invoices are sent on the first day of each month by email.");
        assert!(jaccard(&a, &b) >= NEAR_DUPLICATE);
        assert!(jaccard(&a, &c) < 0.1);
    }

    #[test]
    fn the_two_encodings_count_differently_but_both_count() {
        let text = "Context windows are measured in tokens, not characters.";
        assert!(Encoding::Cl100k.count(text) > 5);
        assert!(Encoding::O200k.count(text) > 5);
    }

    #[test]
    fn overlapping_chunks_join_without_repeating_their_overlap() {
        let mut text = String::from("The quick brown fox jumps over the lazy dog.");
        join_overlapping(&mut text, "over the lazy dog. Then it sleeps.");
        assert_eq!(text, "The quick brown fox jumps over the lazy dog. Then it sleeps.");
        join_overlapping(&mut text, "Unrelated.");
        assert_eq!(text, "The quick brown fox jumps over the lazy dog. Then it sleeps.\nUnrelated.");
        let mut empty = String::new();
        join_overlapping(&mut empty, "First.");
        assert_eq!(empty, "First.");
    }
}

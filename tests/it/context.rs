//! Context for agents (`kb::context`, `POST /v1/context`) over `sample_docs/` with the real
//! model: never over the budget (counted with the same tokenizer), every passage cited,
//! the best-ranked passage included, adjacent chunks merged, the same answer every time.

use kb::context::{self, Context, ContextRequest, Encoding};
use kb::search::{self, Mode, SearchRequest};
use kb::store::Role;
use uuid::Uuid;

use crate::helpers::{Kb, repo_path};

fn request(question: &str, budget: usize, encoding: Encoding) -> ContextRequest {
    ContextRequest {
        question: question.to_string(),
        budget,
        encoding,
        bucket_id: None,
        bucket_type: None,
        campaign_id: None,
        mode: Mode::Vector,
        threshold: 0.2,
    }
}

async fn build(kb: &Kb, request: &ContextRequest) -> Context {
    context::build(&kb.db.pool, kb.embedder.as_ref(), kb.owner, Role::Authenticated, request).await.expect("context")
}

#[tokio::test]
async fn contexts_fit_the_budget_cite_every_passage_and_keep_the_best_one() {
    let kb = Kb::new("context").await;
    let summary = kb.ingest(&[repo_path("sample_docs")]).await;
    assert_eq!(summary.documents_failed, 0, "{:?}", summary.documents);

    let question = "Can I get my money back on an annual subscription?";
    let best = search::search(
        &kb.db.pool,
        kb.embedder.as_ref(),
        kb.owner,
        Role::Authenticated,
        &SearchRequest {
            query: question.into(),
            bucket_id: None,
            bucket_type: None,
            campaign_id: None,
            limit: 1,
            threshold: 0.2,
            mode: Mode::Vector,
        },
    )
    .await
    .expect("search")
    .hits
    .remove(0);

    for encoding in [Encoding::Cl100k, Encoding::O200k] {
        for budget in [60, 200, 600, 2000, 6000] {
            let context = build(&kb, &request(question, budget, encoding)).await;
            let what = format!("{encoding:?} budget {budget}");
            assert!(!context.passages.is_empty(), "{what}: nothing fits");
            assert_eq!(context.tokens, encoding.count(&context.text), "{what}: tokens miscounted");
            assert!(context.tokens <= budget, "{what}: {} tokens", context.tokens);
            for (n, passage) in context.passages.iter().enumerate() {
                assert_eq!(passage.citation, n + 1, "{what}: citations out of order");
                let cited = format!("[{}] {}", passage.citation, passage.document_title);
                assert!(context.text.contains(&cited), "{what}: {cited} not in the text block");
                assert!(context.text.contains(&passage.text), "{what}: passage {n} not in the text block");
                assert!(passage.chunk_indexes.windows(2).all(|w| w[1] == w[0] + 1), "{what}: a passage with a gap");
            }
            // The best chunk is in (whole once the budget allows it).
            let holds_best = context
                .passages
                .iter()
                .any(|p| p.document_id == best.document_id && p.chunk_indexes.contains(&best.chunk_index));
            assert!(holds_best, "{what}: the best passage is missing");
            if budget >= 600 {
                let first_sentence = best.chunk_content.split(". ").next().unwrap_or_default();
                assert!(context.text.contains(first_sentence), "{what}: the best chunk was cut");
            }
            // Passages of one document come in document order, each document once in a row.
            for pair in context.passages.windows(2) {
                if pair[0].document_id == pair[1].document_id {
                    assert!(pair[0].chunk_indexes[0] < pair[1].chunk_indexes[0], "{what}: out of document order");
                }
            }
        }
    }

    // A large budget adds the neighbours of the best chunk and merges them with it.
    let wide = build(&kb, &request(question, 6000, Encoding::Cl100k)).await;
    assert!(
        wide.passages.iter().any(|p| p.chunk_indexes.len() > 1),
        "no adjacent chunks merged: {:?}",
        wide.passages.iter().map(|p| &p.chunk_indexes).collect::<Vec<_>>()
    );
    let refund = wide.passages.iter().find(|p| p.document_id == best.document_id).expect("refund passage");
    assert_eq!(refund.document_title, best.document_title);
    assert!(refund.pages.iter().all(|&p| p >= 1), "PDF pages are cited");

    // The same input gives the same context.
    let again = build(&kb, &request(question, 6000, Encoding::Cl100k)).await;
    assert_eq!(again, wide);

    // Another user sees nothing of this user's documents.
    let stranger = crate::helpers::user(&kb.db.pool, "stranger@example.com").await;
    let theirs = context::build(
        &kb.db.pool,
        kb.embedder.as_ref(),
        stranger,
        Role::Authenticated,
        &request(question, 2000, Encoding::Cl100k),
    )
    .await
    .expect("context");
    assert!(theirs.passages.is_empty() && theirs.text.is_empty() && theirs.tokens == 0);
    assert_ne!(stranger, Uuid::nil());

    // Budgets out of range are refused.
    let too_small = context::build(
        &kb.db.pool,
        kb.embedder.as_ref(),
        kb.owner,
        Role::Authenticated,
        &request(question, 3, Encoding::Cl100k),
    )
    .await;
    assert!(matches!(too_small, Err(context::ContextError::Budget(3))));
}

//! Ingestion end to end: real files, real model, real database.

use std::path::PathBuf;

use kb::ingest::Outcome;
use kb::search::{Mode, SearchRequest};
use kb::store::Role;
use uuid::Uuid;

use crate::helpers::{Kb, repo_path};

async fn chunk_rows(kb: &Kb) -> Vec<(Uuid, Uuid, String, String)> {
    sqlx::query_as(
        "SELECT id, document_id, content_hash, content FROM knowledge_chunks ORDER BY document_id, chunk_index",
    )
    .fetch_all(&kb.db.pool)
    .await
    .expect("chunks")
}

#[tokio::test]
async fn sample_docs_answer_natural_questions_with_the_right_document() {
    let kb = Kb::new("samples").await;
    let summary = kb.ingest(&[repo_path("sample_docs")]).await;
    assert_eq!(summary.documents_failed, 0, "{:#?}", summary.documents);
    assert!(summary.documents_ready >= 12, "{} ready", summary.documents_ready);
    assert!(summary.documents.iter().any(|d| d.path.ends_with(".pdf")), "sample_docs has PDFs");

    let questions = [
        ("What tone should we use on LinkedIn?", "brand-voice-and-tone"),
        ("Can I get my money back on an annual subscription?", "refund-and-cancellation-policy"),
        ("How much does the Starter plan cost per month?", "pricing-and-billing"),
        ("How does double opt-in work for new email subscribers?", "email-marketing-playbook"),
        ("Who is allowed to talk to journalists for the company?", "press-and-pr-guidelines"),
        ("How much clear space must surround the logo?", "logo-and-visual-identity"),
        ("How fast does support respond to an urgent ticket?", "customer-support-sla"),
        ("What rights do people have over their personal data under GDPR?", "data-privacy-policy"),
        ("Which security certifications and audits does Lighthouse have?", "security-overview"),
        ("When are affiliate commissions paid out?", "partner-affiliate-program"),
        ("How many weeks before a webinar should promotion start?", "webinar-and-event-playbook"),
        ("How do I invite my teammates to the workspace?", "onboarding-guide"),
        ("How should we do keyword research for blog articles?", "seo-content-guidelines"),
    ];
    let mut misses = Vec::new();
    for (question, expected) in questions {
        for mode in [Mode::Vector, Mode::Hybrid] {
            let request = SearchRequest {
                query: question.to_string(),
                bucket_id: Some(kb.bucket.id),
                bucket_type: None,
                campaign_id: None,
                limit: 3,
                threshold: 0.0,
                mode,
            };
            let response =
                kb::search::search(&kb.db.pool, kb.embedder.as_ref(), kb.owner, Role::Authenticated, &request)
                    .await
                    .expect("search");
            let paths: Vec<String> = {
                let mut paths = Vec::new();
                for hit in &response.hits {
                    let path: String = sqlx::query_scalar("SELECT upload_path FROM knowledge_documents WHERE id = $1")
                        .bind(hit.document_id)
                        .fetch_one(&kb.db.pool)
                        .await
                        .expect("doc");
                    paths.push(path);
                }
                paths
            };
            if !paths.iter().any(|p| p.contains(expected)) {
                misses.push(format!("{mode:?} {question:?}: expected {expected}, got {paths:?}"));
            }
        }
    }
    assert!(misses.is_empty(), "questions whose document was not in the top 3:\n{}", misses.join("\n"));
}

#[tokio::test]
async fn re_ingesting_an_unchanged_corpus_embeds_nothing_and_rewrites_nothing() {
    let kb = Kb::new("unchanged").await;
    let paths = [repo_path("sample_docs/brand-voice-and-tone.md"), repo_path("sample_docs/product-faq.html")];
    let first = kb.ingest(&paths).await;
    assert_eq!(first.documents_ready, 2, "{:#?}", first.documents);
    let calls = kb.embedder.count();
    assert!(calls > 0);
    let before = chunk_rows(&kb).await;

    let second = kb.ingest(&paths).await;
    assert_eq!(second.documents_unchanged, 2, "{:#?}", second.documents);
    assert_eq!(second.embeddings_computed, 0);
    assert_eq!(kb.embedder.count(), calls, "no embedding call on an unchanged corpus");
    assert_eq!(chunk_rows(&kb).await, before, "chunks were rewritten");
}

#[tokio::test]
async fn editing_one_paragraph_re_embeds_only_its_chunks_and_drops_stale_ones() {
    let kb = Kb::new("edited").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("handbook.md");
    let paragraphs: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "## Section {i}\n\nParagraph {i} explains policy number {i} for the marketing team. \
                 It covers approvals, budgets, channel owners and the review cadence for topic {i}, \
                 with enough words that each section becomes a chunk of its own in the knowledge base."
            )
        })
        .collect();
    std::fs::write(&file, format!("# Handbook\n\n{}", paragraphs.join("\n\n"))).expect("write");
    let first = kb.ingest(std::slice::from_ref(&file)).await;
    let Outcome::Ready { chunks, .. } = first.documents[0].outcome else { panic!("{:#?}", first.documents) };
    assert!(chunks >= 6, "{chunks} chunks");
    let calls = kb.embedder.count();

    let mut edited = paragraphs.clone();
    edited[5] = "## Section 5\n\nThe refund window for event sponsorships is now forty-five days.".to_string();
    std::fs::write(&file, format!("# Handbook\n\n{}", edited.join("\n\n"))).expect("write");
    let second = kb.ingest(std::slice::from_ref(&file)).await;
    let Outcome::Ready { embedded, reused, .. } = second.documents[0].outcome else {
        panic!("{:#?}", second.documents)
    };
    assert!((1..=2).contains(&embedded), "embedded {embedded} chunks for one edited paragraph");
    assert_eq!(kb.embedder.count() - calls, embedded);
    assert!(reused >= chunks - 2, "reused {reused} of {chunks}");

    let rows = chunk_rows(&kb).await;
    assert!(rows.iter().any(|(_, _, _, c)| c.contains("forty-five days")));
    assert!(!rows.iter().any(|(_, _, _, c)| c.contains("policy number 5 ")), "stale chunk left behind");
    let indexes: Vec<i32> = sqlx::query_scalar("SELECT chunk_index FROM knowledge_chunks ORDER BY chunk_index")
        .fetch_all(&kb.db.pool)
        .await
        .expect("indexes");
    assert_eq!(indexes, (0..indexes.len() as i32).collect::<Vec<_>>());
}

#[tokio::test]
async fn hostile_files_fail_cleanly_while_the_rest_of_the_batch_is_ready() {
    let kb = Kb::new("hostile").await;
    let hostile = repo_path("tests/fixtures/hostile");
    let paths: Vec<PathBuf> = vec![
        hostile.join("malformed.pdf"),
        hostile.join("empty.txt"),
        hostile.join("binary.txt"),
        hostile.join("invalid-utf8.md"),
        repo_path("sample_docs/onboarding-guide.md"),
        repo_path("sample_docs/pricing-and-billing.pdf"),
    ];
    let summary = kb.ingest(&paths).await;
    assert_eq!(summary.documents_ready, 2, "{:#?}", summary.documents);
    assert_eq!(summary.documents_failed, 4, "{:#?}", summary.documents);

    let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT d.file_name, d.status, d.processing_error,
                (SELECT count(*) FROM knowledge_chunks c WHERE c.document_id = d.id)
         FROM knowledge_documents d ORDER BY d.file_name",
    )
    .fetch_all(&kb.db.pool)
    .await
    .expect("documents");
    let expect_error = |name: &str, words: &str| {
        let row = rows.iter().find(|r| r.0 == name).expect(name);
        assert_eq!(row.1, "failed", "{name}");
        let error = row.2.clone().unwrap_or_default();
        assert!(error.to_lowercase().contains(words), "{name}: {error:?} should mention {words:?}");
        assert_eq!(row.3, 0, "{name} has chunks");
    };
    expect_error("malformed.pdf", "pdf");
    expect_error("empty.txt", "no text");
    expect_error("binary.txt", "binary");
    expect_error("invalid-utf8.md", "utf-8");
    for good in ["onboarding-guide.md", "pricing-and-billing.pdf"] {
        let row = rows.iter().find(|r| r.0 == good).expect(good);
        assert_eq!((row.1.as_str(), row.2.as_deref()), ("ready", None), "{good}");
        assert!(row.3 > 0, "{good} has no chunks");
    }
    let pages: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT c.metadata FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id
         WHERE d.file_name = 'pricing-and-billing.pdf' ORDER BY c.chunk_index",
    )
    .fetch_all(&kb.db.pool)
    .await
    .expect("metadata");
    assert_eq!(pages.first().and_then(|m| m.get("page")).and_then(|p| p.as_u64()), Some(1));
    assert!(pages.iter().any(|m| m.get("page").and_then(|p| p.as_u64()) == Some(2)), "PDF page provenance");
}

#[tokio::test]
async fn an_identical_document_at_another_path_is_reported_not_stored_twice() {
    let kb = Kb::new("dupes").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let original = repo_path("sample_docs/customer-support-sla.txt");
    let copy = dir.path().join("sla-copy.txt");
    std::fs::copy(&original, &copy).expect("copy");
    let first = kb.ingest(std::slice::from_ref(&original)).await;
    assert_eq!(first.documents_ready, 1);
    let second = kb.ingest(&[copy]).await;
    assert_eq!(second.documents_duplicate, 1, "{:#?}", second.documents);
    match &second.documents[0].outcome {
        Outcome::Duplicate { of_path, .. } => {
            assert_eq!(of_path.as_deref(), Some(original.canonicalize().expect("path").to_str().expect("utf8")))
        }
        other => panic!("{other:?}"),
    }
    let documents: i64 =
        sqlx::query_scalar("SELECT count(*) FROM knowledge_documents").fetch_one(&kb.db.pool).await.expect("n");
    assert_eq!(documents, 1);
}

//! `kb eval` on the small collection under `tests/fixtures/eval/`: ingestion through kb's
//! pipeline (and reuse on a second run), and the figures of each mode.

use std::time::Duration;

use kb::cli::eval::{self, Collection, ModeReport};
use kb::ingest::{Silent, WorkerSettings};
use kb::search::{Mode, SearchOptions};

use crate::helpers::{Kb, repo_path};

fn figures(report: &ModeReport) -> [f64; 4] {
    [report.ndcg_at_10, report.recall_at_10, report.recall_at_100, report.mrr_at_10]
}

#[tokio::test]
async fn eval_scores_the_shipped_collection_with_known_figures() {
    let collection = Collection::load(&repo_path("tests/fixtures/eval")).expect("collection");
    assert_eq!(collection.docs.len(), 13);
    assert_eq!(collection.queries.len(), 5, "q6 has no judgment and is left out");

    let kb = Kb::new("eval").await;
    let work = tempfile::tempdir().expect("tempdir");
    let settings = WorkerSettings::new(Duration::from_secs(30), Duration::from_secs(600));
    let (summary, documents) =
        eval::ingest_collection(&kb.pipeline, kb.owner, &kb.bucket, &collection, work.path(), &settings, &Silent)
            .await
            .expect("ingest");
    assert_eq!(summary.documents_ready, 13, "{summary:?}");
    assert_eq!(documents.len(), 13);

    let runs =
        eval::runs(&[Mode::Vector, Mode::Lexical, Mode::Hybrid], &[0.0, 1.0], SearchOptions::default(), eval::DEPTH);
    let runs: Vec<_> =
        runs.into_iter().chain(eval::runs(&[Mode::Hybrid], &[], SearchOptions::default(), eval::DEPTH)).collect();
    let (_, reports) =
        eval::evaluate(&kb.db.pool, kb.embedder.as_ref(), kb.owner, kb.bucket.id, &collection, &documents, &runs)
            .await
            .expect("evaluate");
    for r in &reports {
        eprintln!("{:?} alpha {:?}: {:?}", r.mode, r.alpha, figures(r));
    }
    let [vector, lexical, hybrid_lexical, hybrid_vector, hybrid] = &reports[..] else { panic!("{reports:?}") };

    // Lexical mode, by hand: every query ranks its grade-2 document first and its grade-1
    // document second, except q5 ("fixing a flat tyre on a bike"): x1 (grade 2, "tyre") comes
    // first, but x3 (grade 1, "Patching a puncture") shares no term with the query and is never
    // retrieved. q5: nDCG@10 = 2 / (2 + 1/log2(3)) = 0.7602, recall 1/2, MRR 1; the mean over
    // five queries: nDCG@10 (4 + 0.7602) / 5 = 0.9520, recall@10 = recall@100 = 0.9, MRR@10 1.
    // The model finds x3 by meaning: vector and hybrid rank every judged document in place.
    assert_figures("lexical", lexical, LEXICAL);
    assert_figures("vector", vector, VECTOR);
    assert_figures("hybrid", hybrid, HYBRID);
    // The weight's ends are the two rankings alone. At alpha 0 the BM25 matches come first in
    // BM25 order, and the vector's other candidates (score 0, in no fixed order) after them:
    // they can add a relevant document below the matches (x3 for q5), never push one down.
    assert_eq!(hybrid_lexical.alpha, Some(0.0));
    assert!(figures(hybrid_lexical)[0] >= figures(lexical)[0], "alpha 0 ranks by BM25");
    assert_eq!(figures(hybrid_vector)[0], figures(vector)[0], "alpha 1 ranks by the vector");
    assert_eq!(hybrid.alpha, Some(kb::search::DEFAULT_ALPHA));

    // A second run reuses the bucket: every document is unchanged, nothing is embedded.
    let before = kb.embedder.count();
    let (again, documents_again) =
        eval::ingest_collection(&kb.pipeline, kb.owner, &kb.bucket, &collection, work.path(), &settings, &Silent)
            .await
            .expect("ingest again");
    assert_eq!(again.documents_unchanged, 13, "{again:?}");
    assert_eq!(kb.embedder.count(), before);
    assert_eq!(documents_again, documents);
}

/// nDCG@10, recall@10, recall@100, MRR@10.
const LEXICAL: [f64; 4] = [0.952_04, 0.9, 0.9, 1.0];
const VECTOR: [f64; 4] = [1.0, 1.0, 1.0, 1.0];
const HYBRID: [f64; 4] = [1.0, 1.0, 1.0, 1.0];

fn assert_figures(name: &str, report: &ModeReport, want: [f64; 4]) {
    let got = figures(report);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-4, "{name}: figure {i} is {g}, expected {w} (all: {got:?})");
    }
    assert!(report.ms_per_query > 0.0);
}

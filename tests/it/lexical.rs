//! Lexical (BM25) and hybrid search in PostgreSQL: scores against a hand computation, term
//! statistics against a recount, row level security, configurations, fusion weights and
//! grouping by document.

use std::collections::HashMap;

use kb::search::{self, GroupBy, Mode, SearchOptions, SearchRequest};
use kb::store::buckets::NewBucket;
use kb::store::chunks::{NewChunk, replace_chunks};
use kb::store::lexical::{self, TextSearchConfig};
use kb::store::{self, Bucket, Role, documents};
use pgvector::Vector;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Kb, TestDb, bucket, user};

/// A 3-dimension model: vectors the tests choose, so each ranking is known.
const MODEL: &str = "lexical-test-3d";

async fn model(pool: &PgPool) {
    let mut conn = pool.acquire().await.expect("conn");
    store::index::register_model(&mut conn, MODEL, 3).await.expect("model");
}

/// Writes one ready document holding `texts` as chunks (vectors from `vectors`), as the
/// ingestion workers do (service role, `replace_chunks`).
async fn document(pool: &PgPool, owner: Uuid, bucket_id: Uuid, key: &str, texts: &[(&str, [f32; 3])]) -> Uuid {
    let mut tx = store::begin_as(pool, owner, Role::ServiceRole).await.expect("begin");
    let new = documents::NewDocument {
        bucket_id,
        title: key,
        file_name: key,
        file_type: Some("txt"),
        file_size: 0,
        upload_path: key,
        content_hash: key,
        created_by: owner,
    };
    let doc = documents::insert_ready(&mut tx, &new).await.expect("document");
    let chunks: Vec<NewChunk> = texts
        .iter()
        .enumerate()
        .map(|(i, (text, v))| NewChunk {
            chunk_index: i as i32,
            content: text.to_string(),
            content_hash: format!("{key}-{i}"),
            token_count: 1,
            embedding: Vector::from(v.to_vec()),
            metadata: serde_json::json!({}),
        })
        .collect();
    replace_chunks(&mut tx, doc, bucket_id, MODEL, &chunks).await.expect("chunks");
    tx.commit().await.expect("commit");
    doc
}

/// BM25 scores of the chunks matching `query`, by content, as `user` sees them.
async fn bm25(pool: &PgPool, user: Uuid, query: &str, settings: &[(&str, &str)]) -> HashMap<String, f64> {
    let mut tx = store::begin_as(pool, user, Role::Authenticated).await.expect("begin");
    for (name, value) in settings {
        sqlx::query("SELECT set_config($1, $2, true)").bind(name).bind(value).execute(&mut *tx).await.expect("set");
    }
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "SELECT kc.content, l.score
         FROM public.lexical_knowledge_chunks($1, $2, NULL, NULL, NULL, NULL, 100) l
         JOIN public.knowledge_chunks kc ON kc.id = l.chunk_id",
    )
    .bind(query)
    .bind(MODEL)
    .fetch_all(&mut *tx)
    .await
    .expect("lexical");
    tx.rollback().await.expect("rollback");
    rows.into_iter().collect()
}

/// Okapi BM25 of one term occurrence count, as the issue defines it.
fn term_score(n: f64, df: f64, tf: f64, len: f64, avg: f64, k1: f64, b: f64) -> f64 {
    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
    idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len / avg))
}

#[tokio::test]
async fn bm25_matches_a_hand_computed_corpus() {
    let db = TestDb::new().await;
    model(&db.pool).await;
    let owner = user(&db.pool, "bm25@example.com").await;
    let b = bucket(&db.pool, owner, "fruit", "general", MODEL).await;
    // English stemming: apples -> appl, cherries -> cherri. Lengths count every
    // non-stop-word token: 2, 2, 6 and 2 (the two `the`s are stop words); 12 in all.
    document(
        &db.pool,
        owner,
        b.id,
        "fruit.txt",
        &[
            ("apple banana", [1.0, 0.0, 0.0]),
            ("apples cherry", [0.0, 1.0, 0.0]),
            ("apple date date elderberry fig grape", [0.0, 0.0, 1.0]),
            ("the cherries the kiwi", [1.0, 1.0, 0.0]),
        ],
    )
    .await;
    let (n, avg) = (4.0, 12.0 / 4.0);
    let scores = bm25(&db.pool, owner, "apple cherry", &[]).await;
    let expect = |tf_len: &[(f64, f64)], len: f64| {
        tf_len.iter().map(|&(df, tf)| term_score(n, df, tf, len, avg, 1.2, 0.75)).sum::<f64>()
    };
    // apple: df 3 (common); cherry: df 2.
    let want = [
        ("apple banana", expect(&[(3.0, 1.0)], 2.0)),
        ("apples cherry", expect(&[(3.0, 1.0), (2.0, 1.0)], 2.0)),
        ("apple date date elderberry fig grape", expect(&[(3.0, 1.0)], 6.0)),
        ("the cherries the kiwi", expect(&[(2.0, 1.0)], 2.0)),
    ];
    assert_eq!(scores.len(), 4, "{scores:?}");
    for (content, score) in want {
        assert!((scores[content] - score).abs() < 1e-9, "{content}: {} != {score}", scores[content]);
    }
    // The rarer term weighs more: one `cherry` beats one `apple` in chunks of equal length.
    assert!(scores["the cherries the kiwi"] > scores["apple banana"]);
    // Length normalisation: the same single `apple` scores less in the longer chunk...
    assert!(scores["apple date date elderberry fig grape"] < scores["apple banana"]);
    // ...and not at all differently with b = 0; k1 comes from its setting too.
    let flat = bm25(&db.pool, owner, "apple", &[("kb.bm25_b", "0"), ("kb.bm25_k1", "2")]).await;
    let plain = term_score(n, 3.0, 1.0, 2.0, avg, 2.0, 0.0);
    for content in ["apple banana", "apple date date elderberry fig grape", "apples cherry"] {
        assert!((flat[content] - plain).abs() < 1e-9, "{content}: {}", flat[content]);
    }
    // A term repeated in a chunk counts with its frequency.
    let date = bm25(&db.pool, owner, "date", &[]).await;
    let want = term_score(n, 1.0, 2.0, 6.0, avg, 1.2, 0.75);
    assert!((date["apple date date elderberry fig grape"] - want).abs() < 1e-9);
    // No query term in the bucket: nothing, not an error.
    assert!(bm25(&db.pool, owner, "zebra", &[]).await.is_empty());
    assert!(bm25(&db.pool, owner, "the", &[]).await.is_empty(), "stop words only");
}

async fn assert_statistics_exact(kb: &Kb, step: &str) -> lexical::TermStatistics {
    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    let kept = lexical::term_statistics(&mut tx, kb.bucket.id).await.expect("kept");
    let counted = lexical::recount_term_statistics(&mut tx, kb.bucket.id).await.expect("recount");
    tx.rollback().await.expect("rollback");
    assert_eq!(kept, counted, "{step}: statistics differ from a recount");
    kept
}

#[tokio::test]
async fn term_statistics_stay_exact_through_insert_reingest_update_and_delete() {
    let kb = Kb::new("stats").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write("a.txt", "Solar panels convert sunlight into electricity. Panels age slowly.");
    write("b.txt", "Wind turbines convert wind into electricity. Turbines need maintenance.");
    write("c.md", "# Batteries\n\nBatteries store electricity for the night.");
    let summary = kb.ingest(&[dir.path().to_path_buf()]).await;
    assert_eq!(summary.documents_ready, 3, "{summary:?}");
    let first = assert_statistics_exact(&kb, "after the first ingest").await;
    assert_eq!(first.chunks, 3);
    assert!(first.terms.iter().any(|(t, df)| t == "electr" && *df == 3), "{:?}", first.terms);

    // An edited document: its chunks are replaced (delete + insert in one transaction).
    write("a.txt", "Solar panels and solar heaters. Heaters warm water with sunlight.");
    let summary = kb.ingest(&[dir.path().to_path_buf()]).await;
    assert_eq!((summary.documents_ready, summary.documents_unchanged), (1, 2), "{summary:?}");
    let edited = assert_statistics_exact(&kb, "after re-ingesting an edited document").await;
    assert!(edited.terms.iter().any(|(t, df)| t == "electr" && *df == 2), "{:?}", edited.terms);
    assert!(edited.terms.iter().any(|(t, _)| t == "heater"));
    assert!(!edited.terms.iter().any(|(t, _)| t == "age"), "a term gone from every chunk leaves");

    // Written by hand (as the database owner): the full-text columns follow the content,
    // whatever a statement sets them to.
    sqlx::query("UPDATE public.knowledge_chunks SET fts = to_tsvector('simple', 'bogus'), fts_length = 1")
        .execute(&kb.db.pool)
        .await
        .expect("update fts");
    let kept = assert_statistics_exact(&kb, "after writing the full-text columns by hand").await;
    assert_eq!(kept, edited, "the columns were kept");
    sqlx::query(
        "UPDATE public.knowledge_chunks SET content = 'Geothermal plants tap heat underground.'
         WHERE content LIKE '%Batteries%'",
    )
    .execute(&kb.db.pool)
    .await
    .expect("update content");
    let rewritten = assert_statistics_exact(&kb, "after rewriting a chunk's content").await;
    assert!(rewritten.terms.iter().any(|(t, df)| t == "geotherm" && *df == 1), "{:?}", rewritten.terms);
    assert!(!rewritten.terms.iter().any(|(t, _)| t == "batteri"), "the old content's terms leave");

    // A document deleted by its owner (chunks go by cascade, as the owner).
    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    let deleted = sqlx::query("DELETE FROM public.knowledge_documents WHERE upload_path LIKE '%b.txt'")
        .execute(&mut *tx)
        .await
        .expect("delete");
    assert_eq!(deleted.rows_affected(), 1);
    tx.commit().await.expect("commit");
    let after = assert_statistics_exact(&kb, "after deleting a document").await;
    assert_eq!(after.chunks, 2);
    assert!(!after.terms.iter().any(|(t, _)| t == "turbin"));

    // The whole bucket: its statistics go with it.
    let mut tx = store::begin_as(&kb.db.pool, kb.owner, Role::Authenticated).await.expect("begin");
    sqlx::query("DELETE FROM public.knowledge_buckets WHERE id = $1")
        .bind(kb.bucket.id)
        .execute(&mut *tx)
        .await
        .expect("delete");
    tx.commit().await.expect("commit");
    let left: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM public.knowledge_lexical_terms), (SELECT count(*) FROM public.knowledge_lexical_buckets)",
    )
    .fetch_one(&kb.db.pool)
    .await
    .expect("count");
    assert_eq!(left, (0, 0));
}

fn request(query: &str, mode: Mode, limit: u32) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        bucket_id: None,
        bucket_type: None,
        campaign_id: None,
        limit,
        threshold: -1.0,
        mode,
    }
}

/// Hits of `mode` as (content, score), as `user`, as the server searches (a hybrid search's
/// rankings side by side on two connections).
async fn hits(pool: &PgPool, user: Uuid, query: &str, mode: Mode, options: SearchOptions) -> Vec<(String, f64)> {
    let embedding = Vector::from(vec![1.0, 0.0, 0.0]);
    let found =
        search::nearest_as(pool, user, Role::Authenticated, MODEL, &embedding, &request(query, mode, 10), &options)
            .await
            .expect("search");
    found.into_iter().map(|h| (h.chunk_content, h.score.unwrap_or(f64::NAN))).collect()
}

/// A database with the test model and two users, Alice and Bob, each with a bucket.
async fn alice_and_bob() -> (TestDb, Uuid, Uuid, Bucket, Bucket) {
    let db = TestDb::new().await;
    model(&db.pool).await;
    let alice = user(&db.pool, "alice@example.com").await;
    let bob = user(&db.pool, "bob@example.com").await;
    let a = bucket(&db.pool, alice, "notes", "general", MODEL).await;
    let b = bucket(&db.pool, bob, "notes", "general", MODEL).await;
    (db, alice, bob, a, b)
}

#[tokio::test]
async fn hybrid_ranks_the_same_side_by_side_one_after_the_other_and_through_sql() {
    let (db, alice, bob, a, b) = alice_and_bob().await;
    // Alice's chunks near the query vector share no word with the query; those with its
    // words lie far from it: each ranking brings candidates of its own.
    let texts: Vec<(String, [f32; 3])> = (0..30)
        .map(|i| match i % 3 {
            0 => (format!("night owl {i}"), [0.0, 0.1 + i as f32 / 30.0, 1.0]),
            _ => (format!("forest river {i}"), [1.0, i as f32 / 30.0, 0.0]),
        })
        .collect();
    let texts: Vec<(&str, [f32; 3])> = texts.iter().map(|(t, v)| (t.as_str(), *v)).collect();
    document(&db.pool, alice, a.id, "a.txt", &texts).await;
    // Bob's chunks outscore Alice's on both counts (in his bucket "owl" is rarer); Alice must
    // never see them, nor lose her own candidates to them.
    let mut bobs: Vec<(String, [f32; 3])> =
        (0..20).map(|i| (format!("owl owl night owl {i}"), [1.0, 0.2, 0.0])).collect();
    bobs.extend((0..80).map(|i| (format!("lake {i}"), [0.0, 1.0, 0.0])));
    let bobs: Vec<(&str, [f32; 3])> = bobs.iter().map(|(t, v)| (t.as_str(), *v)).collect();
    document(&db.pool, bob, b.id, "b.txt", &bobs).await;

    let request = SearchRequest { limit: 8, ..request("night owl", Mode::Hybrid, 8) };
    let embedding = Vector::from(vec![1.0, 0.2, 0.0]);
    let options = SearchOptions { candidates: Some(12), ..SearchOptions::default() };
    let ranked = |hits: Vec<search::SearchHit>| hits.into_iter().map(|h| (h.chunk_id, h.score)).collect::<Vec<_>>();
    let side_by_side = search::nearest_as(&db.pool, alice, Role::Authenticated, MODEL, &embedding, &request, &options)
        .await
        .expect("search");
    assert_eq!(side_by_side.len(), 8);
    assert!(side_by_side.iter().all(|h| h.bucket_id == a.id), "only Alice's chunks");
    let owls = side_by_side.iter().filter(|h| h.chunk_content.starts_with("night owl")).count();
    assert!(owls > 0, "the BM25 ranking's own candidates are among the hits");
    // A pool of one connection has no spare: the rankings run one after the other.
    let one = store::connect(&db.url, 1).await.expect("pool of one");
    let one_after_the_other =
        search::nearest_as(&one, alice, Role::Authenticated, MODEL, &embedding, &request, &options)
            .await
            .expect("search");
    let mut tx = store::begin_as(&db.pool, alice, Role::Authenticated).await.expect("begin");
    let sql: Vec<(Uuid, Option<f64>)> = sqlx::query_as(
        "SELECT chunk_id, fused_score FROM public.hybrid_search_knowledge_chunks(
           NULL, 'night owl', $1, p_limit => 8, p_similarity_threshold => -1, p_candidates => 12)",
    )
    .bind(&embedding)
    .fetch_all(&mut *tx)
    .await
    .expect("sql");
    tx.rollback().await.expect("rollback");
    let side_by_side = ranked(side_by_side);
    assert_eq!(side_by_side, ranked(one_after_the_other));
    assert_eq!(side_by_side, sql);
}

#[tokio::test]
async fn another_users_chunks_are_never_returned_nor_counted() {
    let (db, alice, bob, a, b) = alice_and_bob().await;
    document(
        &db.pool,
        alice,
        a.id,
        "a.txt",
        &[("zebra crossing rules", [1.0, 0.0, 0.0]), ("apple orchard", [0.0, 1.0, 0.0])],
    )
    .await;
    let options = SearchOptions::default();
    let lexical_before = hits(&db.pool, alice, "zebra apple", Mode::Lexical, options).await;
    let hybrid_before = hits(&db.pool, alice, "zebra apple", Mode::Hybrid, options).await;
    assert_eq!(lexical_before.len(), 2);

    // Bob's bucket fills with the same words: a shared statistic would lower Alice's idf.
    let many: Vec<(&str, [f32; 3])> = (0..20).map(|_| ("zebra zebra apple", [1.0, 0.0, 0.0])).collect();
    document(&db.pool, bob, b.id, "b.txt", &many).await;
    for mode in [Mode::Lexical, Mode::Hybrid] {
        let after = hits(&db.pool, alice, "zebra apple", mode, options).await;
        let before = if mode == Mode::Lexical { &lexical_before } else { &hybrid_before };
        assert_eq!(&after, before, "{mode:?}: Bob's documents changed Alice's results");
        assert!(after.iter().all(|(content, _)| content != "zebra zebra apple"), "{mode:?}: {after:?}");
    }
    // Bob sees his own (the first 10).
    let bobs = hits(&db.pool, bob, "zebra", Mode::Lexical, options).await;
    assert_eq!(bobs.len(), 10);
    assert!(bobs.iter().all(|(content, _)| content == "zebra zebra apple"));

    // Alice reads no statistics of Bob's bucket, and naming Bob finds nothing.
    let mut tx = store::begin_as(&db.pool, alice, Role::Authenticated).await.expect("begin");
    let (terms, buckets): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM public.knowledge_lexical_terms WHERE bucket_id = $1),
                (SELECT count(*) FROM public.knowledge_lexical_buckets WHERE bucket_id = $1)",
    )
    .bind(b.id)
    .fetch_one(&mut *tx)
    .await
    .expect("stats");
    assert_eq!((terms, buckets), (0, 0));
    let named: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM public.lexical_knowledge_chunks('zebra', $1, $2, NULL, NULL, NULL, 10)",
    )
    .bind(MODEL)
    .bind(bob)
    .fetch_one(&mut *tx)
    .await
    .expect("named");
    assert_eq!(named, 0);
    // The scoring function runs with its owner's rights (to use the full-text index under
    // row level security) but scores only buckets the caller may read: Bob's, asked for
    // directly by Alice, score nothing.
    let direct: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM public.knowledge_bm25('index', ARRAY[$1, $2]::uuid[], $3, '{english}', '{zebra}',
                                                  1000, 1.2, 0.75, 100, 'zebra'::tsquery, NULL)",
    )
    .bind(b.id)
    .bind(a.id)
    .bind(MODEL)
    .fetch_one(&mut *tx)
    .await
    .expect("direct");
    assert_eq!(direct, 1, "only Alice's one zebra chunk");
    // Nor can Alice write statistics.
    let write = sqlx::query("UPDATE public.knowledge_lexical_terms SET doc_freq = 1000").execute(&mut *tx).await;
    assert!(write.is_err(), "statistics are written by the triggers only");
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn alpha_moves_hybrid_from_bm25_order_to_vector_order() {
    let db = TestDb::new().await;
    model(&db.pool).await;
    let owner = user(&db.pool, "alpha@example.com").await;
    let b = bucket(&db.pool, owner, "alpha", "general", MODEL).await;
    // The query vector is [1, 0, 0]: "tulip" chunks are nearest, "rose" chunks match the words.
    document(
        &db.pool,
        owner,
        b.id,
        "garden.txt",
        &[
            ("tulip bulbs in autumn", [1.0, 0.0, 0.0]),
            ("tulip colours", [0.9, 0.1, 0.0]),
            ("rose pruning guide for roses", [0.0, 1.0, 0.0]),
            ("rose", [0.0, 0.0, 1.0]),
        ],
    )
    .await;
    let order = |hits: Vec<(String, f64)>| hits.into_iter().map(|(c, _)| c).collect::<Vec<_>>();
    let vector_only = SearchOptions { alpha: Some(1.0), ..SearchOptions::default() };
    let lexical_only = SearchOptions { alpha: Some(0.0), ..SearchOptions::default() };
    let v = order(hits(&db.pool, owner, "rose pruning", Mode::Hybrid, vector_only).await);
    assert_eq!(&v[..2], ["tulip bulbs in autumn", "tulip colours"], "{v:?}");
    let l = order(hits(&db.pool, owner, "rose pruning", Mode::Hybrid, lexical_only).await);
    let lexical = order(hits(&db.pool, owner, "rose pruning", Mode::Lexical, SearchOptions::default()).await);
    assert_eq!(&l[..2], &lexical[..2], "alpha 0 ranks as BM25 does");
    assert_eq!(lexical[0], "rose pruning guide for roses");
    // Fused scores lie in [0, 1] and come best first.
    let fused = hits(&db.pool, owner, "rose pruning", Mode::Hybrid, SearchOptions::default()).await;
    assert!(fused.windows(2).all(|w| w[0].1 >= w[1].1), "{fused:?}");
    assert!(fused.iter().all(|(_, s)| (0.0..=1.0).contains(s)), "{fused:?}");
}

#[tokio::test]
async fn grouping_by_document_returns_each_documents_best_chunk_once() {
    let db = TestDb::new().await;
    model(&db.pool).await;
    let owner = user(&db.pool, "group@example.com").await;
    let b = bucket(&db.pool, owner, "group", "general", MODEL).await;
    document(
        &db.pool,
        owner,
        b.id,
        "one.txt",
        &[("comet tail", [1.0, 0.0, 0.0]), ("comet comet nucleus", [0.9, 0.1, 0.0])],
    )
    .await;
    document(&db.pool, owner, b.id, "two.txt", &[("comet orbit", [0.5, 0.5, 0.0])]).await;
    for mode in [Mode::Vector, Mode::Lexical, Mode::Hybrid] {
        let chunks = hits(&db.pool, owner, "comet", mode, SearchOptions::default()).await;
        assert_eq!(chunks.len(), 3, "{mode:?}");
        let grouped = SearchOptions { group_by: GroupBy::Document, ..SearchOptions::default() };
        let docs = hits(&db.pool, owner, "comet", mode, grouped).await;
        assert_eq!(docs.len(), 2, "{mode:?}: {docs:?}");
        assert_eq!(docs[0], chunks[0], "{mode:?}: the best chunk stands for its document");
    }
}

#[tokio::test]
async fn a_simple_bucket_matches_words_unstemmed() {
    let db = TestDb::new().await;
    model(&db.pool).await;
    let owner = user(&db.pool, "simple@example.com").await;
    let english = bucket(&db.pool, owner, "english", "general", MODEL).await;
    let simple = {
        let mut tx = store::begin_as(&db.pool, owner, Role::Authenticated).await.expect("begin");
        let new = NewBucket {
            name: "simple",
            bucket_type: "general",
            campaign_id: None,
            embedding_model: MODEL,
            created_by: owner,
        };
        let bucket = lexical::ensure_bucket_with_config(&mut tx, &new, TextSearchConfig::Simple).await.expect("bucket");
        assert_eq!(lexical::text_search_config(&mut tx, bucket.id).await.expect("config").as_deref(), Some("simple"));
        tx.commit().await.expect("commit");
        bucket
    };
    document(&db.pool, owner, english.id, "en.txt", &[("the runners were running", [1.0, 0.0, 0.0])]).await;
    document(&db.pool, owner, simple.id, "fr.txt", &[("les coureurs running", [1.0, 0.0, 0.0])]).await;
    let mut tx = store::begin_as(&db.pool, owner, Role::Authenticated).await.expect("begin");
    let config: String =
        sqlx::query_scalar("SELECT text_search_config FROM public.knowledge_chunks WHERE bucket_id = $1")
            .bind(simple.id)
            .fetch_one(&mut *tx)
            .await
            .expect("chunk config");
    assert_eq!(config, "simple", "a chunk takes its bucket's configuration");
    // `les` is kept (no French stop words in `simple`), `run` matches only the stemmed bucket.
    let terms = lexical::term_statistics(&mut tx, simple.id).await.expect("terms");
    assert!(terms.terms.iter().any(|(t, _)| t == "les") && terms.terms.iter().any(|(t, _)| t == "running"));
    tx.rollback().await.expect("rollback");
    let run = hits(&db.pool, owner, "run", Mode::Lexical, SearchOptions::default()).await;
    assert_eq!(run.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["the runners were running"]);
    let running = hits(&db.pool, owner, "running", Mode::Lexical, SearchOptions::default()).await;
    assert_eq!(running.len(), 2, "{running:?}");
    // The configuration is fixed once the bucket exists: application users cannot change it.
    let mut tx = store::begin_as(&db.pool, owner, Role::Authenticated).await.expect("begin");
    let changed = sqlx::query("UPDATE public.knowledge_buckets SET text_search_config = 'english' WHERE id = $1")
        .bind(simple.id)
        .execute(&mut *tx)
        .await;
    assert!(changed.is_err());
}

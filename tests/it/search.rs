//! Search over a synthetic corpus of realistic vectors: the plan uses the vector index,
//! selective filters still return k rows, row level security and models keep rows apart.

use kb::search::{Mode, SearchRequest};
use kb::store::chunks::{NewChunk, replace_chunks};
use kb::store::index::{IndexMethod, ensure_indexes, index_name};
use kb::store::{self, Role, documents};
use pgvector::Vector;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestDb, bucket, local_embedder, user};

const TOPICS: [&str; 24] = [
    "refund policy for annual subscriptions",
    "brand voice on LinkedIn posts",
    "email newsletter open rates",
    "webinar promotion timeline",
    "logo clear space and minimum size",
    "GDPR data subject access requests",
    "SOC 2 audit and penetration tests",
    "affiliate commission payouts",
    "customer support response times",
    "keyword research for blog posts",
    "social media posting cadence",
    "press release distribution",
    "pricing of the starter plan",
    "onboarding a new workspace",
    "landing page conversion rate",
    "lead scoring rules for sales",
    "paid ads budget allocation",
    "event sponsorship packages",
    "content calendar planning",
    "customer journey analytics",
    "password reset emails",
    "team roles and permissions",
    "invoice and payment methods",
    "accessibility of colour palettes",
];

/// Deterministic xorshift noise: realistic vectors are real embeddings plus small noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

struct Corpus {
    db: TestDb,
    owner: Uuid,
    common: Uuid,
    rare: Uuid,
    topics: Vec<Vec<f32>>,
}

/// `rows` chunks over two buckets of one owner; 1% of them in the bucket of type `rare`.
async fn corpus(rows: usize) -> Corpus {
    let db = TestDb::new().await;
    let embedder = local_embedder().await;
    let owner = user(&db.pool, "owner@example.com").await;
    let common = bucket(&db.pool, owner, "common", "general", embedder.model()).await.id;
    let rare = bucket(&db.pool, owner, "rare", "rare", embedder.model()).await.id;
    let texts: Vec<String> = TOPICS.iter().map(|t| t.to_string()).collect();
    let topics = embedder.embed(&texts).await.expect("embed topics");

    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut per_bucket: [(Uuid, Vec<NewChunk>); 2] = [(common, Vec::new()), (rare, Vec::new())];
    for i in 0..rows {
        let which = usize::from(i % 100 == 0);
        let topic = &topics[i % topics.len()];
        let other = &topics[(i * 7 + 3) % topics.len()];
        let v: Vec<f32> = topic.iter().zip(other).map(|(a, b)| a + 0.3 * b + 0.08 * noise.next()).collect();
        let list = &mut per_bucket[which].1;
        list.push(NewChunk {
            chunk_index: list.len() as i32,
            content: format!("synthetic chunk {i} about {}", TOPICS[i % TOPICS.len()]),
            content_hash: format!("{i:064x}"),
            token_count: 10,
            embedding: Vector::from(normalised(v)),
            metadata: serde_json::json!({}),
        });
    }
    for (bucket_id, chunks) in &per_bucket {
        let mut tx = store::begin_as(&db.pool, owner, Role::ServiceRole).await.expect("begin");
        let new = documents::NewDocument {
            bucket_id: *bucket_id,
            title: "synthetic",
            file_name: "synthetic.txt",
            file_type: Some("txt"),
            file_size: 0,
            upload_path: "synthetic.txt",
            content_hash: "synthetic",
            created_by: owner,
        };
        let doc = documents::insert_ready(&mut tx, &new).await.expect("doc");
        replace_chunks(&mut tx, doc, *bucket_id, embedder.model(), chunks).await.expect("chunks");
        tx.commit().await.expect("commit");
    }
    Corpus { db, owner, common, rare, topics }
}

fn request(mode: Mode, limit: u32) -> SearchRequest {
    SearchRequest {
        query: "unused: the embedding is given".into(),
        bucket_id: None,
        bucket_type: None,
        campaign_id: None,
        limit,
        threshold: -1.0,
        mode,
    }
}

async fn nearest_ids(pool: &PgPool, user: Uuid, query: &[f32], request: &SearchRequest) -> Vec<Uuid> {
    let model = local_embedder().await.model().to_string();
    let mut tx = store::begin_as(pool, user, Role::Authenticated).await.expect("begin");
    let hits = kb::search::nearest(&mut tx, &model, &Vector::from(query.to_vec()), request).await.expect("search");
    tx.commit().await.expect("commit");
    hits.into_iter().map(|h| h.chunk_id).collect()
}

/// `nearest_ids` through the vector index even for scopes small enough for an exact search.
async fn nearest_ids_by_index(pool: &PgPool, user: Uuid, query: &[f32], request: &SearchRequest) -> Vec<Uuid> {
    let model = local_embedder().await.model().to_string();
    let mut tx = store::begin_as(pool, user, Role::Authenticated).await.expect("begin");
    sqlx::query("SET LOCAL kb.exact_search_max_rows = 0").execute(&mut *tx).await.expect("set");
    let hits = kb::search::nearest(&mut tx, &model, &Vector::from(query.to_vec()), request).await.expect("search");
    tx.commit().await.expect("commit");
    hits.into_iter().map(|h| h.chunk_id).collect()
}

async fn exact_ids(pool: &PgPool, query: &[f32], bucket_type: Option<&str>, limit: i64) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT c.id FROM knowledge_chunks c JOIN knowledge_buckets b ON b.id = c.bucket_id
         WHERE $2::text IS NULL OR b.bucket_type = $2
         ORDER BY c.embedding <=> $1 LIMIT $3",
    )
    .bind(Vector::from(query.to_vec()))
    .bind(bucket_type)
    .bind(limit)
    .fetch_all(pool)
    .await
    .expect("exact")
}

#[tokio::test]
async fn kbs_connections_run_without_jit() {
    // JIT would compile statements whose estimated cost is high, as row level security can
    // make it: milliseconds of LLVM per call on a search path measured in milliseconds.
    let db = TestDb::new().await;
    let jit: String = sqlx::query_scalar("SHOW jit").fetch_one(&db.pool).await.expect("show jit");
    assert_eq!(jit, "off");
}

#[tokio::test]
async fn the_search_plan_uses_the_models_vector_index() {
    // More rows than a small tenant's exact search covers (lowered below for this test, so
    // the vector index serves it).
    let c = corpus(6_000).await;
    let builds = ensure_indexes(&c.db.pool, None).await.expect("index").builds;
    assert_eq!(builds.len(), 1, "an index is built once data exists");
    assert_eq!((builds[0].method, builds[0].lists), ("hnsw", None), "hnsw by default");
    // An outgrown ivfflat index stays ivfflat, with lists sized to the row count.
    let ivfflat = ensure_indexes(&c.db.pool, Some(IndexMethod::Ivfflat)).await.expect("ivfflat").builds;
    assert_eq!(ivfflat[0].lists, Some(6), "lists sized to the row count");

    // The real function call, with filters, as the owner; the index it scanned, by name.
    let model = local_embedder().await.model().to_string();
    let index = format!("public.{}", index_name(&model));
    let mut tx = store::begin_as(&c.db.pool, c.owner, Role::Authenticated).await.expect("begin");
    sqlx::query("SET LOCAL kb.exact_search_max_rows = 1000").execute(&mut *tx).await.expect("set");
    let rows: Vec<Uuid> = sqlx::query_scalar(
        "SELECT chunk_id FROM search_knowledge_chunks(p_user_id => $1, p_query_embedding => $2,
           p_bucket_type => 'general', p_limit => 10, p_similarity_threshold => -1)",
    )
    .bind(c.owner)
    .bind(Vector::from(c.topics[0].clone()))
    .fetch_all(&mut *tx)
    .await
    .expect("search");
    assert_eq!(rows.len(), 10);
    let scans: i64 = sqlx::query_scalar("SELECT pg_stat_get_xact_numscans($1::regclass)")
        .bind(&index)
        .fetch_one(&mut *tx)
        .await
        .expect("scans");
    assert!(scans >= 1, "the search did not scan {index}");
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn the_hnsw_search_effort_grows_with_the_graph() {
    let c = corpus(2_000).await;
    let ef = |rows: Option<i64>, filtered: bool, limit: i32| {
        let pool = c.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>("SELECT public.hnsw_ef_search($1, $2, $3)")
                .bind(rows)
                .bind(filtered)
                .bind(limit)
                .fetch_one(&pool)
                .await
                .expect("ef_search")
        }
    };
    assert_eq!(ef(None, false, 10).await, 250);
    assert_eq!(ef(Some(100_000), false, 10).await, 250);
    assert_eq!(ef(Some(100_000), true, 10).await, 400);
    assert_eq!(ef(Some(1_000_000), false, 10).await, 791, "sqrt(10) x 250");
    assert_eq!(ef(Some(1_000_000), true, 10).await, 1000, "capped at pgvector's limit");
    assert_eq!(ef(Some(1_000), false, 300).await, 600, "at least twice the limit");

    // The graph's row count is kept current by every index maintenance, not only at builds.
    ensure_indexes(&c.db.pool, None).await.expect("index");
    let model = local_embedder().await.model().to_string();
    sqlx::query("UPDATE public.embedding_models SET indexed_rows = 5 WHERE name = $1")
        .bind(&model)
        .execute(&c.db.pool)
        .await
        .expect("update");
    let again = ensure_indexes(&c.db.pool, None).await.expect("index");
    assert!(again.builds.is_empty(), "hnsw is not rebuilt as it grows");
    let rows: Option<i64> = sqlx::query_scalar("SELECT indexed_rows FROM public.embedding_models WHERE name = $1")
        .bind(&model)
        .fetch_one(&c.db.pool)
        .await
        .expect("rows");
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM public.knowledge_chunks WHERE embedding_model = $1")
        .bind(&model)
        .fetch_one(&c.db.pool)
        .await
        .expect("count");
    assert_eq!(rows, Some(chunks));
}

#[tokio::test]
async fn a_small_tenant_searches_its_own_rows_exactly_without_reading_anyone_elses() {
    let c = corpus(200_000).await;
    ensure_indexes(&c.db.pool, Some(IndexMethod::Hnsw)).await.expect("index");
    let model = local_embedder().await.model().to_string();

    // A tenant with 3 chunks: the first is the query vector itself.
    let small = user(&c.db.pool, "small@example.com").await;
    let own = bucket(&c.db.pool, small, "notes", "general", &model).await.id;
    let vectors = [c.topics[0].clone(), c.topics[1].clone(), c.topics[2].clone()];
    let chunks: Vec<NewChunk> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| NewChunk {
            chunk_index: i as i32,
            content: format!("small tenant chunk {i}"),
            content_hash: format!("small-{i}"),
            token_count: 4,
            embedding: Vector::from(v.clone()),
            metadata: serde_json::json!({}),
        })
        .collect();
    let mut tx = store::begin_as(&c.db.pool, small, Role::ServiceRole).await.expect("begin");
    let new = documents::NewDocument {
        bucket_id: own,
        title: "notes",
        file_name: "notes.txt",
        file_type: Some("txt"),
        file_size: 0,
        upload_path: "notes.txt",
        content_hash: "notes",
        created_by: small,
    };
    let doc = documents::insert_ready(&mut tx, &new).await.expect("doc");
    replace_chunks(&mut tx, doc, own, &model, &chunks).await.expect("chunks");
    tx.commit().await.expect("commit");

    for function in ["search_knowledge_chunks(", "hybrid_search_knowledge_chunks(p_query_text => 'refund policy', "] {
        let mut tx = store::begin_as(&c.db.pool, small, Role::Authenticated).await.expect("begin");
        let hits: Vec<(String, f64)> = sqlx::query_as(&format!(
            "SELECT chunk_content, similarity_score FROM {function}
               p_user_id => NULL, p_query_embedding => $1, p_limit => 10, p_similarity_threshold => -1)"
        ))
        .bind(Vector::from(c.topics[0].clone()))
        .fetch_all(&mut *tx)
        .await
        .expect("search");
        let contents: Vec<&str> = hits.iter().map(|(content, _)| content.as_str()).collect();
        assert_eq!(contents.len(), 3, "{function}: {contents:?}");
        assert_eq!(contents[0], "small tenant chunk 0", "{function}: the exact match first");
        assert!((hits[0].1 - 1.0).abs() < 1e-4, "{function}: similarity {}", hits[0].1);

        // Rows read from knowledge_chunks in this transaction, by any scan.
        let (seq, fetched, index_scans): (i64, i64, i64) = sqlx::query_as(
            "SELECT pg_stat_get_xact_tuples_returned('public.knowledge_chunks'::regclass),
                    pg_stat_get_xact_tuples_fetched('public.knowledge_chunks'::regclass),
                    pg_stat_get_xact_numscans($1::regclass)",
        )
        .bind(format!("public.{}", index_name(&model)))
        .fetch_one(&mut *tx)
        .await
        .expect("stats");
        eprintln!("{function}: rows read from knowledge_chunks: {seq} by sequential scans, {fetched} by index");
        assert!(seq + fetched < 1_000, "{function}: read {seq} + {fetched} rows of knowledge_chunks");
        assert_eq!(index_scans, 0, "{function}: the vector index of everyone's rows was scanned");
        tx.rollback().await.expect("rollback");
    }
}

#[tokio::test]
async fn a_one_percent_filter_still_returns_k_rows_with_either_index() {
    // 50 lists: the filtered search probes 20 of them, so the iterative scan is exercised
    // (the 500 rare rows would otherwise get a small scope's exact search).
    let c = corpus(50_000).await;
    for method in [IndexMethod::Ivfflat, IndexMethod::Hnsw] {
        ensure_indexes(&c.db.pool, Some(method)).await.expect("index");
        let (mut recall, mut exact_recall) = (0.0, 0.0);
        for topic in &c.topics[..8] {
            let mut req = request(Mode::Vector, 10);
            req.bucket_type = Some("rare".into());
            let got = nearest_ids_by_index(&c.db.pool, c.owner, topic, &req).await;
            assert_eq!(got.len(), 10, "{method:?}: a 1% filter returned {} rows", got.len());
            // Recall with a distance tolerance (ANN-benchmarks' epsilon recall): a row counts
            // when it is no farther than 1.05 x the exact 10th neighbour's distance. The
            // corpus is a few topics with small noise, so many rows lie almost equally near
            // a topic and which of them an approximate index returns is chance.
            let near: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM knowledge_chunks
                 WHERE id = ANY($1) AND (embedding <=> $2) <= 1.05 * (
                   SELECT max(d) FROM (
                     SELECT c.embedding <=> $2 AS d FROM knowledge_chunks c
                     JOIN knowledge_buckets b ON b.id = c.bucket_id
                     WHERE b.bucket_type = 'rare' ORDER BY d LIMIT 10) t)",
            )
            .bind(&got)
            .bind(Vector::from(topic.to_vec()))
            .fetch_one(&c.db.pool)
            .await
            .expect("near");
            recall += near as f64 / 10.0;
            let exact = exact_ids(&c.db.pool, topic, Some("rare"), 10).await;
            exact_recall += got.iter().filter(|id| exact.contains(id)).count() as f64 / 10.0;
            let in_rare: i64 =
                sqlx::query_scalar("SELECT count(*) FROM knowledge_chunks WHERE id = ANY($1) AND bucket_id = $2")
                    .bind(&got)
                    .bind(c.rare)
                    .fetch_one(&c.db.pool)
                    .await
                    .expect("count");
            assert_eq!(in_rare, 10, "{method:?}: rows outside the filter");
        }
        let (recall, exact_recall) = (recall / 8.0, exact_recall / 8.0);
        eprintln!("{method:?}: recall@10 under a 1% filter: {recall} (epsilon 0.05), {exact_recall} (exact ids)");
        // hnsw under a 1% filter (ef_search 400, relaxed iterative scan) scored 1.0 in most
        // runs and 0.875 in one: its graph is built at random. Tuning filtered hnsw to 0.95 is
        // issue 10's; here a floor that a working filter path always clears.
        assert!(recall >= 0.85, "{method:?}: recall@10 (epsilon 0.05) under the filter {recall}");
        // Exact ids are chance among near-equal rows (hnsw: 0.75-0.9 seen); a broken index
        // returning any rows of the filter would be near 0.02.
        assert!(exact_recall >= 0.5, "{method:?}: recall@10 (exact ids) under the filter {exact_recall}");
    }
    let _ = c.common;
}

#[tokio::test]
async fn another_user_sees_nothing_even_when_passing_the_owners_id() {
    let c = corpus(2_000).await;
    let intruder = user(&c.db.pool, "intruder@example.com").await;
    let got = nearest_ids(&c.db.pool, intruder, &c.topics[0], &request(Mode::Vector, 10)).await;
    assert!(got.is_empty(), "RLS leaked {} rows", got.len());
    let hybrid = nearest_ids(&c.db.pool, intruder, &c.topics[0], &request(Mode::Hybrid, 10)).await;
    assert!(hybrid.is_empty(), "RLS leaked {} rows through hybrid search", hybrid.len());

    // The spec's signature, with the owner's id, called by the intruder.
    let mut tx = store::begin_as(&c.db.pool, intruder, Role::Authenticated).await.expect("begin");
    let spoofed: Vec<Uuid> =
        sqlx::query_scalar("SELECT chunk_id FROM search_knowledge_chunks($1, $2, NULL, NULL, 10, 0.0)")
            .bind(c.owner)
            .bind(Vector::from(c.topics[0].clone()))
            .fetch_all(&mut *tx)
            .await
            .expect("rpc");
    assert!(spoofed.is_empty(), "p_user_id of another user returned {} rows", spoofed.len());
    tx.rollback().await.expect("rollback");

    let own = nearest_ids(&c.db.pool, c.owner, &c.topics[0], &request(Mode::Vector, 10)).await;
    assert_eq!(own.len(), 10);
}

#[tokio::test]
async fn a_search_never_mixes_embedding_models() {
    let c = corpus(1_000).await;
    let other_model = "other/minilm-variant";
    {
        let mut conn = c.db.pool.acquire().await.expect("conn");
        store::index::register_model(&mut conn, other_model, 384).await.expect("model");
    }
    let other = bucket(&c.db.pool, c.owner, "other-model", "general", other_model).await;
    let mut tx = store::begin_as(&c.db.pool, c.owner, Role::ServiceRole).await.expect("begin");
    let new = documents::NewDocument {
        bucket_id: other.id,
        title: "other",
        file_name: "other.txt",
        file_type: Some("txt"),
        file_size: 0,
        upload_path: "other.txt",
        content_hash: "other",
        created_by: c.owner,
    };
    let doc = documents::insert_ready(&mut tx, &new).await.expect("doc");
    // The exact query vector, under another model: the best possible match if models mixed.
    let chunk = NewChunk {
        chunk_index: 0,
        content: "same vector, other model".into(),
        content_hash: "x".into(),
        token_count: 5,
        embedding: Vector::from(c.topics[0].clone()),
        metadata: serde_json::json!({}),
    };
    replace_chunks(&mut tx, doc, other.id, other_model, &[chunk]).await.expect("chunk");
    tx.commit().await.expect("commit");

    for mode in [Mode::Vector, Mode::Hybrid] {
        let got = nearest_ids(&c.db.pool, c.owner, &c.topics[0], &request(mode, 20)).await;
        let leaked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM knowledge_chunks WHERE id = ANY($1) AND embedding_model = $2")
                .bind(&got)
                .bind(other_model)
                .fetch_one(&c.db.pool)
                .await
                .expect("count");
        assert_eq!(leaked, 0, "{mode:?} mixed models");
        assert_eq!(got.len(), 20);
    }
    let _ = c.rare;
}

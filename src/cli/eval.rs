//! `kb eval`: retrieval quality on a collection in BEIR layout (`corpus.jsonl`,
//! `queries.jsonl`, `qrels/test.tsv` or `qrels.tsv`). The corpus goes through kb's own
//! ingestion (each record a document: title + text, written once as a file so re-runs find
//! it unchanged); every judged query runs in each mode; results are scored at document level
//! (a document's best chunk) with nDCG@10, recall@10, recall@100 and MRR@10.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use pgvector::Vector;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{CLI_JOB_LEASE, ModeArg, ProgressBar, owner};
use crate::config::Config;
use crate::embed::Embedder;
use crate::extract::Format;
use crate::ingest::{Outcome, Pipeline, Progress, Source, Summary, WorkerSettings};
use crate::runtime;
use crate::search::{self, GroupBy, Mode, SearchOptions, SearchRequest};
use crate::store::{self, Bucket, Role, buckets, lexical};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Directory of the collection: corpus.jsonl, queries.jsonl, and qrels/test.tsv or qrels.tsv.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Bucket the corpus is ingested into, or reused from (default: eval-<directory name>).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Modes to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ModeArg::Vector, ModeArg::Lexical, ModeArg::Hybrid])]
    pub modes: Vec<ModeArg>,
    /// Hybrid weights of the vector score to measure, comma-separated (default: kb's default).
    #[arg(long, value_delimiter = ',', value_parser = parse_weight)]
    pub alpha: Vec<f64>,
    /// Hybrid candidates taken from each ranking (default 100).
    #[arg(long)]
    pub candidates: Option<u32>,
    /// BM25 k1 (default 1.2).
    #[arg(long)]
    pub bm25_k1: Option<f64>,
    /// BM25 b (default 0.75).
    #[arg(long)]
    pub bm25_b: Option<f64>,
    /// Text search configuration of a new bucket: english (stemming) or simple.
    #[arg(long, value_enum, default_value_t = TextSearchArg::English)]
    pub text_search: TextSearchArg,
    /// Only the first N judged queries.
    #[arg(long)]
    pub max_queries: Option<usize>,
    /// Documents retrieved per query (recall@100 needs 100). A smaller depth measures the
    /// first results as a search with that limit returns them (hybrid takes max(4 x depth,
    /// candidates) candidates of each ranking).
    #[arg(long, default_value_t = DEPTH)]
    pub depth: u32,
    /// Where corpus records are written as files for ingestion (default: <data dir>/eval/<bucket>).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--text-search` of `kb eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TextSearchArg {
    English,
    Simple,
}

impl From<TextSearchArg> for lexical::TextSearchConfig {
    fn from(arg: TextSearchArg) -> lexical::TextSearchConfig {
        match arg {
            TextSearchArg::English => lexical::TextSearchConfig::English,
            TextSearchArg::Simple => lexical::TextSearchConfig::Simple,
        }
    }
}

/// A hybrid weight from the command line: 0 to 1.
pub fn parse_weight(text: &str) -> Result<f64, String> {
    let alpha: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number"))?;
    if search::is_weight(alpha) { Ok(alpha) } else { Err(format!("{alpha} is not between 0 and 1")) }
}

/// Documents per query that are kept and scored, by default (recall@100 needs 100).
pub const DEPTH: u32 = 100;

/// One corpus record.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CorpusDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Query {
    #[serde(rename = "_id")]
    pub id: String,
    pub text: String,
}

/// A collection in BEIR layout: documents, queries, and graded judgments (query -> document -> grade).
#[derive(Debug, Clone, Default)]
pub struct Collection {
    pub docs: Vec<CorpusDoc>,
    pub queries: Vec<Query>,
    pub qrels: HashMap<String, HashMap<String, i32>>,
}

impl Collection {
    /// Reads `dir`; queries without a positive judgment are left out (as BEIR's evaluation does).
    pub fn load(dir: &Path) -> anyhow::Result<Collection> {
        let docs = read_jsonl(&dir.join("corpus.jsonl"))?;
        let mut queries: Vec<Query> = read_jsonl(&dir.join("queries.jsonl"))?;
        let qrels_path = [dir.join("qrels").join("test.tsv"), dir.join("qrels.tsv")]
            .into_iter()
            .find(|p| p.is_file())
            .with_context(|| format!("no qrels/test.tsv or qrels.tsv in {}", dir.display()))?;
        let text = std::fs::read_to_string(&qrels_path).with_context(|| format!("reading {}", qrels_path.display()))?;
        let qrels = parse_qrels(&text).with_context(|| format!("in {}", qrels_path.display()))?;
        queries.retain(|q| qrels.get(&q.id).is_some_and(|judged| judged.values().any(|&g| g > 0)));
        Ok(Collection { docs, queries, qrels })
    }
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1)))
        .collect()
}

/// `query-id<TAB>corpus-id<TAB>score` lines; a first line that is not numeric is a header.
fn parse_qrels(text: &str) -> anyhow::Result<HashMap<String, HashMap<String, i32>>> {
    let mut qrels: HashMap<String, HashMap<String, i32>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if line.trim().is_empty() {
            continue;
        }
        let [query, doc, grade] = fields[..] else { bail!("line {}: expected 3 tab-separated fields", i + 1) };
        match grade.parse::<i32>() {
            Ok(grade) => {
                qrels.entry(query.to_string()).or_default().insert(doc.to_string(), grade);
            }
            Err(_) if i == 0 => continue,
            Err(_) => bail!("line {}: grade {grade:?} is not an integer", i + 1),
        }
    }
    Ok(qrels)
}

/// nDCG@k with linear gain (as trec_eval and BEIR's pytrec_eval compute it).
pub fn ndcg_at(ranking: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, doc)| f64::from(judged.get(doc).copied().unwrap_or(0).max(0)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| f64::from(g) / (i as f64 + 2.0).log2()).sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// Share of the relevant documents (grade > 0) in the first k.
pub fn recall_at(ranking: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = judged.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranking.iter().take(k).filter(|doc| judged.get(*doc).is_some_and(|&g| g > 0)).count();
    found as f64 / relevant as f64
}

/// 1 / rank of the first relevant document within the first k, else 0.
pub fn mrr_at(ranking: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    ranking
        .iter()
        .take(k)
        .position(|doc| judged.get(doc).is_some_and(|&g| g > 0))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// One mode's figures, averaged over the queries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModeReport {
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
    pub recall_at_100: f64,
    pub mrr_at_10: f64,
    /// Mean time of one query's search in the database (its embedding is not included).
    pub ms_per_query: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub corpus: String,
    pub bucket: String,
    pub documents: usize,
    pub queries: usize,
    /// Documents retrieved per query.
    pub depth: u32,
    pub ingest: IngestFigures,
    /// Mean time to embed one query with the model.
    pub embed_ms_per_query: f64,
    pub modes: Vec<ModeReport>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestFigures {
    pub ready: usize,
    pub unchanged: usize,
    pub duplicate: usize,
    pub failed: usize,
    pub chunks_written: usize,
    pub seconds: f64,
}

/// A mode to measure, with its options and the documents retrieved per query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub mode: Mode,
    pub options: SearchOptions,
    pub depth: u32,
}

/// The runs `kb eval` makes: each mode with `options` (hybrid depth, BM25 parameters),
/// grouped by document; hybrid once per weight asked for.
pub fn runs(modes: &[Mode], alphas: &[f64], options: SearchOptions, depth: u32) -> Vec<Run> {
    let mut runs = Vec::new();
    for &mode in modes {
        let base = SearchOptions { group_by: GroupBy::Document, ..options };
        if mode == Mode::Hybrid && !alphas.is_empty() {
            runs.extend(alphas.iter().map(|&a| Run { mode, options: SearchOptions { alpha: Some(a), ..base }, depth }));
        } else {
            runs.push(Run { mode, options: base, depth });
        }
    }
    runs
}

/// A corpus id as a file name: safe characters kept, others hex-escaped (`~xx`), so two ids
/// never share a file.
fn file_name(id: &str) -> String {
    let mut name = String::from("doc-");
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            name.push(byte as char);
        } else {
            name.push_str(&format!("~{byte:02x}"));
        }
    }
    name.push_str(".txt");
    name
}

/// Writes each record as `<dir>/<id>.txt` (title, blank line, text) where its bytes differ,
/// and returns the sources to ingest and which corpus id each path holds.
fn write_corpus(docs: &[CorpusDoc], dir: &Path) -> anyhow::Result<(Vec<Source>, HashMap<String, String>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut sources = Vec::with_capacity(docs.len());
    let mut ids = HashMap::with_capacity(docs.len());
    let mut seen = HashSet::new();
    for doc in docs {
        if !seen.insert(doc.id.as_str()) {
            bail!("corpus id {:?} appears twice", doc.id);
        }
        let path = dir.join(file_name(&doc.id));
        let body = match (doc.title.trim().is_empty(), doc.text.trim().is_empty()) {
            (false, false) => format!("{}\n\n{}\n", doc.title.trim(), doc.text.trim()),
            (false, true) => format!("{}\n", doc.title.trim()),
            _ => format!("{}\n", doc.text.trim()),
        };
        if std::fs::read(&path).ok().as_deref() != Some(body.as_bytes()) {
            std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
        }
        let title = if doc.title.trim().is_empty() { doc.id.clone() } else { doc.title.trim().to_string() };
        ids.insert(path.display().to_string(), doc.id.clone());
        sources.push(Source { path, format: Some(Format::Text), title: Some(title) });
    }
    Ok((sources, ids))
}

/// Ingests the collection's documents into `bucket` through kb's pipeline. Returns the
/// summary and, for each kb document, the corpus ids it stands for (a duplicate's id goes to
/// the document that holds its bytes).
pub async fn ingest_collection(
    pipeline: &Pipeline,
    owner: Uuid,
    bucket: &Bucket,
    collection: &Collection,
    work_dir: &Path,
    settings: &WorkerSettings,
    progress: &dyn Progress,
) -> anyhow::Result<(Summary, HashMap<Uuid, Vec<String>>)> {
    let (sources, ids) = write_corpus(&collection.docs, work_dir)?;
    let summary = pipeline.ingest(owner, bucket, sources, settings, progress).await;
    let mut documents: HashMap<Uuid, Vec<String>> = HashMap::new();
    for report in &summary.documents {
        let Some(corpus_id) = ids.get(&report.path) else { continue };
        let holder = match &report.outcome {
            Outcome::Ready { .. } | Outcome::Unchanged => report.document_id,
            Outcome::Duplicate { of_document, .. } => Some(*of_document),
            Outcome::Failed { .. } => None,
        };
        if let Some(document) = holder {
            documents.entry(document).or_default().push(corpus_id.clone());
        }
    }
    Ok((summary, documents))
}

/// Runs every query of `collection` in each of `runs`, as `owner` over `bucket_id`, and
/// scores the document rankings.
pub async fn evaluate(
    pool: &PgPool,
    embedder: &dyn Embedder,
    owner: Uuid,
    bucket_id: Uuid,
    collection: &Collection,
    documents: &HashMap<Uuid, Vec<String>>,
    runs: &[Run],
) -> anyhow::Result<(f64, Vec<ModeReport>)> {
    let texts: Vec<String> = collection.queries.iter().map(|q| q.text.clone()).collect();
    let started = Instant::now();
    let mut embeddings = Vec::with_capacity(texts.len());
    for batch in texts.chunks(32) {
        embeddings.extend(embedder.embed(batch).await.context("embedding the queries")?);
    }
    let embed_ms = started.elapsed().as_secs_f64() * 1000.0 / texts.len().max(1) as f64;
    if embeddings.len() != texts.len() {
        bail!("the embedder returned {} vectors for {} queries", embeddings.len(), texts.len());
    }
    let embeddings: Vec<Vector> = embeddings.into_iter().map(Vector::from).collect();
    let empty = HashMap::new();

    let mut reports = Vec::with_capacity(runs.len());
    for run in runs {
        let (mut ndcg, mut r10, mut r100, mut mrr) = (0.0, 0.0, 0.0, 0.0);
        let mut times = Vec::with_capacity(texts.len());
        for (query, embedding) in collection.queries.iter().zip(&embeddings) {
            let request = SearchRequest {
                query: query.text.clone(),
                bucket_id: Some(bucket_id),
                bucket_type: None,
                campaign_id: None,
                limit: run.depth.clamp(1, search::MAX_LIMIT),
                threshold: -1.0,
                mode: run.mode,
            };
            let started = Instant::now();
            let hits = search::nearest_as(
                pool,
                owner,
                Role::Authenticated,
                embedder.model(),
                embedding,
                &request,
                &run.options,
            )
            .await
            .with_context(|| format!("searching for query {}", query.id))?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            let mut ranking: Vec<String> = Vec::with_capacity(hits.len());
            for hit in &hits {
                for id in documents.get(&hit.document_id).into_iter().flatten() {
                    if !ranking.contains(id) {
                        ranking.push(id.clone());
                    }
                }
            }
            let judged = collection.qrels.get(&query.id).unwrap_or(&empty);
            ndcg += ndcg_at(&ranking, judged, 10);
            r10 += recall_at(&ranking, judged, 10);
            r100 += recall_at(&ranking, judged, 100);
            mrr += mrr_at(&ranking, judged, 10);
        }
        let n = collection.queries.len().max(1) as f64;
        times.sort_by(f64::total_cmp);
        let p99 = times.get(((times.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        reports.push(ModeReport {
            mode: run.mode,
            alpha: match run.mode {
                Mode::Hybrid => Some(run.options.alpha.unwrap_or(search::DEFAULT_ALPHA)),
                _ => None,
            },
            ndcg_at_10: ndcg / n,
            recall_at_10: r10 / n,
            recall_at_100: r100 / n,
            mrr_at_10: mrr / n,
            ms_per_query: times.iter().sum::<f64>() / n,
            p99_ms: p99,
        });
    }
    Ok((embed_ms, reports))
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Vector => "vector",
        Mode::Lexical => "lexical",
        Mode::Hybrid => "hybrid",
    }
}

/// The report as a table.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{}: {} documents in bucket {:?} ({} ready, {} unchanged, {} duplicate, {} failed; {:.1} s), {} queries (top {} documents each), embedding {:.1} ms/query\n\n",
        report.corpus,
        report.documents,
        report.bucket,
        report.ingest.ready,
        report.ingest.unchanged,
        report.ingest.duplicate,
        report.ingest.failed,
        report.ingest.seconds,
        report.queries,
        report.depth,
        report.embed_ms_per_query
    );
    out.push_str("| mode | nDCG@10 | recall@10 | recall@100 | MRR@10 | ms/query | p99 ms |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for m in &report.modes {
        let name = match m.alpha {
            Some(alpha) => format!("{} (alpha {alpha})", mode_name(m.mode)),
            None => mode_name(m.mode).to_string(),
        };
        out.push_str(&format!(
            "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1} | {:.1} |\n",
            m.ndcg_at_10, m.recall_at_10, m.recall_at_100, m.mrr_at_10, m.ms_per_query, m.p99_ms
        ));
    }
    out
}

pub async fn run(config: &Config, args: EvalArgs) -> anyhow::Result<()> {
    let collection = Collection::load(&args.corpus)?;
    if collection.queries.is_empty() {
        bail!("no judged queries in {}", args.corpus.display());
    }
    let dir_name = std::fs::canonicalize(&args.corpus)?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "corpus".into());
    let bucket_name = args.bucket.clone().unwrap_or_else(|| format!("eval-{dir_name}"));
    let work_dir = args.work_dir.clone().unwrap_or_else(|| config.data_dir().join("eval").join(&bucket_name));

    let pool = runtime::connect(config).await?;
    let embedder = runtime::load_embedder(config).await?;
    let budget = config.budget(embedder.max_input_tokens())?;
    let owner = owner(&pool, embedder.as_ref()).await?;
    let bucket = {
        let mut tx = store::begin_as(&pool, owner, Role::Authenticated).await?;
        let new = buckets::NewBucket {
            name: &bucket_name,
            bucket_type: "eval",
            campaign_id: None,
            embedding_model: embedder.model(),
            created_by: owner,
        };
        let bucket = lexical::ensure_bucket_with_config(&mut tx, &new, args.text_search.into())
            .await
            .context("creating the bucket")?;
        tx.commit().await?;
        bucket
    };
    if bucket.embedding_model != embedder.model() {
        bail!(
            "bucket {:?} holds embeddings of {}, but the configured model is {}",
            bucket.name,
            bucket.embedding_model,
            embedder.model()
        );
    }
    let pipeline = Pipeline {
        pool: pool.clone(),
        embedder: embedder.clone(),
        budget,
        extract: config.extract_limits(),
        parallelism: config.parallelism,
    };
    let bar = ProgressBar::new(
        collection.docs.len() as u64,
        !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let settings = WorkerSettings::new(CLI_JOB_LEASE, config.job_timeout());
    let (summary, documents) =
        ingest_collection(&pipeline, owner, &bucket, &collection, &work_dir, &settings, &bar).await?;
    bar.finish();
    if let Err(e) = store::index::ensure_indexes(&pool, None).await {
        eprintln!("warning: vector index maintenance failed: {e}; searches scan exactly");
    }

    let modes: Vec<Mode> = args.modes.iter().map(|&m| m.into()).collect();
    let mut queries = collection.queries.clone();
    if let Some(max) = args.max_queries {
        queries.truncate(max);
    }
    let collection = Collection { queries, ..collection };
    let options = SearchOptions {
        candidates: args.candidates,
        bm25_k1: args.bm25_k1,
        bm25_b: args.bm25_b,
        ..SearchOptions::default()
    };
    let runs = runs(&modes, &args.alpha, options, args.depth);
    let (embed_ms, modes) =
        evaluate(&pool, embedder.as_ref(), owner, bucket.id, &collection, &documents, &runs).await?;
    let report = Report {
        corpus: args.corpus.display().to_string(),
        bucket: bucket.name.clone(),
        documents: collection.docs.len(),
        queries: collection.queries.len(),
        depth: args.depth,
        ingest: IngestFigures {
            ready: summary.documents_ready,
            unchanged: summary.documents_unchanged,
            duplicate: summary.documents_duplicate,
            failed: summary.documents_failed,
            chunks_written: summary.chunks_written,
            seconds: summary.seconds,
        },
        embed_ms_per_query: embed_ms,
        modes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranking(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ndcg_is_one_for_the_ideal_order_and_uses_linear_gain() {
        let j = judged(&[("a", 2), ("b", 1), ("c", 0)]);
        assert!((ndcg_at(&ranking(&["a", "b", "c"]), &j, 10) - 1.0).abs() < 1e-12);
        // b first, a second: (1/log2(2) + 2/log2(3)) / (2/log2(2) + 1/log2(3)).
        let expected = (1.0 + 2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&ranking(&["b", "a"]), &j, 10) - expected).abs() < 1e-12);
        assert_eq!(ndcg_at(&ranking(&["c", "x"]), &j, 10), 0.0);
        // Cut at k: a relevant document at rank 2 does not count at k = 1.
        assert_eq!(ndcg_at(&ranking(&["c", "a"]), &j, 1), 0.0);
    }

    #[test]
    fn recall_and_mrr_count_only_positive_grades() {
        let j = judged(&[("a", 2), ("b", 1), ("c", 0)]);
        assert_eq!(recall_at(&ranking(&["c", "b", "x"]), &j, 10), 0.5);
        assert_eq!(recall_at(&ranking(&["c", "b", "a"]), &j, 2), 0.5);
        assert_eq!(mrr_at(&ranking(&["c", "x", "b"]), &j, 10), 1.0 / 3.0);
        assert_eq!(mrr_at(&ranking(&["c", "x", "b"]), &j, 2), 0.0);
    }

    #[test]
    fn qrels_skip_a_header_and_refuse_bad_lines() {
        let q = parse_qrels("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n").expect("qrels");
        assert_eq!(q["q1"]["d1"], 2);
        assert_eq!(q["q1"]["d2"], 0);
        assert!(parse_qrels("q1\td1\n").is_err());
        assert!(parse_qrels("q1\td1\t2\nq2\td2\tx\n").is_err());
    }

    #[test]
    fn file_names_keep_ids_apart() {
        assert_eq!(file_name("MED-10"), "doc-MED-10.txt");
        assert_ne!(file_name("a/b"), file_name("a_b"));
        assert_ne!(file_name("a.b"), file_name("a~2eb"));
        assert!(!file_name("../x").contains('/'));
    }

    #[test]
    fn hybrid_runs_once_per_weight() {
        let r = runs(&[Mode::Vector, Mode::Hybrid], &[0.3, 0.7], SearchOptions::default(), DEPTH);
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].options.alpha, Some(0.7));
        assert!(r.iter().all(|run| run.options.group_by == GroupBy::Document));
        assert_eq!(parse_weight("0.5"), Ok(0.5));
        assert!(parse_weight("2").is_err());
    }
}

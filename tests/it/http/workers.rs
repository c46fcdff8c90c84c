//! Scale-out on one database, on the production path: one `kb serve` (one in-process worker)
//! and two `kb worker` processes share an embedded cluster (`--data-dir`, each connected as
//! `kb_app`) and the real local model. Documents uploaded over HTTP must be ingested exactly
//! once between them: every document ready, every job done at its first attempt, the work
//! spread over all three processes, and each document's chunks exactly those a clean
//! ingestion writes (no chunk lost or written twice by two processes).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use kb::chunk::TokenBudget;
use kb::cluster::Cluster;
use kb::extract::Format;

use super::faults::{ServerProcess, count, free_port, serve_args, upload_bytes, user_with_bucket};
use super::startup::StopOnDrop;
use crate::helpers::{extract_limits, local_embedder};

const DOCUMENTS: usize = 24;

/// A distinct plain-text document of a few chunks.
fn document(i: usize) -> String {
    (0..40)
        .map(|s| {
            format!(
                "Document {i}, sentence {s}: shipment {} left warehouse {} on route {} with {} parcels.",
                i * 1000 + s,
                (i * 7 + s) % 13,
                (i * 31 + s * 17) % 101,
                s * i + 3
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `kb worker` (one worker) on the embedded cluster in `data_dir`.
fn worker_args(data_dir: &Path) -> Vec<String> {
    let data_dir = data_dir.display().to_string();
    ["worker", "--data-dir", &data_dir, "--workers", "1"].iter().map(|s| s.to_string()).collect()
}

/// Waits (bounded) until `process` has logged `line`.
async fn wait_for_log(process: &mut ServerProcess, line: &str) {
    let started = Instant::now();
    while !process.log_text().contains(line) {
        process.assert_running();
        assert!(started.elapsed() < Duration::from_secs(180), "no {line:?} after 180 s:\n{}", process.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serve_and_worker_processes_share_one_queue() {
    let data = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::new(data.path()).expect("cluster binaries (run scripts/setup.sh)");
    let _stop_cluster = StopOnDrop(cluster.clone());
    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");

    // The server first (it creates the cluster and applies the migrations), then the workers.
    let serve_log = data.path().join("serve.log");
    File::create(&serve_log).expect("server log");
    let mut server = ServerProcess::spawn(&serve_args(data.path(), &addr, &["--workers", "1"]), &serve_log);
    server.wait_ready(&client, &base).await;
    let mut workers = Vec::new();
    for n in 0..2 {
        let log = data.path().join(format!("worker-{n}.log"));
        File::create(&log).expect("worker log");
        workers.push(ServerProcess::spawn(&worker_args(data.path()), &log));
    }
    for worker in &mut workers {
        wait_for_log(worker, "ingestion workers running").await;
    }

    // Behind the API's back: the cluster superuser on the database the processes use.
    let admin = kb::store::connect(&cluster.database_url("kb"), 2).await.expect("superuser connection");
    let (token, bucket) = user_with_bucket(&admin, &client, &base, "scale@example.com", "scale").await;
    let mut uploaded = Vec::new();
    for i in 0..DOCUMENTS {
        let name = format!("doc-{i:02}.txt");
        let id = upload_bytes(&client, &base, &token, &bucket, &name, "text/plain", document(i).into_bytes()).await;
        uploaded.push((id, i));
    }

    let started = Instant::now();
    loop {
        let busy = count(&admin, "SELECT count(*) FROM ingest_jobs WHERE status IN ('queued', 'running')").await;
        if busy == 0 {
            break;
        }
        server.assert_running();
        for worker in &mut workers {
            worker.assert_running();
        }
        assert!(started.elapsed() < Duration::from_secs(300), "work still pending after 300 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every document ready; every job done at its first attempt (no job claimed twice).
    let jobs: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT d.status, j.status, j.attempts, j.worker_id
         FROM knowledge_documents d JOIN ingest_jobs j ON j.document_id = d.id",
    )
    .fetch_all(&admin)
    .await
    .expect("jobs");
    assert_eq!(jobs.len(), DOCUMENTS, "one job per upload");
    for (document, job, attempts, _) in &jobs {
        assert_eq!((document.as_str(), job.as_str(), *attempts), ("ready", "done", 1), "{jobs:?}");
    }
    // Worker ids are host:pid:uuid; the work was spread over the three processes.
    let processes: BTreeSet<&str> =
        jobs.iter().filter_map(|j| j.3.as_deref()).filter_map(|id| id.split(':').nth(1)).collect();
    assert_eq!(processes.len(), 3, "jobs done by {processes:?}");

    // Each document's chunks are exactly those of a clean ingestion.
    let embedder = local_embedder().await;
    let budget = TokenBudget::new(200, 32, embedder.max_input_tokens()).expect("the server's default budget");
    for (id, i) in &uploaded {
        let prepared = kb::ingest::prepare::prepare(
            Some(Format::Text),
            "txt",
            document(*i).as_bytes(),
            &embedder.tokenizer(),
            budget,
            &extract_limits(),
        )
        .expect("the document prepares");
        let expected: Vec<(i32, String)> =
            prepared.chunks.iter().map(|c| (i32::try_from(c.chunk.index).expect("index"), c.hash.clone())).collect();
        assert!(expected.len() > 1, "each document makes several chunks");
        let stored: Vec<(i32, String)> = sqlx::query_as(
            "SELECT chunk_index, content_hash FROM knowledge_chunks WHERE document_id = $1 ORDER BY chunk_index",
        )
        .bind(id)
        .fetch_all(&admin)
        .await
        .expect("chunks");
        assert_eq!(stored, expected, "the chunks of doc-{i:02}.txt");
    }
    assert_eq!(
        count(&admin, "SELECT count(*) FROM knowledge_chunks WHERE embedding IS NULL").await,
        0,
        "every chunk embedded"
    );
}

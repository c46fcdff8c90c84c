//! Crash recovery of ingestion, on the production path: the real `kb` binary runs `kb serve`
//! as a child process on an embedded cluster of its own (`--data-dir`, so it connects as
//! `kb_app` like any deployment), takes uploads of sample documents over HTTP, and is
//! SIGKILLed while a worker holds a job of a `processing` document. Started again with the
//! same arguments (a 3 s `--job-lease-secs`, so the dead workers' leases expire quickly), it
//! must drain the queue and leave no trace of the crash: every document `ready`,
//! the chunks of each ready document exactly those a clean ingestion produces (indexes
//! 0..n-1, no duplicates, nothing missing), no chunks of failed documents, one document per
//! uploaded file, no job left queued or running.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kb::chunk::TokenBudget;
use kb::cluster::Cluster;
use kb::extract::Format;
use kb::http::auth::JwtKeys;
use kb::store::{self, Role, users};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::SECRET;
use super::startup::StopOnDrop;
use crate::helpers::{extract_limits, local_embedder, repo_path};

/// Uploaded, in this order: markdown, plain text and PDF.
const FILES: [&str; 8] = [
    "sample_docs/brand-voice-and-tone.md",
    "sample_docs/onboarding-guide.md",
    "sample_docs/seo-content-guidelines.md",
    "sample_docs/customer-support-sla.txt",
    "sample_docs/email-marketing-playbook.txt",
    "sample_docs/press-and-pr-guidelines.txt",
    "sample_docs/data-privacy-policy.pdf",
    "sample_docs/pricing-and-billing.pdf",
];

const LEASE_SECS: &str = "3";

/// A `kb serve` child process, SIGKILLed however the test ends.
pub(super) struct ServerProcess {
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    pub(super) fn spawn(args: &[String], log: &Path) -> ServerProcess {
        let out = OpenOptions::new().create(true).append(true).open(log).expect("server log");
        let err = out.try_clone().expect("server log");
        let child = Command::new(env!("CARGO_BIN_EXE_kb"))
            .args(args)
            // The flags decide: no database, model or provider from the test's environment.
            .env_remove("DATABASE_URL")
            .env_remove("KB_DATA_DIR")
            .env_remove("OPENAI_API_KEY")
            .env("KB_LOG", "warn,kb=info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn kb serve");
        ServerProcess { child, log: log.to_path_buf() }
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test with the server's log if the process has exited.
    pub(super) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("child status") {
            panic!("kb serve exited ({status}); its log:\n{}", self.log_text());
        }
    }

    /// SIGKILL: no graceful shutdown, no job handed back.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub(super) async fn wait_ready(&mut self, client: &reqwest::Client, base: &str) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(180) {
            self.assert_running();
            let ready = client.get(format!("{base}/readyz")).timeout(Duration::from_secs(2)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("kb serve not ready after 180 s; its log:\n{}", self.log_text());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `kb serve` on its own embedded cluster in `data_dir`, at `addr`, with the tests' JWT
/// secret and `extra` flags.
pub(super) fn serve_args(data_dir: &Path, addr: &str, extra: &[&str]) -> Vec<String> {
    let secret = std::str::from_utf8(SECRET).expect("ASCII secret");
    let data_dir = data_dir.display().to_string();
    let common = ["serve", "--data-dir", &data_dir, "--addr", addr, "--jwt-secret", secret];
    common.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// A new user of the server's database (`admin`: its superuser), a token of theirs, and a
/// bucket they made over HTTP: (token, bucket id).
pub(super) async fn user_with_bucket(
    admin: &PgPool,
    client: &reqwest::Client,
    base: &str,
    email: &str,
    bucket: &str,
) -> (String, String) {
    let user = users::ensure_user(&mut admin.acquire().await.expect("connection"), email).await.expect("user");
    let token = JwtKeys::new(SECRET)
        .expect("keys")
        .mint(Some(user), Role::Authenticated, Duration::from_secs(900))
        .expect("token");
    let response = client
        .post(format!("{base}/v1/buckets"))
        .bearer_auth(&token)
        .json(&json!({ "name": bucket, "bucket_type": "brand" }))
        .send()
        .await
        .expect("create bucket");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("bucket JSON");
    (token, body["id"].as_str().expect("bucket id").to_string())
}

/// A port nothing listens on right now.
pub(super) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

pub(super) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().expect("a file name")
}

pub(super) async fn upload(client: &reqwest::Client, base: &str, token: &str, bucket: &str, path: &str) -> Uuid {
    let mime = match path.rsplit('.').next() {
        Some("md") => "text/markdown",
        Some("pdf") => "application/pdf",
        _ => "text/plain",
    };
    let bytes = std::fs::read(repo_path(path)).expect("sample document");
    upload_bytes(client, base, token, bucket, file_name(path), mime, bytes).await
}

/// Uploads `bytes` as the file `name`; the document's id.
pub(super) async fn upload_bytes(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    bucket: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> Uuid {
    let form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_string()).mime_str(mime).expect("mime"));
    let response = client
        .post(format!("{base}/v1/buckets/{bucket}/documents"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202, "{name} accepted");
    let body: Value = response.json().await.expect("upload JSON");
    body["id"].as_str().and_then(|id| id.parse().ok()).expect("document id")
}

pub(super) async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// The jobs and documents, for a failure message.
async fn queue_state(pool: &PgPool) -> String {
    let rows: Vec<(String, String, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT d.file_name, d.status, j.status, j.attempts, j.last_error
         FROM knowledge_documents d LEFT JOIN ingest_jobs j ON j.document_id = d.id ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("queue state");
    rows.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join("\n")
}

/// (chunk_index, content_hash) of each chunk a clean ingestion of `path` writes, in order.
async fn expected_chunks(path: &str) -> Vec<(i32, String)> {
    let embedder = local_embedder().await;
    let budget = TokenBudget::new(200, 32, embedder.max_input_tokens()).expect("the server's default budget");
    let name = file_name(path);
    let format = Format::from_path(Path::new(name));
    let extension = name.rsplit('.').next().unwrap_or("").to_string();
    let bytes = std::fs::read(repo_path(path)).expect("sample document");
    let prepared =
        kb::ingest::prepare::prepare(format, &extension, &bytes, &embedder.tokenizer(), budget, &extract_limits())
            .expect("the sample document prepares");
    prepared.chunks.iter().map(|c| (i32::try_from(c.chunk.index).expect("index"), c.hash.clone())).collect()
}

#[tokio::test]
async fn a_server_killed_mid_ingestion_recovers_every_upload_on_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::new(data.path()).expect("cluster binaries (run scripts/setup.sh)");
    let _stop_cluster = StopOnDrop(cluster.clone());
    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{addr}");
    let args = serve_args(data.path(), &addr, &["--workers", "2", "--job-lease-secs", LEASE_SECS]);
    let log = data.path().join("serve.log");
    File::create(&log).expect("server log");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");

    let mut server = ServerProcess::spawn(&args, &log);
    server.wait_ready(&client, &base).await;

    // Behind the API's back: the cluster superuser on the database `kb serve` uses.
    let admin = store::connect(&cluster.database_url("kb"), 2).await.expect("superuser connection");
    let (token, bucket) = user_with_bucket(&admin, &client, &base, "crash@example.com", "crash").await;

    let mut uploaded = Vec::new();
    for path in FILES {
        uploaded.push(upload(&client, &base, &token, &bucket, path).await);
    }

    // Kill once some work is done and a worker holds the job of a document still processing.
    let started = Instant::now();
    loop {
        let (ready, running): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM knowledge_documents WHERE status = 'ready'),
                    (SELECT count(*) FROM ingest_jobs j JOIN knowledge_documents d ON d.id = j.document_id
                     WHERE j.status = 'running' AND d.status = 'processing')",
        )
        .fetch_one(&admin)
        .await
        .expect("progress");
        if ready > 0 && running > 0 {
            break;
        }
        server.assert_running();
        assert!(started.elapsed() < Duration::from_secs(120), "no progress in 120 s:\n{}", queue_state(&admin).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    // Nothing runs now: these jobs are held by dead workers until their leases expire.
    let interrupted: Vec<Uuid> = sqlx::query_scalar("SELECT document_id FROM ingest_jobs WHERE status = 'running'")
        .fetch_all(&admin)
        .await
        .expect("interrupted jobs");
    eprintln!("killed kb serve with {} jobs running:\n{}", interrupted.len(), queue_state(&admin).await);
    assert!(!interrupted.is_empty(), "the kill interrupted running jobs");

    // The same arguments again; the dead workers' leases expire and are taken over.
    let mut server = ServerProcess::spawn(&args, &log);
    server.wait_ready(&client, &base).await;
    let started = Instant::now();
    loop {
        let busy = count(&admin, "SELECT count(*) FROM knowledge_documents WHERE status = 'processing'").await
            + count(&admin, "SELECT count(*) FROM ingest_jobs WHERE status IN ('queued', 'running')").await;
        if busy == 0 {
            break;
        }
        server.assert_running();
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "work still pending 180 s after the restart:\n{}\nserver log:\n{}",
            queue_state(&admin).await,
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.assert_running();
    let state = queue_state(&admin).await;
    eprintln!("after recovery (file, document, job, attempts, error):\n{state}");

    // One document per uploaded file, each ready or failed, its job finished accordingly.
    let documents: Vec<(Uuid, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, file_name, status, processing_error FROM knowledge_documents ORDER BY file_name")
            .fetch_all(&admin)
            .await
            .expect("documents");
    let mut names: Vec<&str> = documents.iter().map(|d| d.1.as_str()).collect();
    let mut expected_names: Vec<&str> = FILES.iter().map(|p| file_name(p)).collect();
    expected_names.sort();
    names.sort();
    assert_eq!(names, expected_names, "one document per uploaded file");
    let mut ids: Vec<Uuid> = documents.iter().map(|d| d.0).collect();
    ids.sort();
    uploaded.sort();
    assert_eq!(ids, uploaded, "the documents are the ones the uploads created");
    // Every sample is a valid document: the crash may delay it, never fail it.
    for (id, name, status, error) in &documents {
        assert_eq!(
            status,
            "ready",
            "{name} ({id}) ended {status:?} ({error:?}) after the crash:\n{state}\nserver log:\n{}",
            server.log_text()
        );
    }
    assert_eq!(count(&admin, "SELECT count(*) FROM ingest_jobs WHERE status IN ('queued', 'running')").await, 0);
    let mismatched = count(
        &admin,
        "SELECT count(*) FROM knowledge_documents d JOIN ingest_jobs j ON j.document_id = d.id
         WHERE (d.status = 'ready') <> (j.status = 'done')",
    )
    .await;
    assert_eq!(mismatched, 0, "every ready document's job is done, every failed one's failed:\n{state}");

    // Chunks: none of failed documents, and each ready document's exactly as a clean run.
    assert_eq!(
        count(&admin, "SELECT count(*) FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id WHERE d.status <> 'ready'").await,
        0,
        "chunks of documents that are not ready"
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM (SELECT 1 FROM knowledge_chunks GROUP BY document_id, chunk_index HAVING count(*) > 1) x").await,
        0,
        "duplicate (document_id, chunk_index)"
    );
    for (id, name, status, _) in &documents {
        if status != "ready" {
            continue;
        }
        let stored: Vec<(i32, String)> = sqlx::query_as(
            "SELECT chunk_index, content_hash FROM knowledge_chunks WHERE document_id = $1 ORDER BY chunk_index",
        )
        .bind(id)
        .fetch_all(&admin)
        .await
        .expect("chunks");
        assert!(!stored.is_empty(), "{name} is ready without chunks");
        let indexes: Vec<i32> = stored.iter().map(|c| c.0).collect();
        let contiguous: Vec<i32> = (0..i32::try_from(stored.len()).expect("count")).collect();
        assert_eq!(indexes, contiguous, "{name}: chunk indexes are 0..n-1");
        let path = FILES.iter().find(|p| file_name(p) == name.as_str()).expect("an uploaded file");
        assert_eq!(stored, expected_chunks(path).await, "{name}: the chunks of a clean ingestion, once each");
    }
    // The interrupted jobs were taken over once their leases expired.
    let retaken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingest_jobs WHERE document_id = ANY($1) AND attempts >= 2 AND status IN ('done', 'failed')",
    )
    .bind(&interrupted)
    .fetch_one(&admin)
    .await
    .expect("retaken jobs");
    assert_eq!(retaken, interrupted.len() as i64, "every interrupted job ran again after its lease expired:\n{state}");
    let ready = documents.iter().filter(|d| d.2 == "ready").count();
    eprintln!("{ready} of {} documents ready after the crash", documents.len());

    server.kill();
    admin.close().await;
}

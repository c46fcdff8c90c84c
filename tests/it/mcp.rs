//! kb as an MCP server, driven by a real MCP client: the official TypeScript SDK
//! (`tests/mcp/client.mjs`, installed by `scripts/node-clients.sh`). sample_docs/ is ingested
//! with the real model as the local owner (user A); the client then talks to the real
//! `kb mcp` binary over stdio and to the real server's `/mcp` over Streamable HTTP, with A's
//! token, B's token and none. The script asserts every step and exits non-zero on the first
//! failure; this test fails with its output, and checks what it reports.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kb::ingest::{Silent, WorkerSettings};
use kb::store::users::LOCAL_OWNER_EMAIL;
use serde_json::Value;

use crate::helpers::{bucket, extract_limits, local_embedder, repo_path, test_cluster};
use crate::http::{Setup, TestServer};

const BUCKET: &str = "samples";
const QUESTION: &str = "How long before an invitation to join the workspace expires?";
const TITLE: &str = "Getting Started with Lighthouse: Onboarding Guide";
const PASSAGE: &str = "Invitations expire after 7 days";

/// Longest the client script may take (it starts `kb mcp`, which loads the model).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

/// `node` and the SDK, or a clear failure saying how to install them (never a skip).
fn client_script() -> PathBuf {
    let dir = repo_path("tests/mcp");
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is not installed (Node >= 18 is needed for the MCP client test; scripts/setup.sh does not install it): {node:?}"
    );
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk/package.json").exists(),
        "the MCP TypeScript SDK is not installed in tests/mcp: run `bash scripts/node-clients.sh` (npm ci), \
         as scripts/test.sh does"
    );
    dir.join("client.mjs")
}

#[tokio::test]
async fn a_real_mcp_client_searches_and_builds_context_over_stdio_and_http() {
    let script = client_script();
    let server = TestServer::start(Setup { embedder: local_embedder().await, workers: 1, ..Setup::fake() }).await;
    // User A is the local owner, whom `kb mcp` (stdio) acts as.
    let (owner, token_a) = server.user(LOCAL_OWNER_EMAIL).await;
    let (_other, token_b) = server.user("mcp-b@example.com").await;

    let model = server.embedder.model().to_string();
    let samples = bucket(&server.admin, owner, BUCKET, "general", &model).await;
    let pipeline = kb::ingest::Pipeline {
        pool: server.admin.clone(),
        embedder: server.embedder.clone(),
        budget: kb::chunk::TokenBudget::new(200, 32, server.embedder.max_input_tokens()).expect("budget"),
        extract: extract_limits(),
        parallelism: 2,
    };
    let sources = kb::ingest::collect(&[repo_path("sample_docs")]).expect("sample_docs");
    let settings = WorkerSettings::new(Duration::from_secs(60), Duration::from_secs(600));
    let summary = pipeline.ingest(owner, &samples, sources, &settings, &Silent).await;
    assert_eq!(summary.documents_failed, 0, "sample_docs ingest: {:?}", summary.documents);
    assert!(summary.documents_ready >= 10, "sample_docs ingest: {summary:?}");

    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&server.admin).await.expect("db");
    let config = serde_json::json!({
        "kb_bin": env!("CARGO_BIN_EXE_kb"),
        "database_url": test_cluster().database_url(&database),
        "url": server.url("/mcp"),
        "token_a": token_a,
        "token_b": token_b,
        "bucket": BUCKET,
        "bucket_id": samples.id,
        "question": QUESTION,
        "title": TITLE,
        "passage": PASSAGE,
    });
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(repo_path("tests/mcp"))
        .env("KB_MCP_TEST", config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .expect("the MCP client script finished in time")
        .expect("the MCP client script ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}{stdout}");
    assert!(output.status.success(), "the MCP client failed ({}):\n{stderr}\n{stdout}", output.status);

    let seen: Value = serde_json::from_str(stdout.trim()).expect("the client's report is JSON");
    for transport in ["stdio", "http"] {
        let seen = &seen[transport];
        assert_eq!(seen["first_hit"], TITLE, "{transport}: {seen}");
        assert!(seen["citation"].as_u64().is_some_and(|c| c >= 1), "{transport}: {seen}");
        assert!(seen["tokens"].as_u64().is_some_and(|t| t > 0 && t <= 600), "{transport}: {seen}");
        let errors = seen["errors"].as_array().expect("tool errors");
        assert_eq!(errors.len(), 6, "{transport}: {seen}");
    }
    assert_eq!(seen["stdio"]["document_id"], seen["http"]["document_id"], "both transports act as A");
    let b_errors = seen["http"]["b_errors"].as_array().expect("B's errors");
    assert!(b_errors.iter().all(|e| e.as_str().is_some_and(|e| !e.is_empty())), "{b_errors:?}");
    let uploaded: uuid::Uuid = seen["http"]["uploaded"].as_str().and_then(|s| s.parse().ok()).expect("upload id");
    let owner_of: uuid::Uuid = sqlx::query_scalar("SELECT created_by FROM public.knowledge_documents WHERE id = $1")
        .bind(uploaded)
        .fetch_one(&server.admin)
        .await
        .expect("the uploaded document is in the database");
    assert_eq!(owner_of, owner, "the upload belongs to the token's user");
}

//! The server against its own OpenAPI document: schemathesis (pinned by
//! `scripts/schemathesis.sh`) sends generated requests to every operation of `/openapi.json`,
//! with real ids in the path parameters, and fails on any 5xx, on a status, content type or
//! body the document does not promise, and on data the document allows being refused.
//!
//! The status stream (`GET /v1/documents/{id}/events`) is tested too: it is given a ready
//! document nothing changes, so each stream ends after its first event.
//!
//! The fake embedder serves: the test is about the HTTP contract, and the real model's input
//! window (254 tokens) would make a long generated query a 422 that no schema can foresee.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use kb::store::Role;

use super::{Setup, TestServer};

/// Generated test cases per operation in the fuzzing phase (the examples and coverage
/// phases add their own, a bounded number per operation).
const MAX_EXAMPLES: u32 = 25;
/// Longest the schemathesis run may take.
const TIME_LIMIT: Duration = Duration::from_secs(150);
/// The checks every answer must pass.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,positive_data_acceptance";

/// The schemathesis executable: `KB_SCHEMATHESIS` (set by scripts/test.sh), else where
/// scripts/schemathesis.sh installs it.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("KB_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("kb/venv-schemathesis/bin/schemathesis")
    });
    assert!(
        path.is_file(),
        "schemathesis not found at {}: run scripts/schemathesis.sh (scripts/test.sh runs it and sets KB_SCHEMATHESIS)",
        path.display()
    );
    path
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_string()
}

/// Real ids for the operations' path parameters (an operation that deletes gets a resource
/// of its own), campaign ids the bodies may name, a token `/metrics` accepts, and what data
/// the document allows may still be refused for: a new version of a document must have its
/// file type (415).
fn config(ids: &Ids) -> String {
    let Ids { bucket, doomed_bucket, document, doomed_document, watched, campaign, service_token } = ids;
    format!(
        r#"
[dictionaries.campaigns]
values = ["{campaign}"]

[parameters]
"body.campaign_id" = {{ dictionary = "campaigns" }}

[[operations]]
include-operation-id = ["read_bucket", "update_bucket", "list_documents", "upload_document"]
parameters = {{ "path.id" = "{bucket}" }}

[[operations]]
include-operation-id = "delete_bucket"
parameters = {{ "path.id" = "{doomed_bucket}" }}

[[operations]]
include-operation-id = ["read_document", "reingest_document"]
parameters = {{ "path.id" = "{document}" }}

[[operations]]
include-operation-id = "replace_document"
parameters = {{ "path.id" = "{document}" }}
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409", "415", "429"]

[[operations]]
include-operation-id = "delete_document"
parameters = {{ "path.id" = "{doomed_document}" }}

[[operations]]
include-operation-id = "document_events"
parameters = {{ "path.id" = "{watched}" }}

[[operations]]
include-operation-id = "metrics"
headers = {{ Authorization = "Bearer {service_token}" }}

[[operations]]
include-operation-id = "admin_stats"
headers = {{ Authorization = "Bearer {service_token}" }}
"#
    )
}

struct Ids {
    bucket: String,
    doomed_bucket: String,
    document: String,
    doomed_document: String,
    /// A ready document nothing changes, so its status stream ends at once.
    watched: String,
    campaign: Uuid,
    service_token: String,
}

/// The operations of the document, as schemathesis labels them (`GET /v1/buckets`).
fn operations(document: &Value) -> Vec<String> {
    let mut labels: Vec<String> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().expect("path item").keys().map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    labels.sort();
    labels
}

/// What schemathesis's JSON report says it did: operations tested of the total, and the
/// schema-valid test cases each operation got (`valid_rates`, by phase).
fn tested(report: &Value) -> (u64, u64, Vec<(String, u64)>) {
    let operations = &report["operations"];
    let rates = report["valid_rates"].as_object().unwrap_or_else(|| panic!("valid_rates in the report: {report}"));
    let mut cases: Vec<(String, u64)> = rates
        .iter()
        .map(|(label, phases)| {
            let counts = phases.as_object().into_iter().flat_map(|phases| phases.values());
            let total = counts
                .flat_map(|rate| rate.as_object().into_iter().flat_map(|r| r.values()))
                .filter_map(Value::as_u64)
                .sum();
            (label.clone(), total)
        })
        .collect();
    cases.sort();
    (operations["tested"].as_u64().unwrap_or(0), operations["total"].as_u64().unwrap_or(0), cases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_as_its_openapi_document_says() {
    let schemathesis = schemathesis();
    let server = TestServer::start(Setup::fake()).await;
    let (user, token) = server.user("openapi@example.com").await;
    let bucket = id(&server.create_bucket(&token, "fuzzed").await);
    let doomed_bucket = id(&server.create_bucket(&token, "deleted-by-schemathesis").await);
    let upload = |name: &'static str, text: &'static str| server.upload_text(&token, &bucket, name, text);
    let document = upload("fixtures/brand-voice.txt", "Our brand voice is warm, clear and confident.").await;
    let doomed_document = upload("fixtures/refunds.txt", "Refunds are paid within fourteen days.").await;
    let watched = upload("fixtures/onboarding.txt", "New members are invited from the team page.").await;
    for document in [&document, &doomed_document, &watched] {
        assert_eq!(server.wait_done(&token, document).await["status"], "ready");
    }
    let campaign: Uuid = sqlx::query_scalar(
        "INSERT INTO public.campaigns (name, type, channel, created_by) VALUES ('launch', 'email', 'newsletter', $1)
         RETURNING id",
    )
    .bind(user)
    .fetch_one(&server.admin)
    .await
    .expect("campaign");
    let service_token = server.token(None, Role::ServiceRole);
    let ids = Ids { bucket, doomed_bucket, document, doomed_document, watched, campaign, service_token };
    let spec: Value =
        server.client.get(server.url("/openapi.json")).send().await.expect("GET").json().await.expect("JSON");
    let expected = operations(&spec);

    let dir = tempfile::tempdir().expect("temporary directory");
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config(&ids)).expect("write the config");
    let report = dir.path().join("report.json");
    let started = Instant::now();
    let run = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        // Any filter at all: without one, schemathesis leaves out the document's own
        // operation (GET /openapi.json).
        .args(["--include-path-regex", "^/"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        // One worker: schemathesis's threads can meet in CPython 3.11's `ast.parse` (hypothesis
        // reads lambda sources with it), whose recursion counter they share ("AST constructor
        // recursion depth mismatch").
        .args(["--workers", "1", "--request-timeout", "20", "--no-color"])
        .args(["--report", "json", "--report-json-path"])
        .arg(&report)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIME_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {TIME_LIMIT:?}"))
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    println!("schemathesis took {:.1} s", started.elapsed().as_secs_f64());
    assert!(output.status.success(), "schemathesis found failures ({}): see its output above", output.status);

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the JSON report")).expect("the report is JSON");
    let (tested, total, cases) = tested(&report);
    println!("schema-valid test cases per operation: {cases:?}");
    let count = expected.len() as u64;
    println!("test cases: {}", report["test_cases"]);
    assert_eq!((tested, total), (count, count), "operations tested, of the total");
    let labels: Vec<&String> = cases.iter().filter(|(_, count)| *count > 0).map(|(label, _)| label).collect();
    assert_eq!(labels, expected.iter().collect::<Vec<_>>(), "every operation got schema-valid test cases");
    // The deleting operations reached their resources (and were not all refused).
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM knowledge_buckets WHERE id = $1::uuid)
              + (SELECT count(*) FROM knowledge_documents WHERE id = $2::uuid)",
    )
    .bind(&ids.doomed_bucket)
    .bind(&ids.doomed_document)
    .fetch_one(&server.admin)
    .await
    .expect("count");
    assert_eq!(left, 0, "DELETE /v1/buckets/{{id}} and DELETE /v1/documents/{{id}} deleted their resources");
}

/// `/rest/v1` against the OpenAPI document it serves at `/rest/v1/`: generated requests to
/// every table, view and function of the schema (about 400 operations), as a user with a
/// company of its own, and never a 5xx. (The document describes PostgREST's looser contract,
/// so only server errors are checked.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_answers_generated_requests_to_every_operation_without_a_server_error() {
    let schemathesis = schemathesis();
    let server = TestServer::start(Setup::fake()).await;
    let (_, token) = server.user("rest-openapi@example.com").await;
    let response = server
        .client
        .post(server.url("/rest/v1/companies"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "Fuzzed" }))
        .send()
        .await
        .expect("company");
    assert_eq!(response.status(), 201);
    let document: Value = server
        .client
        .get(server.url("/rest/v1/"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /rest/v1/")
        .json()
        .await
        .expect("JSON");
    let operations = operations(&document).len();
    assert!(operations > 300, "the document covers the schema: {operations} operations");
    let dir = tempfile::tempdir().expect("temporary directory");
    let schema = dir.path().join("rest.json");
    std::fs::write(&schema, document.to_string()).expect("write the document");
    let started = Instant::now();
    let run = tokio::process::Command::new(&schemathesis)
        .arg("run")
        .arg(&schema)
        .args(["--url", &server.url("/rest/v1")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "fuzzing", "--max-examples", "3"])
        // One worker, for the reason given above.
        .args(["--workers", "1", "--request-timeout", "20", "--no-color"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIME_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {TIME_LIMIT:?}"))
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    println!("schemathesis took {:.1} s over {operations} operations", started.elapsed().as_secs_f64());
    assert!(output.status.success(), "schemathesis found server errors ({}): see its output above", output.status);
}

//! Limits: oversized bodies get 413, unsupported types 415, an interrupted upload leaves
//! nothing behind, and overload is shed fast with 503 + Retry-After.

use std::time::{Duration, Instant};

use kb::http::Limits;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{FakeEmbedder, Setup, TestServer, error_code};

fn file(name: &str, mime: &str, bytes: Vec<u8>) -> Form {
    Form::new().part("file", Part::bytes(bytes).file_name(name.to_string()).mime_str(mime).expect("test step"))
}

#[tokio::test]
async fn oversized_and_unsupported_uploads_are_refused_and_leave_nothing() {
    let limits = Limits { max_upload_bytes: 64 * 1024, ..Limits::default() };
    let server = TestServer::start(Setup { limits, workers: 0, ..Setup::fake() }).await;
    let (_user, token) = server.user("a@example.com").await;
    let bucket = server.create_bucket(&token, "limits").await;
    let upload_url = server.url(&format!("/v1/buckets/{}/documents", bucket["id"].as_str().expect("test step")));
    let c = &server.client;

    // 413: multipart and JSON uploads over the upload limit, JSON bodies over 1 MB.
    let big = vec![b'a'; 200 * 1024];
    let response = c
        .post(&upload_url)
        .bearer_auth(&token)
        .multipart(file("big.txt", "text/plain", big.clone()))
        .send()
        .await
        .expect("test step");
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
    let response = c
        .post(&upload_url)
        .bearer_auth(&token)
        .json(&json!({ "file_name": "big.txt", "content": String::from_utf8(big).expect("test step") }))
        .send()
        .await
        .expect("test step");
    assert_eq!(response.status(), 413);
    let response = c
        .post(server.url("/v1/buckets"))
        .bearer_auth(&token)
        .json(&json!({ "name": "x", "metadata": { "blob": "b".repeat(2 * 1024 * 1024) } }))
        .send()
        .await
        .expect("test step");
    assert_eq!(response.status(), 413);

    // 415: file extensions, part content types and request content types kb does not take.
    let cases = vec![
        ("exe", c.post(&upload_url).multipart(file("tool.exe", "application/octet-stream", b"MZ".to_vec()))),
        ("png as pdf", c.post(&upload_url).multipart(file("a.pdf", "image/png", b"\x89PNG".to_vec()))),
        ("text/plain body", c.post(&upload_url).header("content-type", "text/plain").body("hello")),
        ("pdf as json", c.post(&upload_url).json(&json!({ "file_name": "a.pdf", "content": "%PDF" }))),
        ("bucket as text", c.post(server.url("/v1/buckets")).header("content-type", "text/plain").body("{}")),
    ];
    for (what, request) in cases {
        let response = request.bearer_auth(&token).send().await.expect("request");
        assert_eq!(response.status(), 415, "{what}");
        assert_eq!(error_code(response).await, "unsupported_media_type", "{what}");
    }

    // An upload whose body stops half way: the client announces 100 kB, sends 10, hangs up.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("test step");
    let path = upload_url.trim_start_matches(&server.base);
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         content-type: multipart/form-data; boundary=XYZ\r\ncontent-length: 60000\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("test step");
    let part = "--XYZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"cut.txt\"\r\n\
                content-type: text/plain\r\n\r\n";
    stream.write_all(part.as_bytes()).await.expect("test step");
    stream.write_all(&vec![b'z'; 10_000]).await.expect("test step");
    stream.flush().await.expect("test step");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(server.count("SELECT count(*) FROM public.knowledge_documents").await, 0, "no document left");
    assert_eq!(server.count("SELECT count(*) FROM public.knowledge_document_sources").await, 0, "no bytes left");
    assert_eq!(server.count("SELECT count(*) FROM public.ingest_jobs").await, 0, "no job left");

    // The server is still up and a good upload goes through.
    let response = c
        .post(&upload_url)
        .bearer_auth(&token)
        .multipart(file("ok.txt", "text/plain", b"fine".to_vec()))
        .send()
        .await
        .expect("test step");
    assert_eq!(response.status(), 202);
    assert_eq!(server.count("SELECT count(*) FROM public.knowledge_documents").await, 1);
}

#[tokio::test]
async fn overload_is_shed_fast_with_retry_after() {
    let limits = Limits { max_concurrent_requests: 2, ..Limits::default() };
    let delay = Duration::from_millis(1500);
    let server =
        TestServer::start(Setup { limits, workers: 0, embedder: FakeEmbedder::slow(delay), ..Setup::fake() }).await;
    let (_user, token) = server.user("a@example.com").await;

    let mut tasks = Vec::new();
    for _ in 0..40 {
        let client = server.client.clone();
        let url = server.url("/v1/search");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "query": "anything", "threshold": 0.0 }))
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .expect("no request times out");
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().expect("test step").to_string());
            (response.status().as_u16(), retry_after, started.elapsed())
        }));
    }
    // A probe is never shed, even while the API is saturated.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = server.client.get(server.url("/healthz")).send().await.expect("request");
    assert_eq!(health.status(), 200);

    let mut ok = 0;
    let mut shed = 0;
    for task in tasks {
        let (status, retry_after, took) = task.await.expect("test step");
        match status {
            200 => {
                ok += 1;
                assert!(took >= delay, "an admitted request ran the slow embedder");
            }
            503 => {
                shed += 1;
                assert!(retry_after.is_some(), "503 carries Retry-After");
                assert!(took < delay, "a shed request is answered at once, not queued ({took:?})");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 2, "the admitted requests succeed ({ok})");
    assert!(shed >= 20, "most of the excess is shed ({shed})");
}

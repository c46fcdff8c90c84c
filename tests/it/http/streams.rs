//! Status streams are driven by the database's notifications and capped: 1,000 opened at once
//! get the caps' worth, the rest a clear 429, and the API keeps answering.

use std::time::Duration;

use futures::StreamExt;
use kb::http::Limits;

use super::{Setup, TestServer, error_code};

/// Reads a status stream until an event whose data contains `needle`.
async fn wait_for_event(response: reqwest::Response, needle: &str) -> String {
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
            if seen.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no event with {needle:?} in: {seen}");
    seen
}

#[tokio::test]
async fn a_thousand_status_streams_get_the_caps_and_a_clear_429_for_the_rest() {
    // Room for all 1,000 requests at once, so the stream caps (not load shedding) answer them.
    let limits = Limits {
        max_status_streams: 100,
        max_status_streams_per_user: 20,
        max_concurrent_requests: 1024,
        ..Limits::default()
    };
    // No workers: every document stays `processing`, so its stream stays open.
    let server = TestServer::start(Setup { limits, workers: 0, ..Setup::fake() }).await;
    let mut owners = Vec::new();
    for n in 0..10 {
        let (_, token) = server.user(&format!("watcher{n}@example.com")).await;
        let bucket = server.create_bucket(&token, "watched").await;
        let bucket = bucket["id"].as_str().expect("bucket id").to_string();
        let document = server.upload_text(&token, &bucket, "notes.txt", "Notes to be processed later.").await;
        owners.push((token, document));
    }

    let opens = (0..1000).map(|i| {
        let (token, document) = &owners[i % owners.len()];
        let request = server.client.get(server.url(&format!("/v1/documents/{document}/events"))).bearer_auth(token);
        async move { (i % 10, request.send().await.expect("stream request")) }
    });
    let responses = futures::future::join_all(opens).await;
    let mut open = Vec::new();
    let mut per_owner = [0usize; 10];
    for (owner, response) in responses {
        match response.status().as_u16() {
            200 => {
                per_owner[owner] += 1;
                open.push((owner, response));
            }
            429 => {
                assert!(response.headers().contains_key("retry-after"), "429 without Retry-After");
                assert_eq!(error_code(response).await, "too_many_streams");
            }
            other => panic!("a stream request answered {other}"),
        }
    }
    assert_eq!(open.len(), 100, "the server's cap: {per_owner:?}");
    assert!(per_owner.iter().all(|&n| n <= 20), "a user's cap: {per_owner:?}");

    // The API still answers while they are open.
    let (token, document) = &owners[0];
    let response = server.client.get(server.url(&format!("/v1/documents/{document}"))).bearer_auth(token).send().await;
    assert_eq!(response.expect("request").status(), 200);

    // A change in the database reaches the streams of that document through NOTIFY (nothing
    // polls), and a stream whose document is done ends, which frees its place.
    sqlx::query(
        "UPDATE knowledge_documents SET status = 'failed', pending_hash = NULL, processing_error = 'given up'
         WHERE id = $1::uuid",
    )
    .bind(document)
    .execute(&server.admin)
    .await
    .expect("update");
    let mut first_owner = Vec::new();
    let (mine, others): (Vec<_>, Vec<_>) = open.into_iter().partition(|(owner, _)| *owner == 0);
    for (_, response) in mine {
        first_owner.push(tokio::spawn(wait_for_event(response, "given up")));
    }
    assert!(!first_owner.is_empty(), "the first user got no stream");
    for waiting in first_owner {
        let seen = waiting.await.expect("stream task");
        assert!(seen.contains(r#""status":"failed""#), "{seen}");
    }
    // Their places are free again: a new user's stream is accepted.
    let (_, token) = server.user("latecomer@example.com").await;
    let bucket = server.create_bucket(&token, "late").await;
    let bucket = bucket["id"].as_str().expect("bucket id").to_string();
    let document = server.upload_text(&token, &bucket, "late.txt", "A late document.").await;
    let mut accepted = false;
    for _ in 0..50 {
        let response = server
            .client
            .get(server.url(&format!("/v1/documents/{document}/events")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        if response.status() == 200 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "no place freed after streams ended");
    drop(others);
}

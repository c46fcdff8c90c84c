//! Bad tokens are refused with 401 before anything is read or written.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kb::store::Role;
use serde_json::json;

use super::{SECRET, Setup, TestServer, error_code};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("test step").as_secs()
}

fn signed(claims: serde_json::Value, alg: Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).expect("test step")
}

#[tokio::test]
async fn bad_tokens_get_401_and_touch_nothing() {
    let server = TestServer::start(Setup::fake()).await;
    let (user, good) = server.user("alice@example.com").await;
    let bucket = server.create_bucket(&good, "alice-bucket").await;
    let bucket_id = bucket["id"].as_str().expect("test step").to_string();
    let sub = user.to_string();

    let none_token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(json!({ "sub": sub, "role": "authenticated", "exp": now() + 600 }).to_string())
    );
    let bad: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            signed(json!({ "sub": sub, "role": "authenticated", "exp": now() - 3600 }), Algorithm::HS256, SECRET),
            "token_expired",
        ),
        (
            "wrong signature",
            signed(
                json!({ "sub": sub, "role": "authenticated", "exp": now() + 600 }),
                Algorithm::HS256,
                b"some-other-secret-some-other-secret",
            ),
            "invalid_token",
        ),
        ("alg none", none_token, "invalid_token"),
        (
            "other algorithm",
            signed(json!({ "sub": sub, "role": "authenticated", "exp": now() + 600 }), Algorithm::HS384, SECRET),
            "invalid_token",
        ),
        (
            "wrong role",
            signed(json!({ "sub": sub, "role": "postgres", "exp": now() + 600 }), Algorithm::HS256, SECRET),
            "invalid_token",
        ),
        ("no exp", signed(json!({ "sub": sub, "role": "authenticated" }), Algorithm::HS256, SECRET), "invalid_token"),
        (
            "sub not a uuid",
            signed(json!({ "sub": "alice", "role": "authenticated", "exp": now() + 600 }), Algorithm::HS256, SECRET),
            "invalid_token",
        ),
        ("malformed", "not.a.jwt".to_string(), "invalid_token"),
        ("garbage", "%%%".to_string(), "invalid_token"),
    ];

    for (what, token, code) in &bad {
        // A write: must not create anything.
        let response = server
            .client
            .post(server.url("/v1/buckets"))
            .bearer_auth(token)
            .json(&json!({ "name": format!("evil {what}") }))
            .send()
            .await
            .expect("test step");
        assert_eq!(response.status(), 401, "{what}: create");
        assert_eq!(&error_code(response).await, code, "{what}");

        // A read: must not return data.
        let response = server.client.get(server.url("/v1/buckets")).bearer_auth(token).send().await.expect("request");
        assert_eq!(response.status(), 401, "{what}: list");
        let body = response.text().await.expect("body");
        assert!(!body.contains(&bucket_id), "{what}: the error leaks data: {body}");

        // The apikey header is checked the same way.
        let response = server
            .client
            .get(server.url("/v1/buckets"))
            .header("apikey", token.as_str())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401, "{what}: apikey");

        let response = server.call(reqwest::Method::DELETE, &format!("/v1/buckets/{bucket_id}"), token).await;
        assert_eq!(response.status(), 401, "{what}: delete");
    }
    assert_eq!(server.count("SELECT count(*) FROM public.knowledge_buckets").await, 1, "nothing written");

    // No credentials at all, and a non-Bearer scheme.
    let response = server.client.get(server.url("/v1/buckets")).send().await.expect("request");
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "missing_token");
    let response =
        server.client.get(server.url("/v1/buckets")).basic_auth("alice", Some("pw")).send().await.expect("request");
    assert_eq!(response.status(), 401);

    // The good token still works, through either header.
    let response = server.client.get(server.url("/v1/buckets")).bearer_auth(&good).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let response = server.client.get(server.url("/v1/buckets")).header("apikey", &good).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let anon = server.token(None, Role::Anon);
    let response = server.client.get(server.url("/v1/buckets")).bearer_auth(&anon).send().await.expect("request");
    assert_eq!(response.status(), 403, "anon is refused");
}

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

/// Test-only keys (`tests/fixtures/jwt/`): `signing.pem` is the private half of `jwks.json`'s
/// one ES256 key; `forger.pem` is a key the server does not know.
const SIGNING_KEY: &[u8] = include_bytes!("../../fixtures/jwt/signing.pem");
const FORGER_KEY: &[u8] = include_bytes!("../../fixtures/jwt/forger.pem");
const JWKS: &str = include_str!("../../fixtures/jwt/jwks.json");
const AUDIENCE: &str = "authenticated";
const ISSUER: &str = "https://project.supabase.co/auth/v1";

fn es256(claims: &serde_json::Value, pem: &[u8], kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_pem(pem).expect("test key")).expect("test step")
}

#[tokio::test]
async fn tokens_are_checked_as_supabase_issues_them() {
    let setup = Setup {
        jwt: |keys| {
            keys.with_jwks(JWKS)
                .expect("test JWKS")
                .with_audience(&[AUDIENCE.to_string()])
                .with_issuer(ISSUER)
                .with_max_lifetime(std::time::Duration::from_secs(7 * 86_400))
        },
        ..Setup::fake()
    };
    let server = TestServer::start(setup).await;
    let (user, _) = server.user("carol@example.com").await;
    let claims = |extra: serde_json::Value| {
        let mut claims = json!({
            "sub": user.to_string(), "role": "authenticated", "aud": AUDIENCE, "iss": ISSUER,
            "iat": now(), "exp": now() + 600,
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            claims.extend(extra.clone());
        }
        claims
    };
    let status = |token: String| {
        let request = server.client.get(server.url("/v1/buckets")).bearer_auth(token);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (status, if status == 200 { String::new() } else { error_code(response).await })
        }
    };
    let ok = (200, String::new());
    let refused = (401, "invalid_token".to_string());

    // Supabase's asymmetric signing keys, named by kid or not, and its legacy HS256 secret.
    assert_eq!(status(es256(&claims(json!({})), SIGNING_KEY, Some("kb-test-es256"))).await, ok, "ES256 by kid");
    assert_eq!(status(es256(&claims(json!({})), SIGNING_KEY, None)).await, ok, "ES256 without kid");
    assert_eq!(status(signed(claims(json!({})), Algorithm::HS256, SECRET)).await, ok, "HS256");
    let aud_list = claims(json!({ "aud": ["other", AUDIENCE] }));
    assert_eq!(status(signed(aud_list, Algorithm::HS256, SECRET)).await, ok, "aud as a list");
    // What `kb token` mints under this configuration verifies too.
    assert_eq!(status(server.token(Some(user), Role::Authenticated)).await, ok, "minted");

    let forged = es256(&claims(json!({})), FORGER_KEY, Some("kb-test-es256"));
    assert_eq!(status(forged).await, refused, "a token signed by an unknown key");
    let forged = es256(&claims(json!({})), FORGER_KEY, None);
    assert_eq!(status(forged).await, refused, "an unknown key without kid");
    let unknown_kid = es256(&claims(json!({})), SIGNING_KEY, Some("another-key"));
    assert_eq!(status(unknown_kid).await, refused, "an unknown kid");
    let not_yet = claims(json!({ "nbf": now() + 3600 }));
    assert_eq!(status(es256(&not_yet, SIGNING_KEY, None)).await, refused, "nbf in the future");
    let wrong_aud = claims(json!({ "aud": "someone-else" }));
    assert_eq!(status(es256(&wrong_aud, SIGNING_KEY, None)).await, refused, "wrong aud");
    let no_aud =
        json!({ "sub": user.to_string(), "role": "authenticated", "iss": ISSUER, "iat": now(), "exp": now() + 600 });
    assert_eq!(status(signed(no_aud, Algorithm::HS256, SECRET)).await, refused, "no aud");
    let wrong_iss = claims(json!({ "iss": "https://evil.example/auth/v1" }));
    assert_eq!(status(signed(wrong_iss, Algorithm::HS256, SECRET)).await, refused, "wrong iss");
    let too_long = claims(json!({ "exp": now() + 30 * 86_400 }));
    assert_eq!(status(signed(too_long, Algorithm::HS256, SECRET)).await, refused, "longer than the maximum lifetime");
    // Algorithm confusion: the JWKS's public key used as an HMAC secret proves nothing.
    let confused = signed(claims(json!({})), Algorithm::HS256, JWKS.as_bytes());
    assert_eq!(status(confused).await, refused, "public key as HMAC secret");
}

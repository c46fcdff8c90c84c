//! Pool hygiene: no identity survives on a pooled connection into another request, even
//! when requests are cancelled mid-flight (the transaction rolls back on drop, and
//! `SET LOCAL` / `set_config(.., true)` end with it).

use std::time::Duration;

use kb::store::{self, Role};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{FakeEmbedder, Setup, TestServer};

/// What a connection of the pool acts as outside any request.
async fn identity(pool: &sqlx::PgPool) -> (String, String) {
    sqlx::query_as("SELECT current_user::text, coalesce(current_setting('request.jwt.claims', true), '')")
        .fetch_one(pool)
        .await
        .expect("test step")
}

#[tokio::test]
async fn cancelled_requests_leave_no_identity_on_a_one_connection_pool() {
    let server = TestServer::start(Setup { pool_size: 1, workers: 0, ..Setup::fake() }).await;
    let (_alice, a) = server.user("a@example.com").await;
    let (_bob, b) = server.user("b@example.com").await;
    let a_bucket = server.create_bucket(&a, "a-bucket").await;
    let a_bucket_id = a_bucket["id"].as_str().expect("test step").to_string();
    let b_bucket = server.create_bucket(&b, "b-bucket").await;

    // Many requests as A, each abandoned by the client after 0-30 ms: some before the
    // transaction starts, some in the middle of it, some after.
    let mut tasks = Vec::new();
    for i in 0..120u64 {
        let client = reqwest::Client::new();
        let token = a.clone();
        let base = server.base.clone();
        let bucket = a_bucket_id.clone();
        tasks.push(tokio::spawn(async move {
            let timeout = Duration::from_millis(i % 31);
            let request = match i % 4 {
                0 => client.get(format!("{base}/v1/buckets")),
                1 => client
                    .post(format!("{base}/v1/search"))
                    .json(&json!({ "embedding": FakeEmbedder::vector("anything at all"), "threshold": 0.0 })),
                2 => client.get(format!("{base}/v1/buckets/{bucket}/documents")),
                _ => client
                    .post(format!("{base}/v1/buckets/{bucket}/documents"))
                    .json(&json!({ "content": format!("document {i}"), "file_name": format!("d{i}.txt") })),
            };
            let _ = request.bearer_auth(token).timeout(timeout.max(Duration::from_millis(1))).send().await;
        }));
    }
    for task in tasks {
        task.await.expect("test step");
    }
    // Let the server finish or drop whatever was in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // B, on the same single connection, sees only B's rows.
    let listed: Vec<Value> = server.get_json("/v1/buckets", &b).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], b_bucket["id"]);
    let response = server.call(reqwest::Method::GET, &format!("/v1/buckets/{a_bucket_id}"), &b).await;
    assert_eq!(response.status(), 404);
    // And the connection itself is back to the bare login.
    assert_eq!(identity(&server.app).await, ("kb_app".to_string(), String::new()));
}

#[tokio::test]
async fn a_transaction_dropped_mid_query_resets_the_connection() {
    let server = TestServer::start(Setup { pool_size: 1, workers: 0, ..Setup::fake() }).await;
    let (alice, a) = server.user("a@example.com").await;
    let (bob, _b) = server.user("b@example.com").await;
    server.create_bucket(&a, "a-bucket").await;
    let pool = &server.app;

    // A's transaction is cancelled while PostgreSQL is still running its statement.
    let cancelled = tokio::time::timeout(Duration::from_millis(100), async {
        let mut tx = store::begin_as(pool, alice, Role::Authenticated).await.expect("test step");
        sqlx::query("SELECT pg_sleep(1)").execute(&mut *tx).await.expect("test step");
        tx.commit().await.expect("test step");
    })
    .await;
    assert!(cancelled.is_err(), "the transaction was cut short");

    // A's transaction that simply ends without commit.
    {
        let mut tx = store::begin_as(pool, alice, Role::Authenticated).await.expect("test step");
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM public.knowledge_buckets")
            .fetch_one(&mut *tx)
            .await
            .expect("test step");
        assert_eq!(seen, 1);
    }

    assert_eq!(identity(pool).await, ("kb_app".to_string(), String::new()));
    let mut tx = store::begin_as(pool, bob, Role::Authenticated).await.expect("test step");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM public.knowledge_buckets")
        .fetch_one(&mut *tx)
        .await
        .expect("test step");
    assert_eq!(seen, 0, "B sees none of A's buckets on the reused connection");
    let uid: Option<Uuid> = sqlx::query_scalar("SELECT auth.uid()").fetch_one(&mut *tx).await.expect("test step");
    assert_eq!(uid, Some(bob));
    tx.commit().await.expect("test step");
}

#[tokio::test]
async fn the_server_login_is_not_privileged() {
    let server = TestServer::start(Setup { workers: 0, ..Setup::fake() }).await;
    let mut conn = server.admin.acquire().await.expect("test step");
    // The superuser login of the test cluster is refused as a server login.
    let refused = kb::store::login::check_app_login(&mut conn).await;
    assert!(matches!(refused, Err(kb::store::login::LoginError::Privileged { .. })), "{refused:?}");
    // kb_app cannot read application tables without acting as a request role.
    let direct = sqlx::query("SELECT count(*) FROM public.knowledge_buckets").fetch_one(&server.app).await;
    assert!(direct.is_err(), "kb_app read a table without a role");
    // Creating the login again (another process starting) is harmless.
    kb::store::login::ensure_app_login(&mut conn).await.expect("test step");
}

/// The hygiene checks above can fail: an identity left at session level on a raw pooled
/// connection is what `identity` reports. And even on such a connection, a request acts
/// only as its own caller, since every request sets its role and claims for its transaction.
#[tokio::test]
async fn a_leaked_identity_on_a_raw_connection_is_seen_and_requests_still_act_as_their_caller() {
    let server = TestServer::start(Setup { pool_size: 1, workers: 0, ..Setup::fake() }).await;
    let (alice, a) = server.user("a@example.com").await;
    let (_bob, b) = server.user("b@example.com").await;
    server.create_bucket(&a, "a-bucket").await;
    {
        // The pool's only connection, tainted outside any transaction.
        let mut conn = server.app.acquire().await.expect("test step");
        sqlx::query("SET ROLE authenticated").execute(&mut *conn).await.expect("test step");
        sqlx::query("SELECT set_config('request.jwt.claims', $1, false)")
            .bind(json!({ "sub": alice, "role": "authenticated" }).to_string())
            .execute(&mut *conn)
            .await
            .expect("test step");
    }
    let (role, claims) = identity(&server.app).await;
    assert_eq!(role, "authenticated", "the leaked role is seen");
    assert!(claims.contains(&alice.to_string()), "the leaked claims are seen: {claims}");

    let listed: Vec<Value> = server.get_json("/v1/buckets", &b).await;
    assert!(listed.is_empty(), "B's request on A's tainted connection saw {listed:?}");
    let mine: Vec<Value> = server.get_json("/v1/buckets", &a).await;
    assert_eq!(mine.len(), 1);
}

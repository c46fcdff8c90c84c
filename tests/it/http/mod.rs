//! HTTP API tests: the real server (`kb::http::serve`) on 127.0.0.1:0, a fresh database per
//! test, the server connected as the unprivileged `kb_app` login, and a reqwest client.
//!
//! Tests that exercise ingestion or search semantics use the real local model
//! (`helpers::local_embedder`). Tests about auth, isolation, limits and pool hygiene use
//! `FakeEmbedder`, a deterministic bag-of-words embedder defined here (test-only), so they
//! do not depend on the model.

mod bombs;
mod faults;
mod isolation;
mod journey;
mod limits;
mod openapi;
mod pool;
mod replicas;
mod rest;
mod startup;
mod streams;
mod supabase;
mod tokens;
mod uploads;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use kb::chunk::{TokenBudget, Tokenizer};
use kb::embed::{EmbedError, Embedder};
use kb::extract::ExtractLimits;
use kb::http::auth::JwtKeys;
use kb::http::{AppState, Limits};
use kb::ingest::Pipeline;
use kb::ingest::{WorkerSettings, worker};
use kb::store::{self, Role, login, users};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::helpers::{TestDb, extract_limits};

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// A deterministic, test-only embedder: each word hashed into one of 384 dimensions,
/// normalised. Texts sharing words are similar; an optional delay simulates a slow model.
pub struct FakeEmbedder {
    pub delay: Duration,
}

pub const FAKE_MODEL: &str = "test/fake-bag-of-words-384";
const FAKE_DIMS: usize = 384;

impl FakeEmbedder {
    pub fn shared() -> Arc<dyn Embedder> {
        Arc::new(FakeEmbedder { delay: Duration::ZERO })
    }

    pub fn slow(delay: Duration) -> Arc<dyn Embedder> {
        Arc::new(FakeEmbedder { delay })
    }

    pub fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0f32; FAKE_DIMS];
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
            let hash = kb::hash::bytes_hash(word.to_lowercase().as_bytes());
            let slot = usize::from_str_radix(&hash[..8], 16).expect("hex") % FAKE_DIMS;
            v[slot] += 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v[0] = 1.0;
        }
        v
    }
}

#[async_trait::async_trait]
impl Embedder for FakeEmbedder {
    fn model(&self) -> &str {
        FAKE_MODEL
    }
    fn dimensions(&self) -> usize {
        FAKE_DIMS
    }
    fn max_input_tokens(&self) -> usize {
        512
    }
    fn tokenizer(&self) -> Tokenizer {
        Tokenizer::cl100k().expect("cl100k tokenizer")
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(texts.iter().map(|t| FakeEmbedder::vector(t)).collect())
    }
}

/// How a test server is set up.
pub struct Setup {
    pub embedder: Arc<dyn Embedder>,
    pub limits: Limits,
    pub pool_size: u32,
    pub workers: usize,
    /// The lease of ingestion jobs.
    pub lease: Duration,
    /// Time limit of one document's extraction and chunking.
    pub extract_timeout: Duration,
    /// What the server's keys accept beyond the HS256 `SECRET` (a JWKS, audience, issuer...).
    pub jwt: fn(JwtKeys) -> JwtKeys,
}

impl Setup {
    pub fn fake() -> Setup {
        Setup {
            embedder: FakeEmbedder::shared(),
            limits: Limits::default(),
            pool_size: 8,
            workers: 1,
            lease: Duration::from_secs(30),
            extract_timeout: Duration::from_secs(60),
            jwt: |keys| keys,
        }
    }
}

/// A running server over its own database.
pub struct TestServer {
    pub base: String,
    pub addr: std::net::SocketAddr,
    /// The superuser pool: set-up and checks behind the API's back.
    pub admin: PgPool,
    /// The server's own pool (`kb_app`).
    pub app: PgPool,
    pub keys: JwtKeys,
    pub client: reqwest::Client,
    pub embedder: Arc<dyn Embedder>,
    stop: Option<oneshot::Sender<()>>,
    stop_workers: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(setup: Setup) -> TestServer {
        let db = TestDb::new().await;
        let admin = db.pool;
        {
            let mut conn = admin.acquire().await.expect("admin connection");
            login::ensure_app_login(&mut conn).await.expect("kb_app login");
            let embedder = &setup.embedder;
            store::index::register_model(&mut conn, embedder.model(), embedder.dimensions()).await.expect("model");
        }
        let options = (*admin.connect_options()).clone().username(login::APP_LOGIN);
        let app = PgPoolOptions::new()
            .max_connections(setup.pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .expect("kb_app pool");
        login::check_app_login(&mut app.acquire().await.expect("conn")).await.expect("kb_app is unprivileged");

        let (stop_workers, stopped) = watch::channel(false);
        let pipeline = Pipeline {
            pool: app.clone(),
            embedder: setup.embedder.clone(),
            budget: TokenBudget::new(200, 32, setup.embedder.max_input_tokens()).expect("budget"),
            extract: ExtractLimits { timeout: setup.extract_timeout, ..extract_limits() },
            parallelism: 2,
        };
        for _ in 0..setup.workers {
            let mut settings = WorkerSettings::new(setup.lease, Duration::from_secs(600));
            settings.idle_poll = Duration::from_millis(50);
            tokio::spawn(worker::run(pipeline.clone(), settings, stopped.clone()));
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = AppState::new(
            app.clone(),
            setup.embedder.clone(),
            (setup.jwt)(JwtKeys::new(SECRET).expect("keys")),
            setup.limits,
        );
        let (stop, stopping) = oneshot::channel::<()>();
        let server = tokio::spawn(kb::http::serve(listener, state, async move {
            let _ = stopping.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            addr,
            admin,
            app,
            keys: (setup.jwt)(JwtKeys::new(SECRET).expect("keys")),
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            embedder: setup.embedder,
            stop: Some(stop),
            stop_workers,
            server: Some(server),
        }
    }

    /// Asks the server to stop (as Ctrl-C would); returns its task to await.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.take().expect("server still running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A new user and an `authenticated` token for it.
    pub async fn user(&self, email: &str) -> (Uuid, String) {
        let mut conn = self.admin.acquire().await.expect("conn");
        let id = users::ensure_user(&mut conn, email).await.expect("user");
        (id, self.token(Some(id), Role::Authenticated))
    }

    pub fn token(&self, user: Option<Uuid>, role: Role) -> String {
        self.keys.mint(user, role, Duration::from_secs(600)).expect("token")
    }

    pub async fn create_bucket(&self, token: &str, name: &str) -> Value {
        let response = self
            .client
            .post(self.url("/v1/buckets"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "name": name, "bucket_type": "brand" }))
            .send()
            .await
            .expect("create bucket");
        assert_eq!(response.status(), 201, "create bucket");
        response.json().await.expect("bucket json")
    }

    /// Uploads text as JSON; returns the document id.
    pub async fn upload_text(&self, token: &str, bucket: &str, file_name: &str, content: &str) -> String {
        let response = self
            .client
            .post(self.url(&format!("/v1/buckets/{bucket}/documents")))
            .bearer_auth(token)
            .json(&serde_json::json!({ "file_name": file_name, "content": content }))
            .send()
            .await
            .expect("upload");
        let status = response.status();
        let body: Value = response.json().await.expect("upload json");
        // 202: a new version is queued; 200: the bytes are already the ready version.
        match status.as_u16() {
            202 => assert_eq!(body["outcome"], "queued", "{body}"),
            200 => assert_eq!(body["outcome"], "unchanged", "{body}"),
            other => panic!("upload answered {other}: {body}"),
        }
        body["id"].as_str().expect("id").to_string()
    }

    /// Uploads a multipart form into the bucket; the status and the JSON answer.
    pub async fn upload_form(&self, token: &str, bucket: &str, form: reqwest::multipart::Form) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/v1/buckets/{bucket}/documents")))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = response.status().as_u16();
        (status, response.json().await.expect("upload json"))
    }

    /// `method path` as the holder of `token`.
    pub async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::Response {
        self.client.request(method, self.url(path)).bearer_auth(token).send().await.expect("request")
    }

    /// GET `path` as the holder of `token`, and its JSON body.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> T {
        self.call(reqwest::Method::GET, path, token).await.json().await.expect("JSON body")
    }

    /// Polls the document until no version of it is being processed; returns its record.
    pub async fn wait_done(&self, token: &str, document: &str) -> Value {
        for _ in 0..600 {
            let body: Value = self.get_json(&format!("/v1/documents/{document}"), token).await;
            if body["processing"] == Value::Bool(false) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("document {document} still processing after a minute");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.admin).await.expect("count")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop_workers.send(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A request's error body must be the API's `{"code", "message"}`.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("error body is JSON");
    assert!(body["message"].is_string(), "error has a message: {body}");
    body["code"].as_str().expect("error has a code").to_string()
}

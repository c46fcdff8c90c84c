//! `/rest/v1`: a PostgREST-compatible API over the exposed schemas, so supabase-js code runs
//! against kb unchanged. A request goes through the same steps as in PostgREST:
//! [`parse`] (query string and headers into typed values), [`schema`] (the catalog, cached),
//! [`plan`] (embedding through foreign keys), [`sql`] (one statement, every value bound),
//! then one transaction that acts as the caller (role, `request.jwt.claims`,
//! `request.method`, `request.path`, `request.headers`; read only for GET and HEAD), and the
//! response shaped here as PostgREST shapes it. Row level security decides what each caller
//! sees and changes. Errors are PostgREST's ([`error`]).

pub mod error;
pub mod openapi;
pub mod parse;
pub mod plan;
pub mod schema;
pub mod sql;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::AppState;
use super::auth::{Caller, token_of};
use crate::store::Role;
use error::RestError;
use parse::{Count, Preferences, Query, Resolution, Return};
use schema::{Function, Relation, Returns, SchemaCache, SharedCache, ident};
use sql::{Body, Builder, Param, Source};

/// The settings and schema cache of `/rest/v1`.
#[derive(Clone)]
pub struct Rest {
    pub cache: SharedCache,
    /// Most rows a read returns, whatever the request asks (PostgREST's `db-max-rows`).
    pub max_rows: Option<u64>,
    started: Arc<tokio::sync::OnceCell<()>>,
}

impl Rest {
    pub fn new(schemas: Vec<String>, max_rows: Option<u64>) -> Rest {
        Rest { cache: SharedCache::new(schemas), max_rows, started: Arc::default() }
    }

    /// The cache, loaded on first use (and then kept current by `NOTIFY pgrst`).
    async fn schema(&self, state: &AppState) -> Result<Arc<SchemaCache>, RestError> {
        let pool = &state.pool;
        self.started
            .get_or_try_init(|| async {
                self.cache.reload(pool).await?;
                self.cache.watch(pool.clone(), state.stopping.subscribe());
                Ok::<(), sqlx::Error>(())
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading the schema cache");
                RestError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "PGRST002",
                    "Could not query the database for the schema cache. Retrying.",
                )
            })?;
        Ok(self.cache.get())
    }
}

impl Default for Rest {
    fn default() -> Rest {
        Rest::new(vec!["public".to_owned()], Some(1000))
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/rest/v1", any(handle)).route("/rest/v1/", any(handle)).route("/rest/v1/{*path}", any(handle))
}

/// Headers a browser may send and read (PostgREST's CORS policy: any origin).
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, Accept-Language, Content-Language, Prefer, Range, \
                             apikey, x-client-info, Accept-Profile, Content-Profile, Range-Unit";
const EXPOSE_HEADERS: &str = "Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, \
                              Transfer-Encoding, Range-Unit, Preference-Applied";

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut response = match respond(&state, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    response
}

/// What the URL names.
enum Target<'a> {
    Root,
    Relation(&'a str),
    Function(&'a str),
}

fn target(path: &str) -> Result<Target<'_>, RestError> {
    let rest = path.trim_start_matches("/rest/v1").trim_start_matches('/');
    let invalid = || RestError::new(StatusCode::NOT_FOUND, "PGRST125", "Invalid path specified in request URL");
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [""] => Ok(Target::Root),
        ["rpc", name] if !name.is_empty() => Ok(Target::Function(name)),
        [name] => Ok(Target::Relation(name)),
        [name, ""] => Ok(Target::Relation(name)),
        _ => Err(invalid()),
    }
}

/// The caller of a request and its claims: its token's, or `anon` without one.
fn caller(state: &AppState, headers: &HeaderMap) -> Result<(Caller, Value), RestError> {
    match token_of(headers) {
        Ok(token) => {
            let (caller, claims) = state.jwt.verify_claims(token).map_err(|e| RestError::jwt(&e))?;
            let claims =
                serde_json::to_value(claims).map_err(|_| RestError::parse("token", "its claims are not JSON"))?;
            Ok((caller, claims))
        }
        Err(crate::http::error::ApiError::MissingToken) => {
            Ok((Caller { user: Uuid::nil(), role: Role::Anon }, serde_json::json!({ "role": "anon" })))
        }
        Err(e) => Err(RestError::jwt(&e)),
    }
}

/// The media type the answer is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    Object,
    Csv,
    OpenApi,
}

/// The media type of the answer, and whether null-valued keys are stripped from its objects
/// (`;nulls=stripped` on PostgREST's array and object types).
fn media(headers: &HeaderMap, root: bool) -> Result<(Media, bool), RestError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok((if root { Media::OpenApi } else { Media::Json }, false));
    };
    let mut ranges: Vec<(f32, &str, bool)> = accept
        .split(',')
        .map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let params: Vec<&str> = parts.collect();
            let q = params.iter().filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.parse().ok()).unwrap_or(1.0);
            (q, media, params.contains(&"nulls=stripped"))
        })
        .filter(|(_, media, _)| !media.is_empty())
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, range, stripped) in &ranges {
        let found = match *range {
            "*/*" | "application/*" | "application/json" => Some(if root { Media::OpenApi } else { Media::Json }),
            "application/openapi+json" if root => Some(Media::OpenApi),
            "application/vnd.pgrst.array+json" if !root => Some(Media::Json),
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" if !root => Some(Media::Object),
            "text/csv" if !root => Some(Media::Csv),
            _ => None,
        };
        if let Some(found) = found {
            return Ok((found, *stripped && matches!(found, Media::Json | Media::Object)));
        }
    }
    Err(RestError::accept(&ranges.iter().map(|(_, m, _)| *m).collect::<Vec<_>>().join(", ")))
}

/// The schema a request addresses: its profile header's, else the first exposed one.
fn profile(cache: &SchemaCache, method: &Method, headers: &HeaderMap) -> Result<(String, bool), RestError> {
    let name = if matches!(*method, Method::GET | Method::HEAD) { "accept-profile" } else { "content-profile" };
    match headers.get(name).map(|v| v.to_str()) {
        None => Ok((cache.schemas.first().cloned().unwrap_or_else(|| "public".into()), false)),
        Some(Ok(schema)) if cache.schemas.iter().any(|s| s == schema) => Ok((schema.to_owned(), true)),
        Some(Ok(schema)) => Err(RestError::schema(schema, &cache.schemas)),
        Some(Err(_)) => Err(RestError::schema("(not UTF-8)", &cache.schemas)),
    }
}

async fn respond(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RestError> {
    let target = target(uri.path())?;
    if *method == Method::OPTIONS {
        return Ok(preflight(&target));
    }
    let (caller, claims) = caller(state, headers)?;
    let cache = state.rest.schema(state).await?;
    let (schema, profiled) = profile(&cache, method, headers)?;
    let (media, strip_nulls) = media(headers, matches!(target, Target::Root))?;
    let pairs = parse::pairs(uri.query().unwrap_or(""))?;
    let prefs = Preferences::parse(headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()));
    if prefs.strict && !prefs.invalid.is_empty() {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "PGRST122",
            "Invalid preferences given with handling=strict",
        )
        .details(format!("Invalid preferences: {}", prefs.invalid.join(", "))));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RestError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PGRST413",
                "The request body is larger than this server accepts",
            )
        } else {
            RestError::body(e.body_text())
        }
    })?;
    let request = Request {
        state,
        caller,
        claims,
        method,
        uri,
        headers,
        cache: &cache,
        schema: &schema,
        media,
        strip_nulls,
        prefs,
    };
    let mut response = match target {
        Target::Root => {
            if !matches!(*method, Method::GET | Method::HEAD) {
                return Err(RestError::method(method.as_str()));
            }
            let document = openapi::document(&cache, &schema, caller.role.as_str(), headers);
            let mut response = axum::Json(document).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/openapi+json; charset=utf-8"));
            response
        }
        Target::Relation(name) => {
            let relation = cache.relation(&schema, name).ok_or_else(|| RestError::no_table(&schema, name))?;
            let needs = match *method {
                Method::POST => schema::INSERTABLE,
                Method::PATCH => schema::UPDATABLE,
                Method::DELETE => schema::DELETABLE,
                _ => 0,
            };
            if relation.writable & needs != needs {
                return Err(RestError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "PGRST117",
                    format!("Unsupported HTTP method: {method}"),
                )
                .details(format!("'{schema}.{name}' is a view that cannot take this write")));
            }
            match *method {
                Method::GET | Method::HEAD => request.read(relation, &pairs).await?,
                Method::POST => request.insert(relation, &pairs, &body).await?,
                Method::PATCH => request.update(relation, &pairs, &body).await?,
                Method::DELETE => request.delete(relation, &pairs).await?,
                _ => return Err(RestError::method(method.as_str())),
            }
        }
        Target::Function(name) => {
            if !matches!(*method, Method::GET | Method::HEAD | Method::POST) {
                return Err(RestError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "PGRST101",
                    format!("Cannot use the {method} method on RPC"),
                ));
            }
            request.call(name, &pairs, &body).await?
        }
    };
    if profiled && let Ok(value) = HeaderValue::from_str(&schema) {
        response.headers_mut().insert(HeaderName::from_static("content-profile"), value);
    }
    if *method == Method::HEAD {
        *response.body_mut() = HttpBody::empty();
    }
    Ok(response)
}

fn preflight(target: &Target) -> Response {
    let allow = match target {
        Target::Function(_) => "OPTIONS,GET,HEAD,POST",
        _ => "OPTIONS,GET,HEAD,POST,PATCH,DELETE",
    };
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(allow));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD"),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

/// One request, understood.
struct Request<'a> {
    state: &'a AppState,
    caller: Caller,
    /// The token's claims, all of them (`request.jwt.claims`, read by `auth.jwt()`).
    claims: Value,
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    cache: &'a SchemaCache,
    schema: &'a str,
    media: Media,
    /// `nulls=stripped`: objects lose their null-valued keys.
    strip_nulls: bool,
    prefs: Preferences,
}

/// The one row a statement answers: the total (when counted), the page's rows, the body.
struct Answer {
    total: Option<i64>,
    page: i64,
    body: Option<String>,
}

impl Request<'_> {
    fn anonymous(&self) -> bool {
        self.caller.role == Role::Anon
    }

    fn db(&self, e: sqlx::Error) -> RestError {
        RestError::database(e, self.anonymous())
    }

    /// The request's transaction, acting as the caller.
    async fn begin(&self, read_only: bool) -> Result<Transaction<'static, Postgres>, RestError> {
        let pool = &self.state.pool;
        let begin = if read_only { pool.begin_with("BEGIN READ ONLY").await } else { pool.begin().await };
        let mut tx = begin.map_err(|e| self.db(e))?;
        let request_headers: Map<String, Value> = self
            .headers
            .iter()
            .filter(|(name, _)| *name != header::AUTHORIZATION)
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), Value::String(value.to_str().ok()?.to_owned())))
            })
            .collect();
        let path = self.uri.path().trim_start_matches("/rest/v1");
        let timeout_ms = self.state.limits.request_timeout.as_millis().to_string();
        sqlx::query(
            "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),
                    set_config('request.method', $3, true), set_config('request.path', $4, true),
                    set_config('request.headers', $5, true), set_config('statement_timeout', $6, true)",
        )
        .bind(self.caller.role.as_str())
        .bind(self.claims.to_string())
        .bind(self.method.as_str())
        .bind(path)
        .bind(Value::Object(request_headers).to_string())
        .bind(timeout_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        Ok(tx)
    }

    /// Commits, or rolls back under `Prefer: tx=rollback`.
    async fn finish(&self, tx: Transaction<'static, Postgres>) -> Result<(), RestError> {
        if self.prefs.rollback { tx.rollback().await } else { tx.commit().await }.map_err(|e| self.db(e))
    }

    async fn fetch(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        text: &str,
        params: &[Param],
    ) -> Result<Answer, RestError> {
        let row: (Option<i64>, i64, Option<String>) =
            bind(sqlx::query_as(text), params).fetch_one(&mut **tx).await.map_err(|e| self.db(e))?;
        Ok(Answer { total: row.0, page: row.1, body: row.2 })
    }

    async fn execute(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        text: &str,
        params: &[Param],
    ) -> Result<u64, RestError> {
        let done = bind_query(sqlx::query(text), params).execute(&mut **tx).await.map_err(|e| self.db(e))?;
        Ok(done.rows_affected())
    }

    /// `count=planned` (and `estimated` past the row limit): the planner's estimate.
    async fn planned(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        count: &str,
        params: &[Param],
    ) -> Result<i64, RestError> {
        let plan: (Value,) = bind(sqlx::query_as(&format!("EXPLAIN (FORMAT JSON) {count}")), params)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.db(e))?;
        // The count's aggregate returns one row: the estimate is its input's.
        let rows = plan.0.pointer("/0/Plan/Plans/0/Plan Rows").or_else(|| plan.0.pointer("/0/Plan/Plan Rows"));
        Ok(rows.and_then(Value::as_f64).unwrap_or(0.0) as i64)
    }

    fn body_shape(&self) -> Body {
        match (self.media, self.strip_nulls) {
            (Media::Object, false) => Body::Object,
            (Media::Object, true) => Body::ObjectStripped,
            (Media::Csv, _) => Body::Csv,
            (Media::Json | Media::OpenApi, true) => Body::ArrayStripped,
            (Media::Json | Media::OpenApi, false) => Body::Array,
        }
    }

    /// The offset and limit of the resource of the URL: `offset`/`limit`, else a `Range`
    /// header (GET only), capped by the row limit.
    fn page(&self, query: &Query) -> Result<(u64, Option<u64>), RestError> {
        let mut offset = query.offset(&[]).unwrap_or(0);
        let mut limit = query.limit(&[]);
        if *self.method == Method::GET
            && let Some(range) = self.headers.get(header::RANGE).and_then(|v| v.to_str().ok())
        {
            let (from, count) = parse::range(range).ok_or_else(|| {
                RestError::new(StatusCode::RANGE_NOT_SATISFIABLE, "PGRST103", "Requested range not satisfiable")
                    .details(
                        "The lower boundary must be lower than or equal to the upper boundary in the Range header.",
                    )
            })?;
            if query.offset(&[]).is_none() {
                offset = from;
            }
            limit = match (limit, count) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let limit = match (limit, self.state.rest.max_rows) {
            (Some(a), Some(max)) => Some(a.min(max)),
            (a, max) => a.or(max),
        };
        Ok((offset, limit))
    }

    async fn read(&self, relation: &Relation, pairs: &[(String, String)]) -> Result<Response, RestError> {
        let query = parse::query(pairs)?;
        let (offset, limit) = self.page(&query)?;
        let source = Source { relation, from: relation.qualified() };
        self.read_from(&source, None, &query, offset, limit, true, Body::Array).await
    }

    /// Reads `source` (a table, or the rows of `with`) and answers with the page.
    #[allow(clippy::too_many_arguments)]
    async fn read_from(
        &self,
        source: &Source<'_>,
        with: Option<(&str, Vec<Param>)>,
        query: &Query,
        offset: u64,
        limit: Option<u64>,
        read_only: bool,
        array: Body,
    ) -> Result<Response, RestError> {
        let mut b = Builder::default();
        if let Some((_, params)) = &with {
            b.params = params.clone();
        }
        let read = sql::read(&mut b, self.cache, source, query, limit, offset)?;
        let shape = match (array, self.body_shape()) {
            (Body::Array, own) => own,
            (Body::Object, Body::ArrayStripped | Body::ObjectStripped) => Body::ObjectStripped,
            (given, _) => given,
        };
        let exact = matches!(self.prefs.count, Some(Count::Exact));
        let statement = sql::wrap(with.as_ref().map(|(w, _)| *w), &read, exact, shape);
        let mut tx = self.begin(read_only).await?;
        let mut answer = self.fetch(&mut tx, &statement, &b.params).await?;
        if with.is_none() {
            answer.total = match self.prefs.count {
                Some(Count::Planned) => Some(self.planned(&mut tx, &read.count, &b.params).await?),
                Some(Count::Estimated) => {
                    let planned = self.planned(&mut tx, &read.count, &b.params).await?;
                    match self.state.rest.max_rows {
                        Some(max) if planned > max as i64 => Some(planned),
                        _ => Some(
                            self.fetch(&mut tx, &sql::wrap(None, &read, true, Body::Array), &b.params)
                                .await?
                                .total
                                .unwrap_or(0),
                        ),
                    }
                }
                _ => answer.total,
            };
        }
        if shape.is_object() && answer.page != 1 {
            return Err(RestError::singular(answer.page));
        }
        self.finish(tx).await?;
        let (status, range) = content_range(offset, answer.page, answer.total);
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(RestError::range(offset, answer.total));
        }
        let mut response = self.body_response(status, answer.body.unwrap_or_default(), shape);
        insert(&mut response, header::CONTENT_RANGE, &range);
        self.applied(&mut response, false);
        Ok(response)
    }

    fn body_response(&self, status: StatusCode, body: String, shape: Body) -> Response {
        let content_type = match shape {
            Body::Csv => "text/csv; charset=utf-8",
            Body::Object | Body::ObjectStripped if self.media == Media::Object => {
                if self.strip_nulls {
                    "application/vnd.pgrst.object+json; nulls=stripped; charset=utf-8"
                } else {
                    "application/vnd.pgrst.object+json; charset=utf-8"
                }
            }
            Body::ArrayStripped => "application/vnd.pgrst.array+json; nulls=stripped; charset=utf-8",
            _ => "application/json; charset=utf-8",
        };
        let mut response = (status, body).into_response();
        insert(&mut response, header::CONTENT_TYPE, content_type);
        response
    }

    /// `Preference-Applied`: the preferences this request honoured.
    fn applied(&self, response: &mut Response, write: bool) {
        let p = &self.prefs;
        let mut applied = Vec::new();
        if write {
            match p.resolution {
                Some(Resolution::MergeDuplicates) => applied.push("resolution=merge-duplicates".to_owned()),
                Some(Resolution::IgnoreDuplicates) => applied.push("resolution=ignore-duplicates".to_owned()),
                None => {}
            }
            if p.missing_default {
                applied.push("missing=default".into());
            }
            match p.return_ {
                Some(Return::Minimal) => applied.push("return=minimal".into()),
                Some(Return::HeadersOnly) => applied.push("return=headers-only".into()),
                Some(Return::Representation) => applied.push("return=representation".into()),
                None => {}
            }
        }
        match p.count {
            Some(Count::Exact) => applied.push("count=exact".into()),
            Some(Count::Planned) => applied.push("count=planned".into()),
            Some(Count::Estimated) => applied.push("count=estimated".into()),
            None => {}
        }
        if p.rollback {
            applied.push("tx=rollback".into());
        }
        if p.strict {
            applied.push("handling=strict".into());
            if let Some(n) = p.max_affected {
                applied.push(format!("max-affected={n}"));
            }
        }
        if !applied.is_empty() {
            insert(response, HeaderName::from_static("preference-applied"), &applied.join(", "));
        }
    }

    /// The JSON body of a write: an object or an array of objects (a form body becomes an
    /// object of strings).
    fn payload(&self, body: &Bytes) -> Result<Value, RestError> {
        let content_type =
            self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json" | "" => {
                if body.is_empty() {
                    return Ok(Value::Object(Map::new()));
                }
                serde_json::from_slice(body).map_err(|e| RestError::body(e.to_string()))
            }
            "application/x-www-form-urlencoded" => {
                let text = std::str::from_utf8(body).map_err(|_| RestError::body("the form is not UTF-8"))?;
                let object = parse::pairs(text)?.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                Ok(Value::Object(object))
            }
            other => Err(RestError::content_type(other)),
        }
    }

    /// The columns a write sets: `columns=`, else the keys of the body (the same in every
    /// object), each a column of the relation.
    fn payload_columns(&self, relation: &Relation, query: &Query, payload: &Value) -> Result<Vec<String>, RestError> {
        let objects: Vec<&Map<String, Value>> = match payload {
            Value::Object(o) => vec![o],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_object().ok_or_else(|| RestError::body("every element of the array must be an object")))
                .collect::<Result<_, _>>()?,
            _ => return Err(RestError::body("the body must be a JSON object or an array of objects")),
        };
        let columns: Vec<String> = match &query.columns {
            Some(columns) => columns.clone(),
            None => {
                let first: Vec<String> = objects.first().map(|o| o.keys().cloned().collect()).unwrap_or_default();
                for object in &objects[1.min(objects.len())..] {
                    if object.len() != first.len() || !first.iter().all(|k| object.contains_key(k)) {
                        return Err(RestError::body("All object keys must match"));
                    }
                }
                first
            }
        };
        for column in &columns {
            if relation.column(column).is_none() {
                return Err(RestError::no_payload_column(&relation.name, column));
            }
        }
        Ok(columns)
    }

    async fn insert(
        &self,
        relation: &Relation,
        pairs: &[(String, String)],
        body: &Bytes,
    ) -> Result<Response, RestError> {
        let query = parse::query(pairs)?;
        let payload = self.payload(body)?;
        let columns = self.payload_columns(relation, &query, &payload)?;
        let rows = match &payload {
            Value::Array(items) => items.len(),
            _ => 1,
        };
        let mut b = Builder::default();
        let json = b.text(payload.to_string());
        let target = relation.qualified();
        let list: Vec<String> = columns.iter().map(|c| ident(c)).collect();
        let values: Vec<String> = if self.prefs.missing_default {
            columns
                .iter()
                .map(|c| {
                    let default =
                        relation.column(c).and_then(|col| col.default.clone()).unwrap_or_else(|| "NULL".into());
                    let key = b.text(c.clone());
                    format!("CASE WHEN pgrst_row.j::jsonb ? {key} THEN pgrst_rec.{} ELSE ({default}) END", ident(c))
                })
                .collect()
        } else {
            columns.iter().map(|c| format!("pgrst_rec.{}", ident(c))).collect()
        };
        let rows_sql = format!(
            "FROM json_array_elements(CASE WHEN json_typeof({json}::json) = 'array' THEN {json}::json ELSE json_build_array({json}::json) END) AS pgrst_row(j), \
             LATERAL json_populate_record(NULL::{target}, pgrst_row.j) AS pgrst_rec"
        );
        let conflict = match self.prefs.resolution {
            None => String::new(),
            Some(resolution) => {
                let keys = match &query.on_conflict {
                    Some(keys) => keys.clone(),
                    None => relation.primary_key.clone(),
                };
                if keys.is_empty() {
                    String::new()
                } else {
                    for key in &keys {
                        if relation.column(key).is_none() {
                            return Err(RestError::no_column(&relation.name, key));
                        }
                    }
                    // The conflict columns are equal already: setting them would only need an
                    // UPDATE privilege on the key that the caller may not have.
                    let mut set: Vec<String> = columns
                        .iter()
                        .filter(|c| !keys.contains(c))
                        .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
                        .collect();
                    if set.is_empty() {
                        set = keys.iter().map(|c| format!("{0} = EXCLUDED.{0}", ident(c))).collect();
                    }
                    let keys: Vec<String> = keys.iter().map(|k| ident(k)).collect();
                    match resolution {
                        Resolution::IgnoreDuplicates => format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")),
                        Resolution::MergeDuplicates => {
                            format!(" ON CONFLICT ({}) DO UPDATE SET {}", keys.join(", "), set.join(", "))
                        }
                    }
                }
            }
        };
        let statement = match (columns.is_empty(), rows) {
            (false, _) => {
                format!(
                    "INSERT INTO {target} AS \"t0\" ({}) SELECT {} {rows_sql}{conflict}",
                    list.join(", "),
                    values.join(", ")
                )
            }
            // `[]`: nothing to insert.
            (true, 0) => format!(
                "INSERT INTO {target} AS \"t0\" SELECT (json_populate_record(NULL::{target}, '{{}}')).* WHERE false"
            ),
            // `{}`: one row of defaults.
            (true, 1) => format!("INSERT INTO {target} AS \"t0\" DEFAULT VALUES{conflict}"),
            (true, _) => return Err(RestError::body("objects with no keys can only be inserted one at a time")),
        };
        self.write(relation, &query, b, statement, StatusCode::CREATED).await
    }

    async fn update(
        &self,
        relation: &Relation,
        pairs: &[(String, String)],
        body: &Bytes,
    ) -> Result<Response, RestError> {
        let query = parse::query(pairs)?;
        self.refuse_limits(&query)?;
        let payload = self.payload(body)?;
        if !payload.is_object() {
            return Err(RestError::body("a PATCH body must be one JSON object"));
        }
        let columns = self.payload_columns(relation, &query, &payload)?;
        let mut b = Builder::default();
        let json = b.text(payload.to_string());
        let target = relation.qualified();
        let filters = sql::mutation_filters(&mut b, relation, &query)?;
        if columns.is_empty() {
            // Nothing to set: nothing changes (and nothing is returned).
            let any = relation.columns.first().map(|c| ident(&c.name)).unwrap_or_default();
            let statement = format!("UPDATE {target} AS \"t0\" SET {any} = \"t0\".{any} WHERE false");
            return self.write(relation, &query, b, statement, StatusCode::OK).await;
        }
        let set: Vec<String> = columns.iter().map(|c| format!("{} = pgrst_rec.{}", ident(c), ident(c))).collect();
        let statement = format!(
            "UPDATE {target} AS \"t0\" SET {} FROM (SELECT * FROM json_populate_record(NULL::{target}, {json}::json)) AS pgrst_rec{filters}",
            set.join(", ")
        );
        self.write(relation, &query, b, statement, StatusCode::OK).await
    }

    async fn delete(&self, relation: &Relation, pairs: &[(String, String)]) -> Result<Response, RestError> {
        let query = parse::query(pairs)?;
        self.refuse_limits(&query)?;
        let mut b = Builder::default();
        let filters = sql::mutation_filters(&mut b, relation, &query)?;
        let statement = format!("DELETE FROM {} AS \"t0\"{filters}", relation.qualified());
        self.write(relation, &query, b, statement, StatusCode::OK).await
    }

    fn refuse_limits(&self, query: &Query) -> Result<(), RestError> {
        if query.limit(&[]).is_some() || query.offset(&[]).is_some() {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "PGRST127", "Feature not implemented")
                .details("limit and offset on PATCH and DELETE are not supported by kb"));
        }
        Ok(())
    }

    /// Runs an `INSERT`, `UPDATE` or `DELETE` and answers as `Prefer: return=` asks.
    async fn write(
        &self,
        relation: &Relation,
        query: &Query,
        mut b: Builder,
        statement: String,
        representation_status: StatusCode,
    ) -> Result<Response, RestError> {
        let is_insert = *self.method == Method::POST;
        let returning = match self.prefs.return_ {
            Some(Return::Representation) => Some(query.select.clone()),
            Some(Return::HeadersOnly) if is_insert && !relation.primary_key.is_empty() => Some(Some(
                relation
                    .primary_key
                    .iter()
                    .map(|k| parse::SelectItem::Column {
                        field: parse::Field { name: k.clone(), path: Vec::new() },
                        alias: None,
                        cast: None,
                    })
                    .collect(),
            )),
            _ => None,
        };
        let mut tx = self.begin(false).await?;
        let (affected, body) = match returning {
            None => (self.execute(&mut tx, &statement, &b.params).await? as i64, None),
            Some(select) => {
                let with = format!("{statement} RETURNING \"t0\".*");
                let read_query = Query { select, ..Query::default() };
                let source = Source { relation, from: "pgrst_source".into() };
                let read = sql::read(&mut b, self.cache, &source, &read_query, None, 0)?;
                let shape = self.body_shape();
                let text = sql::wrap(Some(&with), &read, false, shape);
                let answer = self.fetch(&mut tx, &text, &b.params).await?;
                if shape.is_object() && answer.page != 1 {
                    return Err(RestError::singular(answer.page));
                }
                (answer.page, answer.body)
            }
        };
        if self.prefs.strict
            && let Some(max) = self.prefs.max_affected
            && !is_insert
            && affected > max as i64
        {
            return Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "PGRST124",
                "Query result exceeds max-affected preference constraint",
            )
            .details(format!("The query affects {affected} rows")));
        }
        self.finish(tx).await?;
        let total = if self.prefs.count.is_some() { affected.to_string() } else { "*".to_owned() };
        let range = match *self.method {
            Method::PATCH if affected > 0 => format!("0-{}/{total}", affected - 1),
            _ => format!("*/{total}"),
        };
        let mut response = match (self.prefs.return_, body) {
            (Some(Return::Representation), Some(body)) => {
                self.body_response(representation_status, body, self.body_shape())
            }
            (Some(Return::HeadersOnly), Some(body)) => {
                let mut response = StatusCode::CREATED.into_response();
                if let Some(location) = location(relation, &body) {
                    insert(&mut response, header::LOCATION, &location);
                }
                response
            }
            _ if is_insert => StatusCode::CREATED.into_response(),
            _ => StatusCode::NO_CONTENT.into_response(),
        };
        insert(&mut response, header::CONTENT_RANGE, &range);
        self.applied(&mut response, true);
        Ok(response)
    }

    /// `/rpc/{name}`: the function of that name whose parameters the arguments name.
    async fn call(&self, name: &str, pairs: &[(String, String)], body: &Bytes) -> Result<Response, RestError> {
        let candidates: &[Function] =
            self.cache.functions.get(&(self.schema.to_owned(), name.to_owned())).map(Vec::as_slice).unwrap_or(&[]);
        let post = *self.method == Method::POST;
        // GET: the parameters named like an argument of some candidate are arguments.
        let is_argument = |key: &str| candidates.iter().any(|f| f.arguments.iter().any(|a| a.name == key));
        let (arguments, rest): (Vec<_>, Vec<_>) =
            pairs.iter().cloned().partition(|(key, _)| !post && is_argument(key) && !is_reserved(key));
        let payload = if post { Some(self.payload(body)?) } else { None };
        let names: Vec<String> = match &payload {
            Some(Value::Object(object)) => object.keys().cloned().collect(),
            Some(_) => Vec::new(),
            None => arguments.iter().map(|(k, _)| k.clone()).collect(),
        };
        let function = choose(candidates, self.schema, name, &names, payload.as_ref())?;
        let query = parse::query(&rest)?;
        let mut b = Builder::default();
        let call = if function.takes_body() {
            let json = b.text(payload.as_ref().map(Value::to_string).unwrap_or_else(|| "{}".into()));
            format!(
                "{}.{}(CAST({json} AS {}))",
                ident(&function.schema),
                ident(&function.name),
                function.arguments[0].type_name
            )
        } else {
            let mut named = Vec::new();
            for argument in function.arguments.iter().filter(|a| names.contains(&a.name)) {
                let value = match &payload {
                    Some(_) => format!("pgrst_args.{}", ident(&argument.name)),
                    None => {
                        let value = arguments
                            .iter()
                            .find(|(k, _)| *k == argument.name)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default();
                        format!("CAST({} AS {})", b.text(value), argument.type_name)
                    }
                };
                named.push(format!("{} := {value}", ident(&argument.name)));
            }
            format!("{}.{}({})", ident(&function.schema), ident(&function.name), named.join(", "))
        };
        let from_args = match &payload {
            Some(payload) if !function.takes_body() && !names.is_empty() => {
                let json = b.text(payload.to_string());
                let columns: Vec<String> = function
                    .arguments
                    .iter()
                    .filter(|a| names.contains(&a.name))
                    .map(|a| format!("{} {}", ident(&a.name), a.type_name))
                    .collect();
                format!("json_to_record({json}::json) AS pgrst_args({}), LATERAL ", columns.join(", "))
            }
            _ => String::new(),
        };
        let read_only = !post || function.volatility != 'v';
        let (offset, limit) = self.page(&query)?;
        match &function.returns {
            Returns::Void => {
                let mut tx = self.begin(read_only).await?;
                let from = if from_args.is_empty() {
                    String::new()
                } else {
                    format!(" FROM {}", from_args.trim_end_matches(", LATERAL "))
                };
                self.execute(&mut tx, &format!("SELECT {call}{from}"), &b.params).await?;
                self.finish(tx).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            Returns::Scalar(_) => {
                let with = format!("SELECT pgrst_call.pgrst_scalar FROM {from_args}{call} AS pgrst_call(pgrst_scalar)");
                let shape = if function.set { Body::ScalarArray } else { Body::Scalar };
                let text = format!(
                    "WITH pgrst_source AS ({with}) SELECT NULL::bigint AS total, count(*) AS page, {} AS body FROM (SELECT * FROM pgrst_source{}{}) _pgrst_t",
                    match shape {
                        Body::ScalarArray => "coalesce(json_agg(_pgrst_t.pgrst_scalar), '[]')::text",
                        _ => "coalesce(json_agg(_pgrst_t.pgrst_scalar)->0, 'null')::text",
                    },
                    limit.filter(|_| function.set).map(|n| format!(" LIMIT {n}")).unwrap_or_default(),
                    if function.set && offset > 0 { format!(" OFFSET {offset}") } else { String::new() },
                );
                let mut tx = self.begin(read_only).await?;
                let answer = self.fetch(&mut tx, &text, &b.params).await?;
                self.finish(tx).await?;
                Ok(self.body_response(StatusCode::OK, answer.body.unwrap_or_else(|| "null".into()), Body::Array))
            }
            Returns::Rows { columns, relation } => {
                // Rows of a table's type can embed that table's relationships.
                let own = relation.as_ref().and_then(|(s, n)| self.cache.relation(s, n));
                let pseudo = Relation {
                    schema: self.schema.to_owned(),
                    name: function.name.clone(),
                    kind: 'c',
                    columns: columns.clone(),
                    primary_key: Vec::new(),
                    unique: Vec::new(),
                    comment: None,
                    roles: Vec::new(),
                    writable: 0,
                };
                let relation = own.unwrap_or(&pseudo);
                let with = format!("SELECT pgrst_call.* FROM {from_args}{call} AS pgrst_call");
                let source = Source { relation, from: "pgrst_source".into() };
                let shape = if function.set { Body::Array } else { Body::Object };
                let (offset, limit) = if function.set { (offset, limit) } else { (0, None) };
                let params = std::mem::take(&mut b.params);
                self.read_from(&source, Some((&with, params)), &query, offset, limit, read_only, shape).await
            }
        }
    }
}

fn is_reserved(key: &str) -> bool {
    matches!(
        key,
        "select" | "order" | "limit" | "offset" | "or" | "and" | "not.or" | "not.and" | "columns" | "on_conflict"
    )
}

/// Overload resolution by argument names, as PostgREST does it: a function matches when the
/// names cover its required parameters and name no other; failing that, a function with one
/// unnamed json or jsonb parameter takes a POST body whole.
fn choose<'a>(
    candidates: &'a [Function],
    schema: &str,
    name: &str,
    names: &[String],
    payload: Option<&Value>,
) -> Result<&'a Function, RestError> {
    let matching: Vec<&Function> = candidates
        .iter()
        .filter(|f| !f.takes_body())
        .filter(|f| {
            names.iter().all(|n| f.arguments.iter().any(|a| a.name == *n))
                && f.arguments.iter().all(|a| a.has_default || names.contains(&a.name))
        })
        .collect();
    let matching = if matching.is_empty() && payload.is_some() {
        candidates.iter().filter(|f| f.takes_body()).collect()
    } else {
        matching
    };
    match matching.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut sorted = names.to_vec();
            sorted.sort();
            let (message, searched) = if sorted.is_empty() {
                (
                    format!("Could not find the function {schema}.{name} without parameters in the schema cache"),
                    "without parameters".to_owned(),
                )
            } else {
                (
                    format!("Could not find the function {schema}.{name}({}) in the schema cache", sorted.join(", ")),
                    format!("with parameter{} {}", if sorted.len() == 1 { "" } else { "s" }, sorted.join(", ")),
                )
            };
            let json = if payload.is_some() { " or with a single unnamed json/jsonb parameter" } else { "" };
            Err(RestError::new(StatusCode::NOT_FOUND, "PGRST202", message).details(format!(
                "Searched for the function {schema}.{name} {searched}{json}, but no matches were found in the schema cache."
            )))
        }
        several => {
            let described: Vec<String> = several
                .iter()
                .map(|f| {
                    let args: Vec<String> =
                        f.arguments.iter().map(|a| format!("{} => {}", a.name, a.type_name)).collect();
                    format!("{schema}.{name}({})", args.join(", "))
                })
                .collect();
            Err(RestError::new(
                StatusCode::MULTIPLE_CHOICES,
                "PGRST203",
                format!("Could not choose the best candidate function between: {}", described.join(", ")),
            )
            .hint("Try renaming the parameters or the function itself in the database so function overloading can be resolved"))
        }
    }
}

/// `Content-Range` and the status a read answers with, as PostgREST computes them.
fn content_range(offset: u64, page: i64, total: Option<i64>) -> (StatusCode, String) {
    let lower = offset as i64;
    let upper = lower + page - 1;
    let span = if total != Some(0) && lower <= upper { format!("{lower}-{upper}") } else { "*".to_owned() };
    let total_text = total.map(|t| t.to_string()).unwrap_or_else(|| "*".into());
    let status = match total {
        None => StatusCode::OK,
        Some(total) if lower > total => StatusCode::RANGE_NOT_SATISFIABLE,
        Some(total) if 1 + upper - lower < total => StatusCode::PARTIAL_CONTENT,
        Some(_) => StatusCode::OK,
    };
    (status, format!("{span}/{total_text}"))
}

/// `Location` of one inserted row: its primary key as filters.
fn location(relation: &Relation, body: &str) -> Option<String> {
    let rows: Value = serde_json::from_str(body).ok()?;
    let row = match &rows {
        Value::Array(rows) if rows.len() == 1 => rows[0].as_object()?,
        Value::Object(row) => row,
        _ => return None,
    };
    let filters: Vec<String> = relation
        .primary_key
        .iter()
        .map(|k| match row.get(k) {
            Some(Value::Null) | None => format!("{}=is.null", encode(k)),
            Some(Value::String(s)) => format!("{}=eq.{}", encode(k), encode(s)),
            Some(other) => format!("{}=eq.{}", encode(k), encode(&other.to_string())),
        })
        .collect();
    Some(format!("/{}?{}", relation.name, filters.join("&")))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn insert(response: &mut Response, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

type PgQueryAs<'q, T> = sqlx::query::QueryAs<'q, Postgres, T, sqlx::postgres::PgArguments>;

fn bind<'q, T>(mut query: PgQueryAs<'q, T>, params: &'q [Param]) -> PgQueryAs<'q, T> {
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(text.as_str()),
            Param::Texts(texts) => query.bind(texts.as_slice()),
        };
    }
    query
}

fn bind_query<'q>(
    mut query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(text.as_str()),
            Param::Texts(texts) => query.bind(texts.as_slice()),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_follows_postgrest() {
        assert_eq!(content_range(0, 10, None), (StatusCode::OK, "0-9/*".into()));
        assert_eq!(content_range(0, 0, None), (StatusCode::OK, "*/*".into()));
        assert_eq!(content_range(0, 0, Some(0)), (StatusCode::OK, "*/0".into()));
        assert_eq!(content_range(0, 2, Some(6)), (StatusCode::PARTIAL_CONTENT, "0-1/6".into()));
        assert_eq!(content_range(0, 6, Some(6)), (StatusCode::OK, "0-5/6".into()));
        assert_eq!(content_range(6, 0, Some(6)), (StatusCode::PARTIAL_CONTENT, "*/6".into()));
        assert_eq!(content_range(7, 0, Some(6)).0, StatusCode::RANGE_NOT_SATISFIABLE);
    }
}

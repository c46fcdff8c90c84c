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
mod rpc;
pub mod schema;
pub mod sql;
mod write;

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
use schema::{Relation, SchemaCache, SharedCache};
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
            sqlx::query_as_with(text, arguments(params)?).fetch_one(&mut **tx).await.map_err(|e| self.db(e))?;
        Ok(Answer { total: row.0, page: row.1, body: row.2 })
    }

    async fn execute(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        text: &str,
        params: &[Param],
    ) -> Result<u64, RestError> {
        let done = sqlx::query_with(text, arguments(params)?).execute(&mut **tx).await.map_err(|e| self.db(e))?;
        Ok(done.rows_affected())
    }

    /// `count=planned` (and `estimated` past the row limit): the planner's estimate.
    async fn planned(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        count: &str,
        params: &[Param],
    ) -> Result<i64, RestError> {
        let plan: (Value,) = sqlx::query_as_with(&format!("EXPLAIN (FORMAT JSON) {count}"), arguments(params)?)
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
                        // Below the row limit the exact count is cheap: run the count alone.
                        _ => Some(
                            sqlx::query_scalar_with(&read.count, arguments(&b.params)?)
                                .fetch_one(&mut *tx)
                                .await
                                .map_err(|e| self.db(e))?,
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

fn insert(response: &mut Response, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// The statement's parameters, bound in order.
fn arguments(params: &[Param]) -> Result<sqlx::postgres::PgArguments, RestError> {
    use sqlx::Arguments;
    let mut arguments = sqlx::postgres::PgArguments::default();
    for param in params {
        let added = match param {
            Param::Text(text) => arguments.add(text.as_str()),
            Param::Texts(texts) => arguments.add(texts.as_slice()),
        };
        added.map_err(|e| RestError::database(sqlx::Error::Encode(e), false))?;
    }
    Ok(arguments)
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

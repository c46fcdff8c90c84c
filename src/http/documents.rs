//! Documents of a bucket: upload (multipart or JSON, answered `202` once stored durably and
//! queued), list, read, delete, re-ingest, and a server-sent events stream of a document's
//! status so a client sees `processing` -> `ready`/`failed` without polling.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::Caller;
use super::error::{ApiError, JsonBody, Path};
use super::{AppState, Limits};
use crate::extract::Format;
use crate::ingest::QuotaError;
use crate::store::documents::{self, DocumentRecord};
use crate::store::{buckets, jobs};

pub fn router(limits: &Limits) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/buckets/{id}/documents",
            get(list).post(upload).layer(DefaultBodyLimit::max(limits.max_upload_bytes)),
        )
        .route("/v1/documents/{id}", get(read).delete(remove))
        .route(
            "/v1/documents/{id}/content",
            axum::routing::put(replace).layer(DefaultBodyLimit::max(limits.max_upload_bytes)),
        )
        .route("/v1/documents/{id}/reingest", post(reingest))
        .route("/v1/documents/{id}/events", get(events))
}

/// The answer to an upload or re-ingestion.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub id: Uuid,
    pub bucket_id: Uuid,
    pub status: &'static str,
    /// `queued` (202: a new version is processed; a ready document stays searchable with its
    /// current one meanwhile), `unchanged` (200: the bytes are the ready version) or
    /// `duplicate` (200: another ready document of the bucket has these bytes; `id` is it).
    pub outcome: &'static str,
    /// Where to follow the document's status.
    pub events: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadJson {
    #[serde(default)]
    pub title: Option<String>,
    pub content: String,
    #[serde(default)]
    pub file_name: Option<String>,
    /// The document's key in its bucket; defaults to `file_name`.
    #[serde(default)]
    pub path: Option<String>,
}

/// An upload, whole in memory, checked before any database work.
struct UploadedFile {
    /// The document's key in its bucket: the client's path (or file name as sent).
    key: String,
    file_name: String,
    format: Format,
    title: Option<String>,
    body: Bytes,
}

const MAX_FILE_NAME: usize = 255;
const MAX_KEY: usize = 1024;

/// The base name of a client-given file name, without any directory part.
fn base_name(name: &str) -> Result<String, ApiError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if base.is_empty() || base == "." || base == ".." {
        return Err(ApiError::InvalidInput("the file needs a name".into()));
    }
    if base.len() > MAX_FILE_NAME || base.chars().any(char::is_control) {
        return Err(ApiError::InvalidInput("the file name is too long or has control characters".into()));
    }
    Ok(base.to_string())
}

/// A document key from a client-given path: `/`-separated, relative, without `.` or `..`
/// parts. Two files that share a base name in different folders are two documents.
fn document_key(path: &str) -> Result<String, ApiError> {
    let parts: Vec<&str> = path.split(['/', '\\']).map(str::trim).filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(ApiError::InvalidInput("the document path must name a file, without `..`".into()));
    }
    let key = parts.join("/");
    if key.len() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(ApiError::InvalidInput("the document path is too long or has control characters".into()));
    }
    Ok(format!("upload/{key}"))
}

fn format_of(file_name: &str) -> Result<Format, ApiError> {
    Format::from_path(std::path::Path::new(file_name)).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!("{file_name:?}: supported files are .txt, .md, .html and .pdf"))
    })
}

/// Whether a part's declared content type fits the format its extension names.
fn content_type_fits(format: Format, content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime.is_empty() || mime == "application/octet-stream" {
        return true;
    }
    match format {
        Format::Text => mime == "text/plain",
        Format::Markdown => matches!(mime.as_str(), "text/markdown" | "text/x-markdown" | "text/plain"),
        Format::Html => matches!(mime.as_str(), "text/html" | "application/xhtml+xml"),
        Format::Pdf => matches!(mime.as_str(), "application/pdf" | "application/x-pdf"),
    }
}

fn given_title(title: Option<String>) -> Option<String> {
    title.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

async fn read_multipart(mut multipart: Multipart) -> Result<UploadedFile, ApiError> {
    let mut file = None;
    let mut title = None;
    let mut path = None;
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("file") => {
                let sent = field.file_name().unwrap_or("").to_string();
                let name = base_name(&sent)?;
                let format = format_of(&name)?;
                if let Some(content_type) = field.content_type()
                    && !content_type_fits(format, content_type)
                {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "content type {content_type:?} does not match the file {name:?}"
                    )));
                }
                file = Some((sent, name, format, field.bytes().await?));
            }
            Some("title") => title = Some(field.text().await?),
            Some("path") => path = Some(field.text().await?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unexpected form field {:?}: send `file` and optionally `title` and `path`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let (sent, file_name, format, body) =
        file.ok_or_else(|| ApiError::BadRequest("the form has no `file` field".into()))?;
    let key = document_key(path.as_deref().unwrap_or(&sent))?;
    Ok(UploadedFile { key, file_name, format, title: given_title(title), body })
}

fn from_json(body: UploadJson) -> Result<UploadedFile, ApiError> {
    // Without a file name or path each JSON upload is a new document.
    let file_name = match (&body.file_name, &body.path) {
        (Some(name), _) | (None, Some(name)) => base_name(name)?,
        (None, None) => format!("{}.txt", Uuid::new_v4()),
    };
    let format = format_of(&file_name)?;
    if format == Format::Pdf {
        return Err(ApiError::UnsupportedMediaType("a PDF must be uploaded as multipart/form-data".into()));
    }
    let key = document_key(body.path.as_deref().or(body.file_name.as_deref()).unwrap_or(&file_name))?;
    Ok(UploadedFile { key, file_name, format, title: given_title(body.title), body: Bytes::from(body.content) })
}

/// Reads an upload body: multipart/form-data (`file`, `title`, `path`) or JSON.
async fn read_upload(state: &AppState, request: Request) -> Result<UploadedFile, ApiError> {
    let mime = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match mime.as_str() {
        "multipart/form-data" => read_multipart(Multipart::from_request(request, state).await?).await,
        "application/json" => from_json(JsonBody::<UploadJson>::from_request(request, state).await?.0),
        _ => Err(ApiError::UnsupportedMediaType(
            "upload as multipart/form-data (file, title, path) or application/json (content, file_name, path, title)"
                .into(),
        )),
    }
}

type UploadResponse = (StatusCode, [(header::HeaderName, String); 1], Json<Accepted>);

async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket_id): Path<Uuid>,
    request: Request,
) -> Result<UploadResponse, ApiError> {
    // The whole body is read before the transaction starts: an interrupted upload fails
    // here with nothing written, and a slow client never holds a database connection.
    let file = read_upload(&state, request).await?;
    submit(&state, caller, bucket_id, file).await
}

/// A new version of a document named by its id.
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    request: Request,
) -> Result<UploadResponse, ApiError> {
    let mut file = read_upload(&state, request).await?;
    let mut tx = caller.begin(&state.pool).await?;
    let document = documents::document_by_id(&mut tx, id).await?.ok_or(ApiError::NotFound("document"))?;
    tx.commit().await?;
    let key = document.upload_path.ok_or_else(|| ApiError::Conflict("the document has no key".into()))?;
    if format_of(&file.file_name)? != format_of(document.file_name.as_deref().unwrap_or(""))? {
        return Err(ApiError::UnsupportedMediaType("a new version must have the same file type".into()));
    }
    file.key = key;
    submit(&state, caller, document.bucket_id, file).await
}

/// Stores the upload as a version of the document under its key, within the caller's quotas,
/// and commits before answering.
async fn submit(
    state: &AppState,
    caller: Caller,
    bucket_id: Uuid,
    file: UploadedFile,
) -> Result<UploadResponse, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    let bucket = buckets::bucket_by_id(&mut tx, bucket_id).await?.ok_or(ApiError::NotFound("bucket"))?;
    if bucket.embedding_model != state.embedder.model() {
        return Err(ApiError::Conflict(format!(
            "the bucket is embedded with {}, but this server runs {}",
            bucket.embedding_model,
            state.embedder.model()
        )));
    }
    let usage = jobs::usage(&mut tx, bucket.created_by).await?;
    let new_document = documents::document_id_by_key(&mut tx, bucket_id, &file.key).await?.is_none();
    let adding = i64::try_from(file.body.len()).unwrap_or(i64::MAX);
    state.limits.quotas.check(&usage, adding, new_document).map_err(|e| match e {
        QuotaError::StoredBytes { .. } => ApiError::StorageQuotaExceeded(e.to_string()),
        QuotaError::Documents { .. } | QuotaError::ActiveJobs { .. } => ApiError::QuotaExceeded(e.to_string()),
    })?;
    let submission = documents::Submission {
        bucket_id,
        key: &file.key,
        file_name: &file.file_name,
        file_type: Some(file.format.as_str()),
        body: &file.body,
        title: file.title.as_deref(),
    };
    let submitted = documents::submit(&mut tx, &submission).await?;
    tx.commit().await?;
    metrics::counter!(super::metrics::UPLOADS, "format" => file.format.as_str()).increment(1);
    let id = submitted.document_id();
    tracing::info!(document = %id, bucket = %bucket_id, bytes = file.body.len(), ?submitted, "upload accepted");
    let (code, status, outcome) = match submitted {
        documents::Submitted::Queued { .. } => (StatusCode::ACCEPTED, "processing", "queued"),
        documents::Submitted::Unchanged { .. } => (StatusCode::OK, "ready", "unchanged"),
        documents::Submitted::Duplicate { .. } => (StatusCode::OK, "ready", "duplicate"),
    };
    let events = format!("/v1/documents/{id}/events");
    let location = [(header::LOCATION, format!("/v1/documents/{id}"))];
    Ok((code, location, Json(Accepted { id, bucket_id, status, outcome, events })))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket_id): Path<Uuid>,
) -> Result<Json<Vec<DocumentRecord>>, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    buckets::bucket_by_id(&mut tx, bucket_id).await?.ok_or(ApiError::NotFound("bucket"))?;
    let all = documents::list_documents(&mut tx, bucket_id).await?;
    tx.commit().await?;
    Ok(Json(all))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<DocumentRecord>, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    let document = documents::document_record(&mut tx, id).await?.ok_or(ApiError::NotFound("document"))?;
    tx.commit().await?;
    Ok(Json(document))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<Uuid>) -> Result<StatusCode, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    if !documents::delete_document(&mut tx, id).await? {
        return Err(ApiError::NotFound("document"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Processes the document's current version again (or its failed pending one); a ready
/// document stays searchable meanwhile.
async fn reingest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    let document = documents::document_by_id(&mut tx, id).await?.ok_or(ApiError::NotFound("document"))?;
    jobs::enqueue(&mut tx, id).await.map_err(|e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("55000") => {
            ApiError::Conflict("the document has no stored bytes to process again".into())
        }
        _ => e.into(),
    })?;
    tx.commit().await?;
    let events = format!("/v1/documents/{id}/events");
    let status = if document.status == "ready" { "ready" } else { "processing" };
    Ok((StatusCode::ACCEPTED, Json(Accepted { id, bucket_id: document.bucket_id, status, outcome: "queued", events })))
}

/// A document's status as the caller sees it (None: gone or not theirs).
async fn status_of(state: &AppState, caller: Caller, id: Uuid) -> Result<Option<documents::StatusView>, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    let status = documents::document_status(&mut tx, id).await?;
    tx.commit().await?;
    Ok(status)
}

/// Consecutive failed polls after which a status stream gives up.
const MAX_POLL_FAILURES: u32 = 5;

struct Watch {
    state: AppState,
    caller: Caller,
    id: Uuid,
    next: Option<Option<documents::StatusView>>,
    last: Option<documents::StatusView>,
    done: bool,
    failures: u32,
}

fn status_event(id: Uuid, view: &documents::StatusView) -> Event {
    let data = serde_json::json!({
        "id": id, "status": view.status, "processing": view.processing, "processing_error": view.processing_error
    });
    Event::default().event("status").data(data.to_string())
}

async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let first = status_of(&state, caller, id).await?.ok_or(ApiError::NotFound("document"))?;
    let poll: Duration = state.status_poll;
    let watch = Watch { state, caller, id, next: Some(Some(first)), last: None, done: false, failures: 0 };
    // Polls the row under the caller's RLS; emits each change; ends at a final status.
    let stream = futures::stream::unfold(watch, move |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            let current = match w.next.take() {
                Some(current) => current,
                None => {
                    let mut stopping = w.state.stopping.subscribe();
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        // The server is stopping: end the stream; the client reconnects elsewhere.
                        _ = stopping.wait_for(|stop| *stop) => return None,
                    }
                    match status_of(&w.state, w.caller, w.id).await {
                        Ok(current) => {
                            w.failures = 0;
                            current
                        }
                        Err(e) => {
                            w.failures += 1;
                            tracing::warn!(error = %e, document = %w.id, "status poll failed");
                            if w.failures >= MAX_POLL_FAILURES {
                                w.done = true;
                                let event = Event::default().event("error").data(r#"{"code":"internal"}"#);
                                return Some((Ok(event), w));
                            }
                            continue;
                        }
                    }
                }
            };
            let Some(view) = current else {
                w.done = true;
                let event = Event::default().event("deleted").data(serde_json::json!({ "id": w.id }).to_string());
                return Some((Ok(event), w));
            };
            if w.last.as_ref() == Some(&view) {
                continue;
            }
            // Ends once no version is being processed: ready with it, or failed.
            w.done = !view.processing;
            let event = status_event(w.id, &view);
            w.last = Some(view);
            return Some((Ok(event), w));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_loses_its_directories() {
        assert_eq!(base_name("../../etc/passwd.txt").expect("test step"), "passwd.txt");
        assert_eq!(base_name("C:\\docs\\a.md").expect("test step"), "a.md");
        assert!(base_name("dir/").is_err());
    }

    #[test]
    fn files_in_different_folders_are_different_documents() {
        assert_eq!(document_key("docs/a/README.md").expect("key"), "upload/docs/a/README.md");
        assert_ne!(document_key("docs/a/README.md").expect("a"), document_key("docs/b/README.md").expect("b"));
        assert_eq!(document_key("/docs//./a\\README.md").expect("key"), "upload/docs/a/README.md");
        assert!(document_key("../etc/passwd").is_err());
        assert!(document_key("a/../../b.md").is_err());
        assert!(document_key(" / ").is_err());
    }

    #[test]
    fn unsupported_extensions_are_415() {
        assert!(matches!(format_of("a.exe"), Err(ApiError::UnsupportedMediaType(_))));
        assert_eq!(format_of("A.PDF").expect("test step"), Format::Pdf);
    }

    #[test]
    fn a_content_type_must_fit_the_extension() {
        assert!(content_type_fits(Format::Pdf, "application/pdf"));
        assert!(content_type_fits(Format::Markdown, "text/markdown; charset=utf-8"));
        assert!(content_type_fits(Format::Text, "application/octet-stream"));
        assert!(!content_type_fits(Format::Pdf, "image/png"));
        assert!(!content_type_fits(Format::Html, "application/pdf"));
    }
}

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
use crate::store::documents::{self, DocumentRecord};
use crate::store::{buckets, jobs};

pub fn router(limits: &Limits) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/buckets/{id}/documents",
            get(list).post(upload).layer(DefaultBodyLimit::max(limits.max_upload_bytes)),
        )
        .route("/v1/documents/{id}", get(read).delete(remove))
        .route("/v1/documents/{id}/reingest", post(reingest))
        .route("/v1/documents/{id}/events", get(events))
}

/// The answer to an accepted upload or re-ingestion.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub id: Uuid,
    pub bucket_id: Uuid,
    pub status: &'static str,
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
}

/// An upload, whole in memory, checked before any database work.
struct UploadedFile {
    file_name: String,
    format: Format,
    title: String,
    body: Bytes,
}

const MAX_FILE_NAME: usize = 255;

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

fn default_title(file_name: &str) -> String {
    crate::ingest::Source::named(file_name, None).default_title()
}

async fn read_multipart(mut multipart: Multipart) -> Result<UploadedFile, ApiError> {
    let mut file = None;
    let mut title = None;
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("file") => {
                let name = base_name(field.file_name().unwrap_or(""))?;
                let format = format_of(&name)?;
                if let Some(content_type) = field.content_type()
                    && !content_type_fits(format, content_type)
                {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "content type {content_type:?} does not match the file {name:?}"
                    )));
                }
                file = Some((name, format, field.bytes().await?));
            }
            Some("title") => title = Some(field.text().await?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unexpected form field {:?}: send `file` and optionally `title`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let (file_name, format, body) = file.ok_or_else(|| ApiError::BadRequest("the form has no `file` field".into()))?;
    let title = title.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| default_title(&file_name));
    Ok(UploadedFile { file_name, format, title, body })
}

fn from_json(body: UploadJson) -> Result<UploadedFile, ApiError> {
    // Without a file name each JSON upload is a new document (documents are keyed by name).
    let file_name = match &body.file_name {
        Some(name) => base_name(name)?,
        None => format!("{}.txt", Uuid::new_v4()),
    };
    let format = format_of(&file_name)?;
    if format == Format::Pdf {
        return Err(ApiError::UnsupportedMediaType("a PDF must be uploaded as multipart/form-data".into()));
    }
    let title = body.title.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| default_title(&file_name));
    Ok(UploadedFile { file_name, format, title, body: Bytes::from(body.content) })
}

async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(bucket_id): Path<Uuid>,
    request: Request,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Accepted>), ApiError> {
    let mime = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    // The whole body is read before the transaction starts: an interrupted upload fails
    // here with nothing written, and a slow client never holds a database connection.
    let file = match mime.as_str() {
        "multipart/form-data" => read_multipart(Multipart::from_request(request, &state).await?).await?,
        "application/json" => from_json(JsonBody::<UploadJson>::from_request(request, &state).await?.0)?,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "upload as multipart/form-data (file, title) or application/json (title, content, file_name)".into(),
            ));
        }
    };

    let mut tx = caller.begin(&state.pool).await?;
    let bucket = buckets::bucket_by_id(&mut tx, bucket_id).await?.ok_or(ApiError::NotFound("bucket"))?;
    if bucket.embedding_model != state.embedder.model() {
        return Err(ApiError::Conflict(format!(
            "the bucket is embedded with {}, but this server runs {}",
            bucket.embedding_model,
            state.embedder.model()
        )));
    }
    // The service role has no user of its own: it uploads on the bucket owner's behalf.
    let uploaded_by = if caller.is_service() { bucket.created_by } else { caller.user };
    let upload = jobs::Upload {
        bucket_id,
        title: &file.title,
        file_name: &file.file_name,
        file_type: Some(file.format.as_str()),
        body: &file.body,
        uploaded_by,
    };
    let id = jobs::submit_upload(&mut tx, &upload).await?;
    tx.commit().await?;
    metrics::counter!(super::metrics::UPLOADS, "format" => file.format.as_str()).increment(1);
    tracing::info!(document = %id, bucket = %bucket_id, bytes = file.body.len(), "upload accepted");
    let events = format!("/v1/documents/{id}/events");
    let location = [(header::LOCATION, format!("/v1/documents/{id}"))];
    Ok((StatusCode::ACCEPTED, location, Json(Accepted { id, bucket_id, status: "processing", events })))
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

async fn reingest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    let document = documents::document_by_id(&mut tx, id).await?.ok_or(ApiError::NotFound("document"))?;
    if !documents::has_source(&mut tx, id).await? {
        return Err(ApiError::Conflict(
            "the document has no stored upload to process again (it was ingested from files)".into(),
        ));
    }
    if !documents::mark_processing(&mut tx, id).await? {
        return Err(ApiError::NotFound("document"));
    }
    jobs::enqueue(&mut tx, id).await?;
    tx.commit().await?;
    let events = format!("/v1/documents/{id}/events");
    Ok((StatusCode::ACCEPTED, Json(Accepted { id, bucket_id: document.bucket_id, status: "processing", events })))
}

/// A document's status as the caller sees it (None: gone or not theirs).
async fn status_of(state: &AppState, caller: Caller, id: Uuid) -> Result<Option<(String, Option<String>)>, ApiError> {
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
    next: Option<Option<(String, Option<String>)>>,
    last: Option<String>,
    done: bool,
    failures: u32,
}

fn status_event(id: Uuid, status: &str, error: Option<&str>) -> Event {
    let data = serde_json::json!({ "id": id, "status": status, "processing_error": error });
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
            let Some((status, error)) = current else {
                w.done = true;
                let event = Event::default().event("deleted").data(serde_json::json!({ "id": w.id }).to_string());
                return Some((Ok(event), w));
            };
            if w.last.as_deref() == Some(status.as_str()) {
                continue;
            }
            w.done = status != "processing";
            let event = status_event(w.id, &status, error.as_deref());
            w.last = Some(status);
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

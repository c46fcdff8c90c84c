//! Documents of a bucket: upload (multipart or JSON, answered `202` once stored durably and
//! queued), list, read, delete, re-ingest, and a server-sent events stream of a document's
//! status so a client sees `processing` -> `ready`/`failed` without polling.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::encoding::EncodingBuilder;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::{HeaderBuilder, Object, RefOr};
use uuid::Uuid;

use super::auth::Caller;
use super::error::{ApiError, JsonBody, Path};
use super::openapi::{self, ErrorBody, NO_NUL};
use super::{AppState, Limits};
use crate::extract::Format;
use crate::ingest::upload::{self, MAX_FILE_NAME, Upload, base_name, document_key, format_of};
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
        .route("/v1/documents/{id}/events", get(super::events::document_events))
}

/// The answer to an upload or re-ingestion.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    pub bucket_id: Uuid,
    #[schema(schema_with = accepted_status_schema)]
    pub status: &'static str,
    /// `queued` (202: a new version is processed; a ready document stays searchable with its
    /// current one meanwhile), `unchanged` (200: the bytes are the ready version) or
    /// `duplicate` (200: another ready document of the bucket has these bytes; `id` is it).
    #[schema(schema_with = outcome_schema)]
    pub outcome: &'static str,
    /// Where to follow the document's status.
    pub events: String,
}

fn accepted_status_schema() -> Object {
    let schema = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["processing", "ready"]));
    schema.description(Some("The document's status: `ready` while a ready version stays searchable")).build()
}

fn outcome_schema() -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["queued", "unchanged", "duplicate"])).build()
}

/// A text document sent as JSON (PDFs go as multipart/form-data).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadJson {
    #[serde(default)]
    #[schema(schema_with = title_schema)]
    pub title: Option<String>,
    /// The document's text.
    pub content: String,
    #[serde(default)]
    #[schema(schema_with = file_name_schema)]
    pub file_name: Option<String>,
    /// The document's key in its bucket; defaults to `file_name`.
    #[serde(default)]
    #[schema(schema_with = json_path_schema)]
    pub path: Option<String>,
}

/// The multipart form an upload reads (`read_multipart`): the file, and optionally a title
/// and a path. The file's name, as sent, names its type and (without `path`) its key.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the form; `read_multipart` reads its parts.
pub struct UploadForm {
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    file: Vec<u8>,
    #[schema(schema_with = title_schema)]
    title: Option<String>,
    #[schema(schema_with = form_path_schema)]
    path: Option<String>,
}

/// A character of a path's part: no control character (names refuse them), no separator.
const PART_CHAR: &str = r"[^\u0000-\u001f\u007f-\u009f/\\]";
/// The first character of a file name: besides, no white space (trimmed away) and no dot
/// (`.txt` has no extension; `..` is no name).
const FIRST_CHAR: &str = r"[^\s\u0000-\u001f\u007f-\u009f./\\]";
/// A folder of a path: dots only between other characters, so never `.` or `..`.
const FOLDER: &str = r"[^\u0000-\u001f\u007f-\u009f./\\]+(\.[^\u0000-\u001f\u007f-\u009f./\\]+)*/";

/// A file name with an extension JSON uploads take.
fn text_file() -> String {
    format!(r" *{FIRST_CHAR}{PART_CHAR}*\.(txt|text|md|markdown|html|htm)")
}

fn title_schema() -> Object {
    let mut schema = openapi::text(NO_NUL, None, true);
    schema.description = Some("The document's title (default: the one extraction finds, else the file name).".into());
    schema
}

fn file_name_schema() -> Object {
    let pattern = format!("^{}$", text_file());
    let mut schema = openapi::text(&pattern, Some(MAX_FILE_NAME), true);
    schema.description = Some("`.txt`, `.md` or `.html` (its type); default: a new `<uuid>.txt`.".into());
    schema
}

fn json_path_schema() -> Object {
    let pattern = format!("^({FOLDER})*{}$", text_file());
    let mut schema = openapi::text(&pattern, Some(MAX_FILE_NAME), true);
    schema.description = Some(
        "The document's key in its bucket (`/`-separated, no `..`); uploading to a key again adds a version. \
         Without `file_name`, its last part names the type."
            .into(),
    );
    schema
}

fn form_path_schema() -> Object {
    let pattern = format!(r"^({FOLDER})* *{FIRST_CHAR}{PART_CHAR}*$");
    let mut schema = openapi::text(&pattern, Some(MAX_FILE_NAME), true);
    schema.description =
        Some("The document's key in its bucket (`/`-separated, no `..`; default: the file's name as sent).".into());
    schema
}

/// What the form's types cannot say: it takes no other fields, and a file part carries its
/// name (`.txt`, `.md`, `.html` or `.pdf`) in its `Content-Disposition`.
pub(super) fn describe_upload_form(doc: &mut utoipa::openapi::OpenApi) {
    if let Some(RefOr::T(Schema::Object(form))) =
        doc.components.as_mut().and_then(|c| c.schemas.get_mut(UploadForm::name().as_ref()))
    {
        form.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    }
    let disposition = HeaderBuilder::new()
        .schema(Some(openapi::text(NO_NUL, None, false)))
        .description(Some("The file's name, whose extension names its type"))
        .example(Some(serde_json::json!(r#"form-data; name="file"; filename="document.txt""#)));
    let file = EncodingBuilder::new().header("Content-Disposition", disposition).build();
    for path in ["/v1/buckets/{id}/documents", "/v1/documents/{id}/content"] {
        let operation = doc.paths.paths.get_mut(path).and_then(|item| item.post.as_mut().or(item.put.as_mut()));
        let Some(RefOr::T(body)) = operation.and_then(|o| o.request_body.as_mut()) else { continue };
        if let Some(RefOr::T(form)) = body.content.get_mut("multipart/form-data") {
            form.encoding.insert("file".into(), file.clone());
        }
    }
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

/// The base name of a client-given file name, without any directory part.
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

/// Upload a document into a bucket: stored durably and queued (202), or already there (200).
#[utoipa::path(post, path = "/v1/buckets/{id}/documents", operation_id = "upload_document", tag = "documents",
    params(("id" = Uuid, Path, description = "The bucket's id")),
    request_body(content((UploadJson = "application/json"), (UploadForm = "multipart/form-data"))),
    responses(
        (status = 200, description = "`unchanged` or `duplicate`: nothing new to process", body = Accepted,
            headers(("Location" = String, description = "The document"))),
        (status = 202, description = "`queued`: stored, and a new version is being processed", body = Accepted,
            headers(("Location" = String, description = "The document"))),
        (status = 400, description = "The id is not a UUID, or the body or form is malformed", body = ErrorBody),
        (status = 404, description = "No such bucket visible to the caller", body = ErrorBody),
        (status = 409, description = "The bucket is embedded with another model than the server's", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit, or past the storage quota", body = ErrorBody),
        (status = 415, description = "Not a supported file type, or a content type that does not fit it", body = ErrorBody),
        (status = 422, description = "A field breaks its rules", body = ErrorBody),
        (status = 429, description = "The document or queue quota is used up", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
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

/// A new version of a document named by its id (of the same file type).
#[utoipa::path(put, path = "/v1/documents/{id}/content", operation_id = "replace_document", tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    request_body(content((UploadJson = "application/json"), (UploadForm = "multipart/form-data"))),
    responses(
        (status = 200, description = "`unchanged` or `duplicate`: nothing new to process", body = Accepted,
            headers(("Location" = String, description = "The document"))),
        (status = 202, description = "`queued`: stored, and the new version is being processed", body = Accepted,
            headers(("Location" = String, description = "The document"))),
        (status = 400, description = "The id is not a UUID, or the body or form is malformed", body = ErrorBody),
        (status = 404, description = "No such document visible to the caller", body = ErrorBody),
        (status = 409, description = "The document has no key, or its bucket is embedded with another model", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit, or past the storage quota", body = ErrorBody),
        (status = 415, description = "Not the document's file type, or a content type that does not fit it", body = ErrorBody),
        (status = 422, description = "A field breaks its rules", body = ErrorBody),
        (status = 429, description = "The document or queue quota is used up", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
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
    let upload = Upload {
        key: &file.key,
        file_name: &file.file_name,
        format: file.format,
        title: file.title.as_deref(),
        body: &file.body,
    };
    let submitted = upload::submit(&mut tx, &bucket, state.embedder.model(), &state.limits.quotas, &upload).await?;
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

/// List a bucket's documents with their status, newest first.
#[utoipa::path(get, path = "/v1/buckets/{id}/documents", operation_id = "list_documents", tag = "documents",
    params(("id" = Uuid, Path, description = "The bucket's id")),
    responses(
        (status = 200, description = "The documents", body = Vec<DocumentRecord>),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 404, description = "No such bucket visible to the caller", body = ErrorBody),
    ))]
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

/// Read a document's status, error and chunk count.
#[utoipa::path(get, path = "/v1/documents/{id}", operation_id = "read_document", tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    responses(
        (status = 200, description = "The document", body = DocumentRecord),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 404, description = "No such document visible to the caller", body = ErrorBody),
    ))]
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

/// Delete a document with its chunks.
#[utoipa::path(delete, path = "/v1/documents/{id}", operation_id = "delete_document", tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 404, description = "No such document visible to the caller", body = ErrorBody),
    ))]
async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<Uuid>) -> Result<StatusCode, ApiError> {
    let mut tx = caller.begin(&state.pool).await?;
    if !documents::delete_document(&mut tx, id).await? {
        return Err(ApiError::NotFound("document"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Process a document again: its current version, or its failed pending one; a ready
/// document stays searchable meanwhile.
#[utoipa::path(post, path = "/v1/documents/{id}/reingest", operation_id = "reingest_document", tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 404, description = "No such document visible to the caller", body = ErrorBody),
        (status = 409, description = "The document has no stored bytes to process again", body = ErrorBody),
    ))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_extensions_are_415() {
        assert!(matches!(format_of("a.exe").map_err(ApiError::from), Err(ApiError::UnsupportedMediaType(_))));
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

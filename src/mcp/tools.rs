//! The MCP tools: arguments parsed into types (their JSON schemas are the tools' input
//! schemas), then one call into `search`, `context` or `store`, as the caller.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Server, ToolError, document_uri};
use crate::context::{self, ContextRequest, Encoding};
use crate::extract::Format;
use crate::http::auth::Caller;
use crate::ingest::upload::{self, Upload};
use crate::search::{self, Mode, SearchRequest};
use crate::store::{Bucket, buckets, chunks, documents};

/// Results `search` returns at most.
const MAX_SEARCH_LIMIT: u32 = 100;
/// Chunks one `get_document` call returns at most.
const MAX_CHUNKS_PER_READ: u32 = 50;
/// Chunks `get_document` returns when asked for no range.
const DEFAULT_CHUNKS_PER_READ: u32 = 20;

fn default_limit() -> u32 {
    5
}

fn default_threshold() -> f64 {
    0.2
}

fn default_budget() -> usize {
    2_000
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// The question or keywords to search for.
    pub query: String,
    /// Only this bucket: its id or its name (see `list_buckets`).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Only buckets of this type (for example `brand`, `product`, `campaign`).
    #[serde(default)]
    pub bucket_type: Option<String>,
    /// Only buckets of this campaign (its UUID).
    #[serde(default)]
    pub campaign_id: Option<Uuid>,
    /// `vector` (meaning, the default), `lexical` (BM25 keywords: names, codes, exact terms)
    /// or `hybrid` (both fused).
    #[serde(default)]
    pub mode: Mode,
    /// Number of results, 1 to 100 (default 5).
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Minimum cosine similarity of a result, -1 to 1 (default 0.2; not applied in lexical mode).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildContextArgs {
    /// The question the context should answer.
    pub question: String,
    /// Most tokens the context may take (default 2000), counted with `encoding`.
    #[serde(default = "default_budget")]
    pub budget: usize,
    /// Tokenizer of the chat model the context is for: `cl100k_base` (GPT-4, the default) or
    /// `o200k_base` (GPT-4o and later).
    #[serde(default)]
    pub encoding: Encoding,
    /// Only this bucket: its id or its name (see `list_buckets`).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Only buckets of this type.
    #[serde(default)]
    pub bucket_type: Option<String>,
    /// Only buckets of this campaign (its UUID).
    #[serde(default)]
    pub campaign_id: Option<Uuid>,
    /// How passages are found: `vector` (default), `lexical` or `hybrid`.
    #[serde(default)]
    pub mode: Mode,
    /// Minimum cosine similarity of a passage, -1 to 1 (default 0.2).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetDocumentArgs {
    /// The document's id (from `search`, `build_context` or a `kb://documents/{id}` URI).
    pub document_id: Uuid,
    /// First chunk to return (chunks are numbered from 0; default 0).
    #[serde(default)]
    pub first_chunk: u32,
    /// Last chunk to return (inclusive; default: 20 chunks from `first_chunk`; at most 50 per call).
    #[serde(default)]
    pub last_chunk: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadDocumentArgs {
    /// The bucket to add the document to: its id or its name (see `list_buckets`).
    pub bucket: String,
    /// The document's text: plain text, Markdown or HTML, as `path` names it.
    pub content: String,
    /// The document's key in its bucket, like `notes/meeting-2024-05.md`; its extension
    /// (`.txt`, `.md`, `.html`) names the format. Uploading to a path again replaces that
    /// document's content. Default: a new `<uuid>.txt`.
    #[serde(default)]
    pub path: Option<String>,
    /// The document's title (default: the first heading, else the file name).
    #[serde(default)]
    pub title: Option<String>,
}

/// A bucket with how many of its documents are in each state.
#[derive(Debug, Serialize)]
struct BucketSummary {
    #[serde(flatten)]
    bucket: buckets::BucketRecord,
    documents_ready: i64,
    documents_processing: i64,
    documents_failed: i64,
}

#[derive(Debug, Serialize)]
struct ChunkText {
    chunk_index: i32,
    content: String,
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct DocumentChunks {
    uri: String,
    document: documents::DocumentRecord,
    chunks: Vec<ChunkText>,
    /// The first chunk after these, when the document has more.
    next_chunk: Option<i32>,
}

#[derive(Debug, Serialize)]
struct Uploaded {
    document_id: Uuid,
    bucket_id: Uuid,
    uri: String,
    /// `processing` (a new version is being processed) or `ready`.
    status: &'static str,
    /// `queued`, `unchanged` (the same text is the ready version) or `duplicate` (another
    /// ready document of the bucket has this text; `document_id` is that one).
    outcome: &'static str,
}

/// The result of a tool: its value as structured content (and as JSON text), or the error
/// the agent reads.
fn answer<T: Serialize>(outcome: Result<T, ToolError>) -> Result<CallToolResult, McpError> {
    let error = match outcome.map(|value| serde_json::to_value(&value)) {
        Ok(Ok(value)) => return Ok(CallToolResult::structured(value)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "MCP tool: result not serialisable");
            "internal error; the server log has the details".to_string()
        }
        Err(e) => {
            e.log();
            e.to_string()
        }
    };
    Ok(CallToolResult::error(vec![ContentBlock::text(error)]))
}

/// The bucket `given` names (an id, else a name of the caller's), if the caller may see it.
async fn find_bucket(conn: &mut PgConnection, caller: Caller, given: &str) -> Result<Bucket, ToolError> {
    let given = given.trim();
    let bucket = match Uuid::parse_str(given) {
        Ok(id) => buckets::bucket_by_id(conn, id).await?,
        Err(_) => buckets::bucket_by_name(conn, caller.user, given).await?,
    };
    bucket.ok_or(ToolError::NotFound("bucket"))
}

fn check_threshold(threshold: f64) -> Result<(), ToolError> {
    if (-1.0..=1.0).contains(&threshold) {
        Ok(())
    } else {
        Err(ToolError::Invalid(format!("threshold must be between -1 and 1 (got {threshold})")))
    }
}

/// Where an upload goes: its key in the bucket and its file name and format, by the rules
/// HTTP uploads follow (`ingest::upload`), so both name the same document.
fn upload_target(path: Option<&str>) -> Result<(String, String, Format), ToolError> {
    let path = match path.map(str::trim).filter(|p| !p.is_empty()) {
        Some(path) => path.to_string(),
        None => format!("{}.txt", Uuid::new_v4()),
    };
    let key = upload::document_key(&path)?;
    let file_name = upload::base_name(&path)?;
    match upload::format_of(&file_name)? {
        Format::Pdf => Err(ToolError::Invalid("path: upload PDFs through the HTTP API (multipart/form-data)".into())),
        format => Ok((key, file_name, format)),
    }
}

#[tool_router(vis = "pub(super)")]
impl Server {
    #[tool(
        description = "Search the knowledge base: the chunks of documents that best match a query, best first, \
            with their document (id, title), bucket, chunk index, score and provenance (page or heading path). \
            For an answer with citations within a token budget, prefer `build_context`.",
        annotations(title = "Search documents", read_only_hint = true, open_world_hint = false)
    )]
    async fn search(
        &self,
        Parameters(args): Parameters<SearchArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        answer(self.run_search(args, &context).await)
    }

    #[tool(
        description = "Build the context to answer a question: the best passages for it that fit a token budget, \
            adjacent chunks merged, each with a citation number, document id and title, page or heading path. \
            `text` is one block to quote from, each passage under its [n]; cite those numbers and titles.",
        annotations(title = "Build cited context", read_only_hint = true, open_world_hint = false)
    )]
    async fn build_context(
        &self,
        Parameters(args): Parameters<BuildContextArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        answer(self.run_build_context(args, &context).await)
    }

    #[tool(
        description = "List the buckets (collections of documents) you can search: id, name, type, campaign, \
            description, and how many documents are ready, processing or failed. Bucket ids and names are \
            what the `bucket` argument of the other tools takes.",
        annotations(title = "List buckets", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_buckets(&self, context: RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
        answer(self.run_list_buckets(&context).await)
    }

    #[tool(
        description = "Read a document: its metadata (title, bucket, status, path, type, size, chunk count) and \
            its text as chunks in order, from `first_chunk` to `last_chunk` (at most 50 per call; \
            `next_chunk` says where to continue).",
        annotations(title = "Read a document", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_document(
        &self,
        Parameters(args): Parameters<GetDocumentArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        answer(self.run_get_document(args, &context).await)
    }

    #[tool(
        description = "Add a text document (plain text, Markdown or HTML) to a bucket, or replace the one at the \
            same `path`. Returns the document id and its status: `processing` until it is chunked and \
            embedded (seconds; `get_document` shows the status), then searchable.",
        annotations(
            title = "Upload a document",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn upload_document(
        &self,
        Parameters(args): Parameters<UploadDocumentArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        answer(self.run_upload_document(args, &context).await)
    }
}

impl Server {
    /// The id of the bucket a filter names, if any.
    async fn bucket_filter(&self, caller: Caller, bucket: Option<&str>) -> Result<Option<Uuid>, ToolError> {
        let Some(given) = bucket.filter(|b| !b.trim().is_empty()) else { return Ok(None) };
        let mut tx = self.begin(caller).await?;
        let bucket = find_bucket(&mut tx, caller, given).await?;
        tx.commit().await?;
        Ok(Some(bucket.id))
    }

    async fn run_search(
        &self,
        args: SearchArgs,
        context: &RequestContext<RoleServer>,
    ) -> Result<search::SearchResponse, ToolError> {
        let caller = self.caller(context)?;
        if args.limit == 0 || args.limit > MAX_SEARCH_LIMIT {
            return Err(ToolError::Invalid(format!(
                "limit must be between 1 and {MAX_SEARCH_LIMIT} (got {})",
                args.limit
            )));
        }
        check_threshold(args.threshold)?;
        let request = SearchRequest {
            bucket_id: self.bucket_filter(caller, args.bucket.as_deref()).await?,
            query: args.query,
            bucket_type: args.bucket_type,
            campaign_id: args.campaign_id,
            limit: args.limit,
            threshold: args.threshold,
            mode: args.mode,
        };
        let embedder = self.inner.embedder.as_ref();
        let search = |pool| {
            let request = &request;
            async move { search::search(&pool, embedder, caller.user, caller.role, request).await }
        };
        Ok(self.inner.reads.run(search).await?)
    }

    async fn run_build_context(
        &self,
        args: BuildContextArgs,
        context: &RequestContext<RoleServer>,
    ) -> Result<context::Context, ToolError> {
        let caller = self.caller(context)?;
        check_threshold(args.threshold)?;
        let request = ContextRequest {
            bucket_id: self.bucket_filter(caller, args.bucket.as_deref()).await?,
            question: args.question,
            budget: args.budget,
            encoding: args.encoding,
            bucket_type: args.bucket_type,
            campaign_id: args.campaign_id,
            mode: args.mode,
            threshold: args.threshold,
        };
        let embedder = self.inner.embedder.as_ref();
        let build = |pool| {
            let request = &request;
            async move { context::build(&pool, embedder, caller.user, caller.role, request).await }
        };
        Ok(self.inner.reads.run(build).await?)
    }

    async fn run_list_buckets(&self, context: &RequestContext<RoleServer>) -> Result<serde_json::Value, ToolError> {
        let caller = self.caller(context)?;
        let mut tx = self.begin(caller).await?;
        let mut summaries = Vec::new();
        for bucket in buckets::list_buckets(&mut tx).await? {
            let (processing, ready, failed) = documents::status_counts(&mut tx, bucket.id).await?;
            summaries.push(BucketSummary {
                bucket,
                documents_ready: ready,
                documents_processing: processing,
                documents_failed: failed,
            });
        }
        tx.commit().await?;
        Ok(serde_json::json!({ "buckets": summaries }))
    }

    async fn run_get_document(
        &self,
        args: GetDocumentArgs,
        context: &RequestContext<RoleServer>,
    ) -> Result<DocumentChunks, ToolError> {
        let caller = self.caller(context)?;
        let first = args.first_chunk;
        let last = args.last_chunk.unwrap_or(first.saturating_add(DEFAULT_CHUNKS_PER_READ - 1));
        if last < first {
            return Err(ToolError::Invalid(format!("last_chunk ({last}) is before first_chunk ({first})")));
        }
        let last = last.min(first.saturating_add(MAX_CHUNKS_PER_READ - 1));
        let as_index = |n: u32| i32::try_from(n).map_err(|_| ToolError::Invalid(format!("chunk {n} is out of range")));
        let (first, last) = (as_index(first)?, as_index(last)?);
        let mut tx = self.begin(caller).await?;
        let document =
            documents::document_record(&mut tx, args.document_id).await?.ok_or(ToolError::NotFound("document"))?;
        let stored = chunks::document_chunks(&mut tx, args.document_id, first, last).await?;
        tx.commit().await?;
        let next_chunk = (i64::from(last) + 1 < document.chunk_count).then_some(last + 1);
        let chunks = stored
            .into_iter()
            .map(|c| ChunkText { chunk_index: c.chunk_index, content: c.content, metadata: c.metadata })
            .collect();
        Ok(DocumentChunks { uri: document_uri(document.id), document, chunks, next_chunk })
    }

    async fn run_upload_document(
        &self,
        args: UploadDocumentArgs,
        context: &RequestContext<RoleServer>,
    ) -> Result<Uploaded, ToolError> {
        let caller = self.caller(context)?;
        let inner = &self.inner;
        if args.content.trim().is_empty() {
            return Err(ToolError::Invalid("content is empty".into()));
        }
        if args.content.len() > inner.max_upload_bytes {
            return Err(ToolError::Invalid(format!(
                "content is {} bytes; this server takes at most {}",
                args.content.len(),
                inner.max_upload_bytes
            )));
        }
        let (key, file_name, format) = upload_target(args.path.as_deref())?;
        let title = args.title.as_deref().map(str::trim).filter(|t| !t.is_empty());

        // As an HTTP upload: quotas checked and the version submitted in the caller's
        // transaction, committed before answering.
        let mut tx = self.begin(caller).await?;
        let bucket = find_bucket(&mut tx, caller, &args.bucket).await?;
        let upload = Upload { key: &key, file_name: &file_name, format, title, body: args.content.as_bytes() };
        let submitted = upload::submit(&mut tx, &bucket, inner.embedder.model(), &inner.quotas, &upload).await?;
        tx.commit().await?;
        metrics::counter!(crate::http::metrics::UPLOADS, "format" => format.as_str()).increment(1);
        let document_id = submitted.document_id();
        tracing::info!(document = %document_id, bucket = %bucket.id, bytes = args.content.len(), ?submitted, "MCP upload accepted");
        let (status, outcome) = match submitted {
            documents::Submitted::Queued { .. } => ("processing", "queued"),
            documents::Submitted::Unchanged { .. } => ("ready", "unchanged"),
            documents::Submitted::Duplicate { .. } => ("ready", "duplicate"),
        };
        Ok(Uploaded { document_id, bucket_id: bucket.id, uri: document_uri(document_id), status, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_path_becomes_the_key_an_http_upload_of_that_path_has() {
        let (key, file_name, format) = upload_target(Some("/notes//./q2\\plan.md")).expect("a valid path");
        assert_eq!(key, "upload/notes/q2/plan.md");
        assert_eq!(file_name, "plan.md");
        assert_eq!(format, Format::Markdown);
    }

    #[test]
    fn without_a_path_an_upload_is_a_new_text_document() {
        let (key, file_name, format) = upload_target(None).expect("default path");
        assert_eq!(format, Format::Text);
        assert_eq!(key, format!("upload/{file_name}"));
        assert_ne!(upload_target(None).expect("default path").0, key);
    }

    #[test]
    fn upload_paths_that_escape_or_name_no_text_format_are_refused() {
        for bad in ["../etc/passwd.txt", "a/../../b.md", " / ", "report.pdf", "image.png", "notes/"] {
            assert!(matches!(upload_target(Some(bad)), Err(ToolError::Invalid(_))), "{bad:?} was accepted");
        }
    }

    #[test]
    fn arguments_outside_the_schema_are_refused() {
        let unknown = serde_json::json!({ "query": "x", "limt": 3 });
        assert!(serde_json::from_value::<SearchArgs>(unknown).is_err());
        let defaults: SearchArgs = serde_json::from_value(serde_json::json!({ "query": "x" })).expect("defaults");
        assert_eq!((defaults.limit, defaults.mode), (5, Mode::Vector));
        let encoding: BuildContextArgs =
            serde_json::from_value(serde_json::json!({ "question": "q", "encoding": "o200k_base" })).expect("args");
        assert_eq!(encoding.encoding, Encoding::O200k);
    }
}

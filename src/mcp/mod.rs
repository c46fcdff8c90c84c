//! kb as a Model Context Protocol server, for AI agents: the tools `search`,
//! `build_context`, `list_buckets`, `get_document` and `upload_document`, and documents as
//! resources (`kb://documents/{id}`). One server type, two transports: stdio (`kb mcp`,
//! acting as the local owner, as the CLI does) and Streamable HTTP at `/mcp` on `kb serve`
//! (`http.rs`), where every request acts as the caller its JWT proves. Every tool's database
//! work runs in a transaction acting as that caller, so row level security decides what an
//! agent sees. Tools are thin, like HTTP handlers: typed arguments, then `search::`,
//! `context::` or `store::`.

pub mod http;
mod tools;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt, tool_handler};
use sqlx::PgPool;
use uuid::Uuid;

use crate::context::join_overlapping;
use crate::embed::{EmbedError, Embedder};
use crate::http::auth::Caller;
use crate::ingest::Quotas;
use crate::ingest::upload::UploadError;
use crate::store::replicas::Reads;
use crate::store::{self, buckets, chunks, documents};

/// The scheme and prefix of a document's resource URI.
const DOCUMENT_URI: &str = "kb://documents/";
/// Documents one page of `resources/list` holds.
const RESOURCES_PER_PAGE: usize = 100;
/// Chunks a resource read returns at most; `get_document` pages through longer documents.
const MAX_RESOURCE_CHUNKS: i32 = 1_000;

const INSTRUCTIONS: &str = "kb is a knowledge base of documents (text, Markdown, HTML, PDF) in buckets. \
To answer a question from it, call `build_context` with the question and a token budget: it returns \
the best passages with numbered citations ([1], [2], ...) and one text block to quote from; cite the \
numbers and the document titles. Use `search` for raw ranked chunks, `list_buckets` to find bucket \
names and ids for filters, `get_document` to read a document's chunks in order, and \
`upload_document` to add a text document to a bucket. Documents are also resources: kb://documents/{id}.";

/// Who a server's calls act as.
#[derive(Debug, Clone, Copy)]
enum Identity {
    /// One caller for the whole connection (stdio: the local owner).
    Fixed(Caller),
    /// The caller each HTTP request's token proves (`http.rs` puts it in the request).
    PerRequest,
}

/// The MCP server: kb's tools and resources over a database and an embedder. Cheap to clone
/// (the HTTP transport makes one per request).
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    /// The primary: writes, and reads that must see them.
    pool: PgPool,
    /// Where searches and contexts run.
    reads: Arc<Reads>,
    embedder: Arc<dyn Embedder>,
    quotas: Quotas,
    max_upload_bytes: usize,
    identity: Identity,
    tools: ToolRouter<Server>,
}

/// What the server needs besides who it acts as.
#[derive(Clone)]
pub struct Settings {
    /// Queries and contexts are embedded with it, and uploads go only to its buckets.
    pub embedder: Arc<dyn Embedder>,
    /// What one user's uploads may hold.
    pub quotas: Quotas,
    /// Largest document `upload_document` takes, in bytes.
    pub max_upload_bytes: usize,
}

impl Server {
    /// A server whose every call acts as `caller` (stdio).
    pub fn acting_as(pool: PgPool, settings: Settings, caller: Caller) -> Server {
        Server::new(Reads::primary_only(pool), settings, Identity::Fixed(caller))
    }

    /// A server whose calls act as the caller of each HTTP request.
    pub fn per_request(reads: Arc<Reads>, settings: Settings) -> Server {
        Server::new(reads, settings, Identity::PerRequest)
    }

    fn new(reads: Arc<Reads>, settings: Settings, identity: Identity) -> Server {
        let Settings { embedder, quotas, max_upload_bytes } = settings;
        let tools = Server::tool_router();
        let pool = reads.primary().clone();
        Server { inner: Arc::new(Inner { pool, reads, embedder, quotas, max_upload_bytes, identity, tools }) }
    }

    /// The transaction of a call, acting as its caller under row level security.
    async fn begin(&self, caller: Caller) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        store::begin_as(&self.inner.pool, caller.user, caller.role).await
    }

    /// Who this request acts as.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, ToolError> {
        match self.inner.identity {
            Identity::Fixed(caller) => Ok(caller),
            Identity::PerRequest => context
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Caller>())
                .copied()
                .ok_or(ToolError::Unauthenticated),
        }
    }
}

/// Serves `server` on this process's stdin and stdout until the client closes stdin or
/// `shutdown` resolves. Logs go to stderr; nothing else may write to stdout.
pub async fn serve_stdio(server: Server, shutdown: impl Future<Output = ()>) -> Result<(), McpServeError> {
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| McpServeError(e.to_string()))?;
    let cancel = running.cancellation_token();
    tokio::select! {
        ended = running.waiting() => {
            ended.map_err(|e| McpServeError(e.to_string()))?;
        }
        () = shutdown => cancel.cancel(),
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("the MCP session failed: {0}")]
pub struct McpServeError(String);

/// Why a tool call failed, as the agent reads it (a tool result with `isError`). Database
/// and internal detail go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments break a rule the schema cannot express; the message says which.
    #[error("{0}")]
    Invalid(String),
    #[error("no {0} with this id or name is visible to you")]
    NotFound(&'static str),
    #[error("{0}")]
    Quota(String),
    #[error(
        "the bucket is embedded with {bucket}, but this server runs {server}: upload to a bucket of this server's model"
    )]
    ModelMismatch { bucket: String, server: String },
    #[error("this request carries no verified caller")]
    Unauthenticated,
    #[error("embedding the query failed; retry shortly")]
    Embed(#[source] EmbedError),
    #[error("internal error; the server log has the details")]
    Database(#[from] sqlx::Error),
}

impl From<UploadError> for ToolError {
    fn from(error: UploadError) -> ToolError {
        match error {
            UploadError::Invalid(_) | UploadError::Unsupported(_) => ToolError::Invalid(format!("path: {error}")),
            UploadError::ModelMismatch { bucket, server } => ToolError::ModelMismatch { bucket, server },
            UploadError::Quota(e) => ToolError::Quota(e.to_string()),
            UploadError::Database(e) => ToolError::Database(e),
        }
    }
}

impl From<crate::search::SearchError> for ToolError {
    fn from(error: crate::search::SearchError) -> ToolError {
        use crate::search::SearchError;
        match error {
            SearchError::EmptyQuery | SearchError::Limit(_) => ToolError::Invalid(error.to_string()),
            SearchError::Embed(e) => ToolError::Embed(e),
            SearchError::Database(e) => ToolError::Database(e),
        }
    }
}

impl From<crate::context::ContextError> for ToolError {
    fn from(error: crate::context::ContextError) -> ToolError {
        use crate::context::ContextError;
        match error {
            ContextError::Budget(_) => ToolError::Invalid(error.to_string()),
            ContextError::Search(e) => e.into(),
            ContextError::Database(e) => ToolError::Database(e),
        }
    }
}

impl ToolError {
    fn log(&self) {
        match self {
            ToolError::Embed(e) => tracing::warn!(error = %e, "MCP tool: embedding failed"),
            ToolError::Database(e) => tracing::error!(error = %e, "MCP tool: database error"),
            _ => {}
        }
    }
}

/// The id in a document resource URI.
fn document_id_of(uri: &str) -> Option<Uuid> {
    uri.strip_prefix(DOCUMENT_URI).and_then(|id| Uuid::parse_str(id).ok())
}

fn document_uri(id: Uuid) -> String {
    format!("{DOCUMENT_URI}{id}")
}

/// A resource error the client can read: protocol errors, since resources have no result
/// that carries one.
fn resource_error(error: ToolError) -> McpError {
    error.log();
    match error {
        ToolError::NotFound(_) => McpError::resource_not_found(error.to_string(), None),
        ToolError::Invalid(_) => McpError::invalid_params(error.to_string(), None),
        _ => McpError::internal_error(error.to_string(), None),
    }
}

impl Server {
    async fn list_documents(
        &self,
        caller: Caller,
        offset: usize,
    ) -> Result<(Vec<Resource>, Option<String>), ToolError> {
        let mut tx = self.begin(caller).await?;
        let mut resources = Vec::new();
        for bucket in buckets::list_buckets(&mut tx).await? {
            for document in documents::list_documents(&mut tx, bucket.id).await? {
                let mut description = format!("bucket {}; {}", bucket.name, document.status);
                if let Some(path) = &document.path {
                    description.push_str(&format!("; {path}"));
                }
                resources.push(
                    Resource::new(document_uri(document.id), document.title.clone())
                        .with_title(document.title)
                        .with_description(description)
                        .with_mime_type("text/plain"),
                );
            }
        }
        tx.commit().await?;
        let next = (resources.len() > offset + RESOURCES_PER_PAGE).then(|| (offset + RESOURCES_PER_PAGE).to_string());
        Ok((resources.into_iter().skip(offset).take(RESOURCES_PER_PAGE).collect(), next))
    }

    async fn read_document(&self, caller: Caller, uri: &str) -> Result<ReadResourceResult, ToolError> {
        let id = document_id_of(uri)
            .ok_or_else(|| ToolError::Invalid(format!("{uri:?} is not a document URI ({DOCUMENT_URI}<uuid>)")))?;
        let mut tx = self.begin(caller).await?;
        documents::document_record(&mut tx, id).await?.ok_or(ToolError::NotFound("document"))?;
        let chunks = chunks::document_chunks(&mut tx, id, 0, MAX_RESOURCE_CHUNKS - 1).await?;
        tx.commit().await?;
        let mut text = String::new();
        for chunk in &chunks {
            join_overlapping(&mut text, &chunk.content);
        }
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri)]))
    }
}

#[tool_handler(router = self.inner.tools)]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(Implementation::new("kb", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS.to_string())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let caller = self.caller(&context).map_err(resource_error)?;
        let offset = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => cursor.parse().map_err(|_| McpError::invalid_params("unknown cursor", None))?,
        };
        let (resources, next) = self.list_documents(caller, offset).await.map_err(resource_error)?;
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let template = ResourceTemplate::new(format!("{DOCUMENT_URI}{{id}}"), "document")
            .with_title("A kb document")
            .with_description("A document's text (its chunks in order, up to 1,000); `id` is its UUID")
            .with_mime_type("text/plain");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let caller = self.caller(&context).map_err(resource_error)?;
        Ok(self.read_document(caller, &request.uri).await.map_err(resource_error)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_uri_names_its_id() {
        let id = Uuid::new_v4();
        assert_eq!(document_id_of(&document_uri(id)), Some(id));
        assert_eq!(document_id_of("kb://documents/not-a-uuid"), None);
        assert_eq!(document_id_of(&format!("file:///{id}")), None);
    }
}

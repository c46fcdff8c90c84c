//! The MCP server at `/mcp` on `kb serve`, over Streamable HTTP. Every request must carry a
//! JWT the API would accept (`Authorization: Bearer` or `apikey`; the same keys, the same
//! checks, anon refused): without one it is refused (401) before the MCP layer sees it, and
//! with one the tools act as its caller. The transport is stateless (no MCP session is kept
//! between requests) and answers in JSON, so the identity is each request's own, any
//! server of a fleet can answer any request, and the request limits of `/v1` apply.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::{Server, Settings};
use crate::http::AppState;
use crate::http::auth::Caller;

/// Where the server is mounted.
pub const PATH: &str = "/mcp";

/// The `/mcp` route, behind the API's authentication.
pub fn router(state: &AppState) -> Router<AppState> {
    let settings = Settings {
        embedder: state.embedder.clone(),
        quotas: state.limits.quotas,
        max_upload_bytes: state.limits.max_upload_bytes,
    };
    let server = Server::per_request(state.reads.clone(), settings);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        // `upload_document` carries a whole document in its body.
        .with_max_request_body_bytes(state.limits.max_upload_bytes.saturating_add(64 * 1024))
        // The Host check defends unauthenticated local servers against DNS rebinding; here
        // every request needs a bearer token a rebinding page does not have, and kb serves
        // under whatever host name it is deployed.
        .disable_allowed_hosts();
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(NeverSessionManager::default()), config);
    Router::new()
        .route_service(PATH, service)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
}

/// Verifies the request's token as the API does and hands its caller to the tools.
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refused) => refused.into_response(),
    }
}

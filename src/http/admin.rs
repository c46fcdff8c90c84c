//! Operator endpoints for a `service_role` token only: `GET /v1/admin/stats`, the spec's
//! monitoring queries (`store::stats`), as `kb db stats --json` prints them. They read the
//! server's statistics views, not application rows, so they run on a plain connection of the
//! server's login, outside row level security; the caller's role is checked here.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::openapi::ErrorBody;
use crate::store::stats::{self, DatabaseStats};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/stats", get(database_stats))
}

/// The database's statistics: slowest statements, table sizes, index usage, connections by
/// state and locks. Only for a `service_role` token.
#[utoipa::path(get, path = "/v1/admin/stats", operation_id = "admin_stats", tag = "ops",
    responses(
        (status = 200, description = "The statistics", body = DatabaseStats),
        (status = 403, description = "The caller is not `service_role` (`forbidden`)", body = ErrorBody),
    ))]
pub async fn database_stats(caller: Caller, State(state): State<AppState>) -> Result<Json<DatabaseStats>, ApiError> {
    if !caller.is_service() {
        return Err(ApiError::Forbidden("only a service_role token may read the database statistics"));
    }
    let mut conn = state.pool.acquire().await?;
    Ok(Json(stats::collect(&mut conn).await?))
}

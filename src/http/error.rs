//! The one error type of the HTTP API: every failure becomes `{"code", "message"}` with a
//! stable snake_case code and the status it implies. Database and internal failures become
//! a generic 500; their detail goes to the log, never to the client.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::embed::EmbedError;
use crate::ingest::QuotaError;
use crate::ingest::upload::UploadError;
use crate::search::SearchError;

/// Seconds a client should wait before retrying a 429 or 503.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing credentials: send `Authorization: Bearer <JWT>` or an `apikey` header")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("the token has expired")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("the request body is larger than this endpoint accepts")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A per-user quota of documents or queued jobs is used up.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The per-user quota of stored bytes would be exceeded.
    #[error("{0}")]
    StorageQuotaExceeded(String),
    /// Too many status streams are open, for this user or for the server.
    #[error("{0}")]
    TooManyStreams(String),
    #[error("the server is at its concurrency limit; retry shortly")]
    Overloaded,
    #[error("the request took too long")]
    Timeout,
    #[error("the embedding model is unavailable; retry shortly")]
    EmbeddingUnavailable,
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    #[error("internal error")]
    Database(#[source] sqlx::Error),
}

/// Every error answer: a stable code to match on and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct Body<'a> {
    /// Stable snake_case code, such as `not_found` or `invalid_input`.
    #[schema(example = "not_found")]
    pub code: &'static str,
    pub message: &'a str,
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MissingToken | ApiError::InvalidToken(_) | ApiError::TokenExpired => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidInput(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::QuotaExceeded(_) | ApiError::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StorageQuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Overloaded | ApiError::Timeout | ApiError::EmbeddingUnavailable | ApiError::NotReady(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) | ApiError::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingToken => "missing_token",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::TokenExpired => "token_expired",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidInput(_) => "invalid_input",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::QuotaExceeded(_) => "quota_exceeded",
            ApiError::StorageQuotaExceeded(_) => "storage_quota_exceeded",
            ApiError::TooManyStreams(_) => "too_many_streams",
            ApiError::Overloaded => "overloaded",
            ApiError::Timeout => "timeout",
            ApiError::EmbeddingUnavailable => "embedding_unavailable",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal(_) | ApiError::Database(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        match &self {
            ApiError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            ApiError::Database(e) => tracing::error!(error = %e, "database error"),
            _ => {}
        }
        let message = self.to_string();
        let mut response = (status, axum::Json(Body { code: self.code(), message: &message })).into_response();
        if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        if let sqlx::Error::Database(db) = &e {
            // Constraint and policy failures are the caller's; name the rule, not the SQL.
            match db.code().as_deref() {
                Some("23505") => return ApiError::Conflict("a row with these unique values already exists".into()),
                Some("23503") => return ApiError::InvalidInput("a referenced row does not exist".into()),
                Some("42501") => return ApiError::Forbidden("row level security does not allow this"),
                Some("22P02") | Some("22023") => return ApiError::InvalidInput("invalid value".into()),
                // Raised by the search functions themselves (wrong dimensions, ambiguous
                // model): their messages are ours and safe to show.
                Some("22000") => return ApiError::InvalidInput(db.message().to_string()),
                Some("22021") => return ApiError::InvalidInput("text must not contain NUL characters".into()),
                Some("22001") => return ApiError::InvalidInput("a value is too long".into()),
                Some("23514") => return ApiError::InvalidInput("a value breaks a check constraint".into()),
                _ => {}
            }
        }
        if let sqlx::Error::PoolTimedOut = e {
            return ApiError::Overloaded;
        }
        ApiError::Database(e)
    }
}

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> ApiError {
        if let EmbedError::InputTooLong { .. } = e {
            return ApiError::InvalidInput(format!("the query is too long to embed: {e}"));
        }
        if e.is_retryable() {
            tracing::warn!(error = %e, "embedding failed");
            ApiError::EmbeddingUnavailable
        } else {
            ApiError::Internal(anyhow::Error::new(e).context("embedding the query"))
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        match e {
            UploadError::Invalid(_) => ApiError::InvalidInput(e.to_string()),
            UploadError::Unsupported(_) => ApiError::UnsupportedMediaType(e.to_string()),
            UploadError::ModelMismatch { .. } => ApiError::Conflict(e.to_string()),
            UploadError::Quota(QuotaError::StoredBytes { .. }) => ApiError::StorageQuotaExceeded(e.to_string()),
            UploadError::Quota(QuotaError::Documents { .. } | QuotaError::ActiveJobs { .. }) => {
                ApiError::QuotaExceeded(e.to_string())
            }
            UploadError::Database(e) => e.into(),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        match e {
            SearchError::EmptyQuery | SearchError::Limit(_) => ApiError::InvalidInput(e.to_string()),
            SearchError::Embed(e) => e.into(),
            SearchError::Database(e) => e.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        from_status(r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> ApiError {
        from_status(e.status(), e.body_text())
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(r: axum::extract::multipart::MultipartRejection) -> ApiError {
        from_status(r.status(), r.body_text())
    }
}

/// An extractor's rejection, by the status axum gives it.
fn from_status(status: StatusCode, message: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::InvalidInput(message),
        _ => ApiError::BadRequest(message),
    }
}

/// `axum::Json` with rejections in the API's error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// `axum::extract::Path` with rejections in the API's error format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_answers_carry_retry_after() {
        for error in [ApiError::Overloaded, ApiError::Timeout, ApiError::EmbeddingUnavailable] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key(header::RETRY_AFTER));
        }
        assert!(!ApiError::NotFound("bucket").into_response().headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn internal_errors_do_not_tell_the_client_why() {
        let error = ApiError::Internal(anyhow::anyhow!("password authentication failed for user kb"));
        assert_eq!(error.to_string(), "internal error");
        assert_eq!(error.code(), "internal");
        let error = ApiError::from(sqlx::Error::Protocol("secret detail".into()));
        assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn an_exhausted_pool_is_overload_not_failure() {
        assert_eq!(ApiError::from(sqlx::Error::PoolTimedOut).status_code(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

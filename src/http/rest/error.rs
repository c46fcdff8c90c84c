//! Errors as PostgREST shapes them: `{"code", "details", "hint", "message"}`, with PGRST
//! codes for requests kb refuses itself and the SQLSTATE for those the database refuses,
//! mapped to the HTTP status PostgREST gives each.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::error::ApiError;

/// An error answer (boxed: results carry it on every path of the parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError(Box<Detail>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
    pub hint: Option<String>,
    /// `WWW-Authenticate` of a 401.
    pub authenticate: Option<String>,
}

impl std::ops::Deref for RestError {
    type Target = Detail;

    fn deref(&self) -> &Detail {
        &self.0
    }
}

impl std::ops::DerefMut for RestError {
    fn deref_mut(&mut self) -> &mut Detail {
        &mut self.0
    }
}

impl RestError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> RestError {
        RestError(Box::new(Detail {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            hint: None,
            authenticate: None,
        }))
    }

    pub fn details(mut self, details: impl Into<serde_json::Value>) -> RestError {
        self.details = Some(details.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> RestError {
        self.hint = Some(hint.into());
        self
    }

    /// PGRST100: the query string or a header does not follow the grammar.
    pub fn parse(what: &str, details: &str) -> RestError {
        let message =
            if what.is_empty() { "failed to parse the request".to_owned() } else { format!("failed to parse {what}") };
        RestError::new(StatusCode::BAD_REQUEST, "PGRST100", message).details(details)
    }

    /// PGRST102: the body is not the JSON the request needs.
    pub fn body(details: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, "PGRST102", "Empty or invalid json").details(details.into())
    }

    /// PGRST103 (416): the offset lies past the rows there are.
    pub fn range(offset: u64, total: Option<i64>) -> RestError {
        let error = RestError::new(StatusCode::RANGE_NOT_SATISFIABLE, "PGRST103", "Requested range not satisfiable");
        match total {
            Some(total) => {
                error.details(format!("An offset of {offset} was requested, but there are only {total} rows."))
            }
            None => error,
        }
    }

    /// PGRST205 (404): no such table or view in the exposed schema.
    pub fn no_table(schema: &str, name: &str) -> RestError {
        RestError::new(
            StatusCode::NOT_FOUND,
            "PGRST205",
            format!("Could not find the table '{schema}.{name}' in the schema cache"),
        )
    }

    /// 42703 (400): a column the relation does not have, as PostgreSQL words it.
    pub fn no_column(relation: &str, column: &str) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, "42703", format!("column {relation}.{column} does not exist"))
    }

    /// PGRST204 (400): a column of the body that the relation does not have.
    pub fn no_payload_column(relation: &str, column: &str) -> RestError {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "PGRST204",
            format!("Could not find the '{column}' column of '{relation}' in the schema cache"),
        )
    }

    /// PGRST116 (406): `.single()` and the result is not one row.
    pub fn singular(rows: i64) -> RestError {
        RestError::new(StatusCode::NOT_ACCEPTABLE, "PGRST116", "JSON object requested, multiple (or no) rows returned")
            .details(format!("The result contains {rows} rows"))
    }

    /// PGRST106 (406): a profile header names a schema that is not exposed.
    pub fn schema(schema: &str, exposed: &[String]) -> RestError {
        RestError::new(StatusCode::NOT_ACCEPTABLE, "PGRST106", format!("Invalid schema: {schema}"))
            .hint(format!("Only the following schemas are exposed: {}", exposed.join(", ")))
    }

    /// PGRST117 (405).
    pub fn method(method: &str) -> RestError {
        RestError::new(StatusCode::METHOD_NOT_ALLOWED, "PGRST117", format!("Unsupported HTTP method: {method}"))
    }

    /// PGRST107 (415): a body in a media type kb does not read.
    pub fn content_type(media: &str) -> RestError {
        RestError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PGRST107",
            format!("None of these media types are available: {media}"),
        )
    }

    /// PGRST107 (406): an `Accept` kb cannot answer.
    pub fn accept(media: &str) -> RestError {
        RestError::new(
            StatusCode::NOT_ACCEPTABLE,
            "PGRST107",
            format!("None of these media types are available: {media}"),
        )
    }

    /// PGRST301 (401): the token does not verify. `WWW-Authenticate` says why.
    pub fn jwt(error: &ApiError) -> RestError {
        // "JWT expired" is PostgREST's wording, which clients match to refresh their session.
        let message = match error {
            ApiError::TokenExpired => "JWT expired".to_owned(),
            other => other.to_string(),
        };
        let mut rest = RestError::new(StatusCode::UNAUTHORIZED, "PGRST301", message.clone());
        rest.authenticate =
            Some(format!("Bearer error=\"invalid_token\", error_description=\"{}\"", message.replace('"', "'")));
        rest
    }

    /// A failure of the database, shaped and mapped as PostgREST does; failures that are
    /// not the request's (connections, internal errors) are logged and not described.
    pub fn database(error: sqlx::Error, anonymous: bool) -> RestError {
        let sqlx::Error::Database(db) = &error else {
            if let sqlx::Error::PoolTimedOut = error {
                return RestError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "PGRST003",
                    "Timed out acquiring connection from connection pool.",
                );
            }
            tracing::error!(error = %error, "database error");
            return RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PGRST000",
                "Database client error. Retrying the connection.",
            );
        };
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
        let status = status_of(&code, anonymous);
        if status.is_server_error() {
            tracing::error!(code = %code, error = %db, "database error");
        }
        // A RAISE with SQLSTATE 'PTxyz' chooses its own status; its message is the answer.
        let mut rest = RestError::new(status, &code, db.message());
        rest.details = pg.and_then(|e| e.detail()).map(|d| d.into());
        rest.hint = pg.and_then(|e| e.hint()).map(str::to_owned);
        if status == StatusCode::UNAUTHORIZED {
            rest.authenticate = Some("Bearer".into());
        }
        rest
    }
}

/// PostgREST's map from SQLSTATE to HTTP status.
pub fn status_of(code: &str, anonymous: bool) -> StatusCode {
    let status = |n: u16| StatusCode::from_u16(n).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(custom) = code.strip_prefix("PT")
        && let Ok(n) = custom.parse::<u16>()
    {
        return status(n);
    }
    match code {
        "23503" | "23505" => return StatusCode::CONFLICT,
        "25006" => return StatusCode::METHOD_NOT_ALLOWED,
        "P0001" => return StatusCode::BAD_REQUEST,
        // Not PostgREST's (it answers P0* with 500): kb's own functions raise no_data_found
        // for a row that does not exist, which is the caller's 404.
        "P0002" => return StatusCode::NOT_FOUND,
        "42883" | "42P01" => return StatusCode::NOT_FOUND,
        "42P17" => return StatusCode::INTERNAL_SERVER_ERROR,
        "42501" => return if anonymous { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN },
        "53400" => return StatusCode::INTERNAL_SERVER_ERROR,
        _ => {}
    }
    match code.get(..2).unwrap_or("") {
        "08" => StatusCode::SERVICE_UNAVAILABLE,
        "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "55" | "57" | "58" | "F0" | "HV" | "P0" | "XX" => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        "0L" | "0P" | "28" => StatusCode::FORBIDDEN,
        "53" => StatusCode::SERVICE_UNAVAILABLE,
        "54" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let Detail { status, code, message, details, hint, authenticate } = *self.0;
        let body = json!({ "code": code, "details": details, "hint": hint, "message": message });
        let mut response = (status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        if let Some(value) = authenticate.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<super::parse::ParseError> for RestError {
    fn from(error: super::parse::ParseError) -> RestError {
        RestError::parse(&error.what, &error.details)
    }
}

impl From<sqlx::Error> for RestError {
    fn from(error: sqlx::Error) -> RestError {
        RestError::database(error, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_postgrest_statuses() {
        for (code, anonymous, expected) in [
            ("23505", false, 409),
            ("23503", false, 409),
            ("42501", true, 401),
            ("42501", false, 403),
            ("42P01", false, 404),
            ("42883", false, 404),
            ("P0001", false, 400),
            ("P0002", false, 404),
            ("PT418", false, 418),
            ("25006", false, 405),
            ("08006", false, 503),
            ("22P02", false, 400),
            ("23514", false, 400),
            ("XX000", false, 500),
            ("57014", false, 500),
        ] {
            assert_eq!(status_of(code, anonymous).as_u16(), expected, "{code}");
        }
    }
}

//! What the console's API answers when it cannot do what was asked: a status and
//! `{"error": "...", "sqlstate": "..."}`, which the page shows as text.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tidemark_server::direct::QueryError;

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session, or it expired or was signed out.
    #[error("not signed in (or the session expired): sign in again")]
    Unauthorized,
    /// Wrong user name or password (which of the two is not said).
    #[error("user name or password is wrong")]
    BadLogin,
    /// Too many failed sign-ins for this user or from this address.
    #[error("too many failed sign-ins; try again in {retry_after_s} s")]
    TooManyAttempts {
        /// Seconds until another attempt is accepted.
        retry_after_s: u64,
    },
    /// A state-changing request without the session's CSRF token, or from another
    /// origin.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No such query cursor (finished, closed, or expired).
    #[error("{0}")]
    NotFound(String),
    /// The statement was refused or failed, as it would be for a SQL client.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Something on the server's side.
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlstate: Option<&'a str>,
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Unauthorized | ConsoleError::BadLogin => StatusCode::UNAUTHORIZED,
            ConsoleError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            // A session ended by a reload (user removed, role changed): sign in again.
            ConsoleError::Query(q) if q.fatal => StatusCode::UNAUTHORIZED,
            ConsoleError::Query(q) if q.sqlstate == "42501" => StatusCode::FORBIDDEN,
            ConsoleError::Query(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %self, "console request failed");
        }
        let sqlstate = match &self {
            ConsoleError::Query(q) => Some(q.sqlstate.as_str()),
            _ => None,
        };
        let mut r = (
            status,
            Json(Body {
                error: self.to_string(),
                sqlstate,
            }),
        )
            .into_response();
        if let ConsoleError::TooManyAttempts { retry_after_s } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

//! One error type for HTTP handlers.
//!
//! Client errors keep their status and a message that says what to fix. Internal errors
//! are logged here with their detail and reach the client as a bare 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to an HTTP client as `{"error": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    /// A 4xx with a message for the client.
    Client(StatusCode, String),
    /// A 500; the detail is logged, never sent.
    Internal(anyhow::Error),
}

impl ApiError {
    /// 401.
    pub fn unauthorized() -> ApiError {
        ApiError::Client(
            StatusCode::UNAUTHORIZED,
            "sign in first: this needs a session".into(),
        )
    }

    /// 403 with a reason.
    pub fn forbidden(why: impl Into<String>) -> ApiError {
        ApiError::Client(StatusCode::FORBIDDEN, why.into())
    }

    /// 404 naming what is missing.
    pub fn not_found(what: impl std::fmt::Display) -> ApiError {
        ApiError::Client(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Client(status, _) => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> String {
        match self {
            ApiError::Client(_, message) => message.clone(),
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let body = serde_json::json!({ "error": self.message() });
        (self.status(), Json(body)).into_response()
    }
}
